//! Host-side dispatch of each kernel: one function per kernel, raw device pointers in, the
//! same shapes and semantics as its CPU twin in `crate::ops` (named in each doc line). The
//! trainer and the parity tests (`tests/cuda_parity.rs`) both call these.

use super::device::{Arg, Gpu};
use crate::error::{Result, TrainError};
use crate::ops::AdamWParams;

/// Largest head dim the attention kernels handle (four f32 accumulators per lane).
pub const ATT_MAX_D: usize = 128;
/// Warps (rows) per attention block; must match ATT_ROWS in attention.cu.
const ATT_ROWS: usize = 4;
/// rms_norm_bwd keeps one f32 per column in shared memory; 48 KiB is the default limit.
pub const RMS_BWD_MAX_C: usize = 12 * 1024 - 64;

fn i32_of(what: &'static str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| TrainError::Unsupported {
        what: format!("{what} = {v} exceeds the CUDA kernels' 32-bit index range"),
    })
}

/// ops::residual_forward: out (n) f32 = a f32 + b bf16.
pub fn residual_add(g: &Gpu, out: u64, a: u64, b: u64, n: usize) -> Result<()> {
    g.launch_1d(
        "residual_add_f32_bf16",
        n,
        &[Arg::Ptr(out), Arg::Ptr(a), Arg::Ptr(b), Arg::I64(n as i64)],
    )
}

pub fn cast_f32_to_bf16(g: &Gpu, out: u64, inp: u64, n: usize) -> Result<()> {
    g.launch_1d(
        "cast_f32_to_bf16",
        n,
        &[Arg::Ptr(out), Arg::Ptr(inp), Arg::I64(n as i64)],
    )
}

pub fn cast_bf16_to_f32(g: &Gpu, out: u64, inp: u64, n: usize) -> Result<()> {
    g.launch_1d(
        "cast_bf16_to_f32",
        n,
        &[Arg::Ptr(out), Arg::Ptr(inp), Arg::I64(n as i64)],
    )
}

/// Blocks of the first stage of [`sum_squares`] (fixed, so the sum order is reproducible).
pub const SUMSQ_BLOCKS: usize = 512;

/// Sum of squares of x (n) f32, reduced on the device into SUMSQ_BLOCKS partials (`partial`,
/// f32) and added on the host in f64.
pub fn sum_squares(g: &Gpu, partial: &super::device::Buf<f32>, x: u64, n: usize) -> Result<f64> {
    g.launch(
        "sumsq_partial_f32",
        (SUMSQ_BLOCKS as u32, 1, 1),
        256,
        0,
        &[Arg::Ptr(partial.ptr()), Arg::Ptr(x), Arg::I64(n as i64)],
    )?;
    Ok(g.download_range(partial, 0, SUMSQ_BLOCKS)?
        .iter()
        .map(|&v| v as f64)
        .sum())
}

/// ops::embedding_forward: out (N, C) f32 = table (V, C) bf16 [tokens (N) u32].
pub fn embedding_fwd(g: &Gpu, out: u64, tokens: u64, table: u64, n: usize, c: usize) -> Result<()> {
    g.launch_1d(
        "embedding_fwd",
        n * c,
        &[
            Arg::Ptr(out),
            Arg::Ptr(tokens),
            Arg::Ptr(table),
            Arg::I32(i32_of("N", n)?),
            Arg::I32(i32_of("C", c)?),
        ],
    )
}

/// ops::embedding_backward: dtable (V, C) f32 += dout (N, C) f32 at tokens.
pub fn embedding_bwd(
    g: &Gpu,
    dtable: u64,
    dout: u64,
    tokens: u64,
    n: usize,
    c: usize,
) -> Result<()> {
    g.launch_1d(
        "embedding_bwd",
        n * c,
        &[
            Arg::Ptr(dtable),
            Arg::Ptr(dout),
            Arg::Ptr(tokens),
            Arg::I32(i32_of("N", n)?),
            Arg::I32(i32_of("C", c)?),
        ],
    )
}

fn row_threads(c: usize) -> u32 {
    // One block per row: enough threads to cover C in a few strides, a multiple of 32.
    (c.div_ceil(32) * 32).clamp(32, 1024) as u32
}

/// ops::rms_norm_forward: out (N, C) bf16, rstd (N) f32 from inp (N, C) f32, weight (C) bf16.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_fwd(
    g: &Gpu,
    out: u64,
    rstd: u64,
    inp: u64,
    weight: u64,
    n: usize,
    c: usize,
    eps: f64,
) -> Result<()> {
    g.launch(
        "rms_norm_fwd",
        (i32_of("N", n)? as u32, 1, 1),
        row_threads(c),
        0,
        &[
            Arg::Ptr(out),
            Arg::Ptr(rstd),
            Arg::Ptr(inp),
            Arg::Ptr(weight),
            Arg::I32(n as i32),
            Arg::I32(i32_of("C", c)?),
            Arg::F32(eps as f32),
        ],
    )
}

/// ops::rms_norm_backward: dinp (N, C) f32 +=, dweight (C) f32 += from dout (N, C) f32.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_bwd(
    g: &Gpu,
    dinp: u64,
    dweight: u64,
    dout: u64,
    inp: u64,
    weight: u64,
    rstd: u64,
    n: usize,
    c: usize,
) -> Result<()> {
    if c > RMS_BWD_MAX_C {
        return Err(TrainError::Unsupported {
            what: format!(
                "hidden_size {c} on CUDA (rms_norm_bwd keeps C floats in shared memory; at most {RMS_BWD_MAX_C})"
            ),
        });
    }
    // A few blocks per SM's worth of rows; each block reduces its dweight partial once.
    let blocks = n.clamp(1, 1024) as u32;
    g.launch(
        "rms_norm_bwd",
        (blocks, 1, 1),
        row_threads(c),
        (c * 4) as u32,
        &[
            Arg::Ptr(dinp),
            Arg::Ptr(dweight),
            Arg::Ptr(dout),
            Arg::Ptr(inp),
            Arg::Ptr(weight),
            Arg::Ptr(rstd),
            Arg::I32(i32_of("N", n)?),
            Arg::I32(c as i32),
        ],
    )
}

/// ops::rope_forward (`inverse` false) / rope_backward (true), in place on x (N, heads, D) bf16;
/// cos, sin (T, D/2) f32 device tables.
#[allow(clippy::too_many_arguments)]
pub fn rope(
    g: &Gpu,
    x: u64,
    cos: u64,
    sin: u64,
    n: usize,
    t: usize,
    heads: usize,
    d: usize,
    inverse: bool,
) -> Result<()> {
    let sign = if inverse { -1.0 } else { 1.0 };
    g.launch_1d(
        "rope_bf16",
        n * heads * d / 2,
        &[
            Arg::Ptr(x),
            Arg::Ptr(cos),
            Arg::Ptr(sin),
            Arg::I32(i32_of("N", n)?),
            Arg::I32(t as i32),
            Arg::I32(heads as i32),
            Arg::I32(d as i32),
            Arg::F32(sign),
        ],
    )
}

/// ops::swiglu_forward: out (n) bf16 = silu(gate) * up.
pub fn swiglu_fwd(g: &Gpu, out: u64, gate: u64, up: u64, n: usize) -> Result<()> {
    g.launch_1d(
        "swiglu_fwd",
        n,
        &[
            Arg::Ptr(out),
            Arg::Ptr(gate),
            Arg::Ptr(up),
            Arg::I64(n as i64),
        ],
    )
}

/// ops::swiglu_backward: WRITES dgate, dup (n) bf16 from dout (n) bf16.
pub fn swiglu_bwd(
    g: &Gpu,
    dgate: u64,
    dup: u64,
    dout: u64,
    gate: u64,
    up: u64,
    n: usize,
) -> Result<()> {
    g.launch_1d(
        "swiglu_bwd",
        n,
        &[
            Arg::Ptr(dgate),
            Arg::Ptr(dup),
            Arg::Ptr(dout),
            Arg::Ptr(gate),
            Arg::Ptr(up),
            Arg::I64(n as i64),
        ],
    )
}

/// ops::softmax_cross_entropy_fused: losses (N) f32; with `write_grad` the logits (N, V) bf16
/// are overwritten by dlogits * dscale.
#[allow(clippy::too_many_arguments)]
pub fn softmax_xent(
    g: &Gpu,
    losses: u64,
    logits: u64,
    targets: u64,
    n: usize,
    v: usize,
    dscale: f32,
    write_grad: bool,
) -> Result<()> {
    g.launch(
        "softmax_xent",
        (i32_of("N", n)? as u32, 1, 1),
        1024,
        0,
        &[
            Arg::Ptr(losses),
            Arg::Ptr(logits),
            Arg::Ptr(targets),
            Arg::I32(n as i32),
            Arg::I32(i32_of("V", v)?),
            Arg::F32(dscale),
            Arg::I32(write_grad as i32),
        ],
    )
}

/// ops::adamw_step over all n parameters at once: p, m, v f32, g f32, p_bf16 receives the
/// bf16 copy. `nodecay` (device, i64 pairs) lists the [start, end) ranges without weight decay.
/// Gradients are multiplied by `grad_scale` first (global-norm clipping; 1 = none).
#[allow(clippy::too_many_arguments)]
pub fn adamw(
    g: &Gpu,
    p: u64,
    p_bf16: u64,
    grads: u64,
    m: u64,
    v: u64,
    n: usize,
    nodecay: u64,
    n_nodecay: usize,
    h: AdamWParams,
    grad_scale: f32,
) -> Result<()> {
    // Bias corrections in f64 then rounded, exactly as ops::adamw_step computes them.
    let bc1 = (1.0 - (h.beta1 as f64).powi(h.t as i32)) as f32;
    let bc2 = (1.0 - (h.beta2 as f64).powi(h.t as i32)) as f32;
    g.launch_1d(
        "adamw_f32",
        n,
        &[
            Arg::Ptr(p),
            Arg::Ptr(p_bf16),
            Arg::Ptr(grads),
            Arg::Ptr(m),
            Arg::Ptr(v),
            Arg::I64(n as i64),
            Arg::Ptr(nodecay),
            Arg::I32(n_nodecay as i32),
            Arg::F32(h.lr),
            Arg::F32(h.beta1),
            Arg::F32(h.beta2),
            Arg::F32(h.eps),
            Arg::F32(h.weight_decay),
            Arg::F32(bc1),
            Arg::F32(bc2),
            Arg::F32(grad_scale),
        ],
    )
}

/// Attention shape (B, T, H, KVH, D) with the checks the kernels rely on.
#[derive(Clone, Copy, Debug)]
pub struct AttShape {
    pub b: usize,
    pub t: usize,
    pub h: usize,
    pub kvh: usize,
    pub d: usize,
}

impl AttShape {
    pub fn check(&self) -> Result<()> {
        if self.d > ATT_MAX_D {
            return Err(TrainError::Unsupported {
                what: format!(
                    "head_dim {} on CUDA (the attention kernels handle head_dim <= {ATT_MAX_D})",
                    self.d
                ),
            });
        }
        if self.kvh == 0 || !self.h.is_multiple_of(self.kvh) {
            return Err(TrainError::config(
                "num_key_value_heads",
                self.kvh,
                format!("must divide num_attention_heads {}", self.h),
            ));
        }
        i32_of("B*T*H", self.b * self.t * self.h)?;
        Ok(())
    }
    fn ints(&self) -> [Arg; 5] {
        [
            Arg::I32(self.b as i32),
            Arg::I32(self.t as i32),
            Arg::I32(self.h as i32),
            Arg::I32(self.kvh as i32),
            Arg::I32(self.d as i32),
        ]
    }
    fn scale(&self) -> f32 {
        1.0 / (self.d as f32).sqrt()
    }
}

/// ops::attention_forward without the (T, T) matrix: out (B*T, H*D) bf16 and lse (B, H, T) f32
/// from q (B*T, H*D), k, v (B*T, KVH*D) bf16.
pub fn attention_fwd(
    g: &Gpu,
    out: u64,
    lse: u64,
    q: u64,
    k: u64,
    v: u64,
    s: AttShape,
) -> Result<()> {
    s.check()?;
    let grid = (s.t.div_ceil(ATT_ROWS) as u32, s.h as u32, s.b as u32);
    let mut args = vec![
        Arg::Ptr(out),
        Arg::Ptr(lse),
        Arg::Ptr(q),
        Arg::Ptr(k),
        Arg::Ptr(v),
    ];
    args.extend(s.ints());
    args.push(Arg::F32(s.scale()));
    g.launch("attention_fwd", grid, (32 * ATT_ROWS) as u32, 0, &args)
}

/// ops::attention_backward from the forward's lse: WRITES dq (B*T, H*D), dk, dv (B*T, KVH*D)
/// bf16. `delta` is (B, H, T) f32 scratch.
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd(
    g: &Gpu,
    dq: u64,
    dk: u64,
    dv: u64,
    delta: u64,
    dout: u64,
    out: u64,
    lse: u64,
    q: u64,
    k: u64,
    v: u64,
    s: AttShape,
) -> Result<()> {
    s.check()?;
    let rows = s.b * s.t * s.h;
    g.launch(
        "attention_bwd_delta",
        ((rows * 32).div_ceil(256) as u32, 1, 1),
        256,
        0,
        &[
            Arg::Ptr(delta),
            Arg::Ptr(dout),
            Arg::Ptr(out),
            Arg::I32(s.b as i32),
            Arg::I32(s.t as i32),
            Arg::I32(s.h as i32),
            Arg::I32(s.d as i32),
        ],
    )?;
    let block = (32 * ATT_ROWS) as u32;
    let mut args = vec![
        Arg::Ptr(dq),
        Arg::Ptr(dout),
        Arg::Ptr(lse),
        Arg::Ptr(delta),
        Arg::Ptr(q),
        Arg::Ptr(k),
        Arg::Ptr(v),
    ];
    args.extend(s.ints());
    args.push(Arg::F32(s.scale()));
    g.launch(
        "attention_bwd_dq",
        (s.t.div_ceil(ATT_ROWS) as u32, s.h as u32, s.b as u32),
        block,
        0,
        &args,
    )?;
    let mut args = vec![
        Arg::Ptr(dk),
        Arg::Ptr(dv),
        Arg::Ptr(dout),
        Arg::Ptr(lse),
        Arg::Ptr(delta),
        Arg::Ptr(q),
        Arg::Ptr(k),
        Arg::Ptr(v),
    ];
    args.extend(s.ints());
    args.push(Arg::F32(s.scale()));
    g.launch(
        "attention_bwd_dkdv",
        (s.t.div_ceil(ATT_ROWS) as u32, s.kvh as u32, s.b as u32),
        block,
        0,
        &args,
    )
}
