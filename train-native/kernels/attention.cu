// Causal grouped-query attention, flash style (ops::attention_forward / attention_backward;
// HF eager_attention_forward with repeat_kv: query head h reads kv head h / (H / KVH)).
// q, dq, out, dout (B*T, H*D) bf16; k, v, dk, dv (B*T, KVH*D) bf16; lse, delta (B, H, T) f32.
// No (T, T) matrix is ever stored: the forward keeps only each row's logsumexp, the backward
// recomputes the probabilities from it.
//
// Work split: one warp per row (a query row in the forward and dq kernels, a key row in the
// dk/dv kernel), ATT_ROWS warps per block on consecutive rows of one (batch, head); tiles of
// ATT_TILE keys (or queries) staged in shared memory as f32, lane j scoring tile row j, so the
// softmax statistics need one warp reduction per 32 keys; each lane owns head dims
// lane, lane+32, ... (D <= ATT_MAX_D = 128: four accumulators). CUDA cores, f32 arithmetic:
// a correctness-first kernel (no tensor cores), see the README.
#define ATT_MAX_D 128
#define ATT_TILE 32
#define ATT_ROWS 4
#define ATT_REGS (ATT_MAX_D / 32)

// Stage rows [r0, r0 + ATT_TILE) of one head (columns col0 .. col0 + D of a (B*T, width)
// matrix) into s[ATT_TILE][ATT_MAX_D + 1] (padded: lane j reads row j without bank conflicts).
// Rows past T are zero. Called by the whole block.
__device__ void att_stage(float (*s)[ATT_MAX_D + 1], const bf16* m, int b, int r0, int T, int width, int col0, int D) {
    for (int idx = threadIdx.x; idx < ATT_TILE * D; idx += blockDim.x) {
        int jj = idx / D, d = idx % D, j = r0 + jj;
        s[jj][d] = j < T ? bf2f(m[((long long)b * T + j) * width + col0 + d]) : 0.0f;
    }
}

extern "C" __global__ void attention_fwd(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                                         int B, int T, int H, int KVH, int D, float scale) {
    __shared__ float ks[ATT_TILE][ATT_MAX_D + 1];
    __shared__ float vs[ATT_TILE][ATT_MAX_D + 1];
    __shared__ float qs[ATT_ROWS][ATT_MAX_D];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int b = blockIdx.z, h = blockIdx.y, g = h / (H / KVH);
    int i = blockIdx.x * ATT_ROWS + warp;
    bool active = i < T;
    int qc = H * D, kc = KVH * D;
    for (int d = lane; d < D; d += 32) qs[warp][d] = active ? bf2f(q[((long long)b * T + i) * qc + h * D + d]) * scale : 0.0f;
    float acc[ATT_REGS] = {0.0f, 0.0f, 0.0f, 0.0f};
    float mrow = -CRIA_INF, lrow = 0.0f;
    int last = min(T - 1, blockIdx.x * ATT_ROWS + ATT_ROWS - 1);
    for (int j0 = 0; j0 <= last; j0 += ATT_TILE) {
        __syncthreads(); // the previous tile is consumed (and qs is written, first time round)
        att_stage(ks, k, b, j0, T, kc, g * D, D);
        att_stage(vs, v, b, j0, T, kc, g * D, D);
        __syncthreads();
        if (!active || j0 > i) continue; // warp-uniform
        int j = j0 + lane;
        float s = -CRIA_INF;
        if (j <= i) {
            s = 0.0f;
            for (int d = 0; d < D; d++) s += qs[warp][d] * ks[lane][d];
        }
        float mnew = fmaxf(mrow, warp_max(s)); // finite: key j0 <= i is in this tile
        float p = j <= i ? expf(s - mnew) : 0.0f;
        float corr = expf(mrow - mnew);
        lrow = lrow * corr + warp_sum(p);
        for (int r = 0; r < ATT_REGS; r++) acc[r] *= corr;
        int jmax = min(ATT_TILE, i - j0 + 1);
        for (int jj = 0; jj < jmax; jj++) {
            float pj = __shfl_sync(0xffffffffu, p, jj);
            for (int r = 0; r < ATT_REGS; r++) {
                int d = lane + 32 * r;
                if (d < D) acc[r] += pj * vs[jj][d];
            }
        }
        mrow = mnew;
    }
    if (!active) return;
    float inv = 1.0f / lrow;
    for (int r = 0; r < ATT_REGS; r++) {
        int d = lane + 32 * r;
        if (d < D) out[((long long)b * T + i) * qc + h * D + d] = f2bf(acc[r] * inv);
    }
    if (lane == 0) lse[((long long)b * H + h) * T + i] = mrow + logf(lrow);
}

// delta (B, H, T) = rowsum(dout * out) per head: the softmax backward's correction term.
// One warp per (row, head).
extern "C" __global__ void attention_bwd_delta(float* delta, const bf16* dout, const bf16* out, int B, int T, int H, int D) {
    long long wid = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (wid >= (long long)B * T * H) return; // warp-uniform
    long long row = wid / H;
    int h = (int)(wid % H);
    const bf16* o = out + row * H * D + h * D;
    const bf16* od = dout + row * H * D + h * D;
    float s = 0.0f;
    for (int d = lane; d < D; d += 32) s += bf2f(od[d]) * bf2f(o[d]);
    s = warp_sum(s);
    int b = (int)(row / T), t = (int)(row % T);
    if (lane == 0) delta[((long long)b * H + h) * T + t] = s;
}

// dq (B*T, H*D) = scale * sum_j ds_ij k_j, ds_ij = p_ij (dout_i . v_j - delta_i),
// p_ij = exp(scale q_i . k_j - lse_i). Same layout as the forward: one warp per query row.
extern "C" __global__ void attention_bwd_dq(bf16* dq, const bf16* dout, const float* lse, const float* delta,
                                            const bf16* q, const bf16* k, const bf16* v,
                                            int B, int T, int H, int KVH, int D, float scale) {
    __shared__ float ks[ATT_TILE][ATT_MAX_D + 1];
    __shared__ float vs[ATT_TILE][ATT_MAX_D + 1];
    __shared__ float qs[ATT_ROWS][ATT_MAX_D];
    __shared__ float dos[ATT_ROWS][ATT_MAX_D];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int b = blockIdx.z, h = blockIdx.y, g = h / (H / KVH);
    int i = blockIdx.x * ATT_ROWS + warp;
    bool active = i < T;
    int qc = H * D, kc = KVH * D;
    long long qoff = ((long long)b * T + i) * qc + h * D;
    for (int d = lane; d < D; d += 32) {
        qs[warp][d] = active ? bf2f(q[qoff + d]) * scale : 0.0f;
        dos[warp][d] = active ? bf2f(dout[qoff + d]) : 0.0f;
    }
    long long si = ((long long)b * H + h) * T + i;
    float lse_i = active ? lse[si] : 0.0f, delta_i = active ? delta[si] : 0.0f;
    float acc[ATT_REGS] = {0.0f, 0.0f, 0.0f, 0.0f};
    int last = min(T - 1, blockIdx.x * ATT_ROWS + ATT_ROWS - 1);
    for (int j0 = 0; j0 <= last; j0 += ATT_TILE) {
        __syncthreads();
        att_stage(ks, k, b, j0, T, kc, g * D, D);
        att_stage(vs, v, b, j0, T, kc, g * D, D);
        __syncthreads();
        if (!active || j0 > i) continue;
        int j = j0 + lane;
        float ds = 0.0f;
        if (j <= i) {
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < D; d++) {
                s += qs[warp][d] * ks[lane][d];
                dp += dos[warp][d] * vs[lane][d];
            }
            ds = expf(s - lse_i) * (dp - delta_i);
        }
        int jmax = min(ATT_TILE, i - j0 + 1);
        for (int jj = 0; jj < jmax; jj++) {
            float dsj = __shfl_sync(0xffffffffu, ds, jj);
            for (int r = 0; r < ATT_REGS; r++) {
                int d = lane + 32 * r;
                if (d < D) acc[r] += dsj * ks[jj][d];
            }
        }
    }
    if (!active) return;
    for (int r = 0; r < ATT_REGS; r++) {
        int d = lane + 32 * r;
        if (d < D) dq[qoff + d] = f2bf(acc[r] * scale);
    }
}

// dk, dv (B*T, KVH*D): one warp per key row j of kv head g, summing over the group's query
// heads and over queries i >= j: dv_j = sum p_ij dout_i; dk_j = scale * sum ds_ij q_i.
// Each key row is owned by one warp, so there are no atomics and the sums are reproducible.
extern "C" __global__ void attention_bwd_dkdv(bf16* dk, bf16* dv, const bf16* dout, const float* lse, const float* delta,
                                              const bf16* q, const bf16* k, const bf16* v,
                                              int B, int T, int H, int KVH, int D, float scale) {
    __shared__ float qs[ATT_TILE][ATT_MAX_D + 1];
    __shared__ float dos[ATT_TILE][ATT_MAX_D + 1];
    __shared__ float kw[ATT_ROWS][ATT_MAX_D];
    __shared__ float vw[ATT_ROWS][ATT_MAX_D];
    __shared__ float lse_t[ATT_TILE], delta_t[ATT_TILE];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int b = blockIdx.z, g = blockIdx.y, group = H / KVH;
    int j = blockIdx.x * ATT_ROWS + warp;
    bool active = j < T;
    int qc = H * D, kc = KVH * D;
    long long koff = ((long long)b * T + j) * kc + g * D;
    for (int d = lane; d < D; d += 32) {
        kw[warp][d] = active ? bf2f(k[koff + d]) : 0.0f;
        vw[warp][d] = active ? bf2f(v[koff + d]) : 0.0f;
    }
    float dka[ATT_REGS] = {0.0f, 0.0f, 0.0f, 0.0f};
    float dva[ATT_REGS] = {0.0f, 0.0f, 0.0f, 0.0f};
    int first = blockIdx.x * ATT_ROWS; // the block's lowest key row: queries before it see none of its keys
    for (int hh = 0; hh < group; hh++) {
        int h = g * group + hh;
        for (int i0 = (first / ATT_TILE) * ATT_TILE; i0 < T; i0 += ATT_TILE) {
            __syncthreads();
            att_stage(qs, q, b, i0, T, qc, h * D, D);
            att_stage(dos, dout, b, i0, T, qc, h * D, D);
            if (threadIdx.x < ATT_TILE) {
                int i = i0 + threadIdx.x;
                long long si = ((long long)b * H + h) * T + i;
                lse_t[threadIdx.x] = i < T ? lse[si] : 0.0f;
                delta_t[threadIdx.x] = i < T ? delta[si] : 0.0f;
            }
            __syncthreads();
            if (!active || i0 + ATT_TILE <= j) continue; // warp-uniform: no query in this tile sees key j
            int i = i0 + lane;
            float p = 0.0f, ds = 0.0f;
            if (i >= j && i < T) {
                float s = 0.0f, dp = 0.0f;
                for (int d = 0; d < D; d++) {
                    s += qs[lane][d] * kw[warp][d];
                    dp += dos[lane][d] * vw[warp][d];
                }
                p = expf(s * scale - lse_t[lane]);
                ds = p * (dp - delta_t[lane]);
            }
            int imax = min(ATT_TILE, T - i0);
            for (int ii = max(0, j - i0); ii < imax; ii++) {
                float pi = __shfl_sync(0xffffffffu, p, ii);
                float dsi = __shfl_sync(0xffffffffu, ds, ii);
                for (int r = 0; r < ATT_REGS; r++) {
                    int d = lane + 32 * r;
                    if (d < D) {
                        dva[r] += pi * dos[ii][d];
                        dka[r] += dsi * qs[ii][d];
                    }
                }
            }
        }
    }
    if (!active) return;
    for (int r = 0; r < ATT_REGS; r++) {
        int d = lane + 32 * r;
        if (d < D) {
            dk[koff + d] = f2bf(dka[r] * scale);
            dv[koff + d] = f2bf(dva[r]);
        }
    }
}
