// Token embedding, HF nn.Embedding (ops::embedding_forward / embedding_backward).

// out (N, C) f32 = table (V, C) bf16 [tokens (N)]. Token ids are validated on the host.
extern "C" __global__ void embedding_fwd(float* out, const unsigned int* tokens, const bf16* table, int n, int c) {
    long long total = (long long)n * c;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        long long row = i / c, col = i % c;
        out[i] = bf2f(table[(long long)tokens[row] * c + col]);
    }
}

// dtable (V, C) f32 += dout (N, C) f32 scattered by tokens. atomicAdd: repeated tokens add in
// an unspecified order, so this gradient is not bit-reproducible (within f32 rounding).
extern "C" __global__ void embedding_bwd(float* dtable, const float* dout, const unsigned int* tokens, int n, int c) {
    long long total = (long long)n * c;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        long long row = i / c, col = i % c;
        atomicAdd(&dtable[(long long)tokens[row] * c + col], dout[i]);
    }
}
