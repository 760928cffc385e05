//! GGUF loading. Fixtures: tests/fixtures/gguf/*.gguf, the committed fixture models written the
//! way llama.cpp's convert_hf_to_gguf.py lays them out, by tests/fixtures/make_gguf.py (see
//! tests/fixtures/README.md). Checked here:
//! - a float GGUF gives the safetensors model's logits and golden.json's greedy tokens;
//! - Q8_0 and Q4_0 GGUFs give logits within a quantization bound of the safetensors model, and
//!   tightly those of transformers run on the same file's weights dequantized by gguf-py
//!   (tests/fixtures/gguf/golden.safetensors) and of the same file dequantized on the CPU and
//!   loaded as F32: that isolates the quantized kernels, the block bytes and the q/k row
//!   un-permutation from quantization error;
//! - the tokenizer rebuilt from GGUF metadata encodes and decodes like the fixture's tokenizer.json;
//! - broken files (built here by a small GGUF writer) give typed errors naming the problem.

mod common;

use cria::model::config::RopeScaling;
use cria::model::safetensors::{Dtype, HostTensor, TensorEntry};
use cria::model::{self, GgufModel, Llama, LlamaConfig, ModelOptions, WeightSource};
use cria::ops::check::{compare, MODEL_TOLERANCE};
use cria::tokenizer::{ChatMessage, Tokenizer};
use cria::{Error, Result};
use std::path::PathBuf;

const MODELS: [(&str, &str); 3] = [("tinyllama-mini", "f32"), ("litellama-mini", "f16"), ("smollm-mini", "bf16")];

fn model_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(name)
}

fn gguf_path(name: &str, tag: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/gguf/{name}-{tag}.gguf"))
}

fn golden(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(model_dir(name).join("golden.json")).unwrap()).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// An f32 KV cache: these tests compare file formats and dequantization at MODEL_TOLERANCE;
/// what the default f16 cache changes is tested once, in golden.rs.
fn options() -> ModelOptions {
    ModelOptions { context: Some(128), kv_cache: cria::ops::attention::KvDType::F32, ..ModelOptions::default() }
}

/// Serves another source's tensors with block-quantized ones dequantized on the CPU
/// (`HostTensor::into_f32`, the reference of the quantized kernels).
struct Dequantized<'a>(&'a mut dyn WeightSource);

impl WeightSource for Dequantized<'_> {
    fn read_rows(&mut self, name: &str, rows: std::ops::Range<usize>) -> Result<HostTensor> {
        let entry = self.0.entry(name)?;
        Ok(match self.0.read_rows(name, rows)? {
            t @ HostTensor::Quant { .. } => HostTensor::F32(t.into_f32_rows(*entry.shape.last().unwrap_or(&1))),
            t => t,
        })
    }
    fn has(&self, name: &str) -> bool {
        self.0.has(name)
    }
    fn names(&self) -> Vec<String> {
        self.0.names()
    }
    /// Block-quantized tensors are served as F32, and say so (the loader stores what entries say).
    fn entry(&self, name: &str) -> Result<TensorEntry> {
        let entry = self.0.entry(name)?;
        Ok(match entry.dtype {
            Dtype::Block(_) => TensorEntry { dtype: Dtype::F32, ..entry },
            _ => entry,
        })
    }
    fn total_bytes(&self) -> u64 {
        self.0.total_bytes()
    }
}

/// Logits at every prompt position, [T, vocab].
fn prefill(llama: &mut Llama, prompt: &[u32]) -> Vec<f32> {
    llama.forward_all_logits(prompt, 0).unwrap()
}

/// (max |got - want|, RMS of got - want, standard deviation of want, max |want|).
fn stats(got: &[f32], want: &[f32]) -> (f32, f32, f32, f32) {
    assert_eq!(got.len(), want.len());
    let n = want.len() as f64;
    let max_abs = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let rms = (got.iter().zip(want).map(|(&a, &b)| f64::from(a - b).powi(2)).sum::<f64>() / n).sqrt() as f32;
    let mean = want.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let std = (want.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n).sqrt() as f32;
    (max_abs, rms, std, want.iter().fold(0f32, |m, x| m.max(x.abs())))
}

/// Bounds on the RMS logit error of a quantized file against the original model, over all prompt
/// positions, as a fraction of the original logits' standard deviation. A block's rounding step
/// is amax/127 (Q8_0) or amax/8 (Q4_0), with amax ≈ 2σ over 32 Gaussian weights, so the weights'
/// RMS error is step/√12 ≈ 0.45% (Q8_0) or 7.2% (Q4_0) of σ. These tiny random models (weights
/// N(0, 0.2)) amplify weight error 7-10x into the logits (measured, and the same in transformers:
/// tests/fixtures/gguf/golden.json `quantization_error`), so the bounds allow 16x: 0.07 and 1.15,
/// rounded to 0.1 and 1.2. The tight check is the comparison with transformers' logits for the
/// same dequantized weights (gguf/golden.safetensors), at MODEL_TOLERANCE.
const Q8_0_RMS_BOUND: f32 = 0.1;
const Q4_0_RMS_BOUND: f32 = 1.2;

fn check_model(name: &str, float_tag: &str) {
    let Some(gpu) = common::gpu() else { return };
    let g = golden(name);
    let prompt = ids(&g["prompt_ids"]);
    let generated = ids(&g["generated_ids"]);
    let mut reference = model::load_llama(gpu.clone(), &model_dir(name), &options(), &mut |_| {}).unwrap();
    let want = prefill(&mut reference, &prompt);
    let vocab = reference.config.vocab_size;

    // Float file: the same weights as the safetensors file (BF16 kept as BF16 in both).
    let mut m = model::open_gguf(&gguf_path(name, float_tag)).unwrap();
    let mut llama = m.load(gpu.clone(), &options(), &mut |_| {}).unwrap();
    let got = prefill(&mut llama, &prompt);
    let (max_abs, _, std, max_want) = stats(&got, &want);
    eprintln!("{name} {float_tag}: max |logit diff| vs safetensors {max_abs:.3e} (bound {:.3e}), logit std {std:.3}, max |logit| {max_want:.3}", 1e-4 * max_want);
    assert!(max_abs <= 1e-4 * max_want, "{name} {float_tag}: max |logit diff| {max_abs} > 1e-4 × max |logit| {max_want}");
    let last = &got[(prompt.len() - 1) * vocab..];
    compare(&format!("{name} {float_tag} last-token logits"), 0, last, &want[(prompt.len() - 1) * vocab..], MODEL_TOLERANCE).unwrap_or_else(|e| panic!("{e}"));
    let mut next = pollster::block_on(llama.forward_greedy(&prompt, 0)).unwrap();
    for (step, &want_id) in generated.iter().enumerate() {
        assert_eq!(next, want_id, "{name} {float_tag}: greedy token {step}");
        next = pollster::block_on(llama.forward_greedy(&[next], prompt.len() + step)).unwrap();
    }

    let references = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/gguf/golden.safetensors")).unwrap();
    let references = safetensors::SafeTensors::deserialize(&references).unwrap();
    for (tag, bound) in [("q8_0", Q8_0_RMS_BOUND), ("q4_0", Q4_0_RMS_BOUND)] {
        let mut m = model::open_gguf(&gguf_path(name, tag)).unwrap();
        let mut llama = m.load(gpu.clone(), &options(), &mut |_| {}).unwrap();
        let got = prefill(&mut llama, &prompt);
        let (max_abs, rms, std, _) = stats(&got, &want);
        // transformers with the same dequantized weights.
        let hf: Vec<f32> = bytemuck::pod_collect_to_vec(references.tensor(&format!("{name}-{tag}")).unwrap().data());
        let (hf_abs, _, _, _) = stats(&got, &hf);
        // The same file dequantized on the CPU and run through the F32 kernels.
        let config = m.config.clone();
        let mut cpu = Llama::load(gpu.clone(), config, &mut Dequantized(&mut m.weights), &options(), &mut |_| {}).unwrap();
        assert!(llama.weight_bytes_per_token() < cpu.weight_bytes_per_token() / 2, "{name} {tag}: the weights were not uploaded quantized");
        let deq = prefill(&mut cpu, &prompt);
        let (kernel_abs, _, _, _) = stats(&got, &deq);
        eprintln!(
            "{name} {tag}: vs safetensors max |logit diff| {max_abs:.4}, rms {rms:.4} = {:.4} × logit std {std:.3} (bound {bound}); vs transformers on the same weights max {hf_abs:.3e}; vs CPU-dequantized F32 max {kernel_abs:.3e}",
            rms / std
        );
        assert!(rms <= bound * std, "{name} {tag}: RMS logit error {rms} > {bound} × std {std}");
        compare(&format!("{name} {tag} vs transformers"), 0, &got, &hf, MODEL_TOLERANCE).unwrap_or_else(|e| panic!("{e}"));
        compare(&format!("{name} {tag} vs CPU-dequantized"), 0, &got, &deq, MODEL_TOLERANCE).unwrap_or_else(|e| panic!("{e}"));

        // The CPU device on the same file (8-bit activations, f16 KV cache): its prefill, per
        // position, and its decode, step by step along the greedy ids, within the drift budget
        // of the GPU's f32 arithmetic.
        let mut on_cpu = model::open_gguf(&gguf_path(name, tag)).unwrap().load(model::Device::cpu(), &options(), &mut |_| {}).unwrap();
        let cpu_prefill = prefill(&mut on_cpu, &prompt);
        common::Drift::positions(&cpu_prefill, &got, vocab).check(&format!("{name} {tag} CPU prefill"), cria::ops::check::INT8_BUDGET);
        let steps = common::teacher_forced(&mut on_cpu, &prompt, &generated);
        common::Drift::new(&steps, &common::teacher_forced(&mut llama, &prompt, &generated)).check(&format!("{name} {tag} CPU decode"), cria::ops::check::INT8_BUDGET);
    }
}

#[test]
fn tinyllama_gguf_matches_safetensors() {
    check_model("tinyllama-mini", "f32");
}

#[test]
fn litellama_gguf_matches_safetensors() {
    check_model("litellama-mini", "f16");
}

#[test]
fn smollm_gguf_matches_safetensors() {
    check_model("smollm-mini", "bf16");
}

/// Qwen2 (biases, q/k rows not permuted, pre-tokenizer "qwen2"), Qwen3 (q/k norms, explicit
/// head_dim) and Gemma 3 (SentencePiece vocabulary, norms stored as 1 + w, the sliding window
/// and its RoPE base in `gemma3.*` keys, the 5-local-to-1-global pattern llama.cpp assumes) as
/// llama.cpp's own converter writes them (tests/fixtures/make_family_gguf.py): the same config,
/// the tokenizer gives transformers' prompt ids, the logits equal the safetensors model's, and
/// the greedy continuation is transformers'.
#[test]
fn families_converted_by_llama_cpp_match_their_safetensors() {
    let Some(gpu) = common::gpu() else { return };
    use cria::model::family::{GEMMA3, QWEN2, QWEN3};
    for (name, file, family) in [("qwen2-mini", "qwen2-mini-f16.gguf", QWEN2), ("qwen3-mini", "qwen3-mini-bf16.gguf", QWEN3), ("gemma3-mini", "gemma3-mini-bf16.gguf", GEMMA3)] {
        let g = golden(name);
        let prompt = ids(&g["prompt_ids"]);
        let mut reference = model::load_llama(gpu.clone(), &model_dir(name), &options(), &mut |_| {}).unwrap();
        let want = prefill(&mut reference, &prompt);
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/gguf").join(file);
        let mut m = model::open_gguf(&path).unwrap();
        assert_eq!(m.config.family, family, "{name}");
        // The same config, but for the end-of-generation ids: GGUF's are llama.cpp's (every
        // end-of-turn token: <|im_end|> and <|endoftext|>, as generation_config.json lists them).
        let no_eos = |c: &cria::model::LlamaConfig| cria::model::LlamaConfig { eos_token_ids: vec![], ..c.clone() };
        assert_eq!(no_eos(&m.config), no_eos(&reference.config), "{name}: config from GGUF metadata vs config.json");
        let mut eos = ids(&serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(model_dir(name).join("generation_config.json")).unwrap()).unwrap()["eos_token_id"]);
        eos.sort();
        assert_eq!(m.config.eos_token_ids, eos, "{name}: eos ids");
        assert_eq!(m.tokenizer.encode(g["prompt"].as_str().unwrap(), true).unwrap(), prompt, "{name}: GGUF tokenizer");
        let mut llama = m.load(gpu.clone(), &options(), &mut |_| {}).unwrap();
        let got = prefill(&mut llama, &prompt);
        let (max_abs, _, _, max_want) = stats(&got, &want);
        eprintln!("{name} {file}: max |logit diff| vs safetensors {max_abs:.3e}");
        assert!(max_abs <= 1e-4 * max_want, "{name}: max |logit diff| {max_abs} > 1e-4 × max |logit| {max_want}");
        let mut next = pollster::block_on(llama.forward_greedy(&prompt, 0)).unwrap();
        for (step, &want_id) in ids(&g["generated_ids"]).iter().enumerate() {
            assert_eq!(next, want_id, "{name}: greedy token {step}");
            next = pollster::block_on(llama.forward_greedy(&[next], prompt.len() + step)).unwrap();
        }
        // The same file on the CPU device: transformers' greedy ids too.
        let mut cpu = model::open_gguf(&path).unwrap().load(model::Device::cpu(), &options(), &mut |_| {}).unwrap();
        let mut next = pollster::block_on(cpu.forward_greedy(&prompt, 0)).unwrap();
        for (step, &want_id) in ids(&g["generated_ids"]).iter().enumerate() {
            assert_eq!(next, want_id, "{name} on the CPU: greedy token {step}");
            next = pollster::block_on(cpu.forward_greedy(&[next], prompt.len() + step)).unwrap();
        }
    }
}

#[test]
fn in_memory_gguf_loads_like_the_file() {
    let Some(gpu) = common::gpu() else { return };
    let path = gguf_path("smollm-mini", "q4_0");
    let prompt = ids(&golden("smollm-mini")["prompt_ids"]);
    let mut from_file = model::load_gguf(gpu.clone(), &path, &options(), &mut |_| {}).unwrap();
    let mut bytes = 0;
    let mut from_memory = model::load_gguf_from_bytes(gpu, std::fs::read(&path).unwrap(), &options(), &mut |p| bytes += p.bytes).unwrap();
    assert!(bytes > 0);
    assert_eq!(prefill(&mut from_file, &prompt), prefill(&mut from_memory, &prompt));
}

/// Config and generation defaults from GGUF metadata equal those from config.json and
/// generation_config.json (rope scaling aside: GGUF stores Llama 3's as per-frequency factors).
#[test]
fn config_matches_config_json() {
    for (name, tag) in MODELS {
        let dir = model_dir(name);
        let files = model::open(&dir).unwrap();
        let (want, gen_want) = (files.config.clone(), files.generation.clone());
        for tag in [tag, "q8_0", "q4_0"] {
            let m = model::open_gguf(&gguf_path(name, tag)).unwrap();
            let got = &m.config;
            let sorted = |c: &LlamaConfig| LlamaConfig {
                rope_scaling: RopeScaling::None,
                eos_token_ids: {
                    let mut e = c.eos_token_ids.clone();
                    e.sort_unstable();
                    e
                },
                ..c.clone()
            };
            assert_eq!(sorted(got), sorted(&want), "{name} {tag}");
            for (a, b) in got.inv_freq().iter().zip(want.inv_freq()) {
                assert!((a - b).abs() <= 1e-6 * b.abs(), "{name} {tag}: inv_freq {a} vs {b}");
            }
            let mut eos = gen_want.eos_token_ids.clone();
            eos.sort_unstable();
            assert_eq!(m.generation.eos_token_ids, eos, "{name} {tag}");
            assert_eq!(m.generation.sampling, gen_want.sampling, "{name} {tag}");
        }
    }
    let smollm = model::open_gguf(&gguf_path("smollm-mini", "bf16")).unwrap();
    assert!(matches!(smollm.config.rope_scaling, RopeScaling::Factors(ref f) if f.len() == 8));
}

/// Strings that stress pre-tokenizers, byte fallback, special tokens and whitespace.
const TRICKY: &[&str] = &[
    "",
    " ",
    "hello",
    " leading space",
    "trailing space ",
    "two  spaces   three",
    "line\nbreak\n\nand\r\nwindows",
    "tab\there",
    "Ça chante! naïve café 🦙🦙 日本語",
    "The llama's wool isn't soft, they'll say; I'd've known.",
    "numbers 0 1 12 123 1234 12345 3.14 1e-5",
    "code: fn main() { let x = vec![1, 2, 3]; }",
    "<s>special</s> and <unk> inside",
    "<|begin_of_text|>hi<|eot_id|> <|endoftext|>",
    "   ",
];

#[test]
fn tokenizer_matches_the_fixture_tokenizer() {
    for (name, tag) in MODELS {
        let want = Tokenizer::from_dir(&model_dir(name)).unwrap();
        let g = golden(name);
        let mut texts: Vec<String> = TRICKY.iter().map(|s| s.to_string()).collect();
        for key in ["prompt", "long_prompt", "generated_text", "continuation_text"] {
            texts.push(g[key].as_str().unwrap().to_string());
        }
        for tag in [tag, "q4_0"] {
            let got = model::open_gguf(&gguf_path(name, tag)).unwrap().tokenizer;
            let what = format!("{name} {tag}");
            assert_eq!(got.vocab_size(), want.vocab_size(), "{what}");
            assert_eq!((got.bos_id(), got.bos_token()), (want.bos_id(), want.bos_token()), "{what}");
            assert_eq!((got.eos_ids(), got.eos_token()), (want.eos_ids(), want.eos_token()), "{what}");
            assert_eq!(got.add_bos_token(), want.add_bos_token(), "{what}");
            assert_eq!(got.chat_template(), want.chat_template(), "{what}");
            for id in 0..want.vocab_size() as u32 {
                assert_eq!(got.id_to_token(id), want.id_to_token(id), "{what}: token {id}");
                assert_eq!((got.is_special(id), got.is_byte_piece(id)), (want.is_special(id), want.is_byte_piece(id)), "{what}: token {id}");
            }
            for text in &texts {
                for special in [true, false] {
                    let ids = want.encode(text, special).unwrap();
                    assert_eq!(got.encode(text, special).unwrap(), ids, "{what}: encode({text:?}, {special})");
                    for skip in [true, false] {
                        assert_eq!(got.decode(&ids, skip).unwrap(), want.decode(&ids, skip).unwrap(), "{what}: decode of {text:?}");
                    }
                }
            }
            let generated = ids(&g["generated_ids"]);
            assert_eq!(got.decode(&generated, true).unwrap(), g["generated_text"].as_str().unwrap(), "{what}");
            let chat = [ChatMessage::system("Be brief."), ChatMessage::user("Hi there"), ChatMessage::assistant("Hello."), ChatMessage::user("Bye")];
            assert_eq!(got.apply_chat_template(&chat, true).unwrap(), want.apply_chat_template(&chat, true).unwrap(), "{what}");
            let prompt = ids(&g["prompt_ids"]);
            assert_eq!(got.encode(g["prompt"].as_str().unwrap(), true).unwrap(), prompt, "{what}: golden prompt ids");
        }
    }
}

/// A GGUF writer for broken files: a valid tiny Llama (1 layer, hidden 8, 2 heads / 1 kv head,
/// byte-level tokenizer of 4 tokens), then one thing broken per test.
#[derive(Clone)]
struct Gguf {
    magic: [u8; 4],
    version: u32,
    /// Overrides of the counts written in the header.
    n_tensors: Option<u64>,
    n_kv: Option<u64>,
    kv: Vec<(String, u32, Vec<u8>)>,
    /// name, ne, ggml type, data.
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
    alignment: usize,
    /// Overrides of a tensor's data offset.
    offsets: Vec<(usize, u64)>,
}

fn string(s: &str) -> Vec<u8> {
    [(s.len() as u64).to_le_bytes().to_vec(), s.as_bytes().to_vec()].concat()
}

fn array(ty: u32, items: &[Vec<u8>]) -> Vec<u8> {
    [ty.to_le_bytes().to_vec(), (items.len() as u64).to_le_bytes().to_vec(), items.concat()].concat()
}

impl Gguf {
    const HIDDEN: u64 = 8;
    const INTER: u64 = 12;
    const VOCAB: u64 = 4;

    fn tiny() -> Gguf {
        let mut g = Gguf { magic: *b"GGUF", version: 3, n_tensors: None, n_kv: None, kv: Vec::new(), tensors: Vec::new(), alignment: 32, offsets: Vec::new() };
        g.str("general.architecture", "llama");
        for (k, v) in [
            ("llama.block_count", 1),
            ("llama.context_length", 16),
            ("llama.embedding_length", Self::HIDDEN as u32),
            ("llama.feed_forward_length", Self::INTER as u32),
            ("llama.attention.head_count", 2),
            ("llama.attention.head_count_kv", 1),
        ] {
            g.u32(k, v);
        }
        g.kv.push(("llama.attention.layer_norm_rms_epsilon".into(), 6, 1e-5f32.to_le_bytes().to_vec()));
        g.str("tokenizer.ggml.model", "gpt2");
        g.str("tokenizer.ggml.pre", "gpt-2");
        let tokens: Vec<Vec<u8>> = ["a", "b", "ab", "<|endoftext|>"].iter().map(|t| string(t)).collect();
        g.kv.push(("tokenizer.ggml.tokens".into(), 9, array(8, &tokens)));
        g.kv.push(("tokenizer.ggml.token_type".into(), 9, array(5, &[1i32, 1, 1, 3].map(|t| t.to_le_bytes().to_vec()))));
        g.kv.push(("tokenizer.ggml.merges".into(), 9, array(8, &[string("a b")])));
        g.u32("tokenizer.ggml.eos_token_id", 3);
        let (h, i, v, kv) = (Self::HIDDEN, Self::INTER, Self::VOCAB, Self::HIDDEN / 2);
        for (name, dims) in [
            ("token_embd.weight", vec![h, v]),
            ("blk.0.attn_norm.weight", vec![h]),
            ("blk.0.attn_q.weight", vec![h, h]),
            ("blk.0.attn_k.weight", vec![h, kv]),
            ("blk.0.attn_v.weight", vec![h, kv]),
            ("blk.0.attn_output.weight", vec![h, h]),
            ("blk.0.ffn_norm.weight", vec![h]),
            ("blk.0.ffn_gate.weight", vec![h, i]),
            ("blk.0.ffn_up.weight", vec![h, i]),
            ("blk.0.ffn_down.weight", vec![i, h]),
            ("output_norm.weight", vec![h]),
            ("output.weight", vec![h, v]),
        ] {
            // Row r of every tensor holds the value r (so row order is visible), plus a ramp.
            let cols = dims[0] as usize;
            let rows: usize = dims[1..].iter().product::<u64>() as usize;
            let data: Vec<f32> = (0..rows * cols).map(|k| (k / cols) as f32 + (k % cols) as f32 / 100.0).collect();
            g.tensor(name, dims, 0, bytemuck::cast_slice(&data).to_vec());
        }
        g
    }

    fn str(&mut self, key: &str, value: &str) {
        self.kv.push((key.into(), 8, string(value)));
    }

    fn u32(&mut self, key: &str, value: u32) {
        self.kv.push((key.into(), 4, value.to_le_bytes().to_vec()));
    }

    fn tensor(&mut self, name: &str, dims: Vec<u64>, ty: u32, data: Vec<u8>) {
        self.tensors.push((name.into(), dims, ty, data));
    }

    fn set(&mut self, key: &str, ty: u32, value: Vec<u8>) {
        let entry = self.kv.iter_mut().find(|e| e.0 == key).unwrap_or_else(|| panic!("no key {key}"));
        (entry.1, entry.2) = (ty, value);
    }

    fn pad(out: &mut Vec<u8>, align: usize) {
        out.resize(out.len().next_multiple_of(align), 0);
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = self.magic.to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend(self.n_tensors.unwrap_or(self.tensors.len() as u64).to_le_bytes());
        out.extend(self.n_kv.unwrap_or(self.kv.len() as u64).to_le_bytes());
        for (k, ty, v) in &self.kv {
            out.extend(string(k));
            out.extend(ty.to_le_bytes());
            out.extend(v);
        }
        let mut offset = 0u64;
        for (i, (name, dims, ty, data)) in self.tensors.iter().enumerate() {
            out.extend(string(name));
            out.extend((dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
            out.extend(ty.to_le_bytes());
            let at = self.offsets.iter().find(|o| o.0 == i).map_or(offset, |o| o.1);
            out.extend(at.to_le_bytes());
            offset = (offset + data.len() as u64).next_multiple_of(self.alignment as u64);
        }
        Self::pad(&mut out, self.alignment);
        for (_, _, _, data) in &self.tensors {
            out.extend(data);
            Self::pad(&mut out, self.alignment);
        }
        out
    }

    fn read(&self) -> Result<GgufModel<Vec<u8>>> {
        GgufModel::read("bad.gguf", self.bytes())
    }
}

/// The error of reading `g`, which must be `Error::Gguf` mentioning every one of `needles`.
fn gguf_error(g: &Gguf, needles: &[&str]) -> String {
    let err = g.read().err().expect("a broken file must not load");
    let msg = err.to_string();
    assert!(matches!(err, Error::Gguf { .. }), "expected Error::Gguf, got {err:?}");
    for n in needles {
        assert!(msg.contains(n), "{msg:?} should mention {n:?}");
    }
    msg
}

#[test]
fn the_test_writer_makes_a_valid_file() {
    let mut m = Gguf::tiny().read().unwrap();
    assert_eq!((m.config.hidden_size, m.config.num_key_value_heads, m.config.vocab_size, m.config.tie_word_embeddings), (8, 1, 4, false));
    assert_eq!(m.tokenizer.encode("ab", false).unwrap(), vec![2]);
    assert_eq!(m.generation.eos_token_ids, vec![3]);
    // k_proj: 1 kv head of 4 rows stored in llama.cpp's order [0, 2, 1, 3] of HF rows; the file
    // row s holds the value s, so HF row r comes back holding the file row it was stored at.
    let (entry, k) = m.weights.tensor("model.layers.0.self_attn.k_proj.weight").unwrap();
    assert_eq!(entry.shape, vec![4, 8]);
    let rows: Vec<f32> = k.into_f32().chunks(8).map(|r| r[0]).collect();
    assert_eq!(rows, vec![0.0, 2.0, 1.0, 3.0]);
    let (entry, _) = m.weights.tensor("model.layers.0.mlp.down_proj.weight").unwrap();
    assert_eq!(entry.shape, vec![8, 12], "HF shape is ne reversed");
    assert!(matches!(m.weights.tensor("model.layers.1.mlp.up_proj.weight"), Err(Error::MissingTensor { .. })));
}

#[test]
fn bad_magic() {
    let mut g = Gguf::tiny();
    g.magic = *b"GGML";
    gguf_error(&g, &["GGUF magic", "GGML"]);
}

#[test]
fn unsupported_versions() {
    let mut g = Gguf::tiny();
    g.version = 1;
    assert!(matches!(g.read(), Err(Error::Unsupported { what, .. }) if what.contains("GGUF version 1")));
    g.version = 3u32.swap_bytes();
    assert!(matches!(g.read(), Err(Error::Unsupported { what, .. }) if what.contains("big-endian")));
    g.version = 7;
    gguf_error(&g, &["unknown GGUF version 7"]);
}

#[test]
fn lying_tensor_count() {
    let mut g = Gguf::tiny();
    g.n_tensors = Some(1 << 40);
    gguf_error(&g, &["claims", "1099511627776 tensors", "tensor count"]);
    // A count that fits the file's size runs out of tensor infos: the next one is read from the
    // data section and fails a check, as a typed error.
    g.n_tensors = Some(g.tensors.len() as u64 + 1);
    gguf_error(&g, &["tensor info 12"]);
}

#[test]
fn lying_kv_count() {
    let mut g = Gguf::tiny();
    g.n_kv = Some(u64::MAX);
    gguf_error(&g, &["claims", "18446744073709551615 metadata entries"]);
    g.n_kv = Some(g.kv.len() as u64 + 3);
    let err = g.read().err().expect("must fail");
    assert!(matches!(err, Error::Gguf { .. }), "{err:?}");
}

#[test]
fn overflowing_dimensions() {
    let mut g = Gguf::tiny();
    g.tensor("blk.0.extra.weight", vec![1 << 32, 1 << 32, 1 << 32], 0, vec![0; 4]);
    gguf_error(&g, &["blk.0.extra.weight", "overflows"]);
    // The element count fits in 64 bits but the byte size (× 4) does not.
    let mut g = Gguf::tiny();
    g.tensor("blk.0.extra.weight", vec![1 << 62, 2], 0, vec![0; 4]);
    gguf_error(&g, &["blk.0.extra.weight", "overflows"]);
    // Five dimensions.
    let mut g = Gguf::tiny();
    g.tensor("blk.0.extra.weight", vec![1; 5], 0, vec![0; 4]);
    gguf_error(&g, &["blk.0.extra.weight", "5 dimensions"]);
}

#[test]
fn tensor_data_past_the_end() {
    let mut g = Gguf::tiny();
    g.offsets.push((11, 1 << 20));
    gguf_error(&g, &["output.weight", "past the end of the file"]);
    // Misaligned offsets are rejected too.
    let mut g = Gguf::tiny();
    g.offsets.push((11, 4));
    gguf_error(&g, &["output.weight", "not a multiple of the alignment 32"]);
}

#[test]
fn unknown_and_unsupported_tensor_types() {
    let mut g = Gguf::tiny();
    g.tensors[2].2 = 99;
    gguf_error(&g, &["blk.0.attn_q.weight", "unknown ggml type 99"]);
    // A type ggml defines but this runtime does not compute with: the file parses, the model
    // does not load, and the error names the tensor and the type.
    for (ty, name, bytes) in [(16u32, "IQ2_XXS (ggml type 16)", 66usize), (39, "MXFP4 (ggml type 39)", 17 * 8)] {
        let mut g = Gguf::tiny();
        g.tensor("blk.0.ffn_gate.weight_x", vec![256, 1], ty, vec![0; bytes]);
        let err = g.read().err().unwrap();
        let msg = err.to_string();
        assert!(matches!(err, Error::UnsupportedDtype { .. }) && msg.contains("blk.0.ffn_gate.weight_x") && msg.contains(name) && msg.contains("Q4_K"), "{msg}");
    }
}

/// Block tensors whose shape the bytes cannot hold: rows that are not whole blocks, and more
/// blocks than the file has.
#[test]
fn block_tensors_that_do_not_fit_their_shape() {
    let mut g = Gguf::tiny();
    g.tensor("blk.0.extra.weight", vec![320, 2], 12, vec![0; 2 * 144]);
    gguf_error(&g, &["blk.0.extra.weight", "rows of 320 values, not a multiple of the Q4_K block of 256"]);
    let mut g = Gguf::tiny();
    g.tensor("blk.0.extra.weight", vec![256, 4], 14, vec![0; 210]);
    gguf_error(&g, &["blk.0.extra.weight", "past the end of the file"]);
}

#[test]
fn duplicate_metadata_key() {
    let mut g = Gguf::tiny();
    g.u32("llama.block_count", 2);
    gguf_error(&g, &["`llama.block_count` appears twice"]);
}

#[test]
fn duplicate_tensor_name() {
    let mut g = Gguf::tiny();
    let first = g.tensors[1].clone();
    g.tensors.push(first);
    gguf_error(&g, &["`blk.0.attn_norm.weight` appears twice"]);
}

#[test]
fn every_truncation_is_a_typed_error() {
    let g = Gguf::tiny();
    let full = g.bytes();
    // The file ends with the last tensor's data and its padding to the alignment; every cut
    // before the end of the data must fail (cutting only padding leaves a complete file).
    let last = g.tensors.last().unwrap().3.len();
    let end = full.len() - (last.next_multiple_of(g.alignment) - last);
    for cut in 0..end {
        let err = GgufModel::read("cut.gguf", full[..cut].to_vec()).err().unwrap_or_else(|| panic!("a file cut at {cut} of {} bytes loaded", full.len()));
        let msg = err.to_string();
        assert!(matches!(err, Error::Gguf { .. }), "cut at {cut}: {err:?}");
        assert!(msg.contains("truncated"), "cut at {cut}: {msg}");
    }
}

#[test]
fn alignment_must_be_a_power_of_two() {
    let mut g = Gguf::tiny();
    g.u32("general.alignment", 48);
    gguf_error(&g, &["general.alignment", "not a power of two"]);
    let mut g = Gguf::tiny();
    g.u32("general.alignment", 0);
    gguf_error(&g, &["general.alignment", "not a power of two"]);
}

#[test]
fn non_llama_architecture() {
    let mut g = Gguf::tiny();
    g.set("general.architecture", 8, string("mamba"));
    let err = g.read().err().unwrap();
    assert!(matches!(err, Error::UnknownArchitecture { ref got, .. } if got.contains("mamba") && got.contains("general.architecture")), "{err:?}");
}

#[test]
fn bad_metadata_values_name_the_field() {
    let mut g = Gguf::tiny();
    g.set("llama.block_count", 8, string("two"));
    let err = g.read().err().unwrap();
    assert!(matches!(err, Error::Config { ref field, .. } if field == "llama.block_count"), "{err:?}");
    let mut g = Gguf::tiny();
    g.kv.retain(|e| e.0 != "llama.context_length");
    let err = g.read().err().unwrap();
    assert!(err.to_string().contains("`llama.context_length` is missing"), "{err}");
    let mut g = Gguf::tiny();
    g.set("tokenizer.ggml.pre", 8, string("tekken"));
    let err = g.read().err().unwrap();
    assert!(matches!(err, Error::Unsupported { ref what, ref hint } if what.contains("\"tekken\"") && hint.contains("\"qwen2\"")), "{err:?}");
    let mut g = Gguf::tiny();
    g.u32("tokenizer.ggml.bos_token_id", 9);
    let err = g.read().err().unwrap();
    assert!(err.to_string().contains("tokenizer.ggml.bos_token_id") && err.to_string().contains("outside the vocabulary"), "{err}");
}
