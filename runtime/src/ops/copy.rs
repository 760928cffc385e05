//! Copy kernel: dst = src over n 16-byte words. It measures the adapter's bandwidth ceiling for
//! memory-bound kernels (`cria bench` reports decode throughput as a ratio to it).

use super::check::{compare_exact, CheckFailure, Rng};
use super::{grid, need};
use crate::error::Result;
use crate::gpu::{Binding, Gpu, GpuBuffer, KernelSpec, Recorder, Variant};

const WG: u32 = 256;
const SPEC: KernelSpec = KernelSpec {
    name: "copy",
    source: include_str!("../../../shaders/copy.wgsl"),
    entry: "copy",
    bindings: &[Binding::ReadOnly, Binding::ReadWrite],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
}

/// Copies `words` 16-byte words from `src` to `dst`.
pub fn encode(rec: &mut Recorder<'_>, src: &GpuBuffer, dst: &GpuBuffer, words: usize) -> Result<()> {
    need("copy", "src", src, words * 4)?;
    need("copy", "dst", dst, words * 4)?;
    let kernel = rec.gpu().kernel(&SPEC, &Variant::constants(&[("WG", WG as f64)]))?;
    rec.dispatch(&kernel, &Params { n: words as u32 }, &[src, dst], grid(rec, (words as u32).div_ceil(WG)))
}

/// Measures the copy bandwidth in bytes/s (bytes read + bytes written) over `bytes`-sized
/// buffers, best of `reps` timed submits of `iters` copies each, after one warm-up.
#[cfg(not(target_arch = "wasm32"))]
pub fn bandwidth(gpu: &Gpu, bytes: u64, iters: u32, reps: u32) -> Result<f64> {
    let bytes = bytes.min(gpu.max_binding_bytes()) / 16 * 16;
    let words = (bytes / 16) as usize;
    let src = GpuBuffer::zeroed(gpu, "copy src", bytes)?;
    let dst = GpuBuffer::zeroed(gpu, "copy dst", bytes)?;
    let mut rec = Recorder::new(gpu, iters.max(1));
    encode(&mut rec, &src, &dst, words)?;
    rec.submit()?;
    gpu.wait()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = std::time::Instant::now();
        for _ in 0..iters {
            encode(&mut rec, &src, &dst, words)?;
        }
        rec.submit()?;
        gpu.wait()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * bytes as f64 * f64::from(iters) / best)
}

pub async fn check(gpu: &Gpu, seed: u64) -> Result<(), CheckFailure> {
    let mut rng = Rng::new(seed);
    for &words in &[1usize, 3, 17, 255, 257, 70_000] {
        let data: Vec<u32> = (0..words * 4).map(|_| rng.next_u64() as u32).collect();
        let src = GpuBuffer::from_slice(gpu, "src", &data)?;
        let dst = GpuBuffer::zeroed(gpu, "dst", (words * 16) as u64)?;
        let mut rec = Recorder::new(gpu, 1);
        encode(&mut rec, &src, &dst, words)?;
        rec.submit()?;
        compare_exact(&format!("copy {words} words"), seed, &dst.read_u32(gpu).await?, &data)?;
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
}
