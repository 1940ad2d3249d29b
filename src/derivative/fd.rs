//! Finite-difference Jacobian-vector products for any score field (see the module above for the step rule).
//!
//! Perturbed points x + k·h·v are formed in f64 and rounded to f32, evaluated as one batch through the field (which
//! splits it to fit the device), and combined in f64.
//!
//! Kinks: a ReLU network is piecewise linear, and a stencil that straddles a kink of one hidden unit can be off by
//! O(1). So each product is estimated at three steps (h, h/4, h/16), and of the two consecutive estimates that agree
//! best, the one with the larger step (less rounding error) is kept: away from kinks that is h, and where h
//! straddles a kink but h/4 does not, h/4. Piecewise-linear fields (ReLU networks) have no truncation error between
//! kinks: for them the one-sided differences (s(x ± h_k v) − s(x)) / ±h_k at h_k = h/4, h/16, h/64, h/256 are exact
//! on each side up to the nearest kink, so each side keeps its most self-consistent step and the sides are averaged
//! when they agree (see `piecewise_linear_chunk`). With `richardson` the steps
//! are h and h/2 instead, combined to cancel the leading truncation term (for smooth fields).

use std::ops::Range;

use crate::error::Result;
use crate::field::ScoreField;
use crate::scheduler::JobOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stencil {
    /// (s(x + hv) − s(x − hv)) / 2h; truncation error h²/6 · s'''.
    Central,
    /// (−s(x + 2hv) + 8 s(x + hv) − 8 s(x − hv) + s(x − 2hv)) / 12h; truncation error h⁴/30 · s⁽⁵⁾.
    FourthOrder,
}

impl Stencil {
    /// (multiple of h, weight) pairs; the result is Σ weight · s(x + k h v) / h.
    fn taps(self) -> &'static [(f64, f64)] {
        match self {
            Stencil::Central => &[(1.0, 0.5), (-1.0, -0.5)],
            Stencil::FourthOrder => &[(2.0, -1.0 / 12.0), (1.0, 8.0 / 12.0), (-1.0, -8.0 / 12.0), (-2.0, 1.0 / 12.0)],
        }
    }

    /// κ in h = κ · max(rms(x), 1) / rms(v): ε^{1/3} or ε^{1/5}, ε the float32 unit roundoff.
    pub fn kappa(self) -> f64 {
        let eps = f32::EPSILON as f64;
        match self {
            Stencil::Central => eps.cbrt(),
            Stencil::FourthOrder => eps.powf(0.2),
        }
    }

    fn order(self) -> i32 {
        match self {
            Stencil::Central => 2,
            Stencil::FourthOrder => 4,
        }
    }
}

fn rms(v: &[f32]) -> f64 {
    (v.iter().map(|&a| (a as f64).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt()
}

/// The step for one point and direction (0 when the direction is zero).
pub fn step(x: &[f32], v: &[f32], stencil: Stencil) -> f64 {
    let rv = rms(v);
    if rv == 0.0 {
        return 0.0;
    }
    stencil.kappa() * rms(x).max(1.0) / rv
}

/// The steps, as fractions of h, of the guarded estimate: for smooth fields and for piecewise-linear ones.
const GUARDED_STEPS: [f64; 3] = [1.0, 0.25, 0.0625];
const PIECEWISE_LINEAR_STEPS: [f64; 4] = [0.25, 0.0625, 0.015625, 0.00390625];

/// Host values per chunk of perturbed rows (bounds host memory, not device memory: the field splits its own work).
const ROWS_VALUES_PER_CHUNK: usize = 1 << 24;

/// J·v by finite differences for `per_point` directions per point (`v` [B, P, D]); with `richardson`, two steps
/// h and h/2 combined to cancel the leading truncation term.
#[allow(clippy::too_many_arguments)]
pub fn jvp(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    v: &[f32],
    per_point: usize,
    stencil: Stencil,
    richardson: bool,
    options: JobOptions,
) -> Result<Vec<f32>> {
    let d = field.dim();
    let points = x.len() / d;
    let rule = if richardson {
        Rule::Richardson { scales: [1.0, 0.5] }
    } else if field.is_piecewise_linear() {
        Rule::OneSided { scales: &PIECEWISE_LINEAR_STEPS }
    } else {
        Rule::Guarded { scales: &GUARDED_STEPS }
    };
    let multiples = rule.multiples(stencil);
    let points_per_chunk = (ROWS_VALUES_PER_CHUNK / (per_point * multiples.len() * d).max(1)).max(1);
    let mut out = vec![0f32; v.len()];
    let mut start = 0;
    while start < points {
        let chunk = start..(start + points_per_chunk).min(points);
        let block_out = &mut out[chunk.start * per_point * d..chunk.end * per_point * d];
        evaluate(
            field,
            x,
            t,
            v,
            per_point,
            stencil,
            &multiples,
            chunk.clone(),
            options,
            block_out,
            |values, h, target| rule.combine(stencil, values, h, d, target),
        )?;
        start = chunk.end;
    }
    Ok(out)
}

/// How the evaluations of one direction become its estimate.
enum Rule {
    /// The stencil at h·scales; the larger step of the best-agreeing consecutive pair.
    Guarded { scales: &'static [f64] },
    /// The stencil at h and h/2, extrapolated.
    Richardson { scales: [f64; 2] },
    /// s(x) and s(x ± h·scale) for one-sided differences (piecewise-linear fields).
    OneSided { scales: &'static [f64] },
}

impl Rule {
    /// The multiples of h at which s(x + m h v) is evaluated, in the order `combine` reads them.
    fn multiples(&self, stencil: Stencil) -> Vec<f64> {
        match self {
            Rule::Guarded { scales } => {
                scales.iter().flat_map(|s| stencil.taps().iter().map(move |(m, _)| m * s)).collect()
            }
            Rule::Richardson { scales } => {
                scales.iter().flat_map(|s| stencil.taps().iter().map(move |(m, _)| m * s)).collect()
            }
            Rule::OneSided { scales } => std::iter::once(0.0).chain(scales.iter().flat_map(|s| [*s, -*s])).collect(),
        }
    }

    /// Writes the estimate of J·v from `values` (the evaluations of one direction, `multiples` × D).
    fn combine(&self, stencil: Stencil, values: &[f32], h: f64, d: usize, target: &mut [f32]) {
        let at = |row: usize, j: usize| values[row * d + j] as f64;
        let taps = stencil.taps();
        let stencil_estimates = |scales: &[f64]| -> Vec<Vec<f64>> {
            scales
                .iter()
                .enumerate()
                .map(|(s, scale)| {
                    (0..d)
                        .map(|j| {
                            taps.iter()
                                .enumerate()
                                .map(|(tap, (_, weight))| weight * at(s * taps.len() + tap, j))
                                .sum::<f64>()
                                / (h * scale)
                        })
                        .collect()
                })
                .collect()
        };
        match self {
            Rule::Guarded { scales } => {
                let estimates = stencil_estimates(scales);
                let (chosen, _) = most_consistent(&estimates);
                write(target, &estimates[chosen]);
            }
            Rule::Richardson { scales } => {
                // D(h/2) + (D(h/2) − D(h)) / (2^order − 1)
                let estimates = stencil_estimates(scales);
                let factor = 2f64.powi(stencil.order()) - 1.0;
                let combined: Vec<f64> = estimates[0]
                    .iter()
                    .zip(&estimates[1])
                    .map(|(coarse, fine)| fine + (fine - coarse) / factor)
                    .collect();
                write(target, &combined);
            }
            Rule::OneSided { scales } => {
                let side = |sign: f64| -> Vec<Vec<f64>> {
                    scales
                        .iter()
                        .enumerate()
                        .map(|(k, scale)| {
                            let row = 1 + 2 * k + usize::from(sign < 0.0);
                            (0..d).map(|j| sign * (at(row, j) - at(0, j)) / (h * scale)).collect()
                        })
                        .collect()
                };
                let (forward, backward) = (side(1.0), side(-1.0));
                let ((kf, df), (kb, db)) = (most_consistent(&forward), most_consistent(&backward));
                let (f, b) = (&forward[kf], &backward[kb]);
                let estimate: Vec<f64> = if relative_distance(f, b) <= 2.0 * df.max(db) + 1e-6 {
                    f.iter().zip(b).map(|(p, q)| 0.5 * (p + q)).collect()
                } else if df <= db {
                    f.clone()
                } else {
                    b.clone()
                };
                write(target, &estimate);
            }
        }
    }
}

fn write(target: &mut [f32], values: &[f64]) {
    for (slot, value) in target.iter_mut().zip(values) {
        *slot = *value as f32;
    }
}

/// Evaluates s(x + m·h·v) for every point of `points`, each of its directions and every multiple m, as one batch,
/// and hands each direction's values and step to `combine`, which writes its estimate into `out` (the chunk's
/// [points, P, D] block). Zero directions give zero.
#[allow(clippy::too_many_arguments)]
fn evaluate(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    v: &[f32],
    per_point: usize,
    stencil: Stencil,
    multiples: &[f64],
    points: Range<usize>,
    options: JobOptions,
    out: &mut [f32],
    combine: impl Fn(&[f32], f64, &mut [f32]),
) -> Result<()> {
    let d = field.dim();
    let mut rows = Vec::new();
    let mut times = Vec::new();
    let mut steps = Vec::new();
    for p in points.clone() {
        let xp = &x[p * d..(p + 1) * d];
        let tp = if t.len() == 1 { t[0] } else { t[p] };
        for k in 0..per_point {
            let vk = &v[(p * per_point + k) * d..(p * per_point + k + 1) * d];
            let h = step(xp, vk, stencil);
            steps.push(h);
            for &multiple in multiples {
                let shift = multiple * h;
                rows.extend(xp.iter().zip(vk).map(|(&a, &b)| (a as f64 + shift * b as f64) as f32));
                times.push(tp);
            }
        }
    }
    let values = field.score(&rows, &times, options)?;
    let per_direction = multiples.len() * d;
    for (i, &h) in steps.iter().enumerate() {
        let target = &mut out[i * d..(i + 1) * d];
        if h == 0.0 {
            target.fill(0.0);
        } else {
            combine(&values[i * per_direction..(i + 1) * per_direction], h, target);
        }
    }
    Ok(())
}

fn norm(a: &[f64]) -> f64 {
    a.iter().map(|p| p * p).sum::<f64>().sqrt()
}

/// ‖a − b‖ / ‖b‖.
fn relative_distance(a: &[f64], b: &[f64]) -> f64 {
    let difference: Vec<f64> = a.iter().zip(b).map(|(p, q)| p - q).collect();
    norm(&difference) / norm(b).max(f64::MIN_POSITIVE)
}

/// Of estimates at decreasing steps, the one with the larger step of the best-agreeing consecutive pair, and that
/// pair's disagreement.
fn most_consistent(estimates: &[Vec<f64>]) -> (usize, f64) {
    (0..estimates.len() - 1)
        .map(|k| (k, relative_distance(&estimates[k], &estimates[k + 1])))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0))
}

/// The Jacobian by central differences along the coordinate axes, [B, D, D] with row i = ∂s_i/∂x.
pub fn jacobian(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    points: usize,
    options: JobOptions,
    mut sink: impl FnMut(Range<usize>, &[f32]) -> Result<()>,
) -> Result<()> {
    let d = field.dim();
    let evaluations = Stencil::Central.taps().len();
    let points_per_chunk = (ROWS_VALUES_PER_CHUNK / (d * evaluations * d).max(1)).max(1);
    let mut identity = vec![0f32; d * d];
    for i in 0..d {
        identity[i * d + i] = 1.0;
    }
    let mut start = 0;
    while start < points {
        let chunk = start..(start + points_per_chunk).min(points);
        let c = chunk.len();
        let xs = &x[chunk.start * d..chunk.end * d];
        let ts: Vec<f32> = if t.len() == 1 { t.to_vec() } else { t[chunk.clone()].to_vec() };
        let v: Vec<f32> = (0..c).flat_map(|_| identity.iter().copied()).collect();
        // Row j of each point's block is J e_j, column j of J: transpose into row-major J.
        let columns = jvp(field, xs, &ts, &v, d, Stencil::Central, false, options)?;
        let mut j = vec![0f32; c * d * d];
        for p in 0..c {
            for col in 0..d {
                for row in 0..d {
                    j[p * d * d + row * d + col] = columns[p * d * d + col * d + row];
                }
            }
        }
        sink(chunk.clone(), &j)?;
        start = chunk.end;
    }
    Ok(())
}
