//! Shared by the runtime's integration tests.

use cria::{Gpu, GpuOptions};
use std::sync::{Arc, OnceLock};

/// One device per test binary. Without an adapter: None (the test returns early), unless
/// CRIA_REQUIRE_GPU=1, which CI sets, turns it into a failure.
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
