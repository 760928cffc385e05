//! The chat window: UI state and drawing. Every model operation goes to the worker thread;
//! each frame drains the worker's events first, so drawing never waits on the model.

use crate::worker::{Event, ModelInfo, ModelSource, Stats, Task, Worker, MAX_CONTEXT};
use cria::generate::FinishReason;
use cria::sampling::SamplingOptions;
use cria::tokenizer::ChatMessage;
use eframe::egui::{self, Color32, RichText};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the app starts: the model, and for scripted runs a first message and a screenshot.
#[derive(Default)]
pub struct Startup {
    pub model: Option<ModelSource>,
    /// Sent as soon as the model is loaded.
    pub prompt: Option<String>,
    /// After the first reply: save the window to this PNG, report on `done` and close.
    pub screenshot: Option<(PathBuf, Sender<Result<PathBuf, String>>)>,
    /// Where the model computes (`--device`; default auto).
    pub device: cria::model::DeviceChoice,
    /// How to pick the GPU adapter.
    pub gpu: cria::GpuOptions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Clone, Debug)]
pub struct Message {
    pub role: Role,
    pub text: String,
    /// The reply was stopped before it finished.
    pub stopped: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Busy {
    Idle,
    /// `memory`: bytes the model will hold on the device (0 until the files are read).
    Loading { name: String, fraction: f32, memory: u64 },
    Generating,
}

/// Sampling settings shown in the side panel; reset to the model's generation_config.json.
#[derive(Clone, Debug)]
pub struct Settings {
    pub max_tokens: usize,
    pub sampling: SamplingOptions,
}

enum Shot {
    /// Waiting for the first reply to finish.
    Waiting(PathBuf, Sender<Result<PathBuf, String>>),
    /// The reply (or an error) is on screen; a moment later the screenshot is requested.
    /// The outcome is the exchange's: a saved screenshot of a failure still reports it.
    Due { at: Instant, path: PathBuf, done: Sender<Result<PathBuf, String>>, outcome: Result<(), String> },
    /// Requested; the callback sets the flag once the PNG is written (or failed).
    Requested(Arc<Mutex<bool>>),
}

pub struct App {
    worker: Option<Worker>,
    pub busy: Busy,
    pub adapter: Option<String>,
    pub model: Option<ModelInfo>,
    pub messages: Vec<Message>,
    pub system_prompt: String,
    pub input: String,
    pub model_path: String,
    pub settings: Settings,
    pub stats: Option<Stats>,
    pub error: Option<String>,
    pending_prompt: Option<String>,
    picker: Option<Receiver<Option<PathBuf>>>,
    shot: Option<Shot>,
}

impl App {
    pub fn new(cc: &eframe::CreationContext<'_>, startup: Startup) -> App {
        let ctx = cc.egui_ctx.clone();
        let mut app = App {
            worker: None,
            busy: Busy::Idle,
            adapter: None,
            model: None,
            messages: Vec::new(),
            system_prompt: String::new(),
            input: String::new(),
            model_path: String::new(),
            settings: Settings { max_tokens: 128, sampling: SamplingOptions::default() },
            stats: None,
            error: None,
            pending_prompt: startup.prompt,
            picker: None,
            shot: startup.screenshot.map(|(path, done)| Shot::Waiting(path, done)),
        };
        match Worker::spawn(startup.device, startup.gpu, move || ctx.request_repaint()) {
            Ok(worker) => app.worker = Some(worker),
            Err(e) => app.error = Some(format!("Cannot start the model thread: {e}")),
        }
        app.open_model(startup.model.unwrap_or(ModelSource::Bundled));
        app
    }

    /// Loads a model on the worker; the current one stays until the new one is ready.
    pub fn open_model(&mut self, source: ModelSource) {
        if let Some(worker) = &self.worker {
            self.error = None;
            self.busy = Busy::Loading { name: source.name(), fraction: 0.0, memory: 0 };
            worker.load(source);
        }
    }

    pub fn can_send(&self) -> bool {
        self.busy == Busy::Idle && self.model.is_some() && !self.input.trim().is_empty()
    }

    /// Sends the input box as the next user message.
    pub fn send(&mut self) {
        let Some(worker) = &self.worker else { return };
        if !self.can_send() {
            return;
        }
        let text = std::mem::take(&mut self.input).trim().to_string();
        self.messages.push(Message { role: Role::User, text, stopped: false });
        let mut history: Vec<ChatMessage> = Vec::new();
        if !self.system_prompt.trim().is_empty() {
            history.push(ChatMessage::system(self.system_prompt.trim()));
        }
        history.extend(self.messages.iter().map(|m| match m.role {
            Role::User => ChatMessage::user(&m.text),
            Role::Assistant => ChatMessage::assistant(m.text.trim()),
        }));
        self.messages.push(Message { role: Role::Assistant, text: String::new(), stopped: false });
        self.error = None;
        self.stats = None;
        self.busy = Busy::Generating;
        worker.chat(history, self.settings.max_tokens, self.settings.sampling.clone());
    }

    pub fn stop(&mut self) {
        if let Some(worker) = &self.worker {
            worker.stop();
        }
    }

    pub fn new_chat(&mut self) {
        if self.busy != Busy::Generating {
            self.messages.clear();
            self.stats = None;
            self.error = None;
        }
    }

    /// Closing the window, even mid-generation: stops the reply and gives the model thread a
    /// bounded time to end. False if it did not (a model load cannot be interrupted).
    pub fn shutdown(&mut self) -> bool {
        self.worker.take().is_none_or(|mut worker| worker.shutdown(Duration::from_secs(3)))
    }

    /// Drains the worker's events into the UI state.
    fn poll_worker(&mut self) {
        while let Some(event) = self.worker.as_ref().and_then(Worker::try_recv) {
            match event {
                Event::Device(adapter) => self.adapter = Some(adapter),
                Event::Loading { name, done, total, memory } => {
                    self.busy = Busy::Loading { name, fraction: if total > 0 { done as f32 / total as f32 } else { 0.0 }, memory };
                }
                Event::Loaded(info) => {
                    self.settings = Settings { max_tokens: self.settings.max_tokens.min(info.context / 2).max(1), sampling: info.defaults.clone() };
                    self.model = Some(info);
                    self.busy = Busy::Idle;
                    if let Some(prompt) = self.pending_prompt.take() {
                        self.input = prompt;
                        self.send();
                    }
                }
                Event::Text(text) => {
                    if let Some(reply) = self.messages.last_mut().filter(|m| m.role == Role::Assistant) {
                        reply.text.push_str(&text);
                    }
                }
                Event::Done(stats) => {
                    self.stats = Some(stats);
                    self.reply_finished(Ok(()));
                }
                Event::Stopped => {
                    if let Some(reply) = self.messages.last_mut().filter(|m| m.role == Role::Assistant) {
                        reply.stopped = true;
                    }
                    self.reply_finished(Err("the reply was stopped".into()));
                }
                Event::Failed { task, error } => self.failed(task, error),
                Event::Gone => {
                    self.worker = None;
                    let message = "The model thread stopped unexpectedly (its panic message is on stderr). Restart the app to continue.";
                    self.reply_finished(Err(message.into()));
                    self.error = Some(message.into());
                }
            }
        }
    }

    fn reply_finished(&mut self, outcome: Result<(), String>) {
        self.busy = Busy::Idle;
        match self.shot.take() {
            Some(Shot::Waiting(path, done)) => {
                self.shot = Some(Shot::Due { at: Instant::now() + Duration::from_millis(300), path, done, outcome });
            }
            shot => self.shot = shot,
        }
    }

    fn failed(&mut self, task: Task, error: cria::Error) {
        let mut message = format!("{task}: {error}");
        if let Task::Generate = task {
            // Nothing was generated: take the message back into the input box, so that it can
            // be sent again after "New chat" or with fewer max tokens.
            if self.messages.last().is_some_and(|m| m.role == Role::Assistant && m.text.is_empty()) {
                self.messages.pop();
                if let Some(user) = self.messages.pop_if(|m| m.role == Role::User) {
                    self.input = user.text;
                }
            }
            if let cria::Error::ContextOverflow { .. } = error {
                message.push_str(" — or press \"New chat\" to start an empty conversation.");
            }
        }
        // A scripted run waits for its one exchange: a failure anywhere ends it too.
        self.reply_finished(Err(message.clone()));
        self.error = Some(message);
    }

    /// "Open model…": the native dialog runs on its own thread (rfd's async dialog), so the
    /// window keeps drawing while it is open.
    fn pick_model(&mut self, ctx: &egui::Context, gguf: bool) {
        let (tx, rx) = channel();
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new().name("open-model-dialog".into()).spawn(move || {
            let picked = if gguf {
                pollster::block_on(rfd::AsyncFileDialog::new().set_title("Open a GGUF model file").add_filter("GGUF", &["gguf"]).pick_file())
            } else {
                pollster::block_on(rfd::AsyncFileDialog::new().set_title("Open a Hugging Face model directory").pick_folder())
            };
            let _ = tx.send(picked.map(|handle| handle.path().to_path_buf()));
            ctx.request_repaint();
        });
        match spawned {
            Ok(_) => self.picker = Some(rx),
            Err(e) => self.error = Some(format!("Cannot open the file dialog: {e}")),
        }
    }

    fn poll_picker(&mut self) {
        let Some(rx) = &self.picker else { return };
        match rx.try_recv() {
            Ok(picked) => {
                self.picker = None;
                if let Some(dir) = picked {
                    self.open_model(ModelSource::Path(dir));
                }
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                self.picker = None;
                self.error = Some("The file dialog closed without an answer (is xdg-desktop-portal running?)".into());
            }
        }
    }

    /// The scripted screenshot (`--screenshot`): requested a moment after the first reply so
    /// that its last frame is on screen, then the window closes once the PNG is written.
    fn poll_screenshot(&mut self, ctx: &egui::Context) {
        match self.shot.take() {
            Some(Shot::Due { at, path, done, outcome }) if Instant::now() >= at => {
                let written = Arc::new(Mutex::new(false));
                let flag = written.clone();
                ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(egui::ScreenshotCallback::new(move |image| {
                    let _ = done.send(save_png(&image, &path).and(outcome).map(|()| path));
                    *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
                })));
                self.shot = Some(Shot::Requested(written));
                ctx.request_repaint();
            }
            Some(Shot::Requested(written)) if *written.lock().unwrap_or_else(|p| p.into_inner()) => {
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
            Some(shot) => {
                self.shot = Some(shot);
                ctx.request_repaint_after(Duration::from_millis(50));
            }
            None => {}
        }
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let idle = self.busy == Busy::Idle && self.picker.is_none();
            if ui.add_enabled(idle, egui::Button::new("Open model…")).on_hover_text("A Hugging Face model directory").clicked() {
                self.pick_model(ui.ctx(), false);
            }
            if ui.add_enabled(idle, egui::Button::new("Open GGUF…")).on_hover_text("A GGUF file (llama.cpp's format)").clicked() {
                self.pick_model(ui.ctx(), true);
            }
            // The same by path, for desktops without a file-dialog portal (and for scripts).
            let label = ui.label("or path:");
            let edit = ui
                .add(egui::TextEdit::singleline(&mut self.model_path).hint_text("/path/to/model-directory or file.gguf").desired_width(280.0))
                .labelled_by(label.id);
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            let load = ui.add_enabled(idle && !self.model_path.trim().is_empty(), egui::Button::new("Load")).clicked();
            if (load || enter) && idle && !self.model_path.trim().is_empty() {
                self.open_model(ModelSource::Path(PathBuf::from(self.model_path.trim())));
            }
            ui.separator();
            if ui.add_enabled(self.busy != Busy::Generating, egui::Button::new("New chat")).clicked() {
                self.new_chat();
            }
        });
    }

    fn settings_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Settings");
        let label = ui.label("System prompt:");
        ui.add(egui::TextEdit::multiline(&mut self.system_prompt).desired_rows(3).hint_text("optional")).labelled_by(label.id);
        ui.add_space(8.0);
        // DragValue clamps the value to its range when drawn: without a model, allow the most.
        let context = self.model.as_ref().map_or(MAX_CONTEXT, |m| m.context);
        let s = &mut self.settings;
        egui::Grid::new("sampling").num_columns(2).show(ui, |ui| {
            let label = ui.label("Temperature");
            ui.add(egui::DragValue::new(&mut s.sampling.temperature).range(0.0..=2.0).speed(0.01)).labelled_by(label.id);
            ui.end_row();
            let label = ui.label("Top-p");
            ui.add(egui::DragValue::new(&mut s.sampling.top_p).range(0.0..=1.0).speed(0.01)).labelled_by(label.id);
            ui.end_row();
            let label = ui.label("Top-k");
            ui.add(egui::DragValue::new(&mut s.sampling.top_k).range(0..=1000)).labelled_by(label.id);
            ui.end_row();
            let label = ui.label("Max tokens");
            ui.add(egui::DragValue::new(&mut s.max_tokens).range(1..=context)).labelled_by(label.id);
            ui.end_row();
            let label = ui.label("Seed");
            ui.add(egui::DragValue::new(&mut s.sampling.seed)).labelled_by(label.id);
            ui.end_row();
        });
        ui.small("Temperature 0 is greedy; top-k 0 and top-p 1 turn those filters off.");
    }

    fn status_bar(&self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label(match &self.adapter {
                Some(adapter) => format!("Device: {adapter}"),
                None => "Device: starting…".to_string(),
            });
            ui.separator();
            match &self.model {
                Some(m) => {
                    ui.label(format!(
                        "Model: {} · {:.1} M parameters · {} · {} · context {} · memory {}",
                        m.name,
                        m.parameters as f64 / 1e6,
                        bytes(m.weight_bytes),
                        m.weight_types,
                        m.context,
                        bytes(m.memory)
                    ));
                }
                None => {
                    ui.label("Model: none");
                }
            }
            if let Busy::Loading { name, fraction, memory } = &self.busy {
                ui.separator();
                match memory {
                    0 => ui.label(format!("Loading {name}")),
                    m => ui.label(format!("Loading {name} · needs {} of device memory", bytes(*m))),
                };
                ui.add(egui::ProgressBar::new(*fraction).show_percentage().desired_width(160.0));
            }
        });
    }

    fn input_row(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let label = ui.label("Message:");
            let buttons = 130.0;
            let edit = ui
                .add(egui::TextEdit::singleline(&mut self.input).hint_text("Say something to the model").desired_width((ui.available_width() - buttons).max(100.0)))
                .labelled_by(label.id);
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            let send = ui.add_enabled(self.can_send(), egui::Button::new("Send")).clicked();
            if (send || enter) && self.can_send() {
                self.send();
                edit.request_focus();
            }
            if ui.add_enabled(self.busy == Busy::Generating, egui::Button::new("Stop")).clicked() {
                self.stop();
            }
        });
        ui.horizontal(|ui| match (&self.busy, &self.stats) {
            (Busy::Generating, _) => {
                ui.spinner();
                ui.label("Generating…");
            }
            (_, Some(s)) => {
                ui.label(format!(
                    "{} tokens · {:.1} tokens/s · first token {:.0} ms · {} prompt tokens · {}",
                    s.tokens,
                    s.tokens_per_second,
                    s.time_to_first_token * 1000.0,
                    s.prompt_tokens,
                    match s.finish {
                        FinishReason::Length => "max tokens reached",
                        FinishReason::Eos => "end of text",
                        FinishReason::Stop => "stop string",
                    }
                ));
            }
            _ => {
                ui.label(" ");
            }
        });
    }

    fn conversation(&mut self, ui: &mut egui::Ui) {
        if let Some(error) = &self.error {
            let mut dismiss = false;
            egui::Frame::new().fill(ui.visuals().error_fg_color.gamma_multiply(0.15)).inner_margin(6.0).corner_radius(4.0).show(ui, |ui| {
                ui.horizontal_wrapped(|ui| {
                    ui.colored_label(ui.visuals().error_fg_color, error);
                    dismiss = ui.small_button("Dismiss").clicked();
                });
            });
            if dismiss {
                self.error = None;
            }
            ui.add_space(6.0);
        }
        egui::ScrollArea::vertical().auto_shrink(false).stick_to_bottom(true).show(ui, |ui| {
            if self.messages.is_empty() {
                ui.weak("Type a message below and press Send. The bundled model writes in the style of Shakespeare.");
            }
            let generating = self.busy == Busy::Generating;
            let last = self.messages.len().saturating_sub(1);
            for (i, m) in self.messages.iter().enumerate() {
                let (who, colour) = match m.role {
                    Role::User => ("You", ui.visuals().hyperlink_color),
                    Role::Assistant => ("Model", Color32::from_rgb(0x4c, 0xaf, 0x50)),
                };
                ui.label(RichText::new(who).strong().color(colour));
                if m.text.is_empty() && generating && i == last {
                    ui.weak("…");
                } else {
                    ui.label(m.text.trim());
                }
                if m.stopped {
                    ui.weak("(stopped)");
                }
                ui.add_space(8.0);
            }
        });
    }
}

impl eframe::App for App {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        if ctx.input_mut(|i| i.consume_key(egui::Modifiers::COMMAND, egui::Key::Q)) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        self.poll_worker();
        self.poll_picker();
        self.poll_screenshot(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::Panel::top("top").show(ui, |ui| self.top_bar(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        egui::Panel::bottom("input").show(ui, |ui| self.input_row(ui));
        egui::Panel::right("settings").resizable(true).default_size(260.0).show(ui, |ui| self.settings_panel(ui));
        egui::CentralPanel::default().show(ui, |ui| self.conversation(ui));
    }

    fn on_exit(&mut self) {
        if !self.shutdown() {
            eprintln!("cria-desktop: the model thread is still busy; exiting without it");
        }
    }
}

fn save_png(image: &egui::ColorImage, path: &std::path::Path) -> Result<(), String> {
    let [w, h] = image.size;
    let rgba: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_srgba_unmultiplied()).collect();
    let buffer = image::RgbaImage::from_raw(w as u32, h as u32, rgba).ok_or("the screenshot has the wrong number of pixels")?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    buffer.save(path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn bytes(n: u64) -> String {
    if n >= 1 << 30 { format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64) } else { format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64) }
}
