//! Everything that touches wgpu directly: the context, kernels, buffers and command recording.

mod buffers;
mod context;
pub mod kernels;
mod options;

pub use buffers::{grid_2d, BufferRole, Recorder, ScratchPool};
pub use context::{
    contexts_for, list_adapters, request_coop_matrix, AdapterSummary, Capabilities, GpuContext, ADAPTER_ENV,
    COOP_MATRIX_ENV, SUBGROUPS_ENV,
};
pub use kernels::{Kernel, KERNELS};
pub use options::{AdapterChoice, DeviceOptions};
