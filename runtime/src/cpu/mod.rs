//! The CPU device's kernels: the same operations as `ops` (whose plain-Rust references stay the
//! ground truth for both devices), on host memory, multi-threaded over a persistent [`Pool`],
//! SIMD where the CPU has it (runtime dispatch). Weights stay in their file's type
//! ([`CpuMatrix`]: f32, f16, bf16 or ggml block bytes), as on the GPU.

pub mod matvec;
pub mod ops;
pub mod pool;

pub use pool::Pool;

use crate::error::{Error, Result};
use crate::ops::{Layout, ReadRows, WeightDType};
use crate::tensor::HostTensor;
use std::ops::Range;

/// Bytes per second the pool's threads read from memory: the median of `repeats` sums of a
/// `bytes`-byte buffer (make it larger than the caches: decode reads weights that do not fit
/// them). The CPU's ceiling for decode, as the copy kernel is a GPU's.
pub fn read_bandwidth(pool: &Pool, bytes: usize, repeats: usize) -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    let words: Vec<u64> = (0..bytes / 8).map(|i| i as u64).collect();
    let tasks = pool.threads() * 4;
    let per = words.len().div_ceil(tasks);
    let sink = AtomicU64::new(0);
    let mut times: Vec<f64> = (0..repeats.max(1) + 1)
        .map(|_| {
            let start = crate::generate::now_seconds();
            pool.run(tasks, &|t| {
                let part = &words[(t * per).min(words.len())..((t + 1) * per).min(words.len())];
                sink.fetch_add(part.iter().fold(0u64, |a, &b| a.wrapping_add(b)), Ordering::Relaxed);
            });
            crate::generate::now_seconds() - start
        })
        .skip(1) // the first touches the pages
        .collect();
    std::hint::black_box(sink.load(Ordering::Relaxed));
    times.sort_by(f64::total_cmp);
    (words.len() * 8) as f64 / times[times.len() / 2]
}

/// An output pointer shared by tasks that each write their own disjoint part of it.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub(crate) *mut f32);
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}
impl SharedOut {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// A weight matrix in host memory: `rows` rows of `cols` values stored as `dtype` (rows of
/// ggml blocks for the block types, the last block zero-padded).
pub struct CpuMatrix {
    pub dtype: WeightDType,
    pub rows: usize,
    pub cols: usize,
    pub row_bytes: usize,
    pub data: Vec<u8>,
    /// Rows stored in groups of eight, interleaved for the x86-64 kernels
    /// ([`matvec::interleave_rows`]), in the same bytes; [`CpuMatrix::row`] gives each back.
    pub interleaved: bool,
}

impl CpuMatrix {
    /// Bytes of one row of `cols` values of `dtype`.
    pub fn row_bytes_of(dtype: WeightDType, cols: usize) -> Result<usize> {
        match dtype {
            WeightDType::F32 => Ok(cols * 4),
            WeightDType::F16 | WeightDType::BF16 => Ok(cols * 2),
            WeightDType::Block(_) => crate::quant::row_bytes(dtype, cols),
        }
    }

    /// A matrix of stored bytes (`rows` rows of [`CpuMatrix::row_bytes_of`] bytes).
    pub fn from_bytes(dtype: WeightDType, rows: usize, cols: usize, data: Vec<u8>) -> Result<CpuMatrix> {
        let row_bytes = Self::row_bytes_of(dtype, cols)?;
        if data.len() != rows * row_bytes {
            return Err(Error::shape("cpu matrix", format!("bytes of {rows} rows of {cols} {} values", dtype.name()), rows * row_bytes, data.len()));
        }
        Ok(CpuMatrix { dtype, rows, cols, row_bytes, data, interleaved: false })
    }

    /// The layout `kernel` reads fastest: Q4_0 and Q4_K rows in whole groups of eight
    /// interleaved for the x86-64 kernels (as llama.cpp repacks them at load), else as stored.
    pub fn for_kernel(mut self, kernel: matvec::Kernel) -> CpuMatrix {
        if let (false, Some(t), true) = (self.interleaved, self.dtype.block(), matvec::interleaves(self.dtype, self.rows, kernel)) {
            self.data = matvec::interleave_rows(t, &self.data, self.row_bytes);
            self.interleaved = true;
        }
        self
    }

    /// A matrix of f32 values stored as `dtype` (rounded or quantized as the files would be).
    pub fn from_f32(dtype: WeightDType, rows: usize, cols: usize, values: &[f32]) -> Result<CpuMatrix> {
        if values.len() != rows * cols {
            return Err(Error::shape("cpu matrix", "values", rows * cols, values.len()));
        }
        let mut data = Vec::with_capacity(rows * Self::row_bytes_of(dtype, cols)?);
        for row in values.chunks(cols.max(1)).take(rows) {
            match dtype {
                WeightDType::F32 => data.extend_from_slice(bytemuck::cast_slice(row)),
                WeightDType::F16 => data.extend(row.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes())),
                WeightDType::BF16 => data.extend(row.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())),
                WeightDType::Block(_) => crate::quant::quantize_row(dtype, row, &mut data)?,
            }
        }
        Self::from_bytes(dtype, rows, cols, data)
    }

    /// Row `r`'s bytes as the file stores them.
    pub fn row(&self, r: usize) -> std::borrow::Cow<'_, [u8]> {
        match self.interleaved {
            false => std::borrow::Cow::Borrowed(&self.data[r * self.row_bytes..(r + 1) * self.row_bytes]),
            true => {
                let t = self.dtype.block().expect("only rows of blocks are interleaved");
                std::borrow::Cow::Owned(matvec::interleaved_row(t, &self.data[r / 8 * 8 * self.row_bytes..][..8 * self.row_bytes], r % 8, self.row_bytes))
            }
        }
    }

    /// Every value as f32 (the reference's input).
    pub fn values(&self) -> Vec<f32> {
        (0..self.rows)
            .flat_map(|r| {
                let row = self.row(r);
                let row = &row[..];
                match self.dtype {
                    WeightDType::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(row),
                    WeightDType::F16 => row.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                    WeightDType::BF16 => row.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                    WeightDType::Block(_) => crate::quant::dequantize_row(self.dtype, row, self.cols),
                }
            })
            .collect()
    }

    /// A random matrix of `dtype` and the values it holds (tests): float types from normal
    /// values, block types from random blocks (every type, those Cria cannot quantize to too).
    pub fn random(rng: &mut crate::rng::Rng, dtype: WeightDType, rows: usize, cols: usize) -> (CpuMatrix, Vec<f32>) {
        let m = match dtype.block() {
            None => Self::from_f32(dtype, rows, cols, &rng.normals(rows * cols, 1.0)),
            Some(t) => {
                let bytes = crate::quant::ggml::random_blocks(t, rows * crate::quant::blocks(t, cols), 1.0, &mut || rng.next_u64() as u32);
                Self::from_bytes(dtype, rows, cols, bytes)
            }
        }
        .expect("a random matrix of a valid shape");
        let values = m.values();
        (m, values)
    }
}

/// A weight matrix of the CPU device: runs of consecutive rows, each of one type (a fused q/k/v
/// matrix of a Q4_K_M file keeps q and k in q4_k and v in q6_k), as `ops::Matrix` keeps chunks.
pub struct CpuWeights {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    /// (first row, rows of one type).
    pub runs: Vec<(usize, CpuMatrix)>,
}

/// Rows per read while loading: about 4 MiB of f32 values, as the GPU loader's pieces.
fn piece_rows(cols: usize) -> usize {
    ((4usize << 20) / (4 * cols.max(1))).max(1)
}

/// Rows of `t` (read as [rows, cols]) stored as `dtype`: its own bytes when it already has that
/// type, else widened and rounded or quantized as the GPU loader does.
fn stored_bytes(t: HostTensor, dtype: WeightDType, cols: usize, out: &mut Vec<u8>) -> Result<()> {
    match (t, dtype) {
        (HostTensor::F32(v), WeightDType::F32) => out.extend_from_slice(bytemuck::cast_slice(&v)),
        (HostTensor::F16(v), WeightDType::F16) => out.extend_from_slice(bytemuck::cast_slice(&v)),
        (HostTensor::BF16(v), WeightDType::BF16) => out.extend_from_slice(bytemuck::cast_slice(&v)),
        (HostTensor::Quant { dtype: d, bytes }, to) if d == to => out.extend_from_slice(&bytes),
        (t, to) => {
            let values = t.into_f32_rows(cols);
            let rows = values.len() / cols.max(1);
            out.extend_from_slice(&CpuMatrix::from_f32(to, rows, cols, &values)?.data);
        }
    }
    Ok(())
}

impl CpuWeights {
    /// The matrix of the parts `part_rows` (each read by `read(part, rows)`), each stored as its
    /// entry of `dtypes`, stacked or interleaved (gate/up: rows alternate), as `ops::Matrix`
    /// builds them on the GPU.
    pub fn from_parts(name: &str, cols: usize, dtypes: &[WeightDType], part_rows: &[usize], layout: Layout, read: &mut ReadRows<'_>) -> Result<CpuWeights> {
        let mut fetch = |i: usize, rows: Range<usize>, dtype: WeightDType, out: &mut Vec<u8>| -> Result<()> {
            for start in rows.clone().step_by(piece_rows(cols)) {
                let end = (start + piece_rows(cols)).min(rows.end);
                let before = out.len();
                stored_bytes(read(i, start..end)?, dtype, cols, out)?;
                if out.len() - before != (end - start) * CpuMatrix::row_bytes_of(dtype, cols)? {
                    return Err(Error::shape("cpu matrix", format!("rows {start}..{end} of part {i} of {name}"), end - start, "another length"));
                }
            }
            Ok(())
        };
        let total: usize = part_rows.iter().sum();
        let mut runs: Vec<(usize, CpuMatrix)> = Vec::new();
        match layout {
            Layout::Stacked => {
                let mut start = 0;
                for (i, (&dtype, &rows)) in dtypes.iter().zip(part_rows).enumerate() {
                    let mut data = Vec::new();
                    fetch(i, 0..rows, dtype, &mut data)?;
                    match runs.last_mut() {
                        Some((_, m)) if m.dtype == dtype => {
                            m.data.extend_from_slice(&data);
                            m.rows += rows;
                        }
                        _ => runs.push((start, CpuMatrix::from_bytes(dtype, rows, cols, data)?)),
                    }
                    start += rows;
                }
            }
            Layout::Interleaved => {
                if part_rows.len() != 2 || part_rows[0] != part_rows[1] || dtypes[0] != dtypes[1] {
                    return Err(Error::shape("cpu matrix", format!("interleaved parts of {name}"), "two of equal rows and type", part_rows.len()));
                }
                let (dtype, rows) = (dtypes[0], part_rows[0]);
                let rb = CpuMatrix::row_bytes_of(dtype, cols)?;
                let (mut g, mut u) = (Vec::new(), Vec::new());
                fetch(0, 0..rows, dtype, &mut g)?;
                fetch(1, 0..rows, dtype, &mut u)?;
                let mut data = Vec::with_capacity(2 * rows * rb);
                for r in 0..rows {
                    data.extend_from_slice(&g[r * rb..(r + 1) * rb]);
                    data.extend_from_slice(&u[r * rb..(r + 1) * rb]);
                }
                runs.push((0, CpuMatrix::from_bytes(dtype, 2 * rows, cols, data)?));
            }
        }
        let kernel = matvec::Kernel::best();
        let runs = runs.into_iter().map(|(start, m)| (start, m.for_kernel(kernel))).collect();
        Ok(CpuWeights { name: name.to_string(), rows: total, cols, runs })
    }

    /// Bytes held (as stored).
    pub fn bytes(&self) -> u64 {
        self.runs.iter().map(|(_, m)| m.data.len() as u64).sum()
    }

    /// The types of its runs.
    pub fn dtypes(&self) -> Vec<WeightDType> {
        self.runs.iter().map(|(_, m)| m.dtype).collect()
    }

    /// `y [m, rows] = x [m, cols] · W^T`; a single token's product with rows of ggml blocks
    /// quantizes the activations to 8 bits as llama.cpp does ([`matvec::Activations::Int8`]).
    pub fn matvec(&self, pool: &Pool, x: &[f32], m: usize, y: &mut [f32]) {
        for (start, run) in &self.runs {
            matvec::matvec_into(pool, run, x, m, y, self.rows, *start, matvec::Activations::Int8);
        }
    }

    /// Row `r` as f32 values (the embedding lookup).
    pub fn row_values(&self, r: usize) -> Vec<f32> {
        let (start, run) = self.runs.iter().rev().find(|(s, _)| *s <= r).expect("a row of the matrix");
        let one = CpuMatrix { dtype: run.dtype, rows: 1, cols: run.cols, row_bytes: run.row_bytes, data: run.row(r - start).to_vec(), interleaved: false };
        one.values()
    }
}
