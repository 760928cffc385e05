// Weight decoding shared by every kernel that reads a weight matrix (matvec, matmul, embedding):
// prepended to their source. The including kernel defines `fn weight_word(i: u32) -> u32`, word
// i of its weight binding. Layouts (runtime/src/ops/matrix.rs, runtime/src/quant): F32 one word
// per value; F16/BF16 two values per word, element 2i in the low half; ggml block types as
// every block's body verbatim (ggml-common.h's bytes without the 16-bit header fields), then
// every block's header fields two to a word. No shader-f16, no subgroups.
//
// A block type is decoded as integer quants q and, per group of 16 values, a (scale, min)
// pair: value = q * scale - min. `quants4` and `group_scale` are the only per-type code.

// WeightDType::kind (checked against the Rust enum by a unit test in runtime/src/ops/mod.rs).
const KIND_F32: u32 = 0u;
const KIND_F16: u32 = 1u;
const KIND_BF16: u32 = 2u;
const KIND_Q4_0: u32 = 3u;
const KIND_Q4_1: u32 = 4u;
const KIND_Q5_0: u32 = 5u;
const KIND_Q5_1: u32 = 6u;
const KIND_Q8_0: u32 = 7u;
const KIND_Q2_K: u32 = 8u;
const KIND_Q3_K: u32 = 9u;
const KIND_Q4_K: u32 = 10u;
const KIND_Q5_K: u32 = 11u;
const KIND_Q6_K: u32 = 12u;
const KIND_IQ4_NL: u32 = 13u;
const KIND_IQ4_XS: u32 = 14u;

override KIND: u32 = 0u;
// Block types (WeightDType::constants): values per block, body words, 16-bit header fields.
override BLOCK_VALUES: u32 = 32u;
override BLOCK_WORDS: u32 = 0u;
override HEADERS: u32 = 0u;

fn is_block() -> bool {
    return KIND >= KIND_Q4_0;
}

// A block of a row: the word its body starts at and the half-word index of its first field.
struct Block {
    body: u32,
    head: u32,
}

// Block b of the row of `cols` values starting at word `row`.
fn block_at(row: u32, cols: u32, b: u32) -> Block {
    let nb = (cols + BLOCK_VALUES - 1u) / BLOCK_VALUES;
    return Block(row + b * BLOCK_WORDS, (row + nb * BLOCK_WORDS) * 2u + b * HEADERS);
}

fn header_bits(blk: Block, i: u32) -> u32 {
    let h = blk.head + i;
    return (weight_word(h / 2u) >> (16u * (h & 1u))) & 0xffffu;
}

fn header_f16(blk: Block, i: u32) -> f32 {
    return unpack2x16float(header_bits(blk, i)).x;
}

// Byte i of the body (i counted from the body's first word `at` words in).
fn body_byte(blk: Block, at: u32, i: u32) -> u32 {
    return (weight_word(blk.body + at + i / 4u) >> (8u * (i % 4u))) & 0xffu;
}

// The four bytes of body word `at` + i / 4 (i % 4 == 0), shifted right by `shift` and masked.
fn bytes4(blk: Block, at: u32, i: u32, shift: u32, mask: u32) -> vec4<u32> {
    let w = weight_word(blk.body + at + i / 4u);
    return (vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) >> vec4<u32>(shift)) & vec4<u32>(mask);
}

// Values j..j+3 of a 32-value block whose 4-bit quants are 16 bytes at word `at`: value j in
// the low nibble of byte j, value j + 16 in its high nibble.
fn nibbles32(blk: Block, at: u32, j: u32) -> vec4<u32> {
    return bytes4(blk, at, j % 16u, 4u * (j / 16u), 15u);
}

// IQ4_NL's codebook (kvalues_iq4nl).
var<private> IQ4NL: array<f32, 16> = array<f32, 16>(-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0,
                                                    1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);

fn iq4(q: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(IQ4NL[q.x], IQ4NL[q.y], IQ4NL[q.z], IQ4NL[q.w]);
}

// The high bits `bit` of 4 values whose bit bytes are at body word `at`, byte i.
fn bits4(blk: Block, at: u32, i: u32, bit: u32) -> vec4<u32> {
    return bytes4(blk, at, i, bit, 1u);
}

// Integer quants of values j..j+3 (j % 4 == 0) of a block.
fn quants4(blk: Block, j: u32) -> vec4<f32> {
    if (KIND == KIND_Q4_0) { return vec4<f32>(nibbles32(blk, 0u, j)) - 8.0; }
    if (KIND == KIND_Q4_1) { return vec4<f32>(nibbles32(blk, 0u, j)); }
    if (KIND == KIND_Q5_0 || KIND == KIND_Q5_1) {
        // Body: qh (bit j of the word is value j's fifth bit), then the nibbles.
        let qh = weight_word(blk.body);
        let high = (vec4<u32>(qh) >> vec4<u32>(j, j + 1u, j + 2u, j + 3u)) & vec4<u32>(1u);
        let q = vec4<f32>(nibbles32(blk, 1u, j) | (high << vec4<u32>(4u)));
        return select(q, q - 16.0, KIND == KIND_Q5_0);
    }
    if (KIND == KIND_Q8_0) {
        let w = weight_word(blk.body + j / 4u);
        return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(w << 24u, w << 16u, w << 8u, w)) >> vec4<u32>(24u));
    }
    if (KIND == KIND_IQ4_NL) { return iq4(nibbles32(blk, 0u, j)); }
    // 256-value super-blocks.
    let h = j / 128u;         // half
    let l = j % 32u;          // position within a 32-value run
    if (KIND == KIND_Q2_K) {  // body: scales[16], qs[64]
        return vec4<f32>(bytes4(blk, 4u, h * 32u + l, 2u * ((j % 128u) / 32u), 3u));
    }
    if (KIND == KIND_Q3_K) {  // body: hmask[32], qs[64], scales[12]
        let low = bytes4(blk, 8u, h * 32u + l, 2u * ((j % 128u) / 32u), 3u);
        let high = bits4(blk, 0u, l, j / 32u);
        return vec4<f32>(low) - 4.0 + 4.0 * vec4<f32>(high);
    }
    if (KIND == KIND_Q4_K || KIND == KIND_Q5_K) {  // body: scales[12], (Q5_K: qh[32]), qs[128]
        let c = j / 64u;
        let shift = 4u * ((j % 64u) / 32u);
        if (KIND == KIND_Q4_K) { return vec4<f32>(bytes4(blk, 3u, c * 32u + l, shift, 15u)); }
        let q = bytes4(blk, 11u, c * 32u + l, shift, 15u) | (bits4(blk, 3u, l, j / 32u) << vec4<u32>(4u));
        return vec4<f32>(q);
    }
    if (KIND == KIND_Q6_K) {  // body: ql[128], qh[64], scales[16]
        let r = j % 128u;
        let low = bytes4(blk, 0u, h * 64u + r % 64u, 4u * (r / 64u), 15u);
        let high = bytes4(blk, 32u, h * 32u + r % 32u, 2u * (r / 32u), 3u);
        return vec4<f32>(low | (high << vec4<u32>(4u))) - 32.0;
    }
    // KIND_IQ4_XS: body: scales_l[4], qs[128] (16 bytes per 32-value run).
    return iq4(bytes4(blk, 1u, (j / 32u) * 16u + (j % 16u), 4u * ((j % 32u) / 16u), 15u));
}

// Scale and min of values 16g..16g+15 of a block: value = q * scale - min.
fn group_scale(blk: Block, g: u32) -> vec2<f32> {
    if (KIND == KIND_Q4_1 || KIND == KIND_Q5_1) { return vec2<f32>(header_f16(blk, 0u), -header_f16(blk, 1u)); }
    if (KIND == KIND_Q2_K) {
        let sc = body_byte(blk, 0u, g);
        return vec2<f32>(header_f16(blk, 0u) * f32(sc & 15u), header_f16(blk, 1u) * f32(sc >> 4u));
    }
    if (KIND == KIND_Q3_K) {
        let low = (body_byte(blk, 24u, g % 8u) >> (4u * (g / 8u))) & 15u;
        let high = (body_byte(blk, 24u, 8u + g % 4u) >> (2u * (g / 4u))) & 3u;
        return vec2<f32>(header_f16(blk, 0u) * (f32(low | (high << 4u)) - 32.0), 0.0);
    }
    if (KIND == KIND_Q4_K || KIND == KIND_Q5_K) {
        // get_scale_min_k4: 6-bit scale and min of sub-block s in 12 bytes.
        let s = g / 2u;
        var sc: u32;
        var m: u32;
        if (s < 4u) {
            sc = body_byte(blk, 0u, s) & 63u;
            m = body_byte(blk, 0u, s + 4u) & 63u;
        } else {
            sc = (body_byte(blk, 0u, s + 4u) & 15u) | ((body_byte(blk, 0u, s - 4u) >> 6u) << 4u);
            m = (body_byte(blk, 0u, s + 4u) >> 4u) | ((body_byte(blk, 0u, s) >> 6u) << 4u);
        }
        return vec2<f32>(header_f16(blk, 0u) * f32(sc), header_f16(blk, 1u) * f32(m));
    }
    if (KIND == KIND_Q6_K) {
        let sc = bitcast<i32>(body_byte(blk, 48u, g) << 24u) >> 24u;
        return vec2<f32>(header_f16(blk, 0u) * f32(sc), 0.0);
    }
    if (KIND == KIND_IQ4_XS) {
        let ib = g / 2u;
        let ls = ((body_byte(blk, 0u, ib / 2u) >> (4u * (ib % 2u))) & 15u) | (((header_bits(blk, 1u) >> (2u * ib)) & 3u) << 4u);
        return vec2<f32>(header_f16(blk, 0u) * (f32(ls) - 32.0), 0.0);
    }
    // Q4_0, Q5_0, Q8_0, IQ4_NL: one f16 scale.
    return vec2<f32>(header_f16(blk, 0u), 0.0);
}

// Weights k..k+3 (k % 4 == 0) of the row of `cols` values starting at word `row`. Past the end
// of the row they are padding: zeros for the float types, finite values for blocks.
fn weights4(row: u32, cols: u32, k: u32) -> vec4<f32> {
    if (KIND == KIND_F32) {
        return bitcast<vec4<f32>>(vec4<u32>(weight_word(row + k), weight_word(row + k + 1u), weight_word(row + k + 2u), weight_word(row + k + 3u)));
    }
    if (KIND == KIND_F16 || KIND == KIND_BF16) {
        let a = weight_word(row + k / 2u);
        let b = weight_word(row + k / 2u + 1u);
        if (KIND == KIND_BF16) { return bitcast<vec4<f32>>(vec4<u32>(a << 16u, a & 0xffff0000u, b << 16u, b & 0xffff0000u)); }
        return vec4<f32>(unpack2x16float(a), unpack2x16float(b));
    }
    let blk = block_at(row, cols, k / BLOCK_VALUES);
    let j = k % BLOCK_VALUES;
    let sm = group_scale(blk, j / 16u);
    return quants4(blk, j) * sm.x - vec4<f32>(sm.y);
}
