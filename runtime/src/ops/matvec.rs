//! Matrix-vector product for decode: y [rows] = W [rows, k] · x [k], weights of every type
//! (block-quantized ones dequantized in the kernel).
//! Reference: HF `nn.Linear` (bias-free), `x @ W.T`.

use super::check::CheckFailure;
use super::matrix::weight_variant;
use super::glu::Activation;
use super::{grid, need, Matrix, WeightDType};
use crate::error::{Error, Result};
use crate::gpu::{Binding, Gpu, GpuBuffer, KernelSpec, Recorder};

const BINDINGS: &[Binding] = &[Binding::ReadOnly, Binding::ReadOnly, Binding::ReadWrite];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    k: u32,
    row_words: u32,
    out_offset: u32,
    y_stride: u32,
}

/// One entry point for every weight type: the type is a set of override constants.
const SPEC: KernelSpec = KernelSpec { name: "matvec", source: concat!(include_str!("../../../shaders/weights.wgsl"), include_str!("../../../shaders/activation.wgsl"), include_str!("../../../shaders/matvec.wgsl")), entry: "matvec", bindings: BINDINGS };

/// Records `y = W x` (one dispatch per chunk of W). `y` must not alias `x`.
pub fn encode(rec: &mut Recorder<'_>, w: &Matrix, x: &GpuBuffer, y: &GpuBuffer) -> Result<()> {
    encode_tokens(rec, w, x, 1, y)
}

/// Records `y [m, rows] = x [m, k] · W^T` as m matrix-vector products: for short prompts, where
/// the tiled matmul would compute mostly padding.
pub fn encode_tokens(rec: &mut Recorder<'_>, w: &Matrix, x: &GpuBuffer, m: usize, y: &GpuBuffer) -> Result<()> {
    record(rec, w, x, m, y, None)
}

/// Records the gated MLP input `y [m, rows / 2] = act(x · G^T) * (x · U^T)` from a matrix whose
/// rows interleave G and U ([`Matrix::from_parts`] with `Layout::Interleaved`): one pass over
/// the weights instead of two matvecs and a gating pass.
pub fn encode_glu(rec: &mut Recorder<'_>, w: &Matrix, x: &GpuBuffer, m: usize, y: &GpuBuffer, act: Activation) -> Result<()> {
    if !w.rows.is_multiple_of(2) || w.chunks.iter().any(|c| !c.rows.start.is_multiple_of(2)) {
        return Err(Error::shape("matvec glu", format!("rows of {}", w.name), "(gate, up) pairs in every chunk", w.rows));
    }
    record(rec, w, x, m, y, Some(act))
}

/// `glu`: the gate activation of a fused gate/up matrix (None: a plain product).
fn record(rec: &mut Recorder<'_>, w: &Matrix, x: &GpuBuffer, m: usize, y: &GpuBuffer, glu: Option<Activation>) -> Result<()> {
    let out_rows = if glu.is_some() { w.rows / 2 } else { w.rows };
    need("matvec", "x", x, m * w.cols)?;
    need("matvec", "y", y, m * out_rows)?;
    let (wg, rows) = rec.gpu().tuning.matvec;
    let act = glu.unwrap_or(Activation::Silu).constant();
    let constants = [("WG", wg as f64), ("ROWS", rows as f64), ("GLU", if glu.is_some() { 1.0 } else { 0.0 }), ("ACT", act)];
    for chunk in &w.chunks {
        let kernel = rec.gpu().kernel(&SPEC, &weight_variant(chunk.dtype, &constants))?;
        let params = Params {
            rows: chunk.rows.len() as u32,
            k: w.cols as u32,
            row_words: chunk.row_words as u32,
            out_offset: chunk.rows.start as u32,
            y_stride: out_rows as u32,
        };
        let [gx, gy, _] = grid(rec, (chunk.rows.len() as u32).div_ceil(rows));
        rec.dispatch(&kernel, &params, &[x, &chunk.buffer, y], [gx, gy, m as u32])?;
    }
    Ok(())
}

/// CPU reference: out[m, n] = sum_k x[m, k] w[n, k], f64 accumulation. (Shared with matmul.)
pub fn reference(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let wr = &w[j * k..(j + 1) * k];
            out[i * n + j] = xr.iter().zip(wr).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>() as f32;
        }
    }
    out
}

pub async fn check(gpu: &Gpu, seed: u64) -> Result<(), CheckFailure> {
    // (1, rows, k, chunk byte limit): k not a multiple of 4 or 8, rows not a multiple of 4 or 16,
    // and a matrix split over several bindings; k that ends in a partial block of every block
    // type, and k = 256·n and 32·n (whole blocks, as GGUF files have) split over bindings.
    let cases = [(1, 1, 1, None), (1, 3, 17, None), (1, 255, 257, None), (1, 257, 255, None), (1, 17, 1024, None), (1, 100, 33, Some(1000)), (1, 64, 2048, None), (1, 9, 96, None), (1, 5, 100, None), (1, 37, 768, Some(7000)), (1, 29, 160, Some(700))];
    super::matrix::check_linear(gpu, seed, "matvec", &cases, |rec, w, x, _, y| encode(rec, w, x, y)).await?;
    // Several tokens at once (short prefills).
    let cases = [(3, 17, 33, None), (5, 100, 70, Some(1000)), (16, 9, 64, None), (3, 21, 512, Some(4200))];
    super::matrix::check_linear(gpu, seed, "matvec (tokens)", &cases, encode_tokens).await?;
    check_glu(gpu, seed).await
}

/// The fused gate/up/activation against separate f64 products and the gating reference.
async fn check_glu(gpu: &Gpu, seed: u64) -> Result<(), CheckFailure> {
    use super::check::{compare, tolerance, DType, Rng};
    use super::matrix::{random_tensor, tensor_rows};
    use super::Layout;
    let mut rng = Rng::new(seed ^ 0x61u64);
    // (tokens, rows of each of gate and up, k, chunk limit): odd row counts, partial blocks,
    // several chunks, each filled in several pieces.
    for &(m, rows, k, limit) in &[(1usize, 1usize, 5usize, None), (1, 37, 70, Some(4000u64)), (3, 64, 96, None), (1, 5632 / 16, 128, Some(30_000)), (2, 23, 512, Some(9000))] {
        for (i, dtype) in WeightDType::ALL.into_iter().enumerate() {
            // Each activation on every weight type over the cases.
            let act = Activation::ALL[(i + rows) % 2];
            let ((g, gate_w), (u, up_w)) = (random_tensor(&mut rng, rows, k, dtype)?, random_tensor(&mut rng, rows, k, dtype)?);
            // Read back a few rows at a time, as a loader streams them.
            let parts = [&g, &u];
            let read = &mut |i: usize, r: std::ops::Range<usize>| tensor_rows(parts[i], r, k);
            let w = Matrix::from_parts_with_limit(gpu, "gate_up", k, &[dtype; 2], &[rows, rows], Layout::Interleaved, read, limit.unwrap_or(u64::MAX))?;
            // x scaled so that gate and up are O(1), as a normalised activation makes them: the
            // activations' curved region is where they differ, and an O(sqrt(k)) gate would
            // multiply the f32 rounding of a near-zero up past the tolerance.
            let x = rng.normals(m * k, 1.0 / (k as f32).sqrt());
            let xb = GpuBuffer::from_slice(gpu, "x", &x)?;
            let out = GpuBuffer::zeroed(gpu, "out", (m * rows * 4) as u64)?;
            let mut rec = Recorder::new(gpu, 4);
            encode_glu(&mut rec, &w, &xb, m, &out, act)?;
            rec.submit()?;
            let gate = reference(&x, &gate_w, m, rows, k);
            let up = reference(&x, &up_w, m, rows, k);
            let want = super::glu::reference(&gate, &up, act);
            let what = format!("matvec glu {} {} {m} tokens, 2x{rows}x{k} ({} chunks)", act.name(), dtype.name(), w.chunks.len());
            compare(&what, seed, &out.read_f32(gpu).await?, &want, tolerance(DType::F32))?;
        }
    }
    Ok(())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::testing::{floor_gpu, gpu, run};
    use super::*;
    use crate::Error;

    #[test]
    fn matches_cpu_reference() {
        run(gpu(), check);
    }

    /// The 64 x 4 shape discrete GPUs get, run on whatever adapter this is (CI's lavapipe would
    /// otherwise only ever see 16 x 16).
    #[test]
    fn gpu_shape_matches_cpu_reference() {
        run(super::super::testing::tuned_gpu(crate::gpu::Tuning::GPU), check);
    }

    /// And the CPU adapters' 16 x 16 shape on a discrete GPU.
    #[test]
    fn cpu_shape_matches_cpu_reference() {
        run(super::super::testing::tuned_gpu(crate::gpu::Tuning::CPU), check);
    }

    /// f16 weights on a device with SHADER_F16 turned off: the packed-u32 path.
    #[test]
    fn f16_weights_without_shader_f16() {
        let gpu = floor_gpu();
        if let Some(g) = gpu {
            assert!(!g.features.shader_f16);
        }
        run(gpu, check);
    }

    #[test]
    fn wrong_input_length_is_a_typed_error() {
        let Some(g) = gpu() else { return };
        let w = Matrix::from_f32(g, "w", 4, 8, WeightDType::F32, &[1.0; 32]).unwrap();
        let x = GpuBuffer::zeroed(g, "x", 4 * 4).unwrap();
        let y = GpuBuffer::zeroed(g, "y", 4 * 4).unwrap();
        let mut rec = Recorder::new(g, 1);
        let err = encode(&mut rec, &w, &x, &y).unwrap_err();
        assert!(matches!(err, Error::Shape { op: "matvec", .. }), "{err}");
    }
}
