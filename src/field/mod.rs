//! Score fields on the GPU: a model's weights resident on the device, evaluated over batches of points.

pub(crate) mod chunked;
pub mod graph;
pub mod kde;
pub mod perturbed;
pub mod smoothed;
pub mod user;

use std::sync::Arc;

pub use graph::GraphField;
pub use kde::{KdeField, KdeOutputs, KdePath, KdeScale};
pub use perturbed::{ErrorTerm, Perturbed, RandomFeatureError, ScoreSource};
pub use smoothed::{SmoothedData, Smoothing};
pub use user::UserField;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::model::ScoreModel;
use crate::scheduler::JobOptions;

/// Checks a batch before it reaches the GPU: X holds whole rows of `dim` finite entries, T has one entry per row
/// or one for all, every t finite and in (0, 1]. Errors name the first bad row.
pub fn validate_batch(x: &[f32], dim: usize, t: &[f32], x_name: &str, t_name: &str) -> Result<usize> {
    if dim == 0 || x.len() % dim != 0 {
        return Err(Error::bad_input(x_name, format!("{} values do not form rows of {dim}", x.len())));
    }
    let rows = x.len() / dim;
    if t.len() != 1 && t.len() != rows {
        return Err(Error::bad_input(
            t_name,
            format!("has {} entries, expected {rows} (one per row of X) or 1", t.len()),
        ));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite { what: x_name.into(), row: i / dim, value: x[i] as f64 });
    }
    if let Some(i) = t.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite { what: t_name.into(), row: i, value: t[i] as f64 });
    }
    if let Some(i) = t.iter().position(|&v| !(v > 0.0 && v <= 1.0)) {
        return Err(Error::bad_input(t_name, format!("t = {} at row {i} is outside (0, 1]", t[i])));
    }
    Ok(rows)
}

/// A score field whose parameters live on the GPU.
pub enum ScoreField {
    /// Any network as a graph: ONNX imports and the built-in architectures.
    Graph(GraphField),
    /// A user's WGSL field.
    User(UserField),
    /// The score of the smoothed training data (exact: the log-density gradient of the KDE).
    Smoothed(SmoothedData),
}

impl ScoreField {
    /// The model on the graph engine: ONNX networks as imported, the built-in architectures through their graph
    /// builders (crate::graph::builtin).
    pub fn new(ctx: Arc<GpuContext>, model: &ScoreModel) -> Result<Self> {
        Ok(ScoreField::Graph(GraphField::new(ctx, crate::graph::builtin::network(model)?)?))
    }

    pub fn dim(&self) -> usize {
        match self {
            ScoreField::Graph(f) => f.network().dim(),
            ScoreField::User(f) => f.dim(),
            ScoreField::Smoothed(f) => f.dim(),
        }
    }

    /// The shape of one input row ([D], or [C, H, W] for images).
    pub fn row_shape(&self) -> Vec<usize> {
        match self {
            ScoreField::Graph(f) => f.network().row_shape.clone(),
            ScoreField::User(f) => vec![f.dim()],
            ScoreField::Smoothed(f) => vec![f.dim()],
        }
    }

    /// The GPU this field lives on.
    pub fn ctx(&self) -> &GpuContext {
        match self {
            ScoreField::Graph(f) => f.ctx(),
            ScoreField::User(f) => f.ctx(),
            ScoreField::Smoothed(f) => f.ctx(),
        }
    }

    /// s(x, t) for every row of `x` (row-major, `dim` entries a row); `t` has one entry per row or one for all.
    pub fn score(&self, x: &[f32], t: &[f32], options: JobOptions) -> Result<Vec<f32>> {
        match self {
            ScoreField::Graph(f) => f.score(x, t, options),
            ScoreField::User(f) => f.score(x, t, options),
            ScoreField::Smoothed(f) => f.score(x, t, options),
        }
    }

    /// The model's noise schedule (std(t), α(t), g(t)).
    pub fn schedule(&self) -> crate::model::NoiseSchedule {
        match self {
            ScoreField::Graph(f) => f.network().schedule,
            ScoreField::User(f) => f.schedule(),
            ScoreField::Smoothed(f) => f.schedule(),
        }
    }

    /// Whether s is piecewise linear in x (ReLU networks): finite differences then have no truncation error
    /// between kinks.
    pub fn is_piecewise_linear(&self) -> bool {
        match self {
            ScoreField::Graph(f) => f.network().is_piecewise_linear(),
            ScoreField::User(_) | ScoreField::Smoothed(_) => false,
        }
    }

    pub fn parameter_count(&self) -> usize {
        match self {
            ScoreField::Graph(f) => f.network().parameters,
            ScoreField::User(_) | ScoreField::Smoothed(_) => 0,
        }
    }

    /// FLOPs of one forward pass of one row (unknown, NaN, for user fields).
    pub fn flops_per_row(&self) -> f64 {
        match self {
            ScoreField::Graph(f) => f.network().flops_per_row(),
            ScoreField::User(_) => f64::NAN,
            // Distances, weights and the weighted sum over the N points.
            ScoreField::Smoothed(f) => 5.0 * (f.len() * f.dim()) as f64,
        }
    }
}
