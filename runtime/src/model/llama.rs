//! The Llama forward pass on the GPU (HF `modeling_llama.LlamaForCausalLM`): embeddings, then
//! per layer `h = x + attn(norm(x))`, `x = h + mlp(norm(h))`, then the final norm and the LM head.
//! Prefill runs many tokens through the matmul kernels; decode runs one token through matvec
//! and the split-K attention. All activations and the KV cache are allocated at load.

use super::config::LlamaConfig;
use super::weights::{LoadProgress, WeightSource};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuBuffer, Readback, Recorder};
use crate::ops::attention::{self, DecodeScratch, Heads};
use crate::ops::rope::RopeTable;
use crate::model::safetensors::TensorEntry;
use crate::ops::sample::{self, SampleScratch};
use crate::ops::{argmax, embedding, matmul, matvec, rms_norm, rope, swiglu, Layout, Matrix, WeightDType};
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
}

struct Layer {
    attn_norm: GpuBuffer,
    /// q_proj, k_proj and v_proj stacked: one pass over x.
    wqkv: Matrix,
    wo: Matrix,
    mlp_norm: GpuBuffer,
    /// gate_proj and up_proj rows interleaved: one pass, SwiGLU fused into its output.
    w_gate_up: Matrix,
    w_down: Matrix,
    k_cache: GpuBuffer,
    v_cache: GpuBuffer,
}

/// Activations for up to PREFILL_CHUNK tokens.
struct Scratch {
    ids: GpuBuffer,
    x: GpuBuffer,
    xn: GpuBuffer,
    qkv: GpuBuffer,
    q: GpuBuffer,
    attn: GpuBuffer,
    o: GpuBuffer,
    gate_up: GpuBuffer,
    act: GpuBuffer,
    down: GpuBuffer,
    last: GpuBuffer,
    logits: GpuBuffer,
    token: GpuBuffer,
    sample: SampleScratch,
    decode: DecodeScratch,
    arena: wgpu::Buffer,
    readback: Readback,
}

pub struct Llama {
    pub gpu: Arc<Gpu>,
    pub config: LlamaConfig,
    pub context: usize,
    embed: Matrix,
    layers: Vec<Layer>,
    norm: GpuBuffer,
    lm_head: Option<Matrix>,
    rope: RopeTable,
    s: Scratch,
    /// Dispatches and submits of the last forward call.
    pub last_dispatches: u64,
    pub last_submits: u64,
}

impl Llama {
    /// Uploads the weights a piece at a time (host memory stays near [`crate::ops::PIECE_BYTES`],
    /// whatever the size of the tensors).
    pub fn load(
        gpu: Arc<Gpu>,
        config: LlamaConfig,
        weights: &mut dyn WeightSource,
        options: &ModelOptions,
        progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Llama> {
        let c = &config;
        let heads = Heads { n_heads: c.num_attention_heads, n_kv_heads: c.num_key_value_heads, head_dim: c.head_dim };
        heads.validate()?;
        let context = options.context.unwrap_or(DEFAULT_CONTEXT).min(c.max_position_embeddings).max(1);
        let (h, q_dim, kv_dim, inter, vocab) = (c.hidden_size, c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim, c.intermediate_size, c.vocab_size);
        let g = &*gpu;
        // Before any upload: the per-layer KV cache is one buffer, and a long context can
        // outgrow the device's buffers however the weights are split.
        let kv_bytes = (context as u64) * (kv_dim as u64) * 4;
        if kv_bytes > g.max_binding_bytes() {
            let fits = g.max_binding_bytes() / (kv_dim as u64 * 4);
            return Err(Error::ModelTooLarge {
                what: format!("the KV cache of one layer for a context of {context} tokens"),
                bytes: kv_bytes,
                limit: g.max_binding_bytes(),
                hint: format!("load it with a shorter context (at most {fits} tokens on this device)"),
            });
        }
        let mut loader = Loader { gpu: g, weights, progress, to: options.weight_dtype };
        let embed = loader.matrix("model.embed_tokens.weight", vocab, h)?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(Layer {
                attn_norm: loader.vector(&format!("{p}.input_layernorm.weight"), h)?,
                wqkv: loader.matrices(
                    &format!("{p}.self_attn.qkv"),
                    &[(&format!("{p}.self_attn.q_proj.weight"), q_dim), (&format!("{p}.self_attn.k_proj.weight"), kv_dim), (&format!("{p}.self_attn.v_proj.weight"), kv_dim)],
                    h,
                    Layout::Stacked,
                )?,
                wo: loader.matrix(&format!("{p}.self_attn.o_proj.weight"), h, q_dim)?,
                mlp_norm: loader.vector(&format!("{p}.post_attention_layernorm.weight"), h)?,
                w_gate_up: loader.matrices(
                    &format!("{p}.mlp.gate_up"),
                    &[(&format!("{p}.mlp.gate_proj.weight"), inter), (&format!("{p}.mlp.up_proj.weight"), inter)],
                    h,
                    Layout::Interleaved,
                )?,
                w_down: loader.matrix(&format!("{p}.mlp.down_proj.weight"), h, inter)?,
                k_cache: GpuBuffer::zeroed(g, &format!("{p} k cache"), (context * kv_dim * 4) as u64)?,
                v_cache: GpuBuffer::zeroed(g, &format!("{p} v cache"), (context * kv_dim * 4) as u64)?,
            });
        }
        let norm = loader.vector("model.norm.weight", h)?;
        // Tied embeddings reuse embed_tokens as the LM head (HF drops lm_head.weight then).
        let lm_head = if c.tie_word_embeddings && !loader.weights.has("lm_head.weight") {
            None
        } else {
            Some(loader.matrix("lm_head.weight", vocab, h)?)
        };
        let rope = RopeTable::new(g, &c.inv_freq(), context)?;
        let n = PREFILL_CHUNK;
        let f = |name: &str, elems: usize| GpuBuffer::zeroed(g, name, (elems * 4) as u64);
        let s = Scratch {
            ids: f("ids", n)?,
            x: f("x", n * h)?,
            xn: f("xn", n * h)?,
            qkv: f("qkv", n * (q_dim + 2 * kv_dim))?,
            q: f("q", n * q_dim)?,
            attn: f("attn", n * q_dim)?,
            o: f("o", n * h)?,
            gate_up: f("gate_up", n * 2 * inter)?,
            act: f("act", n * inter)?,
            down: f("down", n * h)?,
            last: f("last hidden", h)?,
            logits: f("logits", vocab)?,
            token: f("next token", 1)?,
            sample: SampleScratch::new(g, vocab, context)?,
            decode: DecodeScratch::new(g, heads, context)?,
            arena: Recorder::new(g, 1024).into_arena(),
            readback: Readback::new(g, (vocab * 4) as u64),
        };
        Ok(Llama { gpu: gpu.clone(), config, context, embed, layers, norm, lm_head, rope, s, last_dispatches: 0, last_submits: 0 })
    }

    fn heads(&self) -> Heads {
        Heads { n_heads: self.config.num_attention_heads, n_kv_heads: self.config.num_key_value_heads, head_dim: self.config.head_dim }
    }

    /// The storage types of the weight matrices, e.g. "q4_0" or "f32+q4_0" when they differ.
    pub fn weight_types(&self) -> String {
        let mut types: Vec<&str> = Vec::new();
        let matrices = self.layers.iter().flat_map(|l| [&l.wqkv, &l.wo, &l.w_gate_up, &l.w_down]);
        for m in matrices.chain(self.lm_head.iter()).chain([&self.embed]) {
            if !types.contains(&m.dtype.name()) {
                types.push(m.dtype.name());
            }
        }
        types.sort();
        types.join("+")
    }

    /// Bytes of weights one decode step reads: every layer's matrices and norms, the final norm,
    /// the LM head, and one embedding row.
    pub fn weight_bytes_per_token(&self) -> u64 {
        let layers: u64 = self
            .layers
            .iter()
            .map(|l| {
                [&l.wqkv, &l.wo, &l.w_gate_up, &l.w_down].iter().map(|m| m.bytes()).sum::<u64>()
                    + l.attn_norm.len
                    + l.mlp_norm.len
            })
            .sum();
        let head = self.lm_head.as_ref().unwrap_or(&self.embed).bytes();
        let embed_row = self.embed.bytes() / self.embed.rows.max(1) as u64;
        layers + head + self.norm.len + embed_row
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
        let bytes = self.s.readback.finish(&self.gpu, 4).await?;
        Ok(token_id(&bytes))
    }

    /// [`Llama::forward`] then a sampled choice (temperature, top-k, top-p, min-p, and the
    /// repetition penalty over `history`) on the GPU with the uniform draw `u`, in the same
    /// submit: like [`Llama::forward_greedy`], one submit and a 4-byte read per step.
    pub async fn forward_sample(&mut self, tokens: &[u32], start: usize, options: &SamplingOptions, u: f32, history: &[u32]) -> Result<u32> {
        let n_penalty = if options.repetition_penalty != 1.0 { self.s.sample.set_penalty_ids(&self.gpu, history)? } else { 0 };
        self.forward_inner(tokens, start, None, Choice::Sample { options, u, n_penalty })?;
        let bytes = self.s.readback.finish(&self.gpu, 4).await?;
        Ok(token_id(&bytes))
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

    fn forward_inner(&mut self, tokens: &[u32], start: usize, mut all: Option<&mut Vec<f32>>, choice: Choice<'_>) -> Result<()> {
        if tokens.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        if start + tokens.len() > self.context {
            return Err(Error::ContextOverflow { prompt: start, requested: tokens.len(), context: self.context });
        }
        embedding::validate_ids(tokens, self.config.vocab_size)?;
        let gpu = self.gpu.clone();
        let mut rec = Recorder::with_arena(&gpu, self.s.arena.clone());
        for (i, chunk) in tokens.chunks(PREFILL_CHUNK).enumerate() {
            let pos = start + i * PREFILL_CHUNK;
            self.s.ids.write(&gpu, 0, bytemuck::cast_slice(chunk))?;
            self.record_chunk(&mut rec, chunk.len(), pos)?;
            if let Some(all) = all.as_deref_mut() {
                all.extend(self.all_logits(&mut rec, chunk.len())?);
            }
            if (i + 1) * PREFILL_CHUNK >= tokens.len() {
                let vocab = self.config.vocab_size;
                match choice {
                    Choice::None => {}
                    Choice::Greedy => {
                        argmax::encode(&mut rec, &self.s.logits, &self.s.token, 1, vocab)?;
                        rec.copy_to_readback(&self.s.token, 0, &self.s.readback, 4)?;
                    }
                    Choice::Sample { options, u, n_penalty } => {
                        sample::encode(&mut rec, &self.s.logits, vocab, &self.s.sample, n_penalty, options, u)?;
                        rec.copy_to_readback(&self.s.sample.token, 0, &self.s.readback, 4)?;
                    }
                }
            }
            rec.submit()?;
        }
        self.last_dispatches = rec.dispatches;
        self.last_submits = rec.submits;
        Ok(())
    }

    /// One chunk of n tokens at positions pos.. : the whole network, ending with the logits of
    /// the chunk's last token.
    fn record_chunk(&self, rec: &mut Recorder<'_>, n: usize, pos: usize) -> Result<()> {
        let (c, s) = (&self.config, &self.s);
        let (h, eps) = (c.hidden_size, c.rms_norm_eps);
        embedding::encode(rec, &self.embed, &s.ids, n, &s.x)?;
        for (i, layer) in self.layers.iter().enumerate() {
            // x = x + mlp(...) of the previous layer, fused with this layer's input norm.
            match i {
                0 => rms_norm::encode(rec, &s.x, &layer.attn_norm, &s.xn, n, h, eps)?,
                _ => rms_norm::encode_add(rec, &s.x, &s.down, &layer.attn_norm, &s.xn, n, h, eps)?,
            }
            self.attention(rec, layer, n, pos)?; // s.o = attn(xn)
            rms_norm::encode_add(rec, &s.x, &s.o, &layer.mlp_norm, &s.xn, n, h, eps)?; // x += o; xn = norm(x)
            self.mlp(rec, layer, n)?; // s.down = mlp(xn)
        }
        rms_norm::encode_add(rec, &s.x, &s.down, &self.norm, &s.xn, n, h, eps)?;
        rec.copy(&s.xn, ((n - 1) * h * 4) as u64, &s.last, 0, (h * 4) as u64)?;
        matvec::encode(rec, self.lm_head.as_ref().unwrap_or(&self.embed), &s.last, &s.logits)
    }

    /// Self-attention of n tokens at positions pos..: the fused q/k/v projection, RoPE with the
    /// KV-cache append, causal GQA attention, output projection into s.o.
    fn attention(&self, rec: &mut Recorder<'_>, l: &Layer, n: usize, pos: usize) -> Result<()> {
        let s = &self.s;
        let heads = self.heads();
        linear(rec, &l.wqkv, &s.xn, n, &s.qkv)?;
        let io = rope::RopeIo { qkv: &s.qkv, q: &s.q, k_cache: &l.k_cache, v_cache: &l.v_cache };
        rope::encode(rec, &io, &self.rope, n, heads.n_heads, heads.n_kv_heads, pos)?;
        if n == 1 {
            attention::encode_decode(rec, heads, &s.q, &l.k_cache, &l.v_cache, &s.decode, &s.attn, pos + 1)?;
        } else {
            attention::encode_prefill(rec, heads, &s.q, &l.k_cache, &l.v_cache, &s.attn, n, pos)?;
        }
        linear(rec, &l.wo, &s.attn, n, &s.o)
    }

    /// SwiGLU MLP of xn into s.down: down(silu(gate(x)) * up(x)). For a few tokens the gate/up
    /// matvec applies the SwiGLU itself; prefill runs the matmul, then SwiGLU over the pairs.
    fn mlp(&self, rec: &mut Recorder<'_>, l: &Layer, n: usize) -> Result<()> {
        let s = &self.s;
        if n <= MATVEC_TOKENS {
            matvec::encode_glu(rec, &l.w_gate_up, &s.xn, n, &s.act)?;
        } else {
            matmul::encode(rec, &l.w_gate_up, &s.xn, n, &s.gate_up)?;
            swiglu::encode_pairs(rec, &s.gate_up, &s.act, n * self.config.intermediate_size)?;
        }
        linear(rec, &l.w_down, &s.act, n, &s.down)
    }

    /// Logits of every row of the current chunk (after the final norm in s.xn).
    fn all_logits(&self, rec: &mut Recorder<'_>, n: usize) -> Result<Vec<f32>> {
        let out = GpuBuffer::zeroed(&self.gpu, "all logits", (n * self.config.vocab_size * 4) as u64)?;
        matmul::encode(rec, self.lm_head.as_ref().unwrap_or(&self.embed), &self.s.xn, n, &out)?;
        rec.submit()?;
        read_blocking(&self.gpu, &out)
    }

    /// Logits of the last token of the last forward call.
    pub async fn logits(&self) -> Result<Vec<f32>> {
        let bytes = self.s.readback.read(&self.gpu, &self.s.logits.buffer, 0, self.s.logits.len).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Greedy choice from the last forward call, computed on the GPU (reads back 4 bytes).
    pub async fn argmax(&self) -> Result<u32> {
        let mut rec = Recorder::with_arena(&self.gpu, self.s.arena.clone());
        argmax::encode(&mut rec, &self.s.logits, &self.s.token, 1, self.config.vocab_size)?;
        rec.submit()?;
        let bytes = self.s.readback.read(&self.gpu, &self.s.token.buffer, 0, 4).await?;
        Ok(token_id(&bytes))
    }
}

impl Drop for Llama {
    /// Cached bind groups hold the weights' buffers: let them go with the model.
    fn drop(&mut self) {
        self.gpu.forget_bind_groups();
    }
}

/// What a forward call chooses on the GPU after the last token's logits.
#[derive(Clone, Copy)]
enum Choice<'a> {
    None,
    Greedy,
    Sample { options: &'a SamplingOptions, u: f32, n_penalty: usize },
}

/// Up to this many tokens, a linear layer runs as matrix-vector products: the 64x64 tiles of
/// the matmul would compute mostly padding.
const MATVEC_TOKENS: usize = 8;

/// x [n, in] -> out [n, out] through W [out, in]: matvec for a few tokens, tiled matmul for many.
fn linear(rec: &mut Recorder<'_>, w: &Matrix, x: &GpuBuffer, n: usize, out: &GpuBuffer) -> Result<()> {
    if n <= MATVEC_TOKENS { matvec::encode_tokens(rec, w, x, n, out) } else { matmul::encode(rec, w, x, n, out) }
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

struct Loader<'a> {
    gpu: &'a Gpu,
    weights: &'a mut dyn WeightSource,
    progress: &'a mut dyn FnMut(LoadProgress),
    to: Option<WeightDType>,
}

impl Loader<'_> {
    /// The entry of `name`, checked to have `shape`.
    fn entry(&self, name: &str, shape: &[usize]) -> Result<TensorEntry> {
        let entry = self.weights.entry(name)?;
        if entry.shape != shape {
            return Err(Error::TensorShape { tensor: name.to_string(), expected: format!("{shape:?}"), got: format!("{:?}", entry.shape) });
        }
        Ok(entry)
    }

    /// Several tensors of `cols` columns as one matrix (see [`Matrix::from_parts`]), stored as
    /// the requested type, else as their own common type (F32 if they differ). The tensors
    /// stream through host memory a piece at a time, each piece reported as it is read.
    fn matrices(&mut self, name: &str, parts: &[(&str, usize)], cols: usize, layout: Layout) -> Result<Matrix> {
        let entries = parts.iter().map(|&(n, rows)| self.entry(n, &[rows, cols])).collect::<Result<Vec<_>>>()?;
        let kinds: Vec<WeightDType> = entries.iter().map(|e| e.dtype.natural()).collect();
        let dtype = self.to.unwrap_or(if kinds.iter().all(|&k| k == kinds[0]) { kinds[0] } else { WeightDType::F32 });
        let rows: Vec<usize> = parts.iter().map(|p| p.1).collect();
        let (weights, progress) = (&mut *self.weights, &mut *self.progress);
        Matrix::from_parts(self.gpu, name, cols, dtype, &rows, layout, &mut |i, range| {
            let tensor = weights.read_rows(parts[i].0, range.clone())?;
            progress(LoadProgress { tensor: parts[i].0.to_string(), bytes: range.len() as u64 * entries[i].row_bytes() });
            Ok(tensor)
        })
    }

    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        self.matrices(name, &[(name, rows)], cols, Layout::Stacked)
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<GpuBuffer> {
        let entry = self.entry(name, &[len])?;
        let v = self.weights.read_rows(name, 0..len)?.into_f32();
        (self.progress)(LoadProgress { tensor: name.to_string(), bytes: entry.end - entry.start });
        GpuBuffer::from_slice(self.gpu, name, &v)
    }
}
