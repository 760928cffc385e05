//! The CUDA C++ kernels (`train-native/kernels/*.cu`), embedded in the binary and compiled at
//! run time by NVRTC for the device's architecture. `common.cuh` is prepended to every file (a
//! `#line` directive keeps NVRTC's line numbers those of the .cu file), so no include path is
//! needed at run time.

use super::libs::{self, Library};
use crate::error::{Result, TrainError};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};

pub const COMMON: &str = include_str!("../../kernels/common.cuh");

/// (file stem, source, kernels it defines). The registry the device loads from.
pub const KERNEL_FILES: &[(&str, &str, &[&str])] = &[
    (
        "adamw",
        include_str!("../../kernels/adamw.cu"),
        &["adamw_f32"],
    ),
    (
        "attention",
        include_str!("../../kernels/attention.cu"),
        &[
            "attention_fwd",
            "attention_bwd_delta",
            "attention_bwd_dq",
            "attention_bwd_dkdv",
        ],
    ),
    (
        "cast",
        include_str!("../../kernels/cast.cu"),
        &["cast_f32_to_bf16", "cast_bf16_to_f32"],
    ),
    (
        "cross_entropy",
        include_str!("../../kernels/cross_entropy.cu"),
        &["softmax_xent"],
    ),
    (
        "embedding",
        include_str!("../../kernels/embedding.cu"),
        &["embedding_fwd", "embedding_bwd"],
    ),
    (
        "residual",
        include_str!("../../kernels/residual.cu"),
        &["residual_add_f32_bf16", "sumsq_partial_f32"],
    ),
    (
        "rms_norm",
        include_str!("../../kernels/rms_norm.cu"),
        &["rms_norm_fwd", "rms_norm_bwd"],
    ),
    (
        "rope",
        include_str!("../../kernels/rope.cu"),
        &["rope_bf16"],
    ),
    (
        "swiglu",
        include_str!("../../kernels/swiglu.cu"),
        &["swiglu_fwd", "swiglu_bwd"],
    ),
];

/// The full NVRTC input for one kernel file.
pub fn full_source(stem: &str, src: &str) -> String {
    format!("#line 1 \"common.cuh\"\n{COMMON}\n#line 1 \"{stem}.cu\"\n{src}")
}

/// The NVRTC target for a compute capability: the virtual architecture `compute_XY`, so the
/// driver JIT-compiles the PTX for the exact GPU (and for GPUs newer than this table).
pub fn arch_for(major: i32, minor: i32) -> &'static str {
    match (major, minor) {
        (..=6, _) | (7, 0..=4) => "compute_70",
        (7, _) => "compute_75",
        (8, 0..=5) => "compute_80",
        (8, 6..=8) => "compute_86",
        (8, _) => "compute_89",
        (9, _) => "compute_90",
        (10, _) => "compute_100",
        _ => "compute_120",
    }
}

/// Compile one kernel file to PTX. NVRTC's log comes back in [`TrainError::KernelCompile`].
pub fn compile(stem: &str, src: &str, arch: &'static str) -> Result<Ptx> {
    libs::require(&[Library::Nvrtc])?;
    let opts = CompileOptions {
        arch: Some(arch),
        name: Some(format!("{stem}.cu")),
        // Precise division and sqrt (the CPU reference's IEEE results); fused multiply-add on.
        prec_div: Some(true),
        prec_sqrt: Some(true),
        fmad: Some(true),
        options: vec!["--std=c++17".into()],
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(full_source(stem, src), opts).map_err(|e| match e {
        CompileError::CompileError { log, .. } => TrainError::KernelCompile {
            kernel: stem.into(),
            arch: arch.into(),
            log: log.to_string_lossy().into_owned(),
        },
        other => TrainError::Cuda {
            op: format!("NVRTC on {stem}.cu"),
            message: other.to_string(),
        },
    })
}
