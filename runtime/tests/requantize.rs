//! `cria quantize` against llama-quantize: the same type for every tensor and the same bytes.
//!
//! Reference: tests/fixtures/kquant/requantize.json, made by tests/fixtures/make_requantize.py
//! with llama.cpp's own llama-quantize (from PyPI's llama-cpp-python 0.3.36 source archive).
//! - `files`: llama-quantize --allow-requantize of kquant/kquant-mini-q4_k_m.gguf into each
//!   file type (and --pure): per tensor its type and the sha256 of its data.
//! - `rules`: llama-quantize's type per tensor for a 22-layer model with tied embeddings and
//!   rows of 576 values, where its per-layer rules and fallbacks all show.

use cria::model::gguf::write::{requantize, write_gguf, PlannedTensor};
use cria::model::gguf::{GgmlType, GgufFile, Value};
use cria::model::safetensors::FileSource;
use cria::ops::WeightDType;
use cria::quant::mix::{choose, Blocks, Scheme, TensorShape};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/kquant")
}

fn fixture() -> Json {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("requantize.json")).unwrap()).unwrap()
}

fn open(path: &Path) -> GgufFile<FileSource> {
    GgufFile::parse(&path.display().to_string(), FileSource::open(path).unwrap()).unwrap()
}

fn scheme(ftype: &str) -> Scheme {
    match ftype.strip_prefix("pure ") {
        Some(t) => Scheme::parse(t, true).unwrap(),
        None => Scheme::parse(ftype, false).unwrap(),
    }
}

fn temp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("cria-requantize-{}-{name}.gguf", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

#[test]
fn every_file_type_matches_llama_quantize_byte_for_byte() {
    let fx = fixture();
    let source = fixtures().join(fx["source"].as_str().unwrap());
    let mut report = Vec::new();
    for (ftype, want) in fx["files"].as_object().unwrap() {
        let out = temp(&ftype.replace(' ', "-"));
        let mut src = open(&source);
        requantize(&mut src, &out, scheme(ftype), &mut |_| {}).unwrap_or_else(|e| panic!("{ftype}: {e}"));
        let mut got = open(&out);
        assert_eq!(got.u64_opt("general.file_type").unwrap(), want["file_type"].as_u64(), "{ftype}: general.file_type");
        // Everything else in the metadata is the source's.
        for (k, v) in src.metadata() {
            if k != "general.file_type" {
                assert_eq!(got.get(k), Some(v), "{ftype}: metadata {k}");
            }
        }
        let tensors = want["tensors"].as_array().unwrap();
        let names: Vec<String> = got.tensors().iter().map(|t| t.name.clone()).collect();
        assert_eq!(names, tensors.iter().map(|t| t[0].as_str().unwrap().to_string()).collect::<Vec<_>>(), "{ftype}: tensor order");
        let mut same = 0;
        for t in tensors {
            let name = t[0].as_str().unwrap();
            let (info, bytes) = got.read(name).unwrap();
            assert_eq!(info.ggml_type.name(), t[1].as_str().unwrap(), "{ftype}: type of {name}");
            let sha = format!("{:x}", Sha256::digest(&bytes));
            assert_eq!(sha, t[2].as_str().unwrap(), "{ftype}: bytes of {name} ({})", info.ggml_type.name());
            same += 1;
        }
        report.push(format!("{ftype}: {same} tensors as llama-quantize writes them ({} bytes)", std::fs::metadata(&out).unwrap().len()));
        std::fs::remove_file(&out).unwrap();
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn per_layer_rules_match_llama_quantize() {
    let fx = fixture();
    for (ftype, tensors) in fx["rules"].as_object().unwrap() {
        let tensors = tensors.as_object().unwrap();
        let shapes: Vec<TensorShape> = tensors
            .iter()
            .map(|(name, t)| TensorShape { name: name.clone(), cols: t[1].as_u64().unwrap() as usize, n_dims: t[2].as_u64().unwrap() as usize })
            .collect();
        let chosen = choose(scheme(ftype), &shapes, 22, Blocks::Whole);
        let mut differ = Vec::new();
        for ((name, t), c) in tensors.iter().zip(&chosen) {
            // Kept tensors are the F32 source's.
            let got = c.map_or("F32".to_string(), |d| d.name().to_uppercase());
            if got != t[0].as_str().unwrap() {
                differ.push(format!("{name}: Cria {got}, llama-quantize {}", t[0]));
            }
        }
        assert!(differ.is_empty(), "{ftype}:\n{}", differ.join("\n"));
    }
}

#[test]
fn written_files_refuse_to_overwrite_and_leave_nothing_on_failure() {
    let source = fixtures().join("kquant-mini-mix.gguf");
    let out = temp("exists");
    std::fs::write(&out, b"keep me").unwrap();
    let mut src = open(&source);
    let err = requantize(&mut src, &out, scheme("q8_0"), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    std::fs::remove_file(&out).unwrap();

    // A producer that fails midway: no file, no partial file.
    let t = PlannedTensor { name: "a.weight".into(), dims: vec![32, 2], ggml_type: GgmlType::F32, len: 256 };
    let err = write_gguf(&out, &[("general.architecture".into(), Value::Str("llama".into()))], &[t], 32, |_| Err(cria::Error::Unsupported { what: "x".into(), hint: "y".into() }));
    assert!(err.is_err());
    assert!(!out.exists() && !out.with_extension("gguf.partial").exists());

    // Requantizing the mix file (Q2_K, Q3_K, IQ4_XS, IQ4_NL, ... sources) to Q8_0 reads every
    // type Cria computes with; each matrix ends Q8_0 (its rows are whole 32-value blocks).
    let mut src = open(&source);
    requantize(&mut src, &out, scheme("q8_0"), &mut |_| {}).unwrap();
    let got = open(&out);
    for t in got.tensors() {
        let want = if t.dims.len() == 1 { "F32" } else { "Q8_0" };
        assert_eq!(t.ggml_type.name(), want, "{}", t.name);
    }
    std::fs::remove_file(&out).unwrap();
    assert_eq!(scheme("q8_0").base(), WeightDType::Q8_0);
}

/// A NaN block scale or a NaN float in the source is refused, naming the tensor; nothing is
/// written.
#[test]
fn non_finite_sources_are_refused() {
    let source = fixtures().join("kquant-mini-q4_k_m.gguf");
    let bytes = std::fs::read(&source).unwrap();
    let src = open(&source);
    for (tensor, offset, what) in [("blk.0.attn_q.weight", 144 * 3, "f16 scale 0 of a q4_k block is NaN"), ("blk.1.ffn_norm.weight", 4 * 7, "value 7 of row 0 is NaN")] {
        let info = src.tensor_info(tensor).unwrap();
        let mut bad = bytes.clone();
        let at = info.start as usize + offset;
        if tensor.ends_with("norm.weight") {
            bad[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        } else {
            bad[at..at + 2].copy_from_slice(&0x7e00u16.to_le_bytes());
        }
        let input = temp("nan-in");
        std::fs::write(&input, &bad).unwrap();
        let out = temp("nan-out");
        for ftype in ["q8_0", "q4_k_m"] {
            let err = requantize(&mut open(&input), &out, scheme(ftype), &mut |_| {}).unwrap_err();
            assert!(matches!(err, cria::Error::NonFinite { .. }) && err.to_string().contains(tensor) && err.to_string().contains(what), "{ftype}: {err}");
            assert!(!out.exists() && !out.with_extension("gguf.partial").exists());
        }
        std::fs::remove_file(&input).unwrap();
    }
}
