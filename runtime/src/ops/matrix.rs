//! Weight matrices on the GPU: [rows, cols] row-major, each row padded to a multiple of 16
//! bytes (so kernels read rows with aligned vec4<u32> loads), split by rows into chunks that
//! each fit one storage binding (128 MiB on many devices; a 32000x2048 f32 embedding is 250 MiB).
//!
//! Storage per dtype, in u32 words: F32 one word per value (bit pattern); F16 two values per
//! word, element 2i in the low half (what WGSL's `unpack2x16float` returns as `.x`); Q8_0 and
//! Q4_0 as blocks of 32 values, quants first and f16 scales after them (see [`crate::quant`]).
//! Padding words are zero. Kernels never need shader-f16 to read any of them.

use crate::error::{Error, Result};
use crate::gpu::{split_rows, Gpu, GpuBuffer};
use crate::model::safetensors::HostTensor;
use crate::quant;
use half::f16;
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightDType {
    F32,
    F16,
    Q8_0,
    Q4_0,
}

impl WeightDType {
    /// u32 words per stored row of `cols` values, padded to 4 words.
    pub fn row_words(self, cols: usize) -> usize {
        match self {
            WeightDType::F32 => cols.next_multiple_of(4),
            WeightDType::F16 => cols.div_ceil(2).next_multiple_of(4),
            WeightDType::Q8_0 | WeightDType::Q4_0 => quant::row_words(self, cols),
        }
    }

    /// Parses a name as the CLI spells it: f32, f16, q8_0, q4_0.
    pub fn parse(name: &str) -> Result<WeightDType> {
        match name.to_ascii_lowercase().as_str() {
            "f32" => Ok(WeightDType::F32),
            "f16" => Ok(WeightDType::F16),
            "q8_0" => Ok(WeightDType::Q8_0),
            "q4_0" => Ok(WeightDType::Q4_0),
            other => Err(Error::Unsupported { what: format!("weight type `{other}`"), hint: "choose one of f32, f16, q8_0, q4_0".into() }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            WeightDType::F32 => "f32",
            WeightDType::F16 => "f16",
            WeightDType::Q8_0 => "q8_0",
            WeightDType::Q4_0 => "q4_0",
        }
    }

    pub fn is_block(self) -> bool {
        matches!(self, WeightDType::Q8_0 | WeightDType::Q4_0)
    }
}

#[derive(Debug)]
pub struct MatrixChunk {
    pub buffer: GpuBuffer,
    pub rows: Range<usize>,
}

#[derive(Debug)]
pub struct Matrix {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    pub dtype: WeightDType,
    pub row_words: usize,
    pub chunks: Vec<MatrixChunk>,
}

impl Matrix {
    /// Uploads f32 values, stored as `dtype` (F16 rounds to nearest; Q8_0/Q4_0 quantize).
    pub fn from_f32(gpu: &Gpu, name: &str, rows: usize, cols: usize, dtype: WeightDType, data: &[f32]) -> Result<Matrix> {
        Self::build(gpu, name, rows, cols, dtype, data.len(), gpu.max_binding_bytes(), |r, out| {
            let row = &data[r * cols..(r + 1) * cols];
            pack_row(dtype, row.iter().copied(), out)
        })
    }

    /// As [`Matrix::from_f32`] with an explicit per-chunk byte limit (tests use a small one to
    /// exercise multi-chunk dispatch without huge tensors).
    pub fn from_f32_with_limit(
        gpu: &Gpu,
        name: &str,
        rows: usize,
        cols: usize,
        dtype: WeightDType,
        data: &[f32],
        limit: u64,
    ) -> Result<Matrix> {
        Self::build(gpu, name, rows, cols, dtype, data.len(), limit.min(gpu.max_binding_bytes()), |r, out| {
            pack_row(dtype, data[r * cols..(r + 1) * cols].iter().copied(), out)
        })
    }

    /// Several host tensors of `cols` columns stored as one matrix of type `dtype` (each part
    /// converted as needed): stacked one after another (`Layout::Stacked`: [q; k; v]), or with
    /// rows alternating between two equal parts (`Layout::Interleaved`: gate 0, up 0, gate 1, …;
    /// chunks then split at even rows so that pairs stay together).
    pub fn from_parts(gpu: &Gpu, name: &str, cols: usize, dtype: WeightDType, parts: &[(usize, &HostTensor)], layout: Layout) -> Result<Matrix> {
        for (i, (rows, t)) in parts.iter().enumerate() {
            let have = t.rows(cols);
            if have != Some(*rows) {
                let got = have.map_or("a length that is not a whole number of rows".to_string(), |r| format!("{r} rows"));
                return Err(Error::shape("matrix upload", format!("part {i} of {name}"), format!("{rows} rows of {cols}"), got));
            }
        }
        let total: usize = parts.iter().map(|p| p.0).sum();
        type RowMap = Box<dyn Fn(usize) -> (usize, usize)>;
        let (map, multiple): (RowMap, usize) = match layout {
            Layout::Stacked => {
                let starts: Vec<usize> = parts.iter().scan(0, |acc, p| { let s = *acc; *acc += p.0; Some(s) }).collect();
                (Box::new(move |r| { let i = starts.partition_point(|&s| s <= r) - 1; (i, r - starts[i]) }), 1)
            }
            Layout::Interleaved => {
                if parts.len() != 2 || parts[0].0 != parts[1].0 {
                    return Err(Error::shape("matrix upload", format!("interleaved parts of {name}"), "two of equal rows", parts.len()));
                }
                (Box::new(|r| (r % 2, r / 2)), 2)
            }
        };
        Self::build_multiple(gpu, name, total, cols, dtype, total * cols, gpu.max_binding_bytes(), multiple, |r, out| {
            let (i, row) = map(r);
            pack_host_row(dtype, parts[i].1, row, cols, out)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        gpu: &Gpu,
        name: &str,
        rows: usize,
        cols: usize,
        dtype: WeightDType,
        len: usize,
        limit: u64,
        pack: impl FnMut(usize, &mut Vec<u32>),
    ) -> Result<Matrix> {
        Self::build_multiple(gpu, name, rows, cols, dtype, len, limit, 1, pack)
    }

    #[allow(clippy::too_many_arguments)]
    fn build_multiple(
        gpu: &Gpu,
        name: &str,
        rows: usize,
        cols: usize,
        dtype: WeightDType,
        len: usize,
        limit: u64,
        row_multiple: usize,
        mut pack: impl FnMut(usize, &mut Vec<u32>),
    ) -> Result<Matrix> {
        let expected = rows.checked_mul(cols).ok_or_else(|| Error::shape("matrix upload", name, "rows*cols to fit in memory", format!("{rows}x{cols}")))?;
        if cols == 0 {
            return Err(Error::shape("matrix upload", format!("columns of {name}"), ">= 1", 0));
        }
        if len != expected {
            return Err(Error::shape("matrix upload", format!("number of values of {name}"), format!("{expected} ({rows}x{cols})"), len));
        }
        let row_words = dtype.row_words(cols);
        let mut chunks = Vec::new();
        let group = row_words as u64 * 4 * row_multiple as u64;
        let groups = split_rows(name, rows.div_ceil(row_multiple), group, limit)?;
        for range in groups.into_iter().map(|g| g.start * row_multiple..(g.end * row_multiple).min(rows)) {
            let mut words = Vec::with_capacity(range.len() * row_words);
            for r in range.clone() {
                let start = words.len();
                pack(r, &mut words);
                words.resize(start + row_words, 0);
            }
            let label = format!("{name}[{}..{}]", range.start, range.end);
            chunks.push(MatrixChunk { buffer: GpuBuffer::from_slice(gpu, &label, &words)?, rows: range });
        }
        Ok(Matrix { name: name.to_string(), rows, cols, dtype, row_words, chunks })
    }

    /// Bytes stored on the GPU (padding included).
    pub fn bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.buffer.len).sum()
    }

    /// The values a kernel will see, as f32 (f16 rounding or quantization applied): input for
    /// CPU references. `data` holds rows of `cols` values.
    pub fn stored_values(dtype: WeightDType, data: &[f32], cols: usize) -> Vec<f32> {
        quant::round_trip(dtype, data, cols)
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
            HostTensor::Quant { dtype, bytes } => (bytes.len(), quant::row_bytes(*dtype, cols).ok()?),
        };
        (per_row > 0 && len % per_row == 0).then_some(len / per_row)
    }
}

/// Row `row` of `t` (rows of `cols` values) packed as `dtype`: raw where the types agree,
/// converted through f32 where they do not.
fn pack_host_row(dtype: WeightDType, t: &HostTensor, row: usize, cols: usize, out: &mut Vec<u32>) {
    match (t, dtype) {
        (HostTensor::F32(v), _) => pack_row(dtype, v[row * cols..(row + 1) * cols].iter().copied(), out),
        (HostTensor::F16(v), WeightDType::F16) => pack_halves(v[row * cols..(row + 1) * cols].iter().map(|h| h.to_bits()), out),
        (HostTensor::F16(v), _) => pack_row(dtype, v[row * cols..(row + 1) * cols].iter().map(|h| h.to_f32()), out),
        (HostTensor::Quant { dtype: d, bytes }, _) => {
            let rb = quant::row_bytes(*d, cols).unwrap_or(0);
            let src = &bytes[row * rb..(row + 1) * rb];
            if *d == dtype {
                quant::repack_row(dtype, src, out)
            } else {
                pack_row(dtype, quant::dequantize_row(*d, src, cols).into_iter(), out)
            }
        }
    }
}

/// f16 bit patterns two to a word, element 2i in the low half.
fn pack_halves(halves: impl Iterator<Item = u16>, out: &mut Vec<u32>) {
    let halves: Vec<u32> = halves.map(u32::from).collect();
    out.extend(halves.chunks(2).map(|p| p[0] | (p.get(1).copied().unwrap_or(0) << 16)));
}

fn pack_row(dtype: WeightDType, row: impl Iterator<Item = f32>, out: &mut Vec<u32>) {
    match dtype {
        WeightDType::F32 => out.extend(row.map(f32::to_bits)),
        WeightDType::F16 => {
            pack_halves(row.map(|v| f16::from_f32(v).to_bits()), out);
        }
        WeightDType::Q8_0 | WeightDType::Q4_0 => {
            let values: Vec<f32> = row.collect();
            let mut bytes = Vec::new();
            quant::quantize_row(dtype, &values, &mut bytes);
            quant::repack_row(dtype, &bytes, out);
        }
    }
}

/// Shared check of the two linear kernels (matvec, matmul): random weights of both dtypes,
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
        for dtype in [WeightDType::F32, WeightDType::F16, WeightDType::Q8_0, WeightDType::Q4_0] {
            let data = rng.normals(rows * k, 1.0);
            let w = Matrix::from_f32_with_limit(gpu, "w", rows, k, dtype, &data, limit.unwrap_or(u64::MAX))?;
            let x = rng.normals(m * k, 1.0);
            let xb = GpuBuffer::from_slice(gpu, "x", &x)?;
            let out = GpuBuffer::zeroed(gpu, "out", (m * rows * 4) as u64)?;
            let mut rec = crate::gpu::Recorder::new(gpu, 64);
            encode(&mut rec, &w, &xb, m, &out)?;
            rec.submit()?;
            let want = super::matvec::reference(&x, &Matrix::stored_values(dtype, &data, k), m, rows, k);
            let what = format!("{op} {dtype:?} {m}x{k} · ({rows}x{k})^T ({} chunks)", w.chunks.len());
            compare(&what, seed, &out.read_f32(gpu).await?, &want, tolerance(DType::F32))?;
        }
    }
    Ok(())
}
