//! `cria-train`: prepare data, train, export to a Hugging Face model directory.

use clap::{Args, Parser, Subcommand, ValueEnum};
use cria_train::checkpoint::Checkpoint;
use cria_train::data::{self, Dataset, PrepareOptions};
use cria_train::export::{self, ExportDtype};
use cria_train::tokenizer::Tok;
use cria_train::train::{self, Event, RunOptions};
use cria_train::{LlamaConfig, Model, Result, TrainConfig, TrainError};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "cria-train", version, about = "Train small Llama models on the CPU and export Hugging Face model folders")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Tokenize a text corpus into train/validation token shards (training a BPE tokenizer or reusing one).
    Prepare {
        /// A .txt file or a folder of .txt files.
        #[arg(long)]
        corpus: PathBuf,
        /// Train a byte-level BPE tokenizer with this many entries.
        #[arg(long, conflicts_with = "tokenizer")]
        tokenizer_vocab: Option<usize>,
        /// Reuse this tokenizer.json instead (must contain <s> and </s>).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Fraction of each document's tokens held out for validation.
        #[arg(long, default_value_t = 0.05)]
        val_fraction: f64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Train (or resume) a model; writes checkpoint.bin, metrics.jsonl and train_config.json into --out.
    Train(Box<TrainArgs>),
    /// Export a checkpoint as a Hugging Face model folder (config.json, model.safetensors, tokenizer files).
    Export {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = Dtype::F32)]
        dtype: Dtype,
    },
    /// Print logits (JSON) for a text, from a checkpoint or an exported model folder.
    Logits {
        #[command(flatten)]
        src: ModelSource,
        #[arg(long)]
        text: String,
        /// Write {"tokens": [...], "logits": [[...]]} here.
        #[arg(long)]
        out: PathBuf,
    },
    /// Greedy continuation of a prompt (quick quality check).
    Generate {
        #[command(flatten)]
        src: ModelSource,
        #[arg(long)]
        prompt: String,
        #[arg(long, default_value_t = 64)]
        tokens: usize,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct ModelSource {
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    #[arg(long)]
    model: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Dtype {
    F32,
    F16,
}

#[derive(Args)]
struct TrainArgs {
    /// Folder written by `cria-train prepare`.
    #[arg(long)]
    data: PathBuf,
    /// JSON file {"model": {...}, "train": {...}}; flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run folder.
    #[arg(long)]
    out: PathBuf,
    /// Continue from OUT/checkpoint.bin with its stored configuration.
    #[arg(long)]
    resume: bool,
    /// Stop (with a checkpoint) after this many steps in this invocation.
    #[arg(long)]
    max_steps_this_run: Option<u64>,
    #[arg(long)]
    hidden_size: Option<usize>,
    #[arg(long)]
    intermediate_size: Option<usize>,
    #[arg(long)]
    layers: Option<usize>,
    #[arg(long)]
    heads: Option<usize>,
    #[arg(long)]
    kv_heads: Option<usize>,
    #[arg(long)]
    rope_theta: Option<f64>,
    #[arg(long)]
    max_position_embeddings: Option<usize>,
    #[arg(long)]
    tie_embeddings: Option<bool>,
    #[arg(long)]
    steps: Option<u64>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    seq_len: Option<usize>,
    #[arg(long)]
    grad_accum: Option<usize>,
    #[arg(long)]
    lr: Option<f32>,
    #[arg(long)]
    min_lr_ratio: Option<f32>,
    #[arg(long)]
    warmup_steps: Option<u64>,
    #[arg(long)]
    weight_decay: Option<f32>,
    #[arg(long)]
    grad_clip: Option<f32>,
    #[arg(long)]
    val_every: Option<u64>,
    #[arg(long)]
    val_batches: Option<usize>,
    #[arg(long)]
    checkpoint_every: Option<u64>,
    #[arg(long)]
    seed: Option<u64>,
}

/// Model shape in a config file; vocab and special ids come from the data's tokenizer.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ModelSpec {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: usize,
    rms_norm_eps: f64,
    rope_theta: f64,
    max_position_embeddings: usize,
    tie_word_embeddings: bool,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec {
            hidden_size: 128,
            intermediate_size: 384,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            max_position_embeddings: 256,
            tie_word_embeddings: true,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ConfigFile {
    model: ModelSpec,
    train: TrainConfig,
}

fn build_configs(a: &TrainArgs, data: &Dataset) -> Result<(LlamaConfig, TrainConfig)> {
    let file = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| TrainError::Io { op: "read config", path: p.clone(), source })?;
            serde_json::from_str(&text).map_err(|source| TrainError::Json { path: p.clone(), source })?
        }
        None => ConfigFile::default(),
    };
    let (m, mut t) = (file.model, file.train);
    let model = LlamaConfig {
        vocab_size: data.vocab_size,
        hidden_size: a.hidden_size.unwrap_or(m.hidden_size),
        intermediate_size: a.intermediate_size.unwrap_or(m.intermediate_size),
        num_hidden_layers: a.layers.unwrap_or(m.num_hidden_layers),
        num_attention_heads: a.heads.unwrap_or(m.num_attention_heads),
        num_key_value_heads: a.kv_heads.unwrap_or(m.num_key_value_heads),
        rms_norm_eps: m.rms_norm_eps,
        rope_theta: a.rope_theta.unwrap_or(m.rope_theta),
        max_position_embeddings: a.max_position_embeddings.unwrap_or(m.max_position_embeddings),
        tie_word_embeddings: a.tie_embeddings.unwrap_or(m.tie_word_embeddings),
        bos_token_id: data.bos_token_id,
        eos_token_id: data.eos_token_id,
    };
    macro_rules! over {
        ($($f:ident),*) => { $( if let Some(v) = a.$f { t.$f = v; } )* };
    }
    over!(steps, batch_size, seq_len, grad_accum, lr, min_lr_ratio, warmup_steps, weight_decay, grad_clip, val_every, val_batches, checkpoint_every, seed);
    Ok((model, t))
}

fn load_model(src: &ModelSource) -> Result<(Model<f32>, String)> {
    if let Some(p) = &src.checkpoint {
        let ck = Checkpoint::load(p)?;
        Ok((Model::from_params(ck.header.model, ck.params), ck.header.tokenizer_json))
    } else {
        export::load_hf(src.model.as_deref().expect("clap requires one source"))
    }
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    let data = Dataset::load(&a.data)?;
    let (model_cfg, train_cfg) = build_configs(&a, &data)?;
    let opts = RunOptions { run_dir: a.out.clone(), resume: a.resume, max_steps_this_run: a.max_steps_this_run };
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .expect("valid template"),
    );
    // indicatif draws nothing when stderr is not a terminal (CI logs, nohup): print plain lines there.
    let plain = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let say = |pb: &ProgressBar, line: String| if plain { eprintln!("{line}") } else { pb.println(line) };
    let mut last_val = f32::NAN;
    let summary = train::run(data, model_cfg, train_cfg, &opts, &mut |ev| match ev {
        Event::Start { step, total, params } => {
            pb.set_length(total);
            pb.set_position(step);
            say(&pb, format!("cria-train: {params} parameters, step {step}/{total}"));
        }
        Event::Step(s) => {
            pb.set_position(s.step);
            let msg = format!("loss {:.4} val {last_val:.4} lr {:.2e} |g| {:.2} {:.0} tok/s", s.loss, s.lr, s.grad_norm, s.tokens_per_s);
            if plain && (s.step % 10 == 0 || s.step == pb.length().unwrap_or(0)) {
                eprintln!("step {:>6}/{}: {msg}", s.step, pb.length().unwrap_or(0));
            }
            pb.set_message(msg);
        }
        Event::Val { step, loss } => {
            last_val = loss;
            say(&pb, format!("step {step:>6}: val_loss {loss:.4}"));
        }
        Event::Checkpoint { .. } => {}
    })?;
    pb.finish();
    println!(
        "done: step {} val_loss {} mean {:.0} tokens/s; checkpoint {}",
        summary.step,
        summary.final_val_loss.map(|v| format!("{v:.4}")).unwrap_or("-".into()),
        summary.mean_tokens_per_s,
        train::checkpoint_path(&a.out).display()
    );
    Ok(())
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    cria_train::fsutil::write_atomic(path, v.to_string().as_bytes())
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Prepare { corpus, tokenizer_vocab, tokenizer, val_fraction, out } => {
            let meta = data::prepare(&PrepareOptions { corpus, vocab_size: tokenizer_vocab, tokenizer, out: out.clone(), val_fraction })?;
            println!(
                "prepared {}: {} documents, {} bytes, vocab {}, {} train / {} validation tokens ({:.2} bytes/token)",
                out.display(), meta.documents, meta.bytes, meta.vocab_size, meta.train_tokens, meta.val_tokens,
                meta.bytes as f64 / (meta.train_tokens + meta.val_tokens) as f64
            );
        }
        Cmd::Train(a) => cmd_train(*a)?,
        Cmd::Export { checkpoint, out, dtype } => {
            let ck = Checkpoint::load(&checkpoint)?;
            let step = ck.header.step;
            let model = Model::from_params(ck.header.model, ck.params);
            let dt = match dtype {
                Dtype::F32 => ExportDtype::F32,
                Dtype::F16 => ExportDtype::F16,
            };
            export::export_hf(&model, &ck.header.tokenizer_json, &out, dt)?;
            println!("exported step {step} ({} parameters) to {}", model.layout.total, out.display());
        }
        Cmd::Logits { src, text, out } => {
            let (model, tj) = load_model(&src)?;
            let tok = Tok::from_json(&tj)?;
            let mut ids = vec![tok.bos];
            ids.extend(tok.encode(&text)?);
            let logits = model.logits(&ids);
            let rows: Vec<&[f32]> = logits.chunks(model.cfg.vocab_size).collect();
            write_json(&out, &serde_json::json!({"text": text, "tokens": ids, "logits": rows}))?;
            println!("{} tokens -> {}", ids.len(), out.display());
        }
        Cmd::Generate { src, prompt, tokens } => {
            let (model, tj) = load_model(&src)?;
            let tok = Tok::from_json(&tj)?;
            let mut ids = vec![tok.bos];
            ids.extend(tok.encode(&prompt)?);
            let start = ids.len();
            for _ in 0..tokens {
                let window = &ids[ids.len().saturating_sub(model.cfg.max_position_embeddings)..];
                let logits = model.logits(window);
                let last = &logits[(window.len() - 1) * model.cfg.vocab_size..];
                let next = last.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0 as u32;
                if next == tok.eos {
                    break;
                }
                ids.push(next);
            }
            println!("{}{}", prompt, tok.decode(&ids[start..])?);
        }
    }
    Ok(())
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
