//! CPU matvec speed per weight type, as a ratio to the memory-read ceiling measured in the
//! same run (a multi-threaded sum over a buffer as large). Each type runs over enough copies of
//! the matrix (at least 256 MiB) that they come from memory, not the caches, as a model's
//! layers do in decode.
//!
//!   cargo run --release -p cria --example cpu_matvec [ROWS] [COLS] [THREADS] [TOKENS] [CASE...]
//!
//! A CASE names one weight type to time (`q4_k`, or `q4_k:int8` for 8-bit activations); the
//! default times every type.
//!
//! With TOKENS > 1 it times the multi-token product (prefill) instead and reports GFLOP/s.
//!
//! Default: 5632 x 2048, TinyLlama-1.1B's MLP up projection.

use cria::cpu::matvec::{matvec_into, Activations, Kernel};
use cria::cpu::{CpuMatrix, Pool};
use cria::ops::WeightDType;
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (rows, cols) = (args.first().copied().unwrap_or(5632), args.get(1).copied().unwrap_or(2048));
    let pool = match args.get(2) {
        Some(&t) => Pool::new(t),
        None => Pool::with_available_parallelism(),
    };
    let mut rng = cria::rng::Rng::new(1);
    let tokens = args.get(3).copied().unwrap_or(1);
    if tokens > 1 {
        return prefill(&pool, &mut rng, rows, cols, tokens);
    }
    println!("{rows} x {cols}, {} threads, kernel {}", pool.threads(), Kernel::best().name());
    println!("| weights | bytes | ms per matvec | GB/s | ceiling GB/s (same run) | ratio |");
    println!("|---|---|---|---|---|---|");
    let all = [("f32", Activations::F32), ("f16", Activations::F32), ("bf16", Activations::F32), ("q8_0", Activations::F32), ("q8_0", Activations::Int8), ("q4_0", Activations::F32), ("q4_0", Activations::Int8), ("q4_k", Activations::F32), ("q4_k", Activations::Int8), ("q6_k", Activations::F32), ("q6_k", Activations::Int8), ("q5_k", Activations::Int8), ("q3_k", Activations::Int8), ("iq4_xs", Activations::Int8)];
    let named: Vec<String> = std::env::args().skip(1).filter(|a| a.parse::<usize>().is_err()).collect();
    let cases: Vec<(&str, Activations)> = match named.is_empty() {
        true => all.to_vec(),
        false => named.iter().map(|c| (c.trim_end_matches(":int8"), if c.ends_with(":int8") { Activations::Int8 } else { Activations::F32 })).collect(),
    };
    for (name, mode) in cases {
        let dtype = WeightDType::parse(name).unwrap();
        let (w, _) = CpuMatrix::random(&mut rng, dtype, rows, cols);
        let copies = (256usize << 20).div_ceil(w.data.len());
        let ws: Vec<CpuMatrix> = (0..copies).map(|_| CpuMatrix::from_bytes(dtype, rows, cols, w.data.clone()).unwrap().for_kernel(Kernel::best())).collect();
        let x = rng.normals(cols, 1.0);
        let mut y = vec![0f32; rows];
        let bytes = w.data.len() * copies;
        let secs = time(|| ws.iter().for_each(|w| matvec_into(&pool, w, &x, 1, &mut y, rows, 0, mode))) / copies as f64;
        let bytes = bytes / copies;
        let ceiling = cria::cpu::read_bandwidth(&pool, bytes * copies, 5) / 1e9;
        let gbs = bytes as f64 / secs / 1e9;
        let name = if mode == Activations::Int8 { format!("{name} (8-bit activations)") } else { name.to_string() };
        println!("| {name} | {:.1} MiB | {:.3} | {gbs:.2} | {ceiling:.2} | {:.0}% |", bytes as f64 / 1048576.0, secs * 1e3, 100.0 * gbs / ceiling);
    }
}

/// `tokens` tokens times each weight type (the matrix stays in the caches, as a prefill's layer
/// does across its tokens): GFLOP/s.
fn prefill(pool: &Pool, rng: &mut cria::rng::Rng, rows: usize, cols: usize, tokens: usize) {
    println!("{rows} x {cols} x {tokens} tokens, {} threads, kernel {}", pool.threads(), Kernel::best().name());
    println!("| weights | ms per product | GFLOP/s |");
    println!("|---|---|---|");
    for name in ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k", "q5_k"] {
        let dtype = WeightDType::parse(name).unwrap();
        let w = CpuMatrix::random(rng, dtype, rows, cols).0.for_kernel(Kernel::best());
        let x = rng.normals(tokens * cols, 1.0);
        let mut y = vec![0f32; tokens * rows];
        let modes: &[Activations] = if dtype.block().is_some() { &[Activations::F32, Activations::Int8] } else { &[Activations::F32] };
        for &mode in modes {
            let secs = time(|| matvec_into(pool, &w, &x, tokens, &mut y, rows, 0, mode));
            let name = if mode == Activations::Int8 { format!("{name} (8-bit activations)") } else { name.to_string() };
            println!("| {name} | {:.3} | {:.1} |", secs * 1e3, 2.0 * (rows * cols * tokens) as f64 / secs / 1e9);
        }
    }
}

/// Median seconds of a call, after a warm-up.
fn time(mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..5)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}
