//! scorelens: the geometry a score-based generative model has learned, computed on any GPU with WGSL.
//!
//! Data flows one way: model file ([`model`]) → score field on the GPU ([`field`]) → results ([`io`]).
//! [`gpu`] owns the device, kernels and buffers; [`ops`] records single kernels; [`scheduler`] plans chunks that
//! fit the device; [`reference`] holds the f64 twins every kernel is tested against.

pub mod activation;
pub mod analysis;
pub mod batch;
pub mod derivative;
pub mod draws;
pub mod error;
pub mod field;
pub mod gpu;
pub mod graph;
pub mod io;
pub mod model;
pub mod ops;
pub mod reference;
pub mod results;
// Figures need the plotting crate, which only the `cli` feature brings.
#[cfg(feature = "cli")]
pub mod report;
pub mod sampler;
pub mod settings;
pub mod scheduler;
pub mod solver;

pub use activation::Activation;
pub use error::{Error, Result};
pub use field::ScoreField;
pub use gpu::{DeviceOptions, GpuContext};
pub use model::{NoiseSchedule, ScoreModel};
