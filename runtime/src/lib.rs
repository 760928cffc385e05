//! Cria: run small Llama-family language models on any GPU through wgpu.
//!
//! Layout: [`gpu`] owns the device and records work; [`ops`] holds one module per kernel
//! (host dispatch, plain-Rust CPU reference and tests together).

pub mod error;
pub mod gpu;
pub mod model;
pub mod ops;
pub mod quant;
pub mod rng;
pub mod cpu;
pub mod generate;
pub mod sampling;
pub mod tensor;
pub mod tokenizer;

pub use error::{Error, Result};
pub use gpu::{Gpu, GpuBuffer, GpuOptions, Recorder};
