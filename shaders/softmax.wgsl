// Softmax over each row, in place: x[r, i] = exp(x[r, i] - max_r) / sum_j exp(x[r, j] - max_r)
// x [rows, dim] f32. One workgroup per row. Reference: torch.softmax(dim=-1).

struct Params {
    rows: u32,
    dim: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

override WG: u32 = 256; // power of two
var<workgroup> red: array<f32, 1024>;

@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) { return; }
    let base = row * p.dim;
    let lane = lid.x;
    var m = -3.0e38;
    for (var i = lane; i < p.dim; i += WG) { m = max(m, x[base + i]); }
    red[lane] = m;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lane < s) { red[lane] = max(red[lane], red[lane + s]); }
        workgroupBarrier();
    }
    let row_max = red[0];
    workgroupBarrier();
    var sum = 0.0;
    for (var i = lane; i < p.dim; i += WG) { sum += exp(x[base + i] - row_max); }
    red[lane] = sum;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lane < s) { red[lane] += red[lane + s]; }
        workgroupBarrier();
    }
    let inv = 1.0 / red[0];
    for (var i = lane; i < p.dim; i += WG) { x[base + i] = exp(x[base + i] - row_max) * inv; }
}
