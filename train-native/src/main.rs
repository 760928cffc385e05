//! `cria-train`: prepare data, train, export to a Hugging Face model directory.

mod launch;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cria_train::cuda::run as cuda_run;
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
    /// Start N local training processes (one per GPU) with torchrun-style RANK, WORLD_SIZE,
    /// LOCAL_RANK, MASTER_ADDR, MASTER_PORT; output is prefixed with the rank; fails if any rank fails.
    Launch {
        /// Number of processes (GPUs on this machine).
        #[arg(long)]
        nproc: usize,
        /// Rendezvous port on 127.0.0.1 (default: a free port).
        #[arg(long)]
        master_port: Option<u16>,
        /// The cria-train command each rank runs, e.g. `train --device cuda --data D --out R`.
        #[arg(last = true, required = true)]
        args: Vec<String>,
    },
    /// Only the rendezvous of a data-parallel start (no GPU, no NCCL): rank 0 serves 128 random
    /// bytes, every rank prints the id it holds. For tests and for checking a cluster's network.
    #[command(hide = true)]
    RendezvousCheck,
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

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Device {
    Cpu,
    Cuda,
}

#[derive(Args)]
struct TrainArgs {
    /// Folder written by `cria-train prepare`.
    #[arg(long, required_unless_present = "synthetic_vocab")]
    data: Option<PathBuf>,
    /// Instead of --data: uniformly random tokens over this vocabulary (throughput runs at real
    /// shapes, e.g. 32000 for TinyLlama; the loss cannot go below ln(vocab)).
    #[arg(long, conflicts_with = "data")]
    synthetic_vocab: Option<usize>,
    /// cpu: the f32 reference path; cuda: NVRTC kernels + cuBLASLt bf16 (data parallel over
    /// NCCL when started by `cria-train launch` or torchrun-style env).
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    device: Device,
    /// Device peak bf16 TFLOP/s for MFU (default from the GPU name: A100 312, H100 989, H200 989).
    #[arg(long)]
    peak_tflops: Option<f64>,
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

fn load_data(a: &TrainArgs) -> Result<Dataset> {
    match (&a.data, a.synthetic_vocab) {
        (Some(dir), _) => Dataset::load(dir),
        (None, Some(v)) => {
            // Enough tokens for distinct windows at real shapes without a large allocation.
            let seed = a.seed.unwrap_or(TrainConfig::default().seed);
            Dataset::synthetic(v, 4 << 20, 1 << 18, seed)
        }
        (None, None) => Err(TrainError::config(
            "data",
            "none",
            "pass --data DIR or --synthetic-vocab N",
        )),
    }
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    let data = load_data(&a)?;
    let (model_cfg, train_cfg) = build_configs(&a, &data)?;
    let opts = RunOptions { run_dir: a.out.clone(), resume: a.resume, max_steps_this_run: a.max_steps_this_run };
    if a.device == Device::Cuda {
        return cmd_train_cuda(a, data, model_cfg, train_cfg, opts);
    }
    if a.peak_tflops.is_some() {
        return Err(TrainError::config("peak_tflops", "set", "applies to --device cuda only (MFU of a GPU run)"));
    }
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

fn cmd_train_cuda(
    a: TrainArgs,
    data: Dataset,
    model_cfg: LlamaConfig,
    train_cfg: TrainConfig,
    run: RunOptions,
) -> Result<()> {
    let dist = cria_train::dist::DistEnv::from_env()?;
    let rank = dist.as_ref().map_or(0, |d| d.rank);
    let opts = cuda_run::CudaRunOptions {
        run,
        peak_tflops: a.peak_tflops,
        dist,
    };
    let mut last_val = f32::NAN;
    let mut total = 0;
    let (summary, thr) = cuda_run::run(
        data,
        model_cfg,
        train_cfg,
        &opts,
        &mut |ev, mfu| match ev {
            Event::Start {
                step,
                total: t,
                params,
            } => {
                total = t;
                eprintln!("cria-train (cuda, rank {rank}): {params} parameters, step {step}/{t}");
            }
            Event::Step(s) => {
                if rank == 0 && (s.step % 10 == 0 || s.step == total || s.step <= 2) {
                    let mfu = mfu
                        .map(|m| format!(" MFU {:.1}%", 100.0 * m))
                        .unwrap_or_default();
                    eprintln!(
                        "step {:>6}/{total}: loss {:.4} val {last_val:.4} lr {:.2e} |g| {:.2} {:.0} tok/s{mfu}",
                        s.step, s.loss, s.lr, s.grad_norm, s.tokens_per_s
                    );
                }
            }
            Event::Val { step, loss } => {
                last_val = loss;
                if rank == 0 {
                    eprintln!("step {step:>6}: val_loss {loss:.4}");
                }
            }
            Event::Checkpoint { .. } => {}
        },
    )?;
    if rank == 0 {
        let mfu = match (thr.mfu, thr.peak_tflops) {
            (Some(m), Some(p)) => format!("MFU {:.1}% of {p} TFLOP/s per GPU", 100.0 * m),
            _ => "MFU unknown (pass --peak-tflops)".into(),
        };
        println!(
            "done: step {} val_loss {} on {} x{}: {:.0} tokens/s (steps after the first), {:.2} GFLOP/token, {mfu}; checkpoint {}",
            summary.step,
            summary
                .final_val_loss
                .map(|v| format!("{v:.4}"))
                .unwrap_or("-".into()),
            thr.device,
            thr.world_size,
            thr.tokens_per_s,
            thr.flops_per_token / 1e9,
            train::checkpoint_path(&a.out).display()
        );
        println!(
            "{}",
            serde_json::json!({"device": thr.device, "world_size": thr.world_size, "tokens_per_s": thr.tokens_per_s,
            "flops_per_token": thr.flops_per_token, "peak_tflops": thr.peak_tflops, "mfu": thr.mfu, "final_loss": summary.losses.last()})
        );
    }
    Ok(())
}

fn cmd_rendezvous_check() -> Result<()> {
    use cria_train::dist::{self, DistEnv, Timeouts};
    let env = DistEnv::from_env()?.ok_or(TrainError::DistEnv {
        var: "WORLD_SIZE",
        got: String::new(),
        reason: "not set: rendezvous-check needs the distributed environment".into(),
    })?;
    let id = dist::rendezvous(&env, Timeouts::from_env()?, || Ok(dist::random_id()))?;
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    println!("rank {} of {}: id {hex}", env.rank, env.world_size);
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
        Cmd::Launch { nproc, master_port, args } => launch::launch(nproc, master_port, &args)?,
        Cmd::RendezvousCheck => cmd_rendezvous_check()?,
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
