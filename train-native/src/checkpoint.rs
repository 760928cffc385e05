//! Training checkpoints: weights, AdamW moments, step, RNG state and data position, in one
//! self-checking file written atomically (temp + rename, see [`crate::fsutil`]).
//!
//! Layout: `CRIACKPT` | u32 format version | u64 header length | header JSON | u64 P |
//! params f32[P] | m f32[P] | v f32[P] | u64 FNV-1a checksum of every byte before it.
//! A truncated or damaged file fails the length or checksum test and loads as
//! [`TrainError::CorruptCheckpoint`], never as garbage weights.

use crate::config::{LlamaConfig, TrainConfig};
use crate::error::{Result, TrainError};
use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const CHECKPOINT_MAGIC: &[u8; 8] = b"CRIACKPT";
pub const CHECKPOINT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointHeader {
    pub model: LlamaConfig,
    pub train: TrainConfig,
    /// Optimizer steps completed.
    pub step: u64,
    /// Batch sampler RNG state: the data position.
    pub rng_state: u64,
    pub tokens_seen: u64,
    pub tokenizer_json: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub header: CheckpointHeader,
    pub params: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Checkpoint {
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("checkpoint header serializes");
        let p = self.params.len();
        let mut buf = Vec::with_capacity(8 + 4 + 8 + header.len() + 8 + 12 * p + 8);
        buf.extend_from_slice(CHECKPOINT_MAGIC);
        buf.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
        buf.extend_from_slice(&(header.len() as u64).to_le_bytes());
        buf.extend_from_slice(&header);
        buf.extend_from_slice(&(p as u64).to_le_bytes());
        for vec in [&self.params, &self.m, &self.v] {
            for x in vec.iter() {
                buf.extend_from_slice(&x.to_le_bytes());
            }
        }
        let sum = fnv1a(&buf);
        buf.extend_from_slice(&sum.to_le_bytes());
        buf
    }

    /// Atomic save: the previous file at `path` stays intact until the new one is complete.
    pub fn save(&self, path: &Path) -> Result<()> {
        fsutil::write_atomic(path, &self.to_bytes())
    }

    /// Test hook: a save that "crashes" after `bytes` bytes of the temp file (see
    /// `fsutil::write_atomic_interruptible`). Returns the simulated I/O error.
    #[doc(hidden)]
    pub fn save_interrupted_for_test(&self, path: &Path, bytes: usize) -> Result<()> {
        fsutil::write_atomic_interruptible(path, &self.to_bytes(), Some(bytes))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TrainError::NoCheckpoint { path: path.to_path_buf() });
            }
            Err(e) => return Err(TrainError::Io { op: "read checkpoint", path: path.to_path_buf(), source: e }),
        };
        Self::from_bytes(&bytes, path)
    }

    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let corrupt = |reason: String| TrainError::CorruptCheckpoint { path: path.to_path_buf(), reason };
        if bytes.len() < 8 + 4 + 8 + 8 + 8 {
            return Err(corrupt(format!("file is {} bytes, shorter than any checkpoint", bytes.len())));
        }
        if &bytes[..8] != CHECKPOINT_MAGIC {
            return Err(corrupt("missing CRIACKPT magic (not a cria-train checkpoint)".into()));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
        if version != CHECKPOINT_VERSION {
            return Err(TrainError::CheckpointVersion { path: path.to_path_buf(), got: version, expected: CHECKPOINT_VERSION });
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let stored = u64::from_le_bytes(sum.try_into().unwrap());
        let computed = fnv1a(body);
        if stored != computed {
            return Err(corrupt(format!(
                "checksum mismatch (stored {stored:016x}, computed {computed:016x}): truncated or damaged"
            )));
        }
        let hlen = u64::from_le_bytes(body[12..20].try_into().unwrap()) as usize;
        let hend = 20usize.checked_add(hlen).filter(|&e| e + 8 <= body.len()).ok_or_else(|| corrupt("header length past end of file".into()))?;
        let header: CheckpointHeader =
            serde_json::from_slice(&body[20..hend]).map_err(|e| corrupt(format!("header JSON: {e}")))?;
        let p = u64::from_le_bytes(body[hend..hend + 8].try_into().unwrap()) as usize;
        let data = &body[hend + 8..];
        if data.len() != 12 * p {
            return Err(corrupt(format!("{} tensor bytes for {p} parameters (expected {})", data.len(), 12 * p)));
        }
        header.model.validate()?;
        let expected = header.model.num_params();
        if p != expected {
            return Err(corrupt(format!("{p} parameters but the stored config has {expected}")));
        }
        let read = |i: usize| -> Vec<f32> {
            data[i * 4 * p..(i + 1) * 4 * p].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
        };
        Ok(Checkpoint { header, params: read(0), m: read(1), v: read(2) })
    }
}
