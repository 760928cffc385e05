//! Round trip: a model trained and exported by cria-train, loaded by the `cria` runtime on a
//! GPU adapter (lavapipe in CI), gives the trainer's logits within tolerance and the same
//! greedy continuation. Set CRIA_REQUIRE_GPU=1 to make a missing adapter a failure.

mod common;

use cria::model::{self, ModelOptions};
use cria::ops::check::{compare, MODEL_TOLERANCE};
use cria_train::export::{self, ExportDtype};
use cria_train::train::Trainer;
use std::sync::Arc;

fn gpu() -> Option<Arc<cria::Gpu>> {
    match pollster::block_on(cria::Gpu::new(cria::GpuOptions::default())) {
        Ok(g) => Some(Arc::new(g)),
        Err(e) if std::env::var("CRIA_REQUIRE_GPU").as_deref() == Ok("1") => panic!("CRIA_REQUIRE_GPU=1 but no GPU: {e}"),
        Err(e) => {
            eprintln!("SKIPPED (no GPU adapter): {e}");
            None
        }
    }
}

/// (argmax, margin to the runner-up)
fn top1(logits: &[f32]) -> (u32, f32) {
    let best = cria::sampling::argmax(logits) as usize;
    let second = logits.iter().enumerate().filter(|&(i, _)| i != best).map(|(_, &v)| v).fold(f32::NEG_INFINITY, f32::max);
    (best as u32, logits[best] - second)
}

#[test]
fn exported_model_runs_on_the_runtime_with_the_trainers_logits() {
    let Some(gpu) = gpu() else { return };
    let (dir, ds) = common::synthetic_dataset("runtime-roundtrip", 2, 400, 300);
    for (tied, dtype) in [(false, ExportDtype::F32), (true, ExportDtype::F32), (false, ExportDtype::F16)] {
        let mut m = common::micro_model(&ds);
        m.tie_word_embeddings = tied;
        let mut tr = Trainer::new(m, common::micro_train(30), ds.clone()).unwrap();
        for _ in 0..30 {
            tr.step().unwrap();
        }
        let out = dir.join(format!("hf-{tied}-{dtype:?}"));
        export::export_hf(&tr.model, tr.tokenizer_json(), &out, dtype).unwrap();
        // The trainer's reference runs on what was exported (f16 rounding included).
        let (reference, _) = export::load_hf(&out).unwrap();
        let vocab = ds.vocab_size;
        let prompt: Vec<u32> = (0..12).map(|i| (i * 7 + 3) % vocab as u32).collect();

        let mut llama = model::load_llama(gpu.clone(), &out, &ModelOptions::default(), &mut |_| {}).unwrap();
        let got = llama.forward_all_logits(&prompt, 0).unwrap();
        let what = format!("prefill logits, tied {tied}, {dtype:?}");
        compare(&what, 0, &got, &reference.logits(&prompt), MODEL_TOLERANCE).unwrap_or_else(|m| panic!("{m}"));

        // Greedy continuation, step by step.
        let mut seq = prompt.clone();
        for step in 0..24 {
            let want = reference.logits(&seq);
            let want_last = &want[(seq.len() - 1) * vocab..];
            let got = pollster::block_on(llama.logits()).unwrap();
            compare(&format!("{what}: step {step}"), 0, &got, want_last, MODEL_TOLERANCE).unwrap_or_else(|m| panic!("{m}"));
            let token = pollster::block_on(llama.argmax()).unwrap();
            let (want_token, margin) = top1(want_last);
            // A near-tie (within float noise of the two implementations) may break either way.
            if margin > 1e-4 {
                assert_eq!(token, want_token, "{what}: greedy token at step {step}");
            }
            llama.forward(&[token], seq.len()).unwrap();
            seq.push(token);
        }
    }
}
