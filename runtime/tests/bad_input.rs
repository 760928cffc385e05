//! Bad model directories and bad requests give typed errors that name the file, tensor or field,
//! never a panic. Each case builds a tiny model directory on the fly and breaks one thing.

mod common;

use cria::model::{self, ModelOptions};
use cria::Error;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};


const HIDDEN: usize = 8;
const INTER: usize = 12;
const VOCAB: usize = 20;
const HEADS: usize = 2;

fn config() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": HIDDEN, "intermediate_size": INTER, "num_hidden_layers": 1,
        "num_attention_heads": HEADS, "num_key_value_heads": 1, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "max_position_embeddings": 16, "vocab_size": VOCAB,
        "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2
    })
}

fn tensors() -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let kv = HIDDEN / HEADS;
    let shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![VOCAB, HIDDEN]),
        ("model.layers.0.input_layernorm.weight".into(), vec![HIDDEN]),
        ("model.layers.0.self_attn.q_proj.weight".into(), vec![HIDDEN, HIDDEN]),
        ("model.layers.0.self_attn.k_proj.weight".into(), vec![kv, HIDDEN]),
        ("model.layers.0.self_attn.v_proj.weight".into(), vec![kv, HIDDEN]),
        ("model.layers.0.self_attn.o_proj.weight".into(), vec![HIDDEN, HIDDEN]),
        ("model.layers.0.post_attention_layernorm.weight".into(), vec![HIDDEN]),
        ("model.layers.0.mlp.gate_proj.weight".into(), vec![INTER, HIDDEN]),
        ("model.layers.0.mlp.up_proj.weight".into(), vec![INTER, HIDDEN]),
        ("model.layers.0.mlp.down_proj.weight".into(), vec![HIDDEN, INTER]),
        ("model.norm.weight".into(), vec![HIDDEN]),
        ("lm_head.weight".into(), vec![VOCAB, HIDDEN]),
    ];
    shapes
        .into_iter()
        .map(|(n, s)| {
            let len = s.iter().product::<usize>();
            (n, (s, (0..len).map(|i| ((i * 37 % 17) as f32 - 8.0) / 10.0).collect()))
        })
        .collect()
}

fn write_dir(name: &str, config: &serde_json::Value, tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>, dtype_override: Option<(&str, Dtype)>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cria-bad-input-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let bytes: BTreeMap<&String, Vec<u8>> = tensors.iter().map(|(n, (_, v))| (n, bytemuck::cast_slice(v).to_vec())).collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, (shape, _))| {
            let (dtype, shape, data) = match dtype_override {
                Some((t, d)) if t == n => (d, vec![bytes[n].len()], &bytes[n][..]),
                _ => (Dtype::F32, shape.clone(), &bytes[n][..]),
            };
            (n.clone(), TensorView::new(dtype, shape, data).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    dir
}

fn load(dir: &Path) -> Result<cria::model::Llama, Error> {
    model::load_llama(common::gpu().unwrap(), dir, &ModelOptions::default(), &mut |_| {})
}

#[test]
fn a_good_directory_loads_and_runs() {
    if common::gpu().is_none() {
        return;
    }
    let dir = write_dir("good", &config(), &tensors(), None);
    let mut m = load(&dir).unwrap();
    m.forward(&[1, 5, 7], 0).unwrap();
    let logits = pollster::block_on(m.logits()).unwrap();
    assert!(logits.len() == VOCAB && logits.iter().all(|v| v.is_finite()));
}

#[test]
fn missing_or_malformed_config_names_the_file_and_field() {
    if common::gpu().is_none() {
        return;
    }
    let dir = write_dir("noconfig", &config(), &tensors(), None);
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let err = load(&dir).err().unwrap();
    assert!(err.to_string().contains("config.json") && err.to_string().contains("Hugging Face model directory"), "{err}");
    std::fs::write(dir.join("config.json"), "{\"hidden_size\": 8,").unwrap();
    assert!(load(&dir).err().unwrap().to_string().contains("not valid JSON"));
    let mut c = config();
    c.as_object_mut().unwrap().remove("vocab_size");
    let dir = write_dir("novocab", &c, &tensors(), None);
    assert!(load(&dir).err().unwrap().to_string().contains("`vocab_size` is missing"));
    let mut c = config();
    c["architectures"] = serde_json::json!(["MambaForCausalLM"]);
    let dir = write_dir("arch", &c, &tensors(), None);
    assert!(matches!(load(&dir), Err(Error::UnknownArchitecture { .. })));
}

#[test]
fn truncated_or_lying_weights_are_typed_errors() {
    if common::gpu().is_none() {
        return;
    }
    let dir = write_dir("trunc", &config(), &tensors(), None);
    let path = dir.join("model.safetensors");
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() - 10]).unwrap();
    let err = load(&dir).err().unwrap();
    assert!(matches!(err, Error::Safetensors { .. }) && err.to_string().contains("truncated"), "{err}");
    // A header whose offsets point past the data.
    let n = u64::from_le_bytes(full[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(full[8..8 + n].to_vec()).unwrap();
    let last_end = full.len() - 8 - n;
    let lying = header.replacen(&format!(",{last_end}]"), &format!(",{}]", last_end + 400), 1);
    assert_ne!(lying, header);
    let mut bytes = (lying.len() as u64).to_le_bytes().to_vec();
    bytes.extend(lying.as_bytes());
    bytes.extend(&full[8 + n..]);
    std::fs::write(&path, bytes).unwrap();
    let err = load(&dir).err().unwrap();
    assert!(matches!(err, Error::Safetensors { .. }), "{err}");
}

#[test]
fn wrong_shape_missing_tensor_and_bad_dtype_name_the_tensor() {
    if common::gpu().is_none() {
        return;
    }
    let mut t = tensors();
    t.get_mut("model.layers.0.mlp.up_proj.weight").unwrap().0 = vec![HIDDEN, INTER];
    let err = load(&write_dir("shape", &config(), &t, None)).err().unwrap();
    assert!(matches!(&err, Error::TensorShape { tensor, .. } if tensor == "model.layers.0.mlp.up_proj.weight"), "{err}");
    let mut t = tensors();
    t.remove("model.norm.weight");
    let err = load(&write_dir("missing", &config(), &t, None)).err().unwrap();
    assert!(matches!(&err, Error::MissingTensor { name, .. } if name == "model.norm.weight"), "{err}");
    let err = load(&write_dir("dtype", &config(), &tensors(), Some(("model.norm.weight", Dtype::I8)))).err().unwrap();
    assert_eq!(err.to_string(), "tensor `model.norm.weight` has dtype I8; supported: F32, F16, BF16 (and U8 blocks of Cria-quantized models)");
}

#[test]
fn bad_requests_are_typed_errors_and_the_model_stays_usable() {
    if common::gpu().is_none() {
        return;
    }
    let mut m = load(&write_dir("requests", &config(), &tensors(), None)).unwrap();
    assert!(matches!(m.forward(&[1, VOCAB as u32], 0), Err(Error::TokenOutOfRange { id, vocab_size: VOCAB }) if id == VOCAB as u32));
    assert!(matches!(m.forward(&[], 0), Err(Error::EmptyPrompt)));
    let long: Vec<u32> = (0..17).map(|i| i % 5).collect();
    assert!(matches!(m.forward(&long, 0), Err(Error::ContextOverflow { context: 16, .. })));
    m.forward(&[1, 2, 3], 0).unwrap();
    assert!(pollster::block_on(m.logits()).unwrap().iter().all(|v| v.is_finite()));
}

#[test]
fn a_sharded_checkpoint_loads_like_a_single_file() {
    if common::gpu().is_none() {
        return;
    }
    let single = write_dir("single", &config(), &tensors(), None);
    let sharded = write_dir("sharded", &config(), &tensors(), None);
    std::fs::remove_file(sharded.join("model.safetensors")).unwrap();
    // Two shards and the index transformers writes for them.
    let all = tensors();
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [all.iter().take(5).collect::<Vec<_>>(), all.iter().skip(5).collect()].into_iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let views: Vec<(String, TensorView<'_>)> = part
            .iter()
            .map(|(n, (shape, v))| {
                weight_map.insert((*n).clone(), serde_json::json!(file));
                ((*n).clone(), TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(v)).unwrap())
            })
            .collect();
        safetensors::serialize_to_file(views, None, &sharded.join(&file)).unwrap();
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(sharded.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let run = |dir: &Path| {
        let mut m = load(dir).unwrap();
        m.forward(&[3, 1, 4, 1, 5], 0).unwrap();
        pollster::block_on(m.logits()).unwrap()
    };
    assert_eq!(run(&single), run(&sharded));
    // An index naming a shard that is not there.
    std::fs::remove_file(sharded.join("model-00002-of-00002.safetensors")).unwrap();
    let err = load(&sharded).err().unwrap();
    assert!(matches!(&err, Error::Io { path, .. } if path.ends_with("model-00002-of-00002.safetensors")), "{err}");
}

/// Families: a config of a known family missing a key it needs, weights of one family under a
/// config that names another, a variant the forward pass does not have: typed errors naming
/// what is wrong.
#[test]
fn family_mismatches_are_typed_errors() {
    if common::gpu().is_none() {
        return;
    }
    let qwen2 = |c: &mut serde_json::Value| {
        c["architectures"] = serde_json::json!(["Qwen2ForCausalLM"]);
        c["model_type"] = serde_json::json!("qwen2");
    };
    // Qwen2 needs its q/k/v biases.
    let mut c = config();
    qwen2(&mut c);
    let err = load(&write_dir("qwen2-nobias", &c, &tensors(), None)).err().unwrap();
    assert!(matches!(err, Error::MissingTensor { ref name, .. } if name == "model.layers.0.self_attn.q_proj.bias"), "{err}");
    // With them it loads and runs.
    let mut t = tensors();
    for (p, len) in [("q", HIDDEN), ("k", HIDDEN / HEADS), ("v", HIDDEN / HEADS)] {
        t.insert(format!("model.layers.0.self_attn.{p}_proj.bias"), (vec![len], vec![0.25; len]));
    }
    let mut m = load(&write_dir("qwen2", &c, &t, None)).unwrap();
    m.forward(&[1, 5, 7], 0).unwrap();
    // The same biased weights under a Llama config: refused, not run without the biases.
    let err = load(&write_dir("llama-with-bias", &config(), &t, None)).err().unwrap();
    assert!(matches!(err, Error::Unsupported { ref what, .. } if what.contains("q_proj.bias") && what.contains("llama")), "{err}");
    // A known family missing a key it needs.
    c.as_object_mut().unwrap().remove("intermediate_size");
    let err = load(&write_dir("qwen2-nointer", &c, &t, None)).err().unwrap();
    assert!(err.to_string().contains("`intermediate_size` is missing"), "{err}");
    // Variants not run yet.
    for (key, what) in [("use_sliding_window", "use_sliding_window"), ("attention_bias", "attention_bias")] {
        let mut c = config();
        qwen2(&mut c);
        c[key] = serde_json::json!(true);
        let err = load(&write_dir(key, &c, &t, None)).err().unwrap();
        assert!(matches!(err, Error::Unsupported { what: ref w, .. } if w.contains(what)), "{err}");
    }
    // A NaN in a bias is refused like a NaN anywhere else.
    let mut bad = t.clone();
    bad.get_mut("model.layers.0.self_attn.k_proj.bias").unwrap().1[1] = f32::NAN;
    let mut c = config();
    qwen2(&mut c);
    let err = load(&write_dir("qwen2-nan", &c, &bad, None)).err().unwrap();
    assert!(matches!(err, Error::NonFinite { ref tensor, .. } if tensor.contains("k_proj.bias")), "{err}");

    // Gemma 3: a config naming it needs its q/k norms and four norms per layer.
    let gemma = |c: &mut serde_json::Value| {
        c["architectures"] = serde_json::json!(["Gemma3ForCausalLM"]);
        c["model_type"] = serde_json::json!("gemma3_text");
        c["head_dim"] = serde_json::json!(HIDDEN / HEADS);
        c["layer_types"] = serde_json::json!(["sliding_attention"]);
        c["sliding_window"] = serde_json::json!(2);
    };
    let mut c = config();
    gemma(&mut c);
    let err = load(&write_dir("gemma-llama-tensors", &c, &tensors(), None)).err().unwrap();
    assert!(matches!(err, Error::MissingTensor { ref name, .. } if name.contains("norm")), "{err}");
    let mut t = tensors();
    for (name, len) in [("self_attn.q_norm", HIDDEN / HEADS), ("self_attn.k_norm", HIDDEN / HEADS), ("pre_feedforward_layernorm", HIDDEN), ("post_feedforward_layernorm", HIDDEN)] {
        t.insert(format!("model.layers.0.{name}.weight"), (vec![len], vec![0.1; len]));
    }
    let mut m = load(&write_dir("gemma", &c, &t, None)).unwrap();
    m.forward(&[1, 5, 7, 3], 0).unwrap();
    // Gemma's tensors under a Llama or a Qwen3 config: refused, naming the tensor the named
    // family does not have.
    let mut qwen3 = config();
    qwen3["architectures"] = serde_json::json!(["Qwen3ForCausalLM"]);
    qwen3["head_dim"] = serde_json::json!(HIDDEN / HEADS);
    for (cfg, tensor) in [(config(), "q_norm"), (qwen3, "post_feedforward_layernorm")] {
        let err = load(&write_dir("gemma-tensors-elsewhere", &cfg, &t, None)).err().unwrap();
        assert!(matches!(err, Error::Unsupported { ref what, ref hint } if what.contains(tensor) && hint.contains("wrong architecture")), "{err}");
    }
    // An unknown layer type, and a layer_types list of the wrong length, name the key.
    for types in [serde_json::json!(["chunked_attention"]), serde_json::json!(["sliding_attention", "full_attention"])] {
        let mut c = config();
        gemma(&mut c);
        c["layer_types"] = types;
        let err = load(&write_dir("gemma-layer-types", &c, &t, None)).err().unwrap();
        assert!(matches!(err, Error::Config { ref field, .. } if field == "layer_types"), "{err}");
    }
    // A Gemma config missing a key it needs.
    let mut c = config();
    gemma(&mut c);
    c.as_object_mut().unwrap().remove("num_attention_heads");
    let err = load(&write_dir("gemma-noheads", &c, &t, None)).err().unwrap();
    assert!(err.to_string().contains("`num_attention_heads` is missing"), "{err}");
}
