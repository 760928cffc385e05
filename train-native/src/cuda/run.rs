//! `cria-train train --device cuda`: the training loop of [`crate::train::run`] on a
//! [`CudaTrainer`], with throughput and MFU, and in data-parallel runs metrics and checkpoints
//! written by rank 0 only.

use super::trainer::{CudaTrainer, flops_per_token, peak_tflops_for};
use crate::checkpoint::Checkpoint;
use crate::config::{LlamaConfig, TrainConfig};
use crate::data::Dataset;
use crate::dist::DistEnv;
use crate::error::{Result, TrainError};
use crate::train::{Event, RunOptions, RunSummary, checkpoint_path};
use std::io::Write;

pub struct CudaRunOptions {
    pub run: RunOptions,
    /// Device peak in TFLOP/s for MFU; default from the device name (A100/H100/H200).
    pub peak_tflops: Option<f64>,
    pub dist: Option<DistEnv>,
}

/// What `run` reports besides the summary.
#[derive(Clone, Debug)]
pub struct Throughput {
    pub device: String,
    pub world_size: usize,
    pub flops_per_token: f64,
    pub peak_tflops: Option<f64>,
    /// Mean over steps after the first (the first pays NVRTC/cuBLASLt warm-up).
    pub tokens_per_s: f64,
    /// tokens/s x FLOPs/token / (world x peak); None without a known peak.
    pub mfu: Option<f64>,
}

pub fn mfu(tokens_per_s: f64, flops_per_token: f64, world: usize, peak_tflops: f64) -> f64 {
    tokens_per_s * flops_per_token / (world as f64 * peak_tflops * 1e12)
}

pub fn run(
    data: Dataset,
    model_cfg: LlamaConfig,
    train_cfg: TrainConfig,
    opts: &CudaRunOptions,
    progress: &mut dyn FnMut(Event<'_>, Option<f64>),
) -> Result<(RunSummary, Throughput)> {
    let ck_path = checkpoint_path(&opts.run.run_dir);
    let dist = opts.dist.as_ref();
    let mut tr = if opts.run.resume {
        CudaTrainer::from_checkpoint(Checkpoint::load(&ck_path)?, data, dist)?
    } else {
        CudaTrainer::new(model_cfg, train_cfg, data, dist)?
    };
    let lead = tr.rank() == 0;
    let peak = opts.peak_tflops.or_else(|| peak_tflops_for(&tr.gpu.name));
    let fpt = flops_per_token(&tr.model_cfg, tr.cfg.seq_len);
    let world = tr.world_size();
    let mut metrics = if lead {
        std::fs::create_dir_all(&opts.run.run_dir)
            .map_err(TrainError::io("create run folder", &opts.run.run_dir))?;
        if !opts.run.resume {
            let cfg = serde_json::json!({ "model": tr.model_cfg, "train": tr.cfg, "device": tr.gpu.name, "world_size": world });
            crate::fsutil::write_atomic(
                &opts.run.run_dir.join("train_config.json"),
                serde_json::to_string_pretty(&cfg)
                    .unwrap_or_default()
                    .as_bytes(),
            )?;
        }
        let p = opts.run.run_dir.join("metrics.jsonl");
        Some((
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .map_err(TrainError::io("open metrics", &p))?,
            p,
        ))
    } else {
        None
    };
    let mut metric = |v: serde_json::Value| -> Result<()> {
        match &mut metrics {
            Some((f, p)) => {
                writeln!(f, "{v}").map_err(TrainError::io("append metrics", p.as_path()))
            }
            None => Ok(()),
        }
    };
    progress(
        Event::Start {
            step: tr.step,
            total: tr.cfg.steps,
            params: tr.layout.total,
        },
        None,
    );
    let (mut losses, mut tok, mut secs) = (Vec::new(), 0u64, 0.0f64);
    let first = tr.step;
    let mut final_val = None;
    while tr.step < tr.cfg.steps {
        if opts
            .run
            .max_steps_this_run
            .is_some_and(|m| tr.step - first >= m)
        {
            break;
        }
        let s = tr.step()?;
        losses.push(s.loss);
        if tr.step > first + 1 {
            tok += s.tokens;
            secs += s.seconds;
        }
        let step_mfu = peak.map(|p| mfu(s.tokens_per_s, fpt, world, p));
        metric(
            serde_json::json!({"step": s.step, "loss": s.loss, "lr": s.lr, "grad_norm": s.grad_norm, "tokens": s.tokens,
            "seconds": s.seconds, "tokens_per_s": s.tokens_per_s, "mfu": step_mfu}),
        )?;
        progress(Event::Step(&s), step_mfu);
        let last = tr.step == tr.cfg.steps;
        if (tr.cfg.val_every > 0 && tr.step % tr.cfg.val_every == 0) || last {
            let vl = tr.val_loss()?;
            metric(serde_json::json!({"step": tr.step, "val_loss": vl}))?;
            progress(
                Event::Val {
                    step: tr.step,
                    loss: vl,
                },
                None,
            );
            final_val = Some(vl);
        }
        let stopping = opts
            .run
            .max_steps_this_run
            .is_some_and(|m| tr.step - first >= m);
        if lead
            && ((tr.cfg.checkpoint_every > 0 && tr.step % tr.cfg.checkpoint_every == 0)
                || last
                || stopping)
        {
            tr.checkpoint()?.save(&ck_path)?;
            progress(
                Event::Checkpoint {
                    step: tr.step,
                    path: &ck_path,
                },
                None,
            );
        }
    }
    let tps = if secs > 0.0 { tok as f64 / secs } else { 0.0 };
    let thr = Throughput {
        device: tr.gpu.name.clone(),
        world_size: world,
        flops_per_token: fpt,
        peak_tflops: peak,
        tokens_per_s: tps,
        mfu: peak.map(|p| mfu(tps, fpt, world, p)),
    };
    Ok((
        RunSummary {
            step: tr.step,
            final_val_loss: final_val,
            losses,
            mean_tokens_per_s: tps,
        },
        thr,
    ))
}
