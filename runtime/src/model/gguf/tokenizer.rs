//! A Hugging Face tokenizer from GGUF tokenizer metadata: `tokenizer.json` and
//! `tokenizer_config.json` are rebuilt for the same tokenizer, then loaded with
//! [`Tokenizer::from_bytes`] like any model directory's files. Where llama.cpp (which writes and
//! runs these files) and transformers' GGUF conversion disagree, this follows llama.cpp: it is
//! what the file's authors checked the model with (`tests/fixtures/tokenizer/gguf_vocabs.json`
//! records both on llama.cpp's own test vocabularies).
//!
//! - `tokenizer.ggml.model = "llama"` (SentencePiece, Llama 1/2, TinyLlama): HF's
//!   `LlamaConverter` layout, a BPE model with byte fallback, normalizer Prepend("▁") +
//!   Replace(" ", "▁"), decoder Replace/ByteFallback/Fuse/Strip. GGUF has no merge list here, only
//!   piece scores; merges are derived from them as HF's `SentencePieceExtractor` does (every
//!   split of a piece into two vocabulary pieces, ordered by the piece's score).
//! - `tokenizer.ggml.model = "gpt2"` (byte-level BPE: GPT-2, Llama 3, Qwen, SmolLM): the
//!   vocabulary and `tokenizer.ggml.merges`, words split by the rules `tokenizer.ggml.pre` names
//!   ([`PRE_TOKENIZERS`], llama.cpp's table).
//!
//! BOS/EOS are added by a TemplateProcessing post-processor when `tokenizer.ggml.add_bos_token`
//! (`add_eos_token`) says so, defaulting as llama.cpp does (SentencePiece and Llama 3 add BOS).

use super::config::tokens;
use super::GgufFile;
use crate::error::{Error, Result};
use crate::model::safetensors::ByteSource;
use crate::tokenizer::Tokenizer;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// llama.cpp's token types (`llama_token_type`, gguf-py `TokenType`).
const NORMAL: i64 = 1;
const UNKNOWN: i64 = 2;
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;
const UNUSED: i64 = 5;
const BYTE: i64 = 6;

/// How a byte-level BPE vocabulary cuts text into words before merging: llama.cpp's
/// pre-tokenizer types (`llm_tokenizer_bpe`), each with the `tokenizer.ggml.pre` names llama.cpp's
/// loader maps to it. `splits` are applied in order, as llama.cpp applies its `regex_exprs`: each
/// regex cuts every piece so far into matches and the text between them (HF `Split`, behavior
/// `Isolated`); a byte-level BPE then merges within each piece. The regexes are the ones in the
/// models' own tokenizer.json (llama.cpp rewrites `(?i:...)` for its engine, not the meaning).
struct PreTokenizer {
    names: &'static [&'static str],
    splits: &'static [&'static str],
    /// A word that is already a vocabulary entry is one token, without merging (Llama 3).
    ignore_merges: bool,
    /// llama.cpp's default for `tokenizer.ggml.add_bos_token` when the file does not say.
    add_bos: bool,
}

/// GPT-2's word split (HF `ByteLevel` with `use_regex`).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama 3: case-insensitive contractions, numbers in runs of up to three digits.
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2/2.5/3: Llama 3's split with every digit on its own.
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen3.5: Qwen2's split with combining marks kept inside words.
const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Each digit alone (HF `Digits` with `individual_digits`), before GPT-2's split: StarCoder, SmolLM.
const DIGIT: &str = r"\p{N}";

const PRE_TOKENIZERS: &[PreTokenizer] = &[
    PreTokenizer {
        names: &["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"],
        splits: &[LLAMA3],
        ignore_merges: true,
        add_bos: true,
    },
    PreTokenizer { names: &["dbrx", "smaug-bpe"], splits: &[LLAMA3], ignore_merges: false, add_bos: false },
    PreTokenizer {
        names: &["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open"],
        splits: &[QWEN2],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer { names: &["qwen35"], splits: &[QWEN35], ignore_merges: false, add_bos: false },
    PreTokenizer {
        names: &["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b", "mellum2"],
        splits: &[DIGIT, GPT2],
        ignore_merges: false,
        add_bos: false,
    },
    PreTokenizer {
        names: &[
            "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "exaone4", "mpt",
            "olmo", "jais", "trillion", "granite-docling",
        ],
        splits: &[GPT2],
        ignore_merges: false,
        add_bos: false,
    },
    // llama.cpp's fallback for files written before `tokenizer.ggml.pre` existed (and "default").
    PreTokenizer {
        names: &["default"],
        splits: &[r"[\p{P}\$\+<=>\^~\|]+", r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)", r"\p{N}+", "[0-9][0-9][0-9]"],
        ignore_merges: false,
        add_bos: false,
    },
];

/// The rules for a `tokenizer.ggml.pre` value (absent: llama.cpp's "default", with its warning).
fn pre_tokenizer(path: &str, pre: Option<&str>) -> Result<&'static PreTokenizer> {
    let name = pre.unwrap_or_else(|| {
        log::warn!("{path}: tokenizer.ggml.pre is missing; splitting words as llama.cpp's \"default\" does, which may not be how the model was trained");
        "default"
    });
    PRE_TOKENIZERS.iter().find(|p| p.names.contains(&name)).ok_or_else(|| Error::Unsupported {
        what: format!("the pre-tokenizer {name:?} (tokenizer.ggml.pre in {path})"),
        hint: format!("supported: {}", PRE_TOKENIZERS.iter().flat_map(|p| p.names).map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")),
    })
}

fn err(path: &str, field: &str, message: impl Into<String>) -> Error {
    Error::Config { path: path.to_string(), field: field.to_string(), message: message.into(), hint: "the tokenizer metadata is corrupt or incomplete".into() }
}

/// The GGUF's tokenizer, built through the same code as a model directory's tokenizer.json.
pub fn tokenizer<S: ByteSource>(f: &GgufFile<S>) -> Result<Tokenizer> {
    let (json, config) = tokenizer_files(f)?;
    Tokenizer::from_bytes(json.as_bytes(), Some(config.as_bytes())).map_err(|e| {
        super::bad(&f.path, format!("its tokenizer metadata does not make a valid tokenizer: {e}"), "the tokenizer metadata is corrupt")
    })
}

/// `tokenizer.json` and `tokenizer_config.json` text equivalent to the GGUF's tokenizer metadata.
pub fn tokenizer_files<S: ByteSource>(f: &GgufFile<S>) -> Result<(String, String)> {
    let path = f.path.as_str();
    let toks = tokens(f)?;
    let types: Vec<i64> = match f.array_opt("tokenizer.ggml.token_type")? {
        None => vec![NORMAL; toks.len()],
        Some(a) => a
            .to_i64()
            .filter(|t| t.len() == toks.len())
            .ok_or_else(|| err(path, "tokenizer.ggml.token_type", format!("must be {} integers, one per token", toks.len())))?,
    };
    // The converter pads the token list up to the model's vocab_size with UNUSED `[PAD<i>]`
    // entries; HF's tokenizer has no token for those ids, and neither does this one.
    let n = toks.len() - types.iter().rev().take_while(|&&t| t == UNUSED).count();
    let (toks, types) = (&toks[..n], &types[..n]);

    let mut vocab = Map::new();
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, t) in toks.iter().enumerate() {
        if ids.contains_key(t.as_str()) {
            // A tokenizer.json vocabulary maps each string to one id; the later id keeps no text.
            log::warn!("{path}: token {i} {t:?} repeats token {}; id {i} will decode to nothing", ids[t.as_str()]);
            continue;
        }
        ids.insert(t, i);
        vocab.insert(t.clone(), json!(i));
    }
    let added: Vec<Value> = (0..n)
        .filter(|&i| matches!(types[i], CONTROL | UNKNOWN | USER_DEFINED) && ids.get(toks[i].as_str()) == Some(&i))
        .map(|i| json!({"id": i, "content": toks[i], "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": types[i] != USER_DEFINED}))
        .collect();

    let special = |key: &str| -> Result<Option<(&str, usize)>> {
        match f.u64_opt(key)? {
            None => Ok(None),
            Some(id) if id < n as u64 => Ok(Some((toks[id as usize].as_str(), id as usize))),
            Some(id) => Err(err(path, key, format!("is {id}, outside the vocabulary of {n} tokens"))),
        }
    };
    let bos = special("tokenizer.ggml.bos_token_id")?;
    let eos = special("tokenizer.ggml.eos_token_id")?;
    let unk = special("tokenizer.ggml.unknown_token_id")?;
    let pad = special("tokenizer.ggml.padding_token_id")?;

    let model = f.str_opt("tokenizer.ggml.model")?.ok_or_else(|| err(path, "tokenizer.ggml.model", "is missing"))?;
    // llama.cpp reads `tokenizer.ggml.pre` for byte-level BPE only; SentencePiece has one rule.
    let pre = match model {
        "gpt2" => Some(pre_tokenizer(path, f.str_opt("tokenizer.ggml.pre")?)?),
        _ => None,
    };
    let add_bos = f.bool_opt("tokenizer.ggml.add_bos_token")?.unwrap_or(model == "llama" || pre.is_some_and(|p| p.add_bos));
    let add_eos = f.bool_opt("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
    let template = match (add_bos, bos, add_eos, eos) {
        (true, None, _, _) => return Err(err(path, "tokenizer.ggml.bos_token_id", "is missing but tokenizer.ggml.add_bos_token is true")),
        (_, _, true, None) => return Err(err(path, "tokenizer.ggml.eos_token_id", "is missing but tokenizer.ggml.add_eos_token is true")),
        (false, _, false, _) => None,
        _ => Some(template_processing(bos.filter(|_| add_bos), eos.filter(|_| add_eos))),
    };

    let mut json = match model {
        "llama" => sentencepiece(f, toks, types, &ids, vocab, unk, template)?,
        "gpt2" => byte_level(f, pre.expect("read for gpt2 above"), vocab, template)?,
        other => {
            return Err(Error::Unsupported {
                what: format!("tokenizer model {other:?} (tokenizer.ggml.model in {path})"),
                hint: "supported: \"llama\" (SentencePiece) and \"gpt2\" (byte-level BPE)".into(),
            });
        }
    };
    json["added_tokens"] = Value::Array(added);

    let config = json!({
        "bos_token": bos.map(|b| b.0),
        "eos_token": eos.map(|e| e.0),
        "unk_token": unk.map(|u| u.0),
        "pad_token": pad.map(|p| p.0),
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "clean_up_tokenization_spaces": false,
        "chat_template": f.str_opt("tokenizer.chat_template")?,
    });
    Ok((json.to_string(), config.to_string()))
}

/// transformers' `update_post_processor`: `<bos>:0 $A:0 <eos>:0`, pairs `... <bos>:1 $B:1 <eos>:1`.
fn template_processing(bos: Option<(&str, usize)>, eos: Option<(&str, usize)>) -> Value {
    let token = |t: &str, type_id: u32| json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let seq = |s: &str, type_id: u32| json!({"Sequence": {"id": s, "type_id": type_id}});
    let sequence = |part: &str, type_id: u32| -> Vec<Value> {
        bos.map(|b| token(b.0, type_id)).into_iter().chain([seq(part, type_id)]).chain(eos.map(|e| token(e.0, type_id))).collect()
    };
    let single = sequence("A", 0);
    let pair = [single.clone(), sequence("B", 1)].concat();
    let mut specials = Map::new();
    for (t, id) in bos.into_iter().chain(eos) {
        specials.insert(t.to_string(), json!({"id": t, "ids": [id], "tokens": [t]}));
    }
    json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials})
}

fn tokenizer_json(normalizer: Value, pre_tokenizer: Value, post_processor: Value, decoder: Value, model: Value) -> Value {
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "post_processor": post_processor,
        "decoder": decoder, "model": model,
    })
}

/// SentencePiece as HF's `LlamaConverter` writes it.
fn sentencepiece<S: ByteSource>(
    f: &GgufFile<S>,
    toks: &[String],
    types: &[i64],
    ids: &HashMap<&str, usize>,
    vocab: Map<String, Value>,
    unk: Option<(&str, usize)>,
    template: Option<Value>,
) -> Result<Value> {
    const KEY: &str = "tokenizer.ggml.scores";
    let scores = match f.array_opt(KEY)? {
        Some(super::Array::F32(s)) if s.len() >= toks.len() => s,
        Some(_) => return Err(err(&f.path, KEY, format!("must be {} f32 scores, one per token", toks.len()))),
        None => return Err(err(&f.path, KEY, "is missing; a SentencePiece vocabulary needs its scores (they order the merges)")),
    };
    let merges = sentencepiece_merges(toks, types, scores, ids);
    // Without a space prefix (`add_space_prefix` false) the leading "▁" is neither added nor stripped.
    let prefix = f.bool_opt("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"});
    let normalizer = if prefix { json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, replace]}) } else { replace };
    let mut decoders = vec![json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}), json!({"type": "ByteFallback"}), json!({"type": "Fuse"})];
    if prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let unk = unk.map(|u| u.0).or_else(|| types.iter().position(|&t| t == UNKNOWN).map(|i| toks[i].as_str()));
    let model = json!({
        "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null, "end_of_word_suffix": null,
        "fuse_unk": true, "byte_fallback": types.contains(&BYTE), "ignore_merges": false,
        "vocab": vocab, "merges": merges,
    });
    Ok(tokenizer_json(normalizer, Value::Null, template.unwrap_or(Value::Null), json!({"type": "Sequence", "decoders": decoders}), model))
}

/// Merges from piece scores, as transformers' `generate_merges(vocab, vocab_scores)`: for each
/// piece (in id order), every split into two vocabulary pieces (ordered by their ids), then all
/// of them stably sorted by the piece's score, longer left and right parts first on ties.
/// Only normal pieces are merge results: control, user-defined and byte pieces are never built
/// from others by SentencePiece.
fn sentencepiece_merges<'a>(toks: &'a [String], types: &[i64], scores: &[f32], ids: &HashMap<&str, usize>) -> Vec<(&'a str, &'a str)> {
    struct Merge<'a> {
        score: f32,
        left_len: usize,
        right_len: usize,
        left: &'a str,
        right: &'a str,
    }
    let mut merges: Vec<Merge<'a>> = Vec::new();
    for (i, piece) in toks.iter().enumerate() {
        if types[i] != NORMAL || ids.get(piece.as_str()) != Some(&i) {
            continue;
        }
        let mut local: Vec<(usize, usize, &'a str, &'a str)> = piece
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let (l, r) = piece.split_at(at);
                Some((*ids.get(l)?, *ids.get(r)?, l, r))
            })
            .collect();
        local.sort_by_key(|m| (m.0, m.1));
        merges.extend(local.into_iter().map(|(_, _, left, right)| Merge { score: scores[i], left_len: left.chars().count(), right_len: right.chars().count(), left, right }));
    }
    merges.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.left_len.cmp(&a.left_len)).then(b.right_len.cmp(&a.right_len)));
    merges.into_iter().map(|m| (m.left, m.right)).collect()
}

/// Byte-level BPE with one of llama.cpp's pre-tokenizers, as a tokenizer.json.
fn byte_level<S: ByteSource>(f: &GgufFile<S>, pre: &PreTokenizer, vocab: Map<String, Value>, template: Option<Value>) -> Result<Value> {
    const KEY: &str = "tokenizer.ggml.merges";
    let merges: Vec<(&str, &str)> = match f.array_opt(KEY)? {
        Some(super::Array::Str(m)) => m
            .iter()
            .enumerate()
            .map(|(i, m)| m.split_once(' ').filter(|(a, b)| !a.is_empty() && !b.is_empty()).ok_or_else(|| err(&f.path, KEY, format!("entry {i} ({m:?}) is not two tokens separated by a space"))))
            .collect::<Result<_>>()?,
        Some(_) => return Err(err(&f.path, KEY, "must be an array of strings")),
        None => return Err(err(&f.path, KEY, "is missing; a byte-level BPE vocabulary needs its merges")),
    };
    let splits = pre.splits.iter().map(|r| json!({"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": false}));
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false});
    let pre_tokenizer = json!({"type": "Sequence", "pretokenizers": splits.chain([byte_level]).collect::<Vec<_>>()});
    let ignore_merges = pre.ignore_merges;
    let byte_post = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true});
    let post = match template {
        Some(t) => json!({"type": "Sequence", "processors": [byte_post, t]}),
        None => byte_post,
    };
    let model = json!({
        "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
        "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges,
    });
    let decoder = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
    Ok(tokenizer_json(Value::Null, pre_tokenizer, post, decoder, model))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_follow_scores_like_transformers() {
        // "ab" (score -1) before "abc" (-2); "abc" splits as a+bc and ab+c, ordered by ids
        // then longer left part first; "bc" (-3) last; characters and the control piece none.
        let toks: Vec<String> = ["<s>", "a", "b", "c", "ab", "abc", "bc"].iter().map(|s| s.to_string()).collect();
        let types = [CONTROL, NORMAL, NORMAL, NORMAL, NORMAL, NORMAL, NORMAL];
        let scores = [0.0, -10.0, -11.0, -12.0, -1.0, -2.0, -3.0];
        let ids: HashMap<&str, usize> = toks.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
        let merges = sentencepiece_merges(&toks, &types, &scores, &ids);
        assert_eq!(merges, vec![("a", "b"), ("ab", "c"), ("a", "bc"), ("b", "c")]);
    }
}
