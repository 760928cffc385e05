//! Finite-difference checks of every op's backward in f64.
//!
//! For an op y = f(x), take L = sum(y * R) with a fixed random R; backward with dout = R must
//! equal central differences (L(x + h) - L(x - h)) / 2h. In f64 with h = 1e-5 the truncation
//! and rounding errors are ~1e-9 relative, so 1e-6 (relative to the largest gradient) separates
//! a correct backward from a wrong one by orders of magnitude.

use cria_train::ops::{self, Scalar};
use cria_train::rng::Rng;

const H: f64 = 1e-5;
const TOL: f64 = 1e-6;

fn randn(rng: &mut Rng, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| rng.normal() * scale).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Compare `analytic` with central differences of `loss` around `x`; panics with the worst index.
fn check(name: &str, seed: u64, x: &[f64], analytic: &[f64], loss: impl Fn(&[f64]) -> f64) {
    assert_eq!(x.len(), analytic.len(), "{name}: gradient length");
    let mut xp = x.to_vec();
    let (mut worst, mut worst_i, mut scale) = (0.0f64, 0, 1e-12f64);
    for i in 0..x.len() {
        let orig = xp[i];
        xp[i] = orig + H;
        let lp = loss(&xp);
        xp[i] = orig - H;
        let lm = loss(&xp);
        xp[i] = orig;
        let num = (lp - lm) / (2.0 * H);
        let err = (num - analytic[i]).abs();
        scale = scale.max(num.abs()).max(analytic[i].abs());
        if err > worst {
            worst = err;
            worst_i = i;
        }
    }
    let rel = worst / scale;
    println!("{name:<28} n={:<5} max|grad|={scale:.3e} max abs err={worst:.3e} rel={rel:.3e} (worst index {worst_i})", x.len());
    assert!(rel < TOL, "{name} (seed {seed}): FD mismatch rel {rel:.3e} >= {TOL:e} at index {worst_i}: analytic {} vs numeric", analytic[worst_i]);
    assert!(scale > 1e-6, "{name}: gradient is all ~zero; the check would prove nothing");
}

#[test]
fn matmul_backward_matches_finite_differences() {
    let seed = 11;
    let mut rng = Rng::new(seed);
    let (n, ic, oc) = (70, 5, 3); // n > 64 crosses the parallel row-chunk boundary
    let x = randn(&mut rng, n * ic, 1.0);
    let w = randn(&mut rng, oc * ic, 1.0);
    let r = randn(&mut rng, n * oc, 1.0);
    let f = |x: &[f64], w: &[f64]| {
        let mut y = vec![0.0; n * oc];
        ops::matmul_forward(&mut y, x, w, n, ic, oc);
        dot(&y, &r)
    };
    let (mut dx, mut dw) = (vec![0.0; n * ic], vec![0.0; oc * ic]);
    ops::matmul_backward(&mut dx, &mut dw, &r, &x, &w, n, ic, oc);
    check("matmul dinp", seed, &x, &dx, |x| f(x, &w));
    check("matmul dweight", seed, &w, &dw, |w| f(&x, w));
    // Accumulation semantics: a second backward adds the same amount.
    let dx1 = dx.clone();
    ops::matmul_backward(&mut dx, &mut dw, &r, &x, &w, n, ic, oc);
    for (a, b) in dx.iter().zip(&dx1) {
        assert!((a - 2.0 * b).abs() <= 1e-12 * b.abs().max(1.0));
    }
}

#[test]
fn matmul_wide_output_crosses_weight_chunks() {
    let seed = 12;
    let mut rng = Rng::new(seed);
    let (n, ic, oc) = (3, 4, 37); // oc > 16 crosses dweight's channel chunks
    let x = randn(&mut rng, n * ic, 1.0);
    let w = randn(&mut rng, oc * ic, 1.0);
    let r = randn(&mut rng, n * oc, 1.0);
    let f = |x: &[f64], w: &[f64]| {
        let mut y = vec![0.0; n * oc];
        ops::matmul_forward(&mut y, x, w, n, ic, oc);
        dot(&y, &r)
    };
    let (mut dx, mut dw) = (vec![0.0; n * ic], vec![0.0; oc * ic]);
    ops::matmul_backward(&mut dx, &mut dw, &r, &x, &w, n, ic, oc);
    check("matmul(wide) dinp", seed, &x, &dx, |x| f(x, &w));
    check("matmul(wide) dweight", seed, &w, &dw, |w| f(&x, w));
}

#[test]
fn rms_norm_backward_matches_finite_differences() {
    let seed = 21;
    let mut rng = Rng::new(seed);
    let (n, c, eps) = (3, 17, 1e-5);
    let x = randn(&mut rng, n * c, 1.0);
    let w: Vec<f64> = randn(&mut rng, c, 0.5).iter().map(|v| 1.0 + v).collect();
    let r = randn(&mut rng, n * c, 1.0);
    let f = |x: &[f64], w: &[f64]| {
        let (mut y, mut rs) = (vec![0.0; n * c], vec![0.0; n]);
        ops::rms_norm_forward(&mut y, &mut rs, x, w, c, eps);
        dot(&y, &r)
    };
    let (mut y, mut rs) = (vec![0.0; n * c], vec![0.0; n]);
    ops::rms_norm_forward(&mut y, &mut rs, &x, &w, c, eps);
    let (mut dx, mut dw) = (vec![0.0; n * c], vec![0.0; c]);
    ops::rms_norm_backward(&mut dx, &mut dw, &r, &x, &w, &rs, c);
    check("rms_norm dinp", seed, &x, &dx, |x| f(x, &w));
    check("rms_norm dweight", seed, &w, &dw, |w| f(&x, w));
}

#[test]
fn rope_backward_matches_finite_differences() {
    let seed = 31;
    let mut rng = Rng::new(seed);
    let (b, t, heads, d) = (2, 5, 3, 8);
    let (cos, sin) = ops::rope_tables::<f64>(t, d, 10000.0);
    let x = randn(&mut rng, b * t * heads * d, 1.0);
    let r = randn(&mut rng, x.len(), 1.0);
    let f = |x: &[f64]| {
        let mut y = x.to_vec();
        ops::rope_forward(&mut y, &cos, &sin, t, heads, d);
        dot(&y, &r)
    };
    let mut dx = r.clone();
    ops::rope_backward(&mut dx, &cos, &sin, t, heads, d);
    check("rope dinp", seed, &x, &dx, f);
}

#[test]
fn rope_matches_rotate_half_definition() {
    // HF: q * cos(emb) + rotate_half(q) * sin(emb), emb = cat(freqs, freqs). Position 3, D = 4.
    let (t, d, theta) = (4, 4, 10000.0);
    let (cos, sin) = ops::rope_tables::<f64>(t, d, theta);
    let mut x = vec![0.0; t * d];
    let q = [0.3, -1.2, 0.7, 2.0];
    x[3 * d..].copy_from_slice(&q);
    ops::rope_forward(&mut x, &cos, &sin, t, 1, d);
    let inv = [1.0f32, 1.0 / (theta as f32).powf(0.5)];
    let ang: Vec<f64> = inv.iter().map(|f| (3.0f32 * f) as f64).collect();
    let (c, s) = ([ang[0].cos(), ang[1].cos()], [ang[0].sin(), ang[1].sin()]);
    let rot = [-q[2], -q[3], q[0], q[1]];
    for i in 0..4 {
        let want = q[i] * c[i % 2] + rot[i] * s[i % 2];
        assert!((x[3 * d + i] - want).abs() < 1e-6, "rope[{i}] = {} want {want}", x[3 * d + i]);
    }
}

#[test]
fn swiglu_backward_matches_finite_differences() {
    let seed = 41;
    let mut rng = Rng::new(seed);
    let n = 4099; // crosses the 4096 parallel chunk
    let g = randn(&mut rng, n, 2.0);
    let u = randn(&mut rng, n, 1.0);
    let r = randn(&mut rng, n, 1.0);
    let f = |g: &[f64], u: &[f64]| {
        let mut y = vec![0.0; n];
        ops::swiglu_forward(&mut y, g, u);
        dot(&y, &r)
    };
    let (mut dg, mut du) = (vec![0.0; n], vec![0.0; n]);
    ops::swiglu_backward(&mut dg, &mut du, &r, &g, &u);
    check("swiglu dgate", seed, &g, &dg, |g| f(g, &u));
    check("swiglu dup", seed, &u, &du, |u| f(&g, u));
}

#[test]
fn attention_backward_matches_finite_differences_with_gqa() {
    for (seed, h, kvh) in [(51u64, 4usize, 2usize), (52, 3, 3), (53, 4, 1)] {
        let mut rng = Rng::new(seed);
        let (b, t, d) = (2, 5, 6);
        let q = randn(&mut rng, b * t * h * d, 1.0);
        let k = randn(&mut rng, b * t * kvh * d, 1.0);
        let v = randn(&mut rng, b * t * kvh * d, 1.0);
        let r = randn(&mut rng, b * t * h * d, 1.0);
        let f = |q: &[f64], k: &[f64], v: &[f64]| {
            let (mut o, mut att) = (vec![0.0; b * t * h * d], vec![0.0; b * h * t * t]);
            ops::attention_forward(&mut o, &mut att, q, k, v, b, t, h, kvh, d);
            dot(&o, &r)
        };
        let (mut o, mut att) = (vec![0.0; b * t * h * d], vec![0.0; b * h * t * t]);
        ops::attention_forward(&mut o, &mut att, &q, &k, &v, b, t, h, kvh, d);
        let (mut dq, mut dk, mut dv) = (vec![9.0; q.len()], vec![9.0; k.len()], vec![9.0; v.len()]);
        ops::attention_backward(&mut dq, &mut dk, &mut dv, &r, &att, &q, &k, &v, b, t, h, kvh, d);
        let tag = format!("attention H={h} KVH={kvh}");
        check(&format!("{tag} dq"), seed, &q, &dq, |q| f(q, &k, &v));
        check(&format!("{tag} dk"), seed, &k, &dk, |k| f(&q, k, &v));
        check(&format!("{tag} dv"), seed, &v, &dv, |v| f(&q, &k, v));
        // Causality: the first position's output depends only on position 0.
        let mut k2 = k.clone();
        k2[(t - 1) * kvh * d] += 1.0;
        let (mut o2, mut att2) = (vec![0.0; o.len()], vec![0.0; att.len()]);
        ops::attention_forward(&mut o2, &mut att2, &q, &k2, &v, b, t, h, kvh, d);
        assert_eq!(o[..h * d], o2[..h * d], "position 0 must not see a later key");
    }
}

#[test]
fn softmax_cross_entropy_matches_finite_differences() {
    let seed = 61;
    let mut rng = Rng::new(seed);
    let (n, v) = (4, 11);
    let logits = randn(&mut rng, n * v, 3.0);
    let targets: Vec<u32> = (0..n).map(|_| rng.below(v as u64) as u32).collect();
    let dscale = 1.0 / n as f64;
    let f = |lg: &[f64]| {
        let (mut l, mut d) = (vec![0.0; n], vec![0.0; n * v]);
        ops::softmax_cross_entropy_fused(&mut l, &mut d, lg, &targets, v, dscale);
        l.iter().sum::<f64>() * dscale
    };
    let (mut l, mut d) = (vec![0.0; n], vec![0.0; n * v]);
    ops::softmax_cross_entropy_fused(&mut l, &mut d, &logits, &targets, v, dscale);
    // Loss value against the textbook definition.
    for r in 0..n {
        let row = &logits[r * v..(r + 1) * v];
        let lse = row.iter().map(|x| x.exp()).sum::<f64>().ln();
        assert!((l[r] - (lse - row[targets[r] as usize])).abs() < 1e-12);
    }
    check("softmax_cross_entropy", seed, &logits, &d, f);
}

#[test]
fn embedding_backward_matches_finite_differences() {
    let seed = 71;
    let mut rng = Rng::new(seed);
    let (vocab, c) = (7, 5);
    let table = randn(&mut rng, vocab * c, 1.0);
    let tokens = [3u32, 1, 3, 6, 0, 3]; // repeats accumulate
    let r = randn(&mut rng, tokens.len() * c, 1.0);
    let f = |tb: &[f64]| {
        let mut y = vec![0.0; tokens.len() * c];
        ops::embedding_forward(&mut y, &tokens, tb, c);
        dot(&y, &r)
    };
    let mut dt = vec![0.0; vocab * c];
    ops::embedding_backward(&mut dt, &r, &tokens, c);
    check("embedding dtable", seed, &table, &dt, f);
}

#[test]
fn residual_forward_adds() {
    let mut out = vec![0.0f64; 3];
    ops::residual_forward(&mut out, &[1.0, 2.0, 3.0], &[0.5, -2.0, 1.0]);
    assert_eq!(out, vec![1.5, 0.0, 4.0]);
}

#[test]
fn adamw_step_matches_pytorch_formula() {
    // torch.optim.AdamW(lr=0.1, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1), two steps by hand.
    let h = |t| ops::AdamWParams { lr: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1, t };
    let (mut p, mut m, mut v) = (vec![1.0f32, -2.0], vec![0.0f32; 2], vec![0.0f32; 2]);
    let g = [0.5f32, -0.25];
    ops::adamw_step(&mut p, &g, &mut m, &mut v, h(1), true);
    ops::adamw_step(&mut p, &g, &mut m, &mut v, h(2), true);
    let mut want = [1.0f64, -2.0];
    let (mut mm, mut vv) = ([0.0f64; 2], [0.0f64; 2]);
    for t in 1..=2 {
        for i in 0..2 {
            let gi = g[i] as f64;
            want[i] -= 0.1 * 0.1 * want[i];
            mm[i] = 0.9 * mm[i] + 0.1 * gi;
            vv[i] = 0.95 * vv[i] + 0.05 * gi * gi;
            let mh = mm[i] / (1.0 - 0.9f64.powi(t));
            let vh = vv[i] / (1.0 - 0.95f64.powi(t));
            want[i] -= 0.1 * mh / (vh.sqrt() + 1e-8);
        }
    }
    for i in 0..2 {
        assert!((p[i] as f64 - want[i]).abs() < 1e-6, "p[{i}] = {} want {}", p[i], want[i]);
    }
    // No decay for norm weights.
    let (mut p2, mut m2, mut v2) = (vec![1.0f32], vec![0.0f32], vec![0.0f32]);
    ops::adamw_step(&mut p2, &[0.0], &mut m2, &mut v2, h(1), false);
    assert_eq!(p2[0], 1.0);
}

#[test]
fn scalar_from_f_roundtrips() {
    assert_eq!(<f32 as Scalar>::from_f(0.5), 0.5f32);
    assert_eq!(<f64 as Scalar>::from_f(0.1), 0.1f64);
}

#[test]
fn whole_model_backward_matches_finite_differences() {
    // The composition (residuals, tied lm_head, GQA, norms) checked end to end in f64 on a
    // sample of parameters from every tensor.
    use cria_train::model::{Activations, Model};
    let seed = 81;
    let cfg = cria_train::LlamaConfig {
        vocab_size: 13,
        hidden_size: 12,
        intermediate_size: 10,
        num_hidden_layers: 2,
        num_attention_heads: 3,
        num_key_value_heads: 1,
        rms_norm_eps: 1e-5,
        rope_theta: 100.0,
        max_position_embeddings: 8,
        tie_word_embeddings: true,
        bos_token_id: 0,
        eos_token_id: 1,
    };
    let mut model = Model::<f64>::init(cfg.clone(), seed);
    let mut rng = Rng::new(seed);
    for p in model.params.iter_mut() {
        *p += rng.normal() * 0.3; // away from the init's symmetric point
    }
    let (b, t) = (2, 5);
    let tokens: Vec<u32> = (0..b * t).map(|_| rng.below(13) as u32).collect();
    let targets: Vec<u32> = (0..b * t).map(|_| rng.below(13) as u32).collect();
    let dscale = 1.0 / (b * t) as f64;
    let mut acts = Activations::new(&cfg, b, t);
    model.forward(&mut acts, &tokens, Some((&targets, dscale)));
    let mut grads = vec![0.0; model.layout.total];
    model.backward(&mut acts, &mut grads);
    let specs = model.layout.tensors.clone();
    for spec in specs {
        let r = spec.range();
        let idx: Vec<usize> = (0..4).map(|_| r.start + rng.below(r.len() as u64) as usize).collect();
        let mut worst = 0.0f64;
        for &i in &idx {
            let orig = model.params[i];
            let mut loss_at = |x: f64| {
                model.params[i] = x;
                let l = model.forward(&mut acts, &tokens, Some((&targets, dscale))).unwrap();
                model.params[i] = orig;
                l
            };
            let num = (loss_at(orig + H) - loss_at(orig - H)) / (2.0 * H);
            let err = (num - grads[i]).abs() / grads[i].abs().max(num.abs()).max(1e-3);
            worst = worst.max(err);
        }
        println!("model {:<44} sampled rel err {worst:.2e}", spec.name);
        assert!(worst < TOL, "{} (seed {seed}): model FD rel err {worst:.3e}", spec.name);
    }
}
