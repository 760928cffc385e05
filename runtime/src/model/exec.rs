//! The devices the one forward pass (`model::llama`) runs on: [`Exec`] names what the pass
//! needs — its buffers and the decoder's operations on them — and [`GpuExec`] (recording into
//! a wgpu command buffer, the `ops` kernels) and [`CpuExec`] (executing at once, the `cpu`
//! kernels) provide it. A family or weight type added to the pass runs on both.

use crate::cpu::ops::{CpuKvCache, Pre};
use crate::cpu::{CpuWeights, Pool};
use crate::error::Result;
use crate::gpu::{GpuBuffer, Recorder};
use crate::ops::attention::{self, DecodeScratch, Heads, KvCache, Scores};
use crate::ops::glu::{self, Activation};
use crate::ops::rope::{self, RopeTable};
use crate::ops::{embedding, matmul, matvec, rms_norm, Matrix};
use std::cell::RefCell;

/// What the forward pass needs of a device. Buffers are f32 activations (ids stored as u32
/// bits); operations take shared references and write through the device's own mutability.
pub(crate) trait Exec {
    type Buffer;
    type Matrix;
    type Vector;
    type Cache;
    type Rope;
    fn embedding(&mut self, table: &Self::Matrix, ids: &Self::Buffer, n: usize, out: &Self::Buffer, scale: f32) -> Result<()>;
    #[allow(clippy::too_many_arguments)]
    fn rms_norm(&mut self, x: &Self::Buffer, w: &Self::Vector, out: &Self::Buffer, n: usize, dim: usize, eps: f32) -> Result<()>;
    #[allow(clippy::too_many_arguments)]
    fn rms_norm_add(&mut self, x: &Self::Buffer, delta: &Self::Buffer, delta_w: Option<&Self::Vector>, w: &Self::Vector, out: &Self::Buffer, n: usize, dim: usize, eps: f32) -> Result<()>;
    /// out [n, rows] = x [n, cols] · W^T.
    fn linear(&mut self, w: &Self::Matrix, x: &Self::Buffer, n: usize, out: &Self::Buffer) -> Result<()>;
    /// out [n, rows / 2] = act(gate) * up from an interleaved gate/up matrix (`scratch`: room
    /// for [n, rows]).
    #[allow(clippy::too_many_arguments)]
    fn gated(&mut self, w: &Self::Matrix, x: &Self::Buffer, n: usize, scratch: &Self::Buffer, out: &Self::Buffer, act: Activation) -> Result<()>;
    /// RoPE of q and k (after the family's biases and per-head norms), k and v appended to the
    /// cache at rows pos..pos + n.
    #[allow(clippy::too_many_arguments)]
    fn rope(&mut self, qkv: &Self::Buffer, q: &Self::Buffer, cache: &Self::Cache, table: &Self::Rope, bias: Option<&Self::Vector>, qk_norm: Option<(&Self::Vector, f32)>, heads: Heads, n: usize, pos: usize) -> Result<()>;
    #[allow(clippy::too_many_arguments)]
    fn attention(&mut self, heads: Heads, scores: Scores, q: &Self::Buffer, cache: &Self::Cache, out: &Self::Buffer, n: usize, pos: usize) -> Result<()>;
    /// `len` floats from src[src_at..] to dst[dst_at..].
    fn copy(&mut self, src: &Self::Buffer, src_at: usize, dst: &Self::Buffer, dst_at: usize, len: usize) -> Result<()>;
}

/// Up to this many tokens, a linear layer runs as matrix-vector products on the GPU: the 64x64
/// tiles of the matmul would compute mostly padding.
pub const MATVEC_TOKENS: usize = 8;

/// The GPU: records into a command buffer (submitted by the caller).
pub(crate) struct GpuExec<'r, 'g> {
    pub rec: &'r mut Recorder<'g>,
    pub decode: &'r DecodeScratch,
}

impl Exec for GpuExec<'_, '_> {
    type Buffer = GpuBuffer;
    type Matrix = Matrix;
    type Vector = GpuBuffer;
    type Cache = KvCache;
    type Rope = RopeTable;

    fn embedding(&mut self, table: &Matrix, ids: &GpuBuffer, n: usize, out: &GpuBuffer, scale: f32) -> Result<()> {
        embedding::encode(self.rec, table, ids, n, out, scale)
    }
    fn rms_norm(&mut self, x: &GpuBuffer, w: &GpuBuffer, out: &GpuBuffer, n: usize, dim: usize, eps: f32) -> Result<()> {
        rms_norm::encode(self.rec, x, w, out, n, dim, eps)
    }
    fn rms_norm_add(&mut self, x: &GpuBuffer, delta: &GpuBuffer, delta_w: Option<&GpuBuffer>, w: &GpuBuffer, out: &GpuBuffer, n: usize, dim: usize, eps: f32) -> Result<()> {
        rms_norm::encode_add(self.rec, x, delta, delta_w, w, out, n, dim, eps)
    }
    fn linear(&mut self, w: &Matrix, x: &GpuBuffer, n: usize, out: &GpuBuffer) -> Result<()> {
        if n <= MATVEC_TOKENS { matvec::encode_tokens(self.rec, w, x, n, out) } else { matmul::encode(self.rec, w, x, n, out) }
    }
    /// For a few tokens the gate/up matvec applies the gating itself; prefill runs the matmul,
    /// then the gating over the pairs.
    fn gated(&mut self, w: &Matrix, x: &GpuBuffer, n: usize, scratch: &GpuBuffer, out: &GpuBuffer, act: Activation) -> Result<()> {
        if n <= MATVEC_TOKENS {
            matvec::encode_glu(self.rec, w, x, n, out, act)
        } else {
            matmul::encode(self.rec, w, x, n, scratch)?;
            glu::encode_pairs(self.rec, scratch, out, n * w.rows / 2, act)
        }
    }
    fn rope(&mut self, qkv: &GpuBuffer, q: &GpuBuffer, cache: &KvCache, table: &RopeTable, bias: Option<&GpuBuffer>, qk_norm: Option<(&GpuBuffer, f32)>, heads: Heads, n: usize, pos: usize) -> Result<()> {
        let io = rope::RopeIo { qkv, q, cache, bias, qk_norm };
        rope::encode(self.rec, &io, table, n, heads.n_heads, heads.n_kv_heads, pos)
    }
    fn attention(&mut self, heads: Heads, scores: Scores, q: &GpuBuffer, cache: &KvCache, out: &GpuBuffer, n: usize, pos: usize) -> Result<()> {
        if n == 1 {
            attention::encode_decode(self.rec, heads, scores, q, cache, self.decode, out, pos + 1)
        } else {
            attention::encode_prefill(self.rec, heads, scores, q, cache, out, n, pos)
        }
    }
    fn copy(&mut self, src: &GpuBuffer, src_at: usize, dst: &GpuBuffer, dst_at: usize, len: usize) -> Result<()> {
        self.rec.copy(src, (src_at * 4) as u64, dst, (dst_at * 4) as u64, (len * 4) as u64)
    }
}

/// The CPU: each operation runs when called, on the pool's threads.
pub(crate) struct CpuExec<'p> {
    pub pool: &'p Pool,
}

impl Exec for CpuExec<'_> {
    type Buffer = RefCell<Vec<f32>>;
    type Matrix = CpuWeights;
    type Vector = Vec<f32>;
    type Cache = RefCell<CpuKvCache>;
    type Rope = Vec<f32>;

    fn embedding(&mut self, table: &CpuWeights, ids: &Self::Buffer, n: usize, out: &Self::Buffer, scale: f32) -> Result<()> {
        let ids: Vec<u32> = ids.borrow()[..n].iter().map(|v| v.to_bits()).collect();
        crate::cpu::ops::embedding(table, &ids, &mut out.borrow_mut()[..n * table.cols], scale);
        Ok(())
    }
    fn rms_norm(&mut self, x: &Self::Buffer, w: &Vec<f32>, out: &Self::Buffer, n: usize, dim: usize, eps: f32) -> Result<()> {
        crate::cpu::ops::rms_norm(&x.borrow()[..n * dim], w, &mut out.borrow_mut()[..n * dim], dim, eps);
        Ok(())
    }
    fn rms_norm_add(&mut self, x: &Self::Buffer, delta: &Self::Buffer, delta_w: Option<&Vec<f32>>, w: &Vec<f32>, out: &Self::Buffer, n: usize, dim: usize, eps: f32) -> Result<()> {
        let len = n * dim;
        crate::cpu::ops::rms_norm_add(&mut x.borrow_mut()[..len], &delta.borrow()[..len], delta_w.map(|v| v.as_slice()), w, &mut out.borrow_mut()[..len], dim, eps);
        Ok(())
    }
    fn linear(&mut self, w: &CpuWeights, x: &Self::Buffer, n: usize, out: &Self::Buffer) -> Result<()> {
        w.matvec(self.pool, &x.borrow()[..n * w.cols], n, &mut out.borrow_mut()[..n * w.rows]);
        Ok(())
    }
    fn gated(&mut self, w: &CpuWeights, x: &Self::Buffer, n: usize, scratch: &Self::Buffer, out: &Self::Buffer, act: Activation) -> Result<()> {
        self.linear(w, x, n, scratch)?;
        crate::cpu::ops::glu_pairs(&scratch.borrow()[..n * w.rows], &mut out.borrow_mut()[..n * w.rows / 2], act);
        Ok(())
    }
    fn rope(&mut self, qkv: &Self::Buffer, q: &Self::Buffer, cache: &Self::Cache, table: &Vec<f32>, bias: Option<&Vec<f32>>, qk_norm: Option<(&Vec<f32>, f32)>, heads: Heads, n: usize, pos: usize) -> Result<()> {
        let pre = Pre { bias: bias.map(|b| b.as_slice()), qk_norm: qk_norm.map(|(w, eps)| (w.as_slice(), eps)) };
        let q_dim = heads.n_heads * heads.head_dim;
        crate::cpu::ops::rope_append(&qkv.borrow(), &mut q.borrow_mut()[..n * q_dim], &mut cache.borrow_mut(), table, &pre, heads, n, pos);
        Ok(())
    }
    fn attention(&mut self, heads: Heads, scores: Scores, q: &Self::Buffer, cache: &Self::Cache, out: &Self::Buffer, n: usize, pos: usize) -> Result<()> {
        let len = n * heads.n_heads * heads.head_dim;
        crate::cpu::ops::attention(self.pool, &q.borrow()[..len], &cache.borrow(), heads, scores, n, pos, &mut out.borrow_mut()[..len]);
        Ok(())
    }
    fn copy(&mut self, src: &Self::Buffer, src_at: usize, dst: &Self::Buffer, dst_at: usize, len: usize) -> Result<()> {
        let values = src.borrow()[src_at..src_at + len].to_vec();
        dst.borrow_mut()[dst_at..dst_at + len].copy_from_slice(&values);
        Ok(())
    }
}
