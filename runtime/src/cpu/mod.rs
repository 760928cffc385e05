//! The CPU device's kernels: the same operations as `ops` (whose plain-Rust references stay the
//! ground truth for both devices), on host memory, multi-threaded over a persistent [`Pool`],
//! SIMD where the CPU has it (runtime dispatch). Weights stay in their file's type
//! ([`CpuMatrix`]: f32, f16, bf16 or ggml block bytes), as on the GPU.

pub mod matvec;
pub mod ops;
pub mod pool;

pub use pool::Pool;

use crate::error::{Error, Result};
use crate::ops::WeightDType;

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
        Ok(CpuMatrix { dtype, rows, cols, row_bytes, data })
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

    pub fn row(&self, r: usize) -> &[u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Every value as f32 (the reference's input).
    pub fn values(&self) -> Vec<f32> {
        (0..self.rows)
            .flat_map(|r| {
                let row = self.row(r);
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
