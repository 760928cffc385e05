//! Cria's desktop chat app: an eframe/egui window on the same wgpu as the runtime.
//! [`app`] is the window (state and drawing), [`worker`] the thread that owns the model.
//! A library as well as a binary so that the UI tests (tests/ui.rs) drive the real app.

pub mod app;
pub mod worker;

pub use app::{App, Startup};
pub use worker::ModelSource;
