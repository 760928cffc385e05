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

/// Cria's quantizers write the bytes llama.cpp's `llama-quantize --pure` writes (its
/// `quantize_row_*_ref`, no importance matrix) for every type Cria quantizes to, on rows of a
/// model's matrix with edge cases first (zeros, all positive, all negative, an outlier, a
/// constant, tiny values, half zeros, a ramp). Fixture: tests/fixtures/kquant/quantizer.safetensors,
/// made by tests/fixtures/make_kquant.py with llama.cpp's tools.
#[test]
fn quantizers_write_what_llama_quantize_writes() {
    use cria::ops::WeightDType;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/kquant/quantizer.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let fixture = SafeTensors::deserialize(&bytes).unwrap();
    let source = fixture.tensor("source").unwrap();
    let cols = source.shape()[1];
    let source: Vec<f32> = bytemuck::pod_collect_to_vec(source.data());
    let mut checked = Vec::new();
    for t in BlockType::ALL {
        let dtype = WeightDType::Block(t);
        let Ok(want) = fixture.tensor(t.name()) else {
            assert!(!cria::quant::can_quantize(dtype), "{}: Cria quantizes to it but the fixture has no llama-quantize output", t.name());
            continue;
        };
        let row_bytes = want.shape()[1];
        for (r, (row, want)) in source.chunks(cols).zip(want.data().chunks(row_bytes)).enumerate() {
            let mut got = Vec::new();
            cria::quant::quantize_row(dtype, row, &mut got).unwrap();
            if got != want {
                let b = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                panic!("{} row {r}: byte {b} (block {}) differs: got {:?}, llama-quantize wrote {:?}", t.name(), b / t.block_bytes(), &got[b..(b + 8).min(got.len())], &want[b..(b + 8).min(want.len())]);
            }
        }
        checked.push(t.name());
    }
    assert_eq!(checked, ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k", "q5_k", "q6_k"]);
}
