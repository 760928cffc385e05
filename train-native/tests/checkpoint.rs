//! Checkpoint atomicity and corruption detection.

mod common;

use cria_train::checkpoint::Checkpoint;
use cria_train::fsutil::temp_path;
use cria_train::train::Trainer;
use cria_train::TrainError;

fn trained_checkpoints() -> (Checkpoint, Checkpoint) {
    let (_, ds) = common::synthetic_dataset("ckpt-data", 2, 300, 280);
    let mut tr = Trainer::new(common::micro_model(&ds), common::micro_train(10), ds).unwrap();
    tr.step().unwrap();
    let a = tr.checkpoint();
    tr.step().unwrap();
    (a, tr.checkpoint())
}

#[test]
fn interrupted_write_leaves_previous_checkpoint_loadable() {
    let dir = common::scratch("ckpt-atomic");
    let path = dir.join("checkpoint.bin");
    let (a, b) = trained_checkpoints();
    assert_ne!(a.params, b.params);
    a.save(&path).unwrap();
    let len = b.to_bytes().len();
    // Simulated crash half way through writing the next checkpoint.
    let err = b.save_interrupted_for_test(&path, len / 2).unwrap_err();
    assert!(matches!(err, TrainError::Io { .. }), "{err}");
    let tmp = temp_path(&path);
    assert_eq!(std::fs::metadata(&tmp).unwrap().len() as usize, len / 2, "partial temp file left behind as a crash would");
    // The previous checkpoint is intact...
    let loaded = Checkpoint::load(&path).unwrap();
    assert_eq!(loaded, a);
    // ...and the partial file is recognised as corrupt, not read as weights.
    let err = Checkpoint::load(&tmp).unwrap_err();
    println!("partial file: {err}");
    assert!(matches!(err, TrainError::CorruptCheckpoint { .. }), "{err}");
    // A later complete save replaces it.
    b.save(&path).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap(), b);
    assert!(!tmp.exists(), "temp file renamed into place");
}

#[test]
fn damaged_checkpoints_are_typed_errors() {
    let dir = common::scratch("ckpt-corrupt");
    let (a, _) = trained_checkpoints();
    let good = a.to_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() - 100].to_vec()),
        ("bit flip in weights", {
            let mut g = good.clone();
            let i = g.len() - 5000;
            g[i] ^= 0x10;
            g
        }),
        ("wrong magic", {
            let mut g = good.clone();
            g[0] = b'X';
            g
        }),
        ("empty", Vec::new()),
    ];
    for (name, bytes) in cases {
        let p = dir.join(format!("{}.bin", name.replace(' ', "_")));
        std::fs::write(&p, &bytes).unwrap();
        let err = Checkpoint::load(&p).unwrap_err();
        println!("{name}: {err}");
        assert!(matches!(err, TrainError::CorruptCheckpoint { .. }), "{name}: {err}");
        assert!(err.to_string().contains("hint"), "{name}: error carries a hint");
    }
    let mut g = good.clone();
    g[8] = 99; // format version
    let p = dir.join("version.bin");
    std::fs::write(&p, &g).unwrap();
    assert!(matches!(Checkpoint::load(&p).unwrap_err(), TrainError::CheckpointVersion { got: 99, .. }));
    assert!(matches!(Checkpoint::load(&dir.join("missing.bin")).unwrap_err(), TrainError::NoCheckpoint { .. }));
}
