//! `cria-desktop`: chat with a model in a window.
//!
//!   cria-desktop [--model DIR] [--device auto|gpu|cpu] [--prompt TEXT] [--screenshot PATH]

use clap::Parser;
use cria_desktop::{App, ModelSource, Startup};
use eframe::egui;
use std::path::PathBuf;
use std::sync::mpsc::channel;

#[derive(Parser)]
#[command(name = "cria-desktop", version, about = "Chat with a small Llama-family model on your GPU")]
struct Args {
    /// A Hugging Face model directory to open; without it, the bundled Shakespeare model.
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// Where the model computes: auto (the GPU unless the only adapter is a software one such
    /// as llvmpipe; then the CPU), gpu, or cpu.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Send this message as soon as the model is loaded.
    #[arg(long, short)]
    prompt: Option<String>,
    /// After the first reply, save the window as a PNG here and exit (0 if the reply finished
    /// and the file was written).
    #[arg(long, requires = "prompt")]
    screenshot: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    let device = match cria::model::DeviceChoice::parse(&args.device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let (done, shot) = channel();
    let startup = Startup {
        model: args.model.map(ModelSource::Path),
        prompt: args.prompt,
        screenshot: args.screenshot.clone().map(|path| (path, done)),
        device,
        gpu: cria::GpuOptions::default(),
    };
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_title("Cria").with_inner_size([1100.0, 720.0]).with_min_inner_size([640.0, 400.0]),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    if let Err(e) = eframe::run_native("Cria", options, Box::new(|cc| Ok(Box::new(App::new(cc, startup))))) {
        eprintln!("error: cannot open the window: {e}");
        std::process::exit(1);
    }
    if let Some(path) = args.screenshot {
        match shot.try_recv() {
            Ok(Ok(path)) => println!("screenshot saved to {}", path.display()),
            Ok(Err(e)) => {
                eprintln!("error: screenshot {}: {e}", path.display());
                std::process::exit(1);
            }
            Err(_) => {
                eprintln!("error: the window closed before the screenshot {} was taken", path.display());
                std::process::exit(1);
            }
        }
    }
}
