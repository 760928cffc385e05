// The gate activation of a gated MLP, chosen by the override constant ACT (prepended to the
// shaders that apply one; runtime/src/ops/glu.rs `Activation`):
//   ACT 0, SiLU (HF "silu", Llama/Qwen's SwiGLU):  g / (1 + exp(-g))
//   ACT 1, GELU, tanh approximation (HF "gelu_pytorch_tanh", Gemma's GeGLU):
//          0.5 g (1 + tanh(u)), u = sqrt(2/pi) (g + 0.044715 g^3), computed as the equal
//          g / (1 + exp(-2u)): 1 + tanh(u) cancels for negative u (4% off at g = -2.6 in f32),
//          and exp overflowing to inf for very negative u gives the right limit, -0.

override ACT: u32 = 0u;

fn gate_act(g: f32) -> f32 {
    if (ACT == 1u) {
        let u = 0.7978845608028654 * (g + 0.044715 * g * g * g);
        return g / (1.0 + exp(-2.0 * u));
    }
    // exp(-g) overflows to inf for g < -88: g / inf = -0, the right limit.
    return g / (1.0 + exp(-g));
}
