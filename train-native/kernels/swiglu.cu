// SwiGLU gate of HF LlamaMLP (ops::swiglu_forward / swiglu_backward): act = silu(gate) * up.

// out (n) bf16 = silu(gate) * up
extern "C" __global__ void swiglu_fwd(bf16* out, const bf16* gate, const bf16* up, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float g = bf2f(gate[i]);
        float s = 1.0f / (1.0f + expf(-g));
        out[i] = f2bf(g * s * bf2f(up[i]));
    }
}

// WRITES dgate, dup (n) bf16 from dout (n) bf16: dup = dout * silu(g);
// dgate = dout * up * s * (1 + g * (1 - s)), s = sigmoid(g).
extern "C" __global__ void swiglu_bwd(bf16* dgate, bf16* dup, const bf16* dout, const bf16* gate, const bf16* up, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float g = bf2f(gate[i]), u = bf2f(up[i]), d = bf2f(dout[i]);
        float s = 1.0f / (1.0f + expf(-g));
        dup[i] = f2bf(d * g * s);
        dgate[i] = f2bf(d * u * s * (1.0f + g * (1.0f - s)));
    }
}
