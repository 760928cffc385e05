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
//!
//! The round trip a runtime test needs (train or load, export, reference logits):
//!
//! ```no_run
//! use cria_train::{checkpoint::Checkpoint, data::Dataset, export, train::Trainer, LlamaConfig, Model, TrainConfig};
//! # fn main() -> cria_train::Result<()> {
//! let data = Dataset::load("DATA".as_ref())?; // written by `cria-train prepare`
//! let cfg = LlamaConfig {
//!     vocab_size: data.vocab_size, hidden_size: 64, intermediate_size: 176, num_hidden_layers: 2,
//!     num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, rope_theta: 10000.0,
//!     max_position_embeddings: 64, tie_word_embeddings: true,
//!     bos_token_id: data.bos_token_id, eos_token_id: data.eos_token_id,
//! };
//! let mut tr = Trainer::new(cfg, TrainConfig { seq_len: 64, ..TrainConfig::default() }, data)?;
//! for _ in 0..10 {
//!     tr.step()?;
//! }
//! export::export_hf(&tr.model, tr.tokenizer_json(), "MODEL_DIR".as_ref(), export::ExportDtype::F32)?;
//! let logits: Vec<f32> = tr.model.logits(&[0, 17, 42]); // (T, V) row-major
//! // Or from a checkpoint / an exported folder:
//! let ck = Checkpoint::load("RUN/checkpoint.bin".as_ref())?;
//! let model = Model::<f32>::from_params(ck.header.model, ck.params);
//! let (same, _tokenizer_json) = export::load_hf("MODEL_DIR".as_ref())?;
//! # let _ = (logits, model, same); Ok(()) }
//! ```

pub mod checkpoint;
pub mod config;
pub mod cuda;
pub mod data;
pub mod dist;
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
