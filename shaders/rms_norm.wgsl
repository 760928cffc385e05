// RMSNorm. out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight   (HF: LlamaRMSNorm)
// x, out [rows, dim] f32; weight [dim] f32. One workgroup per row.
// rms_norm_add first does the residual add in place, x[r, :] += delta[r, :], then normalises
// the sum: one pass instead of an add kernel plus a norm kernel. With NORM_DELTA the branch
// output is normalised before it is added (Gemma's post-attention / post-feedforward norms):
// x[r, :] += rms_norm(delta[r, :]) * delta_weight.

struct Params {
    rows: u32,
    dim: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> delta: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> delta_weight: array<f32>;

override WG: u32 = 256; // power of two (tree reduction)
override NORM_DELTA: bool = false;
var<workgroup> partial: array<f32, 1024>;

fn row_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Each invocation's `acc` summed across the workgroup; every invocation gets the total.
fn reduce(acc: f32, lane: u32) -> f32 {
    partial[lane] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lane < s) { partial[lane] += partial[lane + s]; }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier(); // everyone has read it before `partial` is reused
    return total;
}

// Sum of squares over the row of x.
fn sum_squares(base: u32, lane: u32) -> f32 {
    var acc = 0.0;
    for (var i = lane; i < p.dim; i += WG) {
        let v = x[base + i];
        acc += v * v;
    }
    return reduce(acc, lane);
}

fn normalise(base: u32, lane: u32) {
    let total = sum_squares(base, lane);
    let scale = inverseSqrt(total / f32(p.dim) + p.eps);
    for (var i = lane; i < p.dim; i += WG) {
        out[base + i] = x[base + i] * scale * weight[i];
    }
}

@compute @workgroup_size(WG)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = row_of(wid, nwg);
    if (row >= p.rows) { return; } // uniform per workgroup, so barriers stay uniform
    normalise(row * p.dim, lid.x);
}

@compute @workgroup_size(WG)
fn rms_norm_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = row_of(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.dim;
    var delta_scale = 1.0;
    if (NORM_DELTA) {
        var acc = 0.0;
        for (var i = lid.x; i < p.dim; i += WG) {
            let v = delta[base + i];
            acc += v * v;
        }
        delta_scale = inverseSqrt(reduce(acc, lid.x) / f32(p.dim) + p.eps);
    }
    // Each invocation touches the same elements here as in sum_squares: no barrier needed.
    for (var i = lid.x; i < p.dim; i += WG) {
        var d = delta[base + i];
        if (NORM_DELTA) { d = d * delta_scale * delta_weight[i]; }
        x[base + i] = x[base + i] + d;
    }
    normalise(base, lid.x);
}
