//! The decoder forward pass on the GPU (HF `modeling_llama.LlamaForCausalLM`, and the families
//! of [`super::family`] as switches of it): embeddings, then per layer
//! `h = x + attn(norm(x))`, `x = h + mlp(norm(h))` (Gemma also normalises each branch output
//! before its add), then the final norm and the LM head.
//! Prefill runs many tokens through the matmul kernels; decode runs one token through matvec
//! and the split-K attention. All activations and the KV cache are allocated at load.

use super::config::LlamaConfig;
use super::weights::{LoadProgress, WeightSource};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuBuffer, GpuOptions, Readback, Recorder};
use crate::ops::attention::{DecodeScratch, Heads, KvCache, KvDType};
use crate::ops::rope::RopeTable;
use crate::model::safetensors::{HostTensor, TensorEntry};
use crate::ops::sample::{self, SampleScratch};
use crate::ops::{argmax, embedding, matmul, Layout, Matrix, WeightDType};
use crate::cpu::ops::CpuKvCache;
use crate::cpu::{CpuWeights, Pool};
use super::exec::{CpuExec, Exec, GpuExec};
use std::cell::RefCell;
use super::memory::MemoryPlan;
use crate::sampling::SamplingOptions;
use std::sync::Arc;

/// Tokens of context allocated unless asked for more (llama.cpp's default too): hub configs
/// declare 8k-128k, and a full-length KV cache can outgrow the weights (SmolLM2-135M's 8,192
/// positions in f32: 377 MB, beside 270 MB of BF16 weights).
pub const DEFAULT_CONTEXT: usize = 4096;

/// Tokens per prefill pass: longer prompts run in chunks (bounds activation memory).
pub const PREFILL_CHUNK: usize = 128;

#[derive(Clone, Debug, Default)]
pub struct ModelOptions {
    /// Context length to allocate the KV cache for; defaults to [`DEFAULT_CONTEXT`] (or
    /// max_position_embeddings, if smaller).
    pub context: Option<usize>,
    /// Store every weight matrix as this type, converting at load (for example Q4_0 from an
    /// F16 checkpoint); None keeps each tensor's own type.
    pub weight_dtype: Option<crate::ops::WeightDType>,
    /// Element type of the KV cache (f16 unless asked otherwise).
    pub kv_cache: KvDType,
}

/// The decoder's weights, described once ([`describe_weights`]) and built by a [`Build`]: the
/// loader uploads them (`M` = [`Matrix`], `V` = [`GpuBuffer`]); the memory plan counts their
/// bytes before anything is uploaded (`M` = (type, bytes), `V` = bytes).
pub(crate) struct LayerOf<M, V> {
    attn_norm: V,
    /// q_proj, k_proj and v_proj stacked: one pass over x.
    wqkv: M,
    wo: M,
    /// The MLP's input norm (Llama's `post_attention_layernorm`, Gemma's `pre_feedforward_layernorm`).
    mlp_norm: V,
    /// Norms of the attention and MLP outputs before their residual adds (`sandwich_norms`).
    attn_post_norm: Option<V>,
    mlp_post_norm: Option<V>,
    /// gate_proj and up_proj rows interleaved: one pass, the gating fused into its output.
    w_gate_up: M,
    w_down: M,
    /// q, k and v biases end to end (families with `qkv_bias`).
    qkv_bias: Option<V>,
    /// q_norm then k_norm weights (families with `qk_norm`).
    qk_norm: Option<V>,
}

impl<M, V> LayerOf<M, V> {
    fn vectors(&self) -> impl Iterator<Item = &V> {
        [Some(&self.attn_norm), Some(&self.mlp_norm), self.attn_post_norm.as_ref(), self.mlp_post_norm.as_ref(), self.qkv_bias.as_ref(), self.qk_norm.as_ref()].into_iter().flatten()
    }
}

pub(crate) struct WeightsOf<M, V> {
    embed: M,
    layers: Vec<LayerOf<M, V>>,
    norm: V,
    /// None for tied embeddings: the LM head is `embed`.
    lm_head: Option<M>,
}

impl<M, V> WeightsOf<M, V> {
    /// Every matrix once (the embedding included; a tied LM head is not a second matrix).
    fn matrices(&self) -> impl Iterator<Item = &M> {
        let layers = self.layers.iter().flat_map(|l| [&l.wqkv, &l.wo, &l.w_gate_up, &l.w_down]);
        [&self.embed].into_iter().chain(layers).chain(self.lm_head.iter())
    }

    fn vectors(&self) -> impl Iterator<Item = &V> {
        self.layers.iter().flat_map(|l| l.vectors()).chain([&self.norm])
    }
}

/// What builds the weights of [`describe_weights`].
pub(crate) trait Build {
    type M;
    type V;
    /// A matrix of `cols` columns from the file tensors `parts` (name, rows), combined by `layout`.
    fn matrix(&mut self, name: &str, parts: &[(&str, usize)], cols: usize, layout: Layout) -> Result<Self::M>;
    /// A vector of the file's 1-D tensors `parts` (name, length) end to end, `offset` added to
    /// every value (a family's norm offset).
    fn vector(&mut self, name: &str, parts: &[(&str, usize)], offset: f32) -> Result<Self::V>;
    fn has(&self, name: &str) -> bool;
    /// See [`WeightSource::norms_as_applied`].
    fn norms_as_applied(&self) -> bool;
}

/// The decoder's weights in HF names, fused as the kernels read them; the family says which
/// optional ones it has.
fn describe_weights<B: Build>(c: &LlamaConfig, b: &mut B) -> Result<WeightsOf<B::M, B::V>> {
    let hd = c.head_dim;
    let (h, q_dim, kv_dim, inter, vocab) = (c.hidden_size, c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim, c.intermediate_size, c.vocab_size);
    let embed = b.matrix("model.embed_tokens.weight", &[("model.embed_tokens.weight", vocab)], h, Layout::Stacked)?;
    let f = &c.family;
    // Gemma's norms multiply by 1 + w where transformers stores w (llama.cpp stores the sum).
    let shift = if b.norms_as_applied() { 0.0 } else { f.norm_offset };
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let n = |s: &str| format!("{p}.{s}");
        // A tensor of a switch this family lacks: the checkpoint is another family's, and
        // running it without that tensor would give garbage.
        let switches = [
            (f.qkv_bias, n("self_attn.q_proj.bias"), "q/k/v biases"),
            (f.qk_norm, n("self_attn.q_norm.weight"), "per-head q/k norms"),
            (f.sandwich_norms, n("post_feedforward_layernorm.weight"), "norms after attention and MLP"),
        ];
        for (on, tensor, switch) in switches {
            if !on && b.has(&tensor) {
                return Err(Error::Unsupported {
                    what: format!("the tensor `{tensor}` ({switch}) in a {} model", f.name),
                    hint: format!("{} models have no {switch}: the config names the wrong architecture for these weights (Qwen2 has biases, Qwen3 q/k norms, Gemma 3 both norms)", f.architecture),
                });
            }
        }
        let norm = |b: &mut B, part: &str, len: usize| b.vector(&n(part), &[(&n(part), len)], shift);
        let qkv_bias = match f.qkv_bias {
            true => Some(b.vector(&n("self_attn.qkv_bias"), &[(&n("self_attn.q_proj.bias"), q_dim), (&n("self_attn.k_proj.bias"), kv_dim), (&n("self_attn.v_proj.bias"), kv_dim)], 0.0)?),
            false => None,
        };
        let qk_norm = match f.qk_norm {
            true => Some(b.vector(&n("self_attn.qk_norm"), &[(&n("self_attn.q_norm.weight"), hd), (&n("self_attn.k_norm.weight"), hd)], shift)?),
            false => None,
        };
        let (mlp_norm, attn_post_norm, mlp_post_norm) = match f.sandwich_norms {
            true => (
                norm(b, "pre_feedforward_layernorm.weight", h)?,
                Some(norm(b, "post_attention_layernorm.weight", h)?),
                Some(norm(b, "post_feedforward_layernorm.weight", h)?),
            ),
            false => (norm(b, "post_attention_layernorm.weight", h)?, None, None),
        };
        layers.push(LayerOf {
            qkv_bias,
            qk_norm,
            mlp_norm,
            attn_post_norm,
            mlp_post_norm,
            attn_norm: norm(b, "input_layernorm.weight", h)?,
            wqkv: b.matrix(
                &n("self_attn.qkv"),
                &[(&n("self_attn.q_proj.weight"), q_dim), (&n("self_attn.k_proj.weight"), kv_dim), (&n("self_attn.v_proj.weight"), kv_dim)],
                h,
                Layout::Stacked,
            )?,
            wo: b.matrix(&n("self_attn.o_proj.weight"), &[(&n("self_attn.o_proj.weight"), h)], q_dim, Layout::Stacked)?,
            w_gate_up: b.matrix(&n("mlp.gate_up"), &[(&n("mlp.gate_proj.weight"), inter), (&n("mlp.up_proj.weight"), inter)], h, Layout::Interleaved)?,
            w_down: b.matrix(&n("mlp.down_proj.weight"), &[(&n("mlp.down_proj.weight"), h)], inter, Layout::Stacked)?,
        });
    }
    let norm = b.vector("model.norm.weight", &[("model.norm.weight", h)], shift)?;
    // Tied embeddings reuse embed_tokens as the LM head (HF drops lm_head.weight then).
    let lm_head = if c.tie_word_embeddings && !b.has("lm_head.weight") {
        None
    } else {
        Some(b.matrix("lm_head.weight", &[("lm_head.weight", vocab)], h, Layout::Stacked)?)
    };
    Ok(WeightsOf { embed, layers, norm, lm_head })
}

/// Activations for up to PREFILL_CHUNK tokens, described once ([`describe_activations`]):
/// allocated at load (`B` = [`GpuBuffer`]) or counted by the memory plan (`B` = bytes).
pub(crate) struct ActivationsOf<B> {
    ids: B,
    x: B,
    xn: B,
    qkv: B,
    q: B,
    attn: B,
    o: B,
    gate_up: B,
    act: B,
    down: B,
    last: B,
    logits: B,
    token: B,
}

impl<B> ActivationsOf<B> {
    fn all(&self) -> [&B; 13] {
        [&self.ids, &self.x, &self.xn, &self.qkv, &self.q, &self.attn, &self.o, &self.gate_up, &self.act, &self.down, &self.last, &self.logits, &self.token]
    }
}

/// `f(name, bytes)` for every activation buffer.
fn describe_activations<B>(c: &LlamaConfig, mut f: impl FnMut(&str, u64) -> Result<B>) -> Result<ActivationsOf<B>> {
    let (n, h, q_dim, kv_dim, inter) = (PREFILL_CHUNK, c.hidden_size, c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim, c.intermediate_size);
    let mut f32s = |name: &str, elems: usize| f(name, (elems * 4) as u64);
    Ok(ActivationsOf {
        ids: f32s("ids", n)?,
        x: f32s("x", n * h)?,
        xn: f32s("xn", n * h)?,
        qkv: f32s("qkv", n * (q_dim + 2 * kv_dim))?,
        q: f32s("q", n * q_dim)?,
        attn: f32s("attn", n * q_dim)?,
        o: f32s("o", n * h)?,
        gate_up: f32s("gate_up", n * 2 * inter)?,
        act: f32s("act", n * inter)?,
        down: f32s("down", n * h)?,
        last: f32s("last hidden", h)?,
        logits: f32s("logits", c.vocab_size)?,
        token: f32s("next token", 1)?,
    })
}

/// Activations and the buffers of sampling, decode attention and readback (the GPU's).
struct Scratch {
    a: ActivationsOf<GpuBuffer>,
    sample: SampleScratch,
    decode: DecodeScratch,
    arena: wgpu::Buffer,
    readback: Readback,
}

/// Parameter slots of the recorder a forward pass records into.
const ARENA_DISPATCHES: u32 = 1024;

/// Where a model computes: a GPU through wgpu, or the CPU's cores.
#[derive(Clone)]
pub enum Device {
    Gpu(Arc<Gpu>),
    Cpu(Arc<Pool>),
}

impl From<Arc<Gpu>> for Device {
    fn from(gpu: Arc<Gpu>) -> Device {
        Device::Gpu(gpu)
    }
}

/// Which device to open, as `--device` (CLI, desktop app, server) and the npm package's
/// `device` option name it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The GPU, unless there is none or the only adapter is a software rasteriser (llvmpipe,
    /// SwiftShader, WARP): then the CPU, whose kernels compute faster on the same cores.
    #[default]
    Auto,
    Gpu,
    Cpu,
}

impl DeviceChoice {
    pub fn parse(name: &str) -> Result<DeviceChoice> {
        match name {
            "auto" => Ok(DeviceChoice::Auto),
            "gpu" => Ok(DeviceChoice::Gpu),
            "cpu" => Ok(DeviceChoice::Cpu),
            other => Err(Error::Unsupported { what: format!("device `{other}`"), hint: "choose auto, gpu or cpu".into() }),
        }
    }
}

impl Device {
    /// Opens the device `choice` names (a GPU with `gpu`'s options) and says why it is the one:
    /// `(device, reason)`. Only `Gpu` fails for want of a GPU; `Auto` then takes the CPU.
    // In a browser the GPU is not Send: everything there stays on one thread.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub async fn open(choice: DeviceChoice, gpu: GpuOptions) -> Result<(Device, String)> {
        match choice {
            DeviceChoice::Cpu => Ok((Device::cpu(), "the CPU was asked for".into())),
            DeviceChoice::Gpu => Ok((Device::Gpu(Arc::new(Gpu::new(gpu).await?)), "the GPU was asked for".into())),
            DeviceChoice::Auto => Ok(match Gpu::new(gpu).await {
                Ok(g) if g.is_software() => (Device::cpu(), format!("the only GPU adapter, {}, is a software renderer: the CPU computes faster", g.info.name)),
                Ok(g) => {
                    let reason = format!("GPU adapter {}", g.info.name);
                    (Device::Gpu(Arc::new(g)), reason)
                }
                Err(e) => (Device::cpu(), format!("no usable GPU ({})", e.to_string().split(". Hint").next().unwrap_or_default())),
            }),
        }
    }

    /// The CPU with one thread per core.
    pub fn cpu() -> Device {
        Device::Cpu(Arc::new(Pool::with_available_parallelism()))
    }

    /// Refuses, with the numbers, a model whose [`MemoryPlan`] does not fit this device: a GPU's
    /// bindings and memory ([`MemoryPlan::check`]), or the host's
    /// ([`MemoryPlan::check_host`]).
    pub fn check(&self, plan: &MemoryPlan) -> Result<()> {
        match self {
            Device::Gpu(gpu) => plan.check(gpu),
            Device::Cpu(_) => plan.check_host(),
        }
    }

    /// "llvmpipe (LLVM 15, 256 bits)" or "CPU (2 threads, avx2+fma+f16c)".
    pub fn describe(&self) -> String {
        match self {
            Device::Gpu(gpu) => gpu.describe(),
            Device::Cpu(pool) => {
                let n = pool.threads();
                format!("CPU ({n} thread{}, {})", if n == 1 { "" } else { "s" }, crate::cpu::matvec::Kernel::best().name())
            }
        }
    }
}

/// The model on a GPU: weights, caches and scratch in GPU buffers.
struct GpuModel {
    gpu: Arc<Gpu>,
    w: WeightsOf<Matrix, GpuBuffer>,
    kv: Vec<KvCache>,
    rope: RopeTable,
    rope_local: Option<RopeTable>,
    s: Scratch,
}

/// The model on the CPU: weights in their file types, an f16 KV cache, f32 activations.
struct CpuModel {
    pool: Arc<Pool>,
    w: WeightsOf<CpuWeights, Vec<f32>>,
    kv: Vec<RefCell<CpuKvCache>>,
    rope: Vec<f32>,
    rope_local: Option<Vec<f32>>,
    a: ActivationsOf<RefCell<Vec<f32>>>,
    /// The token chosen by the last forward call.
    token: u32,
}

// One per model: the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Engine {
    Gpu(GpuModel),
    Cpu(CpuModel),
}

pub struct Llama {
    pub config: LlamaConfig,
    pub context: usize,
    /// What the model holds, computed before loading.
    pub memory: MemoryPlan,
    engine: Engine,
    /// Dispatches and submits of the last forward call (GPU).
    pub last_dispatches: u64,
    pub last_submits: u64,
}

/// The one forward pass, on any device: the network of `c` with its weights, caches, RoPE tables
/// and activations on that device.
struct Net<'a, E: Exec> {
    c: &'a LlamaConfig,
    w: &'a WeightsOf<E::Matrix, E::Vector>,
    kv: &'a [E::Cache],
    rope: &'a E::Rope,
    rope_local: Option<&'a E::Rope>,
    a: &'a ActivationsOf<E::Buffer>,
}

impl<E: Exec> Net<'_, E> {
    /// One chunk of n tokens at positions pos.. : the whole network, ending with the logits of
    /// the chunk's last token.
    fn chunk(&self, e: &mut E, n: usize, pos: usize) -> Result<()> {
        let (c, s) = (self.c, self.a);
        let (h, eps) = (c.hidden_size, c.rms_norm_eps);
        // Gemma: sqrt(hidden_size), formed in f64 and rounded to f32 as transformers' buffer is.
        let embed_scale = if c.family.scaled_embeddings { (h as f64).sqrt() as f32 } else { 1.0 };
        e.embedding(&self.w.embed, &s.ids, n, &s.x, embed_scale)?;
        let mut prev_post: Option<&E::Vector> = None; // the previous layer's MLP output norm
        for (i, (layer, kv)) in self.w.layers.iter().zip(self.kv).enumerate() {
            // x = x + mlp(...) of the previous layer, fused with this layer's input norm.
            match i {
                0 => e.rms_norm(&s.x, &layer.attn_norm, &s.xn, n, h, eps)?,
                _ => e.rms_norm_add(&s.x, &s.down, prev_post, &layer.attn_norm, &s.xn, n, h, eps)?,
            }
            self.attention(e, i, layer, kv, n, pos)?; // s.o = attn(xn)
            e.rms_norm_add(&s.x, &s.o, layer.attn_post_norm.as_ref(), &layer.mlp_norm, &s.xn, n, h, eps)?; // x += o; xn = norm(x)
            e.gated(&layer.w_gate_up, &s.xn, n, &s.gate_up, &s.act, c.family.activation)?; // act(gate) * up
            e.linear(&layer.w_down, &s.act, n, &s.down)?;
            prev_post = layer.mlp_post_norm.as_ref();
        }
        e.rms_norm_add(&s.x, &s.down, prev_post, &self.w.norm, &s.xn, n, h, eps)?;
        e.copy(&s.xn, (n - 1) * h, &s.last, 0, h)?;
        e.linear(self.lm_head(), &s.last, 1, &s.logits)
    }

    /// The LM head: its own matrix, or the embedding when they are tied.
    fn lm_head(&self) -> &E::Matrix {
        self.w.lm_head.as_ref().unwrap_or(&self.w.embed)
    }

    /// Self-attention of layer `i` for n tokens at positions pos..: the fused q/k/v projection,
    /// RoPE with the KV-cache append, causal GQA attention (windowed on a local layer), output
    /// projection into s.o.
    fn attention(&self, e: &mut E, i: usize, l: &LayerOf<E::Matrix, E::Vector>, cache: &E::Cache, n: usize, pos: usize) -> Result<()> {
        let (c, s) = (self.c, self.a);
        let heads = Heads { n_heads: c.num_attention_heads, n_kv_heads: c.num_key_value_heads, head_dim: c.head_dim };
        let table = match (self.rope_local, c.is_local(i)) {
            (Some(local), true) => local,
            _ => self.rope,
        };
        e.linear(&l.wqkv, &s.xn, n, &s.qkv)?;
        e.rope(&s.qkv, &s.q, cache, table, l.qkv_bias.as_ref(), l.qk_norm.as_ref().map(|w| (w, c.rms_norm_eps)), heads, n, pos)?;
        e.attention(heads, c.scores(i), &s.q, cache, &s.attn, n, pos)?;
        e.linear(&l.wo, &s.attn, n, &s.o)
    }
}

/// Stored bytes and types of a device's weight matrix.
pub(crate) trait Stored {
    fn stored_bytes(&self) -> u64;
    fn stored_types(&self) -> Vec<WeightDType>;
    fn rows(&self) -> usize;
}

impl Stored for Matrix {
    fn stored_bytes(&self) -> u64 {
        self.bytes()
    }
    fn stored_types(&self) -> Vec<WeightDType> {
        self.dtypes()
    }
    fn rows(&self) -> usize {
        self.rows
    }
}

impl Stored for CpuWeights {
    fn stored_bytes(&self) -> u64 {
        self.bytes()
    }
    fn stored_types(&self) -> Vec<WeightDType> {
        self.dtypes()
    }
    fn rows(&self) -> usize {
        self.rows
    }
}

/// Bytes of a device's vector.
pub(crate) trait VectorBytes {
    fn vector_bytes(&self) -> u64;
}

impl VectorBytes for GpuBuffer {
    fn vector_bytes(&self) -> u64 {
        self.len
    }
}

impl VectorBytes for Vec<f32> {
    fn vector_bytes(&self) -> u64 {
        (self.len() * 4) as u64
    }
}

impl<M: Stored, V: VectorBytes> WeightsOf<M, V> {
    /// "q4_0", or "f32+q4_0" when the matrices' types differ.
    fn type_names(&self) -> String {
        let mut types: Vec<&str> = Vec::new();
        for dtype in self.matrices().flat_map(|m| m.stored_types()) {
            if !types.contains(&dtype.name()) {
                types.push(dtype.name());
            }
        }
        types.sort();
        types.join("+")
    }

    fn stored_bytes(&self) -> u64 {
        self.matrices().map(|m| m.stored_bytes()).sum::<u64>() + self.vectors().map(|v| v.vector_bytes()).sum::<u64>()
    }

    /// Bytes one decode step reads: every layer's matrices and vectors, the final norm, the LM
    /// head, and one embedding row.
    fn per_token(&self) -> u64 {
        let layers: u64 = self.layers.iter().map(|l| [&l.wqkv, &l.wo, &l.w_gate_up, &l.w_down].iter().map(|m| m.stored_bytes()).sum::<u64>() + l.vectors().map(|v| v.vector_bytes()).sum::<u64>()).sum();
        let head = self.lm_head.as_ref().unwrap_or(&self.embed).stored_bytes();
        let embed_row = self.embed.stored_bytes() / self.embed.rows().max(1) as u64;
        layers + head + self.norm.vector_bytes() + embed_row
    }
}

impl Llama {
    /// What loading `config`'s model from `weights` with `options` will put on the GPU, known
    /// before anything is read or uploaded: weights by stored type, the KV cache, activations.
    pub fn memory_plan(config: &LlamaConfig, weights: &dyn WeightSource, options: &ModelOptions) -> Result<MemoryPlan> {
        let c = config;
        let heads = Heads { n_heads: c.num_attention_heads, n_kv_heads: c.num_key_value_heads, head_dim: c.head_dim };
        heads.validate()?;
        let context = options.context.unwrap_or(DEFAULT_CONTEXT).min(c.max_position_embeddings).max(1);
        let w = describe_weights(c, &mut Counter { weights, to: options.weight_dtype })?;
        let mut weight_bytes: Vec<(WeightDType, u64)> = Vec::new();
        for &(dtype, bytes) in w.matrices().flatten() {
            match weight_bytes.iter_mut().find(|(d, _)| *d == dtype) {
                Some((_, b)) => *b += bytes,
                None => weight_bytes.push((dtype, bytes)),
            }
        }
        // Buffers that cannot be split, each of which must fit one binding: the KV cache first
        // (the one a long context outgrows first is named first), then the activations.
        let cache = heads.cache_bytes(context, options.kv_cache);
        let mut unsplit: Vec<(String, u64)> = vec![(format!("the KV cache of one layer for a context of {context} tokens"), cache)];
        describe_activations(c, |name, bytes| {
            unsplit.push((format!("the activation buffer `{name}`"), bytes));
            Ok(bytes)
        })?;
        unsplit.extend([
            (format!("the RoPE table for a context of {context} tokens"), RopeTable::bytes(c.head_dim, context)),
            (format!("the local layers' RoPE table for a context of {context} tokens"), if c.local.is_some() { RopeTable::bytes(c.head_dim, context) } else { 0 }),
            (format!("the sampler's scratch for a context of {context} tokens"), SampleScratch::bytes(c.vocab_size, context)),
            (format!("the decode attention scratch for a context of {context} tokens"), DecodeScratch::bytes(heads, context)),
            ("the parameter arena".to_string(), Recorder::arena_bytes(ARENA_DISPATCHES)),
            ("the logits readback".to_string(), (c.vocab_size * 4) as u64),
        ]);
        let activations = unsplit.iter().map(|u| u.1).sum::<u64>() - cache;
        Ok(MemoryPlan {
            context,
            weights: weight_bytes,
            norms: w.vectors().sum(),
            kv_cache: 2 * cache * c.num_hidden_layers as u64,
            kv_dtype: options.kv_cache,
            activations,
            unsplit,
        })
    }

    /// Loads the weights onto `device` a piece at a time (host memory stays near
    /// [`crate::ops::PIECE_BYTES`] beyond what the device holds). On a GPU, the model is first
    /// checked against [`Llama::memory_plan`]: one that does not fit is refused before the first
    /// upload. On the CPU the KV cache is f16 whatever `options.kv_cache` says (llama.cpp's
    /// default too).
    pub fn load(
        device: impl Into<Device>,
        config: LlamaConfig,
        weights: &mut dyn WeightSource,
        options: &ModelOptions,
        progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Llama> {
        let memory = Self::memory_plan(&config, weights, options)?;
        let c = &config;
        let (context, heads) = (memory.context, Heads { n_heads: c.num_attention_heads, n_kv_heads: c.num_key_value_heads, head_dim: c.head_dim });
        let device = device.into();
        device.check(&memory)?;
        let engine = match device {
            Device::Gpu(gpu) => {
                let g = &*gpu;
                let w = describe_weights(c, &mut Loader { gpu: g, weights, progress, to: options.weight_dtype })?;
                let kv = (0..c.num_hidden_layers).map(|i| KvCache::new(g, &format!("layer {i} cache"), heads, context, options.kv_cache)).collect::<Result<Vec<_>>>()?;
                let rope = RopeTable::new(g, &c.inv_freq(), context)?;
                let rope_local = c.local_inv_freq().map(|f| RopeTable::new(g, &f, context)).transpose()?;
                let s = Scratch {
                    a: describe_activations(c, |name, bytes| GpuBuffer::zeroed(g, name, bytes))?,
                    sample: SampleScratch::new(g, c.vocab_size, context)?,
                    decode: DecodeScratch::new(g, heads, context)?,
                    arena: Recorder::new(g, ARENA_DISPATCHES).into_arena(),
                    readback: Readback::new(g, (c.vocab_size * 4) as u64),
                };
                Engine::Gpu(GpuModel { gpu: gpu.clone(), w, kv, rope, rope_local, s })
            }
            Device::Cpu(pool) => {
                let w = describe_weights(c, &mut CpuLoader { weights, progress, to: options.weight_dtype })?;
                let kv = (0..c.num_hidden_layers).map(|_| RefCell::new(CpuKvCache::new(heads, context))).collect();
                let rope = crate::ops::rope::cos_sin(&c.inv_freq(), context);
                let rope_local = c.local_inv_freq().map(|f| crate::ops::rope::cos_sin(&f, context));
                let a = describe_activations(c, |_, bytes| Ok(RefCell::new(vec![0f32; (bytes / 4) as usize])))?;
                Engine::Cpu(CpuModel { pool, w, kv, rope, rope_local, a, token: 0 })
            }
        };
        Ok(Llama { config, context, memory, engine, last_dispatches: 0, last_submits: 0 })
    }

    /// The GPU the model runs on (None on the CPU).
    pub fn gpu(&self) -> Option<&Arc<Gpu>> {
        match &self.engine {
            Engine::Gpu(m) => Some(&m.gpu),
            Engine::Cpu(_) => None,
        }
    }

    /// The device, as [`Device::describe`] names it.
    pub fn device(&self) -> Device {
        match &self.engine {
            Engine::Gpu(m) => Device::Gpu(m.gpu.clone()),
            Engine::Cpu(m) => Device::Cpu(m.pool.clone()),
        }
    }

    /// The storage types of the weight matrices, e.g. "q4_0" or "f32+q4_0" when they differ.
    pub fn weight_types(&self) -> String {
        match &self.engine {
            Engine::Gpu(m) => m.w.type_names(),
            Engine::Cpu(m) => m.w.type_names(),
        }
    }

    /// Bytes of every buffer the model holds on its device, counted from the buffers themselves
    /// (what [`Llama::memory_plan`] predicts before loading, for a GPU).
    pub fn allocated_bytes(&self) -> u64 {
        match &self.engine {
            Engine::Gpu(m) => {
                let kv: u64 = m.kv.iter().map(|c| c.k.len + c.v.len).sum();
                let s = &m.s;
                let sample = s.sample.penalty_ids.len + s.sample.work.len + s.sample.token.len;
                let scratch = s.a.all().iter().map(|b| b.len).sum::<u64>() + sample + s.decode.partials.len + s.arena.size() + s.readback.capacity();
                m.w.stored_bytes() + kv + scratch + m.rope.buffer.len + m.rope_local.as_ref().map_or(0, |r| r.buffer.len)
            }
            Engine::Cpu(m) => {
                let kv: u64 = m.kv.iter().map(|c| (c.borrow().k.len() * 4) as u64).sum();
                let a: u64 = m.a.all().iter().map(|b| (b.borrow().len() * 4) as u64).sum();
                m.w.stored_bytes() + kv + a + ((m.rope.len() + m.rope_local.as_ref().map_or(0, Vec::len)) * 4) as u64
            }
        }
    }

    /// Bytes of weights one decode step reads: every layer's matrices and norms, the final norm,
    /// the LM head, and one embedding row.
    pub fn weight_bytes_per_token(&self) -> u64 {
        match &self.engine {
            Engine::Gpu(m) => m.w.per_token(),
            Engine::Cpu(m) => m.w.per_token(),
        }
    }

    /// Runs `tokens` at positions `start..` through the model, filling the KV cache; the logits
    /// of the last token are then available ([`Llama::logits`], [`Llama::argmax`]).
    pub fn forward(&mut self, tokens: &[u32], start: usize) -> Result<()> {
        self.forward_inner(tokens, start, None, Choice::None)
    }

    /// [`Llama::forward`] then the greedy choice, all in the same submit as the last chunk:
    /// a decode step is one submit and a 4-byte read.
    pub async fn forward_greedy(&mut self, tokens: &[u32], start: usize) -> Result<u32> {
        self.forward_inner(tokens, start, None, Choice::Greedy)?;
        self.chosen().await
    }

    /// [`Llama::forward`] then a sampled choice (temperature, top-k, top-p, min-p, and the
    /// repetition penalty over `history`) with the uniform draw `u`, on the device: on a GPU in
    /// the same submit, like [`Llama::forward_greedy`], one submit and a 4-byte read per step.
    pub async fn forward_sample(&mut self, tokens: &[u32], start: usize, options: &SamplingOptions, u: f32, history: &[u32]) -> Result<u32> {
        let n_penalty = match &self.engine {
            Engine::Gpu(m) if options.repetition_penalty != 1.0 => m.s.sample.set_penalty_ids(&m.gpu, history)?,
            _ => 0,
        };
        self.forward_inner(tokens, start, None, Choice::Sample { options, u, n_penalty, history })?;
        self.chosen().await
    }

    /// The token the last forward call chose.
    async fn chosen(&self) -> Result<u32> {
        match &self.engine {
            Engine::Gpu(m) => Ok(token_id(&m.s.readback.finish(&m.gpu, 4).await?)),
            Engine::Cpu(m) => {
                // In a browser the CPU computes on the worker's only thread: each step gives its
                // event loop a turn, so that a cancel message is seen before the next token.
                #[cfg(target_arch = "wasm32")]
                crate::generate::yield_to_host().await;
                Ok(m.token)
            }
        }
    }

    /// Runs the kernels of a typical reply once (a short prompt, then a greedy decode step),
    /// so that their shader compilation happens while loading instead of inside the first
    /// reply's time to first token. Long prompts (the tiled matmul) and sampling compile on
    /// first use: warming them too cost more than it saved (bundled model in SwiftShader: load
    /// 1.1 -> 6.8 s). The KV cache it writes is overwritten by the next generation, which
    /// starts at position 0.
    pub async fn warm_up(&mut self) -> Result<()> {
        let n = 2.min(self.context);
        self.forward_greedy(&vec![0; n], 0).await?;
        if self.context > n {
            self.forward_greedy(&[0], n).await?;
        }
        Ok(())
    }

    /// As [`Llama::forward`], also returning the logits of every token [n, vocab] (tests).
    pub fn forward_all_logits(&mut self, tokens: &[u32], start: usize) -> Result<Vec<f32>> {
        let mut all = Vec::with_capacity(tokens.len() * self.config.vocab_size);
        self.forward_inner(tokens, start, Some(&mut all), Choice::None)?;
        Ok(all)
    }

    fn forward_inner(&mut self, tokens: &[u32], start: usize, all: Option<&mut Vec<f32>>, choice: Choice<'_>) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        if start + tokens.len() > self.context {
            return Err(Error::ContextOverflow { prompt: start, requested: tokens.len(), context: self.context });
        }
        embedding::validate_ids(tokens, self.config.vocab_size)?;
        match &mut self.engine {
            Engine::Gpu(m) => {
                let (dispatches, submits) = m.forward(&self.config, tokens, start, all, choice)?;
                self.last_dispatches = dispatches;
                self.last_submits = submits;
            }
            Engine::Cpu(m) => m.forward(&self.config, tokens, start, all, choice)?,
        }
        Ok(())
    }

    /// Logits of the last token of the last forward call.
    pub async fn logits(&self) -> Result<Vec<f32>> {
        match &self.engine {
            Engine::Gpu(m) => {
                let bytes = m.s.readback.read(&m.gpu, &m.s.a.logits.buffer, 0, m.s.a.logits.len).await?;
                Ok(bytemuck::pod_collect_to_vec(&bytes))
            }
            Engine::Cpu(m) => Ok(m.a.logits.borrow()[..self.config.vocab_size].to_vec()),
        }
    }

    /// Greedy choice from the last forward call, computed on the device (a GPU reads back 4
    /// bytes).
    pub async fn argmax(&self) -> Result<u32> {
        match &self.engine {
            Engine::Gpu(m) => {
                let mut rec = Recorder::with_arena(&m.gpu, m.s.arena.clone());
                argmax::encode(&mut rec, &m.s.a.logits, &m.s.a.token, 1, self.config.vocab_size)?;
                rec.submit()?;
                let bytes = m.s.readback.read(&m.gpu, &m.s.a.token.buffer, 0, 4).await?;
                Ok(token_id(&bytes))
            }
            Engine::Cpu(m) => Ok(crate::cpu::ops::argmax(&m.a.logits.borrow()[..self.config.vocab_size])),
        }
    }
}

impl GpuModel {
    fn net<'a, 'r, 'g>(&'a self, c: &'a LlamaConfig) -> Net<'a, GpuExec<'r, 'g>> {
        Net { c, w: &self.w, kv: &self.kv, rope: &self.rope, rope_local: self.rope_local.as_ref(), a: &self.s.a }
    }

    /// Records and submits the chunks; returns (dispatches, submits).
    fn forward(&mut self, c: &LlamaConfig, tokens: &[u32], start: usize, mut all: Option<&mut Vec<f32>>, choice: Choice<'_>) -> Result<(u64, u64)> {
        let gpu = self.gpu.clone();
        let mut rec = Recorder::with_arena(&gpu, self.s.arena.clone());
        for (i, chunk) in tokens.chunks(PREFILL_CHUNK).enumerate() {
            let pos = start + i * PREFILL_CHUNK;
            self.s.a.ids.write(&gpu, 0, bytemuck::cast_slice(chunk))?;
            self.net(c).chunk(&mut GpuExec { rec: &mut rec, decode: &self.s.decode }, chunk.len(), pos)?;
            if let Some(all) = all.as_deref_mut() {
                all.extend(self.all_logits(c, &mut rec, chunk.len())?);
            }
            if (i + 1) * PREFILL_CHUNK >= tokens.len() {
                let vocab = c.vocab_size;
                match choice {
                    Choice::None => {}
                    Choice::Greedy => {
                        argmax::encode(&mut rec, &self.s.a.logits, &self.s.a.token, 1, vocab)?;
                        rec.copy_to_readback(&self.s.a.token, 0, &self.s.readback, 4)?;
                    }
                    Choice::Sample { options, u, n_penalty, .. } => {
                        sample::encode(&mut rec, &self.s.a.logits, vocab, &self.s.sample, n_penalty, options, u)?;
                        rec.copy_to_readback(&self.s.sample.token, 0, &self.s.readback, 4)?;
                    }
                }
            }
            rec.submit()?;
        }
        Ok((rec.dispatches, rec.submits))
    }

    /// Logits of every row of the current chunk (after the final norm in s.xn).
    fn all_logits(&self, c: &LlamaConfig, rec: &mut Recorder<'_>, n: usize) -> Result<Vec<f32>> {
        let out = GpuBuffer::zeroed(&self.gpu, "all logits", (n * c.vocab_size * 4) as u64)?;
        matmul::encode(rec, self.net(c).lm_head(), &self.s.a.xn, n, &out)?;
        rec.submit()?;
        read_blocking(&self.gpu, &out)
    }
}

impl CpuModel {
    fn forward(&mut self, c: &LlamaConfig, tokens: &[u32], start: usize, mut all: Option<&mut Vec<f32>>, choice: Choice<'_>) -> Result<()> {
        let pool = self.pool.clone();
        let mut e = CpuExec { pool: &pool };
        let net = Net { c, w: &self.w, kv: &self.kv, rope: &self.rope, rope_local: self.rope_local.as_ref(), a: &self.a };
        for (i, chunk) in tokens.chunks(PREFILL_CHUNK).enumerate() {
            let pos = start + i * PREFILL_CHUNK;
            self.a.ids.borrow_mut()[..chunk.len()].iter_mut().zip(chunk).for_each(|(v, &id)| *v = f32::from_bits(id));
            net.chunk(&mut e, chunk.len(), pos)?;
            if let Some(all) = all.as_deref_mut() {
                let head = net.lm_head();
                let mut out = vec![0f32; chunk.len() * c.vocab_size];
                head.matvec(&pool, &self.a.xn.borrow()[..chunk.len() * c.hidden_size], chunk.len(), &mut out);
                all.extend(out);
            }
        }
        let logits = &self.a.logits.borrow()[..c.vocab_size];
        self.token = match choice {
            Choice::None => self.token,
            Choice::Greedy => crate::cpu::ops::argmax(logits),
            Choice::Sample { options, u, history, .. } => {
                let mut l = logits.to_vec();
                if options.repetition_penalty != 1.0 {
                    crate::sampling::apply_repetition_penalty(&mut l, history, options.repetition_penalty);
                }
                crate::sampling::choose(&l, options, u)
            }
        };
        Ok(())
    }
}

impl Drop for Llama {
    /// Cached bind groups hold the weights' buffers: let them go with the model.
    fn drop(&mut self) {
        if let Engine::Gpu(m) = &self.engine {
            m.gpu.forget_bind_groups();
        }
    }
}

/// What a forward call chooses after the last token's logits.
#[derive(Clone, Copy)]
enum Choice<'a> {
    None,
    Greedy,
    Sample { options: &'a SamplingOptions, u: f32, n_penalty: usize, history: &'a [u32] },
}

#[cfg(not(target_arch = "wasm32"))]
fn read_blocking(gpu: &Gpu, buf: &GpuBuffer) -> Result<Vec<f32>> {
    pollster::block_on(buf.read_f32(gpu))
}

#[cfg(target_arch = "wasm32")]
fn read_blocking(_gpu: &Gpu, _buf: &GpuBuffer) -> Result<Vec<f32>> {
    Err(Error::Unsupported { what: "all-position logits in the browser".into(), hint: "use forward + logits".into() })
}

/// The token id in the first 4 bytes of a readback.
fn token_id(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// The file tensors of one GPU matrix, checked to have their shapes, and the type it is stored
/// as: the requested one, else the parts' own common type (F32 if they differ).
/// The file entries of a matrix's parts and the type each part is stored as: `to` where asked
/// (a type Cria cannot quantize to is an error unless the part already has it), else the
/// part's own type; interleaved parts of different types (gate and up quantized differently,
/// which llama.cpp's own mixes never do) share f32, which holds both exactly.
fn matrix_parts(weights: &dyn WeightSource, parts: &[(&str, usize)], cols: usize, to: Option<WeightDType>, layout: Layout) -> Result<(Vec<TensorEntry>, Vec<WeightDType>)> {
    let entries = parts.iter().map(|&(n, rows)| entry(weights, n, &[rows, cols])).collect::<Result<Vec<_>>>()?;
    let mut kinds: Vec<WeightDType> = entries.iter().map(|e| e.dtype.natural()).collect();
    if let Some(to) = to {
        if !crate::quant::can_quantize(to) && kinds.iter().any(|&k| k != to) {
            return Err(crate::quant::cannot_quantize(to));
        }
        kinds.fill(crate::quant::mix::fallback(to, cols, crate::quant::mix::Blocks::Padded));
    } else if layout == Layout::Interleaved && kinds.iter().any(|&k| k != kinds[0]) {
        kinds.fill(WeightDType::F32);
    }
    Ok((entries, kinds))
}

/// The entry of `name`, checked to have `shape`.
fn entry(weights: &dyn WeightSource, name: &str, shape: &[usize]) -> Result<TensorEntry> {
    let entry = weights.entry(name)?;
    if entry.shape != shape {
        return Err(Error::TensorShape { tensor: name.to_string(), expected: format!("{shape:?}"), got: format!("{:?}", entry.shape) });
    }
    Ok(entry)
}

/// Builds nothing: counts the bytes each weight will take on the GPU.
struct Counter<'a> {
    weights: &'a dyn WeightSource,
    to: Option<WeightDType>,
}

impl Build for Counter<'_> {
    /// Bytes of each part, by stored type.
    type M = Vec<(WeightDType, u64)>;
    type V = u64;
    fn matrix(&mut self, _name: &str, parts: &[(&str, usize)], cols: usize, layout: Layout) -> Result<Self::M> {
        let (_, dtypes) = matrix_parts(self.weights, parts, cols, self.to, layout)?;
        Ok(parts.iter().zip(dtypes).map(|(&(_, rows), dtype)| (dtype, rows as u64 * dtype.row_words(cols) as u64 * 4)).collect())
    }
    fn vector(&mut self, _name: &str, parts: &[(&str, usize)], _offset: f32) -> Result<u64> {
        let mut len = 0;
        for &(name, n) in parts {
            entry(self.weights, name, &[n])?;
            len += n;
        }
        Ok((len * 4) as u64)
    }
    fn has(&self, name: &str) -> bool {
        self.weights.has(name)
    }
    fn norms_as_applied(&self) -> bool {
        self.weights.norms_as_applied()
    }
}

/// Uploads each weight, streaming its tensors through host memory a piece at a time.
struct Loader<'a> {
    gpu: &'a Gpu,
    weights: &'a mut dyn WeightSource,
    progress: &'a mut dyn FnMut(LoadProgress),
    to: Option<WeightDType>,
}

impl Build for Loader<'_> {
    type M = Matrix;
    type V = GpuBuffer;

    /// See [`Matrix::from_parts`]; each piece is reported as it is read.
    fn matrix(&mut self, name: &str, parts: &[(&str, usize)], cols: usize, layout: Layout) -> Result<Matrix> {
        let (entries, dtypes) = matrix_parts(self.weights, parts, cols, self.to, layout)?;
        let rows: Vec<usize> = parts.iter().map(|p| p.1).collect();
        let (weights, progress) = (&mut *self.weights, &mut *self.progress);
        Matrix::from_parts(self.gpu, name, cols, &dtypes, &rows, layout, &mut |i, range| read_part(weights, progress, parts[i].0, &entries[i], range))
    }

    fn vector(&mut self, name: &str, parts: &[(&str, usize)], offset: f32) -> Result<GpuBuffer> {
        GpuBuffer::from_slice(self.gpu, name, &read_vector(self.weights, self.progress, parts, offset)?)
    }

    fn has(&self, name: &str) -> bool {
        self.weights.has(name)
    }
    fn norms_as_applied(&self) -> bool {
        self.weights.norms_as_applied()
    }
}

/// Reads each weight into host memory for the CPU device, streaming its tensors a piece at a
/// time, kept in their file types (or converted to `to`).
struct CpuLoader<'a> {
    weights: &'a mut dyn WeightSource,
    progress: &'a mut dyn FnMut(LoadProgress),
    to: Option<WeightDType>,
}

impl Build for CpuLoader<'_> {
    type M = CpuWeights;
    type V = Vec<f32>;

    fn matrix(&mut self, name: &str, parts: &[(&str, usize)], cols: usize, layout: Layout) -> Result<CpuWeights> {
        let (entries, dtypes) = matrix_parts(self.weights, parts, cols, self.to, layout)?;
        let rows: Vec<usize> = parts.iter().map(|p| p.1).collect();
        let (weights, progress) = (&mut *self.weights, &mut *self.progress);
        CpuWeights::from_parts(name, cols, &dtypes, &rows, layout, &mut |i, range| read_part(weights, progress, parts[i].0, &entries[i], range))
    }

    fn vector(&mut self, _name: &str, parts: &[(&str, usize)], offset: f32) -> Result<Vec<f32>> {
        read_vector(self.weights, self.progress, parts, offset)
    }

    fn has(&self, name: &str) -> bool {
        self.weights.has(name)
    }
    fn norms_as_applied(&self) -> bool {
        self.weights.norms_as_applied()
    }
}

/// Rows `range` of the file tensor `part` for either loader: block scales checked (a NaN scale
/// is refused before it reaches a device), the piece reported.
fn read_part(weights: &mut dyn WeightSource, progress: &mut dyn FnMut(LoadProgress), part: &str, entry: &TensorEntry, range: std::ops::Range<usize>) -> Result<HostTensor> {
    let tensor = weights.read_rows(part, range.clone())?;
    if let HostTensor::Quant { dtype: WeightDType::Block(t), bytes } = &tensor {
        crate::quant::check_scales(*t, bytes, entry.row_bytes() as usize, range.start).map_err(|what| Error::NonFinite { tensor: part.to_string(), what })?;
    }
    progress(LoadProgress { tensor: part.to_string(), bytes: range.len() as u64 * entry.row_bytes() });
    Ok(tensor)
}

/// The 1-D tensors `parts` end to end, each value checked finite and `offset` added (in f32, as
/// transformers forms `1.0 + self.weight.float()`).
fn read_vector(weights: &mut dyn WeightSource, progress: &mut dyn FnMut(LoadProgress), parts: &[(&str, usize)], offset: f32) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    for &(part, len) in parts {
        let entry = entry(weights, part, &[len])?;
        let values = weights.read_rows(part, 0..len)?.into_f32();
        if let Some(i) = values.iter().position(|x| !x.is_finite()) {
            return Err(Error::NonFinite { tensor: part.to_string(), what: format!("value {i} is {}", values[i]) });
        }
        v.extend(values.into_iter().map(|x| x + offset));
        progress(LoadProgress { tensor: part.to_string(), bytes: entry.end - entry.start });
    }
    Ok(v)
}
