//! One module per op: host-side dispatch, the plain-Rust CPU reference and its checks live
//! together, next to one shader in `shaders/`. Every op records into a [`Recorder`]; none
//! submits or allocates on its own.
//!
//! Conventions: activations are row-major f32; weight matrices are [`Matrix`] (rows padded for
//! aligned vector loads, split by rows under the binding limit). Shapes are in each op's header.

pub mod check;
mod matrix;

pub mod add;
pub mod argmax;
pub mod attention;
pub mod copy;
pub mod embedding;
pub mod glu;
pub mod matmul;
pub mod matvec;
pub mod rms_norm;
pub mod rope;
pub mod sample;
pub mod softmax;

pub use matrix::{Layout, Matrix, MatrixChunk, ReadRows, WeightDType, PIECE_BYTES};

use crate::error::Error;
use crate::gpu::Recorder;

/// Workgroup grid for `groups` workgroups along one logical axis: WebGPU caps each dimension
/// at 65535 workgroups, so large counts fold into y. Shaders recover the linear id as
/// `wid.x + wid.y * nwg.x`.
pub(crate) fn grid(rec: &Recorder<'_>, groups: u32) -> [u32; 3] {
    let max = rec.gpu().limits.max_compute_workgroups_per_dimension.max(1);
    if groups <= max {
        [groups, 1, 1]
    } else {
        [max, groups.div_ceil(max), 1]
    }
}

/// Checks a buffer holds at least `elems` f32/u32 values.
pub(crate) fn need(op: &'static str, what: &str, buf: &crate::GpuBuffer, elems: usize) -> crate::Result<()> {
    let have = buf.len / 4;
    if have < elems as u64 {
        return Err(Error::shape(op, format!("{what} length (elements)"), format!(">= {elems}"), have));
    }
    Ok(())
}

/// Shared native test set-up: one device for all tests of the process.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod testing {
    use super::check::{seed, CheckFailure};
    use crate::gpu::{Gpu, GpuOptions};
    use std::sync::{Mutex, OnceLock};

    /// A valid kernel for tests that only need some pipeline.
    pub const ANY_KERNEL: crate::gpu::KernelSpec = crate::gpu::KernelSpec {
        name: "any",
        source: "@compute @workgroup_size(1) fn main() {}",
        entry: "main",
        bindings: &[],
    };

    fn make(options: GpuOptions) -> Option<Gpu> {
        match pollster::block_on(Gpu::new(options)) {
            Ok(gpu) => Some(gpu),
            Err(e) if std::env::var("CRIA_REQUIRE_GPU").as_deref() == Ok("1") => {
                panic!("CRIA_REQUIRE_GPU=1 but no usable GPU: {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED (no GPU adapter; set CRIA_REQUIRE_GPU=1 to make this fail): {e}");
                None
            }
        }
    }

    /// The default device (every optional feature offered turned on).
    pub fn gpu() -> Option<&'static Gpu> {
        static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
        GPU.get_or_init(|| make(GpuOptions::default())).as_ref()
    }

    /// A device with SHADER_F16 and subgroups turned off: the portability floor.
    pub fn floor_gpu() -> Option<&'static Gpu> {
        static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
        GPU.get_or_init(|| make(GpuOptions { disable_f16: true, disable_subgroups: true, ..Default::default() }))
            .as_ref()
    }

    /// A device of its own with the given kernel shapes (one per shape, kept for the process).
    pub fn tuned_gpu(tuning: crate::gpu::Tuning) -> Option<&'static Gpu> {
        static GPUS: OnceLock<Mutex<Vec<(crate::gpu::Tuning, &'static Gpu)>>> = OnceLock::new();
        let mut gpus = GPUS.get_or_init(|| Mutex::new(Vec::new())).lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, g)) = gpus.iter().find(|(t, _)| *t == tuning) {
            return Some(g);
        }
        let mut gpu = make(GpuOptions::default())?;
        gpu.tuning = tuning;
        let gpu: &'static Gpu = Box::leak(Box::new(gpu));
        gpus.push((tuning, gpu));
        Some(gpu)
    }

    /// Runs an async check on the given device with a fresh seed; panics with the full report.
    pub fn run<F, Fut>(gpu: Option<&'static Gpu>, check: F)
    where
        F: FnOnce(&'static Gpu, u64) -> Fut,
        Fut: std::future::Future<Output = Result<(), CheckFailure>>,
    {
        let Some(gpu) = gpu else { return };
        let seed = seed();
        if let Err(e) = pollster::block_on(check(gpu, seed)) {
            panic!("{e} [adapter {}, seed {seed}]", gpu.info.name);
        }
    }
}
