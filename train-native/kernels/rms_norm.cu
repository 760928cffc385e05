// RMSNorm with weight, HF LlamaRMSNorm (ops::rms_norm_forward / rms_norm_backward).

// out (N, C) bf16, rstd (N) f32 = rms_norm(inp (N, C) f32; weight (C) bf16). One block per row.
extern "C" __global__ void rms_norm_fwd(bf16* out, float* rstd, const float* inp, const bf16* weight, int n, int c, float eps) {
    int row = blockIdx.x;
    if (row >= n) return;
    const float* x = inp + (long long)row * c;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < c; i += blockDim.x) ss += x[i] * x[i];
    ss = block_sum(ss);
    float r = rsqrtf(ss / (float)c + eps);
    if (threadIdx.x == 0) rstd[row] = r;
    bf16* o = out + (long long)row * c;
    for (int i = threadIdx.x; i < c; i += blockDim.x) o[i] = f2bf(bf2f(weight[i]) * (x[i] * r));
}

// dinp (N, C) f32 += d/dinp; dweight (C) f32 += sum_rows dout * x * rstd; dout (N, C) f32.
// dx = r * (dout*w) - x * r^3 / C * sum(dout * w * x). Blocks stride over rows; each keeps its
// dweight partial in shared memory (C floats, dynamic) and adds it once with atomics, instead
// of N*C atomics on C addresses.
extern "C" __global__ void rms_norm_bwd(float* dinp, float* dweight, const float* dout, const float* inp,
                                        const bf16* weight, const float* rstd, int n, int c) {
    extern __shared__ float dw[];
    for (int i = threadIdx.x; i < c; i += blockDim.x) dw[i] = 0.0f;
    for (int row = blockIdx.x; row < n; row += gridDim.x) {
        const float* g = dout + (long long)row * c;
        const float* x = inp + (long long)row * c;
        float* dx = dinp + (long long)row * c;
        float dot = 0.0f;
        for (int i = threadIdx.x; i < c; i += blockDim.x) dot += g[i] * bf2f(weight[i]) * x[i];
        dot = block_sum(dot);
        float r = rstd[row];
        float k = dot * r * r * r / (float)c;
        for (int i = threadIdx.x; i < c; i += blockDim.x) {
            dx[i] += g[i] * bf2f(weight[i]) * r - x[i] * k;
            dw[i] += g[i] * x[i] * r; // thread i owns column i: no race
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < c; i += blockDim.x) atomicAdd(&dweight[i], dw[i]);
}
