//! A defensive, streaming reader of safetensors files (and sharded checkpoints): the header is
//! parsed and checked against the file size up front, then tensors are read one at a time, so
//! loading never holds more than the largest tensor in host memory.
//!
//! Format: u64 little-endian header length N, N bytes of JSON
//! `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`, then data.
//!
//! Cria's quantized models (`cria quantize`) store a Q8_0/Q4_0 matrix as a U8 tensor of shape
//! [rows, bytes per row] holding ggml blocks, with `"cria.quant.NAME": "q4_0:COLS"` in
//! `__metadata__`; such a tensor reads back as [rows, COLS] of that block type.

use crate::error::{Error, Result};
pub use crate::tensor::{Dtype, HostTensor};
use crate::ops::WeightDType;
use serde_json::Value;
use std::collections::BTreeMap;

/// Random-access bytes: a file natively, memory or a browser `File` elsewhere.
pub trait ByteSource {
    fn size(&self) -> u64;
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()>;
}

impl ByteSource for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = offset as usize;
        let src = self.get(start..start + buf.len()).ok_or_else(|| Error::Io { path: "(memory)".into(), message: "read past the end".into() })?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub struct FileSource {
    file: std::fs::File,
    len: u64,
    path: String,
}

#[cfg(not(target_arch = "wasm32"))]
impl FileSource {
    pub fn open(path: &std::path::Path) -> Result<FileSource> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| Error::Io { path: name.clone(), message: e.to_string() })?;
        let len = file.metadata().map_err(|e| Error::Io { path: name.clone(), message: e.to_string() })?.len();
        Ok(FileSource { file, len, path: name })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl ByteSource for FileSource {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(buf))
            .map_err(|e| Error::Io { path: self.path.clone(), message: format!("reading {} bytes at offset {offset}: {e}", buf.len()) })
    }
}


pub const SUPPORTED_DTYPES: &str = "F32, F16, BF16 (and U8 blocks of Cria-quantized models)";

/// The `__metadata__` key that marks `name` as a block-quantized matrix.
pub fn quant_key(name: &str) -> String {
    format!("cria.quant.{name}")
}

#[derive(Clone, Debug)]
pub struct TensorEntry {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub start: u64,
    pub end: u64,
}

impl TensorEntry {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Rows of the first dimension (1 for a scalar).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Bytes of one row in the file.
    pub fn row_bytes(&self) -> u64 {
        (self.end - self.start).checked_div(self.rows() as u64).unwrap_or(0)
    }

    /// The file's byte range holding rows `rows`, or an error naming the tensor when the rows
    /// are not all in it.
    pub fn row_range(&self, name: &str, path: &str, rows: std::ops::Range<usize>) -> Result<std::ops::Range<u64>> {
        if rows.start > rows.end || rows.end > self.rows() {
            return Err(Error::shape("tensor read", format!("rows of `{name}` in {path}"), format!("within 0..{}", self.rows()), format!("{rows:?}")));
        }
        let rb = self.row_bytes();
        Ok(self.start + rows.start as u64 * rb..self.start + rows.end as u64 * rb)
    }
}

/// Header lengths above this are treated as corrupt (real headers are a few hundred KiB).
const MAX_HEADER: u64 = 100 << 20;

pub struct SafetensorsFile<S: ByteSource> {
    pub path: String,
    src: S,
    pub tensors: BTreeMap<String, TensorEntry>,
}

impl<S: ByteSource> SafetensorsFile<S> {
    pub fn parse(path: &str, mut src: S) -> Result<SafetensorsFile<S>> {
        let bad = |message: String| Error::Safetensors { path: path.to_string(), message };
        let file_len = src.size();
        if file_len < 8 {
            return Err(bad(format!("the file has {file_len} bytes, fewer than the 8-byte header length")));
        }
        let mut n = [0u8; 8];
        src.read_at(0, &mut n)?;
        let n = u64::from_le_bytes(n);
        if n > MAX_HEADER || 8 + n > file_len {
            return Err(bad(format!("the header claims {n} bytes but the file has {file_len}")));
        }
        let mut header = vec![0u8; n as usize];
        src.read_at(8, &mut header)?;
        let json: Value = serde_json::from_slice(&header).map_err(|e| bad(format!("the header is not valid JSON: {e}")))?;
        let map = json.as_object().ok_or_else(|| bad("the header is not a JSON object".into()))?;
        let data_start = 8 + n;
        let data_len = file_len - data_start;
        let metadata = map.get("__metadata__").and_then(Value::as_object);
        let mut tensors = BTreeMap::new();
        for (name, info) in map {
            if name == "__metadata__" {
                continue;
            }
            let quant = metadata.and_then(|m| m.get(&quant_key(name))).and_then(Value::as_str);
            let dtype = match info.get("dtype").and_then(Value::as_str) {
                Some("F32") => Dtype::F32,
                Some("F16") => Dtype::F16,
                Some("BF16") => Dtype::BF16,
                Some("U8") if quant.is_some() => {
                    let q = quant.unwrap_or_default();
                    let kind = q.split_once(':').map_or(q, |(k, _)| k);
                    match WeightDType::parse(kind) {
                        Ok(d) if d.is_block() => Dtype::Block(d),
                        _ => return Err(bad(format!("tensor `{name}` has an unknown quantization `{}` in the metadata", quant.unwrap_or_default()))),
                    }
                }
                Some(other) => return Err(Error::UnsupportedDtype { tensor: name.clone(), got: other.to_string(), supported: SUPPORTED_DTYPES.into() }),
                None => return Err(bad(format!("tensor `{name}` has no dtype"))),
            };
            let shape: Vec<usize> = info
                .get("shape")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
                .ok_or_else(|| bad(format!("tensor `{name}` has no valid shape")))?;
            let offsets: Vec<u64> = info
                .get("data_offsets")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().map(Value::as_u64).collect())
                .filter(|o: &Vec<u64>| o.len() == 2)
                .ok_or_else(|| bad(format!("tensor `{name}` has no valid data_offsets")))?;
            let (begin, end) = (offsets[0], offsets[1]);
            let bytes = shape
                .iter()
                .try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64))
                .ok_or_else(|| bad(format!("tensor `{name}` has a shape {shape:?} whose size overflows")))?;
            if begin > end || end > data_len {
                return Err(bad(format!(
                    "tensor `{name}` claims bytes {begin}..{end} but the data section has {data_len} bytes"
                )));
            }
            if end - begin != bytes {
                return Err(bad(format!(
                    "tensor `{name}` ({dtype:?} {shape:?}) needs {bytes} bytes but its offsets span {}",
                    end - begin
                )));
            }
            let shape = match dtype {
                Dtype::Block(d) => block_shape(name, d, quant.unwrap_or_default(), &shape).map_err(bad)?,
                _ => shape,
            };
            tensors.insert(name.clone(), TensorEntry { dtype, shape, start: data_start + begin, end: data_start + end });
        }
        Ok(SafetensorsFile { path: path.to_string(), src, tensors })
    }

    /// Reads rows `rows` of one tensor (its first dimension; a vector's rows are its
    /// elements), converting BF16 to F32.
    pub fn read_rows(&mut self, name: &str, rows: std::ops::Range<usize>) -> Result<HostTensor> {
        let entry = self.tensors.get(name).ok_or_else(|| Error::MissingTensor { name: name.to_string(), path: self.path.clone() })?;
        let range = entry.row_range(name, &self.path, rows)?;
        let mut bytes = vec![0u8; (range.end - range.start) as usize];
        self.src.read_at(range.start, &mut bytes)?;
        Ok(HostTensor::from_le_bytes(entry.dtype, bytes))
    }
}

/// The logical [rows, cols] of a block-quantized tensor stored as U8 [rows, bytes per row],
/// with `quant` = "q4_0:COLS" from the metadata.
fn block_shape(name: &str, dtype: WeightDType, quant: &str, stored: &[usize]) -> std::result::Result<Vec<usize>, String> {
    let cols: usize = quant
        .split_once(':')
        .and_then(|(_, c)| c.parse().ok())
        .filter(|&c| c > 0)
        .ok_or_else(|| format!("tensor `{name}` has a malformed quantization entry `{quant}` (want e.g. q4_0:2048)"))?;
    let want = crate::quant::row_bytes(dtype, cols).map_err(|e| e.to_string())?;
    match stored {
        [rows, rb] if *rb == want => Ok(vec![*rows, cols]),
        _ => Err(format!("tensor `{name}` is stored as {stored:?} bytes but {} rows of {cols} values need [rows, {want}]", dtype.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_f32_f16_bf16() {
        let data: Vec<u8> = [1.5f32.to_le_bytes().to_vec(), f16::from_f32(2.0).to_le_bytes().to_vec(), bf16::from_f32(-3.0).to_le_bytes().to_vec()].concat();
        let h = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F16","shape":[1],"data_offsets":[4,6]},"c":{"dtype":"BF16","shape":[1],"data_offsets":[6,8]},"__metadata__":{"format":"pt"}}"#;
        let mut f = SafetensorsFile::parse("t", file(h, &data)).unwrap();
        assert_eq!(f.read_rows("a", 0..1).unwrap().into_f32(), vec![1.5]);
        assert_eq!(f.read_rows("b", 0..1).unwrap().into_f32(), vec![2.0]);
        assert_eq!(f.read_rows("c", 0..1).unwrap().into_f32(), vec![-3.0]);
        assert!(matches!(f.read_rows("d", 0..1), Err(Error::MissingTensor { .. })));
        let err = f.read_rows("a", 0..2).unwrap_err().to_string();
        assert!(err.contains("`a`") && err.contains("0..2"), "{err}");
    }

    #[test]
    fn truncated_and_lying_files_are_typed_errors() {
        let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let full = file(h, &[0; 8]);
        // Truncated data.
        let err = SafetensorsFile::parse("m.safetensors", full[..full.len() - 3].to_vec()).err().unwrap();
        assert!(err.to_string().contains("claims bytes 0..8 but the data section has 5"), "{err}");
        // Truncated header.
        let err = SafetensorsFile::parse("m.safetensors", full[..20].to_vec()).err().unwrap();
        assert!(err.to_string().contains("the header claims"), "{err}");
        // Shorter than the length prefix.
        assert!(SafetensorsFile::parse("m", vec![1, 2, 3]).is_err());
        // Offsets that disagree with shape and dtype.
        let lying = file(r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, &[0; 8]);
        let err = SafetensorsFile::parse("m", lying).err().unwrap();
        assert!(err.to_string().contains("needs 12 bytes but its offsets span 8"), "{err}");
        // Overflowing shape.
        let huge = file(r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#, &[0; 8]);
        assert!(SafetensorsFile::parse("m", huge).err().unwrap().to_string().contains("overflows"));
        // Header length far past the file.
        let mut bad = full.clone();
        bad[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(SafetensorsFile::parse("m", bad), Err(Error::Safetensors { .. })));
        // Garbage JSON.
        assert!(SafetensorsFile::parse("m", file("{nope", &[])).err().unwrap().to_string().contains("not valid JSON"));
    }

    #[test]
    fn unsupported_dtype_names_the_tensor() {
        let h = r#"{"model.layers.0.mlp.up_proj.weight":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}}"#;
        let err = SafetensorsFile::parse("m", file(h, &[0; 4])).err().unwrap();
        assert_eq!(err.to_string(), format!("tensor `model.layers.0.mlp.up_proj.weight` has dtype I8; supported: {SUPPORTED_DTYPES}"));
        // U8 without Cria's quantization entry is not a weight type either.
        let h = r#"{"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#;
        assert!(matches!(SafetensorsFile::parse("m", file(h, &[0; 4])), Err(Error::UnsupportedDtype { .. })));
    }

    #[test]
    fn block_quantized_tensors_read_back_with_their_logical_shape() {
        let mut bytes = Vec::new();
        let row: Vec<f32> = (0..40).map(|i| i as f32 / 10.0).collect();
        crate::quant::quantize_row(WeightDType::Q4_0, &row, &mut bytes).unwrap();
        crate::quant::quantize_row(WeightDType::Q4_0, &row, &mut bytes).unwrap();
        let h = r#"{"w":{"dtype":"U8","shape":[2,36],"data_offsets":[0,72]},"__metadata__":{"cria.quant.w":"q4_0:40"}}"#;
        let mut f = SafetensorsFile::parse("m", file(h, &bytes)).unwrap();
        let entry = f.tensors["w"].clone();
        assert_eq!(f.read_rows("w", 1..2).unwrap().into_f32_rows(40), crate::quant::dequantize_row(WeightDType::Q4_0, &bytes[36..], 40));
        let t = f.read_rows("w", 0..2).unwrap();
        assert_eq!(entry.shape, vec![2, 40]);
        assert_eq!(entry.dtype, Dtype::Block(WeightDType::Q4_0));
        let values = t.into_f32_rows(40);
        assert_eq!(values.len(), 80);
        assert!((values[39] - 3.9).abs() < 0.3 && (values[79] - 3.9).abs() < 0.3);
        // Lying entries: a row length that does not fit the columns, an unknown type, garbage.
        for (meta, want) in [("q4_0:65", "need [rows, 54]"), ("q4_0:20", "need [rows, 18]"), ("q5_1:40", "need [rows, 48]"), ("iq2_xxs:40", "unknown quantization"), ("q4_0", "malformed"), ("q4_0:0", "malformed")] {
            let h = format!(r#"{{"w":{{"dtype":"U8","shape":[2,36],"data_offsets":[0,72]}},"__metadata__":{{"cria.quant.w":"{meta}"}}}}"#);
            let err = SafetensorsFile::parse("m", file(&h, &bytes)).err().unwrap();
            assert!(err.to_string().contains(want), "{meta}: {err}");
        }
    }
}
