//! Bad input gives typed errors with hints, and never costs the last checkpoint.

mod common;

use cria_train::checkpoint::Checkpoint;
use cria_train::data::{self, PrepareOptions};
use cria_train::train::Trainer;
use cria_train::TrainError;
use std::path::Path;

fn prepare(corpus: &Path, out: &Path) -> Result<data::DataMeta, TrainError> {
    data::prepare(&PrepareOptions { corpus: corpus.to_path_buf(), vocab_size: Some(300), tokenizer: None, out: out.to_path_buf(), val_fraction: 0.1 })
}

#[test]
fn empty_and_non_utf8_corpora_are_rejected() {
    let dir = common::scratch("bad-corpus");
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let err = prepare(&empty, &dir.join("out1")).unwrap_err();
    println!("{err}");
    assert!(matches!(err, TrainError::EmptyCorpus { .. }));

    let latin1 = dir.join("latin1.txt");
    std::fs::write(&latin1, b"Fair Verona, where we lay our sc\xe8ne").unwrap();
    let err = prepare(&latin1, &dir.join("out2")).unwrap_err();
    println!("{err}");
    assert!(matches!(err, TrainError::CorpusNotUtf8 { offset: 32, .. }), "{err}");
    assert!(err.to_string().contains("iconv"));

    let no_txt = dir.join("no_txt");
    std::fs::create_dir_all(&no_txt).unwrap();
    std::fs::write(no_txt.join("notes.md"), "not a corpus").unwrap();
    assert!(matches!(prepare(&no_txt, &dir.join("out3")).unwrap_err(), TrainError::NoCorpusFiles { .. }));
    assert!(matches!(prepare(&dir.join("missing"), &dir.join("out4")).unwrap_err(), TrainError::Io { .. }));
}

#[test]
fn corpus_smaller_than_one_batch_is_rejected() {
    let (_, ds) = common::synthetic_dataset("tiny-corpus", 1, 8, 280);
    let mut tcfg = common::micro_train(10);
    tcfg.batch_size = 64;
    let err = Trainer::new(common::micro_model(&ds), tcfg, ds).err().expect("must fail");
    println!("{err}");
    assert!(matches!(err, TrainError::CorpusTooSmall { split: "train", .. }), "{err}");
    assert!(err.to_string().contains("smaller --batch-size"));
}

#[test]
fn heads_not_dividing_hidden_size_is_rejected() {
    let (_, ds) = common::synthetic_dataset("bad-heads", 2, 300, 280);
    let mut m = common::micro_model(&ds);
    m.num_attention_heads = 5; // 32 % 5 != 0
    let err = Trainer::new(m.clone(), common::micro_train(10), ds.clone()).err().expect("must fail");
    println!("{err}");
    assert!(matches!(err, TrainError::InvalidConfig { field: "num_attention_heads", .. }), "{err}");
    assert!(err.to_string().contains("try num_attention_heads ="));
    m.num_attention_heads = 4;
    m.num_key_value_heads = 3;
    assert!(matches!(m.validate().unwrap_err(), TrainError::InvalidConfig { field: "num_key_value_heads", .. }));
}

#[test]
fn nan_loss_is_an_error_and_keeps_the_checkpoint() {
    let dir = common::scratch("nan-loss");
    let (_, ds) = common::synthetic_dataset("nan-data", 2, 300, 280);
    let mut tr = Trainer::new(common::micro_model(&ds), common::micro_train(10), ds).unwrap();
    tr.step().unwrap();
    let path = dir.join("checkpoint.bin");
    tr.checkpoint().save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    // Poison one weight, as an exploding update would.
    let r = tr.model.layout.layers[0].wq.clone();
    tr.model.params[r.start + 3] = f32::NAN;
    let params_before = tr.model.params.clone();
    let err = tr.step().unwrap_err();
    println!("{err}");
    assert!(matches!(err, TrainError::NonFiniteLoss { step: 1, .. }), "{err}");
    assert_eq!(tr.step, 1, "the failed step is not counted");
    assert!(tr.model.params.iter().zip(&params_before).all(|(a, b)| a.to_bits() == b.to_bits()), "no update applied");
    assert_eq!(std::fs::read(&path).unwrap(), before, "checkpoint untouched");
    assert!(Checkpoint::load(&path).unwrap().params.iter().all(|p| p.is_finite()));
}

#[test]
fn cli_reports_errors_with_exit_code_1() {
    let dir = common::scratch("cli-errors");
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "   \n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cria-train"))
        .args(["prepare", "--corpus"])
        .arg(&empty)
        .args(["--tokenizer-vocab", "300", "--out"])
        .arg(dir.join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stderr}");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("error: corpus") && stderr.contains("is empty"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cria-train"))
        .args(["train", "--data"])
        .arg(dir.join("nope"))
        .args(["--out"])
        .arg(dir.join("run"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: read tokenizer"));
}
