//! A model's files opened and checked before any weight moves: config, tokenizer, generation
//! defaults, and the weights to upload. One way in for every front end (CLI, desktop app):
//! a Hugging Face directory or a GGUF file ([`open`]), or files already in memory.

use super::config::{GenerationConfig, LlamaConfig};
use super::llama::{Llama, ModelOptions};
use super::safetensors::SafetensorsFile;
use super::weights::{LoadProgress, SafetensorsWeights, WeightSource};
use crate::error::Result;
use crate::tokenizer::Tokenizer;
use std::sync::Arc;

pub struct ModelFiles {
    pub config: LlamaConfig,
    pub generation: GenerationConfig,
    pub weights: Box<dyn WeightSource>,
    tokenizer: Option<TokenizerSource>,
}

enum TokenizerSource {
    Ready(Box<Tokenizer>),
    /// A Hugging Face directory's tokenizer files, read on demand: benchmarks and `info` need
    /// no tokenizer, and model directories written by `cria quantize --synthetic` have none.
    #[cfg(not(target_arch = "wasm32"))]
    Dir(std::path::PathBuf),
}

impl ModelFiles {
    /// A model from parts already read (a GGUF file's metadata, a browser's files).
    pub fn new(config: LlamaConfig, tokenizer: Tokenizer, generation: GenerationConfig, weights: Box<dyn WeightSource>) -> ModelFiles {
        ModelFiles { config, generation, weights, tokenizer: Some(TokenizerSource::Ready(Box::new(tokenizer))) }
    }

    /// A model whose files are in memory: `config.json` text, tokenizer files, optional
    /// `generation_config.json` text, and one `model.safetensors`.
    pub fn from_memory(
        config_json: &str,
        tokenizer_json: &[u8],
        tokenizer_config_json: Option<&[u8]>,
        generation_json: Option<&str>,
        safetensors: Vec<u8>,
    ) -> Result<ModelFiles> {
        let config = LlamaConfig::from_json("config.json", config_json)?;
        let tokenizer = Tokenizer::from_bytes(tokenizer_json, tokenizer_config_json)?;
        let generation = match generation_json {
            Some(text) => GenerationConfig::from_json("generation_config.json", text)?,
            None => GenerationConfig::default(),
        };
        let weights = SafetensorsWeights::new(vec![SafetensorsFile::parse("model.safetensors", safetensors)?])?;
        Ok(ModelFiles::new(config, tokenizer, generation, Box::new(weights)))
    }

    /// The tokenizer (read now, for a directory): errors name the file and say what is missing.
    /// It is handed out once.
    pub fn take_tokenizer(&mut self) -> Result<Tokenizer> {
        match self.tokenizer.take() {
            Some(TokenizerSource::Ready(t)) => Ok(*t),
            #[cfg(not(target_arch = "wasm32"))]
            Some(TokenizerSource::Dir(dir)) => {
                let result = Tokenizer::from_dir(&dir);
                if result.is_err() {
                    self.tokenizer = Some(TokenizerSource::Dir(dir));
                }
                result
            }
            None => Err(crate::Error::Unsupported { what: "taking a model's tokenizer twice".into(), hint: "keep the one take_tokenizer returned".into() }),
        }
    }

    /// Total bytes of the weights (for progress bars).
    pub fn weight_bytes(&self) -> u64 {
        self.weights.total_bytes()
    }

    /// Uploads the weights to `gpu`, tensor by tensor.
    pub fn load(&mut self, gpu: Arc<crate::Gpu>, options: &ModelOptions, progress: &mut dyn FnMut(LoadProgress)) -> Result<Llama> {
        Llama::load(gpu, self.config.clone(), self.weights.as_mut(), options, progress)
    }
}

/// `path` names a GGUF file (llama.cpp's format) rather than a Hugging Face directory.
#[cfg(not(target_arch = "wasm32"))]
pub fn is_gguf(path: &std::path::Path) -> bool {
    path.is_file() || path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// Opens a model: a Hugging Face directory (config.json, model.safetensors or its shards,
/// tokenizer.json, optional tokenizer_config.json and generation_config.json) or a GGUF file.
/// Reads and checks every header; no weight data moves until [`ModelFiles::load`].
#[cfg(not(target_arch = "wasm32"))]
pub fn open(path: &std::path::Path) -> Result<ModelFiles> {
    if !path.exists() {
        return Err(crate::Error::Io {
            path: path.display().to_string(),
            message: "not found. Hint: a model is a Hugging Face model directory (config.json, model.safetensors, tokenizer.json) or a GGUF file".into(),
        });
    }
    if is_gguf(path) {
        let gguf = super::open_gguf(path)?;
        return Ok(ModelFiles::new(gguf.config, gguf.tokenizer, gguf.generation, Box::new(gguf.weights)));
    }
    Ok(ModelFiles {
        config: super::load_config(path)?,
        generation: super::generation_config(path)?,
        weights: Box::new(super::open_weights(path)?),
        tokenizer: Some(TokenizerSource::Dir(path.to_path_buf())),
    })
}
