//! Corpus → tokenizer + token shards (`cria-train prepare`), and loading them back.
//!
//! A data directory holds `tokenizer.json`, `train.bin`, `val.bin` and `meta.json`. Shards are
//! a 32-byte header (magic `CRIATOK1`, version, bytes per token 2 or 4, token count) and
//! little-endian ids. Each document becomes `<s> text </s>`; its last `val_fraction` of tokens
//! go to validation, so every play is represented in both splits.

use crate::error::{Result, TrainError};
use crate::tokenizer::{self, Tok};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const SHARD_MAGIC: &[u8; 8] = b"CRIATOK1";
const SHARD_VERSION: u32 = 1;

pub struct PrepareOptions {
    /// A .txt file or a folder of .txt files (read in sorted order).
    pub corpus: PathBuf,
    /// Train a byte-level BPE with this many entries...
    pub vocab_size: Option<usize>,
    /// ...or reuse this tokenizer.json.
    pub tokenizer: Option<PathBuf>,
    pub out: PathBuf,
    pub val_fraction: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataMeta {
    pub documents: usize,
    pub bytes: usize,
    pub vocab_size: usize,
    pub train_tokens: usize,
    pub val_tokens: usize,
    pub val_fraction: f64,
    pub bos_token_id: u32,
    pub eos_token_id: u32,
}

/// Read the corpus: every *.txt under `path` (or `path` itself), checked for UTF-8 and emptiness.
pub fn read_corpus(path: &Path) -> Result<Vec<(PathBuf, String)>> {
    let meta = std::fs::metadata(path).map_err(TrainError::io("read corpus", path))?;
    let files = if meta.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(TrainError::io("list corpus folder", path))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "txt") && p.is_file())
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Err(TrainError::NoCorpusFiles { path: path.to_path_buf() });
    }
    let mut docs = Vec::with_capacity(files.len());
    for f in files {
        let bytes = std::fs::read(&f).map_err(TrainError::io("read corpus file", &f))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| TrainError::CorpusNotUtf8 { path: f.clone(), offset: e.utf8_error().valid_up_to() })?;
        if text.trim().is_empty() {
            return Err(TrainError::EmptyCorpus { path: f });
        }
        docs.push((f, text));
    }
    Ok(docs)
}

/// `cria-train prepare`: tokenizer (trained or reused) + train/val shards in `opts.out`.
pub fn prepare(opts: &PrepareOptions) -> Result<DataMeta> {
    if !(0.0..0.5).contains(&opts.val_fraction) || opts.val_fraction == 0.0 {
        return Err(TrainError::config("val_fraction", opts.val_fraction, "must be in (0, 0.5)"));
    }
    let docs = read_corpus(&opts.corpus)?;
    let texts: Vec<String> = docs.into_iter().map(|(_, t)| t).collect();
    let tokenizer_json = match (&opts.tokenizer, opts.vocab_size) {
        (Some(p), _) => std::fs::read_to_string(p).map_err(TrainError::io("read tokenizer", p))?,
        (None, Some(v)) => tokenizer::train_bpe(&texts, v)?,
        (None, None) => {
            return Err(TrainError::config("tokenizer", "none", "pass --tokenizer-vocab N or --tokenizer FILE"));
        }
    };
    let tok = Tok::from_json(&tokenizer_json)?;
    let encoded = tok.encode_batch(&texts)?;
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for ids in encoded {
        let mut doc = Vec::with_capacity(ids.len() + 2);
        doc.push(tok.bos);
        doc.extend_from_slice(&ids);
        doc.push(tok.eos);
        let cut = ((doc.len() as f64) * (1.0 - opts.val_fraction)).round() as usize;
        train.extend_from_slice(&doc[..cut]);
        val.extend_from_slice(&doc[cut..]);
    }
    let vocab_size = tok.vocab_size();
    std::fs::create_dir_all(&opts.out).map_err(TrainError::io("create data folder", &opts.out))?;
    crate::fsutil::write_atomic(&opts.out.join("tokenizer.json"), tokenizer_json.as_bytes())?;
    write_tokens(&opts.out.join("train.bin"), &train, vocab_size)?;
    write_tokens(&opts.out.join("val.bin"), &val, vocab_size)?;
    let meta = DataMeta {
        documents: texts.len(),
        bytes: texts.iter().map(|t| t.len()).sum(),
        vocab_size,
        train_tokens: train.len(),
        val_tokens: val.len(),
        val_fraction: opts.val_fraction,
        bos_token_id: tok.bos,
        eos_token_id: tok.eos,
    };
    let meta_json = serde_json::to_string_pretty(&meta).expect("meta serializes");
    crate::fsutil::write_atomic(&opts.out.join("meta.json"), meta_json.as_bytes())?;
    Ok(meta)
}

pub fn write_tokens(path: &Path, tokens: &[u32], vocab_size: usize) -> Result<()> {
    let width: u32 = if vocab_size <= 1 << 16 { 2 } else { 4 };
    let mut buf = Vec::with_capacity(32 + tokens.len() * width as usize);
    buf.extend_from_slice(SHARD_MAGIC);
    buf.extend_from_slice(&SHARD_VERSION.to_le_bytes());
    buf.extend_from_slice(&width.to_le_bytes());
    buf.extend_from_slice(&(tokens.len() as u64).to_le_bytes());
    buf.extend_from_slice(&[0u8; 8]);
    for &t in tokens {
        if width == 2 {
            buf.extend_from_slice(&(t as u16).to_le_bytes());
        } else {
            buf.extend_from_slice(&t.to_le_bytes());
        }
    }
    crate::fsutil::write_atomic(path, &buf)
}

pub fn read_tokens(path: &Path) -> Result<Vec<u32>> {
    let bytes = std::fs::read(path).map_err(TrainError::io("read token shard", path))?;
    let bad = |reason: String| TrainError::BadTokenData { path: path.to_path_buf(), reason };
    if bytes.len() < 32 || &bytes[..8] != SHARD_MAGIC {
        return Err(bad("missing CRIATOK1 header".into()));
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let (version, width) = (u32_at(8), u32_at(12) as usize);
    let count = u64::from_le_bytes(bytes[16..24].try_into().unwrap()) as usize;
    if version != SHARD_VERSION {
        return Err(bad(format!("shard version {version}, expected {SHARD_VERSION}")));
    }
    if width != 2 && width != 4 {
        return Err(bad(format!("token width {width} bytes, expected 2 or 4")));
    }
    let body = &bytes[32..];
    if body.len() != count * width {
        return Err(bad(format!("{} payload bytes for {count} tokens of {width} bytes (truncated?)", body.len())));
    }
    Ok(if width == 2 {
        body.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32).collect()
    } else {
        body.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect()
    })
}

/// Token ids and tokenizer for training.
#[derive(Clone)]
pub struct Dataset {
    pub train: Vec<u32>,
    pub val: Vec<u32>,
    pub tokenizer_json: String,
    pub vocab_size: usize,
    pub bos_token_id: u32,
    pub eos_token_id: u32,
}

impl Dataset {
    /// Load a folder written by [`prepare`].
    pub fn load(dir: &Path) -> Result<Self> {
        let tj = dir.join("tokenizer.json");
        let tokenizer_json = std::fs::read_to_string(&tj).map_err(TrainError::io("read tokenizer", &tj))?;
        let tok = Tok::from_json(&tokenizer_json)?;
        let ds = Dataset {
            train: read_tokens(&dir.join("train.bin"))?,
            val: read_tokens(&dir.join("val.bin"))?,
            vocab_size: tok.vocab_size(),
            bos_token_id: tok.bos,
            eos_token_id: tok.eos,
            tokenizer_json,
        };
        for (name, toks) in [("train.bin", &ds.train), ("val.bin", &ds.val)] {
            if let Some((pos, &id)) = toks.iter().enumerate().find(|(_, t)| **t as usize >= ds.vocab_size) {
                let _ = name;
                return Err(TrainError::TokenOutOfRange { id, pos, vocab_size: ds.vocab_size });
            }
        }
        Ok(ds)
    }

    /// Uniformly random tokens over `vocab_size` ids (seeded): real shapes for throughput runs
    /// without a corpus. There is no tokenizer; the checkpoint records that in its place.
    pub fn synthetic(vocab_size: usize, train_tokens: usize, val_tokens: usize, seed: u64) -> Result<Self> {
        if vocab_size < 3 {
            return Err(TrainError::config("synthetic_vocab", vocab_size, "must be at least 3 (bos, eos and one more id)"));
        }
        let mut rng = crate::rng::Rng::new(seed ^ 0x5157_7E71_C0DA_7A00);
        let mut draw = |n: usize| (0..n).map(|_| rng.below(vocab_size as u64) as u32).collect::<Vec<u32>>();
        Ok(Dataset {
            train: draw(train_tokens),
            val: draw(val_tokens),
            tokenizer_json: format!("{{\"synthetic\": {{\"vocab_size\": {vocab_size}}}}}"),
            vocab_size,
            bos_token_id: 1,
            eos_token_id: 2,
        })
    }

    /// Check the splits are large enough for (batch_size, seq_len) and fit the model's vocab.
    pub fn check_fits(&self, batch_size: usize, seq_len: usize, vocab_size: usize) -> Result<()> {
        let needed = batch_size * seq_len + 1;
        for (split, toks) in [("train", &self.train), ("validation", &self.val)] {
            if toks.len() < needed {
                return Err(TrainError::CorpusTooSmall { split, got: toks.len(), needed, batch_size, seq_len });
            }
            if let Some((pos, &id)) = toks.iter().enumerate().find(|(_, t)| **t as usize >= vocab_size) {
                return Err(TrainError::TokenOutOfRange { id, pos, vocab_size });
            }
        }
        Ok(())
    }
}
