//! One CUDA device: context, one stream, the compiled kernels, and bf16 GEMMs through cuBLASLt.
//!
//! Everything runs on a single stream, so cudarc's per-buffer event tracking is switched off
//! and buffers are addressed by raw device pointers (`u64`): a flat parameter vector is then
//! sliced by offset exactly as the CPU path slices `&params[range]`.

use super::kernels::{self, KERNEL_FILES};
use super::libs::{self, Library};
use crate::error::{Result, TrainError};
use cudarc::cublaslt::{result as lt, sys as ltsys};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig,
    PushKernelArg, ValidAsZeroBits,
};
use std::collections::HashMap;
use std::sync::Arc;

/// A kernel argument. Pointers are raw device addresses (kernels take `T*`).
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    Ptr(u64),
    I32(i32),
    I64(i64),
    F32(f32),
}

/// Element type of a GEMM output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Out {
    Bf16,
    F32,
}

/// A device allocation of `len` elements of `T`, freed on drop.
pub struct Buf<T> {
    slice: CudaSlice<T>,
    ptr: u64,
}

impl<T> Buf<T> {
    /// Device address of element `i`.
    pub fn at(&self, i: usize) -> u64 {
        self.ptr + (i * std::mem::size_of::<T>()) as u64
    }
    pub fn ptr(&self) -> u64 {
        self.ptr
    }
    pub fn len(&self) -> usize {
        self.slice.len()
    }
    pub fn is_empty(&self) -> bool {
        self.slice.len() == 0
    }
    pub fn slice_mut(&mut self) -> &mut CudaSlice<T> {
        &mut self.slice
    }
}

/// A cached cuBLASLt plan: descriptor, layouts and the heuristic's algorithm for one shape.
struct Plan {
    desc: ltsys::cublasLtMatmulDesc_t,
    layouts: [ltsys::cublasLtMatrixLayout_t; 3],
    algo: ltsys::cublasLtMatmulAlgo_t,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: created by this module and destroyed once; errors on teardown are ignored.
        unsafe {
            let _ = lt::destroy_matmul_desc(self.desc);
            for l in self.layouts {
                let _ = lt::destroy_matrix_layout(l);
            }
        }
    }
}

type PlanKey = (u64, u64, u64, bool, bool, Out, [u32; 3]);

pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub arch: &'static str,
    funcs: HashMap<&'static str, CudaFunction>,
    lt_handle: ltsys::cublasLtHandle_t,
    workspace: Buf<u8>,
    plans: HashMap<PlanKey, Plan>,
}

const WORKSPACE_BYTES: usize = 32 << 20;

impl Gpu {
    /// Open device `ordinal`, compile and load every kernel. Checks the libraries first.
    pub fn new(ordinal: usize) -> Result<Self> {
        libs::require(&[Library::Driver, Library::Nvrtc, Library::CublasLt])?;
        let count = CudaContext::device_count().map_err(TrainError::cuda("count devices"))?;
        if ordinal >= count.max(0) as usize {
            return Err(TrainError::Cuda {
                op: "open device".into(),
                message: format!(
                    "device {ordinal} requested but the driver reports {count} CUDA device(s)"
                ),
            });
        }
        let ctx = CudaContext::new(ordinal).map_err(TrainError::cuda("create context"))?;
        // SAFETY: one stream only; ordering on it replaces cudarc's cross-stream events.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let name = ctx.name().map_err(TrainError::cuda("device name"))?;
        let cc = ctx
            .compute_capability()
            .map_err(TrainError::cuda("compute capability"))?;
        let arch = kernels::arch_for(cc.0, cc.1);
        let mut funcs = HashMap::new();
        for &(stem, src, names) in KERNEL_FILES {
            let ptx = kernels::compile(stem, src, arch)?;
            let module = ctx
                .load_module(ptx)
                .map_err(TrainError::cuda(format!("load {stem}.cu")))?;
            for &n in names {
                funcs.insert(
                    n,
                    module
                        .load_function(n)
                        .map_err(TrainError::cuda(format!("find kernel {n}")))?,
                );
            }
        }
        let lt_handle = lt::create_handle().map_err(TrainError::cuda("cublasLtCreate"))?;
        let workspace = alloc_in(&stream, WORKSPACE_BYTES)?;
        Ok(Gpu {
            ctx,
            stream,
            name,
            compute_capability: cc,
            arch,
            funcs,
            lt_handle,
            workspace,
            plans: HashMap::new(),
        })
    }

    pub fn alloc<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> Result<Buf<T>> {
        alloc_in(&self.stream, len)
    }

    pub fn upload<T: DeviceRepr + ValidAsZeroBits>(&self, host: &[T]) -> Result<Buf<T>> {
        let mut b = self.alloc(host.len())?;
        self.stream
            .memcpy_htod(host, &mut b.slice)
            .map_err(TrainError::cuda("copy to device"))?;
        Ok(b)
    }

    pub fn write<T: DeviceRepr>(&self, dst: &mut Buf<T>, host: &[T]) -> Result<()> {
        if host.len() > dst.len() {
            return Err(TrainError::Cuda {
                op: "copy to device".into(),
                message: format!("{} elements into a buffer of {}", host.len(), dst.len()),
            });
        }
        let mut view = dst.slice.slice_mut(..host.len());
        self.stream
            .memcpy_htod(host, &mut view)
            .map_err(TrainError::cuda("copy to device"))
    }

    /// Copy a whole buffer back (synchronises the stream).
    pub fn download<T: DeviceRepr + Default + Clone>(&self, src: &Buf<T>) -> Result<Vec<T>> {
        self.stream
            .clone_dtoh(&src.slice)
            .map_err(TrainError::cuda("copy to host"))
    }

    /// Copy `len` elements starting at element `offset` back.
    pub fn download_range<T: DeviceRepr + Default + Clone>(
        &self,
        src: &Buf<T>,
        offset: usize,
        len: usize,
    ) -> Result<Vec<T>> {
        let view = src.slice.slice(offset..offset + len);
        self.stream
            .clone_dtoh(&view)
            .map_err(TrainError::cuda("copy to host"))
    }

    pub fn zero<T>(&self, buf: &mut Buf<T>) -> Result<()> {
        self.zero_bytes(buf.ptr, buf.len() * std::mem::size_of::<T>())
    }

    pub fn zero_bytes(&self, ptr: u64, bytes: usize) -> Result<()> {
        // SAFETY: callers pass an address range inside one of this device's allocations.
        unsafe { cudarc::driver::result::memset_d8_async(ptr, 0, bytes, self.stream.cu_stream()) }
            .map_err(TrainError::cuda("memset"))
    }

    pub fn sync(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(TrainError::cuda("synchronize"))
    }

    /// Launch kernel `name` on a (grid, block) with `smem` bytes of dynamic shared memory.
    pub fn launch(
        &self,
        name: &'static str,
        grid: (u32, u32, u32),
        block: u32,
        smem: u32,
        args: &[Arg],
    ) -> Result<()> {
        let f = self.funcs.get(name).ok_or_else(|| TrainError::Cuda {
            op: "launch".into(),
            message: format!("kernel {name} is not loaded"),
        })?;
        let mut b = self.stream.launch_builder(f);
        for a in args {
            match a {
                Arg::Ptr(p) => b.arg(p),
                Arg::I32(x) => b.arg(x),
                Arg::I64(x) => b.arg(x),
                Arg::F32(x) => b.arg(x),
            };
        }
        let cfg = LaunchConfig {
            grid_dim: grid,
            block_dim: (block, 1, 1),
            shared_mem_bytes: smem,
        };
        // SAFETY: argument lists are written against each kernel's signature in kernels/*.cu
        // (pointer, int, long long, float) and pointers come from live `Buf`s of the right size.
        unsafe { b.launch(cfg) }
            .map(|_| ())
            .map_err(TrainError::cuda(format!("launch {name}")))
    }

    /// Grid-stride elementwise launch over `n` elements (256 threads, capped grid).
    pub fn launch_1d(&self, name: &'static str, n: usize, args: &[Arg]) -> Result<()> {
        let blocks = n.div_ceil(256).clamp(1, 65_535) as u32;
        self.launch(name, (blocks, 1, 1), 256, 0, args)
    }

    /// A linear layer forward, `y (rows, out) = x (rows, inp) · W^T` with `W (out, inp)`, bf16 out.
    pub fn linear(&mut self, y: u64, x: u64, w: u64, rows: usize, out: usize, inp: usize) -> Result<()> {
        self.gemm(y, Out::Bf16, 0.0, x, false, w, true, rows, out, inp)
    }

    /// Its input gradient, `dx (rows, inp) = dy (rows, out) · W + beta * dx`.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_dx(&mut self, dx: u64, kind: Out, beta: f32, dy: u64, w: u64, rows: usize, inp: usize, out: usize) -> Result<()> {
        self.gemm(dx, kind, beta, dy, false, w, false, rows, inp, out)
    }

    /// Its weight gradient, accumulated in f32: `dW (out, inp) += dy^T · x`, over `rows` rows.
    pub fn linear_dw(&mut self, dw: u64, dy: u64, x: u64, out: usize, inp: usize, rows: usize) -> Result<()> {
        self.gemm(dw, Out::F32, 1.0, dy, true, x, false, out, inp, rows)
    }

    /// Row-major GEMM with bf16 inputs and f32 accumulation:
    /// C (m, n) = alpha * op(A) (m, k) · op(B) (k, n) + beta * C, op = transpose when `ta`/`tb`
    /// (A stored (k, m) when `ta`, else (m, k); B stored (n, k) when `tb`, else (k, n)).
    /// C is bf16 or f32 (`out`). cuBLASLt is column-major, so this computes C^T = op(B)^T op(A)^T.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        &mut self,
        c: u64,
        out: Out,
        beta: f32,
        a: u64,
        ta: bool,
        b: u64,
        tb: bool,
        m: usize,
        n: usize,
        k: usize,
    ) -> Result<()> {
        let (m, n, k) = (m as u64, n as u64, k as u64);
        let align = |p: u64| (1u64 << p.trailing_zeros().min(8)) as u32;
        let key: PlanKey = (m, n, k, ta, tb, out, [align(b), align(a), align(c)]);
        if !self.plans.contains_key(&key) {
            let plan = self.make_plan(&key)?;
            self.plans.insert(key, plan);
        }
        let plan = &self.plans[&key];
        let (alpha, beta) = (1.0f32, beta);
        // SAFETY: the plan's layouts describe exactly these operands; pointers are device
        // addresses from live buffers sized by the caller for (m, n, k).
        unsafe {
            lt::matmul(
                self.lt_handle,
                plan.desc,
                (&alpha) as *const f32 as *const _,
                (&beta) as *const f32 as *const _,
                b as *const _,
                plan.layouts[0],
                a as *const _,
                plan.layouts[1],
                c as *const _,
                plan.layouts[2],
                c as *mut _,
                plan.layouts[2],
                &plan.algo,
                self.workspace.ptr as *mut _,
                WORKSPACE_BYTES,
                self.stream.cu_stream() as *mut _,
            )
        }
        .map_err(TrainError::cuda(format!(
            "cublasLtMatmul m={m} n={n} k={k} ta={ta} tb={tb}"
        )))
    }

    fn make_plan(&self, key: &PlanKey) -> Result<Plan> {
        let &(m, n, k, ta, tb, out, aligns) = key;
        let bf = ltsys::cudaDataType_t::CUDA_R_16BF;
        let ct = match out {
            Out::Bf16 => bf,
            Out::F32 => ltsys::cudaDataType_t::CUDA_R_32F,
        };
        let err = |what: &str| {
            TrainError::cuda(format!(
                "cuBLASLt {what} (m={m} n={n} k={k} ta={ta} tb={tb} out={out:?})"
            ))
        };
        // Column-major operands: first = B as stored (row-major (n,k) if tb else (k,n)), second = A.
        let first = if tb {
            lt::create_matrix_layout(bf, k, n, k as i64)
        } else {
            lt::create_matrix_layout(bf, n, k, n as i64)
        }
        .map_err(err("layout B"))?;
        let second = if ta {
            lt::create_matrix_layout(bf, m, k, m as i64)
        } else {
            lt::create_matrix_layout(bf, k, m, k as i64)
        }
        .map_err(err("layout A"))?;
        let c = lt::create_matrix_layout(ct, n, m, n as i64).map_err(err("layout C"))?;
        let desc = lt::create_matmul_desc(
            ltsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            ltsys::cudaDataType_t::CUDA_R_32F,
        )
        .map_err(err("desc"))?;
        let mut plan = Plan {
            desc,
            layouts: [first, second, c],
            algo: unsafe { std::mem::zeroed() },
        };
        let pref = lt::create_matmul_pref().map_err(err("preference"))?;
        // SAFETY: attribute buffers are live locals of the documented types (i32 op, u64 bytes, u32 alignment).
        let res = unsafe {
            let set_desc = |attr, v: i32| {
                lt::set_matmul_desc_attribute(plan.desc, attr, (&v) as *const i32 as *const _, 4)
            };
            set_desc(ltsys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA, tb as i32)
                .and_then(|_| set_desc(ltsys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSB, ta as i32))
                .and_then(|_| {
                    let ws = WORKSPACE_BYTES as u64;
                    lt::set_matmul_pref_attribute(pref, ltsys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, (&ws) as *const u64 as *const _, 8)
                })
                .and_then(|_| {
                    use ltsys::cublasLtMatmulPreferenceAttributes_t as P;
                    let attrs = [P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES];
                    let vals = [aligns[0], aligns[1], aligns[2], aligns[2]];
                    for (attr, v) in attrs.into_iter().zip(vals) {
                        lt::set_matmul_pref_attribute(pref, attr, (&v) as *const u32 as *const _, 4)?;
                    }
                    Ok(())
                })
                .and_then(|_| lt::get_matmul_algo_heuristic(self.lt_handle, plan.desc, first, second, c, c, pref))
        };
        // SAFETY: created above, destroyed once.
        unsafe {
            let _ = lt::destroy_matmul_pref(pref);
        }
        plan.algo = res
            .map_err(err("heuristic (no algorithm for this shape)"))?
            .algo;
        Ok(plan)
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        self.plans.clear();
        // SAFETY: the handle was created in `new` and is destroyed once.
        unsafe {
            let _ = lt::destroy_handle(self.lt_handle);
        }
    }
}

fn alloc_in<T: DeviceRepr + ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    len: usize,
) -> Result<Buf<T>> {
    let bytes = len * std::mem::size_of::<T>();
    let slice = stream
        .alloc_zeros::<T>(len.max(1))
        .map_err(|e| TrainError::Cuda {
            op: "allocate".into(),
            message: format!("{bytes} bytes: {e:?}"),
        })?;
    let ptr = slice.device_ptr(stream).0;
    Ok(Buf { slice, ptr })
}
