//! The default model, compiled into the binary: the Shakespeare model cria-train trained
//! (models/shakespeare/, see its TRAINING.md). Used when no --model is given.

pub const NAME: &str = "shakespeare (bundled)";
pub const CONFIG: &str = include_str!("../../models/shakespeare/config.json");
pub const GENERATION_CONFIG: &str = include_str!("../../models/shakespeare/generation_config.json");
pub const TOKENIZER: &[u8] = include_bytes!("../../models/shakespeare/tokenizer.json");
pub const TOKENIZER_CONFIG: &[u8] = include_bytes!("../../models/shakespeare/tokenizer_config.json");
pub const WEIGHTS: &[u8] = include_bytes!("../../models/shakespeare/model.safetensors");
