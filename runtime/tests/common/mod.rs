//! Shared by the runtime's integration tests.

use cria::{Gpu, GpuOptions};
use std::sync::{Arc, OnceLock};

/// One device per test binary. Without an adapter: None (the test returns early), unless
/// CRIA_REQUIRE_GPU=1, which CI sets, turns it into a failure.
#[allow(dead_code)] // not every test binary needs a GPU
pub fn gpu() -> Option<Arc<Gpu>> {
    static GPU: OnceLock<Option<Arc<Gpu>>> = OnceLock::new();
    GPU.get_or_init(|| match pollster::block_on(Gpu::new(GpuOptions::default())) {
        Ok(g) => Some(Arc::new(g)),
        Err(e) if std::env::var("CRIA_REQUIRE_GPU").as_deref() == Ok("1") => panic!("CRIA_REQUIRE_GPU=1 but no GPU: {e}"),
        Err(e) => {
            eprintln!("SKIPPED (no GPU adapter): {e}");
            None
        }
    })
    .clone()
}

/// The path a test asset variable (set by `scripts/get-test-assets.sh`) points at, checked to
/// exist. Unset: None (the test prints SKIPPED and returns), unless CRIA_REQUIRE_ASSETS=1, which
/// CI sets, turns it into a failure.
#[allow(dead_code)] // not every test binary reads assets
pub fn asset(var: &str) -> Option<std::path::PathBuf> {
    match std::env::var_os(var) {
        Some(p) => {
            let p = std::path::PathBuf::from(p);
            assert!(p.exists(), "{var}={} does not exist; run scripts/get-test-assets.sh", p.display());
            Some(p)
        }
        None if std::env::var("CRIA_REQUIRE_ASSETS").as_deref() == Ok("1") => {
            panic!("{var} is not set and CRIA_REQUIRE_ASSETS=1: run `eval \"$(scripts/get-test-assets.sh DEST)\"`")
        }
        None => {
            eprintln!("SKIPPED: {var} not set (scripts/get-test-assets.sh DEST prints it)");
            None
        }
    }
}
