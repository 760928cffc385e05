//! Which files make a Hugging Face model folder, in one place: native loading (a directory),
//! the bundled model (files in memory) and the browser (a folder URL, or the user's files from
//! a file picker) all read a folder through [`Folder`] and [`ModelFiles::from_folder`], and the
//! browser asks this table which files to fetch, so the three cannot drift apart.
//!
//! `transformers` 5 saves the chat template in `chat_template.jinja` (it wins over
//! `tokenizer_config.json`'s `chat_template`, as in transformers); big checkpoints come as
//! shards listed by `model.safetensors.index.json`.

use super::config::{GenerationConfig, LlamaConfig};
use super::files::ModelFiles;
use super::safetensors::{ByteSource, SafetensorsFile};
use super::weights::{shard_names, SafetensorsWeights};
use crate::error::{Error, Result};
use crate::tokenizer::{Tokenizer, TokenizerFiles};
use serde::Serialize;

/// One file of a model folder (besides the weights themselves).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct FolderFile {
    pub name: &'static str,
    /// A folder without it cannot run text generation.
    pub required: bool,
    /// What it holds (for messages and docs).
    pub holds: &'static str,
}

pub const CONFIG: &str = "config.json";
pub const TOKENIZER: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
pub const CHAT_TEMPLATE: &str = "chat_template.jinja";
pub const GENERATION_CONFIG: &str = "generation_config.json";
pub const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
/// The weights of an unsharded checkpoint.
pub const WEIGHTS: &str = "model.safetensors";

/// Every small file a model folder may have; the weights are [`WEIGHTS`] or the shards that
/// [`WEIGHTS_INDEX`] lists ([`weight_files`]).
pub const FOLDER_FILES: &[FolderFile] = &[
    FolderFile { name: CONFIG, required: true, holds: "the architecture and sizes" },
    FolderFile { name: TOKENIZER, required: true, holds: "the tokenizer (Hugging Face tokenizers JSON)" },
    FolderFile { name: TOKENIZER_CONFIG, required: false, holds: "special tokens and the chat template (older saves)" },
    FolderFile { name: CHAT_TEMPLATE, required: false, holds: "the chat template (transformers 5 saves it here)" },
    FolderFile { name: GENERATION_CONFIG, required: false, holds: "sampling defaults and end-of-sequence ids" },
    FolderFile { name: WEIGHTS_INDEX, required: false, holds: "which shard holds each tensor of a sharded checkpoint" },
];

/// The weight files of a folder: the shards its index lists (`index`: the index's text; its
/// path, for messages), else [`WEIGHTS`].
pub fn weight_files(index_path: &str, index: Option<&str>) -> Result<Vec<String>> {
    match index {
        Some(text) => shard_names(index_path, text),
        None => Ok(vec![WEIGHTS.to_string()]),
    }
}

/// A model folder, wherever its files are.
pub trait Folder {
    /// Where a weights file's bytes come from.
    type Weights: ByteSource + 'static;
    /// How file `name` is named in messages (a path, a URL).
    fn path(&self, name: &str) -> String;
    /// The bytes of a small file, or None when the folder has no such file.
    fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>>;
    /// A weights file, for random access (it is never read whole).
    fn open(&mut self, name: &str) -> Result<Self::Weights>;
}

fn text(folder: &impl Folder, name: &str, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| Error::Io { path: folder.path(name), message: format!("not valid UTF-8 ({e}). Hint: the file is damaged; download it again") })
}

/// The folder's tokenizer: tokenizer.json, with tokenizer_config.json and chat_template.jinja
/// when present.
pub fn tokenizer(folder: &mut impl Folder) -> Result<Tokenizer> {
    let Some(json) = folder.read(TOKENIZER)? else {
        return Err(Error::Tokenizer {
            path: folder.path(TOKENIZER),
            message: "file not found. Hint: the model folder needs the fast-tokenizer file tokenizer.json (a \
                      tokenizer.model-only sentencepiece model is not supported; convert it with transformers' \
                      AutoTokenizer(...).save_pretrained)"
                .into(),
        });
    };
    let config = folder.read(TOKENIZER_CONFIG)?;
    let template = match folder.read(CHAT_TEMPLATE)? {
        Some(bytes) => Some(text(folder, CHAT_TEMPLATE, bytes)?),
        None => None,
    };
    Tokenizer::from_files(TokenizerFiles {
        json: &json,
        json_path: folder.path(TOKENIZER),
        config: config.as_deref(),
        config_path: folder.path(TOKENIZER_CONFIG),
        chat_template: template,
    })
}

impl ModelFiles {
    /// Opens a model folder: reads and checks config.json, generation_config.json, the
    /// tokenizer files and every weights file's header. No weight data moves until
    /// [`ModelFiles::load`]. A folder without a tokenizer still opens (benchmarks and `info`
    /// need none); taking its tokenizer then says what is missing.
    pub fn from_folder<F: Folder>(folder: &mut F) -> Result<ModelFiles> {
        let config_bytes = folder.read(CONFIG)?.ok_or_else(|| Error::Io {
            path: folder.path(CONFIG),
            message: "not found. Hint: a model is a Hugging Face model directory (config.json, model.safetensors or its shards, tokenizer.json) or a GGUF file".into(),
        })?;
        let config = LlamaConfig::from_json(&folder.path(CONFIG), &text(folder, CONFIG, config_bytes)?)?;
        let generation = match folder.read(GENERATION_CONFIG)? {
            Some(bytes) => GenerationConfig::from_json(&folder.path(GENERATION_CONFIG), &text(folder, GENERATION_CONFIG, bytes)?)?,
            None => GenerationConfig::default(),
        };
        let index = match folder.read(WEIGHTS_INDEX)? {
            Some(bytes) => Some(text(folder, WEIGHTS_INDEX, bytes)?),
            None => None,
        };
        let names = weight_files(&folder.path(WEIGHTS_INDEX), index.as_deref())?;
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            let source = folder.open(&name)?;
            files.push(SafetensorsFile::parse(&folder.path(&name), source)?);
        }
        let weights = SafetensorsWeights::new(files)?;
        let tokenizer = tokenizer(folder);
        Ok(ModelFiles::with_tokenizer(config, tokenizer, generation, Box::new(weights)))
    }
}

/// A folder whose files are in memory (the bundled model; tests).
pub struct MemoryFolder {
    pub files: Vec<(String, Vec<u8>)>,
}

impl Folder for MemoryFolder {
    type Weights = Vec<u8>;
    fn path(&self, name: &str) -> String {
        name.to_string()
    }
    fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.files.iter().find(|(n, _)| n == name).map(|(_, b)| b.clone()))
    }
    fn open(&mut self, name: &str) -> Result<Vec<u8>> {
        let i = self.files.iter().position(|(n, _)| n == name).ok_or_else(|| Error::Io { path: name.to_string(), message: "not found among the model's files".into() })?;
        Ok(self.files.swap_remove(i).1)
    }
}

/// A model directory on disk.
#[cfg(not(target_arch = "wasm32"))]
pub struct Dir(pub std::path::PathBuf);

#[cfg(not(target_arch = "wasm32"))]
impl Folder for Dir {
    type Weights = super::safetensors::FileSource;
    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
    fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.0.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io { path: path.display().to_string(), message: e.to_string() }),
        }
    }
    fn open(&mut self, name: &str) -> Result<Self::Weights> {
        super::safetensors::FileSource::open(&self.0.join(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_file_once_and_requires_config_and_tokenizer() {
        let names: Vec<&str> = FOLDER_FILES.iter().map(|f| f.name).collect();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(n), "{n} twice");
        }
        let required: Vec<&str> = FOLDER_FILES.iter().filter(|f| f.required).map(|f| f.name).collect();
        assert_eq!(required, [CONFIG, TOKENIZER]);
        assert!(names.contains(&CHAT_TEMPLATE) && names.contains(&WEIGHTS_INDEX));
    }

    #[test]
    fn weights_are_the_index_shards_or_the_single_file() {
        assert_eq!(weight_files(WEIGHTS_INDEX, None).unwrap(), [WEIGHTS]);
        let index = r#"{"metadata": {}, "weight_map": {"a": "model-00002-of-00002.safetensors", "b": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}}"#;
        assert_eq!(weight_files(WEIGHTS_INDEX, Some(index)).unwrap(), ["model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors"]);
        let err = weight_files(WEIGHTS_INDEX, Some(r#"{"weight_map": {"a": "../x.safetensors"}}"#)).unwrap_err().to_string();
        assert!(err.contains("outside the model directory"), "{err}");
    }
}
