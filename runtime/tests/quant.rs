//! Quantized weights end to end: a model loaded as Q8_0/Q4_0 (quantized at load, or written by
//! `quantize` and loaded back) against the same model with the quantization applied on the CPU
//! (quantize, dequantize, upload as f32): the kernels must agree with that to float precision.
//! Against transformers' f32 logits the error is the quantization's own, bounded loosely.

mod common;

use cria::model::safetensors::{Dtype, HostTensor, TensorEntry};
use cria::model::{self, Llama, ModelOptions, WeightSource};
use cria::ops::check::{compare, MODEL_TOLERANCE};
use cria::ops::WeightDType;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(name)
}

/// A model directory's weights with every matrix quantized and dequantized on the CPU.
struct RoundTrip(Box<dyn WeightSource>, WeightDType);

impl WeightSource for RoundTrip {
    fn read_rows(&mut self, name: &str, rows: std::ops::Range<usize>) -> cria::Result<HostTensor> {
        let entry = self.0.entry(name)?;
        let t = self.0.read_rows(name, rows)?;
        if entry.shape.len() != 2 {
            return Ok(t);
        }
        let cols = entry.shape[1];
        Ok(HostTensor::F32(cria::quant::round_trip(cria::quant::mix::fallback(self.1, cols, cria::quant::mix::Blocks::Padded), &t.into_f32_rows(cols), cols)?))
    }
    fn has(&self, name: &str) -> bool {
        self.0.has(name)
    }
    fn names(&self) -> Vec<String> {
        self.0.names()
    }
    /// Matrices are served as F32, and say so (the loader stores what entries say).
    fn entry(&self, name: &str) -> cria::Result<TensorEntry> {
        let entry = self.0.entry(name)?;
        Ok(if entry.shape.len() == 2 { TensorEntry { dtype: Dtype::F32, ..entry } } else { entry })
    }
    fn total_bytes(&self) -> u64 {
        self.0.total_bytes()
    }
}

fn prompt(llama: &Llama) -> Vec<u32> {
    (0..40u32).map(|i| (i * 7 + 3) % llama.config.vocab_size as u32).collect()
}

fn logits(llama: &mut Llama, ids: &[u32]) -> Vec<f32> {
    llama.forward_all_logits(ids, 0).unwrap()
}

fn std_dev(v: &[f32]) -> f32 {
    let mean = v.iter().sum::<f32>() / v.len() as f32;
    (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / v.len() as f32).sqrt()
}

/// `stored`: the weight types the model ends up with (K-quants fall back where rows are not
/// whole 256-value blocks, as every matrix of these tiny fixtures is).
fn check(name: &str, dtype: WeightDType, stored: &str, bound: f32) {
    let Some(gpu) = common::gpu() else { return };
    let dir = fixture(name);
    let files = model::open(&dir).unwrap();
    let config = files.config.clone();
    let at_load = ModelOptions { weight_dtype: Some(dtype), ..ModelOptions::default() };
    let mut quantized = model::load_llama(gpu.clone(), &dir, &at_load, &mut |_| {}).unwrap();
    assert_eq!(quantized.weight_types(), stored);
    let ids = prompt(&quantized);
    let got = logits(&mut quantized, &ids);

    let mut cpu = RoundTrip(files.weights, dtype);
    let mut reference = Llama::load(gpu.clone(), config.clone(), &mut cpu, &ModelOptions::default(), &mut |_| {}).unwrap();
    let want = logits(&mut reference, &ids);
    compare(&format!("{name} {} kernels vs CPU-dequantized weights", dtype.name()), 0, &got, &want, MODEL_TOLERANCE).unwrap_or_else(|m| panic!("{m}"));

    // Written by `quantize`, loaded back without --quant: the very same logits.
    let out = std::env::temp_dir().join(format!("cria-quant-{}-{name}-{}", std::process::id(), dtype.name()));
    let _ = std::fs::remove_dir_all(&out);
    let written = model::write::quantize(&dir, &out, cria::quant::mix::Scheme::Pure(dtype), &mut |_| {}).unwrap();
    assert!(out.join("tokenizer.json").exists() && out.join("config.json").exists());
    let mut loaded = model::load_llama(gpu.clone(), &out, &ModelOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(loaded.weight_types(), stored);
    assert_eq!(logits(&mut loaded, &ids), got, "{name}: quantized file vs quantize-at-load");
    // A rerun refuses to overwrite.
    assert!(matches!(model::write::quantize(&dir, &out, cria::quant::mix::Scheme::Pure(dtype), &mut |_| {}), Err(cria::Error::Io { .. })));
    std::fs::remove_dir_all(&out).unwrap();

    // Against the f32 model: the quantization error itself, relative to the logits' spread.
    let mut full = model::load_llama(gpu, &dir, &ModelOptions::default(), &mut |_| {}).unwrap();
    let exact = logits(&mut full, &ids);
    let max_err = got.iter().zip(&exact).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let rms_err = (got.iter().zip(&exact).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / got.len() as f32).sqrt();
    let rel = rms_err / std_dev(&exact);
    eprintln!("{name} {}: {written} bytes of weights; logit error rms {rms_err:.4} = {rel:.4} of the logits' std, max {max_err:.4}", dtype.name());
    assert!(rel < bound, "{name} {}: rms error {rel} of the logits' std exceeds {bound}", dtype.name());
}

// Bounds on the rms logit error as a fraction of the logits' spread. Per weight, Q8_0's rms
// error is about max|block| / 127 / sqrt(12), ~0.6% of a Gaussian block's std; Q4_0's about
// max|block| / 8 / sqrt(12), ~9%. These tiny random models (weights N(0, 0.2)) amplify weight
// noise about 7-15 times into the logits (measured: Q8_0 0.033-0.045, Q4_0 0.55-0.60, F16
// 0.002), so the bounds are about twice that. They catch gross errors (a wrong scale or nibble
// order); the exact check is the comparison with CPU-dequantized weights above.
#[test]
fn q8_0_tinyllama() {
    check("tinyllama-mini", WeightDType::Q8_0, "q8_0", 0.1);
}

#[test]
fn q4_0_tinyllama() {
    check("tinyllama-mini", WeightDType::Q4_0, "q4_0", 1.2);
}

/// Rows of 128 and 352 values: Q4_K falls back to Q5_0 everywhere, as llama-quantize does.
#[test]
fn q4_k_tinyllama_falls_back_to_q5_0() {
    check("tinyllama-mini", WeightDType::Q4_K, "q5_0", 1.2);
}

#[test]
fn q8_0_litellama_partial_blocks() {
    // intermediate 176 = 5.5 blocks: rows end in a partial block.
    check("litellama-mini", WeightDType::Q8_0, "q8_0", 0.1);
}

#[test]
fn q4_0_smollm_tied_embeddings() {
    check("smollm-mini", WeightDType::Q4_0, "q4_0", 1.2);
}

#[test]
fn f16_from_f32() {
    check("tinyllama-mini", WeightDType::F16, "f16", 0.01);
}

/// K-quants at load from a K-quant GGUF (hidden 256: whole super-blocks; ffn_down's 320-value
/// rows fall back): Q6_K and Q5_K requantized from the file's blocks on the CPU, against the same
/// quantization applied on the CPU and uploaded as f32.
#[test]
fn k_quants_at_load_from_a_gguf() {
    let Some(gpu) = common::gpu() else { return };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/kquant/kquant-mini-q4_k_m.gguf");
    for (dtype, stored) in [(WeightDType::Q6_K, "q6_k+q8_0"), (WeightDType::Block(cria::quant::ggml::BlockType::Q5_K), "q5_1+q5_k")] {
        let mut m = model::open_gguf(&path).unwrap();
        let options = ModelOptions { weight_dtype: Some(dtype), ..ModelOptions::default() };
        let mut quantized = m.load(gpu.clone(), &options, &mut |_| {}).unwrap();
        assert_eq!(quantized.weight_types(), stored);
        let ids = prompt(&quantized);
        let got = logits(&mut quantized, &ids);
        let m = model::open_gguf(&path).unwrap();
        let mut cpu = RoundTrip(Box::new(m.weights), dtype);
        let mut reference = Llama::load(gpu.clone(), m.config.clone(), &mut cpu, &ModelOptions::default(), &mut |_| {}).unwrap();
        compare(&format!("kquant-mini {} kernels vs CPU-quantized weights", dtype.name()), 0, &got, &logits(&mut reference, &ids), MODEL_TOLERANCE).unwrap_or_else(|m| panic!("{m}"));
    }
}
