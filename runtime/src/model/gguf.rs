//! GGUF, llama.cpp's model format (versions 2 and 3): a defensive reader over any
//! [`ByteSource`], and a Llama model built from it ([`GgufModel`]: config, tokenizer, generation
//! defaults and weights from the one file).
//!
//! Layout (little-endian; spec: ggml `docs/gguf.md`): magic `GGUF`, u32 version, u64 tensor
//! count, u64 metadata count; metadata entries (string key, u32 value type, value); tensor infos
//! (string name, u32 n_dims, n_dims × u64 `ne`, u32 ggml type, u64 offset); padding to
//! `general.alignment` (default 32); tensor data, each tensor at data start + offset. A string
//! is a u64 length and UTF-8 bytes; an array is a u32 element type, a u64 count and elements
//! (arrays may nest). `ne[0]` is the row length (contiguous), so HF's shape is `ne` reversed.
//!
//! Nothing in the file is trusted before it is checked: counts and lengths against the bytes
//! left (a lying count ends in a typed error, never a huge allocation), sizes with checked
//! arithmetic, every tensor's byte range against the file size.

pub mod config;
pub mod tokenizer;
pub mod weights;
#[cfg(not(target_arch = "wasm32"))]
pub mod write;

use super::config::{GenerationConfig, LlamaConfig};
use super::llama::{Llama, ModelOptions};
use super::safetensors::ByteSource;
use super::weights::LoadProgress;
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
use std::collections::{BTreeMap, HashMap};

pub use weights::GgufWeights;

/// Longest metadata key or tensor name (GGUF's limit for keys; ggml's for names is 64 bytes).
const MAX_NAME: u64 = 65_535;
/// Longest string value. Chat templates are tens of KiB; some files embed a whole
/// tokenizer.json (`tokenizer.huggingface.json`, ~10 MiB for Llama 3).
const MAX_STRING: u64 = 64 << 20;
/// Most elements in one array: vocabularies have up to ~260k tokens, merge lists ~500k.
const MAX_ARRAY: u64 = 64 << 20;
/// Arrays of arrays nest at most this deep (bounds the parser's recursion).
const MAX_DEPTH: u32 = 4;
/// ggml tensors have at most 4 dimensions (GGML_MAX_DIMS).
const MAX_DIMS: u32 = 4;
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Smallest encodings: a metadata entry (key length, type, one-byte value) and a tensor info
/// (name length, n_dims, one dim, type, offset). They bound what the header's counts can claim.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

const TRUNCATED: &str = "the file is truncated or corrupt; download or convert it again";

/// A ggml tensor type id (`enum ggml_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GgmlType(pub u32);

impl GgmlType {
    pub const F32: GgmlType = GgmlType(0);
    pub const F16: GgmlType = GgmlType(1);
    pub const Q4_0: GgmlType = GgmlType(2);
    pub const Q8_0: GgmlType = GgmlType(8);
    pub const BF16: GgmlType = GgmlType(30);

    /// (name, values per block, bytes per block) of every type ggml defines, from gguf-py
    /// 0.19.0's `GGML_QUANT_SIZES`. Known types can be sized (so the file parses and its ranges
    /// are checked) even where this runtime cannot compute with them.
    fn traits(self) -> Option<(&'static str, u64, u64)> {
        Some(match self.0 {
            0 => ("F32", 1, 4),
            1 => ("F16", 1, 2),
            2 => ("Q4_0", 32, 18),
            3 => ("Q4_1", 32, 20),
            6 => ("Q5_0", 32, 22),
            7 => ("Q5_1", 32, 24),
            8 => ("Q8_0", 32, 34),
            9 => ("Q8_1", 32, 40),
            10 => ("Q2_K", 256, 84),
            11 => ("Q3_K", 256, 110),
            12 => ("Q4_K", 256, 144),
            13 => ("Q5_K", 256, 176),
            14 => ("Q6_K", 256, 210),
            15 => ("Q8_K", 256, 292),
            16 => ("IQ2_XXS", 256, 66),
            17 => ("IQ2_XS", 256, 74),
            18 => ("IQ3_XXS", 256, 98),
            19 => ("IQ1_S", 256, 50),
            20 => ("IQ4_NL", 32, 18),
            21 => ("IQ3_S", 256, 110),
            22 => ("IQ2_S", 256, 82),
            23 => ("IQ4_XS", 256, 136),
            24 => ("I8", 1, 1),
            25 => ("I16", 1, 2),
            26 => ("I32", 1, 4),
            27 => ("I64", 1, 8),
            28 => ("F64", 1, 8),
            29 => ("IQ1_M", 256, 56),
            30 => ("BF16", 1, 2),
            34 => ("TQ1_0", 256, 54),
            35 => ("TQ2_0", 256, 66),
            39 => ("MXFP4", 32, 17),
            40 => ("NVFP4", 64, 36),
            41 => ("Q1_0", 128, 18),
            _ => return None,
        })
    }

    /// `Q4_K (ggml type 12)`, or `ggml type 99` for ids ggml does not define.
    pub fn describe(self) -> String {
        match self.traits() {
            Some((name, _, _)) => format!("{name} (ggml type {})", self.0),
            None => format!("ggml type {}", self.0),
        }
    }

    pub fn name(self) -> &'static str {
        self.traits().map_or("unknown", |t| t.0)
    }
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Array),
}

/// A metadata array, stored by element type (a 150k-entry score list stays a `Vec<f32>`).
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    Str(Vec<String>),
    Array(Vec<Array>),
}

impl Value {
    /// A non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The GGUF type name, for error messages (`u32`, `array of string`).
    pub fn type_name(&self) -> String {
        match self {
            Value::U8(_) => "u8".into(),
            Value::I8(_) => "i8".into(),
            Value::U16(_) => "u16".into(),
            Value::I16(_) => "i16".into(),
            Value::U32(_) => "u32".into(),
            Value::I32(_) => "i32".into(),
            Value::U64(_) => "u64".into(),
            Value::I64(_) => "i64".into(),
            Value::F32(_) => "f32".into(),
            Value::F64(_) => "f64".into(),
            Value::Bool(_) => "bool".into(),
            Value::Str(_) => "string".into(),
            Value::Array(a) => format!("array of {}", a.element_name()),
        }
    }
}

impl Array {
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::F64(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::Str(v) => v.len(),
            Array::Array(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type's GGUF name (`u32`, `string`, `array`).
    pub fn element_name(&self) -> &'static str {
        match self {
            Array::U8(_) => "u8",
            Array::I8(_) => "i8",
            Array::U16(_) => "u16",
            Array::I16(_) => "i16",
            Array::U32(_) => "u32",
            Array::I32(_) => "i32",
            Array::U64(_) => "u64",
            Array::I64(_) => "i64",
            Array::F32(_) => "f32",
            Array::F64(_) => "f64",
            Array::Bool(_) => "bool",
            Array::Str(_) => "string",
            Array::Array(_) => "array",
        }
    }

    /// Elements as i64 when the array holds integers (token types are i32 in llama.cpp's
    /// files, other writers use other widths).
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        Some(match self {
            Array::U8(v) => v.iter().map(|&x| x.into()).collect(),
            Array::I8(v) => v.iter().map(|&x| x.into()).collect(),
            Array::U16(v) => v.iter().map(|&x| x.into()).collect(),
            Array::I16(v) => v.iter().map(|&x| x.into()).collect(),
            Array::U32(v) => v.iter().map(|&x| x.into()).collect(),
            Array::I32(v) => v.iter().map(|&x| x.into()).collect(),
            Array::I64(v) => v.clone(),
            Array::U64(v) => v.iter().map(|&x| i64::try_from(x).ok()).collect::<Option<_>>()?,
            _ => return None,
        })
    }
}

/// One tensor's description, checked against the file.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub ggml_type: GgmlType,
    /// `ne`: the row length first (HF's shape is this reversed).
    pub dims: Vec<u64>,
    /// Absolute byte range in the file.
    pub start: u64,
    pub end: u64,
}

/// A parsed GGUF file: metadata and tensor infos in memory, tensor data read on demand.
pub struct GgufFile<S: ByteSource> {
    pub path: String,
    pub version: u32,
    pub alignment: u64,
    metadata: BTreeMap<String, Value>,
    tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
    src: S,
}

pub(crate) fn bad(path: &str, message: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::Gguf { path: path.to_string(), message: message.into(), hint: hint.into() }
}

/// Buffered little-endian reads at a moving position, each checked against the file size
/// (a vocabulary is ~10^5 tiny reads; one `read_at` each would be one syscall each).
struct Reader<'a, S: ByteSource> {
    src: &'a mut S,
    path: &'a str,
    size: u64,
    pos: u64,
    buf: Vec<u8>,
    /// File offset of buf[0].
    buf_start: u64,
    /// What is being read, for truncation errors ("metadata entry 3 (`llama.block_count`)").
    context: String,
}

const CHUNK: usize = 1 << 16;

impl<S: ByteSource> Reader<'_, S> {
    fn remaining(&self) -> u64 {
        self.size - self.pos
    }

    fn truncated(&self, what: &str, need: u64) -> Error {
        bad(
            self.path,
            format!("{}: {what} needs {need} bytes at offset {} but the file ends at {}", self.context, self.pos, self.size),
            TRUNCATED,
        )
    }

    fn read(&mut self, out: &mut [u8], what: &str) -> Result<()> {
        let n = out.len() as u64;
        if n > self.remaining() {
            return Err(self.truncated(what, n));
        }
        let buf_end = self.buf_start + self.buf.len() as u64;
        if self.pos >= self.buf_start && self.pos + n <= buf_end {
            let at = (self.pos - self.buf_start) as usize;
            out.copy_from_slice(&self.buf[at..at + out.len()]);
        } else if out.len() >= CHUNK {
            self.src.read_at(self.pos, out)?;
        } else {
            let len = (CHUNK as u64).min(self.remaining()) as usize;
            self.buf.resize(len, 0);
            self.src.read_at(self.pos, &mut self.buf)?;
            self.buf_start = self.pos;
            out.copy_from_slice(&self.buf[..out.len()]);
        }
        self.pos += n;
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.read(&mut b, what)?;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// `count` elements of `size` bytes each, after checking they fit in what is left.
    fn block(&mut self, count: u64, size: u64, what: &str) -> Result<Vec<u8>> {
        let n = count.checked_mul(size).filter(|&n| n <= self.remaining()).ok_or_else(|| {
            bad(self.path, format!("{}: {what} claims {count} elements of {size} bytes but only {} bytes remain", self.context, self.remaining()), TRUNCATED)
        })?;
        let mut out = vec![0u8; n as usize];
        self.read(&mut out, what)?;
        Ok(out)
    }

    fn string(&mut self, max: u64, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        if len > max {
            return Err(bad(self.path, format!("{}: {what} claims a length of {len} bytes (the limit is {max})", self.context), TRUNCATED));
        }
        let bytes = self.block(len, 1, what)?;
        String::from_utf8(bytes).map_err(|e| bad(self.path, format!("{}: {what} is not valid UTF-8 ({e})", self.context), "GGUF strings are UTF-8; the file is corrupt"))
    }

    fn value(&mut self, ty: u32, depth: u32) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>("a u8")?[0]),
            1 => Value::I8(self.array::<1>("an i8")?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array("a u16")?)),
            3 => Value::I16(i16::from_le_bytes(self.array("an i16")?)),
            4 => Value::U32(self.u32("a u32")?),
            5 => Value::I32(i32::from_le_bytes(self.array("an i32")?)),
            6 => Value::F32(f32::from_le_bytes(self.array("an f32")?)),
            7 => {
                let b = self.array::<1>("a bool")?[0];
                Value::Bool(self.bool(b)?)
            }
            8 => Value::Str(self.string(MAX_STRING, "a string value")?),
            9 => Value::Array(self.array_value(depth)?),
            10 => Value::U64(self.u64("a u64")?),
            11 => Value::I64(i64::from_le_bytes(self.array("an i64")?)),
            12 => Value::F64(f64::from_le_bytes(self.array("an f64")?)),
            other => return Err(bad(self.path, format!("{}: unknown metadata value type {other}", self.context), "value types are 0..=12 in GGUF v2 and v3; the file is corrupt or from a newer format")),
        })
    }

    fn bool(&self, b: u8) -> Result<bool> {
        match b {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(bad(self.path, format!("{}: a bool holds {b}", self.context), "GGUF bools are 0 or 1; the file is corrupt")),
        }
    }

    fn array_value(&mut self, depth: u32) -> Result<Array> {
        if depth >= MAX_DEPTH {
            return Err(bad(self.path, format!("{}: arrays nest deeper than {MAX_DEPTH} levels", self.context), "the file is corrupt"));
        }
        let ty = self.u32("an array's element type")?;
        let count = self.u64("an array's length")?;
        if count > MAX_ARRAY {
            return Err(bad(self.path, format!("{}: an array claims {count} elements (the limit is {MAX_ARRAY})", self.context), TRUNCATED));
        }
        fn cast<const N: usize, T>(b: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
            b.chunks_exact(N).map(|c| f(c.try_into().unwrap_or([0; N]))).collect()
        }
        let what = "an array";
        Ok(match ty {
            0 => Array::U8(self.block(count, 1, what)?),
            1 => Array::I8(cast(&self.block(count, 1, what)?, i8::from_le_bytes)),
            2 => Array::U16(cast(&self.block(count, 2, what)?, u16::from_le_bytes)),
            3 => Array::I16(cast(&self.block(count, 2, what)?, i16::from_le_bytes)),
            4 => Array::U32(cast(&self.block(count, 4, what)?, u32::from_le_bytes)),
            5 => Array::I32(cast(&self.block(count, 4, what)?, i32::from_le_bytes)),
            6 => Array::F32(cast(&self.block(count, 4, what)?, f32::from_le_bytes)),
            7 => Array::Bool(self.block(count, 1, what)?.into_iter().map(|b| self.bool(b)).collect::<Result<_>>()?),
            10 => Array::U64(cast(&self.block(count, 8, what)?, u64::from_le_bytes)),
            11 => Array::I64(cast(&self.block(count, 8, what)?, i64::from_le_bytes)),
            12 => Array::F64(cast(&self.block(count, 8, what)?, f64::from_le_bytes)),
            8 | 9 => {
                // Variable-size elements: no allocation from the count; each element is read
                // (and bounds-checked) in turn. Each takes at least 8 (string) or 12 bytes.
                let min = if ty == 8 { 8 } else { 12 };
                if count.checked_mul(min).is_none_or(|n| n > self.remaining()) {
                    return Err(bad(self.path, format!("{}: an array claims {count} elements of at least {min} bytes but only {} bytes remain", self.context, self.remaining()), TRUNCATED));
                }
                if ty == 8 {
                    let mut v = Vec::new();
                    for _ in 0..count {
                        v.push(self.string(MAX_STRING, "an array's string")?);
                    }
                    Array::Str(v)
                } else {
                    let mut v = Vec::new();
                    for _ in 0..count {
                        v.push(self.array_value(depth + 1)?);
                    }
                    Array::Array(v)
                }
            }
            other => return Err(bad(self.path, format!("{}: unknown array element type {other}", self.context), "value types are 0..=12 in GGUF v2 and v3; the file is corrupt")),
        })
    }
}

impl<S: ByteSource> GgufFile<S> {
    /// Parses and checks the header, metadata and tensor infos. `path` names the file in errors.
    pub fn parse(path: &str, mut src: S) -> Result<GgufFile<S>> {
        let size = src.size();
        let mut r = Reader { src: &mut src, path, size, pos: 0, buf: Vec::new(), buf_start: 0, context: "the header".into() };
        if size < 24 {
            return Err(bad(path, format!("the file has {size} bytes, fewer than a GGUF header (24)"), TRUNCATED));
        }
        let magic = r.array::<4>("the magic")?;
        if &magic != b"GGUF" {
            return Err(bad(
                path,
                format!("it does not start with the GGUF magic (got {:?})", String::from_utf8_lossy(&magic)),
                "give a .gguf file made by llama.cpp (convert_hf_to_gguf.py or llama-quantize); a Hugging Face model directory loads as a directory",
            ));
        }
        let version = r.u32("the version")?;
        match version {
            2 | 3 => {}
            1 => return Err(Error::Unsupported { what: format!("GGUF version 1 ({path})"), hint: "reconvert the model with a current llama.cpp (GGUF v3)".into() }),
            v if (1..=3).contains(&v.swap_bytes()) => return Err(Error::Unsupported { what: format!("big-endian GGUF ({path})"), hint: "convert the model without --bigendian".into() }),
            v => return Err(bad(path, format!("unknown GGUF version {v}"), "versions 2 and 3 are supported; the file is corrupt or from a newer llama.cpp")),
        }
        let n_tensors = r.u64("the tensor count")?;
        let n_kv = r.u64("the metadata count")?;
        let least = n_kv.checked_mul(MIN_KV_BYTES).and_then(|a| n_tensors.checked_mul(MIN_TENSOR_INFO_BYTES).and_then(|b| a.checked_add(b)));
        if least.is_none_or(|n| n > r.remaining()) {
            return Err(bad(
                path,
                format!("the header claims {n_kv} metadata entries and {n_tensors} tensors, more than the remaining {} bytes can describe (tensor count or metadata count is wrong)", r.remaining()),
                TRUNCATED,
            ));
        }

        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            r.context = format!("metadata entry {i}");
            let key = r.string(MAX_NAME, "the key")?;
            r.context = format!("metadata entry {i} (`{key}`)");
            let ty = r.u32("the value type")?;
            let value = r.value(ty, 0)?;
            if metadata.contains_key(&key) {
                return Err(bad(path, format!("the metadata key `{key}` appears twice"), "the file is corrupt; every key must be unique"));
            }
            metadata.insert(key, value);
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() => a,
                a => {
                    let got = a.map_or_else(|| format!("a {}", v.type_name()), |a| a.to_string());
                    return Err(bad(path, format!("`general.alignment` is {got}, not a power of two"), "the alignment of tensor data must be a power of two (llama.cpp writes 32)"));
                }
            },
        };

        let mut tensors: Vec<TensorInfo> = Vec::new();
        let mut offsets = Vec::new();
        let mut index = HashMap::new();
        for i in 0..n_tensors {
            r.context = format!("tensor info {i}");
            let name = r.string(MAX_NAME, "the tensor name")?;
            r.context = format!("tensor info {i} (`{name}`)");
            let n_dims = r.u32("the dimension count")?;
            if !(1..=MAX_DIMS).contains(&n_dims) {
                return Err(bad(path, format!("{} has {n_dims} dimensions; ggml tensors have 1 to {MAX_DIMS}", r.context), TRUNCATED));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64("a dimension")?);
            }
            let ggml_type = GgmlType(r.u32("the tensor type")?);
            let offset = r.u64("the data offset")?;
            let Some((_, block, type_size)) = ggml_type.traits() else {
                return Err(bad(
                    path,
                    format!("{} has unknown {}", r.context, ggml_type.describe()),
                    "the file is corrupt or needs a newer runtime; requantize it to Q8_0, Q4_0, F16 or F32 with llama.cpp",
                ));
            };
            if dims.contains(&0) {
                return Err(bad(path, format!("{} has a zero dimension ({dims:?})", r.context), TRUNCATED));
            }
            if dims[0] % block != 0 {
                return Err(bad(path, format!("{} has rows of {} values, not a multiple of the {} block of {block}", r.context, dims[0], ggml_type.name()), TRUNCATED));
            }
            let bytes = dims
                .iter()
                .try_fold(1u64, |n, &d| n.checked_mul(d))
                .and_then(|n| (n / block).checked_mul(type_size))
                .ok_or_else(|| bad(path, format!("{} has dimensions {dims:?} whose size overflows 64 bits", r.context), TRUNCATED))?;
            if index.insert(name.clone(), tensors.len()).is_some() {
                return Err(bad(path, format!("the tensor name `{name}` appears twice"), "the file is corrupt; every tensor name must be unique"));
            }
            offsets.push((offset, bytes));
            tensors.push(TensorInfo { name, ggml_type, dims, start: 0, end: 0 });
        }

        let data_start = r.pos.checked_next_multiple_of(alignment).unwrap_or(u64::MAX);
        for (t, &(offset, bytes)) in tensors.iter_mut().zip(&offsets) {
            if offset % alignment != 0 {
                return Err(bad(path, format!("tensor `{}` starts at data offset {offset}, not a multiple of the alignment {alignment}", t.name), TRUNCATED));
            }
            let range = data_start.checked_add(offset).and_then(|s| Some((s, s.checked_add(bytes)?)));
            match range {
                Some((start, end)) if end <= size => (t.start, t.end) = (start, end),
                _ => {
                    return Err(bad(
                        path,
                        format!(
                            "tensor `{}` ({} {:?}, {bytes} bytes) starts at data offset {offset} (file offset {}) and runs past the end of the file ({size} bytes)",
                            t.name,
                            t.ggml_type.name(),
                            t.dims,
                            data_start.saturating_add(offset)
                        ),
                        TRUNCATED,
                    ));
                }
            }
        }
        Ok(GgufFile { path: path.to_string(), version, alignment, metadata, tensors, index, src })
    }

    pub fn metadata(&self) -> &BTreeMap<String, Value> {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of one tensor.
    pub fn read(&mut self, name: &str) -> Result<(TensorInfo, Vec<u8>)> {
        let info = self.tensor_info(name).cloned().ok_or_else(|| Error::MissingTensor { name: name.to_string(), path: self.path.clone() })?;
        let bytes = self.read_range(name, info.start..info.end)?;
        Ok((info, bytes))
    }

    /// Bytes `range` of the file (absolute offsets, within tensor `name`'s data).
    pub fn read_range(&mut self, name: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
        let len = usize::try_from(range.end - range.start)
            .map_err(|_| Error::Unsupported { what: format!("reading {} bytes of tensor `{name}` on this 32-bit target", range.end - range.start), hint: "use a smaller model".into() })?;
        let mut bytes = vec![0u8; len];
        self.src.read_at(range.start, &mut bytes)?;
        Ok(bytes)
    }

    fn field_err(&self, key: &str, message: String, hint: &str) -> Error {
        Error::Config { path: self.path.clone(), field: key.to_string(), message, hint: hint.to_string() }
    }

    /// A non-negative integer entry (any integer width), if present.
    pub fn u64_opt(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| self.field_err(key, format!("must be a non-negative integer, got {} {v:?}", v.type_name()), "the GGUF metadata is malformed")),
        }
    }

    pub fn u64_req(&self, key: &str) -> Result<u64> {
        self.u64_opt(key)?.ok_or_else(|| self.field_err(key, "is missing".into(), "llama.cpp writes it for every Llama model; is this a complete model file?"))
    }

    pub fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.field_err(key, format!("must be a number, got {} {v:?}", v.type_name()), "the GGUF metadata is malformed")),
        }
    }

    pub fn str_opt(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(v) => Err(self.field_err(key, format!("must be a string, got {}", v.type_name()), "the GGUF metadata is malformed")),
        }
    }

    pub fn bool_opt(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| self.field_err(key, format!("must be a bool, got {}", v.type_name()), "the GGUF metadata is malformed")),
        }
    }

    pub fn array_opt(&self, key: &str) -> Result<Option<&Array>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.field_err(key, format!("must be an array, got {}", v.type_name()), "the GGUF metadata is malformed")),
        }
    }
}

/// A GGUF model file opened for loading: the model's config, tokenizer and generation defaults,
/// all from the file's metadata, and its weights, read from the file by [`GgufModel::load`].
/// Take the tokenizer out (`model.tokenizer`) when the weights are loaded.
pub struct GgufModel<S: ByteSource> {
    pub config: LlamaConfig,
    pub generation: GenerationConfig,
    pub tokenizer: Tokenizer,
    pub weights: GgufWeights<S>,
}

impl<S: ByteSource> GgufModel<S> {
    /// Parses the file and builds config, tokenizer and generation defaults; tensor data stays in
    /// `src`. `path` names the file in errors.
    pub fn read(path: &str, src: S) -> Result<GgufModel<S>> {
        let mut file = GgufFile::parse(path, src)?;
        let config = config::llama_config(&mut file)?;
        let generation = config::generation_config(&file)?;
        let tokenizer = tokenizer::tokenizer(&file)?;
        let weights = GgufWeights::new(file, &config)?;
        Ok(GgufModel { config, generation, tokenizer, weights })
    }

    /// Loads the weights onto `device` (a GPU or the CPU), tensor by tensor.
    pub fn load(&mut self, device: impl Into<super::Device>, options: &ModelOptions, progress: &mut dyn FnMut(LoadProgress)) -> Result<Llama> {
        Llama::load(device, self.config.clone(), &mut self.weights, options, progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reader's size table and the dequantizers' block table agree on every block type.
    #[test]
    fn type_table_agrees_with_the_block_formats() {
        for t in crate::quant::ggml::BlockType::ALL {
            let (name, values, bytes) = GgmlType(t.ggml_id()).traits().unwrap();
            assert_eq!((name.to_ascii_lowercase().as_str(), values, bytes), (t.name(), t.block_values() as u64, t.block_bytes() as u64));
        }
    }

    /// A minimal GGUF writer for the parser's own tests.
    struct W(Vec<u8>);
    impl W {
        fn header(version: u32, n_tensors: u64, n_kv: u64) -> W {
            let mut w = W(b"GGUF".to_vec());
            w.u32(version);
            w.u64(n_tensors);
            w.u64(n_kv);
            w
        }
        fn u32(&mut self, v: u32) {
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        fn u64(&mut self, v: u64) {
            self.0.extend_from_slice(&v.to_le_bytes());
        }
        fn str(&mut self, s: &str) {
            self.u64(s.len() as u64);
            self.0.extend_from_slice(s.as_bytes());
        }
        fn kv(&mut self, key: &str, ty: u32, value: &[u8]) {
            self.str(key);
            self.u32(ty);
            self.0.extend_from_slice(value);
        }
        fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) {
            self.str(name);
            self.u32(dims.len() as u32);
            dims.iter().for_each(|&d| self.u64(d));
            self.u32(ty);
            self.u64(offset);
        }
        fn pad(&mut self, align: usize) {
            self.0.resize(self.0.len().next_multiple_of(align), 0);
        }
    }

    fn le<T: Copy, const N: usize>(v: &[T], f: fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| f(x)).collect()
    }

    #[test]
    fn reads_every_value_type_and_tensor_data() {
        for version in [2, 3] {
            let mut w = W::header(version, 2, 14);
            w.kv("u8", 0, &[7]);
            w.kv("i8", 1, &[0xFF]);
            w.kv("u16", 2, &500u16.to_le_bytes());
            w.kv("i16", 3, &(-500i16).to_le_bytes());
            w.kv("u32", 4, &70_000u32.to_le_bytes());
            w.kv("i32", 5, &(-70_000i32).to_le_bytes());
            w.kv("f32", 6, &1.5f32.to_le_bytes());
            w.kv("bool", 7, &[1]);
            let mut s = W(Vec::new());
            s.str("héllo");
            w.kv("str", 8, &s.0);
            w.kv("u64", 10, &(1u64 << 40).to_le_bytes());
            w.kv("i64", 11, &(-1i64 << 40).to_le_bytes());
            w.kv("f64", 12, &0.25f64.to_le_bytes());
            // Array of strings, and an array of arrays (one of i32, one of f32).
            let mut a = W(Vec::new());
            a.u32(8);
            a.u64(2);
            a.str("a");
            a.str("▁b");
            w.kv("strs", 9, &a.0);
            let mut n = W(Vec::new());
            n.u32(9);
            n.u64(2);
            n.u32(5);
            n.u64(2);
            n.0.extend(le(&[1i32, -2], i32::to_le_bytes));
            n.u32(6);
            n.u64(1);
            n.0.extend(le(&[0.5f32], f32::to_le_bytes));
            w.kv("nested", 9, &n.0);
            w.tensor("a", &[3], 0, 0);
            w.tensor("b", &[32, 2], 8, 32);
            w.pad(32);
            let data_start = w.0.len();
            w.0.extend(le(&[1.0f32, 2.0, 3.0], f32::to_le_bytes));
            w.pad(32);
            w.0.extend(vec![9u8; 68]);
            let mut f = GgufFile::parse("t.gguf", w.0).unwrap();
            assert_eq!(f.version, version);
            assert_eq!(f.get("u8"), Some(&Value::U8(7)));
            assert_eq!(f.get("i8"), Some(&Value::I8(-1)));
            assert_eq!(f.u64_opt("u16").unwrap(), Some(500));
            assert_eq!(f.get("i16"), Some(&Value::I16(-500)));
            assert_eq!(f.u64_req("u32").unwrap(), 70_000);
            assert_eq!(f.get("i32"), Some(&Value::I32(-70_000)));
            assert_eq!(f.f64_opt("f32").unwrap(), Some(1.5));
            assert_eq!(f.bool_opt("bool").unwrap(), Some(true));
            assert_eq!(f.str_opt("str").unwrap(), Some("héllo"));
            assert_eq!(f.u64_opt("u64").unwrap(), Some(1 << 40));
            assert_eq!(f.get("i64"), Some(&Value::I64(-1 << 40)));
            assert_eq!(f.f64_opt("f64").unwrap(), Some(0.25));
            assert_eq!(f.array_opt("strs").unwrap(), Some(&Array::Str(vec!["a".into(), "▁b".into()])));
            assert_eq!(f.array_opt("nested").unwrap(), Some(&Array::Array(vec![Array::I32(vec![1, -2]), Array::F32(vec![0.5])])));
            // Wrong types are Config errors naming the key.
            let err = f.u64_req("str").unwrap_err();
            assert!(err.to_string().contains("`str` must be a non-negative integer"), "{err}");
            assert!(f.u64_opt("i8").is_err(), "negative integers are not counts");
            let (info, bytes) = f.read("a").unwrap();
            assert_eq!((info.start, info.end), (data_start as u64, data_start as u64 + 12));
            assert_eq!(bytemuck::pod_collect_to_vec::<u8, f32>(&bytes), vec![1.0, 2.0, 3.0]);
            let (info, bytes) = f.read("b").unwrap();
            assert_eq!((info.ggml_type, info.dims.clone(), bytes.len()), (GgmlType::Q8_0, vec![32, 2], 68));
            assert!(matches!(f.read("c"), Err(Error::MissingTensor { .. })));
        }
    }

    #[test]
    fn custom_alignment_places_data() {
        let mut w = W::header(3, 1, 1);
        w.kv("general.alignment", 4, &64u32.to_le_bytes());
        w.tensor("t", &[2], 0, 0);
        w.pad(64);
        let start = w.0.len() as u64;
        w.0.extend(le(&[4.0f32, 5.0], f32::to_le_bytes));
        let f = GgufFile::parse("t", w.0).unwrap();
        assert_eq!((f.alignment, f.tensor_info("t").unwrap().start), (64, start));
    }

    #[test]
    fn string_and_array_lengths_are_bounded_before_allocation() {
        // A string claiming 2^62 bytes, an array claiming 2^40 u32s, an array of 2^40 strings.
        let mut w = W::header(3, 0, 1);
        w.str("k");
        w.u32(8);
        w.u64(1 << 62);
        let err = GgufFile::parse("t", w.0).err().unwrap().to_string();
        assert!(err.contains("claims a length of 4611686018427387904 bytes"), "{err}");
        for elem in [4u32, 8] {
            let mut w = W::header(3, 0, 1);
            w.str("k");
            w.u32(9);
            w.u32(elem);
            w.u64(1 << 20);
            let err = GgufFile::parse("t", w.0).err().unwrap().to_string();
            assert!(err.contains("an array claims 1048576 elements"), "{err}");
        }
        // Deeply nested arrays stop at MAX_DEPTH instead of recursing on.
        let mut w = W::header(3, 0, 1);
        w.str("k");
        w.u32(9);
        for _ in 0..8 {
            w.u32(9);
            w.u64(1);
        }
        w.0.extend(vec![0; 64]);
        let err = GgufFile::parse("t", w.0).err().unwrap().to_string();
        assert!(err.contains("nest deeper"), "{err}");
    }

    #[test]
    fn ggml_types_are_named() {
        assert_eq!(GgmlType(12).describe(), "Q4_K (ggml type 12)");
        assert_eq!(GgmlType(99).describe(), "ggml type 99");
    }
}
