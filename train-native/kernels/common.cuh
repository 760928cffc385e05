// Shared by every kernel file: prepended to each .cu before NVRTC compiles it (see
// src/cuda/kernels.rs), so the kernels need no include path at run time.
//
// bf16 is carried as its raw 16 bits instead of cuda_bf16.h's __nv_bfloat16: no CUDA headers
// are needed on the machine that compiles (NVRTC alone), and the conversion below is the same
// round-to-nearest-even as the `half` crate's bf16::from_f32, so host and device round alike.
typedef unsigned short bf16;

// +infinity without <math.h> (NVRTC has no standard headers).
#define CRIA_INF __int_as_float(0x7f800000)

__device__ __forceinline__ float bf2f(bf16 h) { return __uint_as_float(((unsigned int)h) << 16); }

__device__ __forceinline__ bf16 f2bf(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40u); // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// The leading barrier makes back-to-back calls safe (the scratch is reused).
__device__ float block_sum(float v) {
    __shared__ float scratch[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[w] = v;
    __syncthreads();
    return warp_sum(lane < nw ? scratch[lane] : 0.0f);
}

__device__ float block_max(float v) {
    __shared__ float scratch[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[w] = v;
    __syncthreads();
    return warp_max(lane < nw ? scratch[lane] : -CRIA_INF);
}
