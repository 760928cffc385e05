//! One error type for the runtime. Every variant names what went wrong and carries a hint
//! that tells the user what to do about it (../shared/STYLE.md rule 7).

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no GPU adapter found (backends tried: {backends}). Hint: {hint}")]
    NoAdapter { backends: String, hint: String },

    #[error("the GPU adapter '{adapter}' refused to create a device: {message}. Hint: update the graphics driver, or pick another adapter with WGPU_ADAPTER_NAME")]
    RequestDevice { adapter: String, message: String },

    #[error("the GPU device was lost ({reason}). Hint: the driver reset or the device was destroyed; create a new engine to continue")]
    DeviceLost { reason: String },

    #[error("shape mismatch in {op}: {what} expected {expected}, got {got}")]
    Shape { op: &'static str, what: String, expected: String, got: String },

    #[error("{what} needs {bytes} bytes in one storage binding, but this device allows {limit} (max_storage_buffer_binding_size). Hint: split the tensor by rows across several buffers (see gpu::split_rows)")]
    BindingTooLarge { what: String, bytes: u64, limit: u64 },

    #[error("the model does not fit this device: {what} needs {bytes} bytes in one buffer, but the device allows {limit}. Hint: {hint}")]
    ModelTooLarge { what: String, bytes: u64, limit: u64, hint: String },

    #[error("the model does not fit this device: it needs {bytes} bytes of {memory} ({plan}), but {budget} is {available} bytes. Hint: {hint}")]
    OutOfMemory { memory: &'static str, plan: String, bytes: u64, available: u64, budget: String, hint: String },

    #[error("shader '{shader}' failed to compile: {message}")]
    ShaderCompile { shader: String, message: String },

    #[error("the GPU reported a validation error in {context}: {message}")]
    Validation { context: String, message: String },

    #[error("reading a GPU buffer back failed: {message}")]
    Readback { message: String },

    #[error("{what} is not supported: {hint}")]
    Unsupported { what: String, hint: String },

    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },

    #[error("{path}: field `{field}` {message}. Hint: {hint}")]
    Config { path: String, field: String, message: String, hint: String },

    #[error("{path} is not a valid safetensors file: {message}. Hint: the file is truncated or corrupt; download it again")]
    Safetensors { path: String, message: String },

    #[error("{path} is not a valid GGUF file: {message}. Hint: {hint}")]
    Gguf { path: String, message: String, hint: String },

    #[error("tensor `{name}` is missing from {path}. Hint: the checkpoint does not match config.json")]
    MissingTensor { name: String, path: String },

    #[error("tensor `{tensor}` has shape {got}, expected {expected}. Hint: the weights do not match config.json")]
    TensorShape { tensor: String, expected: String, got: String },

    #[error("tensor `{tensor}` holds a non-finite value: {what}. Hint: the file is corrupt or was written from a diverged model; download or convert it again")]
    NonFinite { tensor: String, what: String },

    #[error("tensor `{tensor}` has dtype {got}; supported: {supported}")]
    UnsupportedDtype { tensor: String, got: String, supported: String },

    #[error("unknown architecture {got}; supported: {supported}")]
    UnknownArchitecture { got: String, supported: String },

    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: String, message: String },

    #[error("chat template: {message}. Hint: check `chat_template` in tokenizer_config.json")]
    ChatTemplate { message: String },

    #[error("the prompt is empty. Hint: give at least one character of text")]
    EmptyPrompt,

    #[error("the prompt has {prompt} tokens and {requested} more were requested, but the context holds {context}. Hint: shorten the prompt or lower --max-tokens")]
    ContextOverflow { prompt: usize, requested: usize, context: usize },

    #[error("generation was cancelled")]
    Cancelled,

    #[error("token id {id} is out of range for a vocabulary of {vocab_size} tokens. Hint: the tokenizer and the model do not match")]
    TokenOutOfRange { id: u32, vocab_size: usize },

    #[error("sampling option {option} = {value} is out of range. Hint: {hint}")]
    InvalidSampling { option: &'static str, value: String, hint: &'static str },
}

impl Error {
    pub(crate) fn shape(
        op: &'static str,
        what: impl Into<String>,
        expected: impl fmt::Display,
        got: impl fmt::Display,
    ) -> Self {
        Error::Shape { op, what: what.into(), expected: expected.to_string(), got: got.to_string() }
    }
}
