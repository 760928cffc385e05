//! Text ⇄ token ids for Hugging Face model directories: `tokenizer.json` through the `tokenizers`
//! crate (the same Rust core that `transformers` uses, so ids match it exactly), special tokens
//! and the chat template from `tokenizer_config.json` (or `chat_template.jinja`), the template
//! rendered with `minijinja` the way `transformers.apply_chat_template` renders it with Jinja2,
//! and a streaming decoder for generation.
//!
//! BOS follows transformers 5: `encode(text, true)` adds exactly what the tokenizer.json
//! post-processor adds (Llama-2's `TemplateProcessing` adds `<s>`; GPT-2's adds nothing);
//! `add_bos_token` in tokenizer_config.json is recorded but, as in transformers 5, does not
//! change encoding.

use std::borrow::Cow;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, ErrorKind};
use serde::Serialize;

use crate::error::{Error, Result};

/// One turn of a conversation, as `apply_chat_template` receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A Hugging Face tokenizer plus what tokenizer_config.json says about it.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Where it came from, for error messages.
    source: String,
    /// Cached: tokenizers' get_vocab_size(true) builds the whole vocabulary map on each call.
    vocab_size: usize,
    /// Ids of byte-fallback pieces `<0x00>`..`<0xFF>` (sorted; empty for byte-level BPE).
    byte_pieces: Vec<u32>,
    /// Ids of special added tokens (sorted): `decode(.., skip_special_tokens = true)` drops them
    /// before the decoder runs, so they do not end a run of byte pieces.
    special_ids: Vec<u32>,
    bos_token: Option<String>,
    bos_id: Option<u32>,
    eos_token: Option<String>,
    eos_ids: Vec<u32>,
    unk_token: Option<String>,
    pad_token: Option<String>,
    /// `add_bos_token` from tokenizer_config.json when present (informational; see module docs).
    add_bos_token: Option<bool>,
    chat_template: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size())
            .field("bos", &(self.bos_token.as_deref(), self.bos_id))
            .field("eos", &(self.eos_token.as_deref(), &self.eos_ids))
            .field("chat_template", &self.chat_template.is_some())
            .finish()
    }
}

/// The tokenizer files of a model folder, read; paths are for messages.
pub struct TokenizerFiles<'a> {
    pub json: &'a [u8],
    pub json_path: String,
    pub config: Option<&'a [u8]>,
    pub config_path: String,
    pub chat_template: Option<String>,
}

/// A special token in tokenizer_config.json is either a string or an AddedToken object
/// (`{"content": "<s>", "lstrip": false, ...}`).
fn special_token(config: &serde_json::Value, key: &str) -> Option<String> {
    match config.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

impl Tokenizer {
    /// Loads `dir/tokenizer.json`, plus `dir/tokenizer_config.json` and `dir/chat_template.jinja`
    /// when present, as every model folder is read ([`crate::model::folder::tokenizer`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: &Path) -> Result<Tokenizer> {
        crate::model::folder::tokenizer(&mut crate::model::folder::Dir(dir.to_path_buf()))
    }

    /// Builds a tokenizer from the bytes of tokenizer.json and (optionally) tokenizer_config.json.
    pub fn from_bytes(tokenizer_json: &[u8], tokenizer_config_json: Option<&[u8]>) -> Result<Tokenizer> {
        Self::build(tokenizer_json, tokenizer_config_json, "tokenizer.json".into(), "tokenizer_config.json".into())
    }

    /// Builds a tokenizer from a model folder's files; a `chat_template` (chat_template.jinja)
    /// wins over tokenizer_config.json's, as in transformers.
    pub fn from_files(files: TokenizerFiles<'_>) -> Result<Tokenizer> {
        let mut tok = Self::build(files.json, files.config, files.json_path, files.config_path)?;
        if files.chat_template.is_some() {
            tok.chat_template = files.chat_template;
        }
        Ok(tok)
    }

    fn build(json: &[u8], config: Option<&[u8]>, json_name: String, config_name: String) -> Result<Tokenizer> {
        let inner = tokenizers::Tokenizer::from_bytes(json).map_err(|e| Error::Tokenizer {
            path: json_name.clone(),
            message: format!("cannot parse: {e}. Hint: the file must be a Hugging Face tokenizers JSON (tokenizers >= 0.14 format)"),
        })?;
        let config: serde_json::Value = match config {
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| Error::Tokenizer {
                path: config_name.clone(),
                message: format!("not valid JSON: {e}"),
            })?,
            None => serde_json::Value::Null,
        };
        let bos_token = special_token(&config, "bos_token");
        let eos_token = special_token(&config, "eos_token");
        let lookup = |t: &Option<String>, field: &str| -> Result<Option<u32>> {
            match t {
                None => Ok(None),
                Some(t) => inner.token_to_id(t).map(Some).ok_or_else(|| Error::Tokenizer {
                    path: config_name.clone(),
                    message: format!("`{field}` is {t:?}, which is not in the vocabulary of {json_name}. Hint: the two files belong to different tokenizers"),
                }),
            }
        };
        let bos_id = lookup(&bos_token, "bos_token")?;
        let eos_ids = lookup(&eos_token, "eos_token")?.into_iter().collect();
        // `chat_template` is a string, or a list of {"name", "template"} with "default" the one
        // apply_chat_template uses when no name is given.
        let chat_template = match config.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(|t| t.as_str())
                .map(str::to_owned),
            _ => None,
        };
        let mut byte_pieces: Vec<u32> = (0..=255u8).filter_map(|b| inner.token_to_id(&format!("<0x{b:02X}>"))).collect();
        byte_pieces.sort_unstable();
        let mut special_ids: Vec<u32> =
            inner.get_added_tokens_decoder().iter().filter(|(_, t)| t.special).map(|(&id, _)| id).collect();
        special_ids.sort_unstable();
        Ok(Tokenizer {
            special_ids,
            vocab_size: inner.get_vocab_size(true),
            byte_pieces,
            source: json_name,
            bos_token,
            bos_id,
            eos_token,
            eos_ids,
            unk_token: special_token(&config, "unk_token"),
            pad_token: special_token(&config, "pad_token"),
            add_bos_token: config.get("add_bos_token").and_then(|v| v.as_bool()),
            chat_template,
            inner,
        })
    }

    fn err(&self, message: impl std::fmt::Display) -> Error {
        Error::Tokenizer { path: self.source.clone(), message: message.to_string() }
    }

    /// Text to ids. With `add_special_tokens` the post-processor adds what the model expects
    /// (for Llama-2: `<s>` first), exactly as `transformers` does.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, add_special_tokens).map_err(|e| self.err(format!("encode failed: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Ids to text. Ids outside the vocabulary are an error (the tokenizers crate would drop
    /// them silently).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let vocab = self.vocab_size();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::TokenOutOfRange { id, vocab_size: vocab });
        }
        self.inner.decode(ids, skip_special_tokens).map_err(|e| self.err(format!("decode failed: {e}")))
    }

    /// Number of ids the tokenizer can produce, added tokens included (the model's vocab_size
    /// may be larger: padded embedding rows).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// The id of tokenizer_config.json's `eos_token` (empty when there is none; the model's
    /// generation_config.json may name more).
    pub fn eos_ids(&self) -> Vec<u32> {
        self.eos_ids.clone()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// `add_bos_token` from tokenizer_config.json, when given.
    pub fn add_bos_token(&self) -> Option<bool> {
        self.add_bos_token
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Whether `id` is a byte-fallback piece such as `<0x0A>`.
    pub fn is_byte_piece(&self, id: u32) -> bool {
        self.byte_pieces.binary_search(&id).is_ok()
    }

    /// Whether `id` is a special added token (`<s>`, `<|eot_id|>`).
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.binary_search(&id).is_ok()
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Replaces the chat template (for models whose files carry none, or a user override).
    pub fn set_chat_template(&mut self, template: Option<String>) {
        self.chat_template = template;
    }

    /// Renders the conversation with the model's chat template, as
    /// `tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` does.
    /// The result already contains the template's BOS when it writes one: encode it with
    /// `add_special_tokens = false` when it starts with the BOS token, or BOS appears twice.
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self.chat_template.as_deref().ok_or_else(|| Error::ChatTemplate {
            message: "this tokenizer has no chat template (no `chat_template` in tokenizer_config.json, \
                      no chat_template.jinja); use plain generation instead of chat"
                .into(),
        })?;
        render_chat_template(
            template,
            messages,
            add_generation_prompt,
            &[
                ("bos_token", self.bos_token.as_deref()),
                ("eos_token", self.eos_token.as_deref()),
                ("unk_token", self.unk_token.as_deref()),
                ("pad_token", self.pad_token.as_deref()),
            ],
        )
    }

    /// A decoder for ids produced one at a time; special tokens are skipped. The pieces it
    /// returns concatenate to `decode(all_ids, true)`.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self, true, &[])
    }

    /// Like [`Tokenizer::stream_decoder`], continuing after `context` ids (the prompt) whose text
    /// is not emitted: the pieces concatenate to the part of `decode(context + generated)` after
    /// `decode(context)`. This keeps the leading space of the first generated word, which
    /// `decode(generated)` alone strips for sentencepiece-style tokenizers.
    pub fn stream_decoder_with(&self, skip_special_tokens: bool, context: &[u32]) -> StreamDecoder<'_> {
        StreamDecoder::new(self, skip_special_tokens, context)
    }
}

/// Renders an HF chat template. Mirrors transformers' Jinja2 environment: `trim_blocks`,
/// `lstrip_blocks`, loop controls, `raise_exception`, `strftime_now`, a `tojson` that behaves like
/// Python's `json.dumps` (no HTML escaping, `", "`/`": "` separators), Python string methods
/// (`.strip()`, `.split()`, `.startswith()`, ...), and Python's spelling of booleans and None.
pub fn render_chat_template(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    special_tokens: &[(&str, Option<&str>)],
) -> Result<String> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| Error::ChatTemplate { message: format!("template syntax set-up: {e}") })?;
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(|out, state, value| match value.kind() {
        // Jinja2 prints Python objects with str(): True/False/None.
        ValueKind::Bool => out.write_str(if value.is_true() { "True" } else { "False" }).map_err(Into::into),
        ValueKind::None => out.write_str("None").map_err(Into::into),
        _ => minijinja::escape_formatter(out, state, value),
    });
    env.add_function("raise_exception", |message: String| -> std::result::Result<Value, minijinja::Error> {
        Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
    });
    env.add_function("strftime_now", |format: String| -> String { strftime(&format, &now()) });
    env.add_filter("tojson", tojson);

    let tmpl = env.template_from_str(template).map_err(|e| Error::ChatTemplate { message: format!("does not parse: {e:#}") })?;
    let mut ctx = std::collections::BTreeMap::<&str, Value>::new();
    ctx.insert("messages", Value::from(minijinja::value::Serde(messages)));
    ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
    for (name, token) in special_tokens {
        if let Some(token) = token {
            ctx.insert(name, Value::from(*token));
        }
    }
    tmpl.render(ctx).map_err(|e| {
        let message = if e.kind() == ErrorKind::InvalidOperation && e.detail().is_some() && e.name().is_some() {
            // raise_exception: the template's own message is the useful part.
            format!("the template raised: {}", e.detail().unwrap_or_default())
        } else {
            format!("rendering failed: {e:#}")
        };
        Error::ChatTemplate { message }
    })
}

/// `tojson(indent=None)` as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=indent)`.
fn tojson(value: Value, indent: Option<Value>, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = match kwargs.get::<Option<usize>>("indent")? {
        Some(i) => Some(i),
        None => match indent {
            Some(v) if v.is_integer() => v.as_i64().map(|i| i.max(0) as usize),
            _ => None,
        },
    };
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: bool = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(&mut out, &value, indent, sort_keys, 0)?;
    Ok(Value::from_safe_string(out))
}

fn write_json(out: &mut String, v: &Value, indent: Option<usize>, sort_keys: bool, depth: usize) -> std::result::Result<(), minijinja::Error> {
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * depth));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if let Some(i) = v.as_i64() {
                out.push_str(&i.to_string());
            } else {
                let f = f64::try_from(v.clone())?;
                out.push_str(&match f {
                    f if f.is_nan() => "NaN".into(),
                    f if f.is_infinite() => (if f > 0.0 { "Infinity" } else { "-Infinity" }).into(),
                    f => format!("{f:?}"),
                });
            }
        }
        ValueKind::String => json_string(out, v.as_str().unwrap_or_default()),
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if sort_keys {
                keys.sort();
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                let key: Cow<str> = match k.as_str() {
                    Some(s) => Cow::Borrowed(s),
                    None => Cow::Owned(k.to_string()),
                };
                json_string(out, &key);
                out.push_str(": ");
                write_json(out, &v.get_item(k)?, indent, sort_keys, depth + 1)?;
            }
            newline(out, depth);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_json(out, item, indent, sort_keys, depth + 1)?;
            }
            newline(out, depth);
            out.push(']');
        }
        _ => json_string(out, &v.to_string()),
    }
    Ok(())
}

/// Python's json string escaping with ensure_ascii=False.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A calendar date and time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl DateTime {
    /// The civil date of `secs` seconds after 1970-01-01T00:00:00 (Howard Hinnant's
    /// days-to-civil algorithm).
    pub fn from_unix(secs: i64) -> DateTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        DateTime { year, month, day, hour: rem / 3600, minute: rem / 60 % 60, second: rem % 60 }
    }

    fn is_leap(&self) -> bool {
        (self.year % 4 == 0 && self.year % 100 != 0) || self.year % 400 == 0
    }

    fn day_of_year(&self) -> u32 {
        const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        CUM[(self.month - 1) as usize] + self.day + u32::from(self.month > 2 && self.is_leap())
    }

    /// 0 = Monday.
    fn weekday(&self) -> u32 {
        // Days since 1970-01-01 (a Thursday) from the inverse of from_unix.
        let (y, m) = if self.month <= 2 { (self.year - 1, self.month + 9) } else { (self.year, self.month - 3) };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let doy = (153 * m as i64 + 2) / 5 + self.day as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        (days + 3).rem_euclid(7) as u32
    }
}

/// The time `strftime_now` reports: local time in the browser (JS `Date`), UTC natively (the
/// standard library knows no time zones; templates use it for a "Today Date:" line).
fn now() -> DateTime {
    #[cfg(target_arch = "wasm32")]
    {
        let d = js_sys::Date::new_0();
        DateTime {
            year: d.get_full_year() as i64,
            month: d.get_month() + 1,
            day: d.get_date(),
            hour: d.get_hours(),
            minute: d.get_minutes(),
            second: d.get_seconds(),
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        DateTime::from_unix(secs)
    }
}

/// C `strftime` for the directives chat templates use (%d %m %Y %y %b %B %a %A %H %I %M %S %p
/// %j %e %%); other directives are copied through verbatim.
pub fn strftime(format: &str, t: &DateTime) -> String {
    const MONTHS: [&str; 12] =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    let month = MONTHS[(t.month - 1) as usize];
    let weekday = DAYS[t.weekday() as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{:02}", t.day)),
            Some('e') => out.push_str(&format!("{:2}", t.day)),
            Some('m') => out.push_str(&format!("{:02}", t.month)),
            Some('Y') => out.push_str(&t.year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", t.year.rem_euclid(100))),
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('a') => out.push_str(&weekday[..3]),
            Some('A') => out.push_str(weekday),
            Some('H') => out.push_str(&format!("{:02}", t.hour)),
            Some('I') => out.push_str(&format!("{:02}", (t.hour + 11) % 12 + 1)),
            Some('M') => out.push_str(&format!("{:02}", t.minute)),
            Some('S') => out.push_str(&format!("{:02}", t.second)),
            Some('p') => out.push_str(if t.hour < 12 { "AM" } else { "PM" }),
            Some('j') => out.push_str(&format!("{:03}", t.day_of_year())),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Turns ids generated one at a time into text pieces that are safe to print.
///
/// It decodes a short window of recent ids and emits what the newest id added (the approach of
/// text-generation-inference and tokenizers' DecodeStream): decoding windows rather than single
/// ids is what makes sentencepiece's "▁" spaces and GPT-2's byte-level pieces come out right.
/// Text is held back while it ends in U+FFFD (an incomplete UTF-8 sequence) and while the
/// newest id is a byte-fallback piece (`<0xF0>`): HF's ByteFallback decoder decodes a whole run
/// of byte pieces at once and turns *every* byte of an invalid run into U+FFFD, so a complete
/// 🦙 followed by a stray continuation byte decodes as five U+FFFD; only the end of the run
/// settles its text. The window's text is checked against the text already emitted; should a
/// decoder ever rewrite earlier text, it falls back to decoding everything, so the pieces always
/// concatenate to the full decode (or `finish` reports the divergence as an error).
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    skip_special_tokens: bool,
    /// Every id seen, context first.
    ids: Vec<u32>,
    /// Number of leading ids that are context.
    context_len: usize,
    /// Window start: the ids of the last emitted piece begin here.
    prefix_offset: usize,
    /// Ids before this have had their text emitted (or are settled context).
    read_offset: usize,
    /// decode(ids[prefix_offset..read_offset]).
    prefix_text: String,
    /// decode(settled context), then every piece after it.
    emitted: String,
    /// Bytes of context text still to swallow from the next pieces: the context's trailing run
    /// of byte pieces is re-read (a continuation can change how it decodes) but not re-emitted.
    skip: usize,
    started: bool,
}

impl<'a> StreamDecoder<'a> {
    fn new(tok: &'a Tokenizer, skip_special_tokens: bool, context: &[u32]) -> Self {
        StreamDecoder {
            tok,
            skip_special_tokens,
            ids: context.to_vec(),
            context_len: context.len(),
            prefix_offset: 0,
            read_offset: context.len(),
            prefix_text: String::new(),
            emitted: String::new(),
            skip: 0,
            started: context.is_empty(),
        }
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tok.decode(ids, self.skip_special_tokens)
    }

    /// The ids pushed so far (context excluded).
    pub fn ids(&self) -> &[u32] {
        &self.ids[self.context_len..]
    }

    /// Settles where the context's text ends: ids after the last one that is neither a
    /// byte-fallback piece nor part of an unfinished character are read again with the first
    /// generated ids.
    fn start(&mut self) -> Result<()> {
        self.started = true;
        let context_text = self.decode(&self.ids)?;
        let mut read = self.context_len;
        while read > 0 && (self.tok.is_byte_piece(self.ids[read - 1]) || self.skipped(self.ids[read - 1])) {
            read -= 1;
        }
        let mut text = if read == self.context_len { context_text.clone() } else { self.decode(&self.ids[..read])? };
        let floor = read.saturating_sub(8);
        while read > floor && text.ends_with('\u{FFFD}') {
            read -= 1;
            text = self.decode(&self.ids[..read])?;
        }
        if text.ends_with('\u{FFFD}') || !context_text.starts_with(&text) {
            read = self.context_len;
            text = context_text.clone();
        }
        self.skip = context_text.len() - text.len();
        self.read_offset = read;
        self.prefix_offset = 0;
        self.prefix_text = text.clone();
        self.emitted = text;
        Ok(())
    }

    /// Ids that `decode` drops before its decoder runs.
    fn skipped(&self, id: u32) -> bool {
        self.skip_special_tokens && self.tok.is_special(id)
    }

    /// Drops the context text that was re-read from the start of `piece`.
    fn take(&mut self, piece: String) -> Option<String> {
        self.emitted.push_str(&piece);
        let piece = if self.skip > 0 {
            let mut cut = self.skip.min(piece.len());
            while !piece.is_char_boundary(cut) {
                cut += 1;
            }
            self.skip -= cut.min(self.skip);
            piece[cut..].to_owned()
        } else {
            piece
        };
        if piece.is_empty() { None } else { Some(piece) }
    }

    /// Feeds one generated id; returns newly completed text, if any. Never returns a broken
    /// UTF-8 sequence: byte-fallback pieces are held until their character completes.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        if id as usize >= self.tok.vocab_size() {
            return Err(Error::TokenOutOfRange { id, vocab_size: self.tok.vocab_size() });
        }
        if !self.started {
            self.start()?;
        }
        self.ids.push(id);
        // Hold while the newest decoded id is a byte piece: its run may still turn invalid.
        let newest = self.ids[self.read_offset..].iter().rev().find(|&&id| !self.skipped(id));
        if newest.is_some_and(|&id| self.tok.is_byte_piece(id)) {
            return Ok(None);
        }
        let new_text = self.decode(&self.ids[self.prefix_offset..])?;
        if new_text.len() <= self.prefix_text.len() || new_text.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        let piece = if new_text.starts_with(&self.prefix_text) {
            new_text[self.prefix_text.len()..].to_owned()
        } else {
            // The window decoded differently from before: fall back to the full text.
            let full = self.decode(&self.ids)?;
            match full.strip_prefix(self.emitted.as_str()) {
                Some(rest) if !rest.is_empty() => rest.to_owned(),
                Some(_) => return Ok(None),
                None => return Err(self.diverged(&full)),
            }
        };
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        self.prefix_text = self.decode(&self.ids[self.prefix_offset..self.read_offset])?;
        Ok(self.take(piece))
    }

    /// Any text still held at the end (an unfinished character comes out as U+FFFD, as
    /// `decode` writes it).
    pub fn finish(&mut self) -> Result<Option<String>> {
        if self.ids.len() == self.context_len {
            return Ok(None);
        }
        let full = self.decode(&self.ids)?;
        let rest = match full.strip_prefix(self.emitted.as_str()) {
            Some(rest) => rest.to_owned(),
            None => return Err(self.diverged(&full)),
        };
        self.prefix_offset = self.ids.len();
        self.read_offset = self.ids.len();
        self.prefix_text.clear();
        Ok(self.take(rest))
    }

    fn diverged(&self, full: &str) -> Error {
        self.tok.err(format!(
            "streaming decode diverged from the full decode: emitted {:?}, full text {:?}. Hint: this tokenizer's decoder rewrites earlier text; decode the whole sequence instead",
            self.emitted, full
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_formats_like_c() {
        // 2024-07-26 13:05:09 UTC was a Friday.
        let t = DateTime::from_unix(1_721_999_109);
        assert_eq!(t, DateTime { year: 2024, month: 7, day: 26, hour: 13, minute: 5, second: 9 });
        assert_eq!(strftime("%H:%M:%S %I%p", &t), "13:05:09 01PM");
        assert_eq!(strftime("%d %b %Y", &t), "26 Jul 2024");
        assert_eq!(strftime("%A %B %e, %y %j %%", &t), "Friday July 26, 24 208 %");
        let leap = DateTime::from_unix(951_782_400); // 2000-02-29
        assert_eq!(strftime("%Y-%m-%d %a %j", &leap), "2000-02-29 Tue 060");
        assert_eq!(strftime("%Y-%m-%d %a", &DateTime::from_unix(0)), "1970-01-01 Thu");
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let msgs = [ChatMessage::user("a")];
        let render = |t: &str| render_chat_template(t, &msgs, false, &[]).unwrap();
        assert_eq!(render(r#"{{ {"a": [1, 2.5, "x<y>&\"z\"\n"], "b": {}, "c": [], "d": none, "e": true} | tojson }}"#),
            r#"{"a": [1, 2.5, "x<y>&\"z\"\n"], "b": {}, "c": [], "d": null, "e": true}"#);
        assert_eq!(render(r#"{{ {"a": [1, "é"]} | tojson(indent=2) }}"#), "{\n  \"a\": [\n    1,\n    \"é\"\n  ]\n}");
    }

    #[test]
    fn raise_exception_becomes_a_chat_template_error() {
        let err = render_chat_template("{{ raise_exception('Only user and assistant roles') }}", &[], false, &[]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::ChatTemplate { .. }), "{msg}");
        assert!(msg.contains("Only user and assistant roles"), "{msg}");
        let err = render_chat_template("{% for %}", &[], false, &[]).unwrap_err();
        assert!(matches!(err, Error::ChatTemplate { .. }), "{err}");
    }

    #[test]
    fn python_style_output_of_bools_and_none() {
        let out = render_chat_template("{{ true }} {{ false }} {{ none }} {{ messages[0].content.strip().upper() }}", &[ChatMessage::user("  hi ")], false, &[]).unwrap();
        assert_eq!(out, "True False None HI");
    }
}
