//! The model thread. It owns the GPU context, the loaded `Llama` and its tokenizer, takes
//! commands over one channel and streams events back over another, so the UI thread never
//! waits on the disk or the GPU. Stopping is a shared flag, not a command: the decode loop
//! checks it before every token, while the command queue is only read between jobs.

use cria::generate::{generate, ChatPrompt, FinishReason, GenerateOptions};
use cria::model::{self, bundled, Llama, LoadProgress, ModelOptions};
use cria::sampling::SamplingOptions;
use cria::tokenizer::{ChatMessage, Tokenizer};
use cria::model::{Device, DeviceChoice};
use cria::GpuOptions;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The KV cache is allocated for the whole context at load: models that declare 32k–128k
/// positions would need gigabytes for it, more than a chat window uses.
pub const MAX_CONTEXT: usize = 4096;

/// Where a model comes from. A GGUF file will be one more variant, loaded by `load`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// The Shakespeare model compiled into the binary.
    Bundled,
    /// A Hugging Face model directory (config.json, model.safetensors, tokenizer.json), or a
    /// GGUF file.
    Path(PathBuf),
}

impl ModelSource {
    pub fn name(&self) -> String {
        match self {
            ModelSource::Bundled => bundled::NAME.to_string(),
            ModelSource::Path(dir) => dir.file_name().unwrap_or(dir.as_os_str()).to_string_lossy().into_owned(),
        }
    }
}

pub enum Command {
    Load(ModelSource),
    /// Reply to the conversation so far (system prompt first, last message the user's).
    Chat { messages: Vec<ChatMessage>, max_tokens: usize, sampling: SamplingOptions },
}

/// What the loaded model is, for the status bar and the settings' defaults.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub name: String,
    pub parameters: usize,
    /// Bytes of weights as stored in the checkpoint.
    pub weight_bytes: u64,
    /// Weight types as stored on the device (for example "f32" or "q4_0").
    pub weight_types: String,
    pub context: usize,
    /// Device memory the model holds (weights, KV cache, activations).
    pub memory: u64,
    /// The model's generation_config.json sampling settings.
    pub defaults: SamplingOptions,
}

#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub prompt_tokens: usize,
    pub tokens: usize,
    pub time_to_first_token: f64,
    pub tokens_per_second: f64,
    pub finish: FinishReason,
}

#[derive(Debug)]
pub enum Task {
    Gpu,
    Load(String),
    Generate,
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Task::Gpu => write!(f, "Starting the GPU failed"),
            Task::Load(name) => write!(f, "Loading {name} failed"),
            Task::Generate => write!(f, "Generation failed"),
        }
    }
}

#[derive(Debug)]
pub enum Event {
    /// The compute device is ready: what it is and why it was chosen.
    Device(String),
    /// Weight bytes loaded of `total`; `memory`: what the model will hold on the device,
    /// known (and checked against the device) before the first upload.
    Loading { name: String, done: u64, total: u64, memory: u64 },
    Loaded(ModelInfo),
    Text(String),
    Done(Stats),
    Stopped,
    Failed { task: Task, error: cria::Error },
    /// The thread ended without being asked to (a panic); its message went to stderr.
    Gone,
}

/// The UI's handle on the model thread.
pub struct Worker {
    commands: Option<Sender<Command>>,
    events: Receiver<Event>,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the thread. `wake` is called after every event (the UI's repaint request).
    /// `device` is the `--device` choice; `gpu` picks the adapter (default: the best one; tests
    /// name one that does not exist).
    pub fn spawn(device: DeviceChoice, gpu: GpuOptions, wake: impl Fn() + Send + 'static) -> std::io::Result<Worker> {
        let (commands, inbox) = channel();
        let (outbox, events) = channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let thread = std::thread::Builder::new().name("cria-model".into()).spawn(move || {
            let mut model = ModelThread { device: None, choice: device, gpu_options: gpu, loaded: None, cancel: flag, emit: Box::new(move |e| {
                let _ = outbox.send(e);
                wake();
            }) };
            while let Ok(command) = inbox.recv() {
                model.run(command);
            }
        })?;
        Ok(Worker { commands: Some(commands), events, cancel, thread: Some(thread) })
    }

    pub fn load(&self, source: ModelSource) {
        self.send(Command::Load(source));
    }

    pub fn chat(&self, messages: Vec<ChatMessage>, max_tokens: usize, sampling: SamplingOptions) {
        // Cleared here, not on the thread: a stop pressed before the thread starts the job must
        // still stop it.
        self.cancel.store(false, Ordering::SeqCst);
        self.send(Command::Chat { messages, max_tokens, sampling });
    }

    /// Stops the running generation before its next token.
    pub fn stop(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    pub fn try_recv(&self) -> Option<Event> {
        match self.events.try_recv() {
            Ok(event) => Some(event),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => self.thread.as_ref().map(|_| Event::Gone),
        }
    }

    fn send(&self, command: Command) {
        // The thread only ends after `shutdown`, or by panicking; then the event channel
        // closes too and the UI shows the model as gone.
        if let Some(commands) = &self.commands {
            let _ = commands.send(command);
        }
    }

    /// Stops any generation, closes the command channel and waits up to `bound` for the thread
    /// to end. Returns false if it is still busy (a model load cannot be interrupted); the
    /// thread is then left to the process exit.
    pub fn shutdown(&mut self, bound: Duration) -> bool {
        self.stop();
        self.commands = None;
        let Some(thread) = self.thread.take() else { return true };
        let deadline = Instant::now() + bound;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        thread.join().is_ok()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(2));
    }
}

struct Loaded {
    llama: Llama,
    tokenizer: Tokenizer,
    eos_ids: Vec<u32>,
}

struct ModelThread {
    device: Option<Device>,
    choice: DeviceChoice,
    gpu_options: GpuOptions,
    loaded: Option<Loaded>,
    cancel: Arc<AtomicBool>,
    emit: Box<dyn Fn(Event)>,
}

impl ModelThread {
    fn run(&mut self, command: Command) {
        match command {
            Command::Load(source) => match self.load(&source) {
                // A failed load keeps the previous model.
                Ok(Some((loaded, info))) => {
                    self.loaded = Some(loaded);
                    (self.emit)(Event::Loaded(info));
                }
                Ok(None) => {} // no device: already reported
                Err(error) => (self.emit)(Event::Failed { task: Task::Load(source.name()), error }),
            },
            Command::Chat { messages, max_tokens, sampling } => match self.chat(&messages, max_tokens, sampling) {
                Ok(stats) => (self.emit)(Event::Done(stats)),
                Err(cria::Error::Cancelled) => (self.emit)(Event::Stopped),
                Err(error) => (self.emit)(Event::Failed { task: Task::Generate, error }),
            },
        }
    }

    /// The device, opened on first use; a failure (only a GPU asked for can fail) is reported
    /// and retried on the next load.
    fn device(&mut self) -> Option<Device> {
        if self.device.is_none() {
            match pollster::block_on(Device::open(self.choice, self.gpu_options.clone())) {
                Ok((device, reason)) => {
                    (self.emit)(Event::Device(format!("{} ({reason})", device.describe().lines().next().unwrap_or_default())));
                    self.device = Some(device);
                }
                Err(error) => (self.emit)(Event::Failed { task: Task::Gpu, error }),
            }
        }
        self.device.clone()
    }

    /// Reads the model's files, then loads the weights onto the device. Ok(None) when there is
    /// no device.
    fn load(&mut self, source: &ModelSource) -> cria::Result<Option<(Loaded, ModelInfo)>> {
        // Files first, the GPU after: a wrong directory is reported even without a GPU, and
        // the tokenizer and configs are cheap to check before gigabytes of weights move.
        let mut files = match source {
            ModelSource::Bundled => bundled::files()?,
            ModelSource::Path(path) => model::open(path)?,
        };
        let tokenizer = files.take_tokenizer()?;
        let Some(device) = self.device() else { return Ok(None) };
        let name = source.name();
        let total = files.weight_bytes();
        let parameters = files.config.parameter_count();
        let options = ModelOptions { context: Some(files.config.max_position_embeddings.min(MAX_CONTEXT)), ..ModelOptions::default() };
        let plan = files.memory_plan(&options)?;
        device.check(&plan)?;
        let memory = plan.total();
        (self.emit)(Event::Loading { name: name.clone(), done: 0, total, memory });
        let mut done = 0;
        let mut last_report = Instant::now();
        let mut llama = files.load(device, &options, &mut |p: LoadProgress| {
            done += p.bytes;
            // A report per tensor would flood the UI on models with hundreds of tensors.
            if last_report.elapsed() > Duration::from_millis(50) {
                last_report = Instant::now();
                (self.emit)(Event::Loading { name: name.clone(), done, total, memory });
            }
        })?;
        // Shader compilation belongs to loading, not to the first reply's time to first token.
        pollster::block_on(llama.warm_up())?;
        let info = ModelInfo {
            name,
            parameters,
            weight_bytes: total,
            weight_types: llama.weight_types(),
            context: llama.context,
            memory: llama.memory.total(),
            defaults: files.generation.sampling,
        };
        Ok(Some((Loaded { llama, tokenizer, eos_ids: files.generation.eos_token_ids }, info)))
    }

    fn chat(&mut self, messages: &[ChatMessage], max_tokens: usize, sampling: SamplingOptions) -> cria::Result<Stats> {
        let Some(Loaded { llama, tokenizer, eos_ids }) = &mut self.loaded else {
            return Err(cria::Error::Unsupported { what: "chatting before a model is loaded".into(), hint: "open a model first".into() });
        };
        let options = GenerateOptions { max_tokens, sampling, eos_ids: eos_ids.clone(), ..GenerateOptions::default() };
        // As `cria chat`: the model's own template, else a plain transcript.
        let prompt = ChatPrompt::new(tokenizer, messages)?;
        let options = prompt.options(&options);
        let prompt = prompt.text;
        let emit = &self.emit;
        let g = pollster::block_on(generate(llama, tokenizer, &prompt, &options, &self.cancel, &mut |text| emit(Event::Text(text.to_string()))))?;
        Ok(Stats {
            prompt_tokens: g.prompt_tokens,
            tokens: g.tokens.len(),
            time_to_first_token: g.time_to_first_token,
            tokens_per_second: g.decode_tokens_per_second(),
            finish: g.finish,
        })
    }
}
