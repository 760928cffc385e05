//! `prepare`: tokenizer training or reuse, shard format, document split.

mod common;

use cria_train::data::{self, read_tokens, Dataset, PrepareOptions};
use cria_train::tokenizer::Tok;
use cria_train::TrainError;

#[test]
fn reused_tokenizer_gives_identical_shards_and_documents_are_delimited() {
    let (dir, ds) = common::synthetic_dataset("prepare", 3, 300, 300);
    assert_eq!(ds.vocab_size, 300);
    assert_eq!((ds.bos_token_id, ds.eos_token_id), (0, 1));
    // Three documents: each contributes one <s> to train and one </s> to validation.
    assert_eq!(ds.train.iter().filter(|&&t| t == 0).count(), 3);
    assert_eq!(ds.val.iter().filter(|&&t| t == 1).count(), 3);
    assert_eq!(ds.train[0], 0);
    assert_eq!(*ds.val.last().unwrap(), 1);
    let frac = ds.val.len() as f64 / (ds.train.len() + ds.val.len()) as f64;
    assert!((frac - 0.1).abs() < 0.01, "validation fraction {frac}");

    let out2 = dir.join("data-reuse");
    data::prepare(&PrepareOptions {
        corpus: dir.join("corpus"),
        vocab_size: None,
        tokenizer: Some(dir.join("data/tokenizer.json")),
        out: out2.clone(),
        val_fraction: 0.1,
    })
    .unwrap();
    let ds2 = Dataset::load(&out2).unwrap();
    assert_eq!(ds2.train, ds.train);
    assert_eq!(ds2.val, ds.val);

    // Decoding a stretch of training tokens gives back corpus text (byte-level BPE is lossless).
    let tok = Tok::from_json(&ds.tokenizer_json).unwrap();
    let text = tok.decode(&ds.train[1..40]).unwrap();
    let corpus = std::fs::read_to_string(dir.join("corpus/doc00.txt")).unwrap();
    assert!(corpus.starts_with(&text), "{text:?}");
}

#[test]
fn damaged_shards_and_tokenizers_are_typed_errors() {
    let dir = common::scratch("bad-shards");
    let p = dir.join("t.bin");
    data::write_tokens(&p, &[5, 70000, 3], 100_000).unwrap();
    assert_eq!(read_tokens(&p).unwrap(), vec![5, 70000, 3], "u32 shards above 65536 entries");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.truncate(bytes.len() - 2);
    std::fs::write(&p, &bytes).unwrap();
    assert!(matches!(read_tokens(&p).unwrap_err(), TrainError::BadTokenData { .. }));
    std::fs::write(&p, b"garbage").unwrap();
    assert!(matches!(read_tokens(&p).unwrap_err(), TrainError::BadTokenData { .. }));

    let corpus = dir.join("c.txt");
    std::fs::write(&corpus, common::synthetic_text(1, 100)).unwrap();
    let tj = dir.join("tokenizer.json");
    std::fs::write(&tj, r#"{"version":"1.0","model":{"type":"BPE","vocab":{"a":0},"merges":[]}}"#).unwrap();
    let err = data::prepare(&PrepareOptions { corpus: corpus.clone(), vocab_size: None, tokenizer: Some(tj), out: dir.join("o"), val_fraction: 0.1 })
        .unwrap_err();
    println!("{err}");
    assert!(matches!(err, TrainError::Tokenizer { .. }), "{err}");
    let err = data::prepare(&PrepareOptions { corpus, vocab_size: Some(100), tokenizer: None, out: dir.join("o"), val_fraction: 0.1 }).unwrap_err();
    assert!(matches!(err, TrainError::InvalidConfig { field: "tokenizer_vocab", .. }), "{err}");
}
