//! Cria in the browser: the wasm-bindgen API over the `cria` runtime, which reaches WebGPU
//! through wgpu's webgpu backend. The browser tests in `tests/` run every kernel check of the
//! runtime in headless Chromium (`scripts/test-web.sh`).
