//! Llama (HF `LlamaForCausalLM`) forward and backward over one flat parameter vector.
//!
//! Parameters live in one `Vec<T>` in a fixed order with HF tensor names (see [`ParamLayout`]),
//! as in llm.c: the optimizer, gradient clipping and checkpoints treat them as one slice.

use crate::config::LlamaConfig;
use crate::ops::{self, Scalar};
use crate::rng::Rng;
use std::ops::Range;

/// One named tensor inside the flat parameter vector.
#[derive(Clone, Debug)]
pub struct TensorSpec {
    /// HF name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    /// Weight decay applies to matrices, not to norm weights.
    pub decay: bool,
}

impl TensorSpec {
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.shape.iter().product::<usize>()
    }
}

#[derive(Clone, Debug)]
pub struct LayerParams {
    pub input_norm: Range<usize>,
    pub wq: Range<usize>,
    pub wk: Range<usize>,
    pub wv: Range<usize>,
    pub wo: Range<usize>,
    pub post_norm: Range<usize>,
    pub w_gate: Range<usize>,
    pub w_up: Range<usize>,
    pub w_down: Range<usize>,
}

#[derive(Clone, Debug)]
pub struct ParamLayout {
    pub tensors: Vec<TensorSpec>,
    pub embed: Range<usize>,
    pub layers: Vec<LayerParams>,
    pub norm: Range<usize>,
    /// The lm_head weight; equals `embed` when embeddings are tied.
    pub lm_head: Range<usize>,
    pub total: usize,
}

impl ParamLayout {
    pub fn new(cfg: &LlamaConfig) -> Self {
        let (c, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let (qd, kvd) = (cfg.num_attention_heads * cfg.head_dim(), cfg.kv_dim());
        let mut tensors = Vec::new();
        let mut offset = 0;
        let mut add = |name: String, shape: Vec<usize>, decay: bool| {
            let n: usize = shape.iter().product();
            tensors.push(TensorSpec { name, shape, offset, decay });
            offset += n;
            offset - n..offset
        };
        let embed = add("model.embed_tokens.weight".into(), vec![v, c], true);
        let mut layers = Vec::new();
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            layers.push(LayerParams {
                input_norm: add(format!("{p}.input_layernorm.weight"), vec![c], false),
                wq: add(format!("{p}.self_attn.q_proj.weight"), vec![qd, c], true),
                wk: add(format!("{p}.self_attn.k_proj.weight"), vec![kvd, c], true),
                wv: add(format!("{p}.self_attn.v_proj.weight"), vec![kvd, c], true),
                wo: add(format!("{p}.self_attn.o_proj.weight"), vec![c, qd], true),
                post_norm: add(format!("{p}.post_attention_layernorm.weight"), vec![c], false),
                w_gate: add(format!("{p}.mlp.gate_proj.weight"), vec![i, c], true),
                w_up: add(format!("{p}.mlp.up_proj.weight"), vec![i, c], true),
                w_down: add(format!("{p}.mlp.down_proj.weight"), vec![c, i], true),
            });
        }
        let norm = add("model.norm.weight".into(), vec![c], false);
        let lm_head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            add("lm_head.weight".into(), vec![v, c], true)
        };
        ParamLayout { tensors, embed, layers, norm, lm_head, total: offset }
    }
}

/// Saved forward state of one decoder layer, (B*T rows).
struct LayerActs<T> {
    rstd1: Vec<T>,    // (N)
    h1: Vec<T>,       // (N, C) input_layernorm output
    q: Vec<T>,        // (N, H*D) after RoPE
    k: Vec<T>,        // (N, KVH*D) after RoPE
    v: Vec<T>,        // (N, KVH*D)
    att: Vec<T>,      // (B, H, T, T) attention probabilities
    attn_out: Vec<T>, // (N, H*D) before o_proj
    x_mid: Vec<T>,    // (N, C) residual after attention
    rstd2: Vec<T>,    // (N)
    h2: Vec<T>,       // (N, C) post_attention_layernorm output
    gate: Vec<T>,     // (N, I)
    up: Vec<T>,       // (N, I)
    act: Vec<T>,      // (N, I) silu(gate) * up
}

/// Everything forward keeps for backward, plus backward's scratch, for a fixed (B, T).
pub struct Activations<T> {
    pub b: usize,
    pub t: usize,
    tokens: Vec<u32>,
    /// residual[l] is layer l's input (N, C); residual[L] is the final norm's input.
    residual: Vec<Vec<T>>,
    layers: Vec<LayerActs<T>>,
    rstd_f: Vec<T>,
    xn: Vec<T>,
    /// (N, V) logits after forward.
    pub logits: Vec<T>,
    /// (N, V) d loss / d logits after forward with targets.
    dlogits: Vec<T>,
    /// (N) per-position cross-entropy.
    pub losses: Vec<T>,
    tmp: Vec<T>, // (N, C) o_proj / down_proj outputs
}

impl<T: Scalar> Activations<T> {
    pub fn new(cfg: &LlamaConfig, b: usize, t: usize) -> Self {
        let n = b * t;
        let (c, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let (qd, kvd, h) = (cfg.num_attention_heads * cfg.head_dim(), cfg.kv_dim(), cfg.num_attention_heads);
        let z = |len: usize| vec![T::zero(); len];
        Activations {
            b,
            t,
            tokens: vec![0; n],
            residual: (0..=cfg.num_hidden_layers).map(|_| z(n * c)).collect(),
            layers: (0..cfg.num_hidden_layers)
                .map(|_| LayerActs {
                    rstd1: z(n),
                    h1: z(n * c),
                    q: z(n * qd),
                    k: z(n * kvd),
                    v: z(n * kvd),
                    att: z(b * h * t * t),
                    attn_out: z(n * qd),
                    x_mid: z(n * c),
                    rstd2: z(n),
                    h2: z(n * c),
                    gate: z(n * i),
                    up: z(n * i),
                    act: z(n * i),
                })
                .collect(),
            rstd_f: z(n),
            xn: z(n * c),
            logits: z(n * v),
            dlogits: z(n * v),
            losses: z(n),
            tmp: z(n * c),
        }
    }
}

/// A Llama model: config, flat parameters and the RoPE tables for `max_position_embeddings`.
#[derive(Clone)]
pub struct Model<T> {
    pub cfg: LlamaConfig,
    pub layout: ParamLayout,
    pub params: Vec<T>,
    rope_cos: Vec<T>,
    rope_sin: Vec<T>,
}

impl<T: Scalar> Model<T> {
    /// Parameters from `params` (in [`ParamLayout`] order). The config must be validated.
    pub fn from_params(cfg: LlamaConfig, params: Vec<T>) -> Self {
        let layout = ParamLayout::new(&cfg);
        assert_eq!(params.len(), layout.total, "parameter count does not match the config");
        let (rope_cos, rope_sin) = ops::rope_tables(cfg.max_position_embeddings, cfg.head_dim(), cfg.rope_theta);
        Model { cfg, layout, params, rope_cos, rope_sin }
    }

    /// HF-style init: N(0, 0.02) for matrices, ones for norms; o_proj and down_proj scaled by
    /// 1/sqrt(2 L) (GPT-2's residual scaling) so deep stacks start with unit-variance residuals.
    pub fn init(cfg: LlamaConfig, seed: u64) -> Self {
        let layout = ParamLayout::new(&cfg);
        let mut rng = Rng::new(seed);
        let mut params = vec![T::zero(); layout.total];
        let resid_scale = 1.0 / (2.0 * cfg.num_hidden_layers as f64).sqrt();
        for t in &layout.tensors {
            let std = if t.name.ends_with("o_proj.weight") || t.name.ends_with("down_proj.weight") {
                0.02 * resid_scale
            } else {
                0.02
            };
            for p in &mut params[t.range()] {
                *p = if t.decay { T::from_f(rng.normal() * std) } else { T::one() };
            }
        }
        Self::from_params(cfg, params)
    }

    /// Logits (T, V) for one token sequence (B = 1), positions 0..T.
    pub fn logits(&self, tokens: &[u32]) -> Vec<T> {
        let mut acts = Activations::new(&self.cfg, 1, tokens.len());
        self.forward(&mut acts, tokens, None);
        acts.logits
    }

    /// Forward over tokens (B, T). With targets (B, T): returns the mean cross-entropy and
    /// leaves d loss/d logits (scaled by `dscale` = 1/(N*accum) per position) for backward.
    pub fn forward(&self, a: &mut Activations<T>, tokens: &[u32], targets: Option<(&[u32], T)>) -> Option<T> {
        let cfg = &self.cfg;
        let (b, t) = (a.b, a.t);
        let n = b * t;
        let (c, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let (h, kvh, d) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim());
        let (qd, kvd) = (h * d, kvh * d);
        let eps = cfg.rms_norm_eps;
        let p = &self.params;
        let lay = &self.layout;
        assert_eq!(tokens.len(), n);
        assert!(t <= cfg.max_position_embeddings);
        a.tokens.copy_from_slice(tokens);

        ops::embedding_forward(&mut a.residual[0], tokens, &p[lay.embed.clone()], c);
        for (l, lp) in lay.layers.iter().enumerate() {
            let (before, after) = a.residual.split_at_mut(l + 1);
            let (x, x_out) = (&before[l], &mut after[0]);
            let la = &mut a.layers[l];
            // h = x + o_proj(attn(rope(q_proj(norm(x))), rope(k_proj(..)), v_proj(..)))
            ops::rms_norm_forward(&mut la.h1, &mut la.rstd1, x, &p[lp.input_norm.clone()], c, eps);
            ops::matmul_forward(&mut la.q, &la.h1, &p[lp.wq.clone()], n, c, qd);
            ops::matmul_forward(&mut la.k, &la.h1, &p[lp.wk.clone()], n, c, kvd);
            ops::matmul_forward(&mut la.v, &la.h1, &p[lp.wv.clone()], n, c, kvd);
            ops::rope_forward(&mut la.q, &self.rope_cos, &self.rope_sin, t, h, d);
            ops::rope_forward(&mut la.k, &self.rope_cos, &self.rope_sin, t, kvh, d);
            ops::attention_forward(&mut la.attn_out, &mut la.att, &la.q, &la.k, &la.v, b, t, h, kvh, d);
            ops::matmul_forward(&mut a.tmp, &la.attn_out, &p[lp.wo.clone()], n, qd, c);
            ops::residual_forward(&mut la.x_mid, x, &a.tmp);
            // out = h + down_proj(silu(gate_proj(norm(h))) * up_proj(norm(h)))
            ops::rms_norm_forward(&mut la.h2, &mut la.rstd2, &la.x_mid, &p[lp.post_norm.clone()], c, eps);
            ops::matmul_forward(&mut la.gate, &la.h2, &p[lp.w_gate.clone()], n, c, i);
            ops::matmul_forward(&mut la.up, &la.h2, &p[lp.w_up.clone()], n, c, i);
            ops::swiglu_forward(&mut la.act, &la.gate, &la.up);
            ops::matmul_forward(&mut a.tmp, &la.act, &p[lp.w_down.clone()], n, i, c);
            ops::residual_forward(x_out, &la.x_mid, &a.tmp);
        }
        let x = &a.residual[cfg.num_hidden_layers];
        ops::rms_norm_forward(&mut a.xn, &mut a.rstd_f, x, &p[lay.norm.clone()], c, eps);
        ops::matmul_forward(&mut a.logits, &a.xn, &p[lay.lm_head.clone()], n, c, v);

        let (targets, dscale) = targets?;
        assert_eq!(targets.len(), n);
        ops::softmax_cross_entropy_fused(&mut a.losses, &mut a.dlogits, &a.logits, targets, v, dscale);
        let total = a.losses.iter().fold(T::zero(), |s, &x| s + x);
        Some(total / T::from_usize(n).unwrap())
    }

    /// Backward of the last `forward` with targets: ACCUMULATES parameter gradients into
    /// `grads` (same layout as params), so gradient accumulation is repeated forward/backward.
    pub fn backward(&self, a: &mut Activations<T>, grads: &mut [T]) {
        let cfg = &self.cfg;
        let (b, t) = (a.b, a.t);
        let n = b * t;
        let (c, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let (h, kvh, d) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim());
        let (qd, kvd) = (h * d, kvh * d);
        let p = &self.params;
        let lay = &self.layout;
        assert_eq!(grads.len(), lay.total);
        let z = |len: usize| vec![T::zero(); len];
        // Scratch gradients: allocated per call; small next to the activations.
        let (mut dx, mut dn) = (z(n * c), z(n * c));
        let (mut dq, mut dk, mut dv, mut dattn) = (z(n * qd), z(n * kvd), z(n * kvd), z(n * qd));
        let (mut dgate, mut dup, mut dact) = (z(n * i), z(n * i), z(n * i));

        // logits = xn lm_head^T; xn = norm(x_L)
        ops::matmul_backward(&mut dn, &mut grads[lay.lm_head.clone()], &a.dlogits, &a.xn, &p[lay.lm_head.clone()], n, c, v);
        let x_last = &a.residual[cfg.num_hidden_layers];
        ops::rms_norm_backward(&mut dx, &mut grads[lay.norm.clone()], &dn, x_last, &p[lay.norm.clone()], &a.rstd_f, c);

        for (l, lp) in lay.layers.iter().enumerate().rev() {
            let la = &a.layers[l];
            let x = &a.residual[l];
            // dx: gradient w.r.t. this layer's output. MLP branch (the residual passes dx through).
            dact.fill(T::zero());
            ops::matmul_backward(&mut dact, &mut grads[lp.w_down.clone()], &dx, &la.act, &p[lp.w_down.clone()], n, i, c);
            ops::swiglu_backward(&mut dgate, &mut dup, &dact, &la.gate, &la.up);
            dn.fill(T::zero());
            ops::matmul_backward(&mut dn, &mut grads[lp.w_gate.clone()], &dgate, &la.h2, &p[lp.w_gate.clone()], n, c, i);
            ops::matmul_backward(&mut dn, &mut grads[lp.w_up.clone()], &dup, &la.h2, &p[lp.w_up.clone()], n, c, i);
            ops::rms_norm_backward(&mut dx, &mut grads[lp.post_norm.clone()], &dn, &la.x_mid, &p[lp.post_norm.clone()], &la.rstd2, c);
            // dx: gradient w.r.t. x_mid. Attention branch.
            dattn.fill(T::zero());
            ops::matmul_backward(&mut dattn, &mut grads[lp.wo.clone()], &dx, &la.attn_out, &p[lp.wo.clone()], n, qd, c);
            ops::attention_backward(&mut dq, &mut dk, &mut dv, &dattn, &la.att, &la.q, &la.k, &la.v, b, t, h, kvh, d);
            ops::rope_backward(&mut dq, &self.rope_cos, &self.rope_sin, t, h, d);
            ops::rope_backward(&mut dk, &self.rope_cos, &self.rope_sin, t, kvh, d);
            dn.fill(T::zero());
            ops::matmul_backward(&mut dn, &mut grads[lp.wq.clone()], &dq, &la.h1, &p[lp.wq.clone()], n, c, qd);
            ops::matmul_backward(&mut dn, &mut grads[lp.wk.clone()], &dk, &la.h1, &p[lp.wk.clone()], n, c, kvd);
            ops::matmul_backward(&mut dn, &mut grads[lp.wv.clone()], &dv, &la.h1, &p[lp.wv.clone()], n, c, kvd);
            ops::rms_norm_backward(&mut dx, &mut grads[lp.input_norm.clone()], &dn, x, &p[lp.input_norm.clone()], &la.rstd1, c);
        }
        ops::embedding_backward(&mut grads[lay.embed.clone()], &dx, &a.tokens, c);
    }
}
