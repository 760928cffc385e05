//! Writing models: a streaming safetensors writer (one tensor in memory at a time, written to a
//! temporary file and renamed into place, so a crash never leaves a half-written model), and
//! `quantize`, which turns a model directory into one whose matrices are typed as one of
//! llama-quantize's file types says ([`quant::mix`]).

use super::config::LlamaConfig;
use super::gguf::weights::gguf_tensor_name;
use super::safetensors::{quant_key, HostTensor, TensorEntry};
use super::weights::WeightSource;
use crate::error::{Error, Result};
use crate::ops::WeightDType;
use crate::quant::{self, mix, mix::Scheme, mix::TensorShape};
use std::collections::HashMap;
use half::{bf16, f16};
use std::io::Write;
use std::path::Path;

/// A tensor to write: its safetensors dtype and shape, and its bytes.
pub struct OutTensor {
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
    /// Set for block-quantized matrices: (type, logical columns), recorded in the metadata.
    pub quant: Option<(WeightDType, usize)>,
}

impl OutTensor {
    /// `tensor` stored as `to`: converted where the type changes, kept as it is where it does not.
    pub fn convert(tensor: HostTensor, shape: &[usize], to: WeightDType) -> Result<OutTensor> {
        let cols = shape.last().copied().unwrap_or(1);
        Ok(match (to, tensor) {
            (WeightDType::F32, HostTensor::F32(v)) => OutTensor::f32(&v, shape),
            (WeightDType::F16, HostTensor::F16(v)) => OutTensor::halves("F16", v.iter().map(|h| h.to_bits()), shape),
            (WeightDType::BF16, HostTensor::BF16(v)) => OutTensor::halves("BF16", v.iter().map(|h| h.to_bits()), shape),
            (q, HostTensor::Quant { dtype, bytes }) if q == dtype => quant_out(q, shape, bytes),
            (WeightDType::F32, t) => OutTensor::f32(&t.into_f32_rows(cols), shape),
            (WeightDType::F16, t) => OutTensor::halves("F16", t.into_f32_rows(cols).iter().map(|&x| f16::from_f32(x).to_bits()), shape),
            (WeightDType::BF16, t) => OutTensor::halves("BF16", t.into_f32_rows(cols).iter().map(|&x| bf16::from_f32(x).to_bits()), shape),
            (q, t) => {
                let mut bytes = Vec::new();
                for row in t.into_f32_rows(cols).chunks(cols) {
                    quant::quantize_row(q, row, &mut bytes)?;
                }
                quant_out(q, shape, bytes)
            }
        })
    }

    fn f32(v: &[f32], shape: &[usize]) -> OutTensor {
        OutTensor { dtype: "F32", shape: shape.to_vec(), bytes: bytemuck::cast_slice(v).to_vec(), quant: None }
    }

    /// F16 or BF16 bit patterns.
    fn halves(dtype: &'static str, bits: impl Iterator<Item = u16>, shape: &[usize]) -> OutTensor {
        OutTensor { dtype, shape: shape.to_vec(), bytes: bits.flat_map(u16::to_le_bytes).collect(), quant: None }
    }
}

fn quant_out(dtype: WeightDType, shape: &[usize], bytes: Vec<u8>) -> OutTensor {
    let rows = shape.first().copied().unwrap_or(1);
    OutTensor { dtype: "U8", shape: vec![rows, bytes.len() / rows.max(1)], bytes, quant: Some((dtype, shape[shape.len() - 1])) }
}

/// One tensor as it will be stored: safetensors dtype, stored shape, byte length, and for
/// block-quantized matrices (type, logical columns), recorded in the metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub len: usize,
    pub quant: Option<(WeightDType, usize)>,
}

/// The header of a safetensors file holding `tensors` in the given order, padded with spaces
/// to a multiple of 8 bytes.
fn header(tensors: &[Planned]) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    let mut meta = serde_json::Map::new();
    meta.insert("format".into(), "pt".into());
    let mut offset = 0usize;
    for t in tensors {
        map.insert(t.name.clone(), serde_json::json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, offset + t.len]}));
        if let Some((d, cols)) = t.quant {
            meta.insert(quant_key(&t.name), format!("{}:{cols}", d.name()).into());
        }
        offset += t.len;
    }
    map.insert("__metadata__".into(), meta.into());
    let mut h = serde_json::to_vec(&map).expect("a JSON map serializes");
    h.resize(h.len().next_multiple_of(8), b' ');
    h
}

/// Writes a safetensors file at `path` holding the tensors of `plan` (see [`planned`]) in that
/// order, asking `produce` for each tensor only when its turn comes, so host memory holds one
/// tensor at a time.
pub fn write_safetensors(path: &Path, plan: &[Planned], mut produce: impl FnMut(&str) -> Result<OutTensor>) -> Result<()> {
    let io = |e: std::io::Error| Error::Io { path: path.display().to_string(), message: e.to_string() };
    let tmp = path.with_extension("safetensors.partial");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
    let h = header(plan);
    f.write_all(&(h.len() as u64).to_le_bytes()).map_err(io)?;
    f.write_all(&h).map_err(io)?;
    for p in plan {
        let t = produce(&p.name)?;
        if t.dtype != p.dtype || t.shape != p.shape || t.bytes.len() != p.len || t.quant != p.quant {
            let planned = format!("{} {:?} ({} bytes)", p.dtype, p.shape, p.len);
            return Err(Error::shape("safetensors write", p.name.clone(), planned, format!("{} {:?} ({} bytes)", t.dtype, t.shape, t.bytes.len())));
        }
        f.write_all(&t.bytes).map_err(io)?;
    }
    let file = f.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// How tensor `name` of logical `shape` is stored as `target` (see [`OutTensor::convert`]);
/// `from` is the source's element type.
pub fn planned(name: &str, from: super::safetensors::Dtype, shape: &[usize], target: WeightDType) -> Result<Planned> {
    let numel: usize = shape.iter().product();
    let name = name.to_string();
    Ok(match target {
        WeightDType::F32 => Planned { name, dtype: "F32", shape: shape.to_vec(), len: numel * 4, quant: None },
        WeightDType::F16 => Planned { name, dtype: "F16", shape: shape.to_vec(), len: numel * 2, quant: None },
        WeightDType::BF16 => Planned { name, dtype: "BF16", shape: shape.to_vec(), len: numel * 2, quant: None },
        q if q != from.natural() && !quant::can_quantize(q) => return Err(quant::cannot_quantize(q)),
        q => {
            let (rows, cols) = (shape[0], shape[1]);
            let rb = quant::row_bytes(q, cols)?;
            Planned { name, dtype: "U8", shape: vec![rows, rb], len: rows * rb, quant: Some((q, cols)) }
        }
    })
}

/// Files copied as they are by [`quantize`]: everything but the weights.
fn is_weight_file(name: &str) -> bool {
    name.ends_with(".safetensors") || name == super::folder::WEIGHTS_INDEX || name.ends_with(".bin") || name.ends_with(".gguf") || name.ends_with(".partial")
}

/// Creates `out` as a new, empty directory (an existing non-empty one is an error: nothing is
/// overwritten).
pub fn create_out_dir(out: &Path) -> Result<()> {
    let io = |e: std::io::Error| Error::Io { path: out.display().to_string(), message: e.to_string() };
    if out.exists() && std::fs::read_dir(out).map_err(io)?.next().is_some() {
        return Err(Error::Io { path: out.display().to_string(), message: "already exists and is not empty. Hint: choose a new --out directory".into() });
    }
    std::fs::create_dir_all(out).map_err(io)
}

/// Each tensor of `weights` with the type it is written as under `scheme` (llama-quantize's
/// rules, on the tensors' GGUF names, for a model of `config`).
fn choose_types(weights: &dyn WeightSource, scheme: Scheme, config: &LlamaConfig) -> Result<Vec<(String, TensorEntry, WeightDType)>> {
    let mut tensors = Vec::new();
    for name in weights.names() {
        let entry = weights.entry(&name)?;
        tensors.push((name, entry));
    }
    let shapes: Vec<TensorShape> = tensors
        .iter()
        .map(|(name, e)| TensorShape { name: gguf_tensor_name(name, &config.family).unwrap_or_else(|| name.clone()), n_dims: e.shape.len(), cols: e.shape.last().copied().unwrap_or(1) })
        .collect();
    let chosen = mix::choose(scheme, &shapes, config.num_hidden_layers, mix::Blocks::Padded);
    Ok(tensors.into_iter().zip(chosen).map(|((name, entry), c)| {
        let to = c.unwrap_or(entry.dtype.natural());
        (name, entry, to)
    }).collect())
}

/// Writes every tensor of `weights` to the safetensors file `path`, typed as `scheme` says
/// ([`choose_types`]). Returns the bytes of tensor data written.
pub fn write_weights(weights: &mut dyn WeightSource, path: &Path, scheme: Scheme, config: &LlamaConfig, progress: &mut dyn FnMut(&str)) -> Result<u64> {
    let types = choose_types(weights, scheme, config)?;
    let plan = types.iter().map(|(name, entry, to)| planned(name, entry.dtype, &entry.shape, *to)).collect::<Result<Vec<_>>>()?;
    let targets: HashMap<&str, WeightDType> = types.iter().map(|(name, _, to)| (name.as_str(), *to)).collect();
    write_safetensors(path, &plan, |name| {
        progress(name);
        let (entry, tensor) = weights.tensor(name)?;
        OutTensor::convert(tensor, &entry.shape, targets[name])
    })?;
    Ok(plan.iter().map(|p| p.len as u64).sum())
}

/// Writes `out` (a new directory): the model of `dir` with its matrices typed as `scheme` says
/// (norms and other 1-D tensors as they are), and the other files (config, tokenizer,
/// generation config) copied. The result loads with `cria --model OUT` directly. Returns the
/// bytes of weights written.
pub fn quantize(dir: &Path, out: &Path, scheme: Scheme, progress: &mut dyn FnMut(&str)) -> Result<u64> {
    let io = |p: &Path, e: std::io::Error| Error::Io { path: p.display().to_string(), message: e.to_string() };
    let mut files = super::ModelFiles::from_folder(&mut super::folder::Dir(dir.to_path_buf()))?; // a readable model directory first
    create_out_dir(out)?;
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() && !is_weight_file(&name) {
            std::fs::copy(entry.path(), out.join(&name)).map_err(|e| io(&entry.path(), e))?;
        }
    }
    write_weights(files.weights.as_mut(), &out.join("model.safetensors"), scheme, &files.config, progress)
}
