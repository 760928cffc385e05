//! GPU memory known before loading: the plan `cria info` prints equals what loading allocates,
//! weights keep their checkpoint's width (BF16 stays BF16), and a model that does not fit the
//! device is refused with the numbers before a single weight is read.

mod common;

use cria::model::safetensors::{Dtype, HostTensor, TensorEntry};
use cria::model::synthetic::{self, SyntheticWeights};
use cria::model::{self, Llama, ModelOptions, WeightSource};
use cria::ops::attention::KvDType;
use cria::ops::WeightDType;
use cria::{Error, Gpu, GpuOptions, Result};
use std::path::PathBuf;
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(name)
}

/// Counts the rows read through it.
struct Counting<'a> {
    inner: &'a mut dyn WeightSource,
    rows_read: usize,
}

impl WeightSource for Counting<'_> {
    fn read_rows(&mut self, name: &str, rows: std::ops::Range<usize>) -> Result<HostTensor> {
        self.rows_read += rows.len();
        self.inner.read_rows(name, rows)
    }
    fn has(&self, name: &str) -> bool {
        self.inner.has(name)
    }
    fn names(&self) -> Vec<String> {
        self.inner.names()
    }
    fn entry(&self, name: &str) -> Result<TensorEntry> {
        self.inner.entry(name)
    }
    fn total_bytes(&self) -> u64 {
        self.inner.total_bytes()
    }
}

/// For every fixture checkpoint (F32, F16, BF16), every KV cache type, with and without a
/// conversion: the plan computed from headers alone is exactly what the loaded model holds.
#[test]
fn the_plan_is_what_loading_allocates() {
    let Some(gpu) = common::gpu() else { return };
    for (name, stored) in [("tinyllama-mini", "f32"), ("litellama-mini", "f16"), ("smollm-mini", "bf16")] {
        for (to, kv_cache) in [(None, KvDType::F16), (None, KvDType::F32), (Some(WeightDType::Q4_0), KvDType::F16)] {
            let options = ModelOptions { context: Some(100), weight_dtype: to, kv_cache };
            let mut files = model::open(&fixture(name)).unwrap();
            let plan = files.memory_plan(&options).unwrap();
            let llama = files.load(gpu.clone(), &options, &mut |_| {}).unwrap();
            assert_eq!(plan, llama.memory);
            assert_eq!(plan.total(), llama.allocated_bytes(), "{name} {to:?} {kv_cache:?}: {plan}");
            let types: Vec<&str> = plan.weights.iter().map(|(d, _)| d.name()).collect();
            assert_eq!(types, [to.map_or(stored, |t| t.name())], "{name}: weights are stored as {types:?}");
            let kv = 2 * 100 * llama.config.num_hidden_layers * llama.config.num_key_value_heads * llama.config.head_dim * kv_cache.bytes();
            assert_eq!(plan.kv_cache, kv as u64);
        }
    }
}

/// A BF16 checkpoint keeps its width: the bytes stored (and read per decoded token) are half
/// those of the same model widened to F32, and exactly those of its F16 twin.
#[test]
fn bf16_weights_stay_16_bit() {
    let config = synthetic::config("stories15m").unwrap();
    let plan = |dtype, to| Llama::memory_plan(&config, &SyntheticWeights::with_dtype(&config, dtype).unwrap(), &ModelOptions { weight_dtype: to, ..ModelOptions::default() }).unwrap();
    let (bf16, f16, f32) = (plan(Dtype::BF16, None), plan(Dtype::F16, None), plan(Dtype::BF16, Some(WeightDType::F32)));
    assert_eq!(bf16.weights, [(WeightDType::BF16, f16.weights[0].1)]);
    assert_eq!(2 * bf16.weights[0].1, f32.weights[0].1);
}

fn gpu_with_budget(bytes: u64) -> Option<Arc<Gpu>> {
    common::gpu()?;
    Some(Arc::new(pollster::block_on(Gpu::new(GpuOptions { memory_budget: Some(bytes), ..GpuOptions::default() })).unwrap()))
}

/// One byte short of what the plan needs: refused with the plan's numbers and a hint, and not a
/// single row read (nothing uploaded). With exactly enough, it loads.
#[test]
fn a_model_over_the_device_memory_is_refused_before_any_upload() {
    let config = synthetic::config("stories15m").unwrap();
    let options = ModelOptions { context: Some(256), ..ModelOptions::default() };
    let need = Llama::memory_plan(&config, &SyntheticWeights::new(&config), &options).unwrap().total();
    let Some(small) = gpu_with_budget(need - 1) else { return };
    let mut weights = SyntheticWeights::new(&config);
    let mut counting = Counting { inner: &mut weights, rows_read: 0 };
    let err = Llama::load(small, config.clone(), &mut counting, &options, &mut |_| {}).err().expect("refused");
    assert_eq!(counting.rows_read, 0, "weights were read before the refusal");
    match &err {
        Error::OutOfMemory { bytes, available, .. } => assert_eq!((*bytes, *available), (need, need - 1)),
        other => panic!("expected OutOfMemory, got {other}"),
    }
    let text = err.to_string();
    for part in [format!("{need} bytes"), format!("{} bytes", need - 1), "KV cache".into(), "memory budget".into(), "Hint:".into()] {
        assert!(text.contains(&part), "{text} lacks {part}");
    }

    let Some(enough) = gpu_with_budget(need) else { return };
    let mut weights = SyntheticWeights::new(&config);
    Llama::load(enough, config, &mut weights, &options, &mut |_| {}).unwrap();
}

/// The CPU device checks the plan against the host's memory: a model larger than the machine
/// (a TinyLlama shape with 16M-wide MLPs, ~4.4 TB of f16) is refused before a row is read,
/// naming host memory and where the figure comes from.
#[test]
fn a_model_over_the_host_memory_is_refused_on_the_cpu_before_any_read() {
    let Some((available, source)) = cria::model::memory::host_memory() else { return };
    let mut config = synthetic::config("tinyllama-1.1b").unwrap();
    config.intermediate_size = 1 << 24;
    let mut weights = SyntheticWeights::new(&config);
    let mut counting = Counting { inner: &mut weights, rows_read: 0 };
    let err = Llama::load(model::Device::cpu(), config, &mut counting, &ModelOptions { context: Some(256), ..ModelOptions::default() }, &mut |_| {}).err().expect("refused");
    assert_eq!(counting.rows_read, 0, "weights were read before the refusal");
    match &err {
        Error::OutOfMemory { memory, available: a, budget, .. } => {
            // MemAvailable moves while other tests run: the same figure, read moments apart.
            assert_eq!((*memory, budget.as_str()), ("host memory", source.as_str()));
            assert!((*a as f64 / available as f64 - 1.0).abs() < 0.25, "{a} bytes available at the load, {available} just before");
        }
        other => panic!("expected OutOfMemory, got {other}"),
    }
    assert!(err.to_string().contains("bytes of host memory") && err.to_string().contains("Hint: "), "{err}");
}

/// A KV cache over one storage binding is refused naming the context that would fit.
#[test]
fn a_kv_cache_over_the_binding_limit_is_refused_with_the_context_that_fits() {
    let Some(gpu) = common::gpu() else { return };
    let mut config = synthetic::config("stories15m").unwrap();
    config.max_position_embeddings = 1 << 30;
    let context = (gpu.max_binding_bytes() / (288 * 2) + 1) as usize;
    let mut weights = SyntheticWeights::new(&config);
    let mut counting = Counting { inner: &mut weights, rows_read: 0 };
    let err = Llama::load(gpu, config, &mut counting, &ModelOptions { context: Some(context), ..ModelOptions::default() }, &mut |_| {}).err().expect("refused");
    assert_eq!(counting.rows_read, 0);
    assert!(matches!(err, Error::ModelTooLarge { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("KV cache of one layer") && text.contains(&format!("at most {} tokens", context - 1)), "{text}");
}

/// Synthetic checkpoints of every float file type read back as their type.
/// A K-quant TinyLlama (every row whole 256-value blocks) needs the type's bits per weight on
/// the GPU: 4.5 for Q4_K, 6.5625 for Q6_K, against F16's 16, padding aside (known before load).
#[test]
fn k_quant_weights_take_their_bits_on_the_gpu() {
    let config = synthetic::config("tinyllama-1.1b").unwrap();
    let bytes = |dtype: Dtype| {
        let w = SyntheticWeights::with_dtype(&config, dtype).unwrap();
        let plan = Llama::memory_plan(&config, &w, &ModelOptions::default()).unwrap();
        assert_eq!(plan.weights.len(), 1, "{dtype:?}: {:?}", plan.weights);
        plan.weights[0].1 as f64
    };
    let f16 = bytes(Dtype::F16);
    for (dtype, bits) in [(WeightDType::Q4_K, 4.5), (WeightDType::Q6_K, 6.5625), (WeightDType::Q4_0, 4.5), (WeightDType::Q8_0, 8.5)] {
        let ratio = bytes(Dtype::Block(dtype)) / f16;
        assert!((ratio - bits / 16.0).abs() < 1e-3, "{} / f16 bytes: {ratio}, want {}", dtype.name(), bits / 16.0);
    }
}

#[test]
fn synthetic_weights_come_in_each_file_type() {
    let config = synthetic::config("stories15m").unwrap();
    for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16, Dtype::Block(WeightDType::Q4_0), Dtype::Block(WeightDType::Q4_K), Dtype::Block(WeightDType::Q6_K)] {
        let mut w = SyntheticWeights::with_dtype(&config, dtype).unwrap();
        let name = "model.layers.0.mlp.up_proj.weight";
        let entry = w.entry(name).unwrap();
        assert_eq!(entry.dtype, dtype);
        let cols = entry.shape[1];
        let rows = w.read_rows(name, 1..3).unwrap();
        assert_eq!(rows.natural_dtype(), dtype.natural());
        // Any range of rows is the same rows read whole, and every value is of the same size.
        let whole = w.read_rows(name, 0..3).unwrap().into_f32_rows(cols);
        let values = rows.into_f32_rows(cols);
        assert_eq!(values, whole[cols..], "{dtype:?}");
        let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.02 && max <= 0.0347, "{dtype:?}: max |w| {max}");
    }
}
