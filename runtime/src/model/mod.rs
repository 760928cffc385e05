//! Models: config.json, weights (safetensors, sharded), GGUF files, the Llama forward pass.

#[cfg(feature = "bundled")]
pub mod bundled;
pub mod config;
pub(crate) mod exec;
pub mod family;
pub mod files;
pub mod folder;
pub mod gguf;
pub mod llama;
pub mod memory;
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
pub use llama::{Device, DeviceChoice, Llama, ModelOptions};
pub use memory::MemoryPlan;
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
    use super::safetensors::FileSource;
    use super::*;
    use crate::error::Result;
    use std::path::Path;

    /// Loads a Hugging Face Llama model directory onto `gpu`.
    pub fn load_llama(device: impl Into<Device>, dir: &Path, options: &ModelOptions, progress: &mut dyn FnMut(LoadProgress)) -> Result<Llama> {
        ModelFiles::from_folder(&mut folder::Dir(dir.to_path_buf()))?.load(device, options, progress)
    }

    /// Opens a GGUF model file: config, tokenizer and generation defaults from its metadata,
    /// weights read on [`GgufModel::load`].
    pub fn open_gguf(path: &Path) -> Result<GgufModel<FileSource>> {
        GgufModel::read(&path.display().to_string(), FileSource::open(path)?)
    }

    /// Loads a GGUF model file (llama.cpp's format; float and ggml block tensors, types mixed as in Q4_K_M files) onto `gpu`.
    pub fn load_gguf(device: impl Into<Device>, path: &Path, options: &ModelOptions, progress: &mut dyn FnMut(LoadProgress)) -> Result<Llama> {
        open_gguf(path)?.load(device, options, progress)
    }
}
