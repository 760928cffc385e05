//! Shared by the runtime's integration tests.

use cria::{Gpu, GpuOptions};
use std::sync::{Arc, OnceLock};

/// One device per test binary. Without an adapter: None (the test returns early), unless
/// CRIA_REQUIRE_GPU=1, which CI sets, turns it into a failure.
#[allow(dead_code)] // not every test binary needs a GPU
pub fn gpu() -> Option<Arc<Gpu>> {
    static GPU: OnceLock<Option<Arc<Gpu>>> = OnceLock::new();
    GPU.get_or_init(|| match pollster::block_on(Gpu::new(GpuOptions::default())) {
        Ok(g) => Some(Arc::new(g)),
        Err(e) if std::env::var("CRIA_REQUIRE_GPU").as_deref() == Ok("1") => panic!("CRIA_REQUIRE_GPU=1 but no GPU: {e}"),
        Err(e) => {
            eprintln!("SKIPPED (no GPU adapter): {e}");
            None
        }
    })
    .clone()
}

/// The path a test asset variable (set by `scripts/get-test-assets.sh`) points at, checked to
/// exist. Unset: None (the test prints SKIPPED and returns), unless CRIA_REQUIRE_ASSETS=1, which
/// CI sets, turns it into a failure.
#[allow(dead_code)] // not every test binary reads assets
pub fn asset(var: &str) -> Option<std::path::PathBuf> {
    match std::env::var_os(var) {
        Some(p) => {
            let p = std::path::PathBuf::from(p);
            assert!(p.exists(), "{var}={} does not exist; run scripts/get-test-assets.sh", p.display());
            Some(p)
        }
        None if std::env::var("CRIA_REQUIRE_ASSETS").as_deref() == Ok("1") => {
            panic!("{var} is not set and CRIA_REQUIRE_ASSETS=1: run `eval \"$(scripts/get-test-assets.sh DEST)\"`")
        }
        None => {
            eprintln!("SKIPPED: {var} not set (scripts/get-test-assets.sh DEST prints it)");
            None
        }
    }
}

/// The logits a model gives along `ids` (transformers' greedy continuation of `prompt`): after
/// the prompt, then after each id but the last, fed one at a time as decode steps.
#[allow(dead_code)]
pub fn teacher_forced(m: &mut cria::model::Llama, prompt: &[u32], ids: &[u32]) -> Vec<Vec<f32>> {
    let vocab = m.config.vocab_size;
    let all = m.forward_all_logits(prompt, 0).unwrap();
    let mut steps = vec![all[all.len() - vocab..].to_vec()];
    for (i, &id) in ids[..ids.len().saturating_sub(1)].iter().enumerate() {
        steps.push(m.forward_all_logits(&[id], prompt.len() + i).unwrap());
    }
    steps
}

/// What quantizing activations to 8 bits (the CPU device on rows of ggml blocks, as llama.cpp's
/// CPU backend does) did to a model's logits, per prefill position or per [`teacher_forced`]
/// step, against a reference's (f32 arithmetic): the rms difference of each over the
/// reference's logit standard deviation, and the positions whose greedy pick differs.
#[allow(dead_code)]
pub struct Drift {
    pub relative_rms: Vec<f32>,
    pub flips: Vec<Flip>,
}

/// A position whose greedy pick differs from the reference's: by how much the reference
/// preferred its own pick, against the position's rms logit difference.
#[allow(dead_code)]
#[derive(Debug)]
pub struct Flip {
    pub position: usize,
    pub margin: f32,
    pub rms: f32,
}

#[allow(dead_code)]
impl Drift {
    pub fn new(got: &[Vec<f32>], want: &[Vec<f32>]) -> Drift {
        assert_eq!(got.len(), want.len(), "steps");
        let argmax = |v: &[f32]| v.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0;
        let mut relative_rms = Vec::new();
        let mut flips = Vec::new();
        for (position, (g, w)) in got.iter().zip(want).enumerate() {
            let n = w.len() as f32;
            let mean = w.iter().sum::<f32>() / n;
            let std = (w.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n).sqrt();
            let rms = (g.iter().zip(w).map(|(a, b)| (a - b).powi(2)).sum::<f32>() / n).sqrt();
            relative_rms.push(rms / std);
            if argmax(g) != argmax(w) {
                flips.push(Flip { position, margin: w[argmax(w)] - w[argmax(g)], rms });
            }
        }
        Drift { relative_rms, flips }
    }

    /// Per position of a prefill's logits (`vocab` per position).
    pub fn positions(got: &[f32], want: &[f32], vocab: usize) -> Drift {
        let rows = |v: &[f32]| v.chunks(vocab).map(<[f32]>::to_vec).collect::<Vec<_>>();
        Drift::new(&rows(got), &rows(want))
    }

    pub fn median(&self) -> f32 {
        let mut v = self.relative_rms.clone();
        v.sort_by(f32::total_cmp);
        v[v.len() / 2]
    }

    pub fn max(&self) -> f32 {
        self.relative_rms.iter().copied().fold(0.0, f32::max)
    }

    /// Within `budget` (`cria::ops::check::INT8_BUDGET`), or a panic naming `what`.
    pub fn check(&self, what: &str, budget: cria::ops::check::DriftBudget) {
        let flips: Vec<String> = self.flips.iter().map(|f| format!("{} (margin {:.3}, rms {:.3})", f.position, f.margin, f.rms)).collect();
        let summary = format!("{what}: 8-bit activations vs f32 over {} positions: rms/std median {:.3}, max {:.3}; greedy flips at {flips:?}", self.relative_rms.len(), self.median(), self.max());
        eprintln!("{summary}");
        let unexplained = self.flips.iter().any(|f| f.margin > budget.flip_margin * f.rms);
        assert!(self.median() <= budget.median && self.max() <= budget.max && !unexplained, "{summary}: over the budget {budget:?}");
    }
}
