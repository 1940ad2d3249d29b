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

/// Checks rows of points [rows, D] with D ≥ 1, all finite; with `same_dim` = (D, name), their D must be the D of
/// the array `name` (e.g. the data they are queried against). Returns D.
pub fn check_rows(shape: &[usize], data: &[f32], what: &str, same_dim: Option<(usize, &str)>) -> Result<usize> {
    if shape.len() != 2 || shape[1] == 0 {
        return Err(Error::bad_input(what, format!("shape {shape:?}; expected [rows, D] with D ≥ 1")));
    }
    if let Some((d, other)) = same_dim.filter(|&(d, _)| d != shape[1]) {
        return Err(Error::bad_input(what, format!("shape {shape:?} has D = {} but {other} has D = {d}", shape[1])));
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite { what: what.to_string(), row: i / shape[1], value: data[i] as f64 });
    }
    Ok(shape[1])
}

fn shape_text(shape: &[usize]) -> String {
    shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
}

/// The rows a run takes: shard `index` of `count` of the `total` rows of the whole input (contiguous blocks,
/// sizes differing by at most one), or all of them. A block's rows keep their global offset (`rows.start`): row r
/// of a shard is row `rows.start + r` of the whole run, so seeded draws and the rows of summaries match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The shard as given (`I/N`); None for a whole run (no manifest, `"shard": null` in summaries).
    pub spec: Option<String>,
    pub index: usize,
    pub count: usize,
    pub rows: std::ops::Range<usize>,
    pub total: usize,
}

impl Shard {
    /// All `total` rows.
    pub fn whole(total: usize) -> Shard {
        Shard { spec: None, index: 0, count: 1, rows: 0..total, total }
    }

    /// Shard `index` of `count` of `total` rows. A shard with no rows is refused: it would have nothing to write.
    pub fn new(index: usize, count: usize, total: usize) -> Result<Shard> {
        Shard::with_spec(format!("{index}/{count}"), index, count, total)
    }

    /// Shard `I/N` as text (the command line's `--shard I/N`), or all rows for None.
    pub fn parse(spec: Option<&str>, total: usize) -> Result<Shard> {
        let Some(spec) = spec else { return Ok(Shard::whole(total)) };
        let bad = || Error::InvalidArgument(format!("shard {spec:?}: expected I/N with 0 ≤ I < N, e.g. 0/4"));
        let (i, n) = spec.split_once('/').ok_or_else(bad)?;
        let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        Shard::with_spec(spec.to_string(), i, n, total)
    }

    fn with_spec(spec: String, index: usize, count: usize, total: usize) -> Result<Shard> {
        if count == 0 || index >= count {
            return Err(Error::InvalidArgument(format!("shard {spec:?}: expected I/N with 0 ≤ I < N, e.g. 0/4")));
        }
        let rows = block(index, count, total);
        if rows.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "shard {spec}: takes none of the {total} rows; use at most {total} shards"
            )));
        }
        Ok(Shard { spec: Some(spec), index, count, rows, total })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The shard's rows of `values` (all rows of the whole input), `per_row` values a row.
    pub fn slice<'a, T>(&self, values: &'a [T], per_row: usize) -> &'a [T] {
        &values[self.rows.start * per_row..self.rows.end * per_row]
    }

    /// The shard's fields for a summary.json.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({ "shard": self.spec, "rows": [self.rows.start, self.rows.end], "total_rows": self.total })
    }
}

/// Block `i` of `n` contiguous blocks of `0..total` (sizes differing by at most one): the one rule shards and
/// devices split rows by.
pub fn block(i: usize, n: usize, total: usize) -> std::ops::Range<usize> {
    i * total / n..(i + 1) * total / n
}

/// Runs `work(device, rows)` on contiguous blocks of `0..rows`, one per device, in parallel; with one device, on
/// all rows. Returns the blocks' results in row order (empty blocks, with more devices than rows, are skipped);
/// join them with the result type's `join`.
pub fn split_rows<D: Sync, T: Send>(
    devices: &[D],
    rows: usize,
    work: impl Fn(&D, std::ops::Range<usize>) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let n = devices.len();
    if n <= 1 {
        let device = devices.first().ok_or_else(|| Error::Device("no device to run on".into()))?;
        return Ok(vec![work(device, 0..rows)?]);
    }
    let blocks: Vec<std::ops::Range<usize>> = (0..n).map(|i| block(i, n, rows)).filter(|b| !b.is_empty()).collect();
    let parts: Vec<Result<T>> = std::thread::scope(|scope| {
        let handles: Vec<_> = devices
            .iter()
            .zip(blocks)
            .map(|(device, range)| {
                let work = &work;
                scope.spawn(move || work(device, range))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(Error::Device("a device's worker thread panicked".into()))))
            .collect()
    });
    parts.into_iter().collect()
}

/// A batch of points with their times, as every analysis of points takes it: `shape` [B, ...row], the values
/// row after row, and T as one value for all rows or one a row. Rows are the shard's (see [`Shard`]).
#[derive(Debug, Clone)]
pub struct Points {
    pub shape: Vec<usize>,
    pub x: Vec<f32>,
    pub t: Vec<f32>,
}

impl Points {
    /// Checked points and times (see [`check_points`], [`check_time_shape`], [`check_time_values`]); `x_what`
    /// and `t_what` name the arrays as the caller knows them.
    pub fn checked(
        shape: Vec<usize>,
        x: Vec<f32>,
        t: Vec<f32>,
        t_shape: &[usize],
        field: &ScoreField,
        x_what: &str,
        t_what: &str,
    ) -> Result<Points> {
        let rows = check_points(&shape, &x, field, x_what)?;
        check_time_shape(t_shape, rows, t_what)?;
        check_time_values(&t, t_what)?;
        Ok(Points { shape, x, t })
    }

    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(0)
    }

    /// The shard's rows of these (whole-input) points.
    pub fn take(mut self, shard: &Shard) -> Points {
        if shard.spec.is_some() {
            let per_row = self.x.len() / self.rows().max(1);
            self.x = shard.slice(&self.x, per_row).to_vec();
            if self.t.len() > 1 {
                self.t = self.t[shard.rows.clone()].to_vec();
            }
            self.shape[0] = shard.len();
        }
        self
    }

    /// Rows `rows` (of these points) as slices of X and T.
    pub fn block(&self, rows: std::ops::Range<usize>) -> (&[f32], &[f32]) {
        let per_row = self.x.len() / self.rows().max(1);
        let t = if self.t.len() == 1 { &self.t[..] } else { &self.t[rows.clone()] };
        (&self.x[rows.start * per_row..rows.end * per_row], t)
    }

    /// The time of row r.
    pub fn t_of(&self, r: usize) -> f32 {
        if self.t.len() == 1 {
            self.t[0]
        } else {
            self.t[r]
        }
    }
}

/// Runs `work(field, rows, x, t)` on contiguous blocks of the points' rows, one per field (each on its device, in
/// parallel), or on all of them with one field; the blocks' results in row order.
pub fn split_points<T: Send>(
    fields: &[&ScoreField],
    points: &Points,
    work: impl Fn(&ScoreField, std::ops::Range<usize>, &[f32], &[f32]) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    split_rows(fields, points.rows(), |field, range| {
        let (x, t) = points.block(range.clone());
        work(field, range, x, t)
    })
}
