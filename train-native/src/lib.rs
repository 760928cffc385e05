//! Cria trainer, CPU reference path: Llama forward/backward in plain Rust (f32, f64 for
//! checks), AdamW, data preparation with a byte-level BPE tokenizer, atomic checkpoints and
//! export to a Hugging Face model directory.
//!
//! Library entry points (used by the CLI and by cross-crate round-trip tests):
//! - [`config::LlamaConfig`], [`config::TrainConfig`]: build a configuration;
//! - [`data::prepare`], [`data::Dataset::load`]: corpus → tokenizer + token shards;
//! - [`train::Trainer`]: `new`, `step`, `val_loss`, `checkpoint`, `from_checkpoint`;
//!   [`train::run`]: the whole loop with metrics and checkpoints;
//! - [`checkpoint::Checkpoint`]: atomic save / verified load;
//! - [`export::export_hf`], [`export::load_hf`]: HF model directory out and back in;
//! - [`model::Model::logits`]: logits for a token sequence.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod export;
pub mod fsutil;
pub mod model;
pub mod ops;
pub mod rng;
pub mod tokenizer;
pub mod train;

pub use config::{LlamaConfig, TrainConfig};
pub use error::{Result, TrainError};
pub use model::Model;
