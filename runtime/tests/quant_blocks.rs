//! Every GGML block type Cria reads, dequantized on the CPU (`cria::quant::ggml`), against the
//! `gguf` package's own numpy dequantizers on random blocks, bit for bit. Fixture:
//! tests/fixtures/quant/blocks.safetensors, made by tests/fixtures/make_quant_blocks.py.

use cria::quant::ggml::{dequantize, BlockType};
use safetensors::SafeTensors;
use std::path::PathBuf;

#[test]
fn every_block_type_dequantizes_bit_for_bit_like_the_gguf_package() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/quant/blocks.safetensors");
    let bytes = std::fs::read(&path).expect("tests/fixtures/quant/blocks.safetensors (run tests/fixtures/make_quant_blocks.py)");
    let fixture = SafeTensors::deserialize(&bytes).unwrap();
    for t in BlockType::ALL {
        let blocks = fixture.tensor(&format!("{}.blocks", t.name())).unwrap();
        assert_eq!(blocks.shape()[1], t.block_bytes(), "{}: block size", t.name());
        let want: Vec<f32> = bytemuck::pod_collect_to_vec(fixture.tensor(&format!("{}.values", t.name())).unwrap().data());
        let got = dequantize(t, blocks.data());
        assert_eq!(got.len(), want.len(), "{}", t.name());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{} value {i} (block {}): got {g}, the gguf package gives {w}", t.name(), i / t.block_values());
        }
        assert_eq!(BlockType::from_ggml_id(t.ggml_id()), Some(t));
    }
}
