// Sampling the next token on the GPU, so that a decode step reads back 4 bytes, not the logits.
// One workgroup. logits [vocab] f32; penalty_ids [n_penalty] u32 (tokens seen so far, for the
// repetition penalty); work [vocab] f32 scratch; out [1] u32 the chosen id.
// Semantics (reference: runtime/src/sampling.rs `candidates`/`choose`, after transformers):
// penalty (divide positive logits, multiply negative ones), then greedy argmax when
// temperature = 0; else p = exp((l - max) / T), thresholds for top-k (the k-th largest p,
// ties kept), top-p (the smallest p whose cumulative mass from below, ties included, exceeds
// (1 - top_p) of the top-k survivors' mass) and min-p (p >= min_p, the top p being 1), each
// found exactly by bisection on the bits of non-negative floats (ordered like the values); then
// the first survivor, in id order, at which the cumulative mass passes u * total.

struct Params {
    vocab: u32,
    n_penalty: u32,
    top_k: u32,
    greedy: u32,
    temperature: f32,
    top_p: f32,
    min_p: f32,
    penalty: f32,
    u: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> penalty_ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> work: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;

const WG: u32 = 256u;
const ONE: u32 = 0x3f800000u; // bits of 1.0
var<workgroup> red: array<f32, 256>;
var<workgroup> red_i: array<u32, 256>;
var<workgroup> shared_f: f32;
var<workgroup> shared_u: u32;
var<workgroup> found: atomic<u32>;
var<workgroup> last: atomic<u32>;

fn sum_all(v: f32, t: u32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (t < s) { red[t] += red[t + s]; }
        workgroupBarrier();
    }
    if (t == 0u) { shared_f = red[0]; }
    return workgroupUniformLoad(&shared_f);
}

fn count_all(v: u32, t: u32) -> u32 {
    red_i[t] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (t < s) { red_i[t] += red_i[t + s]; }
        workgroupBarrier();
    }
    if (t == 0u) { shared_u = red_i[0]; }
    return workgroupUniformLoad(&shared_u);
}

// How many p >= x.
fn count_at_least(x: f32, t: u32) -> u32 {
    var c = 0u;
    for (var i = t; i < p.vocab; i += WG) {
        c += select(0u, 1u, work[i] >= x);
    }
    return count_all(c, t);
}

// Mass of p in [lo, x].
fn mass_between(lo: f32, x: f32, t: u32) -> f32 {
    var m = 0.0;
    for (var i = t; i < p.vocab; i += WG) {
        let v = work[i];
        if (v >= lo && v <= x) { m += v; }
    }
    return sum_all(m, t);
}

@compute @workgroup_size(256)
fn sample(@builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    // Penalised logits into work.
    for (var i = t; i < p.vocab; i += WG) {
        work[i] = logits[i];
    }
    storageBarrier();
    for (var j = t; j < p.n_penalty; j += WG) {
        let id = penalty_ids[j];
        if (id < p.vocab) {
            let l = logits[id];
            work[id] = select(l * p.penalty, l / p.penalty, l > 0.0);
        }
    }
    storageBarrier();

    // Maximum (first index on ties; NaN never wins).
    var best = -0x1.fffffep+127f; // -FLT_MAX exactly; Tint rejects the decimal -3.4028235e38 (past it)
    var best_i = 0xffffffffu;
    for (var i = t; i < p.vocab; i += WG) {
        let v = work[i];
        if (v > best || (best_i == 0xffffffffu && v == v)) { best = v; best_i = i; }
    }
    red[t] = best;
    red_i[t] = best_i;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (t < s) {
            let a = red[t];
            let b = red[t + s];
            if (b > a || (b == a && red_i[t + s] < red_i[t])) { red[t] = b; red_i[t] = red_i[t + s]; }
        }
        workgroupBarrier();
    }
    if (t == 0u) { shared_f = red[0]; }
    let m = workgroupUniformLoad(&shared_f);
    if (p.greedy != 0u) {
        if (t == 0u) { out[0] = min(red_i[0], p.vocab - 1u); }
        return;
    }

    for (var i = t; i < p.vocab; i += WG) {
        let v = work[i];
        work[i] = select(0.0, exp((v - m) / p.temperature), v == v);
    }
    storageBarrier();

    // top-k: the largest x with count(p >= x) >= k.
    var t_k = 0.0;
    if (p.top_k > 0u && p.top_k < p.vocab) {
        var lo = 0u;       // count(p >= 0) = vocab >= k
        var hi = ONE + 1u; // count(p > 1) = 0 < k
        for (var it = 0u; it < 31u; it++) {
            if (hi - lo > 1u) {
                let mid = lo + (hi - lo) / 2u;
                if (count_at_least(bitcast<f32>(mid), t) >= p.top_k) { lo = mid; } else { hi = mid; }
            }
        }
        t_k = bitcast<f32>(lo);
    }

    // top-p among the top-k survivors: the smallest x with mass(t_k..=x) > (1 - top_p) total.
    var t_p = 0.0;
    if (p.top_p < 1.0) {
        // mass(..=0) = 0 <= floor; mass(..=1) = total > floor unless top_p <= 0, which leaves
        // hi at 1: only the top token(s), as transformers keeps at least one.
        let floor = (1.0 - p.top_p) * mass_between(t_k, 1.0, t);
        var lo = 0u;
        var hi = ONE;
        for (var it = 0u; it < 31u; it++) {
            if (hi - lo > 1u) {
                let mid = lo + (hi - lo) / 2u;
                if (mass_between(t_k, bitcast<f32>(mid), t) > floor) { hi = mid; } else { lo = mid; }
            }
        }
        t_p = bitcast<f32>(hi);
    }
    let tau = max(max(t_k, t_p), p.min_p);

    // Sample: segment sums, their prefix, then the one segment holding the target walks.
    let seg = (p.vocab + WG - 1u) / WG;
    let start = min(t * seg, p.vocab);
    let end = min(start + seg, p.vocab);
    var own = 0.0;
    var own_last = 0u;
    for (var i = start; i < end; i++) {
        let v = work[i];
        if (v >= tau && v > 0.0) { own += v; own_last = i + 1u; }
    }
    if (t == 0u) {
        atomicStore(&found, 0xffffffffu);
        atomicStore(&last, 0u);
    }
    red[t] = own;
    workgroupBarrier();
    atomicMax(&last, own_last);
    if (t == 0u) {
        var acc = 0.0;
        for (var i = 0u; i < WG; i++) {
            let v = red[i];
            red[i] = acc;
            acc += v;
        }
        shared_f = acc;
    }
    workgroupBarrier();
    let target_mass = p.u * shared_f;
    var acc = red[t];
    if (acc <= target_mass && target_mass < acc + own) {
        for (var i = start; i < end; i++) {
            let v = work[i];
            if (v >= tau && v > 0.0) {
                acc += v;
                if (acc > target_mass) { atomicMin(&found, i); break; }
            }
        }
    }
    workgroupBarrier();
    if (t == 0u) {
        let f = atomicLoad(&found);
        let l = atomicLoad(&last);
        out[0] = select(max(l, 1u) - 1u, f, f != 0xffffffffu);
    }
}
