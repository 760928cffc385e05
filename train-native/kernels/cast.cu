// dtype conversion: out (n) = in (n) in the other dtype. f32 -> bf16 rounds to nearest even.
extern "C" __global__ void cast_f32_to_bf16(bf16* out, const float* in, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        out[i] = f2bf(in[i]);
}

extern "C" __global__ void cast_bf16_to_f32(float* out, const bf16* in, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        out[i] = bf2f(in[i]);
}
