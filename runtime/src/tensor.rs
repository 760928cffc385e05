//! Tensors in host memory in their stored types, between the files that hold them (`model`)
//! and the GPU matrices built from them (`ops`): neither layer owns the other's types.

use crate::ops::WeightDType;
use half::{bf16, f16};

/// A tensor's dtype in its file. Safetensors files hold F32, F16 and BF16; GGUF files also hold
/// ggml's block-quantized Q8_0 and Q4_0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    /// ggml blocks (Q8_0, Q4_0): a GGUF tensor, or a Cria-quantized model's U8 tensor.
    Block(WeightDType),
}

impl Dtype {
    /// Bytes per element; 1 for the block formats (stored as U8).
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::Block(_) => 1,
        }
    }
}

impl Dtype {
    /// The weight type a tensor of this dtype keeps when nothing else is asked: its own.
    pub fn natural(self) -> WeightDType {
        match self {
            Dtype::F32 => WeightDType::F32,
            Dtype::F16 => WeightDType::F16,
            Dtype::BF16 => WeightDType::BF16,
            Dtype::Block(d) => d,
        }
    }
}

/// A tensor in host memory, in its file's type: F16 and BF16 stay 16-bit (uploaded as they
/// are); block-quantized tensors stay in ggml's block bytes (rows of [`crate::quant::row_bytes`]).
#[derive(Debug)]
pub enum HostTensor {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    Quant { dtype: crate::ops::WeightDType, bytes: Vec<u8> },
}

impl HostTensor {
    /// A tensor's little-endian bytes in file dtype `dtype`: floats as they are, block formats
    /// kept as ggml block bytes.
    pub fn from_le_bytes(dtype: Dtype, bytes: Vec<u8>) -> HostTensor {
        match dtype {
            Dtype::F32 => HostTensor::F32(bytemuck::pod_collect_to_vec(&bytes)),
            Dtype::F16 => HostTensor::F16(bytemuck::pod_collect_to_vec(&bytes)),
            Dtype::BF16 => HostTensor::BF16(bytemuck::pod_collect_to_vec(&bytes)),
            Dtype::Block(dtype) => HostTensor::Quant { dtype, bytes },
        }
    }

    /// The weight type that keeps this tensor as it is.
    pub fn natural_dtype(&self) -> WeightDType {
        match self {
            HostTensor::F32(_) => WeightDType::F32,
            HostTensor::F16(_) => WeightDType::F16,
            HostTensor::BF16(_) => WeightDType::BF16,
            HostTensor::Quant { dtype, .. } => *dtype,
        }
    }

    pub fn into_f32(self) -> Vec<f32> {
        match self {
            HostTensor::F32(v) => v,
            HostTensor::F16(v) => v.iter().map(|h| h.to_f32()).collect(),
            HostTensor::BF16(v) => v.iter().map(|h| h.to_f32()).collect(),
            HostTensor::Quant { dtype, ref bytes } => {
                let cols = dtype.block().map_or(0, |t| bytes.len() / t.block_bytes() * t.block_values());
                self.into_f32_rows(cols)
            }
        }
    }

    /// As [`HostTensor::into_f32`] for a matrix with rows of `cols` values (a block-quantized
    /// row may end in a partial block).
    pub fn into_f32_rows(self, cols: usize) -> Vec<f32> {
        match self {
            HostTensor::Quant { dtype, bytes } => match crate::quant::row_bytes(dtype, cols) {
                Ok(rb) if rb > 0 => bytes.chunks(rb).flat_map(|r| crate::quant::dequantize_row(dtype, r, cols)).collect(),
                _ => Vec::new(),
            },
            t => t.into_f32(),
        }
    }
}
