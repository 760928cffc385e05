//! A model's files opened and checked before any weight moves: config, tokenizer, generation
//! defaults, and the weights to upload. One way in for every front end (CLI, desktop app,
//! browser): a model folder ([`ModelFiles::from_folder`], [`super::folder`]) or a GGUF file
//! ([`open`] takes either path).

use super::config::{GenerationConfig, LlamaConfig};
use super::llama::{Llama, ModelOptions};
use super::weights::{LoadProgress, WeightSource};
use crate::error::Result;
use crate::tokenizer::Tokenizer;

pub struct ModelFiles {
    pub config: LlamaConfig,
    pub generation: GenerationConfig,
    pub weights: Box<dyn WeightSource>,
    /// Read when the files are opened; a missing or broken tokenizer is reported when taken
    /// (benchmarks and `info` need none).
    tokenizer: Option<Result<Tokenizer>>,
}

impl ModelFiles {
    /// A model from parts already read (a GGUF file's metadata).
    pub fn new(config: LlamaConfig, tokenizer: Tokenizer, generation: GenerationConfig, weights: Box<dyn WeightSource>) -> ModelFiles {
        Self::with_tokenizer(config, Ok(tokenizer), generation, weights)
    }

    /// A model with no tokenizer (synthetic models: benchmarks and `info` need none).
    pub fn without_tokenizer(config: LlamaConfig, generation: GenerationConfig, weights: Box<dyn WeightSource>) -> ModelFiles {
        let missing = crate::Error::Unsupported { what: "a tokenizer for this model".into(), hint: "synthetic models have none; use a model directory or GGUF file".into() };
        Self::with_tokenizer(config, Err(missing), generation, weights)
    }

    pub(crate) fn with_tokenizer(config: LlamaConfig, tokenizer: Result<Tokenizer>, generation: GenerationConfig, weights: Box<dyn WeightSource>) -> ModelFiles {
        ModelFiles { config, generation, weights, tokenizer: Some(tokenizer) }
    }

    /// The tokenizer, or the error that reading it gave (naming the file and what is missing).
    /// It is handed out once.
    pub fn take_tokenizer(&mut self) -> Result<Tokenizer> {
        self.tokenizer.take().unwrap_or_else(|| Err(crate::Error::Unsupported { what: "taking a model's tokenizer twice".into(), hint: "keep the one take_tokenizer returned".into() }))
    }

    /// Total bytes of the weights (for progress bars).
    pub fn weight_bytes(&self) -> u64 {
        self.weights.total_bytes()
    }

    /// The GPU memory loading with `options` will take (see [`Llama::memory_plan`]); nothing is
    /// read but headers.
    pub fn memory_plan(&self, options: &ModelOptions) -> Result<super::MemoryPlan> {
        Llama::memory_plan(&self.config, self.weights.as_ref(), options)
    }

    /// Loads the weights onto `device` (a GPU or the CPU), tensor by tensor (on a GPU, refused
    /// first if the memory plan does not fit it).
    pub fn load(&mut self, device: impl Into<super::Device>, options: &ModelOptions, progress: &mut dyn FnMut(LoadProgress)) -> Result<Llama> {
        Llama::load(device, self.config.clone(), self.weights.as_mut(), options, progress)
    }
}

/// `path` names a GGUF file (llama.cpp's format) rather than a Hugging Face directory.
#[cfg(not(target_arch = "wasm32"))]
pub fn is_gguf(path: &std::path::Path) -> bool {
    path.is_file() || path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// Opens a model: a Hugging Face directory (the files of [`super::folder::FOLDER_FILES`] and
/// the weights) or a GGUF file. Reads and checks every header; no weight data moves until
/// [`ModelFiles::load`].
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
    ModelFiles::from_folder(&mut super::folder::Dir(path.to_path_buf()))
}
