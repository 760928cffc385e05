//! The training loop: batches, gradient accumulation, clipping, AdamW with warm-up + cosine
//! schedule, validation, metrics (JSON lines) and checkpoints.

use crate::checkpoint::{Checkpoint, CheckpointHeader};
use crate::config::{LlamaConfig, TrainConfig};
use crate::data::Dataset;
use crate::error::{Result, TrainError};
use crate::model::{Activations, Model};
use crate::ops::{self, AdamWParams};
use crate::rng::Rng;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct StepStats {
    pub step: u64,
    pub loss: f32,
    pub lr: f32,
    pub grad_norm: f32,
    pub tokens: u64,
    pub seconds: f64,
    pub tokens_per_s: f64,
}

pub struct Trainer {
    pub model: Model<f32>,
    pub cfg: TrainConfig,
    /// Optimizer steps completed.
    pub step: u64,
    pub tokens_seen: u64,
    grads: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    acts: Activations<f32>,
    rng: Rng,
    data: Dataset,
    inputs: Vec<u32>,
    targets: Vec<u32>,
}

impl Trainer {
    /// A fresh model (weights from `train_cfg.seed`) on `data`.
    pub fn new(model_cfg: LlamaConfig, train_cfg: TrainConfig, data: Dataset) -> Result<Self> {
        model_cfg.validate()?;
        train_cfg.validate(&model_cfg)?;
        let model = Model::init(model_cfg, train_cfg.seed);
        // The batch sampler's stream differs from the init stream but derives from the same seed.
        let rng = sampler_rng(train_cfg.seed);
        Self::assemble(model, train_cfg, data, 0, 0, rng, None)
    }

    /// Continue from a checkpoint exactly where it stopped.
    pub fn from_checkpoint(ck: Checkpoint, data: Dataset) -> Result<Self> {
        let h = ck.header;
        h.model.validate()?;
        h.train.validate(&h.model)?;
        let model = Model::from_params(h.model, ck.params);
        Self::assemble(model, h.train, data, h.step, h.tokens_seen, Rng::new(h.rng_state), Some((ck.m, ck.v)))
    }

    fn assemble(
        model: Model<f32>, cfg: TrainConfig, data: Dataset, step: u64, tokens_seen: u64, rng: Rng,
        moments: Option<(Vec<f32>, Vec<f32>)>,
    ) -> Result<Self> {
        data.check_fits(cfg.batch_size, cfg.seq_len, model.cfg.vocab_size)?;
        let p = model.layout.total;
        let (m, v) = moments.unwrap_or_else(|| (vec![0.0; p], vec![0.0; p]));
        let n = cfg.batch_size * cfg.seq_len;
        Ok(Trainer {
            acts: Activations::new(&model.cfg, cfg.batch_size, cfg.seq_len),
            grads: vec![0.0; p],
            m,
            v,
            rng,
            data,
            inputs: vec![0; n],
            targets: vec![0; n],
            step,
            tokens_seen,
            model,
            cfg,
        })
    }

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            header: CheckpointHeader {
                model: self.model.cfg.clone(),
                train: self.cfg.clone(),
                step: self.step,
                rng_state: self.rng.state,
                tokens_seen: self.tokens_seen,
                tokenizer_json: self.data.tokenizer_json.clone(),
            },
            params: self.model.params.clone(),
            m: self.m.clone(),
            v: self.v.clone(),
        }
    }

    pub fn tokenizer_json(&self) -> &str {
        &self.data.tokenizer_json
    }

    /// Gradients of the last step (after clipping), in parameter layout order.
    pub fn grads(&self) -> &[f32] {
        &self.grads
    }

    /// Draw B random windows of T+1 tokens from the training split.
    fn sample_batch(&mut self) {
        let (b, t) = (self.cfg.batch_size, self.cfg.seq_len);
        let starts = crate::dist::global_batch_starts(&mut self.rng, self.data.train.len(), t, b);
        fill_windows(&self.data.train, &starts, t, &mut self.inputs, &mut self.targets);
    }

    /// One optimizer step over `grad_accum` micro-batches. On a non-finite loss or gradient
    /// nothing is updated and [`TrainError::NonFiniteLoss`] is returned.
    pub fn step(&mut self) -> Result<StepStats> {
        let start = Instant::now();
        let cfg = self.cfg.clone();
        let n = cfg.batch_size * cfg.seq_len;
        let dscale = 1.0 / (n * cfg.grad_accum) as f32;
        self.grads.fill(0.0);
        let mut loss_sum = 0.0f64;
        for _ in 0..cfg.grad_accum {
            self.sample_batch();
            let loss = self.model.forward(&mut self.acts, &self.inputs, Some((&self.targets, dscale))).expect("targets given");
            loss_sum += loss as f64;
            self.model.backward(&mut self.acts, &mut self.grads);
        }
        let loss = (loss_sum / cfg.grad_accum as f64) as f32;
        // Global L2 norm, reduced in fixed-size chunks in order: reproducible bit for bit.
        let norm = self.grads.chunks(1 << 16).map(|c| c.iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>()).sum::<f64>().sqrt();
        if !loss.is_finite() || !norm.is_finite() {
            return Err(TrainError::NonFiniteLoss { step: self.step, loss: if loss.is_finite() { f32::NAN } else { loss } });
        }
        if cfg.grad_clip > 0.0 && norm > cfg.grad_clip as f64 {
            let s = (cfg.grad_clip as f64 / norm) as f32;
            self.grads.iter_mut().for_each(|g| *g *= s);
        }
        let lr = cfg.lr_at(self.step);
        let h = AdamWParams { lr, beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weight_decay: cfg.weight_decay, t: self.step + 1 };
        for spec in &self.model.layout.tensors {
            let r = spec.range();
            ops::adamw_step(&mut self.model.params[r.clone()], &self.grads[r.clone()], &mut self.m[r.clone()], &mut self.v[r], h, spec.decay);
        }
        self.step += 1;
        let tokens = (n * cfg.grad_accum) as u64;
        self.tokens_seen += tokens;
        let seconds = start.elapsed().as_secs_f64();
        Ok(StepStats { step: self.step, loss, lr, grad_norm: norm as f32, tokens, seconds, tokens_per_s: tokens as f64 / seconds })
    }

    /// Mean loss over `val_batches` fixed batches of consecutive windows from the validation split
    /// (the same windows every time, so values are comparable across steps and runs).
    pub fn val_loss(&mut self) -> f32 {
        let (b, t) = (self.cfg.batch_size, self.cfg.seq_len);
        let windows = (self.data.val.len() - 1) / t;
        let mut total = 0.0f64;
        let mut inputs = vec![0u32; b * t];
        let mut targets = vec![0u32; b * t];
        for batch in 0..self.cfg.val_batches {
            for r in 0..b {
                let s = ((batch * b + r) % windows) * t;
                inputs[r * t..(r + 1) * t].copy_from_slice(&self.data.val[s..s + t]);
                targets[r * t..(r + 1) * t].copy_from_slice(&self.data.val[s + 1..s + t + 1]);
            }
            total += self.model.forward(&mut self.acts, &inputs, Some((&targets, 1.0))).expect("targets") as f64;
        }
        (total / self.cfg.val_batches as f64) as f32
    }
}

/// inputs/targets (len(starts), T): the windows of T+1 tokens at `starts`, shifted by one.
pub fn fill_windows(tokens: &[u32], starts: &[usize], t: usize, inputs: &mut [u32], targets: &mut [u32]) {
    for (r, &s) in starts.iter().enumerate() {
        inputs[r * t..(r + 1) * t].copy_from_slice(&tokens[s..s + t]);
        targets[r * t..(r + 1) * t].copy_from_slice(&tokens[s + 1..s + t + 1]);
    }
}

/// The batch sampler's RNG for a run seeded `seed` (distinct from the init stream).
pub fn sampler_rng(seed: u64) -> Rng {
    Rng::new(seed ^ 0x5EED_DA7A_0000_0001)
}

/// Events reported to the caller's progress display.
pub enum Event<'a> {
    Start { step: u64, total: u64, params: usize },
    Step(&'a StepStats),
    Val { step: u64, loss: f32 },
    Checkpoint { step: u64, path: &'a Path },
}

pub struct RunOptions {
    pub run_dir: PathBuf,
    pub resume: bool,
    /// Stop (after checkpointing) once this many steps are done in this invocation.
    pub max_steps_this_run: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub step: u64,
    pub final_val_loss: Option<f32>,
    pub losses: Vec<f32>,
    pub mean_tokens_per_s: f64,
}

pub fn checkpoint_path(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoint.bin")
}

fn metric(file: &mut std::fs::File, path: &Path, value: serde_json::Value) -> Result<()> {
    writeln!(file, "{value}").map_err(TrainError::io("append metrics", path))
}

/// `cria-train train`: train (or resume) in `opts.run_dir`, writing `metrics.jsonl`,
/// `checkpoint.bin` every `checkpoint_every` steps and at the end, and `train_config.json`.
pub fn run(
    data: Dataset, model_cfg: LlamaConfig, train_cfg: TrainConfig, opts: &RunOptions,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<RunSummary> {
    std::fs::create_dir_all(&opts.run_dir).map_err(TrainError::io("create run folder", &opts.run_dir))?;
    let ck_path = checkpoint_path(&opts.run_dir);
    let mut tr = if opts.resume {
        Trainer::from_checkpoint(Checkpoint::load(&ck_path)?, data)?
    } else {
        let t = Trainer::new(model_cfg, train_cfg, data)?;
        let cfg = serde_json::json!({ "model": t.model.cfg, "train": t.cfg });
        crate::fsutil::write_atomic(&opts.run_dir.join("train_config.json"), serde_json::to_string_pretty(&cfg).unwrap().as_bytes())?;
        t
    };
    let metrics_path = opts.run_dir.join("metrics.jsonl");
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(TrainError::io("open metrics", &metrics_path))?;
    progress(Event::Start { step: tr.step, total: tr.cfg.steps, params: tr.model.layout.total });
    let mut final_val = None;
    if tr.step == 0 {
        let vl = tr.val_loss();
        metric(&mut metrics, &metrics_path, serde_json::json!({"step": 0, "val_loss": vl}))?;
        progress(Event::Val { step: 0, loss: vl });
        final_val = Some(vl);
    }
    let (mut losses, mut tok, mut secs) = (Vec::new(), 0u64, 0.0f64);
    let first = tr.step;
    while tr.step < tr.cfg.steps {
        if opts.max_steps_this_run.is_some_and(|m| tr.step - first >= m) {
            break;
        }
        let s = tr.step()?;
        losses.push(s.loss);
        tok += s.tokens;
        secs += s.seconds;
        metric(&mut metrics, &metrics_path, serde_json::to_value(&s).unwrap())?;
        progress(Event::Step(&s));
        let last = tr.step == tr.cfg.steps;
        if (tr.cfg.val_every > 0 && tr.step % tr.cfg.val_every == 0) || last {
            let vl = tr.val_loss();
            metric(&mut metrics, &metrics_path, serde_json::json!({"step": tr.step, "val_loss": vl}))?;
            progress(Event::Val { step: tr.step, loss: vl });
            final_val = Some(vl);
        }
        let stopping = opts.max_steps_this_run.is_some_and(|m| tr.step - first >= m);
        if (tr.cfg.checkpoint_every > 0 && tr.step % tr.cfg.checkpoint_every == 0) || last || stopping {
            tr.checkpoint().save(&ck_path)?;
            progress(Event::Checkpoint { step: tr.step, path: &ck_path });
        }
    }
    Ok(RunSummary { step: tr.step, final_val_loss: final_val, losses, mean_tokens_per_s: if secs > 0.0 { tok as f64 / secs } else { 0.0 } })
}
