//! Embedding lookup: ids [n] -> out [n, dim] from a [vocab, dim] table (every weight type),
//! times a scale (Gemma multiplies its embeddings by sqrt(hidden_size)).
//! Reference: HF `nn.Embedding` (`LlamaModel.embed_tokens`), `Gemma3TextScaledWordEmbedding`.

use super::check::{compare, tolerance, CheckFailure, DType, Rng};
use super::matrix::{random_matrix, weight_variant};
use super::{grid, need, Matrix, WeightDType};
use crate::error::{Error, Result};
use crate::gpu::{Binding, GpuBuffer, KernelSpec, Recorder};

const WG: u32 = 256;
const BINDINGS: &[Binding] = &[Binding::ReadOnly, Binding::ReadOnly, Binding::ReadWrite];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_tokens: u32,
    dim: u32,
    row_start: u32,
    rows: u32,
    row_words: u32,
    scale: f32,
}

/// One entry point for every weight type: the type is a set of override constants.
const SPEC: KernelSpec = KernelSpec { name: "embedding", source: concat!(include_str!("../../../shaders/weights.wgsl"), include_str!("../../../shaders/embedding.wgsl")), entry: "embedding", bindings: BINDINGS };

/// Records `out[t] = table[ids[t]] * scale` for `n_tokens` ids. The caller validates ids against
/// the vocabulary size on the host ([`validate_ids`]); an id outside the table leaves its row
/// unwritten.
pub fn encode(rec: &mut Recorder<'_>, table: &Matrix, ids: &GpuBuffer, n_tokens: usize, out: &GpuBuffer, scale: f32) -> Result<()> {
    need("embedding", "ids", ids, n_tokens)?;
    need("embedding", "out", out, n_tokens * table.cols)?;
    let groups = ((n_tokens * table.cols) as u32).div_ceil(WG);
    for chunk in &table.chunks {
        let kernel = rec.gpu().kernel(&SPEC, &weight_variant(chunk.dtype, &[("WG", WG as f64)]))?;
        let params = Params {
            n_tokens: n_tokens as u32,
            dim: table.cols as u32,
            row_start: chunk.rows.start as u32,
            rows: chunk.rows.len() as u32,
            row_words: chunk.row_words as u32,
            scale,
        };
        rec.dispatch(&kernel, &params, &[ids, &chunk.buffer, out], grid(rec, groups))?;
    }
    Ok(())
}

/// Every id must index the table: a typed error names the first that does not.
pub fn validate_ids(ids: &[u32], vocab_size: usize) -> Result<()> {
    match ids.iter().find(|&&id| id as usize >= vocab_size) {
        Some(&id) => Err(Error::TokenOutOfRange { id, vocab_size }),
        None => Ok(()),
    }
}

/// CPU reference (the product in f32, as the kernel and HF form it).
pub fn reference(table: &[f32], dim: usize, ids: &[u32], scale: f32) -> Vec<f32> {
    ids.iter().flat_map(|&id| table[id as usize * dim..(id as usize + 1) * dim].iter().map(move |&v| v * scale)).collect()
}

/// GPU vs CPU on random tables and ids, for every storage dtype, including a table split into
/// several chunks and rows that end in a partial quantization block.
pub async fn check(gpu: &crate::Gpu, seed: u64) -> Result<(), CheckFailure> {
    let mut rng = Rng::new(seed);
    for &(vocab, dim, n, limit) in &[(17usize, 3usize, 1usize, None), (255, 17, 5, None), (257, 31, 9, Some(1024u64)), (40, 256, 3, None), (33, 70, 4, Some(600)), (21, 512, 5, Some(4500))] {
        for (i, dtype) in WeightDType::ALL.into_iter().enumerate() {
            let (table, values) = random_matrix(gpu, &mut rng, "table", vocab, dim, dtype, limit.unwrap_or(u64::MAX))?;
            let ids: Vec<u32> = (0..n).map(|_| rng.below(vocab as u32)).collect();
            validate_ids(&ids, vocab)?;
            let ids_buf = GpuBuffer::from_slice(gpu, "ids", &ids)?;
            let out = GpuBuffer::zeroed(gpu, "out", (n * dim * 4) as u64)?;
            let mut rec = Recorder::new(gpu, 64);
            // Unscaled, or scaled as Gemma's are (sqrt(dim), not a power of two), alternately.
            let scale = if (i + dim) % 2 == 0 { 1.0 } else { (dim as f32).sqrt() };
            encode(&mut rec, &table, &ids_buf, n, &out, scale)?;
            rec.submit()?;
            let got = out.read_f32(gpu).await?;
            let want = reference(&values, dim, &ids, scale);
            let what = format!("embedding {} vocab {vocab} dim {dim} n {n} chunks {} scale {scale}", dtype.name(), table.chunks.len());
            compare(&what, seed, &got, &want, tolerance(DType::F32))?;
        }
    }
    Ok(())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::testing::{floor_gpu, gpu, run};
    use super::*;

    #[test]
    fn matches_cpu_reference() {
        run(gpu(), check);
    }

    #[test]
    fn matches_cpu_reference_without_shader_f16() {
        run(floor_gpu(), check);
    }

    #[test]
    fn out_of_range_id_is_a_typed_error() {
        let err = validate_ids(&[1, 2, 50], 50).unwrap_err();
        assert!(matches!(err, Error::TokenOutOfRange { id: 50, vocab_size: 50 }), "{err}");
    }
}
