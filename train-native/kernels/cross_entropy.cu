// Fused softmax + cross-entropy (ops::softmax_cross_entropy_fused), one block per row.
// losses (N) f32 = logsumexp(logits[r]) - logits[r][targets[r]]. With write_grad != 0 the
// logits (N, V) bf16 are OVERWRITTEN in place by dlogits = (softmax - onehot) * dscale: the
// probabilities are never stored anywhere else. Pass 1 is an online (max, sum) per thread,
// merged across the block; pass 2 writes the gradient from the logsumexp.
extern "C" __global__ void softmax_xent(float* losses, bf16* logits, const unsigned int* targets, int n, int v,
                                        float dscale, int write_grad) {
    int row = blockIdx.x;
    if (row >= n) return;
    bf16* lg = logits + (long long)row * v;
    int tgt = (int)targets[row];
    // Every thread reads the target logit before the barriers inside the reductions; pass 2
    // (after them) overwrites it.
    float xt = bf2f(lg[tgt]);
    float m = -CRIA_INF, s = 0.0f;
    for (int i = threadIdx.x; i < v; i += blockDim.x) {
        float x = bf2f(lg[i]);
        if (x > m) {
            s = s * expf(m - x) + 1.0f;
            m = x;
        } else {
            s += expf(x - m);
        }
    }
    float bm = block_max(m);
    float sum = block_sum(m == -CRIA_INF ? 0.0f : s * expf(m - bm));
    float lse = bm + logf(sum);
    if (threadIdx.x == 0) losses[row] = lse - xt;
    if (!write_grad) return;
    for (int i = threadIdx.x; i < v; i += blockDim.x) {
        float p = expf(bf2f(lg[i]) - lse);
        lg[i] = f2bf((p - (i == tgt ? 1.0f : 0.0f)) * dscale);
    }
}
