//! Text generation: prompt -> tokens -> prefill -> decode loop with sampling, streaming
//! detokenisation (never broken UTF-8), eos and stop strings, cancellation, and a typed error
//! when the prompt plus the requested tokens do not fit the context.

use crate::error::{Error, Result};
use crate::model::Llama;
use crate::sampling::{Sampler, SamplingOptions};
use crate::tokenizer::{ChatMessage, Tokenizer};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampling: SamplingOptions,
    /// Generation stops before the first occurrence of any of these strings.
    pub stop: Vec<String>,
    /// Extra end-of-sequence ids on top of the model's.
    pub eos_ids: Vec<u32>,
    /// Add the tokenizer's special tokens (BOS) to the prompt. False for chat prompts whose
    /// template already wrote them.
    pub add_special_tokens: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { max_tokens: 128, sampling: SamplingOptions::default(), stop: Vec::new(), eos_ids: Vec::new(), add_special_tokens: true }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// max_tokens reached.
    Length,
    /// An end-of-sequence token.
    Eos,
    /// A stop string.
    Stop,
}

#[derive(Clone, Debug)]
pub struct Generation {
    pub text: String,
    pub prompt_tokens: usize,
    pub tokens: Vec<u32>,
    pub finish: FinishReason,
    /// Seconds from start to the first generated token (prefill + first sample).
    pub time_to_first_token: f64,
    /// Seconds spent decoding after the first token.
    pub decode_seconds: f64,
}

impl Generation {
    pub fn decode_tokens_per_second(&self) -> f64 {
        let n = self.tokens.len().saturating_sub(1);
        if self.decode_seconds > 0.0 { n as f64 / self.decode_seconds } else { 0.0 }
    }
}

/// A conversation turned into a prompt: the model's chat template when it has one (which writes
/// BOS itself), else a plain "User:/Assistant:" transcript that stops at the next "\nUser:".
#[derive(Clone, Debug, PartialEq)]
pub struct ChatPrompt {
    pub text: String,
    /// Templated prompts already hold their special tokens.
    pub add_special_tokens: bool,
    /// A stop string the reply needs (the transcript's next turn), if any.
    pub stop: Option<String>,
}

impl ChatPrompt {
    pub fn new(tokenizer: &Tokenizer, messages: &[ChatMessage]) -> Result<ChatPrompt> {
        if tokenizer.has_chat_template() {
            return Ok(ChatPrompt { text: tokenizer.apply_chat_template(messages, true)?, add_special_tokens: false, stop: None });
        }
        let mut text = String::new();
        for m in messages {
            let mut role = m.role.chars();
            let role = role.next().map(|f| f.to_uppercase().collect::<String>() + role.as_str()).unwrap_or_default();
            text.push_str(&format!("{role}: {}\n", m.content));
        }
        text.push_str("Assistant:");
        Ok(ChatPrompt { text, add_special_tokens: true, stop: Some("\nUser:".into()) })
    }

    /// `options` adjusted for this prompt (special tokens, the transcript's stop string).
    pub fn options(&self, options: &GenerateOptions) -> GenerateOptions {
        let mut o = options.clone();
        o.add_special_tokens = self.add_special_tokens;
        if let Some(stop) = &self.stop
            && !o.stop.contains(stop) {
                o.stop.push(stop.clone());
            }
        o
    }
}

/// Seconds on a monotonic-enough clock, on every target.
pub fn now_seconds() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_secs_f64()
    }
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now() / 1000.0
    }
}

/// Gives the browser's event loop a turn (a message through a `MessageChannel`: a macrotask,
/// without `setTimeout`'s 4 ms clamp), so that messages to the worker (a cancel) are handled
/// between the steps of work that never waits on the GPU.
#[cfg(target_arch = "wasm32")]
pub async fn yield_to_host() {
    use js_sys::{Function, Promise, Reflect};
    use wasm_bindgen::{JsCast, JsValue};
    let promise = Promise::new(&mut |resolve: Function, _reject: Function| {
        let post = || -> std::result::Result<(), JsValue> {
            let ctor: Function = Reflect::get(&js_sys::global(), &"MessageChannel".into())?.dyn_into()?;
            let channel = Reflect::construct(&ctor, &js_sys::Array::new())?;
            let (port1, port2) = (Reflect::get(&channel, &"port1".into())?, Reflect::get(&channel, &"port2".into())?);
            Reflect::set(&port1, &"onmessage".into(), &resolve)?;
            Reflect::get(&port2, &"postMessage".into())?.dyn_into::<Function>()?.call1(&port2, &JsValue::NULL)?;
            Ok(())
        };
        // Without MessageChannel, the promise still resolves (a microtask: no turn, no hang).
        if post().is_err() {
            let _ = resolve.call0(&JsValue::NULL);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Generates from `prompt`, calling `on_text` with each new piece of text as it completes.
/// `cancel` set to true stops before the next token with `Error::Cancelled` (the text streamed
/// so far stays valid). The model's KV cache is reused from position 0.
pub async fn generate(
    model: &mut Llama,
    tokenizer: &Tokenizer,
    prompt: &str,
    options: &GenerateOptions,
    cancel: &AtomicBool,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(Error::EmptyPrompt);
    }
    let ids = tokenizer.encode(prompt, options.add_special_tokens)?;
    generate_from_ids(model, tokenizer, &ids, options, cancel, on_text).await
}

/// As [`generate`], from prompt token ids.
pub async fn generate_from_ids(
    model: &mut Llama,
    tokenizer: &Tokenizer,
    prompt_ids: &[u32],
    options: &GenerateOptions,
    cancel: &AtomicBool,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation> {
    if prompt_ids.is_empty() {
        return Err(Error::EmptyPrompt);
    }
    options.sampling.validate()?;
    if prompt_ids.len() + options.max_tokens > model.context {
        return Err(Error::ContextOverflow { prompt: prompt_ids.len(), requested: options.max_tokens, context: model.context });
    }
    let mut eos: Vec<u32> = model.config.eos_token_ids.clone();
    eos.extend(tokenizer.eos_ids());
    eos.extend(&options.eos_ids);
    let mut sampler = Sampler::new(options.sampling.clone());
    let mut history = prompt_ids.to_vec();
    // Decoding continues after the prompt so the first word keeps its leading space.
    let mut stream = tokenizer.stream_decoder_with(true, prompt_ids);
    let mut stops = StopFilter::new(&options.stop);
    let mut out = Generation {
        text: String::new(),
        prompt_tokens: prompt_ids.len(),
        tokens: Vec::new(),
        finish: FinishReason::Length,
        time_to_first_token: 0.0,
        decode_seconds: 0.0,
    };
    let t0 = now_seconds();
    let mut t_first = t0;
    let mut pending: &[u32] = prompt_ids;
    let mut pos = 0;
    let mut last = [0u32; 1];
    while out.tokens.len() < options.max_tokens {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        // Either way the choice is made on the GPU: one submit and a 4-byte read per token.
        let next = if sampler.options.is_plain_greedy() {
            model.forward_greedy(pending, pos).await?
        } else {
            let u = sampler.next_uniform();
            model.forward_sample(pending, pos, &sampler.options, u, &history).await?
        };
        pos += pending.len();
        if out.tokens.is_empty() {
            t_first = now_seconds();
            out.time_to_first_token = t_first - t0;
        }
        if eos.contains(&next) {
            out.finish = FinishReason::Eos;
            break;
        }
        out.tokens.push(next);
        history.push(next);
        if let Some(piece) = stream.push(next)? {
            let (emit, stopped) = stops.push(&piece);
            if !emit.is_empty() {
                on_text(&emit);
                out.text.push_str(&emit);
            }
            if stopped {
                out.finish = FinishReason::Stop;
                break;
            }
        }
        last[0] = next;
        pending = &last;
    }
    out.decode_seconds = now_seconds() - t_first;
    if out.finish != FinishReason::Stop {
        let tail = stream.finish()?.unwrap_or_default();
        let (mut emit, stopped) = stops.push(&tail);
        if stopped {
            out.finish = FinishReason::Stop;
        } else {
            emit.push_str(&stops.flush());
        }
        if !emit.is_empty() {
            on_text(&emit);
            out.text.push_str(&emit);
        }
    }
    Ok(out)
}

/// Holds back text that might be the start of a stop string; cuts at the first full match.
struct StopFilter<'a> {
    stops: Vec<&'a str>,
    held: String,
}

impl<'a> StopFilter<'a> {
    fn new(stops: &'a [String]) -> Self {
        StopFilter { stops: stops.iter().map(String::as_str).filter(|s| !s.is_empty()).collect(), held: String::new() }
    }

    /// Returns the text safe to emit and whether a stop string was found.
    fn push(&mut self, piece: &str) -> (String, bool) {
        self.held.push_str(piece);
        if let Some(cut) = self.stops.iter().filter_map(|s| self.held.find(s)).min() {
            let emit = self.held[..cut].to_string();
            self.held.clear();
            return (emit, true);
        }
        // Keep the longest suffix that is a proper prefix of some stop string.
        let keep_from = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&self.held[i..])))
            .unwrap_or(self.held.len());
        let emit = self.held[..keep_from].to_string();
        self.held.drain(..keep_from);
        (emit, false)
    }

    fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_cut_across_pieces() {
        let stops = vec!["\nUser:".to_string(), "END".to_string()];
        let mut f = StopFilter::new(&stops);
        assert_eq!(f.push("Hello"), ("Hello".into(), false));
        assert_eq!(f.push(" wor\n"), (" wor".into(), false)); // "\n" might start "\nUser:"
        assert_eq!(f.push("Us"), ("".into(), false));
        assert_eq!(f.push("er: hi"), ("".into(), true));
        let mut f = StopFilter::new(&stops);
        assert_eq!(f.push("aEN"), ("a".into(), false));
        assert_eq!(f.push("x"), ("ENx".into(), false));
        assert_eq!(f.push("éEND tail"), ("é".into(), true));
        let mut f = StopFilter::new(&[]);
        assert_eq!(f.push("anything"), ("anything".into(), false));
    }
}
