//! Every CUDA kernel file compiles to PTX through NVRTC (no GPU needed), and a broken kernel
//! comes back as `TrainError::KernelCompile` carrying NVRTC's log.
//!
//! NVRTC comes from PyPI: `eval "$(scripts/get-nvrtc.sh ~/.cache/cria-nvrtc)"`.
//! `scripts/test-train.sh` does that and sets CRIA_REQUIRE_NVRTC=1, so a missing NVRTC fails
//! there; elsewhere these tests say they skipped (and pass vacuously only then).

use cria_train::TrainError;
use cria_train::cuda::kernels::{self, KERNEL_FILES};
use cria_train::cuda::libs::Library;

fn nvrtc_or_skip(test: &str) -> bool {
    if Library::Nvrtc.present() {
        return true;
    }
    if std::env::var("CRIA_REQUIRE_NVRTC").is_ok_and(|v| v == "1") {
        panic!(
            "{test}: CRIA_REQUIRE_NVRTC=1 but libnvrtc cannot be loaded; hint: {}",
            Library::Nvrtc.hint()
        );
    }
    eprintln!(
        "SKIPPED {test}: libnvrtc not found ({})",
        Library::Nvrtc.hint()
    );
    false
}

#[test]
fn every_kernel_file_compiles_to_ptx_for_ampere_and_hopper() {
    if !nvrtc_or_skip("every_kernel_file_compiles_to_ptx_for_ampere_and_hopper") {
        return;
    }
    // The files on disk and the embedded registry must agree: a new .cu must be registered.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.path().file_name()?.to_str().map(String::from))
        .filter(|n| n.ends_with(".cu"))
        .map(|n| n.trim_end_matches(".cu").to_string())
        .collect();
    on_disk.sort();
    let mut registered: Vec<String> = KERNEL_FILES.iter().map(|(s, _, _)| s.to_string()).collect();
    registered.sort();
    assert_eq!(
        on_disk, registered,
        "kernels/*.cu vs cuda::kernels::KERNEL_FILES"
    );
    for arch in ["compute_80", "compute_90"] {
        for &(stem, src, names) in KERNEL_FILES {
            let t = std::time::Instant::now();
            let ptx = kernels::compile(stem, src, arch)
                .unwrap_or_else(|e| panic!("{stem}.cu for {arch}: {e}"));
            let text = ptx.to_src();
            for name in names {
                assert!(
                    text.contains(&format!(".entry {name}(")),
                    "{stem}.cu for {arch}: no entry point {name} in the PTX"
                );
            }
            let target = arch.replace("compute_", "sm_");
            assert!(
                text.contains(&format!(".target {target}")),
                "{stem}.cu: PTX not for {target}"
            );
            println!(
                "{stem}.cu -> {arch}: {} bytes of PTX, {} kernels, {:.2} s",
                text.len(),
                names.len(),
                t.elapsed().as_secs_f64()
            );
        }
    }
}

#[test]
fn a_broken_kernel_returns_nvrtcs_log() {
    if !nvrtc_or_skip("a_broken_kernel_returns_nvrtcs_log") {
        return;
    }
    let src = "extern \"C\" __global__ void broken(float* out) {\n    out[threadIdx.x] = undefined_name;\n}\n";
    match kernels::compile("broken", src, "compute_90") {
        Err(TrainError::KernelCompile { kernel, arch, log }) => {
            println!("{log}");
            assert_eq!((kernel.as_str(), arch.as_str()), ("broken", "compute_90"));
            assert!(
                log.contains("undefined_name"),
                "log names the bad identifier: {log}"
            );
            // The #line directive maps errors to the .cu file's own line numbers.
            assert!(
                log.contains("broken.cu(2)"),
                "log points at broken.cu line 2: {log}"
            );
        }
        Err(other) => panic!("expected KernelCompile, got {other}"),
        Ok(_) => panic!("a kernel using an undefined name compiled"),
    }
}

#[test]
fn arch_table_covers_known_gpus() {
    assert_eq!(kernels::arch_for(8, 0), "compute_80"); // A100
    assert_eq!(kernels::arch_for(8, 6), "compute_86");
    assert_eq!(kernels::arch_for(8, 9), "compute_89");
    assert_eq!(kernels::arch_for(9, 0), "compute_90"); // H100, H200
    assert_eq!(kernels::arch_for(7, 5), "compute_75");
}
