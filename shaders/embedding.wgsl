// Embedding lookup. out[t, d] = table[ids[t], d] * scale   (HF: nn.Embedding / LlamaModel.embed_tokens;
// scale 1, or sqrt(hidden_size) for Gemma's Gemma3TextScaledWordEmbedding)
// ids [n_tokens] u32; table: the rows [row_start, row_start + rows) of a Matrix chunk;
// out [n_tokens, dim] f32. Ids outside this chunk are left for the chunk that holds them.
// Every weight type, decoded by weights.wgsl (prepended).

struct Params {
    n_tokens: u32,
    dim: u32,
    row_start: u32,
    rows: u32,
    row_words: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override WG: u32 = 256;

fn weight_word(i: u32) -> u32 {
    return table[i];
}

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid.x;
}

@compute @workgroup_size(WG)
fn embedding(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wid, nwg, lid);
    if (i >= p.n_tokens * p.dim) { return; }
    let id = ids[i / p.dim];
    if (id < p.row_start || id >= p.row_start + p.rows) { return; }
    let d = i % p.dim;
    out[i] = weights4((id - p.row_start) * p.row_words, p.dim, d & ~3u)[d & 3u] * p.scale;
}
