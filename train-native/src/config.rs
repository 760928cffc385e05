//! Model and training configuration. `LlamaConfig` uses HF `LlamaConfig`'s field names so the
//! export's config.json is this struct plus the HF-only constants.

use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub bos_token_id: u32,
    pub eos_token_id: u32,
}

impl LlamaConfig {
    /// D, the per-head width. Validated configs have hidden_size % num_attention_heads == 0.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim()
    }

    pub fn validate(&self) -> Result<()> {
        let pos = |field: &'static str, v: usize| {
            if v == 0 { Err(TrainError::config(field, v, "must be at least 1")) } else { Ok(()) }
        };
        pos("vocab_size", self.vocab_size)?;
        pos("hidden_size", self.hidden_size)?;
        pos("intermediate_size", self.intermediate_size)?;
        pos("num_hidden_layers", self.num_hidden_layers)?;
        pos("num_attention_heads", self.num_attention_heads)?;
        pos("num_key_value_heads", self.num_key_value_heads)?;
        pos("max_position_embeddings", self.max_position_embeddings)?;
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(TrainError::config(
                "num_attention_heads",
                self.num_attention_heads,
                format!(
                    "must divide hidden_size {} (head_dim = hidden_size / num_attention_heads); try {}",
                    self.hidden_size,
                    divisors_near(self.hidden_size, self.num_attention_heads)
                ),
            ));
        }
        if !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            return Err(TrainError::config(
                "num_key_value_heads",
                self.num_key_value_heads,
                format!("must divide num_attention_heads {} (grouped-query attention)", self.num_attention_heads),
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(TrainError::config(
                "hidden_size",
                self.hidden_size,
                format!("head_dim {} must be even for rotary embeddings", self.head_dim()),
            ));
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps.is_finite()) {
            return Err(TrainError::config("rms_norm_eps", self.rms_norm_eps, "must be a positive finite number"));
        }
        if !(self.rope_theta > 1.0 && self.rope_theta.is_finite()) {
            return Err(TrainError::config("rope_theta", self.rope_theta, "must be a finite number > 1"));
        }
        for (field, id) in [("bos_token_id", self.bos_token_id), ("eos_token_id", self.eos_token_id)] {
            if id as usize >= self.vocab_size {
                return Err(TrainError::config(field, id, format!("must be < vocab_size {}", self.vocab_size)));
            }
        }
        Ok(())
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        crate::model::ParamLayout::new(self).total
    }
}

fn divisors_near(n: usize, want: usize) -> String {
    let divs: Vec<usize> = (1..=n).filter(|&d| n.is_multiple_of(d) && n / d >= 2 && (n / d).is_multiple_of(2)).collect();
    let best = divs.iter().copied().min_by_key(|&d| d.abs_diff(want)).unwrap_or(1);
    format!("num_attention_heads = {best}")
}

/// Optimisation and data settings. Stored in the checkpoint, so `--resume` continues with the
/// same schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub seq_len: usize,
    pub grad_accum: usize,
    /// Total optimizer steps; the cosine schedule ends here.
    pub steps: u64,
    pub lr: f32,
    /// Final learning rate as a fraction of `lr`.
    pub min_lr_ratio: f32,
    pub warmup_steps: u64,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Global gradient-norm clip; 0 disables.
    pub grad_clip: f32,
    pub val_every: u64,
    pub val_batches: usize,
    pub checkpoint_every: u64,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch_size: 8,
            seq_len: 128,
            grad_accum: 1,
            steps: 1000,
            lr: 3e-3,
            min_lr_ratio: 0.1,
            warmup_steps: 50,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            grad_clip: 1.0,
            val_every: 100,
            val_batches: 8,
            checkpoint_every: 200,
            seed: 1337,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self, model: &LlamaConfig) -> Result<()> {
        let pos = |field: &'static str, v: u64| {
            if v == 0 { Err(TrainError::config(field, v, "must be at least 1")) } else { Ok(()) }
        };
        pos("batch_size", self.batch_size as u64)?;
        pos("seq_len", self.seq_len as u64)?;
        pos("grad_accum", self.grad_accum as u64)?;
        pos("steps", self.steps)?;
        pos("val_batches", self.val_batches as u64)?;
        if self.seq_len > model.max_position_embeddings {
            return Err(TrainError::config(
                "seq_len",
                self.seq_len,
                format!("exceeds max_position_embeddings {}", model.max_position_embeddings),
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(TrainError::config("lr", self.lr, "must be a positive finite number"));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(TrainError::config("min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]"));
        }
        for (field, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(TrainError::config(field, b, "must be in [0, 1)"));
            }
        }
        if self.grad_clip < 0.0 || !self.grad_clip.is_finite() {
            return Err(TrainError::config("grad_clip", self.grad_clip, "must be >= 0 (0 disables clipping)"));
        }
        Ok(())
    }

    /// Learning rate of (0-based) step `step`: linear warm-up to `lr`, then cosine decay to
    /// `lr * min_lr_ratio` at `steps`.
    pub fn lr_at(&self, step: u64) -> f32 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f32 / self.warmup_steps as f32;
        }
        let span = self.steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        let min_lr = (self.lr * self.min_lr_ratio) as f64;
        let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        (min_lr + (self.lr as f64 - min_lr) * cos) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_min() {
        let c = TrainConfig { lr: 1.0, warmup_steps: 10, steps: 110, min_lr_ratio: 0.1, ..TrainConfig::default() };
        assert!((c.lr_at(0) - 0.1).abs() < 1e-6);
        assert!((c.lr_at(9) - 1.0).abs() < 1e-6);
        assert!((c.lr_at(10) - 1.0).abs() < 1e-6);
        assert!((c.lr_at(60) - 0.55).abs() < 1e-6, "half way through the cosine: mean of max and min");
        assert!((c.lr_at(110) - 0.1).abs() < 1e-6);
        assert!((c.lr_at(500) - 0.1).abs() < 1e-6, "stays at the floor past the end");
        let mut prev = f32::INFINITY;
        for s in 10..=110 {
            assert!(c.lr_at(s) <= prev);
            prev = c.lr_at(s);
        }
    }

    #[test]
    fn train_config_rejects_bad_values() {
        let m = LlamaConfig {
            vocab_size: 300, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
            num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, rope_theta: 1e4,
            max_position_embeddings: 64, tie_word_embeddings: true, bos_token_id: 0, eos_token_id: 1,
        };
        m.validate().unwrap();
        let ok = TrainConfig { seq_len: 64, ..TrainConfig::default() };
        ok.validate(&m).unwrap();
        let too_long = TrainConfig { seq_len: 65, ..ok.clone() };
        assert!(matches!(too_long.validate(&m), Err(TrainError::InvalidConfig { field: "seq_len", .. })));
        let nan_lr = TrainConfig { lr: f32::NAN, ..ok.clone() };
        assert!(matches!(nan_lr.validate(&m), Err(TrainError::InvalidConfig { field: "lr", .. })));
        let odd = LlamaConfig { hidden_size: 36, num_attention_heads: 4, ..m.clone() }; // head_dim 9
        assert!(matches!(odd.validate(), Err(TrainError::InvalidConfig { field: "hidden_size", .. })));
        let bos = LlamaConfig { bos_token_id: 300, ..m };
        assert!(matches!(bos.validate(), Err(TrainError::InvalidConfig { field: "bos_token_id", .. })));
    }
}
