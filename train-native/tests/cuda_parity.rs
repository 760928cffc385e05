//! Every CUDA kernel against its CPU twin in `cria_train::ops`, at awkward shapes, plus the
//! CPU-vs-CUDA loss curve of a short run. These need an NVIDIA GPU: they are `#[ignore]`d so a
//! plain `cargo test` reports them as ignored (never as passed). On a GPU machine run
//! `cargo test -p cria-train --test cuda_parity -- --include-ignored` (or the prebuilt test
//! binary with `--include-ignored`, as scripts/gpu-train-check.sh does); CRIA_REQUIRE_CUDA=1
//! turns a missing GPU into a failure instead of a skip message.
//!
//! Inputs are rounded to bf16 first, so the CPU reference sees exactly the device's inputs;
//! tolerances (by output dtype) then cover f32 summation order and the bf16 rounding of outputs.

use cria_train::cuda::device::{Gpu, Out};
use cria_train::cuda::libs::Library;
use cria_train::cuda::ops::{self as k, AttShape};
use cria_train::ops;
use cria_train::rng::Rng;
use half::bf16;

/// Max error relative to the reference's max magnitude, by output dtype.
const TOL_BF16: f32 = 1.6e-2; // 2 ulp of bf16 (8 bits of mantissa) plus summation order
const TOL_F32: f32 = 2e-4;

fn gpu() -> Option<Gpu> {
    let require = std::env::var("CRIA_REQUIRE_CUDA").is_ok_and(|v| v == "1");
    if !Library::Driver.present() {
        assert!(
            !require,
            "CRIA_REQUIRE_CUDA=1 but no CUDA driver: {}",
            Library::Driver.hint()
        );
        eprintln!("SKIPPED: no CUDA driver on this machine");
        return None;
    }
    match Gpu::new(0) {
        Ok(g) => Some(g),
        Err(e) if !require => {
            eprintln!("SKIPPED: {e}");
            None
        }
        Err(e) => panic!("CRIA_REQUIRE_CUDA=1: {e}"),
    }
}

fn seed() -> u64 {
    let s = std::env::var("CRIA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("seed {s} (rerun with CRIA_TEST_SEED={s})");
    s
}

/// bf16-representable random values ~ N(0, std).
fn randn(rng: &mut Rng, n: usize, std: f64) -> Vec<f32> {
    (0..n)
        .map(|_| bf16::from_f64(rng.normal() * std).to_f32())
        .collect()
}

fn bits(x: &[f32]) -> Vec<u16> {
    x.iter().map(|&v| bf16::from_f32(v).to_bits()).collect()
}

fn unbits(x: &[u16]) -> Vec<f32> {
    x.iter().map(|&b| bf16::from_bits(b).to_f32()).collect()
}

fn check(name: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    let (mut worst, mut max_err, mut sum_err) = (0, 0.0f32, 0.0f64);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = (g - w).abs();
        sum_err += e as f64;
        if e > max_err || e.is_nan() {
            (max_err, worst) = (e, i);
        }
    }
    let mean = sum_err / got.len() as f64;
    println!(
        "{name}: max abs err {max_err:.3e} (rel {:.3e}) mean {mean:.3e} worst index {worst}",
        max_err / scale
    );
    assert!(
        max_err <= tol * scale,
        "{name}: max abs err {max_err} > {tol} x {scale} at {worst}: got {} want {}",
        got[worst],
        want[worst]
    );
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn rms_norm_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng::new(seed());
    for (n, c) in [(1, 3), (17, 255), (33, 257), (5, 2048)] {
        let x = randn(&mut rng, n * c, 1.0);
        let w = randn(&mut rng, c, 1.0);
        let dy = randn(&mut rng, n * c, 1.0);
        let (mut y, mut r) = (vec![0.0; n * c], vec![0.0; n]);
        ops::rms_norm_forward(&mut y, &mut r, &x, &w, c, 1e-5);
        let (mut dx, mut dw) = (randn(&mut rng, n * c, 1.0), vec![0.5f32; c]);
        let (dx0, dw0) = (dx.clone(), dw.clone());
        ops::rms_norm_backward(&mut dx, &mut dw, &dy, &x, &w, &r, c);
        let (dxg, dwg, yg, rg) = (
            g.upload(&dx0).unwrap(),
            g.upload(&dw0).unwrap(),
            g.alloc::<u16>(n * c).unwrap(),
            g.alloc::<f32>(n).unwrap(),
        );
        let (xg, wg, dyg) = (
            g.upload(&x).unwrap(),
            g.upload(&bits(&w)).unwrap(),
            g.upload(&dy).unwrap(),
        );
        k::rms_norm_fwd(&g, yg.ptr(), rg.ptr(), xg.ptr(), wg.ptr(), n, c, 1e-5).unwrap();
        k::rms_norm_bwd(
            &g,
            dxg.ptr(),
            dwg.ptr(),
            dyg.ptr(),
            xg.ptr(),
            wg.ptr(),
            rg.ptr(),
            n,
            c,
        )
        .unwrap();
        check(
            &format!("rms_norm_fwd y N={n} C={c}"),
            &unbits(&g.download(&yg).unwrap()),
            &y,
            TOL_BF16,
        );
        check(
            &format!("rms_norm_fwd rstd N={n} C={c}"),
            &g.download(&rg).unwrap(),
            &r,
            TOL_F32,
        );
        check(
            &format!("rms_norm_bwd dx N={n} C={c}"),
            &g.download(&dxg).unwrap(),
            &dx,
            TOL_F32,
        );
        check(
            &format!("rms_norm_bwd dw N={n} C={c}"),
            &g.download(&dwg).unwrap(),
            &dw,
            TOL_F32,
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn rope_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng::new(seed());
    for (b, t, heads, d) in [(1, 1, 1, 2), (2, 17, 3, 48), (3, 65, 4, 64)] {
        let n = b * t;
        let (cos, sin) = ops::rope_tables::<f32>(t, d, 10000.0);
        let x = randn(&mut rng, n * heads * d, 1.0);
        let (cg, sg) = (g.upload(&cos).unwrap(), g.upload(&sin).unwrap());
        for inverse in [false, true] {
            let mut want = x.clone();
            if inverse {
                ops::rope_backward(&mut want, &cos, &sin, t, heads, d);
            } else {
                ops::rope_forward(&mut want, &cos, &sin, t, heads, d);
            }
            let xg = g.upload(&bits(&x)).unwrap();
            k::rope(&g, xg.ptr(), cg.ptr(), sg.ptr(), n, t, heads, d, inverse).unwrap();
            check(
                &format!("rope inverse={inverse} B={b} T={t} heads={heads} D={d}"),
                &unbits(&g.download(&xg).unwrap()),
                &want,
                TOL_BF16,
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn swiglu_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng::new(seed());
    for n in [1, 255, 4097] {
        let (gate, up, dout) = (
            randn(&mut rng, n, 2.0),
            randn(&mut rng, n, 1.0),
            randn(&mut rng, n, 1.0),
        );
        let mut y = vec![0.0; n];
        ops::swiglu_forward(&mut y, &gate, &up);
        let (mut dg, mut du) = (vec![0.0; n], vec![0.0; n]);
        ops::swiglu_backward(&mut dg, &mut du, &dout, &gate, &up);
        let (gg, ug, dog) = (
            g.upload(&bits(&gate)).unwrap(),
            g.upload(&bits(&up)).unwrap(),
            g.upload(&bits(&dout)).unwrap(),
        );
        let (yg, dgg, dug) = (
            g.alloc::<u16>(n).unwrap(),
            g.alloc::<u16>(n).unwrap(),
            g.alloc::<u16>(n).unwrap(),
        );
        k::swiglu_fwd(&g, yg.ptr(), gg.ptr(), ug.ptr(), n).unwrap();
        k::swiglu_bwd(&g, dgg.ptr(), dug.ptr(), dog.ptr(), gg.ptr(), ug.ptr(), n).unwrap();
        check(
            &format!("swiglu_fwd n={n}"),
            &unbits(&g.download(&yg).unwrap()),
            &y,
            TOL_BF16,
        );
        check(
            &format!("swiglu_bwd dgate n={n}"),
            &unbits(&g.download(&dgg).unwrap()),
            &dg,
            TOL_BF16,
        );
        check(
            &format!("swiglu_bwd dup n={n}"),
            &unbits(&g.download(&dug).unwrap()),
            &du,
            TOL_BF16,
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn softmax_cross_entropy_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng::new(seed());
    for (n, v) in [(1, 3), (7, 1000), (5, 32000), (3, 50257)] {
        let logits = randn(&mut rng, n * v, 3.0);
        let targets: Vec<u32> = (0..n).map(|_| rng.below(v as u64) as u32).collect();
        let dscale = 1.0 / n as f32;
        let (mut losses, mut dl) = (vec![0.0; n], vec![0.0; n * v]);
        ops::softmax_cross_entropy_fused(&mut losses, &mut dl, &logits, &targets, v, dscale);
        let (lg, tg, lsg) = (
            g.upload(&bits(&logits)).unwrap(),
            g.upload(&targets).unwrap(),
            g.alloc::<f32>(n).unwrap(),
        );
        k::softmax_xent(&g, lsg.ptr(), lg.ptr(), tg.ptr(), n, v, dscale, true).unwrap();
        check(
            &format!("softmax_xent losses N={n} V={v}"),
            &g.download(&lsg).unwrap(),
            &losses,
            TOL_F32,
        );
        check(
            &format!("softmax_xent dlogits N={n} V={v}"),
            &unbits(&g.download(&lg).unwrap()),
            &dl,
            TOL_BF16,
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn embedding_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng::new(seed());
    let (v, c, n) = (37, 255, 101); // n > v: repeated tokens exercise the atomic accumulation
    let table = randn(&mut rng, v * c, 1.0);
    let tokens: Vec<u32> = (0..n).map(|_| rng.below(v as u64) as u32).collect();
    let dout = randn(&mut rng, n * c, 1.0);
    let mut out = vec![0.0; n * c];
    ops::embedding_forward(&mut out, &tokens, &table, c);
    let mut dt = vec![0.0; v * c];
    ops::embedding_backward(&mut dt, &dout, &tokens, c);
    let (tg, tok, og, dog, dtg) = (
        g.upload(&bits(&table)).unwrap(),
        g.upload(&tokens).unwrap(),
        g.alloc::<f32>(n * c).unwrap(),
        g.upload(&dout).unwrap(),
        g.alloc::<f32>(v * c).unwrap(),
    );
    k::embedding_fwd(&g, og.ptr(), tok.ptr(), tg.ptr(), n, c).unwrap();
    k::embedding_bwd(&g, dtg.ptr(), dog.ptr(), tok.ptr(), n, c).unwrap();
    check("embedding_fwd", &g.download(&og).unwrap(), &out, 0.0);
    check("embedding_bwd", &g.download(&dtg).unwrap(), &dt, TOL_F32);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn attention_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng::new(seed());
    for (b, t, h, kvh, d) in [
        (1, 1, 1, 1, 2),
        (2, 37, 4, 2, 48),
        (1, 65, 6, 6, 64),
        (2, 33, 8, 2, 128),
    ] {
        let s = AttShape { b, t, h, kvh, d };
        let (qc, kc) = (h * d, kvh * d);
        let (q, kk, vv, dout) = (
            randn(&mut rng, b * t * qc, 1.0),
            randn(&mut rng, b * t * kc, 1.0),
            randn(&mut rng, b * t * kc, 1.0),
            randn(&mut rng, b * t * qc, 1.0),
        );
        let (mut out, mut att) = (vec![0.0; b * t * qc], vec![0.0; b * h * t * t]);
        ops::attention_forward(&mut out, &mut att, &q, &kk, &vv, b, t, h, kvh, d);
        let (mut dq, mut dk, mut dv) = (
            vec![0.0; b * t * qc],
            vec![0.0; b * t * kc],
            vec![0.0; b * t * kc],
        );
        ops::attention_backward(
            &mut dq, &mut dk, &mut dv, &dout, &att, &q, &kk, &vv, b, t, h, kvh, d,
        );
        let (qg, kg, vg, dog) = (
            g.upload(&bits(&q)).unwrap(),
            g.upload(&bits(&kk)).unwrap(),
            g.upload(&bits(&vv)).unwrap(),
            g.upload(&bits(&dout)).unwrap(),
        );
        let (og, lse, delta) = (
            g.alloc::<u16>(b * t * qc).unwrap(),
            g.alloc::<f32>(b * h * t).unwrap(),
            g.alloc::<f32>(b * h * t).unwrap(),
        );
        let (dqg, dkg, dvg) = (
            g.alloc::<u16>(b * t * qc).unwrap(),
            g.alloc::<u16>(b * t * kc).unwrap(),
            g.alloc::<u16>(b * t * kc).unwrap(),
        );
        k::attention_fwd(&g, og.ptr(), lse.ptr(), qg.ptr(), kg.ptr(), vg.ptr(), s).unwrap();
        // The backward reads the device's own (bf16) forward output, as in training.
        k::attention_bwd(
            &g,
            dqg.ptr(),
            dkg.ptr(),
            dvg.ptr(),
            delta.ptr(),
            dog.ptr(),
            og.ptr(),
            lse.ptr(),
            qg.ptr(),
            kg.ptr(),
            vg.ptr(),
            s,
        )
        .unwrap();
        let tag = format!("B={b} T={t} H={h} KVH={kvh} D={d}");
        check(
            &format!("attention_fwd out {tag}"),
            &unbits(&g.download(&og).unwrap()),
            &out,
            TOL_BF16,
        );
        check(
            &format!("attention_bwd dq {tag}"),
            &unbits(&g.download(&dqg).unwrap()),
            &dq,
            2.0 * TOL_BF16,
        );
        check(
            &format!("attention_bwd dk {tag}"),
            &unbits(&g.download(&dkg).unwrap()),
            &dk,
            2.0 * TOL_BF16,
        );
        check(
            &format!("attention_bwd dv {tag}"),
            &unbits(&g.download(&dvg).unwrap()),
            &dv,
            TOL_BF16,
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn adamw_and_grad_norm_match_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng::new(seed());
    let n = 10_007;
    let (p, gr, m, v) = (
        randn(&mut rng, n, 1.0),
        randn(&mut rng, n, 0.1),
        randn(&mut rng, n, 0.01),
        randn(&mut rng, n, 0.01)
            .iter()
            .map(|x| x.abs())
            .collect::<Vec<_>>(),
    );
    let h = ops::AdamWParams {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
        t: 7,
    };
    // Ranges [100, 300) and [5000, 5001) without decay, like norm weights.
    let (mut pw, mut mw, mut vw) = (p.clone(), m.clone(), v.clone());
    for (r, decay) in [
        (0..100, true),
        (100..300, false),
        (300..5000, true),
        (5000..5001, false),
        (5001..n, true),
    ] {
        ops::adamw_step(
            &mut pw[r.clone()],
            &gr[r.clone()],
            &mut mw[r.clone()],
            &mut vw[r],
            h,
            decay,
        );
    }
    let (pg, pb, gg, mg, vg) = (
        g.upload(&p).unwrap(),
        g.alloc::<u16>(n).unwrap(),
        g.upload(&gr).unwrap(),
        g.upload(&m).unwrap(),
        g.upload(&v).unwrap(),
    );
    let nd = g.upload(&[100i64, 300, 5000, 5001]).unwrap();
    k::adamw(
        &g,
        pg.ptr(),
        pb.ptr(),
        gg.ptr(),
        mg.ptr(),
        vg.ptr(),
        n,
        nd.ptr(),
        2,
        h,
        1.0,
    )
    .unwrap();
    check("adamw params", &g.download(&pg).unwrap(), &pw, 1e-6);
    check("adamw m", &g.download(&mg).unwrap(), &mw, 1e-6);
    check("adamw v", &g.download(&vg).unwrap(), &vw, 1e-6);
    check(
        "adamw bf16 copy",
        &unbits(&g.download(&pb).unwrap()),
        &pw,
        TOL_BF16,
    );
    let partial = g.alloc::<f32>(k::SUMSQ_BLOCKS).unwrap();
    let norm = k::sum_squares(&g, &partial, gg.ptr(), n).unwrap();
    let want: f64 = gr.iter().map(|&x| (x as f64) * (x as f64)).sum();
    assert!(
        (norm - want).abs() < 1e-5 * want,
        "sum of squares {norm} vs {want}"
    );
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cublaslt_gemms_match_cpu() {
    let Some(mut g) = gpu() else { return };
    let mut rng = Rng::new(seed());
    for (nr, ic, oc) in [(1, 3, 5), (17, 255, 257), (130, 64, 2000)] {
        let (x, w, dy) = (
            randn(&mut rng, nr * ic, 1.0),
            randn(&mut rng, oc * ic, 1.0),
            randn(&mut rng, nr * oc, 1.0),
        );
        let mut y = vec![0.0; nr * oc];
        ops::matmul_forward(&mut y, &x, &w, nr, ic, oc);
        let (mut dx, mut dw) = (vec![0.0; nr * ic], vec![0.25f32; oc * ic]);
        ops::matmul_backward(&mut dx, &mut dw, &dy, &x, &w, nr, ic, oc);
        let (xg, wg, dyg) = (
            g.upload(&bits(&x)).unwrap(),
            g.upload(&bits(&w)).unwrap(),
            g.upload(&bits(&dy)).unwrap(),
        );
        let (yg, dxg, dwg) = (
            g.alloc::<u16>(nr * oc).unwrap(),
            g.alloc::<f32>(nr * ic).unwrap(),
            g.upload(&vec![0.25f32; oc * ic]).unwrap(),
        );
        g.gemm(
            yg.ptr(),
            Out::Bf16,
            0.0,
            xg.ptr(),
            false,
            wg.ptr(),
            true,
            nr,
            oc,
            ic,
        )
        .unwrap();
        g.gemm(
            dxg.ptr(),
            Out::F32,
            0.0,
            dyg.ptr(),
            false,
            wg.ptr(),
            false,
            nr,
            ic,
            oc,
        )
        .unwrap();
        g.gemm(
            dwg.ptr(),
            Out::F32,
            1.0,
            dyg.ptr(),
            true,
            xg.ptr(),
            false,
            oc,
            ic,
            nr,
        )
        .unwrap();
        let tag = format!("N={nr} IC={ic} OC={oc}");
        check(
            &format!("gemm forward {tag}"),
            &unbits(&g.download(&yg).unwrap()),
            &y,
            TOL_BF16,
        );
        check(
            &format!("gemm dinp {tag}"),
            &g.download(&dxg).unwrap(),
            &dx,
            TOL_F32,
        );
        check(
            &format!("gemm dweight (+=) {tag}"),
            &g.download(&dwg).unwrap(),
            &dw,
            TOL_F32,
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cpu_and_cuda_loss_curves_agree() {
    if gpu().is_none() {
        return;
    }
    use cria_train::cuda::CudaTrainer;
    use cria_train::data::Dataset;
    use cria_train::train::Trainer;
    use cria_train::{LlamaConfig, TrainConfig};
    // Same data, seed, init and batch stream; 30 steps of a small model.
    let data = Dataset::synthetic(512, 200_000, 20_000, 5).unwrap();
    let model = LlamaConfig {
        vocab_size: 512,
        hidden_size: 128,
        intermediate_size: 352,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        max_position_embeddings: 128,
        tie_word_embeddings: true,
        bos_token_id: 1,
        eos_token_id: 2,
    };
    let train = TrainConfig {
        batch_size: 8,
        seq_len: 128,
        steps: 30,
        lr: 3e-3,
        warmup_steps: 5,
        ..TrainConfig::default()
    };
    let mut cpu = Trainer::new(model.clone(), train.clone(), data.clone()).unwrap();
    let mut gpu = CudaTrainer::new(model, train, data, None).unwrap();
    let mut worst = 0.0f32;
    for step in 1..=30 {
        let (a, b) = (cpu.step().unwrap(), gpu.step().unwrap());
        let rel = (a.loss - b.loss).abs() / a.loss;
        worst = worst.max(rel);
        println!(
            "step {step}: cpu loss {:.5} |g| {:.4}  cuda loss {:.5} |g| {:.4}  rel diff {rel:.2e}",
            a.loss, a.grad_norm, b.loss, b.grad_norm
        );
        // bf16 activations and weights: about 2^-8 relative per rounding, a few roundings deep.
        assert!(
            rel < 2e-2,
            "step {step}: losses diverge: cpu {} cuda {}",
            a.loss,
            b.loss
        );
    }
    let (vc, vg) = (cpu.val_loss(), gpu.val_loss().unwrap());
    println!("val loss cpu {vc:.5} cuda {vg:.5}; worst step rel diff {worst:.2e}");
    assert!((vc - vg).abs() / vc < 2e-2);
}
