//! GGUF tokenizers against llama.cpp and transformers, on llama.cpp's own test vocabularies.
//!
//! Reference data: tests/fixtures/tokenizer/gguf_vocabs.json, made by
//! tests/fixtures/tokenizer/make_gguf_vocab_fixtures.py: for each vocabulary (Llama 2
//! SentencePiece, Llama 3, Qwen2, Qwen3.5, GPT-2, StarCoder, StarCoder relabelled "smollm" and
//! GPT-2 relabelled "default", llama.cpp's fallback rules),
//! llama.cpp's ids for its own test strings plus code, digit runs, scripts, whitespace runs and
//! control tokens inside text, and transformers' GGUF conversion's ids where they differ (for the
//! reasons the fixture lists). The vocab-only GGUF files are llama.cpp's `models/ggml-vocab-*`,
//! fetched by scripts/get-test-assets.sh (CRIA_LLAMA_VOCABS); without them this test prints
//! SKIPPED, unless CRIA_REQUIRE_ASSETS=1, which makes it fail.

mod common;

use std::path::{Path, PathBuf};

use cria::model::gguf::{tokenizer::tokenizer, GgufFile};
use cria::Error;
use serde_json::Value;

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tokenizer/gguf_vocabs.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn vocabs_dir() -> Option<PathBuf> {
    let p = common::asset("CRIA_LLAMA_VOCABS")?;
    assert!(p.join(".complete").is_file(), "CRIA_LLAMA_VOCABS={} is incomplete; run scripts/get-test-assets.sh", p.display());
    Some(p)
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// The file's bytes, with `tokenizer.ggml.pre` replaced by `pre` (a string value spliced in
/// place, as the fixture script does): the same vocabulary under another llama.cpp name.
fn relabel(bytes: &[u8], old: &str, pre: &str) -> Vec<u8> {
    let key = b"tokenizer.ggml.pre";
    let head = [&(key.len() as u64).to_le_bytes()[..], key, &8u32.to_le_bytes()].concat();
    let needle = [&head[..], &(old.len() as u64).to_le_bytes(), old.as_bytes()].concat();
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("tokenizer.ggml.pre in the file");
    [&bytes[..at], &head, &(pre.len() as u64).to_le_bytes(), pre.as_bytes(), &bytes[at + needle.len()..]].concat()
}

#[test]
fn gguf_tokenizers_match_llama_cpp() {
    let Some(dir) = vocabs_dir() else { return };
    let fx = fixture();
    let known = fx["known_transformers_differences"].as_object().unwrap();
    let mut report = Vec::new();
    for (name, v) in fx["vocabs"].as_object().unwrap() {
        let file = v["file"].as_str().unwrap();
        let mut bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        if let Some(pre) = v["pre"].as_str() {
            let own = GgufFile::parse(file, bytes.clone()).unwrap().str_opt("tokenizer.ggml.pre").unwrap().unwrap().to_string();
            bytes = relabel(&bytes, &own, pre);
        }
        let gguf = GgufFile::parse(file, bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let tok = tokenizer(&gguf).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (mut n, mut hf_differs, mut round_trips) = (0, 0, 0);
        for case in v["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let bos = case["bos"].as_bool().unwrap();
            let want = ids_of(&case["ids"]);
            let got = tok.encode(text, bos).unwrap();
            assert_eq!(got, want, "{name}: {text:?} (bos {bos}): Cria's ids differ from llama.cpp's");
            n += 1;
            if let Some(hf) = case.get("transformers") {
                // Recorded only where transformers' conversion differs, for a listed reason.
                assert!(known.contains_key(name) && ids_of(hf) != want, "{name}: {text:?}");
                hf_differs += 1;
            }
            // Decoding gives the text back (SentencePiece: less the one space it prefixes to
            // the text and after each special token, which its decoder cannot tell apart).
            if !bos && tok.decode(&got, false).unwrap() == text {
                round_trips += 1;
            }
        }
        report.push(format!("{name}: {n} cases equal llama.cpp's (transformers differs on {hf_differs}), {round_trips} decode back exactly"));
        if v["model"] == "gpt2" {
            // Byte-level BPE loses nothing: every case without BOS decodes to its text.
            let plain = v["cases"].as_array().unwrap().iter().filter(|c| !c["bos"].as_bool().unwrap()).count();
            assert_eq!(round_trips, plain, "{name}: byte-level BPE must decode back every text");
        }
    }
    eprintln!("{}", report.join("\n"));
    assert_eq!(report.len(), 8);
}

#[test]
fn every_llama_cpp_name_of_a_rule_loads_and_unknown_ones_are_named() {
    let Some(dir) = vocabs_dir() else { return };
    let bytes = std::fs::read(dir.join("ggml-vocab-llama-bpe.gguf")).unwrap();
    // Llama 3's vocabulary under the other names llama.cpp gives Llama 3's rules (Falcon 3,
    // LFM2, ...): the same ids as under its own name; under Qwen2's rules (digits one by one)
    // or GPT-2's, other ids.
    let text = "Numbers 12345 and 2026-12-03 (x's)\n\n\tdone";
    let ids = |pre: &str| {
        let f = GgufFile::parse("l.gguf", relabel(&bytes, "llama-bpe", pre)).unwrap();
        tokenizer(&f).map(|t| t.encode(text, false).unwrap())
    };
    let llama3 = ids("llama-bpe").unwrap();
    for name in ["llama3", "llama-v3", "falcon3", "lfm2"] {
        assert_eq!(ids(name).unwrap(), llama3, "{name}");
    }
    assert_ne!(ids("qwen2").unwrap(), llama3, "Qwen2 splits digits one by one");
    assert_ne!(ids("gpt-2").unwrap(), llama3, "GPT-2 splits words and whitespace otherwise");
    match ids("tekken") {
        Err(Error::Unsupported { what, hint }) => assert!(what.contains("\"tekken\"") && hint.contains("\"smollm\""), "{what} / {hint}"),
        other => panic!("an unknown pre-tokenizer must be a typed error, got {other:?}"),
    }
}
