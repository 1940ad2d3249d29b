//! Reading the inputs every computing command shares: MODEL, --x, --t.

use std::path::Path;

use scorelens::io::npy;
use scorelens::{Error, Result, ScoreModel};

/// X as rows of the model's input: shape [B, ...row_shape] or [B, D] (flattened rows).
pub struct Points {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub rows: usize,
}

pub fn read_points(path: &Path, model: &ScoreModel) -> Result<Points> {
    let x = npy::read_f32(path)?;
    let row_shape = model.row_shape();
    let dim = model.dim();
    let what = format!("{} (X)", path.display());
    if x.shape.len() < 2 {
        return Err(Error::bad_input(what, format!("shape {:?}; expected [B, {}] (a batch of rows)", x.shape, shape_text(&row_shape))));
    }
    let per_row: usize = x.shape[1..].iter().product();
    if x.shape[1..] != row_shape[..] && !(x.shape.len() == 2 && per_row == dim) {
        return Err(Error::bad_input(
            what,
            format!("shape {:?} does not match the model: one row must be [{}] ({dim} values), got {:?}", x.shape, shape_text(&row_shape), &x.shape[1..]),
        ));
    }
    let rows = x.shape[0];
    if let Some(i) = x.data.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite { what: format!("{} (X)", path.display()), row: i / dim, value: x.data[i] as f64 });
    }
    Ok(Points { shape: x.shape, data: x.data, rows })
}

fn shape_text(shape: &[usize]) -> String {
    shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
}

/// T: one number for all rows, or a .npy of shape [B] (or a single value).
pub fn read_times(arg: &str, rows: usize) -> Result<Vec<f32>> {
    let (values, what): (Vec<f32>, String) = match arg.trim().parse::<f64>() {
        Ok(v) => (vec![v as f32], format!("--t {arg}")),
        Err(_) => {
            let path = Path::new(arg);
            let t = npy::read_f32(path)?;
            let what = format!("{} (T)", path.display());
            let len = t.data.len();
            let ok_shape = (t.shape.len() == 1 && (len == rows || len == 1)) || (t.shape.is_empty() && len == 1);
            if !ok_shape {
                return Err(Error::bad_input(what, format!("shape {:?}; expected [{rows}] (one t per row of X) or a single value", t.shape)));
            }
            (t.data, what)
        }
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite { what, row: i, value: values[i] as f64 });
    }
    if let Some(i) = values.iter().position(|&v| !(v > 0.0 && v <= 1.0)) {
        return Err(Error::bad_input(what, format!("t = {} at row {i} is outside (0, 1]", values[i])));
    }
    Ok(values)
}
