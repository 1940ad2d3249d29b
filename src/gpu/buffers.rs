//! Buffers and command recording.
//!
//! A [`Recorder`] collects the dispatches of one job into a single command encoder, so that a chunk of work is one
//! submit; read-back happens only at chunk ends.

use std::sync::mpsc;

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::gpu::{GpuContext, Kernel};

/// How a buffer is used, which decides its wgpu usage flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferRole {
    /// Read and written by kernels, copied to and from.
    Storage,
    /// Host-visible destination of a copy, mapped for reading.
    Readback,
}

/// wgpu rejects empty bindings; every buffer holds at least one 4-byte word.
fn padded_size(bytes: u64) -> u64 {
    bytes.max(4).div_ceil(4) * 4
}

impl GpuContext {
    pub fn buffer(&self, label: &str, bytes: u64, role: BufferRole) -> wgpu::Buffer {
        let usage = match role {
            BufferRole::Storage => {
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
            }
            BufferRole::Readback => wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        };
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: padded_size(bytes),
            usage,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer holding `data`.
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.is_empty() {
            return self.buffer(label, 4, BufferRole::Storage);
        }
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// Queues a host-to-device write at the start of the next submit (no-op for empty data).
    pub fn write<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, data: &[T]) {
        if !data.is_empty() {
            self.queue.write_buffer(buffer, 0, bytemuck::cast_slice(data));
        }
    }

    /// A uniform buffer holding one parameter struct.
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    /// Blocks until `readback` (filled by a copy in submission `after`, or any submitted so far) is mapped, then
    /// copies out `len` elements.
    pub fn read_mapped<T: bytemuck::Pod>(
        &self,
        readback: &wgpu::Buffer,
        len: usize,
        after: Option<wgpu::SubmissionIndex>,
    ) -> Result<Vec<T>> {
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let slice = readback.slice(0..bytes);
        let (sender, receiver) = mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = sender.send(r);
        });
        self.wait_for(after)?;
        receiver
            .recv()
            .map_err(|_| Error::Device("buffer map callback was dropped".into()))?
            .map_err(|e| Error::Device(format!("mapping {:?} for reading: {e}", readback)))?;
        let data = {
            let view = slice.get_mapped_range().map_err(|e| Error::Device(format!("reading a mapped buffer: {e}")))?;
            bytemuck::cast_slice::<u8, T>(&view).to_vec()
        };
        readback.unmap();
        Ok(data)
    }

    /// Copies `len` elements of a storage buffer back to the host (one submit; for tests and small results).
    pub fn download<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<T>> {
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        let readback = self.buffer("download", bytes, BufferRole::Readback);
        let mut encoder =
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("download") });
        if bytes > 0 {
            encoder.copy_buffer_to_buffer(buffer, 0, &readback, 0, bytes);
        }
        let index = self.queue.submit([encoder.finish()]);
        self.read_mapped(&readback, len, Some(index))
    }

    /// Waits for all submitted work.
    pub fn wait(&self) -> Result<()> {
        self.wait_for(None)
    }

    /// Waits for one submission (and those before it), or for all when `None`.
    pub fn wait_for(&self, submission: Option<wgpu::SubmissionIndex>) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait { submission_index: submission, timeout: None })
            .map(|_| ())
            .map_err(|e| Error::Device(format!("waiting for the GPU: {e}")))
    }
}

/// Buffers kept from one recording to the next under a label (e.g. a linearisation's product scratch, re-used by
/// every J·V of an iteration instead of allocated each time); a request larger than the kept buffer replaces it.
#[derive(Default)]
pub struct ScratchPool {
    buffers: std::sync::Mutex<std::collections::HashMap<String, wgpu::Buffer>>,
}

impl ScratchPool {
    /// A storage buffer of at least `bytes` bytes under `label`.
    pub fn get(&self, ctx: &GpuContext, label: &str, bytes: u64) -> wgpu::Buffer {
        let mut buffers = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(buffer) = buffers.get(label).filter(|b| b.size() >= padded_size(bytes)) {
            return buffer.clone();
        }
        let buffer = ctx.buffer(label, bytes, BufferRole::Storage);
        buffers.insert(label.to_string(), buffer.clone());
        buffer
    }
}

/// Records the dispatches and copies of one chunk of work into one command encoder.
pub struct Recorder<'a> {
    ctx: &'a GpuContext,
    encoder: wgpu::CommandEncoder,
}

impl<'a> Recorder<'a> {
    pub fn new(ctx: &'a GpuContext, label: &str) -> Self {
        let encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        Recorder { ctx, encoder }
    }

    pub fn ctx(&self) -> &'a GpuContext {
        self.ctx
    }

    /// Binds `buffers` in the kernel's binding order (whole buffers) and dispatches `groups` workgroups.
    pub fn dispatch(&mut self, kernel: &Kernel, buffers: &[&wgpu::Buffer], groups: [u32; 3]) -> Result<()> {
        let expected = kernel.reflection.bindings.len();
        if buffers.len() != expected {
            return Err(Error::Kernel {
                kernel: kernel.name.into(),
                message: format!("{} buffers given for {expected} bindings", buffers.len()),
            });
        }
        let max = self.ctx.caps.max_workgroups_per_dimension();
        if groups.iter().any(|&g| g > max) {
            return Err(Error::Kernel {
                kernel: kernel.name.into(),
                message: format!("dispatch {groups:?} exceeds the device's {max} workgroups per dimension"),
            });
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let limit = self.ctx.caps.max_binding_bytes();
        if let Some((_, buffer)) = kernel
            .reflection
            .bindings
            .iter()
            .zip(buffers)
            .find(|((_, kind, _), b)| *kind != super::kernels::BindingKind::Uniform && b.size() > limit)
        {
            return Err(Error::Kernel {
                kernel: kernel.name.into(),
                message: format!("a {} B buffer exceeds the device's {limit} B storage binding limit", buffer.size()),
            });
        }
        let entries: Vec<wgpu::BindGroupEntry> = kernel
            .reflection
            .bindings
            .iter()
            .zip(buffers)
            .map(|((binding, _, _), buffer)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: buffer.as_entire_binding(),
            })
            .collect();
        let bind_group = self.ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name),
            layout: &kernel.layout,
            entries: &entries,
        });
        let mut pass = self
            .encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(kernel.name), timestamp_writes: None });
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        Ok(())
    }

    pub fn copy(&mut self, from: &wgpu::Buffer, to: &wgpu::Buffer, bytes: u64) {
        if bytes > 0 {
            self.encoder.copy_buffer_to_buffer(from, 0, to, 0, bytes);
        }
    }

    pub fn submit(self) -> wgpu::SubmissionIndex {
        self.ctx.queue.submit([self.encoder.finish()])
    }
}

/// Splits `count` workgroups into a 2-D grid that respects the per-dimension limit; returns (x, y).
pub fn grid_2d(count: u32, max_per_dimension: u32) -> (u32, u32) {
    if count <= max_per_dimension {
        return (count.max(1), 1);
    }
    let y = count.div_ceil(max_per_dimension);
    let x = count.div_ceil(y);
    (x, y)
}
