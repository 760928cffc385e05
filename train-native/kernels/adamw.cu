// AdamW over ALL parameters in one launch (ops::adamw_step, PyTorch AdamW, amsgrad=False).
// p, m, v (n) f32 master state; g (n) f32 gradients (scaled by gscale: the clip factor);
// p_bf16 (n) receives the bf16 copy the forward pass reads. Weight decay applies everywhere
// except the [nodecay[2r], nodecay[2r+1]) ranges (norm weights: 2L+1 ranges, a short loop).
extern "C" __global__ void adamw_f32(float* p, bf16* p_bf16, const float* g, float* m, float* v, long long n,
                                     const long long* nodecay, int n_nodecay, float lr, float beta1, float beta2,
                                     float eps, float weight_decay, float bc1, float bc2, float gscale) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float wd = weight_decay;
        for (int r = 0; r < n_nodecay; r++)
            if (i >= nodecay[2 * r] && i < nodecay[2 * r + 1]) wd = 0.0f;
        float gi = g[i] * gscale;
        float pi = p[i];
        pi -= lr * wd * pi;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        pi -= lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi;
        p_bf16[i] = f2bf(pi);
    }
}
