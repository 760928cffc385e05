//! Optimizer-step mechanics: gradient accumulation and clipping.

mod common;

use cria_train::train::Trainer;

#[test]
fn grad_accumulation_equals_one_large_batch() {
    // accum 2 x batch 4 draws the same 8 windows, in the same order, as accum 1 x batch 8, so
    // the averaged gradient and the update must agree up to float summation order.
    let (_, ds) = common::synthetic_dataset("accum", 2, 400, 300);
    let m = common::micro_model(&ds);
    let mut a_cfg = common::micro_train(10);
    a_cfg.batch_size = 4;
    a_cfg.grad_accum = 2;
    a_cfg.grad_clip = 0.0;
    let b_cfg = cria_train::TrainConfig { batch_size: 8, grad_accum: 1, ..a_cfg.clone() };
    let mut a = Trainer::new(m.clone(), a_cfg, ds.clone()).unwrap();
    let mut b = Trainer::new(m, b_cfg, ds).unwrap();
    let (sa, sb) = (a.step().unwrap(), b.step().unwrap());
    println!("loss {} vs {}, |g| {} vs {}", sa.loss, sb.loss, sa.grad_norm, sb.grad_norm);
    assert!((sa.loss - sb.loss).abs() < 1e-5 * sb.loss);
    assert!((sa.grad_norm - sb.grad_norm).abs() < 1e-4 * sb.grad_norm);
    let gmax = b.grads().iter().fold(0.0f32, |m, g| m.max(g.abs()));
    let gerr = a.grads().iter().zip(b.grads()).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(gerr < 1e-4 * gmax, "accumulated gradient differs: {gerr} (max {gmax})");
}

#[test]
fn clipping_bounds_the_global_gradient_norm() {
    let (_, ds) = common::synthetic_dataset("clip", 2, 400, 300);
    let mut cfg = common::micro_train(10);
    cfg.grad_clip = 0.01;
    let mut tr = Trainer::new(common::micro_model(&ds), cfg, ds).unwrap();
    let s = tr.step().unwrap();
    let after = tr.grads().iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>().sqrt();
    println!("pre-clip |g| {} -> applied |g| {after}", s.grad_norm);
    assert!(s.grad_norm > 0.1, "the reported norm is the pre-clip norm");
    assert!((after - 0.01).abs() < 1e-5, "clipped to grad_clip: {after}");
}
