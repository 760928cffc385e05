//! Every kernel check of the runtime (`cria::ops::<op>::check`: GPU result against the plain-Rust
//! CPU reference) run in a browser through WebGPU: headless Chromium on SwiftShader here, which
//! has no shader-f16 and, through wgpu's WebGPU backend, no subgroups, so these exercise the
//! portability floor. Run with `scripts/test-web.sh`.
//!
//! A browser without a WebGPU adapter fails every test (never skips): a skipped browser test
//! would hide exactly the failure this file exists to catch.
#![cfg(target_arch = "wasm32")]

use cria::ops::check::CheckFailure;
use cria::{Gpu, GpuOptions};
use std::cell::OnceCell;
use std::future::Future;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// Fixed so a browser failure reproduces; the native tests (`cargo test -p cria`) draw fresh
/// seeds every run and cover the rest of the input space.
const SEED: u64 = 0x00C0_FFEE_2026;

thread_local! {
    /// One device for all tests of the page: pipelines compiled by one test are reused by the
    /// next (SwiftShader compiles slowly), as the native tests share one device per process.
    static GPU: OnceCell<&'static Gpu> = const { OnceCell::new() };
}

async fn gpu() -> &'static Gpu {
    if let Some(gpu) = GPU.with(|g| g.get().copied()) {
        return gpu;
    }
    let gpu = match Gpu::new(GpuOptions::default()).await {
        Ok(gpu) => &*Box::leak(Box::new(gpu)),
        Err(e) => panic!("no usable WebGPU device in this browser: {e}"),
    };
    GPU.with(|g| *g.get_or_init(|| gpu))
}

async fn run<F, Fut>(check: F)
where
    F: FnOnce(&'static Gpu, u64) -> Fut,
    Fut: Future<Output = Result<(), CheckFailure>>,
{
    let gpu = gpu().await;
    if let Err(e) = check(gpu, SEED).await {
        panic!("{e} [adapter {}, seed {SEED}]", gpu.info.name);
    }
}

/// The adapter really is the portability floor these tests claim to cover.
#[wasm_bindgen_test]
async fn adapter_is_the_portability_floor() {
    let gpu = gpu().await;
    wasm_bindgen_test::console_log!("{}", gpu.describe());
    assert!(!gpu.features.subgroups, "wgpu's WebGPU backend exposes no subgroups; got them on {}", gpu.info.name);
}

#[wasm_bindgen_test]
async fn add() {
    run(cria::ops::add::check).await;
}

#[wasm_bindgen_test]
async fn argmax() {
    run(cria::ops::argmax::check).await;
}

#[wasm_bindgen_test]
async fn attention() {
    run(cria::ops::attention::check).await;
}

#[wasm_bindgen_test]
async fn copy() {
    run(cria::ops::copy::check).await;
}

#[wasm_bindgen_test]
async fn embedding() {
    run(cria::ops::embedding::check).await;
}

#[wasm_bindgen_test]
async fn matmul() {
    run(cria::ops::matmul::check).await;
}

#[wasm_bindgen_test]
async fn matvec() {
    run(cria::ops::matvec::check).await;
}

/// The browser reports SwiftShader as a CPU adapter, so `matvec` above runs the 16 x 16 shape:
/// this runs the 64 x 4 shape discrete GPUs get, on a device of its own.
#[wasm_bindgen_test]
async fn matvec_gpu_shape() {
    let mut gpu = Gpu::new(GpuOptions::default()).await.expect("a WebGPU device");
    gpu.tuning = cria::gpu::Tuning::GPU;
    if let Err(e) = cria::ops::matvec::check(&gpu, SEED).await {
        panic!("{e} [adapter {}, seed {SEED}, 64 x 4 matvec]", gpu.info.name);
    }
}

#[wasm_bindgen_test]
async fn rms_norm() {
    run(cria::ops::rms_norm::check).await;
}

#[wasm_bindgen_test]
async fn rope() {
    run(cria::ops::rope::check).await;
}

#[wasm_bindgen_test]
async fn sample() {
    run(cria::ops::sample::check).await;
}

#[wasm_bindgen_test]
async fn softmax() {
    run(cria::ops::softmax::check).await;
}

#[wasm_bindgen_test]
async fn glu() {
    run(cria::ops::glu::check).await;
}

/// The CPU device's kernels as the browser runs them (wasm32, `simd128` vectorized code, no
/// threads) against the same references: every weight type's matvec, the pointwise ops, RoPE
/// with the f16 cache append, and attention.
#[wasm_bindgen_test]
fn cpu_kernels_in_wasm_simd128() {
    assert_eq!(cria::cpu::matvec::Kernel::best().name(), "wasm simd128", "the module was built without simd128");
    for (what, result) in [
        ("matvec", cria::cpu::matvec::check(SEED)),
        ("pointwise", cria::cpu::ops::check_pointwise(SEED)),
        ("attention", cria::cpu::ops::check_attention(SEED)),
    ] {
        if let Err(e) = result {
            panic!("cpu {what}: {e} [seed {SEED}]");
        }
    }
}
