//! Models: config.json, weights (safetensors, sharded), GGUF files, the Llama forward pass.

#[cfg(feature = "bundled")]
pub mod bundled;
pub mod config;
pub mod files;
pub mod gguf;
pub mod llama;
pub mod safetensors;
pub mod weights;
#[cfg(not(target_arch = "wasm32"))]
pub mod write;
pub mod synthetic;

pub use config::{GenerationConfig, LlamaConfig};
#[cfg(not(target_arch = "wasm32"))]
pub use files::{is_gguf, open};
pub use files::ModelFiles;
pub use gguf::GgufModel;
pub use llama::{Llama, ModelOptions};
pub use weights::{LoadProgress, WeightSource};

#[cfg(not(target_arch = "wasm32"))]
pub use native::*;

/// Loads a GGUF model file that is already in memory. For its tokenizer and generation
/// defaults too, use [`GgufModel::read`] and [`GgufModel::load`].
pub fn load_gguf_from_bytes(
    gpu: std::sync::Arc<crate::Gpu>,
    gguf: Vec<u8>,
    options: &ModelOptions,
    progress: &mut dyn FnMut(LoadProgress),
) -> crate::Result<Llama> {
    GgufModel::read("model.gguf", gguf)?.load(gpu, options, progress)
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::safetensors::{FileSource, SafetensorsFile};
    use super::weights::{shard_names, SafetensorsWeights};
    use super::*;
    use crate::error::{Error, Result};
    use crate::Gpu;
    use std::path::Path;
    use std::sync::Arc;

    pub(crate) fn read_text(path: &Path) -> Result<String> {
        std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.display().to_string(), message: e.to_string() })
    }

    /// Reads and validates `DIR/config.json`.
    pub fn load_config(dir: &Path) -> Result<LlamaConfig> {
        let path = dir.join("config.json");
        if !path.exists() {
            return Err(Error::Io {
                path: path.display().to_string(),
                message: "not found. Hint: --model must name a Hugging Face model directory (config.json, model.safetensors, tokenizer.json)".into(),
            });
        }
        LlamaConfig::from_json(&path.display().to_string(), &read_text(&path)?)
    }

    /// `DIR/generation_config.json` if present, else greedy defaults.
    pub fn generation_config(dir: &Path) -> Result<GenerationConfig> {
        let path = dir.join("generation_config.json");
        if !path.exists() {
            return Ok(GenerationConfig::default());
        }
        GenerationConfig::from_json(&path.display().to_string(), &read_text(&path)?)
    }

    /// Opens `model.safetensors`, or every shard of `model.safetensors.index.json`.
    pub fn open_weights(dir: &Path) -> Result<SafetensorsWeights<FileSource>> {
        let index = dir.join("model.safetensors.index.json");
        let names = if index.exists() {
            shard_names(&index.display().to_string(), &read_text(&index)?)?
        } else {
            vec!["model.safetensors".to_string()]
        };
        let mut files = Vec::new();
        for name in names {
            let path = dir.join(&name);
            files.push(SafetensorsFile::parse(&path.display().to_string(), FileSource::open(&path)?)?);
        }
        SafetensorsWeights::new(files)
    }

    /// Opens a GGUF model file: config, tokenizer and generation defaults from its metadata,
    /// weights read on [`GgufModel::load`].
    pub fn open_gguf(path: &Path) -> Result<GgufModel<FileSource>> {
        GgufModel::read(&path.display().to_string(), FileSource::open(path)?)
    }

    /// Loads a GGUF model file (llama.cpp's format; F32, F16, BF16, Q8_0 and Q4_0 tensors) onto `gpu`.
    pub fn load_gguf(gpu: Arc<Gpu>, path: &Path, options: &ModelOptions, progress: &mut dyn FnMut(LoadProgress)) -> Result<Llama> {
        open_gguf(path)?.load(gpu, options, progress)
    }

    /// Loads a Hugging Face Llama model directory onto `gpu`.
    pub fn load_llama(gpu: Arc<Gpu>, dir: &Path, options: &ModelOptions, progress: &mut dyn FnMut(LoadProgress)) -> Result<Llama> {
        let config = load_config(dir)?;
        let mut weights = open_weights(dir)?;
        Llama::load(gpu, config, &mut weights, options, progress)
    }
}
