//! GGUF files as people download them: K-quant mixes written by llama.cpp's own converter and
//! quantizer (tests/fixtures/kquant/*.gguf, made by tests/fixtures/make_kquant.py, see
//! tests/fixtures/README.md), against transformers loading the same files through its own GGUF
//! reader (gguf-py's dequantizers). Checked per file: every tensor type is kept on the GPU as it
//! is in the file (nothing converted but interleaved gate/up pairs of different types, which
//! share f32), GPU weight memory within the file's size, prefill logits at every position within
//! MODEL_TOLERANCE, and 32 greedy ids.

mod common;

use cria::model::{self, ModelOptions};
use cria::ops::check::{compare, MODEL_TOLERANCE};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/kquant")
}

fn golden() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("golden.json")).unwrap()).unwrap()
}

/// An f32 KV cache: the comparison is of weight formats at MODEL_TOLERANCE (golden.rs covers
/// the f16 cache).
fn options() -> ModelOptions {
    ModelOptions { context: Some(128), kv_cache: cria::ops::attention::KvDType::F32, ..ModelOptions::default() }
}

/// The weight types the model should hold: each matrix's file type, except that a layer whose
/// gate and up differ keeps that pair (one interleaved matrix) as f32.
fn expected_types(tensor_types: &serde_json::Map<String, serde_json::Value>) -> BTreeSet<String> {
    let ty = |name: &str| tensor_types[name].as_str().unwrap().to_ascii_lowercase();
    let mut out = BTreeSet::new();
    for name in tensor_types.keys() {
        if name.ends_with("_norm.weight") || name == "rope_freqs.weight" {
            continue;
        }
        if let Some(layer) = name.strip_suffix(".ffn_gate.weight").or_else(|| name.strip_suffix(".ffn_up.weight")) {
            let (g, u) = (ty(&format!("{layer}.ffn_gate.weight")), ty(&format!("{layer}.ffn_up.weight")));
            out.insert(if g == u { g } else { "f32".to_string() });
            continue;
        }
        out.insert(ty(name));
    }
    out
}

fn check(tag: &str) {
    let Some(gpu) = common::gpu() else { return };
    let g = golden();
    let file = format!("kquant-mini-{tag}.gguf");
    let meta = &g["files"][&file];
    let path = dir().join(&file);
    let prompt: Vec<u32> = g["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let want_ids: Vec<u32> = meta["generated_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let goldens = std::fs::read(dir().join("golden.safetensors")).unwrap();
    let goldens = safetensors::SafeTensors::deserialize(&goldens).unwrap();
    let want: Vec<f32> = bytemuck::pod_collect_to_vec(goldens.tensor(&format!("{tag}.prefill_logits")).unwrap().data());

    let mut m = model::open_gguf(&path).unwrap();
    // The tokenizer llama.cpp's converter wrote (Llama-3 BPE, "llama-bpe") gives the prompt ids
    // transformers' tokenizer gave: the browser test generates from the text.
    assert_eq!(m.tokenizer.encode(g["prompt"].as_str().unwrap(), true).unwrap(), prompt, "{file}: prompt ids");
    let plan = cria::model::Llama::memory_plan(&m.config, &m.weights, &options()).unwrap();
    let mut llama = m.load(gpu, &options(), &mut |_| {}).unwrap();
    let types: BTreeSet<String> = llama.weight_types().split('+').map(str::to_string).collect();
    assert_eq!(types, expected_types(meta["tensor_types"].as_object().unwrap()), "{file}: weight types on the GPU");
    let weights: u64 = plan.weights.iter().map(|w| w.1).sum();
    let file_bytes = std::fs::metadata(&path).unwrap().len();
    eprintln!("{file}: types {types:?}, GPU weights {weights} bytes, file {file_bytes} bytes");
    if !types.contains("f32") {
        assert!(weights <= file_bytes, "{file}: {weights} bytes of weights on the GPU for a {file_bytes}-byte file");
    }

    let got = llama.forward_all_logits(&prompt, 0).unwrap();
    let max = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!("{file}: prefill logits vs transformers, max |diff| {max:.2e} over {} values", want.len());
    compare(&format!("{file} prefill logits vs transformers"), 0, &got, &want, MODEL_TOLERANCE).unwrap_or_else(|e| panic!("{e}"));
    let mut next = pollster::block_on(llama.forward_greedy(&prompt, 0)).unwrap();
    for (step, &want_id) in want_ids.iter().enumerate() {
        assert_eq!(next, want_id, "{file}: greedy token {step}");
        next = pollster::block_on(llama.forward_greedy(&[next], prompt.len() + step)).unwrap();
    }

    // The CPU device on the same file: the same types kept. It quantizes activations to 8 bits
    // as llama.cpp's CPU backend does (and keeps an f16 KV cache): its prefill, per position,
    // against transformers', and its decode, step by step along transformers' greedy ids,
    // against the GPU's (f32), within the drift budget.
    let mut cpu = model::open_gguf(&path).unwrap().load(model::Device::cpu(), &options(), &mut |_| {}).unwrap();
    let cpu_types: BTreeSet<String> = cpu.weight_types().split('+').map(str::to_string).collect();
    assert_eq!(cpu_types, types, "{file}: weight types on the CPU");
    let got = cpu.forward_all_logits(&prompt, 0).unwrap();
    let max = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!("{file}: CPU prefill logits vs transformers, max |diff| {max:.2e}");
    common::Drift::positions(&got, &want, cpu.config.vocab_size).check(&format!("{file} CPU prefill vs transformers"), cria::ops::check::INT8_BUDGET);
    let reference = common::teacher_forced(&mut llama, &prompt, &want_ids);
    let steps = common::teacher_forced(&mut cpu, &prompt, &want_ids);
    common::Drift::new(&steps, &reference).check(&format!("{file} CPU decode"), cria::ops::check::INT8_BUDGET);
}


/// llama-server's default download: Q4_K, Q6_K and the Q5_0/Q8_0 fallbacks for 320-value rows.
#[test]
fn q4_k_m_matches_transformers() {
    check("q4_k_m");
}

/// Every other type, one per tensor, and a gate/up pair of different types.
#[test]
fn every_type_mixed_matches_transformers() {
    check("mix");
}

/// A block whose f16 scale is NaN or infinite would turn its values into NaN: loading stops
/// with a typed error naming the tensor, the row and the block. Both header positions: Q4_K
/// keeps `d` first, Q6_K last.
#[test]
fn a_non_finite_block_scale_is_a_typed_error() {
    let Some(gpu) = common::gpu() else { return };
    let path = dir().join("kquant-mini-q4_k_m.gguf");
    let m = model::open_gguf(&path).unwrap();
    let info = |name: &str| m.weights.file().tensor_info(name).unwrap().clone();
    for (tensor, hf, ty, at, bits, want) in [
        ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight", "Q4_K", 0, 0x7c00u16, "row 0 block 0: f16 scale 0 of a q4_k block is inf"),
        ("output.weight", "lm_head.weight", "Q6_K", 5 * 210 + 208, 0x7e00, "row 5 block 0: f16 scale 0 of a q6_k block is NaN"),
    ] {
        let t = info(tensor);
        assert_eq!(t.ggml_type.name(), ty, "{tensor}");
        let mut bytes = std::fs::read(&path).unwrap();
        let at = t.start as usize + at;
        bytes[at..at + 2].copy_from_slice(&bits.to_le_bytes());
        let err = model::load_gguf_from_bytes(gpu.clone(), bytes, &options(), &mut |_| {}).err().expect("a NaN scale must not load");
        let msg = err.to_string();
        assert!(matches!(err, cria::Error::NonFinite { .. }) && msg.contains(hf) && msg.contains(want), "{msg}");
    }
}
