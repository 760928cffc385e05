//! The GPU context: adapter choice, device with the adapter's own limits, optional features,
//! device-lost and validation-error capture, the pipeline cache and buffer helpers.
//!
//! The model code never talks to `wgpu` directly for setup; it holds a [`Gpu`] and records work
//! through a [`Recorder`].

mod buffer;
mod kernel;
mod recorder;

pub use buffer::{split_rows, BufferWriter, GpuBuffer, Readback};
pub use kernel::{Binding, KernelSpec, Prelude, Variant};
pub use recorder::Recorder;

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Optional device features Cria can use, and whether each is turned on for this device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuFeatures {
    /// `enable f16;` in shaders (f16 arithmetic). The floor path never needs it.
    pub shader_f16: bool,
    /// Subgroup operations. The floor path never needs them.
    pub subgroups: bool,
    /// Timestamp queries for profiling.
    pub timestamps: bool,
}

/// How to pick and configure the device. `Default` honours `WGPU_BACKEND`,
/// `WGPU_ADAPTER_NAME` and `WGPU_POWER_PREF` and turns on every optional feature offered.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Never enable SHADER_F16 even where offered (tests the floor path on capable devices).
    pub disable_f16: bool,
    /// Never enable SUBGROUP even where offered.
    pub disable_subgroups: bool,
    /// Substring of the adapter name to pick; overrides `WGPU_ADAPTER_NAME`.
    pub adapter_name: Option<String>,
    /// Bytes of GPU memory models may use, instead of what the platform reports (for a device
    /// shared with other work, and for tests of the refusal).
    pub memory_budget: Option<u64>,
}

/// State shared with wgpu's callbacks, which may run on other threads.
#[derive(Default)]
struct Health {
    lost: Mutex<Option<String>>,
    errors: Mutex<Vec<String>>,
}

/// Kernel shapes chosen per adapter kind. Public so a test can run the shapes a discrete GPU
/// gets on the CPU adapter CI has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Matvec (invocations, rows) per workgroup: 64 x 4 on GPUs (enough workgroups to fill
    /// every core even for the smaller matrices); 16 x 16 on CPU adapters (lavapipe), where
    /// every workgroup and every barrier of the reduction has a fixed cost (stories15M decode:
    /// ~1.5x from the rows, ~1.8x more from the narrower workgroups).
    pub matvec: (u32, u32),
}

impl Tuning {
    pub const GPU: Tuning = Tuning { matvec: (64, 4) };
    pub const CPU: Tuning = Tuning { matvec: (16, 16) };

    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Tuning {
        if info.device_type == wgpu::DeviceType::Cpu { Tuning::CPU } else { Tuning::GPU }
    }
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub features: GpuFeatures,
    pub limits: wgpu::Limits,
    pub tuning: Tuning,
    /// Device memory a model may use and where that figure comes from (see [`Gpu::memory_budget`]).
    memory: Option<(u64, String)>,
    health: Arc<Health>,
    pipelines: Mutex<HashMap<kernel::PipelineKey, Arc<kernel::Kernel>>>,
    /// Bind groups by layout and buffers: a decode step binds the same buffers every token.
    bind_groups: Mutex<HashMap<(wgpu::BindGroupLayout, Vec<wgpu::Buffer>), wgpu::BindGroup>>,
}

/// Cached bind groups hold their buffers alive: the cache is emptied when it reaches this size
/// and whenever a model is dropped ([`Gpu::forget_bind_groups`]).
const BIND_GROUP_CACHE: usize = 4096;

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu").field("adapter", &self.info.name).field("features", &self.features).finish()
    }
}

/// The device memory the platform reports for `adapter`: on Vulkan, the largest device-local
/// heap (VkPhysicalDeviceMemoryProperties). Other backends report none through wgpu.
#[cfg(all(not(target_arch = "wasm32"), any(target_os = "linux", target_os = "windows", target_os = "android")))]
fn platform_memory(adapter: &wgpu::Adapter) -> Option<(u64, &'static str)> {
    const DEVICE_LOCAL: u32 = 0x1; // VK_MEMORY_HEAP_DEVICE_LOCAL_BIT
    // SAFETY: the hal adapter is only borrowed for two read-only queries while `adapter` lives.
    let hal = unsafe { adapter.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let instance = hal.shared_instance().raw_instance();
    let props = unsafe { instance.get_physical_device_memory_properties(hal.raw_physical_device()) };
    let heaps = &props.memory_heaps[..(props.memory_heap_count as usize).min(props.memory_heaps.len())];
    heaps.iter().filter(|h| h.flags.as_raw() & DEVICE_LOCAL != 0).map(|h| h.size).max().map(|bytes| (bytes, "the largest device-local memory heap"))
}

#[cfg(not(all(not(target_arch = "wasm32"), any(target_os = "linux", target_os = "windows", target_os = "android"))))]
fn platform_memory(_adapter: &wgpu::Adapter) -> Option<(u64, &'static str)> {
    None
}

#[cfg(not(target_arch = "wasm32"))]
fn adapter_rank(kind: wgpu::DeviceType) -> u8 {
    match kind {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

impl Gpu {
    /// Picks an adapter and creates the device.
    pub async fn new(options: GpuOptions) -> Result<Gpu> {
        let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        let backends = desc.backends;
        let instance = wgpu::Instance::new(desc);
        let adapter = pick_adapter(&instance, backends, options.adapter_name.clone()).await?;
        Self::from_adapter(adapter, &options).await
    }

    /// Creates the device on a given adapter, with the adapter's own limits.
    pub async fn from_adapter(adapter: wgpu::Adapter, options: &GpuOptions) -> Result<Gpu> {
        let info = adapter.get_info();
        let offered = adapter.features();
        let mut wanted = wgpu::Features::empty();
        let shader_f16 = offered.contains(wgpu::Features::SHADER_F16) && !options.disable_f16;
        let subgroups = offered.contains(wgpu::Features::SUBGROUP) && !options.disable_subgroups;
        let timestamps = offered.contains(wgpu::Features::TIMESTAMP_QUERY);
        if shader_f16 {
            wanted |= wgpu::Features::SHADER_F16;
        }
        if subgroups {
            wanted |= wgpu::Features::SUBGROUP;
        }
        if timestamps {
            wanted |= wgpu::Features::TIMESTAMP_QUERY;
        }
        // wgpu's default limits are WebGPU's minimums (128 MiB bindings, 256 MiB buffers);
        // the adapter's own limits are what the hardware really allows.
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("cria"),
                required_features: wanted,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::RequestDevice { adapter: info.name.clone(), message: e.to_string() })?;

        let health = Arc::new(Health::default());
        {
            let health = health.clone();
            device.set_device_lost_callback(move |reason, message| {
                let text = format!("{reason:?}: {message}");
                log::error!("GPU device lost: {text}");
                *health.lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
            });
        }
        {
            // wgpu's default handler panics; keep errors as values and report them at the next
            // synchronisation point instead.
            let health = health.clone();
            device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
                log::error!("GPU error: {error}");
                health.errors.lock().unwrap_or_else(|p| p.into_inner()).push(error.to_string());
            }));
        }
        let limits = device.limits();
        let memory = match options.memory_budget {
            Some(bytes) => Some((bytes, "the memory budget set for this device".to_string())),
            None => platform_memory(&adapter).map(|(bytes, what)| (bytes, format!("{what} of '{}'", info.name))),
        };
        Ok(Gpu {
            device,
            queue,
            tuning: Tuning::for_adapter(&info),
            info,
            features: GpuFeatures { shader_f16, subgroups, timestamps },
            limits,
            memory,
            health,
            pipelines: Mutex::new(HashMap::new()),
            bind_groups: Mutex::new(HashMap::new()),
        })
    }

    /// Fails with `DeviceLost` once the device is gone, and with `Validation` for any error the
    /// device reported since the last check. Called before recording and after every readback.
    pub fn check(&self, context: &str) -> Result<()> {
        if let Some(reason) = self.health.lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(Error::DeviceLost { reason });
        }
        let mut errors = self.health.errors.lock().unwrap_or_else(|p| p.into_inner());
        if !errors.is_empty() {
            let message = errors.join("; ");
            errors.clear();
            return Err(Error::Validation { context: context.to_string(), message });
        }
        Ok(())
    }

    /// Bytes of memory models may use on this device, and where the figure comes from: the
    /// budget set in [`GpuOptions::memory_budget`], else what the platform reports (Vulkan: the
    /// largest device-local heap). None where nothing reports it (WebGPU exposes no total).
    pub fn memory_budget(&self) -> Option<(u64, String)> {
        self.memory.clone()
    }

    /// Whether the adapter is a software rasteriser (Mesa's llvmpipe/lavapipe, SwiftShader,
    /// Microsoft's WARP): the CPU device computes faster than one.
    pub fn is_software(&self) -> bool {
        let name = self.info.name.to_ascii_lowercase();
        self.info.device_type == wgpu::DeviceType::Cpu || ["llvmpipe", "swiftshader", "basic render driver", "warp"].iter().any(|s| name.contains(s))
    }

    /// Largest byte size one storage binding may have on this device.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    /// A human-readable summary: adapter, backend, features turned on and the key limits.
    pub fn describe(&self) -> String {
        let f = self.features;
        let on = |b: bool| if b { "on" } else { "off" };
        format!(
            "adapter: {} ({:?}, {:?} backend, driver {} {})\n\
             features: shader-f16 {}, subgroups {}, timestamps {}\n\
             limits: max_storage_buffer_binding_size {} MiB, max_buffer_size {} MiB, \
             workgroup storage {} KiB, invocations/workgroup {}, storage buffers/stage {}, \
             workgroups/dimension {}, subgroup size {}..{}",
            self.info.name,
            self.info.device_type,
            self.info.backend,
            self.info.driver,
            self.info.driver_info,
            on(f.shader_f16),
            on(f.subgroups),
            on(f.timestamps),
            self.limits.max_storage_buffer_binding_size >> 20,
            self.limits.max_buffer_size >> 20,
            self.limits.max_compute_workgroup_storage_size >> 10,
            self.limits.max_compute_invocations_per_workgroup,
            self.limits.max_storage_buffers_per_shader_stage,
            self.limits.max_compute_workgroups_per_dimension,
            self.info.subgroup_min_size,
            self.info.subgroup_max_size,
        )
    }

    /// Destroys the device (used to test that a lost device becomes an error, not a hang).
    /// The bind group of `layout` with `buffers` bound whole at bindings 0.. (binding 0, the
    /// parameter arena, as a `slot`-byte window), created once and then reused.
    pub(crate) fn bind_group(&self, label: &str, layout: &wgpu::BindGroupLayout, buffers: &[&wgpu::Buffer], slot: u64) -> wgpu::BindGroup {
        let key = (layout.clone(), buffers.iter().map(|&b| b.clone()).collect::<Vec<_>>());
        let mut cache = self.bind_groups.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(group) = cache.get(&key) {
            return group.clone();
        }
        let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
            .iter()
            .enumerate()
            .map(|(i, &b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: if i == 0 {
                    wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: b, offset: 0, size: wgpu::BufferSize::new(slot) })
                } else {
                    b.as_entire_binding()
                },
            })
            .collect();
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout, entries: &entries });
        if cache.len() >= BIND_GROUP_CACHE {
            cache.clear();
        }
        cache.insert(key, group.clone());
        group
    }

    /// Empties the bind-group cache, releasing the buffers it holds (models call this when
    /// dropped, so their weights leave the GPU).
    pub fn forget_bind_groups(&self) {
        self.bind_groups.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn destroy(&self) {
        self.device.destroy();
    }

    /// Waits until all submitted work is done.
    pub fn wait(&self) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::DeviceLost { reason: e.to_string() })?;
        self.check("wait")
    }
}

async fn pick_adapter(
    instance: &wgpu::Instance,
    backends: wgpu::Backends,
    name: Option<String>,
) -> Result<wgpu::Adapter> {
    let name = name.or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok()).map(|n| n.to_lowercase());
    #[cfg(not(target_arch = "wasm32"))]
    {
        let no_adapter = |extra: &str| Error::NoAdapter {
            backends: format!("{backends:?}"),
            hint: format!(
                "{extra}install a Vulkan/Metal/DX12 driver (on Linux without a GPU: Mesa's lavapipe, \
                 `scripts/setup-lavapipe.sh`), or set WGPU_BACKEND to a backend this machine has"
            ),
        };
        let mut adapters = instance.enumerate_adapters(backends).await;
        if let Some(name) = &name {
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(name));
            if adapters.is_empty() {
                return Err(no_adapter(&format!("no adapter name contains '{name}' (WGPU_ADAPTER_NAME); ")));
            }
        }
        // Prefer real GPUs; among equals keep the enumeration order (stable across runs).
        adapters.sort_by_key(|a| adapter_rank(a.get_info().device_type));
        adapters.into_iter().next().ok_or_else(|| no_adapter(""))
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (name, backends);
        instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|_| Error::NoAdapter {
                backends: "WebGPU".into(),
                hint: "this browser offers no WebGPU adapter: use a recent Chrome, Edge or Safari, \
                       or enable WebGPU (chrome://flags/#enable-unsafe-webgpu)"
                    .into(),
            })
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::ops::testing;

    const BROKEN: KernelSpec = KernelSpec {
        name: "broken",
        source: "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }",
        entry: "main",
        bindings: &[],
    };

    #[test]
    fn prints_adapter_features_and_limits() {
        let Some(gpu) = testing::gpu() else { return };
        println!("{}", gpu.describe());
        assert!(gpu.max_binding_bytes() >= 128 << 20, "device must get the adapter's limits, not WebGPU's minimums");
    }

    #[test]
    fn shader_that_fails_to_compile_is_a_typed_error() {
        let Some(gpu) = testing::gpu() else { return };
        let err = gpu.kernel(&BROKEN, &Variant::default()).err().expect("broken WGSL must not compile");
        assert!(matches!(&err, Error::ShaderCompile { shader, .. } if shader == "broken::main"), "{err}");
        // The device stays usable afterwards.
        gpu.check("after compile error").unwrap();
    }

    #[test]
    fn buffer_over_the_binding_limit_is_a_typed_error() {
        let Some(gpu) = testing::gpu() else { return };
        let too_big = gpu.max_binding_bytes() + 4;
        let err = GpuBuffer::zeroed(gpu, "huge", too_big).unwrap_err();
        assert!(matches!(err, Error::BindingTooLarge { bytes, .. } if bytes == too_big), "{err}");
        let err = split_rows("w", 10, too_big, gpu.max_binding_bytes()).unwrap_err();
        assert!(err.to_string().contains("split the tensor"), "{err}");
        assert_eq!(split_rows("w", 10, 4, 12).unwrap(), vec![0..3, 3..6, 6..9, 9..10]);
    }

    #[test]
    fn lost_device_turns_later_calls_into_errors() {
        let Some(_) = testing::gpu() else { return };
        // A device of its own: destroying the shared one would break the other tests.
        let gpu = pollster::block_on(Gpu::new(GpuOptions::default())).unwrap();
        let buf = GpuBuffer::from_slice(&gpu, "x", &[1.0f32, 2.0]).unwrap();
        gpu.destroy();
        let _ = gpu.device.poll(wgpu::PollType::wait_indefinitely());
        let err = pollster::block_on(buf.read_f32(&gpu)).unwrap_err();
        assert!(matches!(err, Error::DeviceLost { .. }), "{err}");
        let err = gpu.kernel(&crate::ops::testing::ANY_KERNEL, &Variant::default()).err().unwrap();
        assert!(matches!(err, Error::DeviceLost { .. }), "{err}");
    }
}
