//! `CudaTrainer`: forward, backward and AdamW of [`crate::model::Model`] on one GPU, with the
//! same configuration, batch sampler and schedule as the CPU [`crate::train::Trainer`], and
//! optional NCCL data parallelism.
//!
//! dtypes: parameters f32 (master) + bf16 copy; matmul inputs/outputs and branch activations
//! bf16; residual stream, RMSNorm statistics, attention logsumexp, losses and all parameter
//! gradients f32 (cuBLASLt accumulates dW in f32 with beta = 1).

use super::device::{Buf, Gpu, Out};
use super::libs::{self, Library};
use super::ops::{self as k, AttShape};
use crate::ops::AdamWParams;
use crate::checkpoint::{Checkpoint, CheckpointHeader};
use crate::config::{LlamaConfig, TrainConfig};
use crate::data::Dataset;
use crate::dist::{self, DistEnv, Timeouts};
use crate::error::{Result, TrainError};
use crate::model::{Model, ParamLayout};
use crate::rng::Rng;
use crate::train::{StepStats, fill_windows, sampler_rng};
use cudarc::nccl::safe::{Comm, Id, ReduceOp};
use std::time::Instant;

/// bf16 as raw bits on the device.
type Bf = u16;

struct LayerBufs {
    rstd1: Buf<f32>,
    h1: Buf<Bf>,
    q: Buf<Bf>,
    k: Buf<Bf>,
    v: Buf<Bf>,
    attn_out: Buf<Bf>,
    lse: Buf<f32>,
    x_mid: Buf<f32>,
    rstd2: Buf<f32>,
    h2: Buf<Bf>,
    gate: Buf<Bf>,
    up: Buf<Bf>,
    act: Buf<Bf>,
}

/// Backward scratch, shared by all layers.
struct GradBufs {
    dx: Buf<f32>,
    dx_bf: Buf<Bf>,
    dn: Buf<f32>,
    dq: Buf<Bf>,
    dk: Buf<Bf>,
    dv: Buf<Bf>,
    dattn: Buf<Bf>,
    dgate: Buf<Bf>,
    dup: Buf<Bf>,
    dact: Buf<Bf>,
    delta: Buf<f32>,
}

struct Nccl {
    comm: Comm,
    rank: usize,
    world: usize,
    scalar: Buf<f32>,
}

pub struct CudaTrainer {
    pub gpu: Gpu,
    pub model_cfg: LlamaConfig,
    pub cfg: TrainConfig,
    pub layout: ParamLayout,
    pub step: u64,
    pub tokens_seen: u64,
    params: Buf<f32>,
    pbf: Buf<Bf>,
    grads: Buf<f32>,
    m: Buf<f32>,
    v: Buf<f32>,
    nodecay: Buf<i64>,
    n_nodecay: usize,
    rope_cos: Buf<f32>,
    rope_sin: Buf<f32>,
    layers: Vec<LayerBufs>,
    residual: Vec<Buf<f32>>,
    rstd_f: Buf<f32>,
    xn: Buf<Bf>,
    logits: Buf<Bf>,
    losses: Buf<f32>,
    tmp: Buf<Bf>,
    g: GradBufs,
    tokens: Buf<u32>,
    targets: Buf<u32>,
    partial: Buf<f32>,
    host_inputs: Vec<u32>,
    host_targets: Vec<u32>,
    rng: Rng,
    data: Dataset,
    nccl: Option<Nccl>,
}

/// Model FLOPs per trained token (forward + backward): 6 x the parameters that take part in
/// matmuls (every projection and the lm_head; the embedding lookup is not a matmul) plus causal
/// attention's 6 * L * T * (H * D) (QK^T and PV, forward 2 x 2 x T/2 x H*D, backward twice that).
pub fn flops_per_token(cfg: &LlamaConfig, seq_len: usize) -> f64 {
    let (c, i, v, l) = (
        cfg.hidden_size as f64,
        cfg.intermediate_size as f64,
        cfg.vocab_size as f64,
        cfg.num_hidden_layers as f64,
    );
    let qd = (cfg.num_attention_heads * cfg.head_dim()) as f64;
    let kvd = cfg.kv_dim() as f64;
    let matmul_params = l * (c * qd + 2.0 * c * kvd + qd * c + 3.0 * c * i) + v * c;
    6.0 * matmul_params + 6.0 * l * seq_len as f64 * qd
}

/// Dense bf16 peak (TFLOP/s, no sparsity) for known device names: A100 312, H100 SXM 989
/// (PCIe 756), H200 989. `None` for others: pass --peak-tflops.
pub fn peak_tflops_for(device_name: &str) -> Option<f64> {
    let n = device_name.to_ascii_uppercase();
    if n.contains("H200") {
        Some(989.0)
    } else if n.contains("H100") {
        Some(if n.contains("PCIE") { 756.0 } else { 989.0 })
    } else if n.contains("A100") {
        Some(312.0)
    } else {
        None
    }
}

impl CudaTrainer {
    /// A fresh model (the CPU path's init for `train_cfg.seed`, so both start from the same
    /// weights) on device `LOCAL_RANK` (0 without `dist`). With `dist` and world size > 1 the
    /// NCCL communicator is set up through [`dist::rendezvous`].
    pub fn new(
        model_cfg: LlamaConfig,
        train_cfg: TrainConfig,
        data: Dataset,
        dist: Option<&DistEnv>,
    ) -> Result<Self> {
        model_cfg.validate()?;
        train_cfg.validate(&model_cfg)?;
        let model = Model::<f32>::init(model_cfg, train_cfg.seed);
        let p = model.layout.total;
        Self::assemble(
            model.cfg,
            model.params,
            vec![0.0; p],
            vec![0.0; p],
            train_cfg,
            data,
            0,
            0,
            None,
            dist,
        )
    }

    /// Continue a CPU or CUDA checkpoint.
    pub fn from_checkpoint(ck: Checkpoint, data: Dataset, dist: Option<&DistEnv>) -> Result<Self> {
        let h = ck.header;
        h.model.validate()?;
        h.train.validate(&h.model)?;
        Self::assemble(
            h.model,
            ck.params,
            ck.m,
            ck.v,
            h.train,
            data,
            h.step,
            h.tokens_seen,
            Some(Rng::new(h.rng_state)),
            dist,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        model_cfg: LlamaConfig,
        params: Vec<f32>,
        m: Vec<f32>,
        v: Vec<f32>,
        cfg: TrainConfig,
        data: Dataset,
        step: u64,
        tokens_seen: u64,
        rng: Option<Rng>,
        dist: Option<&DistEnv>,
    ) -> Result<Self> {
        data.check_fits(cfg.batch_size, cfg.seq_len, model_cfg.vocab_size)?;
        let world = dist.map_or(1, |d| d.world_size);
        if world > 1 && data.train.len() < cfg.batch_size * world * cfg.seq_len + 1 {
            return Err(TrainError::CorpusTooSmall {
                split: "train",
                got: data.train.len(),
                needed: cfg.batch_size * world * cfg.seq_len + 1,
                batch_size: cfg.batch_size * world,
                seq_len: cfg.seq_len,
            });
        }
        let ordinal = dist.map_or(0, |d| d.local_rank);
        if world > 1 {
            libs::require(&[
                Library::Driver,
                Library::Nvrtc,
                Library::CublasLt,
                Library::Nccl,
            ])?;
        }
        let gpu = Gpu::new(ordinal)?;
        let layout = ParamLayout::new(&model_cfg);
        let (b, t) = (cfg.batch_size, cfg.seq_len);
        let n = b * t;
        let (c, i, vocab) = (
            model_cfg.hidden_size,
            model_cfg.intermediate_size,
            model_cfg.vocab_size,
        );
        let (h, d) = (model_cfg.num_attention_heads, model_cfg.head_dim());
        let (qd, kvd) = (h * d, model_cfg.kv_dim());
        AttShape {
            b,
            t,
            h,
            kvh: model_cfg.num_key_value_heads,
            d,
        }
        .check()?;
        if c > k::RMS_BWD_MAX_C {
            return Err(TrainError::Unsupported {
                what: format!("hidden_size {c} on CUDA (at most {})", k::RMS_BWD_MAX_C),
            });
        }
        let pbf_host: Vec<Bf> = params
            .iter()
            .map(|&x| half::bf16::from_f32(x).to_bits())
            .collect();
        let mut ranges: Vec<i64> = Vec::new();
        for spec in layout.tensors.iter().filter(|s| !s.decay) {
            let r = spec.range();
            ranges.extend([r.start as i64, r.end as i64]);
        }
        let (cos, sin) = crate::ops::rope_tables::<f32>(
            model_cfg.max_position_embeddings,
            d,
            model_cfg.rope_theta,
        );
        let layers = (0..model_cfg.num_hidden_layers)
            .map(|_| -> Result<LayerBufs> {
                Ok(LayerBufs {
                    rstd1: gpu.alloc(n)?,
                    h1: gpu.alloc(n * c)?,
                    q: gpu.alloc(n * qd)?,
                    k: gpu.alloc(n * kvd)?,
                    v: gpu.alloc(n * kvd)?,
                    attn_out: gpu.alloc(n * qd)?,
                    lse: gpu.alloc(b * h * t)?,
                    x_mid: gpu.alloc(n * c)?,
                    rstd2: gpu.alloc(n)?,
                    h2: gpu.alloc(n * c)?,
                    gate: gpu.alloc(n * i)?,
                    up: gpu.alloc(n * i)?,
                    act: gpu.alloc(n * i)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let g = GradBufs {
            dx: gpu.alloc(n * c)?,
            dx_bf: gpu.alloc(n * c)?,
            dn: gpu.alloc(n * c)?,
            dq: gpu.alloc(n * qd)?,
            dk: gpu.alloc(n * kvd)?,
            dv: gpu.alloc(n * kvd)?,
            dattn: gpu.alloc(n * qd)?,
            dgate: gpu.alloc(n * i)?,
            dup: gpu.alloc(n * i)?,
            dact: gpu.alloc(n * i)?,
            delta: gpu.alloc(b * h * t)?,
        };
        let nccl = match dist {
            Some(env) if env.world_size > 1 => {
                let id = dist::rendezvous(env, Timeouts::from_env()?, || {
                    let id = Id::new().map_err(TrainError::cuda("ncclGetUniqueId"))?;
                    Ok(id.internal().map(|c| c as u8))
                })?;
                let comm = Comm::from_rank(
                    gpu.stream.clone(),
                    env.rank,
                    env.world_size,
                    Id::uninit(id.map(|b| b as std::ffi::c_char)),
                )
                .map_err(TrainError::cuda("ncclCommInitRank"))?;
                Some(Nccl {
                    comm,
                    rank: env.rank,
                    world: env.world_size,
                    scalar: gpu.alloc(1)?,
                })
            }
            _ => None,
        };
        let p = layout.total;
        let tr = CudaTrainer {
            params: gpu.upload(&params)?,
            pbf: gpu.upload(&pbf_host)?,
            grads: gpu.alloc(p)?,
            m: gpu.upload(&m)?,
            v: gpu.upload(&v)?,
            n_nodecay: ranges.len() / 2,
            nodecay: gpu.upload(&ranges)?,
            rope_cos: gpu.upload(&cos)?,
            rope_sin: gpu.upload(&sin)?,
            layers,
            residual: (0..=model_cfg.num_hidden_layers)
                .map(|_| gpu.alloc(n * c))
                .collect::<Result<Vec<_>>>()?,
            rstd_f: gpu.alloc(n)?,
            xn: gpu.alloc(n * c)?,
            logits: gpu.alloc(n * vocab)?,
            losses: gpu.alloc(n)?,
            tmp: gpu.alloc(n * c)?,
            g,
            tokens: gpu.alloc(n)?,
            targets: gpu.alloc(n)?,
            partial: gpu.alloc(k::SUMSQ_BLOCKS)?,
            host_inputs: vec![0; n],
            host_targets: vec![0; n],
            rng: rng.unwrap_or_else(|| sampler_rng(cfg.seed)),
            data,
            nccl,
            step,
            tokens_seen,
            layout,
            model_cfg,
            cfg,
            gpu,
        };
        Ok(tr)
    }

    pub fn rank(&self) -> usize {
        self.nccl.as_ref().map_or(0, |n| n.rank)
    }

    pub fn world_size(&self) -> usize {
        self.nccl.as_ref().map_or(1, |n| n.world)
    }

    /// Forward over the uploaded tokens/targets: per-row losses in `self.losses`; with
    /// `write_grad` the logits buffer then holds d loss / d logits * dscale.
    fn forward(&mut self, dscale: f32, write_grad: bool) -> Result<()> {
        let cfg = &self.model_cfg;
        let (b, t) = (self.cfg.batch_size, self.cfg.seq_len);
        let n = b * t;
        let (c, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let (h, kvh, d) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim(),
        );
        let (qd, kvd, eps) = (h * d, kvh * d, cfg.rms_norm_eps);
        let shape = AttShape { b, t, h, kvh, d };
        let gpu = &mut self.gpu;
        let (pb, lay) = (&self.pbf, &self.layout);
        let w = |r: &std::ops::Range<usize>| pb.at(r.start);
        k::embedding_fwd(
            gpu,
            self.residual[0].ptr(),
            self.tokens.ptr(),
            w(&lay.embed),
            n,
            c,
        )?;
        for (l, lp) in lay.layers.iter().enumerate() {
            let la = &self.layers[l];
            let (x, x_out) = (self.residual[l].ptr(), self.residual[l + 1].ptr());
            // h = x + o_proj(attn(rope(q_proj(norm(x))), rope(k_proj(..)), v_proj(..)))
            k::rms_norm_fwd(
                gpu,
                la.h1.ptr(),
                la.rstd1.ptr(),
                x,
                w(&lp.input_norm),
                n,
                c,
                eps,
            )?;
            gpu.linear(la.q.ptr(), la.h1.ptr(), w(&lp.wq), n, qd, c)?;
            gpu.linear(la.k.ptr(), la.h1.ptr(), w(&lp.wk), n, kvd, c)?;
            gpu.linear(la.v.ptr(), la.h1.ptr(), w(&lp.wv), n, kvd, c)?;
            k::rope(
                gpu,
                la.q.ptr(),
                self.rope_cos.ptr(),
                self.rope_sin.ptr(),
                n,
                t,
                h,
                d,
                false,
            )?;
            k::rope(
                gpu,
                la.k.ptr(),
                self.rope_cos.ptr(),
                self.rope_sin.ptr(),
                n,
                t,
                kvh,
                d,
                false,
            )?;
            k::attention_fwd(
                gpu,
                la.attn_out.ptr(),
                la.lse.ptr(),
                la.q.ptr(),
                la.k.ptr(),
                la.v.ptr(),
                shape,
            )?;
            gpu.linear(self.tmp.ptr(), la.attn_out.ptr(), w(&lp.wo), n, c, qd)?;
            k::residual_add(gpu, la.x_mid.ptr(), x, self.tmp.ptr(), n * c)?;
            // out = h + down_proj(silu(gate_proj(norm(h))) * up_proj(norm(h)))
            k::rms_norm_fwd(
                gpu,
                la.h2.ptr(),
                la.rstd2.ptr(),
                la.x_mid.ptr(),
                w(&lp.post_norm),
                n,
                c,
                eps,
            )?;
            gpu.linear(la.gate.ptr(), la.h2.ptr(), w(&lp.w_gate), n, i, c)?;
            gpu.linear(la.up.ptr(), la.h2.ptr(), w(&lp.w_up), n, i, c)?;
            k::swiglu_fwd(gpu, la.act.ptr(), la.gate.ptr(), la.up.ptr(), n * i)?;
            gpu.linear(self.tmp.ptr(), la.act.ptr(), w(&lp.w_down), n, c, i)?;
            k::residual_add(gpu, x_out, la.x_mid.ptr(), self.tmp.ptr(), n * c)?;
        }
        let x_last = self.residual[cfg.num_hidden_layers].ptr();
        k::rms_norm_fwd(
            gpu,
            self.xn.ptr(),
            self.rstd_f.ptr(),
            x_last,
            w(&lay.norm),
            n,
            c,
            eps,
        )?;
        gpu.linear(self.logits.ptr(), self.xn.ptr(), w(&lay.lm_head), n, v, c)?;
        k::softmax_xent(
            gpu,
            self.losses.ptr(),
            self.logits.ptr(),
            self.targets.ptr(),
            n,
            v,
            dscale,
            write_grad,
        )
    }

    /// Backward of the last forward (with `write_grad`): ACCUMULATES into `self.grads`.
    fn backward(&mut self) -> Result<()> {
        let cfg = &self.model_cfg;
        let (b, t) = (self.cfg.batch_size, self.cfg.seq_len);
        let n = b * t;
        let (c, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let (h, kvh, d) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim(),
        );
        let (qd, kvd) = (h * d, kvh * d);
        let shape = AttShape { b, t, h, kvh, d };
        let gpu = &mut self.gpu;
        let (pb, gr, lay, g) = (&self.pbf, &self.grads, &self.layout, &mut self.g);
        let w = |r: &std::ops::Range<usize>| pb.at(r.start);
        let dw = |r: &std::ops::Range<usize>| gr.at(r.start);
        // logits = xn lm_head^T; xn = norm(x_L)
        gpu.linear_dx(g.dn.ptr(), Out::F32, 0.0, self.logits.ptr(), w(&lay.lm_head), n, c, v)?;
        gpu.linear_dw(dw(&lay.lm_head), self.logits.ptr(), self.xn.ptr(), v, c, n)?;
        gpu.zero(&mut g.dx)?;
        let x_last = self.residual[cfg.num_hidden_layers].ptr();
        k::rms_norm_bwd(
            gpu,
            g.dx.ptr(),
            dw(&lay.norm),
            g.dn.ptr(),
            x_last,
            w(&lay.norm),
            self.rstd_f.ptr(),
            n,
            c,
        )?;
        for (l, lp) in lay.layers.iter().enumerate().rev() {
            let la = &self.layers[l];
            let x = self.residual[l].ptr();
            // MLP branch: dx is the gradient w.r.t. this layer's output.
            k::cast_f32_to_bf16(gpu, g.dx_bf.ptr(), g.dx.ptr(), n * c)?;
            gpu.linear_dx(g.dact.ptr(), Out::Bf16, 0.0, g.dx_bf.ptr(), w(&lp.w_down), n, i, c)?;
            gpu.linear_dw(dw(&lp.w_down), g.dx_bf.ptr(), la.act.ptr(), c, i, n)?;
            k::swiglu_bwd(
                gpu,
                g.dgate.ptr(),
                g.dup.ptr(),
                g.dact.ptr(),
                la.gate.ptr(),
                la.up.ptr(),
                n * i,
            )?;
            gpu.linear_dx(g.dn.ptr(), Out::F32, 0.0, g.dgate.ptr(), w(&lp.w_gate), n, c, i)?;
            gpu.linear_dw(dw(&lp.w_gate), g.dgate.ptr(), la.h2.ptr(), i, c, n)?;
            gpu.linear_dx(g.dn.ptr(), Out::F32, 1.0, g.dup.ptr(), w(&lp.w_up), n, c, i)?;
            gpu.linear_dw(dw(&lp.w_up), g.dup.ptr(), la.h2.ptr(), i, c, n)?;
            k::rms_norm_bwd(
                gpu,
                g.dx.ptr(),
                dw(&lp.post_norm),
                g.dn.ptr(),
                la.x_mid.ptr(),
                w(&lp.post_norm),
                la.rstd2.ptr(),
                n,
                c,
            )?;
            // Attention branch: dx is now the gradient w.r.t. x_mid.
            k::cast_f32_to_bf16(gpu, g.dx_bf.ptr(), g.dx.ptr(), n * c)?;
            gpu.linear_dx(g.dattn.ptr(), Out::Bf16, 0.0, g.dx_bf.ptr(), w(&lp.wo), n, qd, c)?;
            gpu.linear_dw(dw(&lp.wo), g.dx_bf.ptr(), la.attn_out.ptr(), c, qd, n)?;
            k::attention_bwd(
                gpu,
                g.dq.ptr(),
                g.dk.ptr(),
                g.dv.ptr(),
                g.delta.ptr(),
                g.dattn.ptr(),
                la.attn_out.ptr(),
                la.lse.ptr(),
                la.q.ptr(),
                la.k.ptr(),
                la.v.ptr(),
                shape,
            )?;
            k::rope(
                gpu,
                g.dq.ptr(),
                self.rope_cos.ptr(),
                self.rope_sin.ptr(),
                n,
                t,
                h,
                d,
                true,
            )?;
            k::rope(
                gpu,
                g.dk.ptr(),
                self.rope_cos.ptr(),
                self.rope_sin.ptr(),
                n,
                t,
                kvh,
                d,
                true,
            )?;
            gpu.linear_dx(g.dn.ptr(), Out::F32, 0.0, g.dq.ptr(), w(&lp.wq), n, c, qd)?;
            gpu.linear_dw(dw(&lp.wq), g.dq.ptr(), la.h1.ptr(), qd, c, n)?;
            gpu.linear_dx(g.dn.ptr(), Out::F32, 1.0, g.dk.ptr(), w(&lp.wk), n, c, kvd)?;
            gpu.linear_dw(dw(&lp.wk), g.dk.ptr(), la.h1.ptr(), kvd, c, n)?;
            gpu.linear_dx(g.dn.ptr(), Out::F32, 1.0, g.dv.ptr(), w(&lp.wv), n, c, kvd)?;
            gpu.linear_dw(dw(&lp.wv), g.dv.ptr(), la.h1.ptr(), kvd, c, n)?;
            k::rms_norm_bwd(
                gpu,
                g.dx.ptr(),
                dw(&lp.input_norm),
                g.dn.ptr(),
                x,
                w(&lp.input_norm),
                la.rstd1.ptr(),
                n,
                c,
            )?;
        }
        k::embedding_bwd(gpu, dw(&lay.embed), g.dx.ptr(), self.tokens.ptr(), n, c)
    }

    fn upload_batch(&mut self) -> Result<()> {
        self.gpu.write(&mut self.tokens, &self.host_inputs)?;
        self.gpu.write(&mut self.targets, &self.host_targets)
    }

    fn mean_loss(&self) -> Result<f64> {
        let l = self.gpu.download(&self.losses)?;
        Ok(l.iter().map(|&x| x as f64).sum::<f64>() / l.len() as f64)
    }

    /// One optimizer step over `grad_accum` micro-batches (and all ranks). On a non-finite loss
    /// or gradient nothing is updated and [`TrainError::NonFiniteLoss`] is returned.
    pub fn step(&mut self) -> Result<StepStats> {
        let start = Instant::now();
        let cfg = self.cfg.clone();
        let (b, t) = (cfg.batch_size, cfg.seq_len);
        let n = b * t;
        let (rank, world) = (self.rank(), self.world_size());
        let dscale = 1.0 / (n * cfg.grad_accum * world) as f32;
        self.gpu.zero(&mut self.grads)?;
        let mut loss_sum = 0.0f64;
        for _ in 0..cfg.grad_accum {
            let starts =
                dist::global_batch_starts(&mut self.rng, self.data.train.len(), t, b * world);
            fill_windows(
                &self.data.train,
                dist::shard(&starts, rank, world),
                t,
                &mut self.host_inputs,
                &mut self.host_targets,
            );
            self.upload_batch()?;
            self.forward(dscale, true)?;
            loss_sum += self.mean_loss()?;
            self.backward()?;
        }
        let mut loss = (loss_sum / cfg.grad_accum as f64) as f32;
        if let Some(nc) = &mut self.nccl {
            nc.comm
                .all_reduce_in_place(self.grads.slice_mut(), &ReduceOp::Sum)
                .map_err(TrainError::cuda("NCCL all-reduce of gradients"))?;
            self.gpu.write(&mut nc.scalar, &[loss])?;
            nc.comm
                .all_reduce_in_place(nc.scalar.slice_mut(), &ReduceOp::Sum)
                .map_err(TrainError::cuda("NCCL all-reduce of the loss"))?;
            loss = self.gpu.download(&nc.scalar)?[0] / world as f32;
        }
        let norm = k::sum_squares(
            &self.gpu,
            &self.partial,
            self.grads.ptr(),
            self.layout.total,
        )?
        .sqrt();
        if !loss.is_finite() || !norm.is_finite() {
            return Err(TrainError::NonFiniteLoss {
                step: self.step,
                loss: if loss.is_finite() { f32::NAN } else { loss },
            });
        }
        let grad_scale = if cfg.grad_clip > 0.0 && norm > cfg.grad_clip as f64 {
            (cfg.grad_clip as f64 / norm) as f32
        } else {
            1.0
        };
        let lr = cfg.lr_at(self.step);
        let h = AdamWParams { lr, beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weight_decay: cfg.weight_decay, t: self.step + 1 };
        k::adamw(
            &self.gpu,
            self.params.ptr(),
            self.pbf.ptr(),
            self.grads.ptr(),
            self.m.ptr(),
            self.v.ptr(),
            self.layout.total,
            self.nodecay.ptr(),
            self.n_nodecay,
            h,
            grad_scale,
        )?;
        self.gpu.sync()?;
        self.step += 1;
        let tokens = (n * cfg.grad_accum * world) as u64;
        self.tokens_seen += tokens;
        let seconds = start.elapsed().as_secs_f64();
        Ok(StepStats {
            step: self.step,
            loss,
            lr,
            grad_norm: norm as f32,
            tokens,
            seconds,
            tokens_per_s: tokens as f64 / seconds,
        })
    }

    /// Mean loss over the CPU trainer's fixed validation windows (this rank's own computation).
    pub fn val_loss(&mut self) -> Result<f32> {
        let (b, t) = (self.cfg.batch_size, self.cfg.seq_len);
        let windows = (self.data.val.len() - 1) / t;
        let mut total = 0.0f64;
        for batch in 0..self.cfg.val_batches {
            let starts: Vec<usize> = (0..b).map(|r| ((batch * b + r) % windows) * t).collect();
            fill_windows(
                &self.data.val,
                &starts,
                t,
                &mut self.host_inputs,
                &mut self.host_targets,
            );
            self.upload_batch()?;
            self.forward(1.0, false)?;
            total += self.mean_loss()?;
        }
        Ok((total / self.cfg.val_batches as f64) as f32)
    }

    /// f32 master parameters, in [`ParamLayout`] order.
    pub fn params(&self) -> Result<Vec<f32>> {
        self.gpu.download(&self.params)
    }

    /// Gradients of the last step (before clipping; all-reduced when data parallel).
    pub fn grads(&self) -> Result<Vec<f32>> {
        self.gpu.download(&self.grads)
    }

    pub fn checkpoint(&self) -> Result<Checkpoint> {
        Ok(Checkpoint {
            header: CheckpointHeader {
                model: self.model_cfg.clone(),
                train: self.cfg.clone(),
                step: self.step,
                rng_state: self.rng.state,
                tokens_seen: self.tokens_seen,
                tokenizer_json: self.data.tokenizer_json.clone(),
            },
            params: self.params()?,
            m: self.gpu.download(&self.m)?,
            v: self.gpu.download(&self.v)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_and_peaks() {
        // TinyLlama-1.1B: 22 layers, C 2048, I 5632, 32 heads / 4 kv heads, V 32000, T 2048.
        let cfg = LlamaConfig {
            vocab_size: 32000,
            hidden_size: 2048,
            intermediate_size: 5632,
            num_hidden_layers: 22,
            num_attention_heads: 32,
            num_key_value_heads: 4,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            max_position_embeddings: 2048,
            tie_word_embeddings: false,
            bos_token_id: 1,
            eos_token_id: 2,
        };
        let f = flops_per_token(&cfg, 2048);
        // Non-embedding matmul params ~0.968e9 + lm_head 65.5e6: 6N ~ 6.2 GFLOP; attention 6*22*2048*2048 ~ 0.55 GFLOP.
        assert!((f / 1e9 - 6.76).abs() < 0.05, "{f}");
        assert_eq!(peak_tflops_for("NVIDIA H200"), Some(989.0));
        assert_eq!(peak_tflops_for("NVIDIA H100 PCIe"), Some(756.0));
        assert_eq!(peak_tflops_for("NVIDIA A100-SXM4-40GB"), Some(312.0));
        assert_eq!(peak_tflops_for("Tesla T4"), None);
    }
}
