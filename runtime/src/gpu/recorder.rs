//! Records dispatches and copies into one command buffer, with the ops' parameter structs
//! packed into one uniform arena written once per submit.
//!
//! A recorder is created once and reused: its arena buffer is allocated at creation, so
//! recording a decode step allocates no GPU memory.

use super::kernel::Kernel;
use super::{Gpu, GpuBuffer, Readback};
use crate::error::{Error, Result};

/// Byte stride of one parameter slot. WebGPU guarantees min_uniform_buffer_offset_alignment
/// <= 256, and every op's parameter struct fits in 256 bytes.
const SLOT: u64 = 256;

pub struct Recorder<'g> {
    gpu: &'g Gpu,
    arena: wgpu::Buffer,
    slots: u64,
    params: Vec<u8>,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    /// Dispatches recorded since creation (for per-token statistics).
    pub dispatches: u64,
    /// Submits made since creation.
    pub submits: u64,
}

impl<'g> Recorder<'g> {
    /// A recorder whose arena holds `max_dispatches` parameter slots; recording more dispatches
    /// than that before a submit flushes (submits) automatically.
    pub fn new(gpu: &'g Gpu, max_dispatches: u32) -> Recorder<'g> {
        let slots = u64::from(max_dispatches.max(1));
        let arena = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("cria params arena"),
            size: slots * SLOT,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Recorder { gpu, arena, slots, params: Vec::new(), encoder: None, pass: None, dispatches: 0, submits: 0 }
    }

    /// Bytes of the arena of a recorder with `max_dispatches` slots.
    pub fn arena_bytes(max_dispatches: u32) -> u64 {
        u64::from(max_dispatches.max(1)) * SLOT
    }

    /// A recorder on an existing arena (from [`Recorder::into_arena`]): no allocation.
    pub fn with_arena(gpu: &'g Gpu, arena: wgpu::Buffer) -> Recorder<'g> {
        let slots = arena.size() / SLOT;
        Recorder { gpu, arena, slots, params: Vec::new(), encoder: None, pass: None, dispatches: 0, submits: 0 }
    }

    /// Gives the arena back for reuse. Unsubmitted work is discarded.
    pub fn into_arena(mut self) -> wgpu::Buffer {
        self.pass = None;
        self.arena.clone()
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        self.encoder.get_or_insert_with(|| {
            self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("cria") })
        })
    }

    /// Records one dispatch of `kernel` with `params` at binding 0 and `buffers` at 1, 2, ...
    pub fn dispatch<P: bytemuck::Pod>(
        &mut self,
        kernel: &Kernel,
        params: &P,
        buffers: &[&GpuBuffer],
        workgroups: [u32; 3],
    ) -> Result<()> {
        let name = kernel.spec.name;
        if buffers.len() != kernel.spec.bindings.len() {
            return Err(Error::shape(name, "number of buffers", kernel.spec.bindings.len(), buffers.len()));
        }
        let max = self.gpu.limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > max) {
            return Err(Error::shape(name, "workgroups per dimension", format!("<= {max}"), format!("{workgroups:?}")));
        }
        let bytes = bytemuck::bytes_of(params);
        debug_assert!(bytes.len() as u64 <= SLOT, "parameter struct of {name} exceeds one slot");
        if self.params.len() as u64 / SLOT >= self.slots {
            self.submit()?;
        }
        let offset = self.params.len() as u64;
        self.params.extend_from_slice(bytes);
        self.params.resize((offset + SLOT) as usize, 0);
        if workgroups.contains(&0) {
            return Ok(()); // nothing to do (an empty tensor)
        }

        let mut bound: Vec<&wgpu::Buffer> = Vec::with_capacity(buffers.len() + 1);
        bound.push(&self.arena);
        bound.extend(buffers.iter().map(|b| &b.buffer));
        let bind_group = self.gpu.bind_group(name, &kernel.layout, &bound, SLOT);
        if self.pass.is_none() {
            let pass = self
                .encoder()
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("cria"), timestamp_writes: None })
                .forget_lifetime();
            self.pass = Some(pass);
        }
        let pass = self.pass.as_mut().expect("pass was just created");
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind_group, &[offset as u32]);
        pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        self.dispatches += 1;
        Ok(())
    }

    /// Records a buffer-to-buffer copy (offsets and size multiples of 4).
    pub fn copy(&mut self, src: &GpuBuffer, src_offset: u64, dst: &GpuBuffer, dst_offset: u64, size: u64) -> Result<()> {
        if src_offset + size > src.buffer.size() || dst_offset + size > dst.buffer.size() {
            return Err(Error::shape(
                "copy",
                "range",
                format!("src <= {} and dst <= {} bytes", src.buffer.size(), dst.buffer.size()),
                format!("src {}..{} dst {}..{}", src_offset, src_offset + size, dst_offset, dst_offset + size),
            ));
        }
        if !src_offset.is_multiple_of(4) || !dst_offset.is_multiple_of(4) || !size.is_multiple_of(4) {
            return Err(Error::shape("copy", "alignment of offsets and size", "multiples of 4", format!("{src_offset}, {dst_offset}, {size}")));
        }
        self.pass = None; // copies happen between compute passes
        self.encoder().copy_buffer_to_buffer(&src.buffer, src_offset, &dst.buffer, dst_offset, size);
        Ok(())
    }

    /// Records a copy of `len` bytes at `offset` of `src` into `readback`'s staging buffer, so
    /// the result comes back with the same submit ([`Readback::finish`] after [`Recorder::submit`]).
    pub fn copy_to_readback(&mut self, src: &GpuBuffer, offset: u64, readback: &Readback, len: u64) -> Result<()> {
        self.pass = None;
        readback.record(self.encoder(), &src.buffer, offset, len)
    }

    /// Ends recording and submits everything recorded so far as one command buffer.
    pub fn submit(&mut self) -> Result<()> {
        self.gpu.check("submit")?;
        self.pass = None;
        if !self.params.is_empty() {
            self.gpu.queue.write_buffer(&self.arena, 0, &self.params);
            self.params.clear();
        }
        if let Some(encoder) = self.encoder.take() {
            self.gpu.queue.submit([encoder.finish()]);
            self.submits += 1;
        }
        Ok(())
    }
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        // A pass must end before its encoder is dropped; unsubmitted work is discarded.
        self.pass = None;
    }
}
