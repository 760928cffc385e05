//! ggml's block formats (`ggml-common.h`) and their dequantization on the CPU: the reference
//! every GPU kernel of a block type is checked against, and the way a GGUF tensor of any of
//! these types is read as f32 (conversions, `quantize`). Checked bit for bit against the `gguf`
//! package's numpy dequantizers on random blocks of every type (runtime/tests/quant_blocks.rs,
//! fixture by tests/fixtures/make_quant_blocks.py): the arithmetic below is done in f32 in the
//! same order as theirs (no fused multiply-add).
//!
//! Super-block ("K") types hold 256 values; the others 32. f16 fields are little-endian.

use half::f16;

/// The block types Cria reads.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockType {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    IQ4_NL,
    IQ4_XS,
}

/// Values per super-block of the K types.
pub const QK_K: usize = 256;

/// The non-linear 4-bit codebook of IQ4_NL and IQ4_XS.
pub(crate) const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

impl BlockType {
    pub const ALL: [BlockType; 12] = [
        BlockType::Q4_0,
        BlockType::Q4_1,
        BlockType::Q5_0,
        BlockType::Q5_1,
        BlockType::Q8_0,
        BlockType::Q2_K,
        BlockType::Q3_K,
        BlockType::Q4_K,
        BlockType::Q5_K,
        BlockType::Q6_K,
        BlockType::IQ4_NL,
        BlockType::IQ4_XS,
    ];

    /// The type's id in GGUF files (`ggml_type`).
    pub fn ggml_id(self) -> u32 {
        match self {
            BlockType::Q4_0 => 2,
            BlockType::Q4_1 => 3,
            BlockType::Q5_0 => 6,
            BlockType::Q5_1 => 7,
            BlockType::Q8_0 => 8,
            BlockType::Q2_K => 10,
            BlockType::Q3_K => 11,
            BlockType::Q4_K => 12,
            BlockType::Q5_K => 13,
            BlockType::Q6_K => 14,
            BlockType::IQ4_NL => 20,
            BlockType::IQ4_XS => 23,
        }
    }

    pub fn from_ggml_id(id: u32) -> Option<BlockType> {
        Self::ALL.into_iter().find(|t| t.ggml_id() == id)
    }

    /// The name as ggml spells it, lower case (`q4_k`, `iq4_xs`).
    pub fn name(self) -> &'static str {
        match self {
            BlockType::Q4_0 => "q4_0",
            BlockType::Q4_1 => "q4_1",
            BlockType::Q5_0 => "q5_0",
            BlockType::Q5_1 => "q5_1",
            BlockType::Q8_0 => "q8_0",
            BlockType::Q2_K => "q2_k",
            BlockType::Q3_K => "q3_k",
            BlockType::Q4_K => "q4_k",
            BlockType::Q5_K => "q5_k",
            BlockType::Q6_K => "q6_k",
            BlockType::IQ4_NL => "iq4_nl",
            BlockType::IQ4_XS => "iq4_xs",
        }
    }

    /// Values per block.
    pub fn block_values(self) -> usize {
        match self {
            BlockType::Q2_K | BlockType::Q3_K | BlockType::Q4_K | BlockType::Q5_K | BlockType::Q6_K | BlockType::IQ4_XS => QK_K,
            _ => 32,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            BlockType::Q4_0 | BlockType::IQ4_NL => 2 + 16,
            BlockType::Q4_1 => 2 + 2 + 16,
            BlockType::Q5_0 => 2 + 4 + 16,
            BlockType::Q5_1 => 2 + 2 + 4 + 16,
            BlockType::Q8_0 => 2 + 32,
            BlockType::Q2_K => QK_K / 16 + QK_K / 4 + 2 + 2,
            BlockType::Q3_K => QK_K / 8 + QK_K / 4 + 12 + 2,
            BlockType::Q4_K => 2 + 2 + 12 + QK_K / 2,
            BlockType::Q5_K => 2 + 2 + 12 + QK_K / 8 + QK_K / 2,
            BlockType::Q6_K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
            BlockType::IQ4_XS => 2 + 2 + QK_K / 64 + QK_K / 2,
        }
    }

    /// llama-quantize's type for a matrix whose rows are not whole blocks of this 256-value type
    /// (`tensor_type_fallback`): a 32-value type of about the same bits. None for 32-value types.
    pub fn fallback(self) -> Option<BlockType> {
        match self {
            BlockType::Q2_K | BlockType::Q3_K => Some(BlockType::Q4_0),
            BlockType::Q4_K => Some(BlockType::Q5_0),
            BlockType::Q5_K => Some(BlockType::Q5_1),
            BlockType::Q6_K => Some(BlockType::Q8_0),
            BlockType::IQ4_XS => Some(BlockType::IQ4_NL),
            _ => None,
        }
    }

    /// Where the block's 16-bit fields are (the f16 scales, and IQ4_XS's high scale bits): the
    /// byte offset of the first, how many, and how many of them (the first) are f16 scales.
    /// They are either a prefix or a suffix of the block, so the rest (the body: quants and
    /// packed sub-block scales) is contiguous and a whole number of 4-byte words. The GPU
    /// layout ([`crate::quant::repack_row`]) stores the bodies verbatim and the fields apart.
    pub fn header(self) -> Header {
        let (at, fields, scales) = match self {
            BlockType::Q4_0 | BlockType::Q5_0 | BlockType::Q8_0 | BlockType::IQ4_NL => (0, 1, 1),
            BlockType::Q4_1 | BlockType::Q5_1 | BlockType::Q4_K | BlockType::Q5_K => (0, 2, 2),
            BlockType::IQ4_XS => (0, 2, 1),
            BlockType::Q2_K => (QK_K / 16 + QK_K / 4, 2, 2),
            BlockType::Q3_K => (QK_K / 8 + QK_K / 4 + 12, 1, 1),
            BlockType::Q6_K => (QK_K / 2 + QK_K / 4 + QK_K / 16, 1, 1),
        };
        Header { at, fields, scales }
    }

    /// u32 words of the block's body (the block without its 16-bit header fields).
    pub fn body_words(self) -> usize {
        (self.block_bytes() - 2 * self.header().fields) / 4
    }

    /// The block's body bytes: everything but the header fields.
    pub fn body(self, block: &[u8]) -> &[u8] {
        let h = self.header();
        if h.at == 0 { &block[2 * h.fields..] } else { &block[..h.at] }
    }

    /// Header field `i` of a block, as stored (little-endian 16 bits).
    pub fn header_field(self, block: &[u8], i: usize) -> u16 {
        let at = self.header().at + 2 * i;
        u16::from_le_bytes([block[at], block[at + 1]])
    }

    /// Dequantizes one block (`block_bytes` bytes) into `out` (`block_values` values).
    pub fn dequantize_block(self, b: &[u8], out: &mut [f32]) {
        assert!(b.len() == self.block_bytes() && out.len() == self.block_values(), "one {} block", self.name());
        let half = |at: usize| f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32();
        // Value j of a 32-value block whose 4-bit quants are in `qs`: low nibbles first.
        let nibble = |qs: &[u8], j: usize| (qs[j % 16] >> (4 * (j / 16))) & 0xF;
        match self {
            BlockType::Q4_0 => {
                let d = half(0);
                for (j, y) in out.iter_mut().enumerate() {
                    *y = d * (nibble(&b[2..], j) as i32 - 8) as f32;
                }
            }
            BlockType::Q4_1 => {
                let (d, m) = (half(0), half(2));
                for (j, y) in out.iter_mut().enumerate() {
                    *y = d * nibble(&b[4..], j) as f32 + m;
                }
            }
            BlockType::Q5_0 | BlockType::Q5_1 => {
                let (d, m, rest) = if self == BlockType::Q5_0 { (half(0), 0.0, &b[2..]) } else { (half(0), half(2), &b[4..]) };
                let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                for (j, y) in out.iter_mut().enumerate() {
                    let q = nibble(&rest[4..], j) as u32 | (((qh >> j) & 1) << 4);
                    *y = if self == BlockType::Q5_0 { d * (q as i32 - 16) as f32 } else { d * q as f32 + m };
                }
            }
            BlockType::Q8_0 => {
                let d = half(0);
                for (j, y) in out.iter_mut().enumerate() {
                    *y = b[2 + j] as i8 as f32 * d;
                }
            }
            BlockType::Q2_K => {
                let (scales, qs) = (&b[..16], &b[16..80]);
                let (d, dmin) = (half(80), half(82));
                for (e, y) in out.iter_mut().enumerate() {
                    let (h, j, l) = (e / 128, (e % 128) / 32, e % 32);
                    let q = (qs[h * 32 + l] >> (2 * j)) & 3;
                    let sc = scales[e / 16];
                    let (dl, ml) = (d * (sc & 0xF) as f32, dmin * (sc >> 4) as f32);
                    *y = dl * q as f32 - ml;
                }
            }
            BlockType::Q3_K => {
                let (hmask, qs, scales) = (&b[..32], &b[32..96], &b[96..108]);
                let d = half(108);
                for (e, y) in out.iter_mut().enumerate() {
                    let s = e / 16;
                    let low = (scales[s % 8] >> (4 * (s / 8))) & 0xF;
                    let high = (scales[8 + s % 4] >> (2 * (s / 4))) & 3;
                    let dl = d * ((low | (high << 4)) as i32 - 32) as f32;
                    let (h, j, l) = (e / 128, (e % 128) / 32, e % 32);
                    let q = ((qs[h * 32 + l] >> (2 * j)) & 3) as i32;
                    let hbit = (hmask[l] >> (e / 32)) & 1;
                    *y = dl * (q - if hbit == 1 { 0 } else { 4 }) as f32;
                }
            }
            BlockType::Q4_K | BlockType::Q5_K => {
                let (d, dmin, scales) = (half(0), half(2), &b[4..16]);
                let (qh, qs) = if self == BlockType::Q5_K { (Some(&b[16..48]), &b[48..]) } else { (None, &b[16..]) };
                for (e, y) in out.iter_mut().enumerate() {
                    let (sc, m) = scale_min_k4(e / 32, scales);
                    let (c, s, l) = (e / 64, (e % 64) / 32, e % 32);
                    let mut q = (qs[c * 32 + l] >> (4 * s)) & 0xF;
                    if let Some(qh) = qh {
                        q |= ((qh[l] >> (e / 32)) & 1) << 4;
                    }
                    *y = d * sc as f32 * q as f32 - dmin * m as f32;
                }
            }
            BlockType::Q6_K => {
                let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
                let d = half(208);
                for (e, y) in out.iter_mut().enumerate() {
                    let (h, r) = (e / 128, e % 128);
                    let low = (ql[h * 64 + r % 64] >> (4 * (r / 64))) & 0xF;
                    let high = (qh[h * 32 + r % 32] >> (2 * (r / 32))) & 3;
                    let q = (low | (high << 4)) as i32 - 32;
                    *y = d * scales[e / 16] as i8 as f32 * q as f32;
                }
            }
            BlockType::IQ4_NL => {
                let d = half(0);
                for (j, y) in out.iter_mut().enumerate() {
                    *y = d * KVALUES_IQ4NL[nibble(&b[2..], j) as usize] as f32;
                }
            }
            BlockType::IQ4_XS => {
                let (d, scales_h, scales_l, qs) = (half(0), u16::from_le_bytes([b[2], b[3]]), &b[4..8], &b[8..]);
                for (e, y) in out.iter_mut().enumerate() {
                    let ib = e / 32;
                    let ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | ((((scales_h >> (2 * ib)) & 3) as u8) << 4);
                    let dl = d * (ls as i32 - 32) as f32;
                    *y = dl * KVALUES_IQ4NL[nibble(&qs[ib * 16..], e % 32) as usize] as f32;
                }
            }
        }
    }
}

/// The 16-bit fields of a block (see [`BlockType::header`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Byte offset of the first field.
    pub at: usize,
    /// Number of 16-bit fields.
    pub fields: usize,
    /// How many of them, the first, are f16 scales (the rest are bits).
    pub scales: usize,
}

/// Scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K super-block: 6 bits each, packed in 12
/// bytes (ggml's `get_scale_min_k4`).
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// `n` blocks of type `t` made of random bits (`bits()` gives 32 at a time), with every f16
/// scale field set so that each block's largest value has magnitude `amax`: input for kernel
/// checks (every bit of every field is exercised) and for synthetic models.
pub fn random_blocks(t: BlockType, n: usize, amax: f32, bits: &mut dyn FnMut() -> u32) -> Vec<u8> {
    let h = t.header();
    let mut out = Vec::with_capacity(n * t.block_bytes());
    let mut values = vec![0f32; t.block_values()];
    let set = |block: &mut [u8], i: usize, v: f32| block[h.at + 2 * i..h.at + 2 * i + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
    for _ in 0..n {
        let mut block: Vec<u8> = (0..t.block_bytes().div_ceil(4)).flat_map(|_| bits().to_le_bytes()).take(t.block_bytes()).collect();
        let scales: Vec<f32> = (0..h.scales).map(|_| 0.25 + 0.75 * (bits() as f32 / 4294967296.0)).collect();
        for (i, &v) in scales.iter().enumerate() {
            set(&mut block, i, v);
        }
        t.dequantize_block(&block, &mut values);
        let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        if max > 0.0 {
            for (i, &v) in scales.iter().enumerate() {
                set(&mut block, i, v * amax / max);
            }
        }
        out.extend(block);
    }
    out
}

/// Dequantizes whole blocks of `t` (`bytes.len()` a multiple of its block size).
pub fn dequantize(t: BlockType, bytes: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; bytes.len() / t.block_bytes() * t.block_values()];
    for (block, y) in bytes.chunks_exact(t.block_bytes()).zip(out.chunks_exact_mut(t.block_values())) {
        t.dequantize_block(block, y);
    }
    out
}
