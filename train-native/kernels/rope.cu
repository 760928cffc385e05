// Rotary position embedding, HF rotate_half layout (ops::rope_forward / rope_backward).
// In place on x (N, heads, D) bf16, row r at position r % T; cos, sin (T, D/2) f32 from
// ops::rope_tables. sign = +1 forward, -1 backward (the inverse rotation; RoPE is orthogonal).
extern "C" __global__ void rope_bf16(bf16* x, const float* cos_t, const float* sin_t, int n, int t, int heads, int d, float sign) {
    int half = d / 2;
    long long total = (long long)n * heads * half;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total; idx += (long long)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        long long rh = idx / half; // row * heads + head
        int pos = (int)((rh / heads) % t);
        bf16* hp = x + rh * d;
        float c = cos_t[pos * half + i], s = sign * sin_t[pos * half + i];
        float x1 = bf2f(hp[i]), x2 = bf2f(hp[i + half]);
        hp[i] = f2bf(x1 * c - x2 * s);
        hp[i + half] = f2bf(x2 * c + x1 * s);
    }
}
