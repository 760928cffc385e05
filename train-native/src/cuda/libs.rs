//! Presence checks for the CUDA libraries cudarc loads dynamically. cudarc panics on the first
//! call into a library it cannot load, so every entry point checks here first and returns
//! [`TrainError::CudaLibraryMissing`] naming the library and how to get it.

use crate::error::{Result, TrainError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Library {
    Driver,
    Nvrtc,
    Cublas,
    CublasLt,
    Nccl,
}

impl Library {
    pub fn name(self) -> &'static str {
        match self {
            Library::Driver => "libcuda (CUDA driver)",
            Library::Nvrtc => "libnvrtc (NVRTC run-time compiler)",
            Library::Cublas => "libcublas",
            Library::CublasLt => "libcublasLt",
            Library::Nccl => "libnccl",
        }
    }

    pub fn hint(self) -> &'static str {
        match self {
            Library::Driver => {
                "no NVIDIA driver on this machine (libcuda.so.1 not found): run on a machine with an NVIDIA GPU and driver, or use --device cpu"
            }
            Library::Nvrtc => {
                "eval \"$(scripts/get-nvrtc.sh ~/.cache/cria-nvrtc)\" (NVRTC from PyPI), or put a CUDA toolkit's lib64 on LD_LIBRARY_PATH"
            }
            Library::Cublas | Library::CublasLt => {
                "install cuBLAS (CUDA toolkit lib64, or PyPI nvidia-cublas-cu12) and put its lib folder on LD_LIBRARY_PATH"
            }
            Library::Nccl => {
                "install NCCL (PyPI nvidia-nccl-cu12, or NVIDIA's libnccl2 + libnccl-dev) and put its lib folder on LD_LIBRARY_PATH; cudarc opens the name libnccl.so (not libnccl.so.2, the only name the PyPI wheel and libnccl2 ship), so if there is no libnccl.so: mkdir -p ~/.cache/cria-nccl && ln -sf NCCL_LIB_DIR/libnccl.so.2 ~/.cache/cria-nccl/libnccl.so and add ~/.cache/cria-nccl to LD_LIBRARY_PATH; needed only for world size > 1"
            }
        }
    }

    pub fn present(self) -> bool {
        // SAFETY: these only try to dlopen the candidate names; nothing is called through them.
        unsafe {
            match self {
                Library::Driver => cudarc::driver::sys::is_culib_present(),
                Library::Nvrtc => cudarc::nvrtc::sys::is_culib_present(),
                Library::Cublas => cudarc::cublas::sys::is_culib_present(),
                Library::CublasLt => cudarc::cublaslt::sys::is_culib_present(),
                Library::Nccl => cudarc::nccl::sys::is_culib_present(),
            }
        }
    }
}

/// The first missing library among `libs`, as a typed error.
pub fn require(libs: &[Library]) -> Result<()> {
    match libs.iter().find(|l| !l.present()) {
        Some(l) => Err(TrainError::CudaLibraryMissing {
            library: l.name(),
            hint: l.hint(),
        }),
        None => Ok(()),
    }
}
