//! Whole-model parity with Hugging Face transformers: prefill logits for every prompt position
//! and every step of a 32-token greedy continuation, for three tiny Llama-family models (F32,
//! F16 and BF16 checkpoints, each kept in its own type on the GPU), with the KV cache in f32
//! (logits within MODEL_TOLERANCE) and in f16, the default (KV16_MODEL_TOLERANCE; the same
//! greedy tokens).
//! Fixtures: tests/fixtures/models/*/ made by tests/fixtures/make_fixtures.py (see its README).

mod common;

use cria::model::{self, ModelOptions};
use cria::ops::attention::KvDType;
use cria::ops::check::{compare, model_tolerance, Tolerance};
use safetensors::SafeTensors;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(name)
}


fn ints(st: &SafeTensors<'_>, name: &str) -> Vec<u32> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("golden tensor {name}: {e}"));
    match t.dtype() {
        safetensors::Dtype::I64 => t.data().chunks(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32).collect(),
        safetensors::Dtype::U32 | safetensors::Dtype::I32 => t.data().chunks(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect(),
        d => panic!("golden tensor {name} has dtype {d:?}"),
    }
}

fn floats(st: &SafeTensors<'_>, name: &str) -> (Vec<f32>, Vec<usize>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("golden tensor {name}: {e}"));
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    (bytemuck::pod_collect_to_vec(t.data()), t.shape().to_vec())
}

fn check_model(name: &str, stored: &str) {
    check_on_cpu(name, stored);
    let Some(gpu) = common::gpu() else { return };
    let dir = fixture(name);
    let bytes = std::fs::read(dir.join("golden.safetensors")).expect("golden.safetensors (run tests/fixtures/make_fixtures.py)");
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    let prompt = ints(&golden, "prompt_ids");
    let generated = ints(&golden, "generated_ids");
    let (prefill, shape) = floats(&golden, "prefill_logits");
    let (steps, _) = floats(&golden, "step_logits");
    let vocab = *shape.last().unwrap();

    for kv_cache in KvDType::ALL {
        let mut llama = model::load_llama(gpu.clone(), &dir, &ModelOptions { kv_cache, ..ModelOptions::default() }, &mut |_| {}).unwrap();
        assert_eq!(llama.config.vocab_size, vocab);
        assert_eq!(llama.weight_types(), stored, "{name}: weights must keep their checkpoint's type on the GPU");
        let (name, tol) = (format!("{name} ({} KV cache)", kv_cache.name()), model_tolerance(kv_cache));
        let got = llama.forward_all_logits(&prompt, 0).unwrap();
        compare(&format!("{name} prefill logits ({} tokens)", prompt.len()), 0, &got, &prefill, tol).unwrap_or_else(|m| panic!("{m}"));

        greedy(&mut llama, &name, prompt.len(), &generated, &steps, vocab, tol);

        // A prompt of ~300 tokens: prefill in several chunks, decode attention over two key splits.
        let long = ints(&golden, "long_prompt_ids");
        let (long_steps, _) = floats(&golden, "long_step_logits");
        assert!(long.len() > 2 * cria::model::llama::PREFILL_CHUNK && long.len() > cria::ops::attention::DECODE_CHUNK);
        llama.forward(&long, 0).unwrap();
        greedy(&mut llama, &format!("{name} long prompt"), long.len(), &ints(&golden, "long_generated_ids"), &long_steps, vocab, tol);
    }
}

/// The same checks on the CPU device (its KV cache is f16: f16's tolerance; the same greedy
/// tokens): one model code, two devices.
fn check_on_cpu(name: &str, stored: &str) {
    let dir = fixture(name);
    let bytes = std::fs::read(dir.join("golden.safetensors")).unwrap();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    let (prompt, generated) = (ints(&golden, "prompt_ids"), ints(&golden, "generated_ids"));
    let ((prefill, shape), (steps, _)) = (floats(&golden, "prefill_logits"), floats(&golden, "step_logits"));
    let vocab = *shape.last().unwrap();
    let mut llama = model::load_llama(model::Device::cpu(), &dir, &ModelOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(llama.weight_types(), stored, "{name} on the CPU: weights keep their checkpoint's type");
    let (name, tol) = (format!("{name} (CPU)"), model_tolerance(KvDType::F16));
    let got = llama.forward_all_logits(&prompt, 0).unwrap();
    compare(&format!("{name} prefill logits ({} tokens)", prompt.len()), 0, &got, &prefill, tol).unwrap_or_else(|m| panic!("{m}"));
    greedy(&mut llama, &name, prompt.len(), &generated, &steps, vocab, tol);
    let long = ints(&golden, "long_prompt_ids");
    let (long_steps, _) = floats(&golden, "long_step_logits");
    llama.forward(&long, 0).unwrap();
    greedy(&mut llama, &format!("{name} long prompt"), long.len(), &ints(&golden, "long_generated_ids"), &long_steps, vocab, tol);
}

/// Greedy continuation after a prefill of `pos` tokens: the logits before each step must match
/// transformers', and so must each chosen token.
fn greedy(llama: &mut cria::model::Llama, name: &str, mut pos: usize, generated: &[u32], steps: &[f32], vocab: usize, tol: Tolerance) {
    for (step, &want) in generated.iter().enumerate() {
        let logits = pollster::block_on(llama.logits()).unwrap();
        compare(&format!("{name} logits at greedy step {step}"), 0, &logits, &steps[step * vocab..(step + 1) * vocab], tol).unwrap_or_else(|m| panic!("{m}"));
        let token = pollster::block_on(llama.argmax()).unwrap();
        assert_eq!(token, want, "{name}: greedy token at step {step}");
        llama.forward(&[token], pos).unwrap();
        pos += 1;
    }
}

#[test]
fn tinyllama_architecture_matches_transformers() {
    check_model("tinyllama-mini", "f32");
}

#[test]
fn litellama_architecture_matches_transformers() {
    check_model("litellama-mini", "f16");
}

#[test]
fn smollm_llama3_architecture_matches_transformers() {
    check_model("smollm-mini", "bf16");
}

/// Qwen2.5's shape: q/k/v biases (fused into the RoPE pass), tied embeddings, rope_theta 1e6.
#[test]
fn qwen2_architecture_matches_transformers() {
    check_model("qwen2-mini", "f16");
}

/// Qwen3's shape: q_norm/k_norm per head before RoPE, explicit head_dim (32 with hidden 64 and
/// 4 heads), untied head.
#[test]
fn qwen3_architecture_matches_transformers() {
    check_model("qwen3-mini", "bf16");
}

/// Gemma 3's shape: embeddings times sqrt(hidden), four norms per layer of `x * (1 + w)`, q/k
/// norms, GeGLU (gelu_pytorch_tanh), five sliding-window layers (a 12-token window, shorter than
/// both prompts, RoPE base 1e4) to one global layer (1e6), head_dim 32 with hidden 80, tied.
#[test]
fn gemma3_architecture_matches_transformers() {
    check_model("gemma3-mini", "bf16");
}
