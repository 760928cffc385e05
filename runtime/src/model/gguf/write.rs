//! Writing GGUF files (version 3, little-endian), as ggml's `gguf_write_to_file` lays them out:
//! header, metadata, tensor infos, padding to the alignment, then each tensor's data at an
//! aligned offset. [`requantize`] is `llama-quantize IN OUT TYPE`: the metadata carried over
//! (with `general.file_type` and `general.quantization_version` set), tensors in llama.cpp's
//! order ([`mix::walk_order`]), each typed by [`crate::quant::mix`] and re-encoded from the
//! source's values (kept byte for byte where its type does not change). One tensor is in memory at a time; the file is written
//! beside its destination and renamed into place, so a failure leaves nothing behind.

use super::weights::dtype_of;
use super::{Array, GgmlType, GgufFile, TensorInfo, Value};
use crate::error::{Error, Result};
use crate::model::safetensors::{ByteSource, HostTensor};
use crate::model::write::OutTensor;
use crate::ops::WeightDType;
use crate::quant::mix::{self, Scheme, TensorShape};
use std::io::Write;
use std::path::Path;

/// ggml's `GGML_QNT_VERSION`, written as `general.quantization_version`.
pub const QUANTIZATION_VERSION: u32 = 2;

/// A tensor to write: name, dimensions (`ne`, row length first), type and data length.
#[derive(Clone, Debug)]
pub struct PlannedTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    pub len: u64,
}

/// The ggml type id of a weight type.
pub fn ggml_type(t: WeightDType) -> GgmlType {
    match t {
        WeightDType::F32 => GgmlType::F32,
        WeightDType::F16 => GgmlType::F16,
        WeightDType::BF16 => GgmlType::BF16,
        WeightDType::Block(b) => GgmlType(b.ggml_id()),
    }
}

struct Out<W: Write> {
    w: W,
    pos: u64,
}

impl<W: Write> Out<W> {
    fn bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.pos += b.len() as u64;
        self.w.write_all(b)
    }
    fn u32(&mut self, v: u32) -> std::io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> std::io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }
    fn str(&mut self, s: &str) -> std::io::Result<()> {
        self.u64(s.len() as u64)?;
        self.bytes(s.as_bytes())
    }
    fn pad(&mut self, alignment: u64) -> std::io::Result<()> {
        let n = self.pos.next_multiple_of(alignment) - self.pos;
        self.bytes(&vec![0; n as usize])
    }
    /// A value's type id (`gguf_type`) then the value.
    fn value(&mut self, v: &Value) -> std::io::Result<()> {
        match v {
            Value::U8(x) => self.typed(0, &[*x]),
            Value::I8(x) => self.typed(1, &x.to_le_bytes()),
            Value::U16(x) => self.typed(2, &x.to_le_bytes()),
            Value::I16(x) => self.typed(3, &x.to_le_bytes()),
            Value::U32(x) => self.typed(4, &x.to_le_bytes()),
            Value::I32(x) => self.typed(5, &x.to_le_bytes()),
            Value::F32(x) => self.typed(6, &x.to_le_bytes()),
            Value::Bool(x) => self.typed(7, &[*x as u8]),
            Value::Str(s) => {
                self.u32(8)?;
                self.str(s)
            }
            Value::Array(a) => {
                self.u32(9)?;
                self.array(a)
            }
            Value::U64(x) => self.typed(10, &x.to_le_bytes()),
            Value::I64(x) => self.typed(11, &x.to_le_bytes()),
            Value::F64(x) => self.typed(12, &x.to_le_bytes()),
        }
    }
    fn typed(&mut self, id: u32, b: &[u8]) -> std::io::Result<()> {
        self.u32(id)?;
        self.bytes(b)
    }
    /// An array: element type, count, elements.
    fn array(&mut self, a: &Array) -> std::io::Result<()> {
        fn each<W: Write, T>(o: &mut Out<W>, id: u32, v: &[T], mut f: impl FnMut(&mut Out<W>, &T) -> std::io::Result<()>) -> std::io::Result<()> {
            o.u32(id)?;
            o.u64(v.len() as u64)?;
            v.iter().try_for_each(|x| f(o, x))
        }
        match a {
            Array::U8(v) => each(self, 0, v, |o, x| o.bytes(&[*x])),
            Array::I8(v) => each(self, 1, v, |o, x| o.bytes(&x.to_le_bytes())),
            Array::U16(v) => each(self, 2, v, |o, x| o.bytes(&x.to_le_bytes())),
            Array::I16(v) => each(self, 3, v, |o, x| o.bytes(&x.to_le_bytes())),
            Array::U32(v) => each(self, 4, v, |o, x| o.bytes(&x.to_le_bytes())),
            Array::I32(v) => each(self, 5, v, |o, x| o.bytes(&x.to_le_bytes())),
            Array::F32(v) => each(self, 6, v, |o, x| o.bytes(&x.to_le_bytes())),
            Array::Bool(v) => each(self, 7, v, |o, x| o.bytes(&[*x as u8])),
            Array::Str(v) => each(self, 8, v, |o, x| o.str(x)),
            Array::Array(v) => each(self, 9, v, |o, x| o.array(x)),
            Array::U64(v) => each(self, 10, v, |o, x| o.bytes(&x.to_le_bytes())),
            Array::I64(v) => each(self, 11, v, |o, x| o.bytes(&x.to_le_bytes())),
            Array::F64(v) => each(self, 12, v, |o, x| o.bytes(&x.to_le_bytes())),
        }
    }
}

/// Writes a GGUF file at `path`: `metadata` in the order given, then `tensors` in the order
/// given, asking `produce` for each tensor's bytes only when its turn comes.
pub fn write_gguf(path: &Path, metadata: &[(String, Value)], tensors: &[PlannedTensor], alignment: u64, mut produce: impl FnMut(&PlannedTensor) -> Result<Vec<u8>>) -> Result<()> {
    let io = |e: std::io::Error| Error::Io { path: path.display().to_string(), message: e.to_string() };
    let tmp = path.with_extension("gguf.partial");
    let result = (|| {
        let mut o = Out { w: std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?), pos: 0 };
        o.bytes(b"GGUF").map_err(io)?;
        o.u32(3).map_err(io)?;
        o.u64(tensors.len() as u64).map_err(io)?;
        o.u64(metadata.len() as u64).map_err(io)?;
        for (key, value) in metadata {
            o.str(key).map_err(io)?;
            o.value(value).map_err(io)?;
        }
        let mut offset = 0u64;
        for t in tensors {
            o.str(&t.name).map_err(io)?;
            o.u32(t.dims.len() as u32).map_err(io)?;
            t.dims.iter().try_for_each(|&d| o.u64(d)).map_err(io)?;
            o.u32(t.ggml_type.0).map_err(io)?;
            o.u64(offset).map_err(io)?;
            offset = (offset + t.len).next_multiple_of(alignment);
        }
        o.pad(alignment).map_err(io)?;
        for t in tensors {
            let bytes = produce(t)?;
            if bytes.len() as u64 != t.len {
                return Err(Error::shape("GGUF write", t.name.clone(), format!("{} bytes of {}", t.len, t.ggml_type.name()), format!("{} bytes", bytes.len())));
            }
            o.bytes(&bytes).map_err(io)?;
            o.pad(alignment).map_err(io)?;
        }
        let file = o.w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)
    })();
    match result {
        Ok(()) => std::fs::rename(&tmp, path).map_err(io),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Bytes of a tensor of `dims` (row length first) in type `t`.
fn data_len(t: WeightDType, dims: &[u64]) -> Result<u64> {
    let cols = dims.first().copied().unwrap_or(1) as usize;
    let rows: u64 = dims.iter().skip(1).product();
    let row = match t {
        WeightDType::F32 => cols * 4,
        WeightDType::F16 | WeightDType::BF16 => cols * 2,
        b => crate::quant::row_bytes(b, cols)?,
    };
    Ok(rows * row as u64)
}

/// The types [`requantize`] gives the tensors of `src` (None: copied as they are).
pub fn plan<S: ByteSource>(src: &GgufFile<S>, scheme: Scheme) -> Result<Vec<(TensorInfo, Option<WeightDType>)>> {
    let arch = src.str_opt("general.architecture")?.unwrap_or("llama").to_string();
    let n_layer = src.u64_req(&format!("{arch}.block_count"))? as usize;
    let mut tensors: Vec<TensorInfo> = src.tensors().to_vec();
    tensors.sort_by(|a, b| mix::walk_order(&a.name, &b.name));
    let shapes: Vec<TensorShape> = tensors.iter().map(|t| TensorShape { name: t.name.clone(), n_dims: t.dims.len(), cols: t.dims.first().copied().unwrap_or(1) as usize }).collect();
    let chosen = mix::choose(scheme, &shapes, n_layer, mix::Blocks::Whole);
    Ok(tensors.into_iter().zip(chosen).map(|(t, c)| {
        let same = c.is_some_and(|c| ggml_type(c) == t.ggml_type);
        (t, c.filter(|_| !same))
    }).collect())
}

/// `llama-quantize IN OUT TYPE`: writes `out`, a GGUF file with `src`'s metadata and tensors,
/// its matrices typed as `scheme` says. Returns the bytes of tensor data written.
pub fn requantize<S: ByteSource>(src: &mut GgufFile<S>, out: &Path, scheme: Scheme, progress: &mut dyn FnMut(&str)) -> Result<u64> {
    let path = src.path.clone();
    let plan = plan(src, scheme)?;
    let mut metadata: Vec<(String, Value)> = src
        .metadata()
        .iter()
        .filter(|(k, _)| !k.starts_with("split.") && *k != "general.file_type" && *k != "general.quantization_version")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.push(("general.quantization_version".into(), Value::U32(QUANTIZATION_VERSION)));
    metadata.push(("general.file_type".into(), Value::U32(scheme.file_type_id())));
    let mut planned = Vec::with_capacity(plan.len());
    for (t, to) in &plan {
        let (ggml_type, len) = match to {
            Some(to) => (ggml_type(*to), data_len(*to, &t.dims)?),
            None => (t.ggml_type, t.end - t.start),
        };
        planned.push(PlannedTensor { name: t.name.clone(), dims: t.dims.clone(), ggml_type, len });
    }
    if out.exists() {
        return Err(Error::Io { path: out.display().to_string(), message: "already exists. Hint: choose a new --out file (nothing is overwritten)".into() });
    }
    let targets: std::collections::HashMap<&str, (&TensorInfo, Option<WeightDType>)> = plan.iter().map(|(t, to)| (t.name.as_str(), (t, *to))).collect();
    write_gguf(out, &metadata, &planned, src.alignment, |p| {
        progress(&p.name);
        let (info, to) = targets[p.name.as_str()];
        let (_, bytes) = src.read(&info.name)?;
        let cols = info.dims.first().copied().unwrap_or(1) as usize;
        let non_finite = |what: String| Error::NonFinite { tensor: format!("{} in {path}", info.name), what };
        // A NaN or infinite block scale would be copied, or re-encoded into garbage: refused.
        if let Some(b) = crate::quant::ggml::BlockType::from_ggml_id(info.ggml_type.0) {
            crate::quant::check_scales(b, &bytes, crate::quant::row_bytes(WeightDType::Block(b), cols)?, 0).map_err(non_finite)?;
        }
        let from = dtype_of(info.ggml_type);
        let is_float = matches!(info.ggml_type, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
        let (to, from) = match (to, from) {
            (None, _) if !is_float => return Ok(bytes),
            (_, Some(from)) => (to, from),
            (_, None) => {
                return Err(Error::UnsupportedDtype {
                    tensor: format!("{} in {path}", info.name),
                    got: info.ggml_type.describe(),
                    supported: "Cria re-encodes tensors it can read: F32, F16, BF16 and the ggml block types it computes with".into(),
                })
            }
        };
        // Float tensors (copied or re-encoded) and re-encoded blocks: every value finite.
        let finite = |values: &[f32]| match values.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(non_finite(format!("value {} of row {} is {}", i % cols.max(1), i / cols.max(1), values[i]))),
            None => Ok(()),
        };
        let Some(to) = to else {
            finite(&HostTensor::from_le_bytes(from, bytes.clone()).into_f32())?;
            return Ok(bytes);
        };
        let values = HostTensor::from_le_bytes(from, bytes).into_f32_rows(cols);
        finite(&values)?;
        let rows = info.dims.iter().skip(1).product::<u64>() as usize;
        Ok(OutTensor::convert(HostTensor::F32(values), &[rows, cols], to)?.bytes)
    })?;
    Ok(planned.iter().map(|p| p.len).sum())
}
