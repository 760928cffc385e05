//! The `cria` binary end to end on the GPU adapter (lavapipe in CI): info, generate with the
//! bundled model and with model directories, chat over stdin, and errors for bad input.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cria(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cria")).args(args).output().expect("run cria")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Without a GPU adapter the binary reports an error; CI sets CRIA_REQUIRE_GPU=1 so that
/// this fails instead of skipping.
fn have_gpu() -> bool {
    let out = cria(&["info"]);
    if out.status.success() {
        return true;
    }
    assert_ne!(std::env::var("CRIA_REQUIRE_GPU").as_deref(), Ok("1"), "cria info failed: {}", text(&out.stderr));
    eprintln!("SKIPPED (no GPU adapter): {}", text(&out.stderr));
    false
}

/// A BF16 checkpoint keeps its width: the bytes read per decoded token are those of the same
/// model in F16, about half of BF16 widened to F32 (norms stay f32 in all three).
#[test]
fn bench_bf16_checkpoints_read_16_bit_weights() {
    if !have_gpu() {
        return;
    }
    let bytes = |extra: &[&str]| {
        let out = cria(&[&["bench", "--device", "gpu", "--synthetic", "stories15m", "--prompt-len", "4", "--gen-len", "2", "--json"][..], extra].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
        (v["weight_bytes_per_token"].as_u64().unwrap(), v["weights"].as_str().unwrap().to_string(), v["memory_bytes"].as_u64().unwrap())
    };
    let (bf16, types, memory) = bytes(&["--dtype", "bf16"]);
    assert_eq!(types, "bf16");
    let (f16, _, f16_memory) = bytes(&["--dtype", "f16"]);
    let (widened, types, _) = bytes(&["--dtype", "bf16", "--quant", "f32"]);
    assert_eq!(types, "f32");
    assert_eq!((bf16, memory), (f16, f16_memory));
    let ratio = widened as f64 / bf16 as f64;
    assert!((1.95..2.0).contains(&ratio), "f32 / bf16 bytes per token: {ratio}");
}

/// A synthetic K-quant checkpoint (random Q4_K / Q6_K blocks, as a GGUF file holds them) runs
/// in its blocks: the weights are reported in the type and the bytes per token are fewer than
/// F16's (stories15m's 288-wide rows are padded to two 256-value blocks, so not 4.5/16 of them).
#[test]
fn bench_k_quant_checkpoints() {
    if !have_gpu() {
        return;
    }
    let run = |dtype: &str| {
        let out = cria(&["bench", "--device", "gpu", "--synthetic", "stories15m", "--prompt-len", "4", "--gen-len", "2", "--json", "--dtype", dtype]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
        assert_eq!(v["weights"].as_str().unwrap(), dtype);
        assert!(v["decode_tokens_per_s"].as_f64().unwrap() > 0.0, "{v}");
        v["weight_bytes_per_token"].as_u64().unwrap()
    };
    let f16 = run("f16");
    for dtype in ["q4_k", "q6_k"] {
        assert!(run(dtype) < f16, "{dtype}");
    }
}

/// `info` prints the GPU memory a model will need, and refuses (exit 1, the numbers and a hint)
/// when a memory budget is too small.
#[test]
fn info_reports_gpu_memory_and_refuses_a_model_that_does_not_fit() {
    if !have_gpu() {
        return;
    }
    let out = cria(&["info", "--synthetic", "tinyllama-1.1b", "--context", "2048"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("GPU memory at a context of 2048 tokens: weights 2098.4 MiB (f16 2098.0 MiB, f32 norms 0.4 MiB) + KV cache 44.0 MiB (2048 tokens, f16)"), "{stdout}");
    assert!(stdout.contains("fits this device"), "{stdout}");
    let out = cria(&["info", "--synthetic", "tinyllama-1.1b", "--context", "2048", "--kv-cache", "f32", "--gpu-memory", "1024"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("does not fit this device") && stderr.contains("KV cache 88.0 MiB") && stderr.contains("1073741824 bytes") && stderr.contains("Hint: store the weights smaller"), "{stderr}");
    let out = cria(&["info", "--synthetic", "tinyllama-1.1b", "--quant", "q4_0", "--gpu-memory", "1024"]);
    assert!(out.status.success() && text(&out.stdout).contains("q4_0 "), "{}{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn info_prints_adapter_features_limits_and_model() {
    if !have_gpu() {
        return;
    }
    let out = cria(&["info", "--model", root().join("models/shakespeare").to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for want in ["adapter:", "backend", "features:", "max_storage_buffer_binding_size", "layers 4", "parameters", "GPU memory at a context of", "fits this device"] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
}

#[test]
fn bundled_model_and_its_directory_generate_the_same_text() {
    if !have_gpu() {
        return;
    }
    let args = ["--prompt", "ROMEO:", "--max-tokens", "24", "--temperature", "0", "--print-ids"];
    let bundled = cria(&[&["generate"][..], &args].concat());
    assert!(bundled.status.success(), "{}", text(&bundled.stderr));
    let dir = root().join("models/shakespeare");
    let from_dir = cria(&[&["generate", "--model", dir.to_str().unwrap()][..], &args].concat());
    assert!(from_dir.status.success(), "{}", text(&from_dir.stderr));
    assert_eq!(text(&bundled.stdout), text(&from_dir.stdout));
    assert!(text(&bundled.stdout).trim().len() > 20, "too little text: {:?}", text(&bundled.stdout));
    assert!(text(&bundled.stderr).contains("ids: ["));

    // Sampling with a seed is reproducible, and a different seed changes the text.
    let sample = |seed: &str| text(&cria(&["generate", "--prompt", "KING:", "--max-tokens", "32", "--temperature", "1.0", "--seed", seed]).stdout);
    assert_eq!(sample("5"), sample("5"));
    assert_ne!(sample("5"), sample("6"));
}

#[test]
fn chat_reads_stdin_and_replies() {
    if !have_gpu() {
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_cria"))
        .args(["chat", "--max-tokens", "16", "--temperature", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"Good morrow, cousin.\nWhat news?\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.matches("generated").count(), 2, "two replies expected:\n{stderr}");
}

#[test]
fn bad_input_is_an_error_message_not_a_panic() {
    let missing = cria(&["generate", "--model", "/nonexistent/model", "--prompt", "hi"]);
    let stderr = text(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: ") && !stderr.contains("panicked"), "{stderr}");
    if !have_gpu() {
        return;
    }
    let empty = cria(&["generate", "--prompt", ""]);
    assert!(text(&empty.stderr).contains("the prompt is empty"), "{}", text(&empty.stderr));
    let top_p = cria(&["generate", "--prompt", "ROMEO:", "--top-p", "1.5"]);
    let stderr = text(&top_p.stderr);
    assert!(stderr.contains("sampling option top_p = 1.5 is out of range") && !stderr.contains("panicked"), "{stderr}");
    let long = cria(&["generate", "--prompt", "ROMEO:", "--max-tokens", "100000"]);
    let stderr = text(&long.stderr);
    assert!(stderr.contains("context holds 256") && !stderr.contains("panicked"), "{stderr}");
}

/// `cria generate` on the transformers fixtures prints the greedy tokens and text that
/// transformers produced (tests/fixtures/models/*/golden.json).
#[test]
fn generate_matches_transformers_greedy_output() {
    if !have_gpu() {
        return;
    }
    for name in ["tinyllama-mini", "litellama-mini", "smollm-mini", "qwen2-mini", "qwen3-mini", "gemma3-mini"] {
        let dir = root().join("tests/fixtures/models").join(name);
        let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
        let prompt = golden["prompt"].as_str().unwrap();
        let out = cria(&["generate", "--device", "gpu", "--model", dir.to_str().unwrap(), "--prompt", prompt, "--max-tokens", "32", "--temperature", "0", "--print-ids"]);
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        let want: Vec<u64> = serde_json::from_value(golden["generated_ids"].clone()).unwrap();
        let want = format!("ids: {want:?}");
        assert!(stderr.contains(&want), "{name}: expected {want}, got:\n{stderr}");
        let want_text = golden["continuation_text"].as_str().unwrap();
        assert_eq!(text(&out.stdout), format!("{want_text}\n"), "{name}: streamed text");
        // The CPU device: the same ids and text.
        let out = cria(&["generate", "--device", "cpu", "--model", dir.to_str().unwrap(), "--prompt", prompt, "--max-tokens", "32", "--temperature", "0", "--print-ids"]);
        assert!(out.status.success() && text(&out.stderr).contains(&want), "{name} on the CPU: expected {want}, got:\n{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{want_text}\n"), "{name} on the CPU: streamed text");
        // The family's GGUF file from llama.cpp's converter, where there is one: no flag either.
        let gguf = root().join("tests/fixtures/gguf").join(format!("{name}-{}.gguf", if name == "qwen2-mini" { "f16" } else { "bf16" }));
        if name.starts_with("qwen") || name.starts_with("gemma") {
            let out = cria(&["generate", "--device", "gpu", "--model", gguf.to_str().unwrap(), "--prompt", prompt, "--max-tokens", "32", "--temperature", "0", "--print-ids"]);
            let stderr = text(&out.stderr);
            assert!(out.status.success() && stderr.contains(&want), "{name} GGUF: expected {want}, got:\n{stderr}");
        }
    }
}

/// The bundled model gives the same greedy text on the CPU device as on the GPU; `auto` says
/// which device it chose (on a machine whose only adapter is a software one: the CPU); an
/// unknown device is an error naming the choices.
#[test]
fn the_cpu_device_gives_the_gpu_text() {
    if !have_gpu() {
        return;
    }
    let run = |device: &str| cria(&["generate", "--device", device, "--prompt", "ROMEO:", "--max-tokens", "24", "--temperature", "0"]);
    let (gpu, cpu, auto) = (run("gpu"), run("cpu"), run("auto"));
    assert!(gpu.status.success() && cpu.status.success() && auto.status.success(), "{}", text(&cpu.stderr));
    assert_eq!(text(&cpu.stdout), text(&gpu.stdout));
    assert_eq!(text(&auto.stdout), text(&gpu.stdout));
    assert!(text(&auto.stderr).contains("device: "), "{}", text(&auto.stderr));
    let bad = run("tpu");
    assert!(!bad.status.success() && text(&bad.stderr).contains("choose auto, gpu or cpu"), "{}", text(&bad.stderr));
}

#[test]
fn bench_reports_speed_against_the_copy_ceiling() {
    if !have_gpu() {
        return;
    }
    let out = cria(&["bench", "--device", "gpu", "--prompt-len", "16", "--gen-len", "4", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    for field in ["prefill_tokens_per_s", "decode_tokens_per_s", "weight_bytes_per_token", "achieved_gb_per_s", "copy_gb_per_s", "ratio_to_copy", "dispatches_per_token", "submits_per_token"] {
        assert!(v[field].as_f64().is_some_and(|x| x > 0.0), "{field} in {v}");
    }
}

/// The issue's own command: a TinyLlama-1.1B-shaped synthetic model quantized to q4_0 at load,
/// reported as JSON with every field. (A short run: lavapipe decodes ~0.7 GB per token.)
#[test]
fn bench_synthetic_tinyllama_q4_0_json() {
    if !have_gpu() {
        return;
    }
    let out = cria(&["bench", "--device", "gpu", "--synthetic", "tinyllama-1.1b", "--quant", "q4_0", "--prompt-len", "4", "--gen-len", "2", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(v["model"], "synthetic tinyllama-1.1b (f16 checkpoint)");
    assert_eq!(v["weights"], "q4_0");
    assert_eq!(v["parameters"], 1_100_048_384u64);
    for field in ["prefill_tokens_per_s", "decode_tokens_per_s", "weight_bytes_per_token", "achieved_gb_per_s", "copy_gb_per_s", "ratio_to_copy", "dispatches_per_token", "submits_per_token"] {
        assert!(v[field].as_f64().is_some_and(|x| x > 0.0), "{field} in {v}");
    }
    // q4_0 stores 18 bytes per 32 weights: ~0.56 bytes per weight read per token (+ norms).
    let per_weight = v["weight_bytes_per_token"].as_f64().unwrap() / (1_100_048_384.0 - 32000.0 * 2048.0);
    assert!((0.56..0.60).contains(&per_weight), "{per_weight} bytes per weight");
    let unknown = cria(&["bench", "--synthetic", "gpt-9", "--json"]);
    assert!(text(&unknown.stderr).contains("tinyllama-1.1b, litellama-460m, stories15m"), "{}", text(&unknown.stderr));
}

/// `cria quantize` writes a directory that `cria generate` loads directly, with the same output
/// as quantizing at load; a bad target type is an error message.
#[test]
fn quantize_writes_a_model_that_loads_directly() {
    if !have_gpu() {
        return;
    }
    let src = root().join("tests/fixtures/models/tinyllama-mini");
    let out = std::env::temp_dir().join(format!("cria-cli-quantize-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let q = cria(&["quantize", "--model", src.to_str().unwrap(), "--to", "q8_0", "--out", out.to_str().unwrap()]);
    assert!(q.status.success(), "{}", text(&q.stderr));
    let args = ["--prompt", "Hello", "--max-tokens", "12", "--temperature", "0"];
    let from_file = cria(&[&["generate", "--model", out.to_str().unwrap()][..], &args].concat());
    let at_load = cria(&[&["generate", "--model", src.to_str().unwrap(), "--quant", "q8_0"][..], &args].concat());
    assert!(from_file.status.success(), "{}", text(&from_file.stderr));
    assert_eq!(text(&from_file.stdout), text(&at_load.stdout));
    assert!(!text(&from_file.stdout).trim().is_empty());
    std::fs::remove_dir_all(&out).unwrap();
    let bad = cria(&["quantize", "--model", src.to_str().unwrap(), "--to", "q9_9", "--out", out.to_str().unwrap()]);
    assert!(text(&bad.stderr).contains("the file type `q9_9`") && text(&bad.stderr).contains("q4_k_m"), "{}", text(&bad.stderr));
    assert!(!out.exists(), "a failed quantize leaves nothing behind");
    // A type Cria reads but does not write.
    let bad = cria(&["quantize", "--model", src.to_str().unwrap(), "--to", "q3_k", "--out", out.to_str().unwrap()]);
    assert!(text(&bad.stderr).contains("quantizing weights to q3_k"), "{}", text(&bad.stderr));
    assert!(!out.exists(), "a failed quantize leaves nothing behind");
}

/// A GGUF file (made from the same fixture by tests/fixtures/make_gguf.py) generates the same
/// greedy text as transformers; `info` reads its metadata; `quantize` writes GGUF from GGUF.
#[test]
fn gguf_files_generate_like_their_safetensors_originals() {
    if !have_gpu() {
        return;
    }
    for (name, file) in [("tinyllama-mini", "tinyllama-mini-f32.gguf"), ("litellama-mini", "litellama-mini-f16.gguf"), ("smollm-mini", "smollm-mini-bf16.gguf")] {
        let gguf = root().join("tests/fixtures/gguf").join(file);
        let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root().join("tests/fixtures/models").join(name).join("golden.json")).unwrap()).unwrap();
        let prompt = golden["prompt"].as_str().unwrap();
        let out = cria(&["generate", "--model", gguf.to_str().unwrap(), "--prompt", prompt, "--max-tokens", "32", "--temperature", "0", "--print-ids"]);
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{file}: {stderr}");
        let want: Vec<u64> = serde_json::from_value(golden["generated_ids"].clone()).unwrap();
        assert!(stderr.contains(&format!("ids: {want:?}")), "{file}: expected {want:?}, got:\n{stderr}");
        assert_eq!(text(&out.stdout), format!("{}\n", golden["continuation_text"].as_str().unwrap()), "{file}: streamed text");
    }
    let q4 = root().join("tests/fixtures/gguf/tinyllama-mini-q4_0.gguf");
    let info = cria(&["info", "--model", q4.to_str().unwrap()]);
    assert!(text(&info.stdout).contains("layers 2, hidden 128"), "{}", text(&info.stdout));
    // GGUF in, GGUF out: the Q8_0 file generates what quantizing the F32 file at load does.
    let f32 = root().join("tests/fixtures/gguf/tinyllama-mini-f32.gguf");
    let q8 = std::env::temp_dir().join(format!("cria-cli-q8-{}.gguf", std::process::id()));
    let _ = std::fs::remove_file(&q8);
    let quantize = cria(&["quantize", "--model", f32.to_str().unwrap(), "--to", "q8_0", "--out", q8.to_str().unwrap()]);
    assert!(quantize.status.success(), "{}", text(&quantize.stderr));
    let args = ["--prompt", "Hello", "--max-tokens", "12", "--temperature", "0"];
    let from_file = cria(&[&["generate", "--model", q8.to_str().unwrap()][..], &args].concat());
    let at_load = cria(&[&["generate", "--model", f32.to_str().unwrap(), "--quant", "q8_0"][..], &args].concat());
    assert!(from_file.status.success(), "{}", text(&from_file.stderr));
    assert_eq!(text(&from_file.stdout), text(&at_load.stdout));
    let again = cria(&["quantize", "--model", f32.to_str().unwrap(), "--to", "q8_0", "--out", q8.to_str().unwrap()]);
    assert!(text(&again.stderr).contains("already exists"), "nothing is overwritten: {}", text(&again.stderr));
    std::fs::remove_file(&q8).unwrap();
    let to_dir = cria(&["quantize", "--model", q4.to_str().unwrap(), "--to", "q8_0", "--out", "/tmp/never-written"]);
    assert!(text(&to_dir.stderr).contains("GGUF in, GGUF out"), "{}", text(&to_dir.stderr));
    let from_dir = cria(&["quantize", "--model", root().join("tests/fixtures/models/tinyllama-mini").to_str().unwrap(), "--to", "q8_0", "--out", "/tmp/never-written.gguf"]);
    assert!(text(&from_dir.stderr).contains("convert_hf_to_gguf.py"), "{}", text(&from_dir.stderr));
    assert!(!std::path::Path::new("/tmp/never-written").exists() && !std::path::Path::new("/tmp/never-written.gguf").exists());
    let bad = std::env::temp_dir().join(format!("cria-not-a-gguf-{}.gguf", std::process::id()));
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00truncated").unwrap();
    let err = cria(&["generate", "--model", bad.to_str().unwrap(), "--prompt", "hi"]);
    let stderr = text(&err.stderr);
    assert!(stderr.starts_with("error: ") && !stderr.contains("panicked"), "{stderr}");
    std::fs::remove_file(&bad).unwrap();
}
