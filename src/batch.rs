//! Checking a batch before any GPU work: the points X, the times T and the directions V or U against a field's
//! row shape. The command line (arrays from `.npy` files) and the Python package (NumPy arrays) both check here,
//! so a wrong shape reads the same in either; `what` names the array as the caller knows it (a file, an argument).

use crate::error::{Error, Result};
use crate::field::ScoreField;

/// Checks that points X fit the field, shape [B, ...row_shape] or [B, D] (flattened rows), all finite.
/// Returns B.
pub fn check_points(shape: &[usize], data: &[f32], field: &ScoreField, what: &str) -> Result<usize> {
    let row_shape = field.row_shape();
    let dim = field.dim();
    let what = what.to_string();
    if shape.len() < 2 {
        return Err(Error::bad_input(
            what,
            format!("shape {shape:?}; expected [B, {}] (a batch of rows)", shape_text(&row_shape)),
        ));
    }
    let per_row: usize = shape[1..].iter().product();
    if shape[1..] != row_shape[..] && !(shape.len() == 2 && per_row == dim) {
        return Err(Error::bad_input(
            what,
            format!(
                "shape {shape:?} does not match the model: one row must be [{}] ({dim} values), got {:?}",
                shape_text(&row_shape),
                &shape[1..]
            ),
        ));
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite { what, row: i / dim, value: data[i] as f64 });
    }
    Ok(shape[0])
}

/// Checks an array of times T against B rows: shape [B] (one t per row), [1] or [] (one for all).
pub fn check_time_shape(shape: &[usize], rows: usize, what: &str) -> Result<()> {
    let len: usize = shape.iter().product();
    let ok_shape = (shape.len() == 1 && (len == rows || len == 1)) || (shape.is_empty() && len == 1);
    if !ok_shape {
        return Err(Error::bad_input(
            what,
            format!("shape {shape:?}; expected [{rows}] (one t per row of X) or a single value"),
        ));
    }
    Ok(())
}

/// Checks the values of T: finite, each in (0, 1].
pub fn check_time_values(values: &[f32], what: &str) -> Result<()> {
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite { what: what.to_string(), row: i, value: values[i] as f64 });
    }
    if let Some(i) = values.iter().position(|&v| !(v > 0.0 && v <= 1.0)) {
        return Err(Error::bad_input(what, format!("t = {} at row {i} is outside (0, 1]", values[i])));
    }
    Ok(())
}

/// Checks directions (V for J·v, U for Jᵀ·u) for points of shape `x_shape`: X's shape, or [B, P, ...row_shape]
/// or [B, P, D] for P directions per point; all finite.
pub fn check_directions(
    shape: &[usize],
    data: &[f32],
    x_shape: &[usize],
    field: &ScoreField,
    what: &str,
) -> Result<()> {
    let row_shape = field.row_shape();
    let dim = field.dim();
    let rows = x_shape.first().copied().unwrap_or(0);
    let per_point_ok = shape.first() == Some(&rows) && shape.len() >= 2 && {
        let tail = &shape[1..];
        tail == &x_shape[1..] || (tail.len() >= 2 && (tail[1..] == row_shape[..] || tail[1..] == [dim]))
    };
    if !per_point_ok {
        return Err(Error::bad_input(
            what,
            format!("shape {shape:?}; expected X's shape {x_shape:?} or [{rows}, P, {dim}] (P directions per point)"),
        ));
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite { what: what.to_string(), row: i / (data.len() / rows), value: data[i] as f64 });
    }
    Ok(())
}

fn shape_text(shape: &[usize]) -> String {
    shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
}
