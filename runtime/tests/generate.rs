//! Generation on a real model (the tinyllama-mini transformers fixture): cancellation, stop
//! strings, seeds, the context limit, and the streamed text equalling the decoded tokens.

mod common;

use cria::generate::{generate, FinishReason, GenerateOptions};
use cria::model::{self, ModelOptions};
use cria::sampling::SamplingOptions;
use cria::tokenizer::Tokenizer;
use cria::Error;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

fn setup() -> Option<(cria::model::Llama, Tokenizer)> {
    let gpu = common::gpu()?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/tinyllama-mini");
    let llama = model::load_llama(gpu, &dir, &ModelOptions { context: Some(64), ..ModelOptions::default() }, &mut |_| {}).unwrap();
    Some((llama, Tokenizer::from_dir(&dir).unwrap()))
}

fn run(llama: &mut cria::model::Llama, tok: &Tokenizer, options: &GenerateOptions, cancel: &AtomicBool) -> (cria::Result<cria::generate::Generation>, String) {
    let mut streamed = String::new();
    let r = pollster::block_on(generate(llama, tok, "The little cria", options, cancel, &mut |t| streamed.push_str(t)));
    (r, streamed)
}

#[test]
fn generation_behaviours() {
    let Some((mut llama, tok)) = setup() else { return };
    let never = AtomicBool::new(false);
    let sampled = |seed| GenerateOptions { max_tokens: 20, sampling: SamplingOptions { temperature: 0.9, top_p: 0.95, seed, ..Default::default() }, ..Default::default() };

    // Same seed, same output; the streamed text is the whole text.
    let (a, streamed) = run(&mut llama, &tok, &sampled(11), &never);
    let a = a.unwrap();
    assert_eq!(a.text, streamed);
    let (b, _) = run(&mut llama, &tok, &sampled(11), &never);
    assert_eq!(a.tokens, b.unwrap().tokens);
    let (c, _) = run(&mut llama, &tok, &sampled(12), &never);
    assert_ne!(a.tokens, c.unwrap().tokens);

    // A stop string taken from the greedy output cuts the text right before it.
    let greedy = GenerateOptions { max_tokens: 20, ..Default::default() };
    let (g, _) = run(&mut llama, &tok, &greedy, &never);
    let g = g.unwrap();
    let chars: Vec<char> = g.text.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let (s, streamed) = run(&mut llama, &tok, &GenerateOptions { stop: vec![stop.clone()], ..greedy.clone() }, &never);
    let s = s.unwrap();
    assert_eq!(s.finish, FinishReason::Stop);
    assert_eq!(s.text, streamed);
    assert_eq!(s.text, g.text[..g.text.find(&stop).unwrap()]);

    // Cancellation from inside the stream: a typed error; the model then generates again.
    let cancel = AtomicBool::new(false);
    let mut pieces = 0;
    let r = pollster::block_on(generate(&mut llama, &tok, "The little cria", &greedy, &cancel, &mut |_| {
        pieces += 1;
        cancel.store(true, Ordering::Relaxed);
    }));
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    assert!(pieces >= 1);
    let (again, _) = run(&mut llama, &tok, &greedy, &never);
    assert_eq!(again.unwrap().tokens, g.tokens);

    // Prompt plus requested tokens beyond the 64-token context.
    let (r, _) = run(&mut llama, &tok, &GenerateOptions { max_tokens: 60, ..greedy }, &never);
    assert!(matches!(r, Err(Error::ContextOverflow { context: 64, .. })), "{r:?}");
}

/// Sampling runs on the GPU; the CPU sampler with the same seed, fed the model's logits step by
/// step, picks the same tokens (both follow sampling::candidates/choose).
#[test]
fn gpu_sampling_matches_the_cpu_sampler() {
    let Some((mut llama, tok)) = setup() else { return };
    let never = AtomicBool::new(false);
    for sampling in [
        SamplingOptions { temperature: 0.9, top_p: 0.9, seed: 5, ..Default::default() },
        SamplingOptions { temperature: 1.3, top_k: 20, min_p: 0.02, repetition_penalty: 1.3, seed: 6, ..Default::default() },
    ] {
        let options = GenerateOptions { max_tokens: 16, sampling: sampling.clone(), ..Default::default() };
        let (gpu_run, _) = run(&mut llama, &tok, &options, &never);
        let gpu_tokens = gpu_run.unwrap().tokens;
        assert_eq!(gpu_tokens.len(), 16);

        let prompt = tok.encode("The little cria", true).unwrap();
        let mut sampler = cria::sampling::Sampler::new(sampling.clone());
        let mut history = prompt.clone();
        llama.forward(&prompt, 0).unwrap();
        let mut cpu_tokens = Vec::new();
        for _ in 0..16 {
            let mut logits = pollster::block_on(llama.logits()).unwrap();
            let next = sampler.sample(&mut logits, &history);
            cpu_tokens.push(next);
            llama.forward(&[next], history.len()).unwrap();
            history.push(next);
        }
        assert_eq!(gpu_tokens, cpu_tokens, "{sampling:?}");
    }
}

/// Warming up (running every kernel once at load) leaves no trace: the same greedy and sampled
/// replies as a model that was not warmed up, also when the context is shorter than the
/// warm-up prefill.
#[test]
fn warm_up_changes_no_reply() {
    let Some((mut cold, tok)) = setup() else { return };
    let never = AtomicBool::new(false);
    let greedy = GenerateOptions { max_tokens: 20, ..Default::default() };
    let sampled = GenerateOptions { max_tokens: 20, sampling: SamplingOptions { temperature: 0.9, top_p: 0.95, repetition_penalty: 1.2, seed: 5, ..Default::default() }, ..Default::default() };
    let want = [run(&mut cold, &tok, &greedy, &never).0.unwrap().tokens, run(&mut cold, &tok, &sampled, &never).0.unwrap().tokens];
    let Some((mut warm, _)) = setup() else { return };
    pollster::block_on(warm.warm_up()).unwrap();
    assert_eq!(run(&mut warm, &tok, &greedy, &never).0.unwrap().tokens, want[0]);
    assert_eq!(run(&mut warm, &tok, &sampled, &never).0.unwrap().tokens, want[1]);

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/tinyllama-mini");
    for context in [1, 2, 5] {
        let mut tiny = model::load_llama(common::gpu().unwrap(), &dir, &ModelOptions { context: Some(context), ..ModelOptions::default() }, &mut |_| {}).unwrap();
        pollster::block_on(tiny.warm_up()).unwrap_or_else(|e| panic!("warm-up with a context of {context}: {e}"));
    }
}
