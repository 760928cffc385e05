// Residual connection (ops::residual_forward): out (n) f32 = a (n) f32 + b (n) bf16.
// The residual stream stays f32; branch outputs (matmul results) are bf16.
extern "C" __global__ void residual_add_f32_bf16(float* out, const float* a, const bf16* b, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        out[i] = a[i] + bf2f(b[i]);
}

// Global gradient norm, first stage: partial[block] = sum of x^2 over a grid-stride slice.
// The host adds the gridDim.x partials in f64 in a fixed order (reproducible).
extern "C" __global__ void sumsq_partial_f32(float* partial, const float* x, long long n) {
    float s = 0.0f;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        s += x[i] * x[i];
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
