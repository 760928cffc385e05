// Argmax of each row: out[r] = the smallest i with x[r, i] == max_j x[r, j]
// (torch.argmax returns the first maximal index; greedy decoding must match it exactly).
// x [rows, dim] f32; out [rows] u32. One workgroup per row. NaN never wins.

struct Params {
    rows: u32,
    dim: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

override WG: u32 = 256; // power of two
var<workgroup> best_v: array<f32, 1024>;
var<workgroup> best_i: array<u32, 1024>;

// Does (va, ia) beat (vb, ib)? Larger value wins; ties go to the smaller index.
fn beats(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
    return va > vb || (va == vb && ia < ib);
}

@compute @workgroup_size(WG)
fn argmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }
    let lane = lid.x;
    // -FLT_MAX written exactly: the decimal -3.4028235e38 lies just past it, which Naga rounds
    // but Tint (Chrome) rejects ("cannot be represented as f32").
    var bv = -0x1.fffffep+127f;
    var bi = 0xffffffffu;
    for (var i = lane; i < p.dim; i += WG) {
        let v = x[row * p.dim + i];
        if (beats(v, i, bv, bi)) { bv = v; bi = i; }
    }
    best_v[lane] = bv;
    best_i[lane] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lane < s && beats(best_v[lane + s], best_i[lane + s], best_v[lane], best_i[lane])) {
            best_v[lane] = best_v[lane + s];
            best_i[lane] = best_i[lane + s];
        }
        workgroupBarrier();
    }
    if (lane == 0u) { out[row] = select(best_i[0], 0u, best_i[0] == 0xffffffffu); }
}
