//! Weight matrices on the GPU: [rows, cols] row-major, each row padded to a multiple of 16
//! bytes (so kernels read rows with aligned vec4<u32> loads), split by rows into chunks that
//! each fit one storage binding (128 MiB on many devices; a 32000x2048 f32 embedding is 250 MiB).
//!
//! Storage per dtype, in u32 words: F32 one word per value (bit pattern); F16 and BF16 two
//! values per word, element 2i in the low half (what WGSL's `unpack2x16float` returns as `.x`;
//! a BF16 half is the top half of an f32, widened by a shift); the ggml block types keep their
//! blocks' bytes, bodies first and 16-bit header fields after them (see [`crate::quant`]).
//! Padding words are zero. Kernels never need shader-f16 to read any of them.
//!
//! A matrix may mix types chunk by chunk: a stacked [q; k; v] from a Q4_K_M file whose v is
//! Q6_K keeps each part's type (chunks are cut where the type changes), so nothing is converted.
//!
//! Every kernel that reads weights (matvec, matmul, embedding) is one WGSL entry point
//! specialised per type by override constants ([`WeightDType::constants`]), reading weights
//! through shaders/weights.wgsl: adding a block type is a row in [`BlockType`]'s tables and a
//! case in weights.wgsl's two decoding functions.

use crate::error::{Error, Result};
use crate::gpu::{split_rows, BufferWriter, Gpu, GpuBuffer, Variant};
use crate::tensor::HostTensor;
use crate::quant;
pub use crate::quant::ggml::BlockType;
use half::{bf16, f16};
use std::ops::Range;

/// How a weight matrix is stored: a float type, or one of ggml's block types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightDType {
    F32,
    F16,
    BF16,
    Block(BlockType),
}

impl WeightDType {
    pub const Q8_0: WeightDType = WeightDType::Block(BlockType::Q8_0);
    pub const Q4_0: WeightDType = WeightDType::Block(BlockType::Q4_0);
    pub const Q4_K: WeightDType = WeightDType::Block(BlockType::Q4_K);
    pub const Q6_K: WeightDType = WeightDType::Block(BlockType::Q6_K);

    /// Every type, in [`WeightDType::kind`] order.
    pub const ALL: [WeightDType; 3 + BlockType::ALL.len()] = {
        let mut all = [WeightDType::F32; 3 + BlockType::ALL.len()];
        all[1] = WeightDType::F16;
        all[2] = WeightDType::BF16;
        let mut i = 0;
        while i < BlockType::ALL.len() {
            all[3 + i] = WeightDType::Block(BlockType::ALL[i]);
            i += 1;
        }
        all
    };

    /// u32 words per stored row of `cols` values, padded to 4 words.
    pub fn row_words(self, cols: usize) -> usize {
        match self {
            WeightDType::F32 => cols.next_multiple_of(4),
            WeightDType::F16 | WeightDType::BF16 => cols.div_ceil(2).next_multiple_of(4),
            WeightDType::Block(t) => quant::row_words(t, cols),
        }
    }

    /// The value of the shaders' `KIND` override constant for this type: its index in
    /// [`WeightDType::ALL`] (the `KIND_*` constants of shaders/weights.wgsl).
    pub fn kind(self) -> u32 {
        Self::ALL.iter().position(|&t| t == self).unwrap_or(0) as u32
    }

    /// The override constants shaders/weights.wgsl reads: the type, and for block types the
    /// block's values, body words and header fields.
    pub fn constants(self) -> [(&'static str, f64); 4] {
        let (values, words, fields) = self.block().map_or((32, 0, 0), |t| (t.block_values(), t.body_words(), t.header().fields));
        [("KIND", self.kind() as f64), ("BLOCK_VALUES", values as f64), ("BLOCK_WORDS", words as f64), ("HEADERS", fields as f64)]
    }

    /// Parses a name as the CLI spells it: f32, f16, bf16, q8_0, q4_k, iq4_xs, ...
    pub fn parse(name: &str) -> Result<WeightDType> {
        let lower = name.to_ascii_lowercase();
        Self::ALL.into_iter().find(|t| t.name() == lower).ok_or_else(|| Error::Unsupported {
            what: format!("weight type `{name}`"),
            hint: format!("choose one of {}", Self::ALL.map(|t| t.name()).join(", ")),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            WeightDType::F32 => "f32",
            WeightDType::F16 => "f16",
            WeightDType::BF16 => "bf16",
            WeightDType::Block(t) => t.name(),
        }
    }

    /// The ggml block type, for block-quantized types.
    pub fn block(self) -> Option<BlockType> {
        match self {
            WeightDType::Block(t) => Some(t),
            _ => None,
        }
    }

    pub fn is_block(self) -> bool {
        self.block().is_some()
    }
}

#[derive(Debug)]
pub struct MatrixChunk {
    pub buffer: GpuBuffer,
    pub rows: Range<usize>,
    /// How this chunk's rows are stored, and their length in u32 words.
    pub dtype: WeightDType,
    pub row_words: usize,
}

#[derive(Debug)]
pub struct Matrix {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    pub chunks: Vec<MatrixChunk>,
}

/// Bytes of packed rows converted and written to the GPU at a time: loading holds one piece
/// (plus the source bytes it came from) in host memory, whatever the size of the tensor, which
/// keeps a browser's 32-bit wasm heap far below the model (a 2.2 GB TinyLlama loads through it).
pub const PIECE_BYTES: u64 = 4 << 20;

/// Rows `rows` of part `part` of a matrix being built: the source a loader streams from.
pub type ReadRows<'a> = dyn FnMut(usize, Range<usize>) -> Result<HostTensor> + 'a;

impl Matrix {
    /// Uploads f32 values, stored as `dtype` (F16 rounds to nearest; Q8_0/Q4_0 quantize).
    pub fn from_f32(gpu: &Gpu, name: &str, rows: usize, cols: usize, dtype: WeightDType, data: &[f32]) -> Result<Matrix> {
        Self::from_f32_with_limit(gpu, name, rows, cols, dtype, data, u64::MAX)
    }

    /// As [`Matrix::from_f32`] with an explicit per-chunk byte limit (tests use a small one to
    /// exercise multi-chunk dispatch without huge tensors; the upload pieces shrink with it).
    pub fn from_f32_with_limit(
        gpu: &Gpu,
        name: &str,
        rows: usize,
        cols: usize,
        dtype: WeightDType,
        data: &[f32],
        limit: u64,
    ) -> Result<Matrix> {
        let expected = rows.checked_mul(cols).ok_or_else(|| Error::shape("matrix upload", name, "rows*cols to fit in memory", format!("{rows}x{cols}")))?;
        if data.len() != expected {
            return Err(Error::shape("matrix upload", format!("number of values of {name}"), format!("{expected} ({rows}x{cols})"), data.len()));
        }
        if !quant::can_quantize(dtype) {
            return Err(quant::cannot_quantize(dtype));
        }
        Self::build(gpu, name, cols, &[(0..rows, dtype)], Split::new(gpu, limit, 1), |range, dtype, out| {
            for r in range {
                pack_row(dtype, data[r * cols..(r + 1) * cols].iter().copied(), out)?;
                pad_row(dtype, cols, out);
            }
            Ok(())
        })
    }

    /// Several tensors of `cols` columns stored as one matrix, part i as `dtypes[i]` (converted
    /// where its file type differs): stacked one after another (`Layout::Stacked`: [q; k; v];
    /// parts of different types land in different chunks), or with rows alternating between
    /// two equal parts of one type (`Layout::Interleaved`: gate 0, up 0, gate 1, …; chunks then
    /// split at even rows so that pairs stay together). `part_rows[i]` is the row count of part
    /// i; `read(i, rows)` returns those rows of part i. The parts are read a piece at a time
    /// ([`PIECE_BYTES`]), never whole.
    pub fn from_parts(gpu: &Gpu, name: &str, cols: usize, dtypes: &[WeightDType], part_rows: &[usize], layout: Layout, read: &mut ReadRows<'_>) -> Result<Matrix> {
        Self::from_parts_with_limit(gpu, name, cols, dtypes, part_rows, layout, read, u64::MAX)
    }

    /// As [`Matrix::from_parts`] with an explicit per-chunk byte limit, as
    /// [`Matrix::from_f32_with_limit`] has.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts_with_limit(
        gpu: &Gpu,
        name: &str,
        cols: usize,
        dtypes: &[WeightDType],
        part_rows: &[usize],
        layout: Layout,
        read: &mut ReadRows<'_>,
        limit: u64,
    ) -> Result<Matrix> {
        if dtypes.len() != part_rows.len() {
            return Err(Error::shape("matrix upload", format!("types of the parts of {name}"), part_rows.len(), dtypes.len()));
        }
        let starts: Vec<usize> = part_rows.iter().scan(0, |acc, &r| { let s = *acc; *acc += r; Some(s) }).collect();
        // Runs of consecutive parts of one type: each run is cut into its own chunks.
        let mut runs: Vec<(Range<usize>, WeightDType)> = Vec::new();
        for (i, (&dtype, &rows)) in dtypes.iter().zip(part_rows).enumerate() {
            match runs.last_mut() {
                Some((r, d)) if *d == dtype => r.end += rows,
                _ => runs.push((starts[i]..starts[i] + rows, dtype)),
            }
        }
        let row_multiple = match layout {
            Layout::Stacked => 1,
            Layout::Interleaved => {
                if part_rows.len() != 2 || part_rows[0] != part_rows[1] {
                    return Err(Error::shape("matrix upload", format!("interleaved parts of {name}"), "two of equal rows", part_rows.len()));
                }
                if dtypes[0] != dtypes[1] {
                    return Err(Error::shape("matrix upload", format!("types of the interleaved parts of {name}"), "one type", format!("{} and {}", dtypes[0].name(), dtypes[1].name())));
                }
                2
            }
        };
        // Rows `rows` of part `i`, checked to be what was asked for.
        let mut fetch = |i: usize, rows: Range<usize>| -> Result<HostTensor> {
            let t = read(i, rows.clone())?;
            if t.rows(cols) != Some(rows.len()) {
                let got = t.rows(cols).map_or("a length that is not a whole number of rows".to_string(), |r| format!("{r} rows"));
                return Err(Error::shape("matrix upload", format!("rows {rows:?} of part {i} of {name}"), format!("{} rows of {cols}", rows.len()), got));
            }
            Ok(t)
        };
        let split = Split::new(gpu, limit, row_multiple);
        Self::build(gpu, name, cols, &runs, split, |range, dtype, out| {
            match layout {
                Layout::Stacked => {
                    // The piece may span parts: each part's share is read in one go.
                    for (i, &start) in starts.iter().enumerate() {
                        let local = range.start.max(start).saturating_sub(start)..range.end.min(start + part_rows[i]).saturating_sub(start);
                        if local.is_empty() {
                            continue;
                        }
                        let t = fetch(i, local.clone())?;
                        for row in 0..local.len() {
                            pack_host_row(dtype, &t, row, cols, out)?;
                            pad_row(dtype, cols, out);
                        }
                    }
                }
                Layout::Interleaved => {
                    // Pieces start at even rows (row_multiple 2): rows 2j, 2j+1 are row j of each part.
                    let local = range.start / 2..range.end.div_ceil(2);
                    let (g, u) = (fetch(0, local.clone())?, fetch(1, local.clone())?);
                    for r in range {
                        pack_host_row(dtype, if r % 2 == 0 { &g } else { &u }, r / 2 - local.start, cols, out)?;
                        pad_row(dtype, cols, out);
                    }
                }
            }
            Ok(())
        })
    }

    /// Splits each run of rows of one type into binding-sized chunks, creates each chunk's
    /// buffer and fills it a piece at a time: `fill(rows, dtype, out)` appends those rows packed
    /// (each padded to the type's row words).
    fn build(
        gpu: &Gpu,
        name: &str,
        cols: usize,
        runs: &[(Range<usize>, WeightDType)],
        split: Split,
        mut fill: impl FnMut(Range<usize>, WeightDType, &mut Vec<u32>) -> Result<()>,
    ) -> Result<Matrix> {
        if cols == 0 {
            return Err(Error::shape("matrix upload", format!("columns of {name}"), ">= 1", 0));
        }
        let rows = runs.last().map_or(0, |(r, _)| r.end);
        let mut chunks = Vec::new();
        let mut words = Vec::new();
        for (run, dtype) in runs {
            let (run, dtype) = (run.clone(), *dtype);
            let row_words = dtype.row_words(cols);
            let group_bytes = row_words as u64 * 4 * split.row_multiple as u64;
            let groups = split_rows(name, run.len().div_ceil(split.row_multiple), group_bytes, split.binding)?;
            let groups_per_piece = (split.piece / group_bytes).max(1) as usize;
            let at = |g: usize| (run.start + g * split.row_multiple).min(run.end);
            for g in groups {
                let range = at(g.start)..at(g.end);
                let label = format!("{name}[{}..{}]", range.start, range.end);
                let mut writer = BufferWriter::new(gpu, &label, (range.len() * row_words * 4) as u64)?;
                for p in (g.start..g.end).step_by(groups_per_piece) {
                    let piece = at(p)..at((p + groups_per_piece).min(g.end));
                    words.clear();
                    fill(piece.clone(), dtype, &mut words)?;
                    if words.len() != piece.len() * row_words {
                        return Err(Error::shape("matrix upload", format!("packed words of {name} rows {piece:?}"), piece.len() * row_words, words.len()));
                    }
                    writer.write(bytemuck::cast_slice(&words))?;
                }
                chunks.push(MatrixChunk { buffer: writer.finish()?, rows: range, dtype, row_words });
            }
        }
        Ok(Matrix { name: name.to_string(), rows, cols, chunks })
    }

    /// Bytes stored on the GPU (padding included).
    pub fn bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.buffer.len).sum()
    }

    /// The types the chunks are stored as, each once, in row order.
    pub fn dtypes(&self) -> Vec<WeightDType> {
        let mut types: Vec<WeightDType> = Vec::new();
        for c in &self.chunks {
            if !types.contains(&c.dtype) {
                types.push(c.dtype);
            }
        }
        types
    }

    /// The values a kernel will see, as f32 (f16 rounding or quantization applied): input for
    /// CPU references. `data` holds rows of `cols` values.
    pub fn stored_values(dtype: WeightDType, data: &[f32], cols: usize) -> Result<Vec<f32>> {
        quant::round_trip(dtype, data, cols)
    }
}

/// How a matrix is cut: chunks of at most `binding` bytes (one storage binding each), filled
/// in pieces of about `piece` bytes, both at multiples of `row_multiple` rows.
#[derive(Clone, Copy)]
struct Split {
    binding: u64,
    piece: u64,
    row_multiple: usize,
}

impl Split {
    /// Chunks of at most `limit` bytes (and the device's binding size); a limit below
    /// [`PIECE_BYTES`] (tests) also shrinks the pieces, so that small matrices take many.
    fn new(gpu: &Gpu, limit: u64, row_multiple: usize) -> Split {
        let binding = limit.min(gpu.max_binding_bytes());
        let piece = if binding < PIECE_BYTES { (binding / 3).max(1) } else { PIECE_BYTES };
        Split { binding, piece, row_multiple }
    }
}

/// How [`Matrix::from_parts`] combines its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Stacked,
    Interleaved,
}

impl HostTensor {
    /// Rows of `cols` values this tensor holds, if a whole number.
    fn rows(&self, cols: usize) -> Option<usize> {
        let (len, per_row) = match self {
            HostTensor::F32(v) => (v.len(), cols),
            HostTensor::F16(v) => (v.len(), cols),
            HostTensor::BF16(v) => (v.len(), cols),
            HostTensor::Quant { dtype, bytes } => (bytes.len(), quant::row_bytes(*dtype, cols).ok()?),
        };
        (per_row > 0 && len % per_row == 0).then_some(len / per_row)
    }
}

/// Row `row` of `t` (rows of `cols` values) packed as `dtype`: raw where the types agree,
/// converted through f32 where they do not.
fn pack_host_row(dtype: WeightDType, t: &HostTensor, row: usize, cols: usize, out: &mut Vec<u32>) -> Result<()> {
    match (t, dtype) {
        (HostTensor::F32(v), _) => pack_row(dtype, v[row * cols..(row + 1) * cols].iter().copied(), out)?,
        (HostTensor::F16(v), WeightDType::F16) => pack_halves(v[row * cols..(row + 1) * cols].iter().map(|h| h.to_bits()), out),
        (HostTensor::F16(v), _) => pack_row(dtype, v[row * cols..(row + 1) * cols].iter().map(|h| h.to_f32()), out)?,
        (HostTensor::BF16(v), WeightDType::BF16) => pack_halves(v[row * cols..(row + 1) * cols].iter().map(|h| h.to_bits()), out),
        (HostTensor::BF16(v), _) => pack_row(dtype, v[row * cols..(row + 1) * cols].iter().map(|h| h.to_f32()), out)?,
        (HostTensor::Quant { dtype: d, bytes }, _) => {
            let rb = quant::row_bytes(*d, cols)?;
            let src = &bytes[row * rb..(row + 1) * rb];
            match (d.block(), *d == dtype) {
                (Some(t), true) => quant::repack_row(t, src, out),
                _ => pack_row(dtype, quant::dequantize_row(*d, src, cols).into_iter(), out)?,
            }
        }
    }
    Ok(())
}

/// Zero words up to the padded row length (rows are packed one after another).
fn pad_row(dtype: WeightDType, cols: usize, out: &mut Vec<u32>) {
    let row_words = dtype.row_words(cols);
    out.resize(out.len().next_multiple_of(row_words), 0);
}

/// 16-bit patterns (f16 or bf16) two to a word, element 2i in the low half.
fn pack_halves(halves: impl Iterator<Item = u16>, out: &mut Vec<u32>) {
    let halves: Vec<u32> = halves.map(u32::from).collect();
    out.extend(halves.chunks(2).map(|p| p[0] | (p.get(1).copied().unwrap_or(0) << 16)));
}

fn pack_row(dtype: WeightDType, row: impl Iterator<Item = f32>, out: &mut Vec<u32>) -> Result<()> {
    match dtype {
        WeightDType::F32 => out.extend(row.map(f32::to_bits)),
        WeightDType::F16 => pack_halves(row.map(|v| f16::from_f32(v).to_bits()), out),
        WeightDType::BF16 => pack_halves(row.map(|v| bf16::from_f32(v).to_bits()), out),
        WeightDType::Block(t) => {
            let values: Vec<f32> = row.collect();
            let mut bytes = Vec::new();
            quant::quantize_row(dtype, &values, &mut bytes)?;
            quant::repack_row(t, &bytes, out);
        }
    }
    Ok(())
}

/// The pipeline variant of a weight-reading kernel for a chunk stored as `dtype`: the kernel's
/// own `constants` and the type's ([`WeightDType::constants`]).
pub(crate) fn weight_variant(dtype: WeightDType, constants: &[(&'static str, f64)]) -> Variant {
    Variant::constants(&[constants, &dtype.constants()[..]].concat())
}

/// A random `rows` x `cols` tensor to store as `dtype`, as a loader hands it over, and the values
/// a kernel sees: normal floats (rounded to the type), or random blocks (every bit of every field
/// random, scales finite: [`quant::ggml::random_blocks`], as a GGUF tensor holds them) and their
/// CPU dequantization.
pub(crate) fn random_tensor(rng: &mut super::check::Rng, rows: usize, cols: usize, dtype: WeightDType) -> Result<(HostTensor, Vec<f32>)> {
    let Some(t) = dtype.block() else {
        let data = rng.normals(rows * cols, 1.0);
        let values = Matrix::stored_values(dtype, &data, cols)?;
        return Ok((HostTensor::F32(data), values));
    };
    let bytes = quant::ggml::random_blocks(t, rows * quant::blocks(t, cols), 1.0, &mut || rng.next_u64() as u32);
    let values = bytes.chunks(quant::row_bytes(dtype, cols)?).flat_map(|row| quant::dequantize_row(dtype, row, cols)).collect();
    Ok((HostTensor::Quant { dtype, bytes }, values))
}

/// Rows `rows` of a tensor of `cols` columns.
pub(crate) fn tensor_rows(t: &HostTensor, rows: Range<usize>, cols: usize) -> Result<HostTensor> {
    Ok(match t {
        HostTensor::F32(v) => HostTensor::F32(v[rows.start * cols..rows.end * cols].to_vec()),
        HostTensor::F16(v) => HostTensor::F16(v[rows.start * cols..rows.end * cols].to_vec()),
        HostTensor::BF16(v) => HostTensor::BF16(v[rows.start * cols..rows.end * cols].to_vec()),
        HostTensor::Quant { dtype, bytes } => {
            let rb = quant::row_bytes(*dtype, cols)?;
            HostTensor::Quant { dtype: *dtype, bytes: bytes[rows.start * rb..rows.end * rb].to_vec() }
        }
    })
}

/// A random matrix ([`random_tensor`]) stored as `dtype` in chunks of at most `limit` bytes,
/// streamed in as a loader streams it, and the values a kernel sees.
pub(crate) fn random_matrix(gpu: &Gpu, rng: &mut super::check::Rng, name: &str, rows: usize, cols: usize, dtype: WeightDType, limit: u64) -> Result<(Matrix, Vec<f32>)> {
    let (t, values) = random_tensor(rng, rows, cols, dtype)?;
    let m = Matrix::from_parts_with_limit(gpu, name, cols, &[dtype], &[rows], Layout::Stacked, &mut |_, r| tensor_rows(&t, r, cols), limit)?;
    Ok((m, values))
}

/// Shared check of the two linear kernels (matvec, matmul): random weights of every type,
/// optionally split into chunks of at most `limit` bytes, against the f64 reference.
/// `cases` are (m, rows, k, limit); `encode` records `out [m, rows] = x [m, k] · W^T`.
pub(crate) async fn check_linear(
    gpu: &Gpu,
    seed: u64,
    op: &str,
    cases: &[(usize, usize, usize, Option<u64>)],
    encode: impl Fn(&mut crate::gpu::Recorder<'_>, &Matrix, &GpuBuffer, usize, &GpuBuffer) -> Result<()>,
) -> std::result::Result<(), super::check::CheckFailure> {
    use super::check::{compare, tolerance, DType, Rng};
    let mut rng = Rng::new(seed);
    for &(m, rows, k, limit) in cases {
        for dtype in WeightDType::ALL {
            let (w, values) = random_matrix(gpu, &mut rng, "w", rows, k, dtype, limit.unwrap_or(u64::MAX))?;
            let x = rng.normals(m * k, 1.0);
            let xb = GpuBuffer::from_slice(gpu, "x", &x)?;
            let out = GpuBuffer::zeroed(gpu, "out", (m * rows * 4) as u64)?;
            let mut rec = crate::gpu::Recorder::new(gpu, 64);
            encode(&mut rec, &w, &xb, m, &out)?;
            rec.submit()?;
            let want = super::matvec::reference(&x, &values, m, rows, k);
            let what = format!("{op} {} {m}x{k} · ({rows}x{k})^T ({} chunks)", dtype.name(), w.chunks.len());
            compare(&what, seed, &out.read_f32(gpu).await?, &want, tolerance(DType::F32))?;
        }
    }
    Ok(())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::check::Rng;
    use super::super::testing::gpu;
    use super::*;

    /// Every word of every chunk, in row order.
    fn words(gpu: &Gpu, m: &Matrix) -> Vec<u32> {
        m.chunks.iter().flat_map(|c| pollster::block_on(c.buffer.read_u32(gpu)).unwrap()).collect()
    }

    /// Parts streamed a few rows at a time (pieces that cross part and chunk boundaries) store
    /// exactly the words of the same rows uploaded whole; the reads ask only for the rows of
    /// each piece, and never for a row twice.
    #[test]
    fn stacked_parts_read_in_pieces_store_what_a_whole_upload_stores() {
        let Some(g) = gpu() else { return };
        let mut rng = Rng::new(7);
        let (cols, part_rows) = (37usize, [5usize, 3, 11]);
        let parts: Vec<Vec<f32>> = part_rows.iter().map(|&r| rng.normals(r * cols, 1.0)).collect();
        let all: Vec<f32> = parts.concat();
        for dtype in WeightDType::ALL.into_iter().filter(|&d| quant::can_quantize(d)) {
            let limit = 3 * dtype.row_words(cols) as u64 * 4; // three rows a chunk, one row a piece
            let whole = Matrix::from_f32(g, "whole", all.len() / cols, cols, dtype, &all).unwrap();
            let mut asked = Vec::new();
            let read = &mut |i: usize, r: Range<usize>| {
                asked.push((i, r.clone()));
                Ok(HostTensor::F32(parts[i][r.start * cols..r.end * cols].to_vec()))
            };
            let streamed = Matrix::from_parts_with_limit(g, "streamed", cols, &[dtype; 3], &part_rows, Layout::Stacked, read, limit).unwrap();
            assert_eq!(streamed.chunks.len(), 7, "{dtype:?}");
            assert_eq!(words(g, &streamed), words(g, &whole), "{dtype:?}");
            let mut rows_read = [0usize; 3];
            for (i, r) in &asked {
                assert!(r.len() <= 1, "{dtype:?}: read {r:?} of part {i} at once");
                rows_read[*i] += r.len();
            }
            assert_eq!(rows_read, part_rows, "{dtype:?}");
        }
    }

    /// A source that hands back other rows than asked is a typed error, not a wrong matrix.
    #[test]
    fn a_short_read_is_a_shape_error() {
        let Some(g) = gpu() else { return };
        let read = &mut |_: usize, r: Range<usize>| Ok(HostTensor::F32(vec![0.0; (r.len() - 1) * 8]));
        let err = Matrix::from_parts(g, "w", 8, &[WeightDType::F32], &[4], Layout::Stacked, read).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }) && err.to_string().contains("part 0 of w"), "{err}");
    }

    /// A stacked matrix whose parts have different block types (q and k Q4_K, v Q6_K, as
    /// Q4_K_M files have) keeps each part's blocks: a chunk per type, each holding exactly the
    /// repacked file bytes, nothing converted.
    #[test]
    fn parts_of_different_types_keep_their_blocks() {
        let Some(g) = gpu() else { return };
        let mut rng = Rng::new(11);
        let cols = 512;
        let (types, part_rows) = ([WeightDType::Q4_K, WeightDType::Q4_K, WeightDType::Q6_K], [3usize, 2, 4]);
        let parts: Vec<Vec<u8>> = types.iter().zip(part_rows).map(|(d, r)| quant::ggml::random_blocks(d.block().unwrap(), r * 2, 1.0, &mut || rng.next_u64() as u32)).collect();
        let read = &mut |i: usize, r: Range<usize>| {
            let rb = quant::row_bytes(types[i], cols).unwrap();
            Ok(HostTensor::Quant { dtype: types[i], bytes: parts[i][r.start * rb..r.end * rb].to_vec() })
        };
        let m = Matrix::from_parts(g, "qkv", cols, &types, &part_rows, Layout::Stacked, read).unwrap();
        let got: Vec<(Range<usize>, WeightDType)> = m.chunks.iter().map(|c| (c.rows.clone(), c.dtype)).collect();
        assert_eq!(got, vec![(0..5, WeightDType::Q4_K), (5..9, WeightDType::Q6_K)]);
        assert_eq!(m.dtypes(), vec![WeightDType::Q4_K, WeightDType::Q6_K]);
        for (chunk, bytes) in m.chunks.iter().zip([[&parts[0][..], &parts[1][..]].concat(), parts[2].clone()]) {
            let t = chunk.dtype.block().unwrap();
            let mut want = Vec::new();
            for row in bytes.chunks(quant::row_bytes(chunk.dtype, cols).unwrap()) {
                quant::repack_row(t, row, &mut want);
                want.resize(want.len().next_multiple_of(chunk.row_words), 0);
            }
            assert_eq!(pollster::block_on(chunk.buffer.read_u32(g)).unwrap(), want, "{:?}", chunk.dtype);
        }
        let mixed = Matrix::from_parts(g, "gate_up", cols, &types[1..], &[2, 2], Layout::Interleaved, &mut |_, _| unreachable!()).unwrap_err();
        assert!(matches!(mixed, Error::Shape { .. }) && mixed.to_string().contains("q4_k and q6_k"), "{mixed}");
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    /// shaders/weights.wgsl's `KIND_*` constants are [`WeightDType::kind`], name for name.
    #[test]
    fn shader_kinds_are_the_rust_kinds() {
        let src = include_str!("../../../shaders/weights.wgsl");
        let consts: Vec<(String, u32)> = src
            .lines()
            .filter_map(|l| l.strip_prefix("const KIND_"))
            .map(|l| {
                let (name, value) = l.split_once(": u32 = ").expect("const KIND_X: u32 = Nu;");
                (name.to_ascii_lowercase(), value.trim_end_matches("u;").parse().expect("a number"))
            })
            .collect();
        let want: Vec<(String, u32)> = WeightDType::ALL.iter().map(|t| (t.name().to_string(), t.kind())).collect();
        assert_eq!(consts, want);
    }
}
