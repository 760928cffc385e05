//! Export to a Hugging Face model directory (what `LlamaForCausalLM.from_pretrained` and the
//! cria runtime load), and load such a directory back.
//!
//! HF's q_proj/k_proj rows are in the rotate_half RoPE layout, which is the layout the trainer
//! uses natively ([`crate::ops::rope_forward`]), so weights are written as they are.

use crate::config::LlamaConfig;
use crate::error::{Result, TrainError};
use crate::fsutil::write_atomic;
use crate::model::{Model, ParamLayout};
use crate::tokenizer::Tok;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportDtype {
    F32,
    F16,
}

impl ExportDtype {
    fn torch_name(self) -> &'static str {
        match self {
            ExportDtype::F32 => "float32",
            ExportDtype::F16 => "float16",
        }
    }
}

/// A small Jinja chat template: role-prefixed turns, BOS first.
pub const CHAT_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}{{ message['role'] | upper }}: {{ message['content'] }}\n{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}";

pub fn hf_config_json(cfg: &LlamaConfig, dtype: ExportDtype) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim(),
        "hidden_act": "silu",
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        // transformers >= 5 reads RoPE settings from here; older versions read rope_theta.
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "rope_scaling": null,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "attention_bias": false,
        "attention_dropout": 0.0,
        "mlp_bias": false,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": true,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "torch_dtype": dtype.torch_name(),
        // transformers >= 5 name for the same field.
        "dtype": dtype.torch_name(),
    })
}

/// Write `dir/{config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
/// generation_config.json}`. Each file is written atomically.
pub fn export_hf(model: &Model<f32>, tokenizer_json: &str, dir: &Path, dtype: ExportDtype) -> Result<()> {
    let cfg = &model.cfg;
    let tok = Tok::from_json(tokenizer_json)?;
    if tok.vocab_size() > cfg.vocab_size {
        return Err(TrainError::config(
            "vocab_size",
            cfg.vocab_size,
            format!("the tokenizer has {} entries; the model must cover them", tok.vocab_size()),
        ));
    }
    std::fs::create_dir_all(dir).map_err(TrainError::io("create export folder", dir))?;
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).expect("json serializes") + "\n";
    write_atomic(&dir.join("config.json"), pretty(&hf_config_json(cfg, dtype)).as_bytes())?;

    // Tensor bytes, in layout order (lm_head is absent when tied: HF re-ties it on load).
    let mut blobs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for spec in &model.layout.tensors {
        let vals = &model.params[spec.range()];
        let bytes: Vec<u8> = match dtype {
            ExportDtype::F32 => vals.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ExportDtype::F16 => vals.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
        };
        blobs.push((spec.name.clone(), spec.shape.clone(), bytes));
    }
    let st_dtype = match dtype {
        ExportDtype::F32 => Dtype::F32,
        ExportDtype::F16 => Dtype::F16,
    };
    let views: Vec<(String, TensorView<'_>)> = blobs
        .iter()
        .map(|(n, s, b)| (n.clone(), TensorView::new(st_dtype, s.clone(), b).expect("shape matches bytes")))
        .collect();
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let st = safetensors::serialize(views, Some(meta))
        .map_err(|e| TrainError::BadModelFile { path: dir.join("model.safetensors"), reason: e.to_string() })?;
    write_atomic(&dir.join("model.safetensors"), &st)?;

    write_atomic(&dir.join("tokenizer.json"), tokenizer_json.as_bytes())?;
    let name = |id: u32| tok.id_to_token(id).unwrap_or_default();
    let tcfg = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": name(cfg.bos_token_id),
        "eos_token": name(cfg.eos_token_id),
        "pad_token": name(cfg.eos_token_id),
        "add_bos_token": true,
        "add_eos_token": false,
        "clean_up_tokenization_spaces": false,
        "model_max_length": cfg.max_position_embeddings,
        "chat_template": CHAT_TEMPLATE,
    });
    write_atomic(&dir.join("tokenizer_config.json"), pretty(&tcfg).as_bytes())?;
    let gcfg = serde_json::json!({
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.eos_token_id,
        "do_sample": true,
        "temperature": 0.8,
        "top_k": 40,
    });
    write_atomic(&dir.join("generation_config.json"), pretty(&gcfg).as_bytes())?;
    Ok(())
}

fn cfg_field<T: serde::de::DeserializeOwned>(v: &serde_json::Value, key: &str, path: &Path) -> Result<T> {
    let x = v.get(key).cloned().ok_or_else(|| TrainError::BadModelFile { path: path.to_path_buf(), reason: format!("missing key {key}") })?;
    serde_json::from_value(x).map_err(|e| TrainError::BadModelFile { path: path.to_path_buf(), reason: format!("key {key}: {e}") })
}

/// Parse an HF Llama config.json into [`LlamaConfig`].
pub fn parse_hf_config(v: &serde_json::Value, path: &Path) -> Result<LlamaConfig> {
    let hidden: usize = cfg_field(v, "hidden_size", path)?;
    let heads: usize = cfg_field(v, "num_attention_heads", path)?;
    let theta = v
        .get("rope_parameters")
        .and_then(|r| r.get("rope_theta"))
        .and_then(|t| t.as_f64())
        .or_else(|| v.get("rope_theta").and_then(|t| t.as_f64()))
        .unwrap_or(10000.0);
    if let Some(hd) = v.get("head_dim").and_then(|h| h.as_u64())
        && heads > 0
        && hd as usize * heads != hidden
    {
        return Err(TrainError::Unsupported { what: format!("head_dim {hd} != hidden_size / num_attention_heads ({path:?})") });
    }
    let cfg = LlamaConfig {
        vocab_size: cfg_field(v, "vocab_size", path)?,
        hidden_size: hidden,
        intermediate_size: cfg_field(v, "intermediate_size", path)?,
        num_hidden_layers: cfg_field(v, "num_hidden_layers", path)?,
        num_attention_heads: heads,
        num_key_value_heads: v.get("num_key_value_heads").and_then(|x| x.as_u64()).map(|x| x as usize).unwrap_or(heads),
        rms_norm_eps: cfg_field(v, "rms_norm_eps", path)?,
        rope_theta: theta,
        max_position_embeddings: cfg_field(v, "max_position_embeddings", path)?,
        tie_word_embeddings: v.get("tie_word_embeddings").and_then(|x| x.as_bool()).unwrap_or(false),
        bos_token_id: cfg_field(v, "bos_token_id", path)?,
        eos_token_id: cfg_field(v, "eos_token_id", path)?,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Read the tensors of `layout` from safetensors bytes (F32, F16 or BF16), with an optional
/// name prefix (`param.` in the test fixtures).
pub fn params_from_safetensors(layout: &ParamLayout, st: &SafeTensors<'_>, prefix: &str, path: &Path) -> Result<Vec<f32>> {
    let mut params = vec![0.0f32; layout.total];
    for spec in &layout.tensors {
        let name = format!("{prefix}{}", spec.name);
        let bad = |reason: String| TrainError::BadModelFile { path: path.to_path_buf(), reason };
        let t = st.tensor(&name).map_err(|e| bad(format!("tensor {name}: {e}")))?;
        if t.shape() != spec.shape.as_slice() {
            return Err(bad(format!("tensor {name} has shape {:?}, config needs {:?}", t.shape(), spec.shape)));
        }
        let out = &mut params[spec.range()];
        let d = t.data();
        match t.dtype() {
            Dtype::F32 => out.iter_mut().zip(d.chunks_exact(4)).for_each(|(o, c)| *o = f32::from_le_bytes(c.try_into().unwrap())),
            Dtype::F16 => out.iter_mut().zip(d.chunks_exact(2)).for_each(|(o, c)| *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
            Dtype::BF16 => out.iter_mut().zip(d.chunks_exact(2)).for_each(|(o, c)| *o = half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
            other => return Err(bad(format!("tensor {name} has dtype {other:?}; supported: F32, F16, BF16"))),
        }
    }
    Ok(params)
}

/// Load an HF Llama directory written by [`export_hf`] (or any with the same tensor names).
/// Returns the model and the tokenizer.json text.
pub fn load_hf(dir: &Path) -> Result<(Model<f32>, String)> {
    let cp = dir.join("config.json");
    let text = std::fs::read_to_string(&cp).map_err(TrainError::io("read", &cp))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|source| TrainError::Json { path: cp.clone(), source })?;
    let cfg = parse_hf_config(&v, &cp)?;
    let wp = dir.join("model.safetensors");
    let bytes = std::fs::read(&wp).map_err(TrainError::io("read", &wp))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| TrainError::BadModelFile { path: wp.clone(), reason: e.to_string() })?;
    let params = params_from_safetensors(&ParamLayout::new(&cfg), &st, "", &wp)?;
    let tp = dir.join("tokenizer.json");
    let tokenizer_json = std::fs::read_to_string(&tp).map_err(TrainError::io("read", &tp))?;
    Ok((Model::from_params(cfg, params), tokenizer_json))
}
