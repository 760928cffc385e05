//! Export to a Hugging Face folder: file set, config fields, tensor names, and the round trip
//! export → load_hf → identical logits. Also the CLI end to end on synthetic data.

mod common;

use cria_train::export::{self, ExportDtype};
use cria_train::train::Trainer;
use cria_train::Model;
use safetensors::SafeTensors;

#[test]
fn export_writes_hf_llama_folder_and_round_trips() {
    let (dir, ds) = common::synthetic_dataset("export", 2, 400, 300);
    for tied in [false, true] {
        let mut m = common::micro_model(&ds);
        m.tie_word_embeddings = tied;
        let mut tr = Trainer::new(m, common::micro_train(5), ds.clone()).unwrap();
        for _ in 0..3 {
            tr.step().unwrap();
        }
        let out = dir.join(if tied { "hf-tied" } else { "hf-untied" });
        export::export_hf(&tr.model, tr.tokenizer_json(), &out, ExportDtype::F32).unwrap();
        for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
            assert!(out.join(f).is_file(), "{f} missing");
        }
        let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["architectures"][0], "LlamaForCausalLM");
        assert_eq!(cfg["model_type"], "llama");
        assert_eq!(cfg["head_dim"], 8);
        assert_eq!(cfg["num_key_value_heads"], 2);
        assert_eq!(cfg["tie_word_embeddings"], tied);
        assert_eq!(cfg["torch_dtype"], "float32");
        let tcfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap()).unwrap();
        assert_eq!(tcfg["bos_token"], "<s>");
        assert_eq!(tcfg["eos_token"], "</s>");
        assert!(tcfg["chat_template"].as_str().unwrap().contains("messages"));
        let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
        assert!(names.contains(&"model.layers.1.self_attn.k_proj.weight".to_string()));
        assert!(names.contains(&"model.layers.0.mlp.down_proj.weight".to_string()));
        assert_eq!(names.contains(&"lm_head.weight".to_string()), !tied, "lm_head present iff untied");
        assert_eq!(st.tensor("model.layers.0.self_attn.k_proj.weight").unwrap().shape(), &[16, 32]);

        let (back, tj) = export::load_hf(&out).unwrap();
        assert_eq!(tj, tr.tokenizer_json());
        let ids: Vec<u32> = (0..20).map(|i| (i * 7 + 3) % ds.vocab_size as u32).collect();
        let want = tr.model.logits(&ids);
        assert!(back.logits(&ids).iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "f32 round trip must be exact");

        let out16 = dir.join(if tied { "hf16-tied" } else { "hf16-untied" });
        export::export_hf(&tr.model, tr.tokenizer_json(), &out16, ExportDtype::F16).unwrap();
        let (back16, _): (Model<f32>, _) = export::load_hf(&out16).unwrap();
        let got = back16.logits(&ids);
        let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let err = got.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        println!("tied={tied}: f16 export max logit error {err:.2e} (max |logit| {scale:.2})");
        assert!(err < 1e-2 * scale.max(1.0), "f16 export drifted: {err}");
    }
}

#[test]
fn cli_prepare_train_resume_export_generate() {
    let dir = common::scratch("cli-e2e");
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("a.txt"), common::synthetic_text(7, 800)).unwrap();
    std::fs::write(corpus.join("b.txt"), common::synthetic_text(8, 800)).unwrap();
    let bin = env!("CARGO_BIN_EXE_cria-train");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).current_dir(&dir).output().unwrap();
        let (so, se) = (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
        assert!(out.status.success(), "cria-train {args:?} failed:\n{so}\n{se}");
        so
    };
    println!("{}", run(&["prepare", "--corpus", "corpus", "--tokenizer-vocab", "300", "--out", "data"]));
    std::fs::write(
        dir.join("cfg.json"),
        r#"{"model": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 1, "max_position_embeddings": 64},
           "train": {"batch_size": 4, "seq_len": 32, "steps": 12, "warmup_steps": 2, "val_every": 4, "val_batches": 2, "checkpoint_every": 4}}"#,
    )
    .unwrap();
    run(&["train", "--data", "data", "--config", "cfg.json", "--out", "run", "--max-steps-this-run", "6", "--lr", "0.005"]);
    let s = run(&["train", "--data", "data", "--out", "run", "--resume"]);
    assert!(s.contains("done: step 12"), "{s}");
    let metrics = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().filter(|l| l.contains("tokens_per_s")).count(), 12);
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("run/train_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["train"]["lr"].as_f64().unwrap() as f32, 0.005, "flag overrides config file");
    run(&["export", "--checkpoint", "run/checkpoint.bin", "--out", "hf", "--dtype", "f16"]);
    run(&["logits", "--model", "hf", "--text", "the king", "--out", "logits.json"]);
    let lj: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("logits.json")).unwrap()).unwrap();
    assert_eq!(lj["tokens"][0], 0, "logits input starts with <s>");
    let g = run(&["generate", "--checkpoint", "run/checkpoint.bin", "--prompt", "the king", "--tokens", "8"]);
    assert!(g.starts_with("the king"), "{g}");
}
