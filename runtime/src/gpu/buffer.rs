//! Storage buffers that know their size, respect the device's binding limit, and read back.

use super::Gpu;
use crate::error::{Error, Result};
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// A storage buffer usable as one binding. Sizes are rounded up to 4 bytes (WebGPU's copy and
/// write granularity); `len` keeps the size that was asked for.
#[derive(Debug)]
pub struct GpuBuffer {
    pub buffer: wgpu::Buffer,
    pub len: u64,
}

impl GpuBuffer {
    pub fn from_bytes(gpu: &Gpu, label: &str, bytes: &[u8]) -> Result<GpuBuffer> {
        let mut writer = BufferWriter::new(gpu, label, bytes.len() as u64)?;
        writer.write(bytes)?;
        writer.finish()
    }

    pub fn from_slice<T: bytemuck::Pod>(gpu: &Gpu, label: &str, data: &[T]) -> Result<GpuBuffer> {
        Self::from_bytes(gpu, label, bytemuck::cast_slice(data))
    }

    /// A zero-filled buffer (wgpu zero-initialises new buffers).
    pub fn zeroed(gpu: &Gpu, label: &str, len: u64) -> Result<GpuBuffer> {
        let buffer = new_storage(gpu, label, len, false)?;
        Ok(GpuBuffer { buffer, len })
    }

    /// Overwrites `bytes.len()` bytes at `offset` (both multiples of 4) before the next submit.
    pub fn write(&self, gpu: &Gpu, offset: u64, bytes: &[u8]) -> Result<()> {
        if offset + bytes.len() as u64 > self.buffer.size() || !offset.is_multiple_of(4) || !bytes.len().is_multiple_of(4) {
            return Err(Error::shape("buffer write", "offset+len (4-byte aligned)", format!("<= {}", self.buffer.size()), offset + bytes.len() as u64));
        }
        gpu.queue.write_buffer(&self.buffer, offset, bytes);
        Ok(())
    }

    /// Copies the whole buffer back to the host (`len` bytes). Waits for all submitted work.
    pub async fn read_bytes(&self, gpu: &Gpu) -> Result<Vec<u8>> {
        read_range(gpu, &self.buffer, 0, self.len).await
    }

    pub async fn read_f32(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        Ok(bytemuck::pod_collect_to_vec(&self.read_bytes(gpu).await?))
    }

    pub async fn read_u32(&self, gpu: &Gpu) -> Result<Vec<u32>> {
        Ok(bytemuck::pod_collect_to_vec(&self.read_bytes(gpu).await?))
    }

    /// A buffer of f16 values (the `half2` storage of the KV cache), rounded from `values`.
    pub fn from_halves(gpu: &Gpu, label: &str, values: &[f32]) -> Result<GpuBuffer> {
        let bits: Vec<u16> = values.iter().map(|&v| half::f16::from_f32(v).to_bits()).collect();
        Self::from_bytes(gpu, label, bytemuck::cast_slice(&bits))
    }

    /// The buffer read as f16 values, widened.
    pub async fn read_halves(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let bits: Vec<u16> = bytemuck::pod_collect_to_vec(&self.read_bytes(gpu).await?);
        Ok(bits.into_iter().map(|b| half::f16::from_bits(b).to_f32()).collect())
    }
}

fn new_storage(gpu: &Gpu, label: &str, len: u64, mapped_at_creation: bool) -> Result<wgpu::Buffer> {
    let limit = gpu.max_binding_bytes();
    if len > limit {
        return Err(Error::BindingTooLarge { what: label.to_string(), bytes: len, limit });
    }
    gpu.check(label)?;
    Ok(gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: len.max(4).next_multiple_of(4),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation,
    }))
}

/// A new storage buffer filled from the host in pieces, front to back: mapped at creation, each
/// piece copied into its own sub-range of the mapping. In the browser a mapped range is mirrored
/// in the wasm heap while it is open, so mapping piece by piece keeps the heap at one piece,
/// not one buffer.
pub struct BufferWriter {
    buffer: wgpu::Buffer,
    label: String,
    len: u64,
    written: u64,
}

impl BufferWriter {
    pub fn new(gpu: &Gpu, label: &str, len: u64) -> Result<BufferWriter> {
        Ok(BufferWriter { buffer: new_storage(gpu, label, len, true)?, label: label.to_string(), len, written: 0 })
    }

    /// Appends `bytes`. Every piece but the last must be a multiple of 8 bytes long (where
    /// mapped ranges may start).
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.written + bytes.len() as u64;
        if end > self.len || !self.written.is_multiple_of(wgpu::MAP_ALIGNMENT) {
            return Err(Error::shape("buffer write", format!("piece of '{}' at byte {}", self.label, self.written), format!("an 8-byte aligned piece ending by {}", self.len), end));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let mapped_end = end.next_multiple_of(4).min(self.buffer.size());
        let mut view = self.buffer.get_mapped_range_mut(self.written..mapped_end).map_err(|e| Error::Validation {
            context: format!("mapping new buffer '{}'", self.label),
            message: e.to_string(),
        })?;
        view.slice(..bytes.len()).copy_from_slice(bytes);
        drop(view);
        self.written = end;
        Ok(())
    }

    /// The filled buffer (bytes never written stay zero).
    pub fn finish(self) -> Result<GpuBuffer> {
        self.buffer.unmap();
        Ok(GpuBuffer { buffer: self.buffer, len: self.len })
    }
}

/// Reads `len` bytes at `offset` of `buffer` through a temporary staging buffer.
pub(crate) async fn read_range(gpu: &Gpu, buffer: &wgpu::Buffer, offset: u64, len: u64) -> Result<Vec<u8>> {
    Readback::new(gpu, len).read(gpu, buffer, offset, len).await
}

/// A staging buffer kept for repeated reads (the decode loop reads the next token id every
/// step without allocating).
#[derive(Debug)]
pub struct Readback {
    staging: wgpu::Buffer,
}

impl Readback {
    pub fn new(gpu: &Gpu, capacity: u64) -> Readback {
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("cria readback"),
            size: capacity.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Readback { staging }
    }

    /// Bytes of the staging buffer.
    pub fn capacity(&self) -> u64 {
        self.staging.size()
    }

    /// Copies `len` bytes at `offset` of `buffer` back to the host, after all submitted work.
    pub async fn read(&self, gpu: &Gpu, buffer: &wgpu::Buffer, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut encoder = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        self.record(&mut encoder, buffer, offset, len)?;
        gpu.queue.submit([encoder.finish()]);
        self.finish(gpu, len).await
    }

    /// Records the copy into the staging buffer (to go in the same submit as the work).
    pub(crate) fn record(&self, encoder: &mut wgpu::CommandEncoder, buffer: &wgpu::Buffer, offset: u64, len: u64) -> Result<()> {
        let size = len.max(4).next_multiple_of(4);
        if size > self.staging.size() {
            return Err(Error::shape("readback", "bytes", format!("<= {}", self.staging.size()), len));
        }
        encoder.copy_buffer_to_buffer(buffer, offset, &self.staging, 0, size);
        Ok(())
    }

    /// Waits for the submitted copy and returns its first `len` bytes.
    pub async fn finish(&self, gpu: &Gpu, len: u64) -> Result<Vec<u8>> {
        gpu.check("readback")?;
        map_read(gpu, &self.staging).await?;
        let bytes = {
            let view = self.staging.get_mapped_range(..len.max(4).next_multiple_of(4)).map_err(|e| Error::Readback { message: e.to_string() })?;
            view[..len as usize].to_vec()
        };
        self.staging.unmap();
        gpu.check("readback")?;
        Ok(bytes)
    }
}

/// Maps `buffer` for reading and waits for the mapping (natively by polling the device).
pub(crate) async fn map_read(gpu: &Gpu, buffer: &wgpu::Buffer) -> Result<()> {
    let shared: Arc<Mutex<MapState>> = Arc::default();
    let cb_state = shared.clone();
    buffer.map_async(wgpu::MapMode::Read, .., move |result| {
        let mut s = cb_state.lock().unwrap_or_else(|p| p.into_inner());
        s.result = Some(result.map_err(|e| e.to_string()));
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    });
    // Natively, polling until the queue is idle runs the callback. When several threads share
    // the device, another thread's poll may have taken our callback and not yet run it, so poll
    // again briefly; if it still has not run, the device is gone, and waiting would hang.
    #[cfg(not(target_arch = "wasm32"))]
    let outcome = {
        let start = std::time::Instant::now();
        loop {
            let polled = gpu.device.poll(wgpu::PollType::wait_indefinitely());
            gpu.check("readback")?;
            polled.map_err(|e| Error::DeviceLost { reason: e.to_string() })?;
            if let Some(result) = shared.lock().unwrap_or_else(|p| p.into_inner()).result.take() {
                break result;
            }
            if start.elapsed() > std::time::Duration::from_secs(10) {
                break Err("the mapping callback never ran".to_string());
            }
            std::thread::yield_now();
        }
    };
    #[cfg(target_arch = "wasm32")]
    let outcome = MapFuture(shared).await;
    gpu.check("readback")?;
    outcome.map_err(|message| Error::Readback { message })
}

#[derive(Default)]
struct MapState {
    result: Option<Result<(), String>>,
    waker: Option<Waker>,
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct MapFuture(Arc<Mutex<MapState>>);

impl Future for MapFuture {
    type Output = Result<(), String>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Splits `rows` rows of `row_bytes` bytes each into consecutive ranges whose byte size fits
/// in one binding of at most `limit` bytes. Large weight matrices are stored this way.
pub fn split_rows(what: &str, rows: usize, row_bytes: u64, limit: u64) -> Result<Vec<Range<usize>>> {
    if row_bytes > limit {
        return Err(Error::BindingTooLarge { what: format!("one row of {what}"), bytes: row_bytes, limit });
    }
    let per_chunk = limit.checked_div(row_bytes).map_or(rows.max(1), |n| n as usize);
    let mut out = Vec::new();
    let mut start = 0;
    while start < rows {
        let end = (start + per_chunk).min(rows);
        out.push(start..end);
        start = end;
    }
    Ok(out)
}
