//! Cria: run small Llama-family language models on any GPU through wgpu.
pub mod gpu;
