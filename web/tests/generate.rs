//! The bundled Shakespeare model through the JS API (`Engine`) in a browser: greedy decoding
//! must give exactly the token ids the native CLI gives. Run with `scripts/test-web.sh`.
#![cfg(target_arch = "wasm32")]

use cria_web::Engine;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// From the native CLI on lavapipe (Mesa 25.0.7, llvmpipe), same bundled model:
/// `source ~/.cache/cria/lavapipe/env.sh && cargo run -q -p cria-cli -- generate --prompt "ROMEO:"
/// --max-tokens 32 --temperature 0 --print-ids` (prints `ids: [...]` on stderr).
const ROMEO_GREEDY_32: [u32; 32] = [
    222, 200, 1468, 1669, 1866, 1894, 1440, 81, 389, 266, 547, 547, 200, 37, 788, 46, 754, 15, 200, 42, 459, 962, 343, 291,
    568, 269, 868, 15, 200, 200, 60, 524,
];

/// The bundled model's files, handed to `Engine::load` as the npm package does: the folder's
/// small files as bytes by name, and the weights through a `read(offset, length)` function.
fn load_bundled(engine: &Engine) -> Result<(), JsValue> {
    const WEIGHTS: &[u8] = include_bytes!("../../models/shakespeare/model.safetensors");
    let spec = js_sys::Object::new();
    let set = |obj: &js_sys::Object, k: &str, v: &JsValue| js_sys::Reflect::set(obj, &JsValue::from_str(k), v).map(|_| ());
    set(&spec, "name", &"shakespeare".into())?;
    set(&spec, "format", &"folder".into())?;
    let files = js_sys::Object::new();
    for (name, bytes) in [
        ("config.json", &include_bytes!("../../models/shakespeare/config.json")[..]),
        ("generation_config.json", &include_bytes!("../../models/shakespeare/generation_config.json")[..]),
        ("tokenizer.json", &include_bytes!("../../models/shakespeare/tokenizer.json")[..]),
        ("tokenizer_config.json", &include_bytes!("../../models/shakespeare/tokenizer_config.json")[..]),
    ] {
        set(&files, name, &js_sys::Uint8Array::from(bytes).into())?;
    }
    set(&spec, "files", &files.into())?;
    let read = Closure::<dyn Fn(f64, f64) -> js_sys::Uint8Array>::new(|offset: f64, length: f64| {
        js_sys::Uint8Array::from(&WEIGHTS[offset as usize..(offset + length) as usize])
    });
    let file = js_sys::Object::new();
    js_sys::Reflect::set(&file, &"name".into(), &"model.safetensors".into())?;
    js_sys::Reflect::set(&file, &"size".into(), &(WEIGHTS.len() as f64).into())?;
    js_sys::Reflect::set(&file, &"read".into(), read.as_ref())?;
    set(&spec, "weights", &js_sys::Array::of1(&file).into())?;
    let uploaded = std::rc::Rc::new(std::cell::Cell::new((0.0, 0.0)));
    let seen = uploaded.clone();
    let on_progress = Closure::<dyn Fn(String, f64, f64)>::new(move |_tensor: String, done: f64, total: f64| seen.set((done, total)));
    // The memory plan arrives once, before any upload.
    let plans = std::rc::Rc::new(std::cell::RefCell::new(Vec::<(String, f64)>::new()));
    let (record, progress) = (plans.clone(), uploaded.clone());
    let on_plan = Closure::<dyn Fn(String)>::new(move |json: String| record.borrow_mut().push((json, progress.get().0)));
    let result = engine.load(spec.into(), on_progress.as_ref().unchecked_ref::<js_sys::Function>().clone(), on_plan.as_ref().unchecked_ref::<js_sys::Function>().clone());
    let (done, total) = uploaded.get();
    assert!(result.is_err() || (done == total && total > 0.0), "progress must end at the total: {done} of {total}");
    let plans = plans.borrow();
    if result.is_ok() {
        assert_eq!(plans.len(), 1, "one memory plan per load");
        let (json, uploaded_then) = &plans[0];
        let plan: serde_json::Value = serde_json::from_str(json).unwrap();
        assert!(plan["total"].as_f64().unwrap() > total && *uploaded_then == 0.0, "the plan ({json}) comes before the upload and counts more than the weights");
    }
    result
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(obj, &JsValue::from_str(key)).expect("result is an object")
}

#[wasm_bindgen_test]
async fn bundled_model_greedy_matches_the_native_cli() {
    let engine = match Engine::create(None).await {
        Ok(engine) => engine,
        Err(e) => panic!("no usable WebGPU device in this browser: {e:?}"),
    };
    assert_eq!(engine.device(), "gpu");
    greedy_matches_the_native_cli(&engine).await;
}

/// The same model code on the CPU kernels, compiled to wasm32 SIMD.
#[wasm_bindgen_test]
async fn bundled_model_greedy_on_the_cpu_matches_the_native_cli() {
    let engine = Engine::create(Some("cpu".into())).await.expect("the CPU device needs nothing of the browser");
    assert_eq!(engine.device(), "cpu");
    assert!(engine.describe().contains("wasm simd128"), "{}", engine.describe());
    greedy_matches_the_native_cli(&engine).await;
}

#[wasm_bindgen_test]
async fn an_unknown_device_is_refused_by_name() {
    let err = Engine::create(Some("npu".into())).await.err().expect("refused");
    let message = err.unchecked_into::<js_sys::Error>().message().as_string().unwrap_or_default();
    assert!(message.contains("\"npu\"") && message.contains("\"cpu\""), "{message}");
}

async fn greedy_matches_the_native_cli(engine: &Engine) {
    load_bundled(engine).expect("bundled model loads");
    let chunks = std::rc::Rc::new(std::cell::RefCell::new(String::new()));
    let sink = chunks.clone();
    let on_chunk = Closure::<dyn FnMut(String)>::new(move |text: String| sink.borrow_mut().push_str(&text));
    let promise = engine.generate("ROMEO:".into(), r#"{"max_tokens": 32, "temperature": 0}"#.into(), on_chunk.as_ref().unchecked_ref::<js_sys::Function>().clone());
    let result = match JsFuture::from(promise).await {
        Ok(result) => result,
        Err(e) => panic!("generate rejected: {e:?}"),
    };
    let tokens: Vec<u32> = js_sys::Array::from(&get(&result, "tokens")).iter().map(|v| v.as_f64().expect("token id") as u32).collect();
    assert_eq!(tokens, ROMEO_GREEDY_32, "greedy ids in the browser differ from the native CLI's");
    let text = get(&result, "text").as_string().expect("text");
    assert_eq!(*chunks.borrow(), text, "the streamed chunks must add up to the final text");
    assert_eq!(get(&result, "finish").as_string().as_deref(), Some("length"));
}

#[wasm_bindgen_test]
async fn bad_options_reject_with_the_runtime_message() {
    let engine = Engine::create(None).await.expect("WebGPU device");
    load_bundled(&engine).expect("bundled model loads");
    let noop = js_sys::Function::new_no_args("");
    let err = JsFuture::from(engine.generate("ROMEO:".into(), r#"{"max_new_tokens": 5}"#.into(), noop)).await.unwrap_err();
    let message = err.unchecked_into::<js_sys::Error>().message().as_string().unwrap_or_default();
    assert!(message.contains("max_tokens, temperature"), "{message}");
}
