//! Choosing the next token from logits: greedy, temperature, top-k, top-p, min-p, repetition
//! penalty, with a seeded generator (same seed, same output). Semantics follow transformers'
//! logits processors (`RepetitionPenaltyLogitsProcessor`, `TopKLogitsWarper`, `TopPLogitsWarper`,
//! `MinPLogitsWarper`), applied in that order after temperature.

use crate::rng::Rng;

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
    /// Rejects values outside what the samplers define: temperature >= 0, top_p and min_p in
    /// [0, 1], repetition_penalty > 0, all finite.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |option, value: f32, hint| Err(crate::Error::InvalidSampling { option, value: value.to_string(), hint });
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad("temperature", self.temperature, "use 0 for greedy decoding, or a positive value (typically 0.1 to 2)");
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return bad("top_p", self.top_p, "a probability mass in [0, 1]; 1 disables it");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", self.min_p, "a fraction of the top probability in [0, 1]; 0 disables it");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad("repetition_penalty", self.repetition_penalty, "a positive factor; 1 disables it, 1.1 to 1.3 is typical");
        }
        Ok(())
    }

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
        let u = self.next_uniform();
        choose(logits, &self.options, u)
    }

    /// The uniform draw of the next sampling step (the GPU sampler takes it as a parameter, so
    /// the same seed gives the same tokens on either path).
    pub fn next_uniform(&mut self) -> f32 {
        self.rng.uniform()
    }
}

/// The candidates that survive temperature, top-k, top-p and min-p, in id order, with their
/// unnormalised probabilities `exp((l - max) / T)` (the most likely token has 1).
///
/// Thresholds, as transformers' warpers: top-k keeps every token at least as likely as the k-th
/// (ties kept); top-p then keeps token x when the mass of the kept tokens no more likely than x
/// exceeds `1 - top_p` of their total; min-p keeps tokens with at least `min_p` of the top
/// probability. The GPU sampler (ops::sample) computes the same thresholds by bisection.
pub fn candidates(logits: &[f32], o: &SamplingOptions) -> Vec<(u32, f64)> {
    let t = f64::from(o.temperature.max(f32::MIN_POSITIVE));
    let max = logits.iter().copied().filter(|v| !v.is_nan()).fold(f32::NEG_INFINITY, f32::max);
    let p: Vec<f64> = logits.iter().map(|&l| if l.is_nan() { 0.0 } else { ((f64::from(l) - f64::from(max)) / t).exp() }).collect();
    let mut sorted = p.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let t_k = if o.top_k > 0 && o.top_k < p.len() { sorted[o.top_k - 1] } else { 0.0 };
    let mut t_p = 0.0;
    if o.top_p < 1.0 {
        t_p = sorted[0]; // top_p <= 0: only the top token(s), as transformers keeps one
        // Ascending over the top-k survivors: the first value whose cumulative mass (ties
        // included) exceeds (1 - top_p) of their total.
        let kept: Vec<f64> = sorted.iter().copied().filter(|&v| v >= t_k).collect();
        let total: f64 = kept.iter().sum();
        let floor = (1.0 - f64::from(o.top_p)) * total;
        let mut mass = 0.0;
        let mut i = kept.len();
        while i > 0 {
            let v = kept[i - 1];
            let mut j = i;
            while j > 0 && kept[j - 1] == v {
                mass += kept[j - 1];
                j -= 1;
            }
            if mass > floor {
                t_p = v;
                break;
            }
            i = j;
        }
    }
    let tau = t_k.max(t_p).max(f64::from(o.min_p));
    p.iter().enumerate().filter(|&(_, &v)| v >= tau && v > 0.0).map(|(i, &v)| (i as u32, v)).collect()
}

/// Samples from [`candidates`] with the uniform draw `u` in [0, 1): the first candidate, in id
/// order, at which the cumulative probability passes `u`.
pub fn choose(logits: &[f32], o: &SamplingOptions, u: f32) -> u32 {
    let kept = candidates(logits, o);
    let total: f64 = kept.iter().map(|c| c.1).sum();
    let target = f64::from(u) * total;
    let mut acc = 0.0;
    for &(id, p) in &kept {
        acc += p;
        if acc > target {
            return id;
        }
    }
    kept.last().map_or(argmax(logits), |c| c.0)
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
        if let Some(l) = logits.get_mut(t as usize)
            && seen.insert(t) {
                *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
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
    fn thresholds_follow_transformers_warpers() {
        let o = |top_k, top_p, min_p| SamplingOptions { temperature: 1.0, top_k, top_p, min_p, ..Default::default() };
        let logits = [0.0f32, 3.0, 1.0, 3.0, 2.0];
        let ids = |o: &SamplingOptions| candidates(&logits, o).iter().map(|c| c.0).collect::<Vec<_>>();
        assert_eq!(ids(&o(0, 1.0, 0.0)), vec![0, 1, 2, 3, 4]);
        // top-k 1 keeps both tokens tied at the top (as torch.topk's threshold does).
        assert_eq!(ids(&o(1, 1.0, 0.0)), vec![1, 3]);
        assert_eq!(ids(&o(3, 1.0, 0.0)), vec![1, 3, 4]);
        // p ∝ e^0, e^3, e^1, e^3, e^2: the two top tokens hold 0.77 of the mass.
        assert_eq!(ids(&o(0, 0.7, 0.0)), vec![1, 3]);
        assert_eq!(ids(&o(0, 0.8, 0.0)), vec![1, 3, 4]);
        // min-p 0.3: e^-1 = 0.37 survives, e^-2 = 0.14 does not.
        assert_eq!(ids(&o(0, 1.0, 0.3)), vec![1, 3, 4]);
        // Sampling walks the survivors in id order.
        assert_eq!(choose(&logits, &o(0, 0.8, 0.0), 0.0), 1);
        assert_eq!(choose(&logits, &o(0, 0.8, 0.0), 0.99), 4);
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
    fn out_of_range_options_are_typed_errors() {
        for o in [
            SamplingOptions { temperature: -1.0, ..Default::default() },
            SamplingOptions { temperature: f32::NAN, ..Default::default() },
            SamplingOptions { top_p: 1.5, ..Default::default() },
            SamplingOptions { min_p: -0.1, ..Default::default() },
            SamplingOptions { repetition_penalty: 0.0, ..Default::default() },
        ] {
            assert!(matches!(o.validate(), Err(crate::Error::InvalidSampling { .. })), "{o:?}");
        }
        assert!(SamplingOptions::default().validate().is_ok());
    }

    #[test]
    fn repetition_penalty_follows_transformers() {
        let mut l = [2.0, -2.0, 1.0];
        apply_repetition_penalty(&mut l, &[0, 1, 0], 2.0);
        assert_eq!(l, [1.0, -4.0, 1.0]);
    }
}
