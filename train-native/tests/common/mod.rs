//! Helpers shared by the trainer's integration tests.
#![allow(dead_code)]

use cria_train::data::{self, Dataset, PrepareOptions};
use cria_train::rng::Rng;
use cria_train::{LlamaConfig, TrainConfig};
use std::path::{Path, PathBuf};

/// A fresh empty folder under the target dir (kept after the run for inspection). Unique per
/// call, since tests in one binary run in parallel and may ask for the same name.
pub fn scratch(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cria-train-tests").join(format!("{name}-{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Synthetic text with learnable structure: sentences from a small grammar over a fixed word
/// list, so tests need no corpus download.
pub fn synthetic_text(seed: u64, sentences: usize) -> String {
    const SUBJ: [&str; 6] = ["the king", "a fool", "my lord", "the queen", "this knave", "good sir"];
    const VERB: [&str; 5] = ["speaks of", "loves", "fears", "calls for", "remembers"];
    const OBJ: [&str; 6] = ["the crown", "his horse", "sweet night", "the sea", "a letter", "old Rome"];
    let mut rng = Rng::new(seed);
    let mut s = String::new();
    for i in 0..sentences {
        let pick = |rng: &mut Rng, xs: &[&'static str]| xs[rng.below(xs.len() as u64) as usize];
        s.push_str(pick(&mut rng, &SUBJ));
        s.push(' ');
        s.push_str(pick(&mut rng, &VERB));
        s.push(' ');
        s.push_str(pick(&mut rng, &OBJ));
        s.push_str(if i % 4 == 3 { ".\n" } else { ", " });
    }
    s
}

/// Prepare a data folder from synthetic documents with a small BPE vocabulary.
pub fn synthetic_dataset(name: &str, docs: usize, sentences: usize, vocab: usize) -> (PathBuf, Dataset) {
    let dir = scratch(name);
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    for d in 0..docs {
        std::fs::write(corpus.join(format!("doc{d:02}.txt")), synthetic_text(100 + d as u64, sentences)).unwrap();
    }
    let out = dir.join("data");
    data::prepare(&PrepareOptions { corpus, vocab_size: Some(vocab), tokenizer: None, out: out.clone(), val_fraction: 0.1 }).unwrap();
    let ds = Dataset::load(&out).unwrap();
    (dir, ds)
}

pub fn micro_model(ds: &Dataset) -> LlamaConfig {
    LlamaConfig {
        vocab_size: ds.vocab_size,
        hidden_size: 32,
        intermediate_size: 48,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        max_position_embeddings: 64,
        tie_word_embeddings: false,
        bos_token_id: ds.bos_token_id,
        eos_token_id: ds.eos_token_id,
    }
}

pub fn micro_train(steps: u64) -> TrainConfig {
    TrainConfig {
        batch_size: 4,
        seq_len: 32,
        grad_accum: 2,
        steps,
        lr: 3e-3,
        warmup_steps: 5,
        val_every: 10,
        val_batches: 2,
        checkpoint_every: 10,
        ..TrainConfig::default()
    }
}
