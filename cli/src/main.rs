//! `cria`: run Llama-family models from the command line.
//!
//!   cria generate --model DIR --prompt TEXT [--max-tokens N --temperature T --top-p P --top-k K --seed S]
//!   cria chat --model DIR
//!   cria info [--model DIR|FILE.gguf | --synthetic NAME] [--context N --quant T --kv-cache T --gpu-memory MIB]
//!   cria bench [--model DIR | --synthetic NAME] [--quant q4_0] [--json]
//!   cria quantize --model DIR|FILE.gguf --to q4_k_m|q5_k_m|q6_k|q8_0|q4_0|...|f16 [--pure] --out DIR2|OUT.gguf


use clap::{Args, Parser, Subcommand};
use cria::generate::{generate, ChatPrompt, GenerateOptions, Generation};
use cria::model::{self, bundled, Device, DeviceChoice, GenerationConfig, Llama, LoadProgress, ModelOptions};
use cria::ops::attention::KvDType;
use cria::ops::WeightDType;
use cria::sampling::SamplingOptions;
use cria::tokenizer::{ChatMessage, Tokenizer};
use cria::{Gpu, GpuOptions};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "cria", version, about = "Run small Llama-family language models on any GPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt, streaming it to stdout.
    Generate {
        #[command(flatten)]
        model: ModelArgs,
        /// The prompt text.
        #[arg(long, short)]
        prompt: String,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Print the generated token ids to stderr when done.
        #[arg(long)]
        print_ids: bool,
    },
    /// Chat interactively, using the model's chat template.
    Chat {
        #[command(flatten)]
        model: ModelArgs,
        /// A system prompt.
        #[arg(long)]
        system: Option<String>,
        #[command(flatten)]
        sampling: SamplingArgs,
    },
    /// Measure prefill and decode speed against the adapter's copy bandwidth.
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// A synthetic model with real shapes and random weights instead of --model:
        /// tinyllama-1.1b, litellama-460m, stories15m, qwen2.5-0.5b or qwen3-0.6b.
        #[arg(long, conflicts_with = "model")]
        synthetic: Option<String>,
        /// The file type of the synthetic model's matrices: f16 (default), bf16, f32, or a ggml
        /// block type as GGUF files hold them (q4_k, q6_k, q8_0, iq4_xs, ...: random blocks);
        /// each kept as is on the GPU unless --quant converts it.
        #[arg(long, default_value = "f16", requires = "synthetic")]
        dtype: String,
        /// Prompt tokens for the prefill measurement.
        #[arg(long, default_value_t = 64)]
        prompt_len: usize,
        /// Tokens to decode (greedy).
        #[arg(long, default_value_t = 32)]
        gen_len: usize,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a copy of a model with its weight matrices quantized as llama-quantize does: a
    /// model directory to a directory, a GGUF file to a GGUF file.
    Quantize {
        /// The Hugging Face model directory or GGUF file to read.
        #[arg(long, short, required_unless_present = "synthetic")]
        model: Option<PathBuf>,
        /// Write a synthetic model (real shapes, random weights) instead: tinyllama-1.1b,
        /// litellama-460m, stories15m, qwen2.5-0.5b or qwen3-0.6b (config.json and weights, no
        /// tokenizer).
        #[arg(long, conflicts_with = "model")]
        synthetic: Option<String>,
        /// A llama-quantize file type: q4_k_m (q4_k), q4_k_s, q5_k_m (q5_k), q5_k_s, q6_k, q8_0,
        /// q5_1, q5_0, q4_1, q4_0, bf16, f16 or f32. Its rules pick each matrix's type (the
        /// output matrix in q6_k, more bits for attn_v/ffn_down in some layers for the _m mixes,
        /// q5_0/q5_1/q8_0 for rows that are not whole 256-value blocks).
        #[arg(long)]
        to: String,
        /// Every matrix in the one weight type --to names (only the fallbacks differ), as
        /// llama-quantize --pure.
        #[arg(long)]
        pure: bool,
        /// The new model directory (must not exist or be empty), or for a GGUF model the new
        /// .gguf file (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Show the GPU adapter, its features and limits, and for a model its config and the GPU
    /// memory it will need (weights, KV cache, activations), checked against this device.
    Info {
        #[command(flatten)]
        model: ModelArgs,
        /// A synthetic model (real shapes, random weights) instead of --model:
        /// tinyllama-1.1b, litellama-460m, stories15m, qwen2.5-0.5b or qwen3-0.6b.
        #[arg(long, conflicts_with = "model")]
        synthetic: Option<String>,
    },
}

#[derive(Args)]
struct ModelArgs {
    /// A Hugging Face model directory (config.json, model.safetensors, tokenizer.json) or a
    /// GGUF file (llama.cpp's format: F32/F16/BF16/Q8_0/Q4_0 tensors); without it, the bundled
    /// Shakespeare model.
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// Context length to allocate (default 4096, or the model's max_position_embeddings if smaller).
    #[arg(long)]
    context: Option<usize>,
    /// Store the weight matrices as f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k or
    /// q6_k on the GPU, converting at load (default: each tensor keeps its file's type).
    #[arg(long)]
    quant: Option<String>,
    /// Element type of the KV cache: f16 (default) or f32.
    #[arg(long, default_value = "f16")]
    kv_cache: String,
    /// GPU memory models may use, in MiB, instead of what the driver reports (a GPU shared
    /// with other work). A model that needs more is refused before loading.
    #[arg(long)]
    gpu_memory: Option<u64>,
    /// Where the model computes: auto (default: the GPU unless there is none or the only
    /// adapter is a software one such as llvmpipe or SwiftShader; says which it chose), gpu, or
    /// cpu (every core, SIMD kernels).
    #[arg(long, default_value = "auto")]
    device: String,
}

impl ModelArgs {
    fn options(&self) -> cria::Result<ModelOptions> {
        let weight_dtype = self.quant.as_deref().map(WeightDType::parse).transpose()?;
        Ok(ModelOptions { context: self.context, weight_dtype, kv_cache: KvDType::parse(&self.kv_cache)? })
    }

    fn gpu_options(&self) -> GpuOptions {
        GpuOptions { memory_budget: self.gpu_memory.map(|mib| mib << 20), ..GpuOptions::default() }
    }

    fn gpu(&self) -> cria::Result<Arc<Gpu>> {
        Ok(Arc::new(pollster::block_on(Gpu::new(self.gpu_options()))?))
    }

    fn device(&self) -> cria::Result<Device> {
        let choice = DeviceChoice::parse(&self.device)?;
        let (device, reason) = pollster::block_on(Device::open(choice, self.gpu_options()))?;
        if choice == DeviceChoice::Auto {
            eprintln!("device: {} ({reason})", device.describe().lines().next().unwrap_or_default());
        }
        Ok(device)
    }
}

#[derive(Args)]
struct SamplingArgs {
    /// Maximum number of tokens to generate.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// 0 for greedy decoding.
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long)]
    top_p: Option<f32>,
    #[arg(long)]
    min_p: Option<f32>,
    #[arg(long)]
    repetition_penalty: Option<f32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop before this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
}

impl SamplingArgs {
    /// Flags win; then the model's generation_config.json; then greedy.
    fn options(&self, config: &GenerationConfig) -> GenerateOptions {
        let defaults = &config.sampling;
        GenerateOptions {
            max_tokens: self.max_tokens,
            sampling: SamplingOptions {
                temperature: self.temperature.unwrap_or(defaults.temperature),
                top_k: self.top_k.unwrap_or(defaults.top_k),
                top_p: self.top_p.unwrap_or(defaults.top_p),
                min_p: self.min_p.unwrap_or(defaults.min_p),
                repetition_penalty: self.repetition_penalty.unwrap_or(defaults.repetition_penalty),
                seed: self.seed,
            },
            stop: self.stop.clone(),
            eos_ids: config.eos_token_ids.clone(),
            ..GenerateOptions::default()
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> cria::Result<()> {
    match cli.command {
        Command::Info { model, synthetic } => info(&model, synthetic.as_deref()),
        Command::Generate { model, prompt, sampling, print_ids } => {
            let (mut llama, tokenizer, defaults) = load(&model)?;
            let options = sampling.options(&defaults);
            let cancel = cancel_on_ctrl_c();
            let g = stream(&mut llama, &tokenizer, &prompt, &options, &cancel)?;
            if print_ids {
                eprintln!("ids: {:?}", g.tokens);
            }
            Ok(())
        }
        Command::Chat { model, system, sampling } => chat(&model, system, &sampling),
        Command::Bench { model, synthetic, dtype, prompt_len, gen_len, json } => bench(&model, synthetic.as_deref(), &dtype, prompt_len, gen_len, json),
        Command::Quantize { model, synthetic, to, pure, out } => quantize(model.as_deref(), synthetic.as_deref(), &to, pure, &out),
    }
}

fn load(args: &ModelArgs) -> cria::Result<(Llama, Tokenizer, GenerationConfig)> {
    let options = args.options()?;
    // The files first, the device after: a wrong path is reported without opening a GPU.
    let Some(path) = &args.model else {
        let mut files = bundled::files()?;
        let tokenizer = files.take_tokenizer()?;
        return Ok((files.load(args.device()?, &options, &mut |_| {})?, tokenizer, files.generation));
    };
    let mut files = model::open(path)?;
    let tokenizer = files.take_tokenizer()?;
    let device = args.device()?;
    let bar = indicatif::ProgressBar::new(files.weight_bytes());
    bar.set_style(
        indicatif::ProgressStyle::with_template("loading {msg:>12} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    let llama = files.load(device, &options, &mut |p: LoadProgress| bar.inc(p.bytes))?;
    bar.finish_and_clear();
    if llama.config.vocab_size < tokenizer.vocab_size() {
        eprintln!("warning: the tokenizer has {} tokens but the model only {}", tokenizer.vocab_size(), llama.config.vocab_size);
    }
    Ok((llama, tokenizer, files.generation))
}

fn stream(llama: &mut Llama, tokenizer: &Tokenizer, prompt: &str, options: &GenerateOptions, cancel: &AtomicBool) -> cria::Result<Generation> {
    let mut out = std::io::stdout();
    let result = pollster::block_on(generate(llama, tokenizer, prompt, options, cancel, &mut |text| {
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }));
    println!();
    let g = result?;
    eprintln!(
        "[{} prompt tokens, {} generated ({:?}); first token {:.0} ms; {:.1} tokens/s]",
        g.prompt_tokens,
        g.tokens.len(),
        g.finish,
        g.time_to_first_token * 1000.0,
        g.decode_tokens_per_second()
    );
    Ok(g)
}

/// Ctrl-C cancels the running generation instead of killing the process; a second one exits.
fn cancel_on_ctrl_c() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    flag
}

fn chat(args: &ModelArgs, system: Option<String>, sampling: &SamplingArgs) -> cria::Result<()> {
    let (mut llama, tokenizer, defaults) = load(args)?;
    let options = sampling.options(&defaults);
    if !tokenizer.has_chat_template() {
        eprintln!("(this model has no chat template: using a plain \"User:/Assistant:\" transcript)");
    }
    let mut messages: Vec<ChatMessage> = system.into_iter().map(|s| ChatMessage { role: "system".into(), content: s }).collect();
    let cancel = cancel_on_ctrl_c();
    let stdin = std::io::stdin();
    let name = args.model.as_ref().map_or(bundled::NAME.to_string(), |m| m.display().to_string());
    eprintln!("chatting with {name} (Ctrl-C stops a reply, Ctrl-D quits)");
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).map_err(|e| cria::Error::Io { path: "stdin".into(), message: e.to_string() })? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        messages.push(ChatMessage { role: "user".into(), content: line.to_string() });
        let prompt = ChatPrompt::new(&tokenizer, &messages)?;
        cancel.store(false, Ordering::SeqCst);
        match stream(&mut llama, &tokenizer, &prompt.text, &prompt.options(&options), &cancel) {
            Ok(g) => messages.push(ChatMessage { role: "assistant".into(), content: g.text.trim().to_string() }),
            Err(cria::Error::Cancelled) => eprintln!("(stopped)"),
            Err(e @ cria::Error::ContextOverflow { .. }) => {
                eprintln!("error: {e}; starting a new conversation");
                messages.retain(|m| m.role == "system");
            }
            Err(e) => return Err(e),
        }
    }
}

/// The file type of a synthetic model's matrices, as `--dtype` spells it.
fn synthetic_dtype(name: &str) -> cria::Result<model::safetensors::Dtype> {
    use model::safetensors::Dtype;
    match WeightDType::parse(name)? {
        WeightDType::F32 => Ok(Dtype::F32),
        WeightDType::F16 => Ok(Dtype::F16),
        WeightDType::BF16 => Ok(Dtype::BF16),
        block => Ok(Dtype::Block(block)),
    }
}

fn info(args: &ModelArgs, synthetic: Option<&str>) -> cria::Result<()> {
    let gpu = args.gpu()?;
    println!("{}", gpu.describe());
    let (name, files) = match (synthetic, &args.model) {
        (Some(name), _) => {
            let config = model::synthetic::config(name)?;
            let weights = model::synthetic::SyntheticWeights::new(&config);
            (format!("synthetic {name}"), model::ModelFiles::without_tokenizer(config, GenerationConfig::default(), Box::new(weights)))
        }
        (None, Some(path)) => (path.display().to_string(), model::open(path)?),
        (None, None) => return Ok(()),
    };
    let (c, bytes) = (&files.config, files.weight_bytes());
    println!(
        "model: {name}\n  layers {}, hidden {}, intermediate {}, heads {} (kv {}), head_dim {}, vocab {}, context {}\n  rope_theta {}, rope_scaling {:?}, tied embeddings {}\n  parameters {:.1} M, weights {:.1} MiB in the file",
        c.num_hidden_layers,
        c.hidden_size,
        c.intermediate_size,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim,
        c.vocab_size,
        c.max_position_embeddings,
        c.rope_theta,
        c.rope_scaling,
        c.tie_word_embeddings,
        c.parameter_count() as f64 / 1e6,
        bytes as f64 / (1 << 20) as f64,
    );
    let plan = files.memory_plan(&args.options()?)?;
    println!("GPU memory at a context of {} tokens: {plan}", plan.context);
    let available = gpu.memory_budget().map_or("the device reports no memory size".to_string(), |(b, what)| format!("{} ({what})", model::memory::mib(b)));
    let (largest, largest_bytes) = plan.largest();
    println!("  device: {available}; largest unsplit buffer {} ({largest}) of {} per binding", model::memory::mib(largest_bytes), model::memory::mib(gpu.max_binding_bytes()));
    plan.check(&gpu)?;
    println!("  fits this device");
    Ok(())
}

/// Prefill and decode throughput of one model, and the decode rate as a fraction of the
/// adapter's copy bandwidth measured in the same run (decode reads every weight once per token).
fn bench(args: &ModelArgs, synthetic: Option<&str>, dtype: &str, prompt_len: usize, gen_len: usize, json: bool) -> cria::Result<()> {
    use cria::generate::now_seconds;
    let mut llama = match synthetic {
        Some(name) => {
            let config = model::synthetic::config(name)?;
            let mut weights = model::synthetic::SyntheticWeights::with_dtype(&config, synthetic_dtype(dtype)?)?;
            let context = args.context.unwrap_or(prompt_len + gen_len + 1).min(config.max_position_embeddings);
            let options = ModelOptions { context: Some(context), ..args.options()? };
            Llama::load(args.device()?, config, &mut weights, &options, &mut |_| {})?
        }
        // No tokenizer needed: the prompt is random ids.
        None => match &args.model {
            Some(path) => {
                let mut files = model::open(path)?;
                files.load(args.device()?, &args.options()?, &mut |_| {})?
            }
            None => load(args)?.0,
        },
    };
    let model_name = match (synthetic, &args.model) {
        (Some(name), _) => format!("synthetic {name} ({dtype} checkpoint)"),
        (None, Some(dir)) => dir.display().to_string(),
        (None, None) => bundled::NAME.to_string(),
    };
    if prompt_len == 0 || prompt_len + gen_len > llama.context {
        return Err(cria::Error::ContextOverflow { prompt: prompt_len, requested: gen_len, context: llama.context });
    }
    let device = llama.device();
    let mut rng = cria::rng::Rng::new(1);
    let vocab = llama.config.vocab_size as u32;
    let prompt: Vec<u32> = (0..prompt_len).map(|_| rng.below(vocab)).collect();
    // Warm-up: compile every pipeline and touch every buffer once.
    let mut token = pollster::block_on(llama.forward_greedy(&prompt, 0))?;
    pollster::block_on(llama.forward_greedy(&[token], prompt_len))?;

    let t0 = now_seconds();
    token = pollster::block_on(llama.forward_greedy(&prompt, 0))?;
    let prefill_s = now_seconds() - t0;
    let t1 = now_seconds();
    for i in 0..gen_len {
        token = pollster::block_on(llama.forward_greedy(&[token], prompt_len + i))?;
    }
    let decode_s = now_seconds() - t1;
    let (dispatches, submits) = (llama.last_dispatches, llama.last_submits);
    // The ceiling: a GPU's copy kernel, or the CPU threads' memory read rate.
    let (copy_bw, adapter, backend) = match &device {
        Device::Gpu(gpu) => (cria::ops::copy::bandwidth(gpu, 64 << 20, 8, 3)?, gpu.info.name.clone(), format!("{:?}", gpu.info.backend)),
        Device::Cpu(pool) => (cria::cpu::read_bandwidth(pool, 256 << 20, 5), device.describe(), "cpu".to_string()),
    };
    let bytes = llama.weight_bytes_per_token();
    let decode_tps = gen_len as f64 / decode_s;
    let achieved = bytes as f64 * decode_tps;
    let prefill_tps = prompt_len as f64 / prefill_s;
    if json {
        let report = serde_json::json!({
            "adapter": adapter,
            "backend": backend,
            "model": model_name,
            "weights": llama.weight_types(),
            "parameters": llama.config.parameter_count(),
            "prompt_len": prompt_len,
            "gen_len": gen_len,
            "prefill_tokens_per_s": prefill_tps,
            "decode_tokens_per_s": decode_tps,
            "weight_bytes_per_token": bytes,
            "achieved_gb_per_s": achieved / 1e9,
            "copy_gb_per_s": copy_bw / 1e9,
            "ratio_to_copy": achieved / copy_bw,
            "dispatches_per_token": dispatches,
            "submits_per_token": submits,
            "kv_cache": llama.memory.kv_dtype.name(),
            "context": llama.context,
            "device": if llama.gpu().is_some() { "gpu" } else { "cpu" },
            "memory_bytes": llama.memory.total(),
        });
        println!("{report}");
    } else {
        println!("adapter: {adapter} ({backend})");
        println!("model: {model_name}, weights {}", llama.weight_types());
        println!("prefill: {prompt_len} tokens in {:.1} ms = {prefill_tps:.1} tokens/s", prefill_s * 1e3);
        println!("decode: {gen_len} tokens in {:.1} ms = {decode_tps:.1} tokens/s", decode_s * 1e3);
        println!("weights read per token: {:.2} MiB; achieved {:.2} GB/s", bytes as f64 / (1 << 20) as f64, achieved / 1e9);
        println!("ceiling (same run; GPU: copy kernel, CPU: memory read): {:.2} GB/s; decode at {:.1}% of it", copy_bw / 1e9, 100.0 * achieved / copy_bw);
        println!("per token: {dispatches} dispatches, {submits} submits");
        println!("{} memory: {}", if llama.gpu().is_some() { "GPU" } else { "host" }, llama.memory);
    }
    Ok(())
}

/// `cria quantize`: a model directory (or a synthetic model) to a directory, or a GGUF file to
/// a GGUF file, matrices typed by llama-quantize's rules for `to`.
fn quantize(model: Option<&std::path::Path>, synthetic: Option<&str>, to: &str, pure: bool, out: &std::path::Path) -> cria::Result<()> {
    let scheme = cria::quant::mix::Scheme::parse(to, pure)?;
    let mut log = |name: &str| eprint!("\r\x1b[Kwriting {name}");
    let in_gguf = model.is_some_and(model::is_gguf);
    let out_gguf = out.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if out_gguf && !in_gguf {
        return Err(cria::Error::Unsupported {
            what: "writing a GGUF file from a model directory".into(),
            hint: "convert the directory with llama.cpp's convert_hf_to_gguf.py, then `cria quantize --model FILE.gguf --out OUT.gguf`; or write a directory (--out DIR)".into(),
        });
    }
    if in_gguf && !out_gguf {
        return Err(cria::Error::Unsupported { what: "writing a model directory from a GGUF file".into(), hint: "give --out a .gguf file name: GGUF in, GGUF out".into() });
    }
    let bytes = match (model, synthetic) {
        (_, Some(name)) => {
            let json = model::synthetic::config_json(name)?;
            let config = model::synthetic::config(name)?;
            model::write::create_out_dir(out)?;
            std::fs::write(out.join("config.json"), json).map_err(|e| cria::Error::Io { path: out.display().to_string(), message: e.to_string() })?;
            let mut weights = model::synthetic::SyntheticWeights::new(&config);
            model::write::write_weights(&mut weights, &out.join("model.safetensors"), scheme, &config, &mut log)?
        }
        (Some(file), None) if in_gguf => {
            let mut src = model::gguf::GgufFile::parse(&file.display().to_string(), cria::model::safetensors::FileSource::open(file)?)?;
            model::gguf::write::requantize(&mut src, out, scheme, &mut log)?
        }
        (Some(dir), None) => model::write::quantize(dir, out, scheme, &mut log)?,
        (None, None) => return Err(cria::Error::Unsupported { what: "quantize without a model".into(), hint: "pass --model DIR|FILE.gguf or --synthetic NAME".into() }),
    };
    let name = match scheme {
        cria::quant::mix::Scheme::Mix(f) => f.name.to_string(),
        cria::quant::mix::Scheme::Pure(t) => format!("{} (pure)", t.name()),
    };
    eprintln!("\r\x1b[Kwrote {} ({:.1} MiB of weights, {name})", out.display(), bytes as f64 / (1 << 20) as f64);
    Ok(())
}
