//! Device memory a model will take, known before loading: [`MemoryPlan`] is computed from the
//! config and the tensor table alone (no weight is read), reported by `cria info`, the npm
//! package and the desktop app, and checked against the device before the first upload.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::attention::KvDType;
use crate::ops::WeightDType;
use std::fmt;

/// What a model holds on the GPU at a given context. Weights are counted as stored (padded
/// rows, quantized blocks); activations include sampling and decode scratch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Context length the KV cache is allocated for.
    pub context: usize,
    /// Bytes of weight matrices by stored type.
    pub weights: Vec<(WeightDType, u64)>,
    /// Bytes of norm vectors (f32).
    pub norms: u64,
    pub kv_cache: u64,
    pub kv_dtype: KvDType,
    pub activations: u64,
    /// The buffers that cannot be split (what each is, bytes), the KV cache first: each must fit
    /// one binding. Weight matrices are split by rows across bindings, so they are not here.
    pub unsplit: Vec<(String, u64)>,
}

impl MemoryPlan {
    pub fn weight_bytes(&self) -> u64 {
        self.weights.iter().map(|w| w.1).sum::<u64>() + self.norms
    }

    pub fn total(&self) -> u64 {
        self.weight_bytes() + self.kv_cache + self.activations
    }

    /// The largest buffer that cannot be split.
    pub fn largest(&self) -> (&str, u64) {
        self.unsplit.iter().fold(("nothing", 0), |m, (what, b)| if *b > m.1 { (what.as_str(), *b) } else { m })
    }

    /// Refuses, with the numbers, a model that does not fit `gpu`: a buffer over the binding
    /// limit, or a total over the device memory where the platform reports it (or a budget set
    /// in [`crate::gpu::GpuOptions::memory_budget`]).
    pub fn check(&self, gpu: &Gpu) -> Result<()> {
        let limit = gpu.max_binding_bytes();
        if let Some((what, bytes)) = self.unsplit.iter().find(|(_, b)| *b > limit) {
            let per_token = bytes / self.context.max(1) as u64;
            // Context-sized buffers (KV cache, RoPE table, sampler) shrink with the context.
            let hint = if what.contains("for a context of") {
                format!("load it with a shorter context (at most {} tokens on this device)", limit / per_token.max(1))
            } else {
                "this device's storage bindings are too small for this model".to_string()
            };
            return Err(Error::ModelTooLarge { what: what.clone(), bytes: *bytes, limit, hint });
        }
        self.check_budget(gpu.memory_budget(), "GPU memory")
    }

    /// Refuses, with the numbers, a model that does not fit the CPU device's memory: what the
    /// host has available ([`host_memory`]).
    pub fn check_host(&self) -> Result<()> {
        self.check_budget(host_memory(), "host memory")
    }

    fn check_budget(&self, budget: Option<(u64, String)>, memory: &'static str) -> Result<()> {
        if let Some((available, source)) = budget
            && self.total() > available
        {
            let kv_per_token = self.kv_cache / self.context.max(1) as u64;
            let spare = available.saturating_sub(self.weight_bytes() + self.activations);
            let hint = if spare >= kv_per_token * 256 {
                format!("load it with a shorter context (at most {} tokens fit), or store the weights smaller (--quant q4_0)", spare / kv_per_token.max(1))
            } else {
                "store the weights smaller (--quant q8_0 or q4_0), or use a device with more memory".to_string()
            };
            return Err(Error::OutOfMemory { memory, plan: self.to_string(), bytes: self.total(), available, budget: source, hint });
        }
        Ok(())
    }

    /// `{ context, weights: { TYPE: bytes, ... }, norms, kv_cache, kv_cache_type, activations,
    /// total }` (bytes), as the npm package reports it.
    pub fn to_json(&self) -> serde_json::Value {
        let weights: serde_json::Map<String, serde_json::Value> = self.weights.iter().map(|(d, b)| (d.name().to_string(), (*b).into())).collect();
        serde_json::json!({
            "context": self.context,
            "weights": weights,
            "norms": self.norms,
            "kv_cache": self.kv_cache,
            "kv_cache_type": self.kv_dtype.name(),
            "activations": self.activations,
            "total": self.total(),
        })
    }
}

/// Memory the CPU device may fill and where that figure comes from: in WebAssembly the 4 GiB a
/// 32-bit heap can address; on Linux the kernel's estimate of memory available without
/// swapping (`MemAvailable`); elsewhere unknown (not checked).
pub fn host_memory() -> Option<(u64, String)> {
    if cfg!(target_arch = "wasm32") {
        return Some((4 << 30, "the address space of 32-bit WebAssembly".to_string()));
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some((kib << 10, "the host's available memory (MemAvailable in /proc/meminfo)".to_string()))
}

/// Bytes in MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

impl fmt::Display for MemoryPlan {
    /// e.g. `weights 256.6 MiB (bf16 256.5 MiB, f32 norms 0.1 MiB) + KV cache 90.0 MiB (4096
    /// tokens, f16) + activations 12.9 MiB = 359.5 MiB`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self.weights.iter().map(|(d, b)| format!("{} {}", d.name(), mib(*b))).collect();
        parts.push(format!("f32 norms {}", mib(self.norms)));
        write!(
            f,
            "weights {} ({}) + KV cache {} ({} tokens, {}) + activations {} = {}",
            mib(self.weight_bytes()),
            parts.join(", "),
            mib(self.kv_cache),
            self.context,
            self.kv_dtype.name(),
            mib(self.activations),
            mib(self.total())
        )
    }
}
