//! Choosing the next token from logits: greedy, temperature, top-k, top-p, min-p, repetition
//! penalty, with a seeded generator (same seed, same output). Semantics follow transformers'
//! logits processors (`RepetitionPenaltyLogitsProcessor`, `TopKLogitsWarper`, `TopPLogitsWarper`,
//! `MinPLogitsWarper`), applied in that order after temperature.

use crate::ops::check::Rng;

#[derive(Clone, Debug, PartialEq)]
pub struct SamplingOptions {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1.0 disables.
    pub top_p: f32,
    /// 0.0 disables.
    pub min_p: f32,
    /// 1.0 disables.
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        SamplingOptions { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, seed: 0 }
    }
}

impl SamplingOptions {
    /// Greedy with no penalty: the GPU argmax gives the same answer without reading logits back.
    pub fn is_plain_greedy(&self) -> bool {
        self.temperature <= 0.0 && self.repetition_penalty == 1.0
    }
}

pub struct Sampler {
    pub options: SamplingOptions,
    rng: Rng,
}

impl Sampler {
    pub fn new(options: SamplingOptions) -> Sampler {
        let rng = Rng::new(options.seed);
        Sampler { options, rng }
    }

    /// Picks the next token given the logits and the tokens so far (for the penalty).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let o = &self.options;
        if o.repetition_penalty != 1.0 {
            apply_repetition_penalty(logits, history, o.repetition_penalty);
        }
        if o.temperature <= 0.0 {
            return argmax(logits);
        }
        let mut cands: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l / o.temperature)).collect();
        // Sort by logit, descending; ties by id so results never depend on sort stability.
        cands.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if o.top_k > 0 {
            cands.truncate(o.top_k.max(1));
        }
        let max = cands[0].1;
        let mut probs: Vec<f64> = cands.iter().map(|c| f64::from(c.1 - max).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if o.top_p < 1.0 {
            // Keep the smallest prefix whose mass reaches top_p (at least one token).
            let mut mass = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                mass += p;
                if mass >= f64::from(o.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
        }
        if o.min_p > 0.0 {
            let floor = probs[0] * f64::from(o.min_p);
            let keep = probs.iter().take_while(|&&p| p >= floor).count().max(1);
            probs.truncate(keep);
        }
        let total: f64 = probs.iter().sum();
        let mut r = f64::from(self.rng.uniform()) * total;
        for (i, p) in probs.iter().enumerate() {
            r -= p;
            if r < 0.0 {
                return cands[i].0;
            }
        }
        cands[probs.len() - 1].0
    }
}

/// First index of the maximum (as torch.argmax); NaN never wins.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] || logits[best].is_nan() && !v.is_nan() {
            best = i;
        }
    }
    best as u32
}

/// transformers' penalty: logits of tokens already seen are divided by `penalty` when positive
/// and multiplied by it when negative (each token once).
pub fn apply_repetition_penalty(logits: &mut [f32], history: &[u32], penalty: f32) {
    let mut seen = std::collections::HashSet::new();
    for &t in history {
        if let Some(l) = logits.get_mut(t as usize) {
            if seen.insert(t) {
                *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(temperature: f32) -> SamplingOptions {
        SamplingOptions { temperature, seed: 7, ..Default::default() }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(opts(0.0));
        assert_eq!(s.sample(&mut [1.0, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_different_seeds_differ() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |seed| {
            let mut s = Sampler::new(SamplingOptions { seed, ..opts(1.0) });
            (0..40).map(|_| s.sample(&mut logits.clone(), &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn top_k_top_p_min_p_restrict_the_candidates() {
        let logits = [5.0, 4.0, 1.0, 0.0, -1.0];
        for seed in 0..200 {
            let mut s = Sampler::new(SamplingOptions { top_k: 2, seed, ..opts(1.0) });
            assert!(s.sample(&mut logits.clone(), &[]) < 2);
            // p(0) ~ 0.71, p(0)+p(1) ~ 0.97: top_p 0.5 keeps only token 0.
            let mut s = Sampler::new(SamplingOptions { top_p: 0.5, seed, ..opts(1.0) });
            assert_eq!(s.sample(&mut logits.clone(), &[]), 0);
            // min_p 0.5: p(1)/p(0) = e^-1 ~ 0.37 < 0.5, so only token 0 survives.
            let mut s = Sampler::new(SamplingOptions { min_p: 0.5, seed, ..opts(1.0) });
            assert_eq!(s.sample(&mut logits.clone(), &[]), 0);
        }
    }

    #[test]
    fn repetition_penalty_follows_transformers() {
        let mut l = [2.0, -2.0, 1.0];
        apply_repetition_penalty(&mut l, &[0, 1, 0], 2.0);
        assert_eq!(l, [1.0, -4.0, 1.0]);
    }
}
