//! Resume exactness: training N steps, stopping at N/2 (checkpoint written and read back from
//! disk) and resuming must give the same loss sequence and the same final weights, bit for bit.
//! This holds because every reduction has a fixed order and the checkpoint stores the AdamW
//! moments, the step and the batch sampler's RNG state.

mod common;

use cria_train::checkpoint::Checkpoint;
use cria_train::train::{self, checkpoint_path, RunOptions};

#[test]
fn resumed_run_equals_uninterrupted_run_bit_for_bit() {
    let (dir, ds) = common::synthetic_dataset("resume", 3, 600, 300);
    let (mcfg, tcfg) = (common::micro_model(&ds), common::micro_train(24));
    let full_dir = dir.join("full");
    let full = train::run(ds.clone(), mcfg.clone(), tcfg.clone(), &RunOptions { run_dir: full_dir.clone(), resume: false, max_steps_this_run: None }, &mut |_| {}).unwrap();
    assert_eq!(full.losses.len(), 24);

    let split_dir = dir.join("split");
    // Stop after 13 steps: not a multiple of checkpoint_every, so the stop itself must checkpoint.
    let first = train::run(ds.clone(), mcfg.clone(), tcfg.clone(), &RunOptions { run_dir: split_dir.clone(), resume: false, max_steps_this_run: Some(13) }, &mut |_| {}).unwrap();
    assert_eq!(first.step, 13);
    assert_eq!(Checkpoint::load(&checkpoint_path(&split_dir)).unwrap().header.step, 13);
    // The model/train configs passed on resume are ignored in favour of the checkpoint's.
    let second = train::run(ds, mcfg, tcfg, &RunOptions { run_dir: split_dir.clone(), resume: true, max_steps_this_run: None }, &mut |_| {}).unwrap();
    let resumed: Vec<f32> = first.losses.iter().chain(&second.losses).copied().collect();
    println!("uninterrupted: {:?}", full.losses);
    println!("resumed:       {resumed:?}");
    let same = full.losses.iter().zip(&resumed).all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(same && full.losses.len() == resumed.len(), "loss sequences differ after resume");
    assert_eq!(full.final_val_loss.map(f32::to_bits), second.final_val_loss.map(f32::to_bits));

    let a = Checkpoint::load(&checkpoint_path(&full_dir)).unwrap();
    let b = Checkpoint::load(&checkpoint_path(&split_dir)).unwrap();
    assert_eq!(a.header, b.header);
    assert!(a.params.iter().zip(&b.params).all(|(x, y)| x.to_bits() == y.to_bits()), "final weights differ");
    assert!(a.m.iter().zip(&b.m).all(|(x, y)| x.to_bits() == y.to_bits()), "AdamW m differs");
    assert!(a.v.iter().zip(&b.v).all(|(x, y)| x.to_bits() == y.to_bits()), "AdamW v differs");
    // metrics.jsonl of the resumed run has every step once.
    let metrics = std::fs::read_to_string(split_dir.join("metrics.jsonl")).unwrap();
    let steps = metrics.lines().filter(|l| l.contains("\"grad_norm\"")).count();
    assert_eq!(steps, 24);
}
