//! CUDA training path (llm.c's layout in Rust): NVRTC-compiled kernels from `kernels/*.cu`,
//! cuBLASLt bf16 GEMMs with f32 accumulation, f32 master weights + AdamW state with a bf16
//! copy for the forward pass, a bf16 activation path with an f32 residual stream, and NCCL
//! gradient all-reduce across processes. It matches the CPU reference (`crate::ops`,
//! `crate::model`) op by op: see `tests/cuda_parity.rs`.
//!
//! Everything here is compiled on every build (cudarc loads the CUDA libraries at run time);
//! with no driver or library the entry points return [`crate::TrainError::CudaLibraryMissing`].

pub mod device;
pub mod kernels;
pub mod libs;
pub mod ops;
pub mod run;
pub mod trainer;

pub use device::Gpu;
pub use trainer::{CudaTrainer, flops_per_token, peak_tflops_for};
