//! Kernels: a WGSL source plus the shape of its bindings, compiled once per set of `override`
//! constants and cached.
//!
//! Binding convention of every Cria kernel: `@group(0) @binding(0)` is the op's parameter struct
//! (a uniform, bound with a dynamic offset into the recorder's parameter arena), followed by the
//! storage buffers listed in [`KernelSpec::bindings`] at bindings 1, 2, ...

use super::Gpu;
use crate::error::{Error, Result};
use std::sync::Arc;

/// Access of one storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    ReadOnly,
    ReadWrite,
}

/// A kernel family: one `.wgsl` file and one entry point.
#[derive(Clone, Copy, Debug)]
pub struct KernelSpec {
    pub name: &'static str,
    pub source: &'static str,
    pub entry: &'static str,
    pub bindings: &'static [Binding],
}

/// Pipeline-creation choices for one kernel: `override` constants and the [`Prelude`] the
/// shader gets (the only textual change Cria makes to a shader).
#[derive(Clone, Debug, Default)]
pub struct Variant {
    pub constants: Vec<(&'static str, f64)>,
    pub prelude: Prelude,
}

impl Variant {
    pub fn constants(constants: &[(&'static str, f64)]) -> Self {
        Variant { constants: constants.to_vec(), prelude: Prelude::default() }
    }

    pub fn with_prelude(mut self, prelude: Prelude) -> Self {
        self.prelude = prelude;
        self
    }
}

/// Text prepended to a shader. Each defines `kv_pair`, the storage of two adjacent values of
/// the KV cache (element 2i of an `array<kv_pair>` first), with `kv_load`/`kv_store` to and
/// from `vec2<f32>`; shaders that do not use it ignore it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Prelude {
    /// f16 pairs in a u32, packed by WGSL's builtins: no shader-f16 needed (the floor).
    #[default]
    F16Packed,
    /// `vec2<f16>` with shader-f16: the same bytes as [`Prelude::F16Packed`].
    F16Native,
    /// `vec2<f32>`: a full-precision cache.
    F32,
}

impl Prelude {
    pub fn source(self) -> &'static str {
        match self {
            Prelude::F16Packed => {
                "alias kv_pair = u32;
fn kv_load(v: kv_pair) -> vec2<f32> { return unpack2x16float(v); }
fn kv_store(v: vec2<f32>) -> kv_pair { return pack2x16float(v); }
"
            }
            Prelude::F16Native => {
                "enable f16;
alias kv_pair = vec2<f16>;
fn kv_load(v: kv_pair) -> vec2<f32> { return vec2<f32>(v); }
fn kv_store(v: vec2<f32>) -> kv_pair { return vec2<f16>(v); }
"
            }
            Prelude::F32 => {
                "alias kv_pair = vec2<f32>;
fn kv_load(v: kv_pair) -> vec2<f32> { return v; }
fn kv_store(v: vec2<f32>) -> kv_pair { return v; }
"
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    name: &'static str,
    entry: &'static str,
    constants: Vec<(&'static str, u64)>,
    prelude: Prelude,
}

pub struct Kernel {
    pub(crate) spec: KernelSpec,
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

impl Gpu {
    /// Returns the compiled pipeline for `spec` and `variant`, compiling it on first use.
    pub fn kernel(&self, spec: &KernelSpec, variant: &Variant) -> Result<Arc<Kernel>> {
        self.check(spec.name)?;
        let mut constants: Vec<(&'static str, u64)> =
            variant.constants.iter().map(|(k, v)| (*k, v.to_bits())).collect();
        constants.sort();
        let key = PipelineKey { name: spec.name, entry: spec.entry, constants, prelude: variant.prelude };
        if let Some(k) = self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(k.clone());
        }
        let kernel = Arc::new(self.compile(spec, variant)?);
        self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).insert(key, kernel.clone());
        Ok(kernel)
    }

    fn compile(&self, spec: &KernelSpec, variant: &Variant) -> Result<Kernel> {
        if variant.prelude == Prelude::F16Native && !self.features.shader_f16 {
            return Err(Error::Unsupported {
                what: format!("the f16 variant of kernel '{}'", spec.name),
                hint: "this device has no shader-f16; use the floor (packed-u32) variant".into(),
            });
        }
        let source = format!("{}{}", variant.prelude.source(), spec.source);
        // Natively an error scope resolves at once and turns a bad shader into a typed error
        // here. In the browser it resolves only after the GPU process answers, and dropping an
        // unpopped scope discards what it caught (the real WGSL diagnostic): there no scope is
        // pushed, so errors reach the uncaptured-error handler and surface, with their message,
        // at the next `Gpu::check`.
        #[cfg(not(target_arch = "wasm32"))]
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(spec.name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: None,
            },
            count: None,
        }];
        for (i, b) in spec.bindings.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: *b == Binding::ReadOnly },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(spec.name),
            entries: &entries,
        });
        let pipeline_layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(spec.name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(spec.name),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(spec.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &variant.constants,
                // Every kernel initialises the workgroup memory it reads.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(Error::ShaderCompile { shader: format!("{}::{}", spec.name, spec.entry), message: error.to_string() });
        }
        Ok(Kernel { spec: *spec, pipeline, layout })
    }
}
