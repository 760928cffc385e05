//! Where tensors come from: one safetensors file, or a sharded checkpoint whose
//! `model.safetensors.index.json` maps each tensor to its shard.

use super::safetensors::{ByteSource, HostTensor, SafetensorsFile, TensorEntry};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::ops::Range;

/// One tensor uploaded (for progress bars).
#[derive(Clone, Debug)]
pub struct LoadProgress {
    pub tensor: String,
    pub bytes: u64,
}

/// Tensors by their Hugging Face names, read a range of rows at a time (loaders stream
/// matrices through host memory in pieces).
pub trait WeightSource {
    /// Rows `rows` of tensor `name` (its first dimension; a vector's rows are its elements),
    /// in the Hugging Face layout.
    fn read_rows(&mut self, name: &str, rows: Range<usize>) -> Result<HostTensor>;
    /// A whole tensor.
    fn tensor(&mut self, name: &str) -> Result<(TensorEntry, HostTensor)> {
        let entry = self.entry(name)?;
        let tensor = self.read_rows(name, 0..entry.rows())?;
        Ok((entry, tensor))
    }
    fn has(&self, name: &str) -> bool;
    /// Every tensor's name, sorted.
    fn names(&self) -> Vec<String>;
    /// A tensor's dtype and shape without reading it.
    fn entry(&self, name: &str) -> Result<TensorEntry>;
    /// Total bytes of all tensors (for progress bars).
    fn total_bytes(&self) -> u64;
    /// Whether norm weights are stored as the norm multiplies by them, a family's `norm_offset`
    /// already added (llama.cpp's GGUF files), rather than as transformers stores them.
    fn norms_as_applied(&self) -> bool {
        false
    }
}

pub struct SafetensorsWeights<S: ByteSource> {
    files: Vec<SafetensorsFile<S>>,
    index: HashMap<String, usize>,
}

impl<S: ByteSource> SafetensorsWeights<S> {
    pub fn new(files: Vec<SafetensorsFile<S>>) -> Result<Self> {
        let mut index = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            for name in f.tensors.keys() {
                if index.insert(name.clone(), i).is_some() {
                    return Err(Error::Safetensors { path: f.path.clone(), message: format!("tensor `{name}` appears in more than one shard") });
                }
            }
        }
        Ok(SafetensorsWeights { files, index })
    }
}

impl<S: ByteSource> WeightSource for SafetensorsWeights<S> {
    fn read_rows(&mut self, name: &str, rows: Range<usize>) -> Result<HostTensor> {
        match self.index.get(name) {
            Some(&i) => self.files[i].read_rows(name, rows),
            None => Err(Error::MissingTensor {
                name: name.to_string(),
                path: self.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>().join(", "),
            }),
        }
    }
    fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }
    fn entry(&self, name: &str) -> Result<TensorEntry> {
        self.index.get(name).and_then(|&i| self.files[i].tensors.get(name).cloned()).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            path: self.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>().join(", "),
        })
    }
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.index.keys().cloned().collect();
        names.sort();
        names
    }
    fn total_bytes(&self) -> u64 {
        self.files.iter().flat_map(|f| f.tensors.values()).map(|t| t.end - t.start).sum()
    }
}

/// Shard file names listed by a `model.safetensors.index.json`, in first-seen order.
pub fn shard_names(path: &str, index_json: &str) -> Result<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(index_json).map_err(|e| Error::Config {
        path: path.into(),
        field: "(file)".into(),
        message: format!("is not valid JSON: {e}"),
        hint: "the sharded checkpoint index is corrupt".into(),
    })?;
    let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| Error::Config {
        path: path.into(),
        field: "weight_map".into(),
        message: "is missing".into(),
        hint: "a sharded checkpoint index maps tensor names to shard files".into(),
    })?;
    let mut names: Vec<String> = Vec::new();
    for file in map.values() {
        let file = file.as_str().ok_or_else(|| Error::Config { path: path.into(), field: "weight_map".into(), message: "has a non-string file name".into(), hint: "fix the index".into() })?;
        if file.contains('/') || file.contains('\\') || file.starts_with("..") {
            return Err(Error::Config { path: path.into(), field: "weight_map".into(), message: format!("names a file outside the model directory: {file}"), hint: "shards must sit next to the index".into() });
        }
        if !names.iter().any(|n| n == file) {
            names.push(file.to_string());
        }
    }
    Ok(names)
}
