//! The default model, compiled in (cargo feature `bundled`, which the CLI and the desktop app
//! turn on): the Shakespeare model cria-train trained (models/shakespeare/, see its
//! TRAINING.md). The browser package fetches the same files instead of embedding them.

use super::files::ModelFiles;
use super::folder::{self, MemoryFolder};

pub const NAME: &str = "shakespeare (bundled)";
pub const CONFIG: &str = include_str!("../../../models/shakespeare/config.json");
pub const GENERATION_CONFIG: &str = include_str!("../../../models/shakespeare/generation_config.json");
pub const TOKENIZER: &[u8] = include_bytes!("../../../models/shakespeare/tokenizer.json");
pub const TOKENIZER_CONFIG: &[u8] = include_bytes!("../../../models/shakespeare/tokenizer_config.json");
pub const WEIGHTS: &[u8] = include_bytes!("../../../models/shakespeare/model.safetensors");

/// The bundled model's files, ready to load.
pub fn files() -> crate::Result<ModelFiles> {
    let files = [(folder::CONFIG, CONFIG.as_bytes()), (folder::GENERATION_CONFIG, GENERATION_CONFIG.as_bytes()), (folder::TOKENIZER, TOKENIZER), (folder::TOKENIZER_CONFIG, TOKENIZER_CONFIG), (folder::WEIGHTS, WEIGHTS)];
    ModelFiles::from_folder(&mut MemoryFolder { files: files.iter().map(|(n, b)| (n.to_string(), b.to_vec())).collect() })
}
