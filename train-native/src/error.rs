//! One error enum for the trainer. Every variant names what was expected, what was found,
//! where, and how to fix it: these errors reach people running `cria-train` on their own data.

use std::path::PathBuf;

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("no corpus text found at {path} (looked for *.txt files); hint: pass --corpus a .txt file or a folder of .txt files")]
    NoCorpusFiles { path: PathBuf },

    #[error("corpus {path} is empty (0 bytes of text); hint: remove it or point --corpus at real text")]
    EmptyCorpus { path: PathBuf },

    #[error("corpus file {path} is not valid UTF-8 (first invalid byte at offset {offset}); hint: convert it with `iconv -f LATIN1 -t UTF-8` or remove it")]
    CorpusNotUtf8 { path: PathBuf, offset: usize },

    #[error("{split} split has {got} tokens but one batch needs {needed} (batch_size {batch_size} x seq_len {seq_len} + 1); hint: use a larger corpus or a smaller --batch-size/--seq-len")]
    CorpusTooSmall {
        split: &'static str,
        got: usize,
        needed: usize,
        batch_size: usize,
        seq_len: usize,
    },

    #[error("invalid config: {field} = {got}: {reason}")]
    InvalidConfig {
        field: &'static str,
        got: String,
        reason: String,
    },

    #[error("token data {path}: {reason}; hint: re-run `cria-train prepare`")]
    BadTokenData { path: PathBuf, reason: String },

    #[error("token id {id} at position {pos} is outside the vocabulary (vocab_size {vocab_size}); hint: the data was prepared with a different tokenizer than the model's vocab_size")]
    TokenOutOfRange { id: u32, pos: usize, vocab_size: usize },

    #[error("checkpoint {path} is corrupt: {reason}; hint: the write was interrupted or the file was damaged; an older checkpoint (or a fresh run without --resume) is needed")]
    CorruptCheckpoint { path: PathBuf, reason: String },

    #[error("checkpoint {path} has format version {got}, this build reads version {expected}; hint: resume with the cria-train version that wrote it, or start a new run")]
    CheckpointVersion { path: PathBuf, got: u32, expected: u32 },

    #[error("no checkpoint at {path}; hint: run `cria-train train` without --resume first")]
    NoCheckpoint { path: PathBuf },

    #[error("loss became {loss} at step {step} (non-finite); the last checkpoint was left untouched; hint: lower --lr, raise --warmup-steps or keep --grad-clip on")]
    NonFiniteLoss { step: u64, loss: f32 },

    #[error("tokenizer ({context}): {message}")]
    Tokenizer { context: String, message: String },

    #[error("JSON {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("model file {path}: {reason}")]
    BadModelFile { path: PathBuf, reason: String },

    #[error("unsupported: {what}")]
    Unsupported { what: String },

    #[error("CUDA library {library} could not be loaded; hint: {hint}")]
    CudaLibraryMissing { library: &'static str, hint: &'static str },

    #[error("CUDA {op}: {message}")]
    Cuda { op: String, message: String },

    #[error("CUDA kernel file {kernel}.cu did not compile for {arch}; NVRTC log:\n{log}")]
    KernelCompile { kernel: String, arch: String, log: String },

    #[error("environment variable {var} = {got:?}: {reason}; hint: start ranks with `cria-train launch --nproc N -- train ...` (or torchrun-style RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)")]
    DistEnv { var: &'static str, got: String, reason: String },

    #[error("rendezvous with {addr}: {reason}")]
    Rendezvous { addr: String, reason: String },

    #[error("rendezvous on {addr} timed out after {waited_s:.1} s: rank(s) {missing:?} of world size {world} never connected; hint: start every rank (the launcher does) and check MASTER_ADDR/MASTER_PORT and firewalls")]
    RendezvousTimeout { addr: String, missing: Vec<usize>, world: usize, waited_s: f64 },

    #[error("launch: {reason}")]
    Launch { reason: String },
}

impl TrainError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| TrainError::Io { op, path, source }
    }

    /// `map_err` adapter for cudarc's error types (driver, cuBLASLt, NCCL, NVRTC creation).
    pub(crate) fn cuda<E: std::fmt::Debug>(op: impl Into<String>) -> impl FnOnce(E) -> Self {
        let op = op.into();
        move |e| TrainError::Cuda { op, message: format!("{e:?}") }
    }

    pub fn config(field: &'static str, got: impl ToString, reason: impl Into<String>) -> Self {
        TrainError::InvalidConfig {
            field,
            got: got.to_string(),
            reason: reason.into(),
        }
    }
}
