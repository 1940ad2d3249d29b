//! `score`, `jvp`, `vjp`, `jacobian` and `divergence`: one float32 array a run, its first axis the batch's rows,
//! written as the command line's `-o OUT.npy`. Each runs on a batch of points ([`Points`], the shard's rows
//! already taken) spread over one field per device, the blocks joined along the rows.
//!
//! The method a caller leaves open is chosen here, as the command line chooses it: the exact derivative where
//! the field has one, finite differences (with a warning in the log) where it does not. An exact method asked
//! of a field without it is refused, naming the parameter `method`.

use std::path::Path;

use ndarray::ArrayD;

use super::{array, write_f32, ArrayRef, NamedArrays};
use crate::batch::{split_points, Points};
use crate::derivative::{self, has_exact_jvp, has_exact_vjp, DivergenceMethod, JacobianMethod, JvpMethod};
use crate::error::{Error, Result};
use crate::field::ScoreField;
use crate::io::npy;
use crate::scheduler::JobOptions;

macro_rules! pointwise_result {
    ($(#[$doc:meta])* $name:ident, $field:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            pub $field: ArrayD<f32>,
        }

        impl $name {
            /// The array, named as the command line's output (one file, `-o OUT.npy`).
            pub fn arrays(&self) -> NamedArrays<'_> {
                vec![(stringify!($field), ArrayRef::F32(&self.$field))]
            }

            /// Writes the array as the .npy file `path`, whole or not at all.
            pub fn save(&self, path: &Path) -> Result<()> {
                write_f32(path, &self.$field)
            }
        }
    };
}

pointwise_result!(
    /// s(x, t) at every row: X's shape.
    ScoreResult,
    score
);
pointwise_result!(
    /// J·v at every row: V's shape ([B, ...] or [B, P, ...] for P directions a point).
    JvpResult,
    jvp
);
pointwise_result!(
    /// Jᵀ·u at every row: U's shape.
    VjpResult,
    vjp
);
pointwise_result!(
    /// ∂s/∂x at every row: [B, D, D], row i holding ∂s_i/∂x (torch.func.jacrev's layout, flattened).
    JacobianResult,
    jacobian
);
pointwise_result!(
    /// tr J at every row: [B] (computed in f64, kept as float32 like the command line's file).
    DivergenceResult,
    divergence
);

/// Directions for a batch (V for J·v, U for Jᵀ·u): X's shape, or [B, P, ...row] for P per point, all finite,
/// the same rows as the points (a shard's rows taken alike, see [`Directions::take`]).
#[derive(Debug, Clone)]
pub struct Directions {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl Directions {
    /// Checked directions for points of shape `x_shape` (see [`crate::batch::check_directions`]); `what` names
    /// the array as the caller knows it.
    pub fn checked(
        shape: Vec<usize>,
        values: Vec<f32>,
        x_shape: &[usize],
        field: &ScoreField,
        what: &str,
    ) -> Result<Directions> {
        crate::batch::check_directions(&shape, &values, x_shape, field, what)?;
        Ok(Directions { shape, values })
    }

    fn per_row(&self) -> usize {
        self.values.len() / self.shape.first().copied().unwrap_or(1).max(1)
    }

    /// The shard's rows of these (whole-input) directions.
    pub fn take(mut self, shard: &crate::batch::Shard) -> Directions {
        if shard.spec.is_some() {
            self.values = shard.slice(&self.values, self.per_row()).to_vec();
            self.shape[0] = shard.len();
        }
        self
    }

    fn block(&self, rows: &std::ops::Range<usize>) -> &[f32] {
        let per_row = self.per_row();
        &self.values[rows.start * per_row..rows.end * per_row]
    }
}

fn first<'f>(fields: &[&'f ScoreField]) -> Result<&'f ScoreField> {
    fields.first().copied().ok_or_else(|| Error::Device("no device to run on".into()))
}

fn no_exact(method: &str) -> Error {
    Error::InvalidArgument(format!(
        "method {method}: this model has no such exact derivative in this build yet; use a finite-difference method"
    ))
}

/// The J·v method to run: `requested`, refused if exact and the field has no exact J·v; None takes the exact one
/// where there is one, else fourth-order differences.
pub fn jvp_method(field: &ScoreField, requested: Option<JvpMethod>) -> Result<JvpMethod> {
    match requested {
        Some(JvpMethod::Exact) if !has_exact_jvp(field) => Err(no_exact("exact")),
        Some(method) => Ok(method),
        None if has_exact_jvp(field) => Ok(JvpMethod::Exact),
        None => {
            log::warn!("no exact JVP for this model yet: using fourth-order finite differences");
            Ok(JvpMethod::Fd4)
        }
    }
}

/// The Jacobian method to run: `requested`, refused if forward (reverse) and the field has no exact J·v (Jᵀ·u);
/// None takes forward mode where there is one, else central differences.
pub fn jacobian_method(field: &ScoreField, requested: Option<JacobianMethod>) -> Result<JacobianMethod> {
    match requested {
        Some(JacobianMethod::Forward) if !has_exact_jvp(field) => Err(no_exact("forward")),
        Some(JacobianMethod::Reverse) if !has_exact_vjp(field) => Err(no_exact("reverse")),
        Some(method) => Ok(method),
        None if has_exact_jvp(field) => Ok(JacobianMethod::Forward),
        None => {
            log::warn!("no exact Jacobian for this model yet: using central finite differences");
            Ok(JacobianMethod::Fd)
        }
    }
}

/// Blocks of rows (row-major values) joined in row order, the batch axis being each array's first, as an array
/// of `shape`.
fn joined(blocks: Vec<Vec<f32>>, shape: &[usize]) -> Result<ArrayD<f32>> {
    array(shape, blocks.concat())
}

/// The score at every row of `points`.
pub fn score(fields: &[&ScoreField], points: &Points, options: JobOptions) -> Result<ScoreResult> {
    first(fields)?;
    let blocks = split_points(fields, points, |field, _, x, t| field.score(x, t, options))?;
    Ok(ScoreResult { score: joined(blocks, &points.shape)? })
}

/// J·v at every row of `points` for directions `v` (see [`jvp_method`] for `method`); `richardson` combines two
/// finite-difference steps.
pub fn jvp(
    fields: &[&ScoreField],
    points: &Points,
    v: &Directions,
    method: Option<JvpMethod>,
    richardson: bool,
    options: JobOptions,
) -> Result<JvpResult> {
    let method = jvp_method(first(fields)?, method)?;
    let blocks = split_points(fields, points, |field, rows, x, t| {
        derivative::jvp(field, x, t, v.block(&rows), method, richardson, options)
    })?;
    Ok(JvpResult { jvp: joined(blocks, &v.shape)? })
}

/// Jᵀ·u at every row of `points` for cotangents `u`: exact where the field has reverse mode, else from a
/// finite-difference Jacobian (slow; with a warning in the log).
pub fn vjp(fields: &[&ScoreField], points: &Points, u: &Directions, options: JobOptions) -> Result<VjpResult> {
    if !has_exact_vjp(first(fields)?) {
        log::warn!("no exact VJP for this field: using Jᵀu from a finite-difference Jacobian (slow)");
    }
    let blocks = split_points(fields, points, |field, rows, x, t| {
        let u = u.block(&rows);
        if has_exact_vjp(field) {
            derivative::vjp(field, x, t, u, options)
        } else {
            vjp_from_fd_jacobian(field, x, t, u, options)
        }
    })?;
    Ok(VjpResult { vjp: joined(blocks, &u.shape)? })
}

/// Jᵀ·u from the central-difference Jacobian, summed in f64.
fn vjp_from_fd_jacobian(field: &ScoreField, x: &[f32], t: &[f32], u: &[f32], options: JobOptions) -> Result<Vec<f32>> {
    let d = field.dim();
    let points = x.len() / d;
    let per_point = u.len() / (points * d).max(1);
    let mut out = vec![0f32; u.len()];
    derivative::jacobian(field, x, t, JacobianMethod::Fd, options, |range, j| {
        for (local, p) in range.enumerate() {
            let jp = &j[local * d * d..(local + 1) * d * d];
            for q in 0..per_point {
                let row = (p * per_point + q) * d;
                for c in 0..d {
                    out[row + c] = (0..d).map(|i| jp[i * d + c] as f64 * u[row + i] as f64).sum::<f64>() as f32;
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// The Jacobian at every row of `points` (see [`jacobian_method`] for `method`).
pub fn jacobian(
    fields: &[&ScoreField],
    points: &Points,
    method: Option<JacobianMethod>,
    options: JobOptions,
) -> Result<JacobianResult> {
    let d = first(fields)?.dim();
    let method = jacobian_method(first(fields)?, method)?;
    let blocks = split_points(fields, points, |field, _, x, t| {
        let mut block = Vec::with_capacity(x.len() * d);
        derivative::jacobian(field, x, t, method, options, |_, values| {
            block.extend_from_slice(values);
            Ok(())
        })?;
        Ok(block)
    })?;
    Ok(JacobianResult { jacobian: joined(blocks, &[points.rows(), d, d])? })
}

/// [`jacobian`] written straight into the .npy file `path` as chunks finish (whole or not at all), so a batch
/// whose Jacobians do not fit in host memory together still runs on one device; with several devices the blocks
/// are joined in memory first.
pub fn save_jacobian(
    path: &Path,
    fields: &[&ScoreField],
    points: &Points,
    method: Option<JacobianMethod>,
    options: JobOptions,
) -> Result<()> {
    if fields.len() > 1 {
        return jacobian(fields, points, method, options)?.save(path);
    }
    let field = first(fields)?;
    let d = field.dim();
    let method = jacobian_method(field, method)?;
    let mut writer = npy::StreamWriter::create(path, &[points.rows(), d, d])?;
    derivative::jacobian(field, &points.x, &points.t, method, options, |_, values| writer.write(values))?;
    writer.finish()
}

/// The divergence at every row of `points`, whose first row is row `first_row` of the whole run (the shard's
/// first): Hutchinson's probes are drawn per row from (seed, its row in the whole run), so shards and devices
/// draw as one run does.
pub fn divergence(
    fields: &[&ScoreField],
    points: &Points,
    first_row: usize,
    method: DivergenceMethod,
    options: JobOptions,
) -> Result<DivergenceResult> {
    first(fields)?;
    let blocks = split_points(fields, points, |field, rows, x, t| {
        let values = derivative::divergence_rows(field, x, t, first_row + rows.start, method, options)?;
        Ok(values.into_iter().map(|v| v as f32).collect())
    })?;
    Ok(DivergenceResult { divergence: joined(blocks, &[points.rows()])? })
}
