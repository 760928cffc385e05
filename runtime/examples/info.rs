//! Prints the adapter Cria picks, its backend, the features turned on and the key limits.
//! `cargo run -p cria --example info` (honours WGPU_BACKEND and WGPU_ADAPTER_NAME).

fn main() {
    match pollster::block_on(cria::Gpu::new(cria::GpuOptions::default())) {
        Ok(gpu) => println!("{}", gpu.describe()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
