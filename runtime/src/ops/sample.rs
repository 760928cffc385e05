//! Sampling on the GPU: repetition penalty, greedy or temperature with top-k, top-p and min-p,
//! and the draw itself, so a decode step reads back one token id instead of the logits.
//! Reference: [`crate::sampling::candidates`] and [`crate::sampling::choose`] (transformers'
//! logits processors and warpers).

use super::check::{CheckFailure, Mismatch, Rng};
use super::need;
use crate::error::{Error, Result};
use crate::gpu::{Binding, Gpu, GpuBuffer, KernelSpec, Recorder, Variant};
use crate::sampling::{self, SamplingOptions};

const SPEC: KernelSpec = KernelSpec {
    name: "sample",
    source: include_str!("../../../shaders/sample.wgsl"),
    entry: "sample",
    bindings: &[Binding::ReadOnly, Binding::ReadOnly, Binding::ReadWrite, Binding::ReadWrite],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    vocab: u32,
    n_penalty: u32,
    top_k: u32,
    greedy: u32,
    temperature: f32,
    top_p: f32,
    min_p: f32,
    penalty: f32,
    u: f32,
    _pad: [u32; 3],
}

/// Buffers the sampler uses: the penalty list (room for `max_penalty` ids), scratch for the
/// vocabulary, and the chosen id.
#[derive(Debug)]
pub struct SampleScratch {
    pub penalty_ids: GpuBuffer,
    pub max_penalty: usize,
    pub work: GpuBuffer,
    pub token: GpuBuffer,
}

impl SampleScratch {
    /// Bytes [`SampleScratch::new`] allocates.
    pub fn bytes(vocab: usize, max_penalty: usize) -> u64 {
        (max_penalty.max(1) as u64 + vocab as u64 + 1) * 4
    }

    pub fn new(gpu: &Gpu, vocab: usize, max_penalty: usize) -> Result<SampleScratch> {
        Ok(SampleScratch {
            penalty_ids: GpuBuffer::zeroed(gpu, "penalty ids", (max_penalty.max(1) * 4) as u64)?,
            max_penalty: max_penalty.max(1),
            work: GpuBuffer::zeroed(gpu, "sampling scratch", (vocab * 4) as u64)?,
            token: GpuBuffer::zeroed(gpu, "sampled token", 4)?,
        })
    }

    /// Writes the distinct ids of `history` (the tokens the penalty applies to) for the next
    /// [`encode`]; returns how many.
    pub fn set_penalty_ids(&self, gpu: &Gpu, history: &[u32]) -> Result<usize> {
        let mut ids: Vec<u32> = history.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() > self.max_penalty {
            return Err(Error::shape("sample", "distinct tokens for the repetition penalty", format!("<= {}", self.max_penalty), ids.len()));
        }
        if !ids.is_empty() {
            self.penalty_ids.write(gpu, 0, bytemuck::cast_slice(&ids))?;
        }
        Ok(ids.len())
    }
}

/// Records the choice of the next token from `logits [vocab]` into `scratch.token`, with the
/// uniform draw `u` in [0, 1) and the first `n_penalty` ids of `scratch.penalty_ids`.
pub fn encode(rec: &mut Recorder<'_>, logits: &GpuBuffer, vocab: usize, scratch: &SampleScratch, n_penalty: usize, o: &SamplingOptions, u: f32) -> Result<()> {
    need("sample", "logits", logits, vocab)?;
    need("sample", "scratch", &scratch.work, vocab)?;
    if vocab == 0 || n_penalty > scratch.max_penalty {
        return Err(Error::shape("sample", "vocabulary and penalty ids", format!("vocab >= 1, <= {} ids", scratch.max_penalty), format!("{vocab}, {n_penalty}")));
    }
    let kernel = rec.gpu().kernel(&SPEC, &Variant::default())?;
    let penalty = if o.repetition_penalty > 0.0 && o.repetition_penalty != 1.0 { o.repetition_penalty } else { 1.0 };
    let params = Params {
        vocab: vocab as u32,
        n_penalty: if penalty == 1.0 { 0 } else { n_penalty as u32 },
        top_k: o.top_k.min(u32::MAX as usize) as u32,
        greedy: u32::from(o.temperature <= 0.0),
        temperature: o.temperature,
        top_p: o.top_p,
        min_p: o.min_p,
        penalty,
        u: u.clamp(0.0, 1.0 - f32::EPSILON),
        _pad: [0; 3],
    };
    rec.dispatch(&kernel, &params, &[logits, &scratch.penalty_ids, &scratch.work, &scratch.token], [1, 1, 1])
}

/// Why a GPU choice is wrong, or None: it must be a candidate of the CPU reference (same
/// thresholds), and the reference's cumulative mass must pass `u` at it, up to f32 rounding
/// (the GPU sums in f32, the reference in f64).
fn judge(logits: &[f32], o: &SamplingOptions, u: f32, got: u32) -> Option<String> {
    if o.temperature <= 0.0 {
        let want = sampling::argmax(logits);
        return (got != want).then(|| format!("greedy chose {got}, argmax is {want}"));
    }
    let kept = sampling::candidates(logits, o);
    let total: f64 = kept.iter().map(|c| c.1).sum();
    let target = f64::from(u) * total;
    let slack = 1e-4 * total;
    let mut before = 0.0;
    for &(id, p) in &kept {
        if id == got {
            let ok = before <= target + slack && target - slack < before + p;
            return (!ok).then(|| format!("chose {got} whose mass interval [{before:.6}, {:.6}) misses u * total = {target:.6}", before + p));
        }
        before += p;
    }
    Some(format!("chose {got}, not among the {} candidates", kept.len()))
}

pub async fn check(gpu: &Gpu, seed: u64) -> Result<(), CheckFailure> {
    let mut rng = Rng::new(seed);
    let opts = |temperature: f32, top_k: usize, top_p: f32, min_p: f32, repetition_penalty: f32| SamplingOptions { temperature, top_k, top_p, min_p, repetition_penalty, seed: 0 };
    let cases = [
        opts(0.0, 0, 1.0, 0.0, 1.0),
        opts(0.0, 0, 1.0, 0.0, 1.3),
        opts(1.0, 0, 1.0, 0.0, 1.0),
        opts(0.7, 40, 1.0, 0.0, 1.0),
        opts(0.8, 0, 0.9, 0.0, 1.0),
        opts(1.2, 50, 0.95, 0.05, 1.1),
        opts(0.5, 1, 1.0, 0.0, 1.0),
        opts(2.0, 0, 0.5, 0.1, 1.0),
        opts(1.0, 3, 0.0, 0.0, 1.0),
    ];
    for &vocab in &[1usize, 7, 300, 5003, 32000] {
        let scratch = SampleScratch::new(gpu, vocab, 64)?;
        for o in &cases {
            for _ in 0..4 {
                let mut logits = rng.normals(vocab, 3.0);
                if vocab > 10 {
                    logits[3] = logits[5]; // a tie
                }
                let history: Vec<u32> = (0..rng.below(20)).map(|_| rng.below(vocab as u32)).collect();
                let u = rng.uniform();
                let lb = GpuBuffer::from_slice(gpu, "logits", &logits)?;
                let n = scratch.set_penalty_ids(gpu, &history)?;
                let mut rec = Recorder::new(gpu, 2);
                encode(&mut rec, &lb, vocab, &scratch, n, o, u)?;
                rec.submit()?;
                let got = scratch.token.read_u32(gpu).await?[0];
                let mut penalised = logits.clone();
                if o.repetition_penalty != 1.0 {
                    sampling::apply_repetition_penalty(&mut penalised, &history, o.repetition_penalty);
                }
                if let Some(why) = judge(&penalised, o, u, got) {
                    let what = format!("sample vocab {vocab} {o:?} u {u}: {why}");
                    return Err(Mismatch { what, seed, len: vocab, bad: 1, max_abs: 0.0, mean_abs: 0.0, worst: got as usize, got: got as f32, want: f32::NAN }.into());
                }
            }
        }
    }
    Ok(())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::testing::{gpu, run};
    use super::*;

    #[test]
    fn matches_cpu_reference() {
        run(gpu(), check);
    }

    /// Over many draws the GPU's choices follow the reference distribution (top-k 3 of
    /// logits 2, 1, 0, -5: probabilities 0.665, 0.245, 0.090).
    #[test]
    fn draws_follow_the_distribution() {
        let Some(g) = gpu() else { return };
        let logits = [2.0f32, 1.0, 0.0, -5.0];
        let lb = GpuBuffer::from_slice(g, "logits", &logits).unwrap();
        let scratch = SampleScratch::new(g, 4, 1).unwrap();
        let o = SamplingOptions { temperature: 1.0, top_k: 3, ..Default::default() };
        let mut counts = [0usize; 4];
        let mut rng = Rng::new(1);
        for _ in 0..600 {
            let mut rec = Recorder::new(g, 1);
            encode(&mut rec, &lb, 4, &scratch, 0, &o, rng.uniform()).unwrap();
            rec.submit().unwrap();
            counts[pollster::block_on(scratch.token.read_u32(g)).unwrap()[0] as usize] += 1;
        }
        assert_eq!(counts[3], 0, "top-k 3 excludes the last token");
        let freq: Vec<f64> = counts.iter().map(|&c| c as f64 / 600.0).collect();
        for (f, want) in freq.iter().zip([0.665, 0.245, 0.090]) {
            assert!((f - want).abs() < 0.06, "{freq:?}");
        }
    }
}
