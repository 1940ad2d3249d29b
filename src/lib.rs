//! scorelens: the geometry a score-based generative model has learned, computed on any GPU with WGSL.
//!
//! Data flows one way: model file ([`model`]) → score field on the GPU ([`field`]) → typed results
//! ([`results`]). An embedding program needs what this root re-exports: load a [`ScoreModel`], put it on a
//! [`GpuContext`] as a [`ScoreField`], take a batch of [`Points`] (the rows of a [`Shard`]), and call an analysis
//! in [`results`]; each returns one result type with its arrays by name (`arrays()`) and the command line's files
//! (`save`). [`settings`] checks plain parameters (a schedule's numbers, a bandwidth) into the library's types.
//!
//! Below that: [`analysis`] and [`derivative`] compute on batches of rows given as slices, [`solver`] holds the
//! matrix-free eigensolvers on a [`solver::operator::BatchOperator`] (an extension point: any batch of linear
//! operators), [`scheduler`] plans chunks that fit the device, [`gpu`] owns the device and its options. [`ops`]
//! (single kernels) and [`reference`] (the f64 twins every kernel is tested against) are internals, public only
//! for the integration tests and benches that check them; they are not part of the API.

mod activation;
pub mod analysis;
pub mod batch;
pub mod derivative;
pub(crate) mod draws;
pub mod error;
pub mod field;
pub mod gpu;
pub mod graph;
pub mod io;
pub mod model;
#[doc(hidden)]
pub mod ops;
#[doc(hidden)]
pub mod reference;
pub mod results;
// Figures need the plotting crate, which only the `cli` feature brings.
#[cfg(feature = "cli")]
pub mod report;
pub mod sampler;
pub mod scheduler;
pub mod settings;
pub mod solver;

pub use activation::Activation;
pub use batch::{Points, Shard};
pub use derivative::{DivergenceMethod, JacobianMethod, JvpMethod};
pub use error::{Error, Result};
pub use field::{KdeField, KdeScale, ScoreField};
pub use gpu::{DeviceOptions, GpuContext};
pub use model::{NoiseSchedule, ScoreModel};
pub use results::{
    DescriptorsResult, DivergenceResult, JacobianResult, JvpResult, KdeResult, LyapunovResult, PhaseTable,
    RidgeErrorResult, RidgeResult, SampleResult, ScoreResult, SpectrumResult, VjpResult,
};
pub use sampler::{SamplerConfig, SamplerKind};
pub use scheduler::{JobOptions, Progress};
