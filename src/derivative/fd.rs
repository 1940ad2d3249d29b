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
    let piecewise_linear = field.is_piecewise_linear() && !richardson;
    let scales: &[f64] = if richardson {
        &[1.0, 0.5]
    } else if piecewise_linear {
        &PIECEWISE_LINEAR_STEPS
    } else {
        &GUARDED_STEPS
    };
    let evaluations = stencil.taps().len() * scales.len();
    let points_per_chunk = (ROWS_VALUES_PER_CHUNK / (per_point * evaluations * d).max(1)).max(1);
    let mut out = vec![0f32; v.len()];
    let mut start = 0;
    while start < points {
        let chunk = start..(start + points_per_chunk).min(points);
        if piecewise_linear {
            piecewise_linear_chunk(field, x, t, v, per_point, stencil, chunk.clone(), &mut out, options)?;
        } else {
            jvp_chunk(field, x, t, v, per_point, stencil, scales, chunk.clone(), &mut out, options)?;
        }
        start = chunk.end;
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn jvp_chunk(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    v: &[f32],
    per_point: usize,
    stencil: Stencil,
    scales: &[f64],
    points: Range<usize>,
    out: &mut [f32],
    options: JobOptions,
) -> Result<()> {
    let d = field.dim();
    let taps = stencil.taps();
    let mut rows = Vec::new();
    let mut times = Vec::new();
    let mut steps = Vec::new();
    for p in points.clone() {
        let xp = &x[p * d..(p + 1) * d];
        for k in 0..per_point {
            let vk = &v[(p * per_point + k) * d..(p * per_point + k + 1) * d];
            let h = step(xp, vk, stencil);
            steps.push(h);
            for &scale in scales {
                for &(multiple, _) in taps {
                    let shift = multiple * h * scale;
                    rows.extend(xp.iter().zip(vk).map(|(&a, &b)| (a as f64 + shift * b as f64) as f32));
                    times.push(if t.len() == 1 { t[0] } else { t[p] });
                }
            }
        }
    }
    let values = field.score(&rows, &times, options)?;
    let per_estimate = taps.len() * d;
    let per_direction = per_estimate * scales.len();
    let richardson = 2f64.powi(stencil.order());
    for (i, &h) in steps.iter().enumerate() {
        let target = &mut out[(points.start * per_point + i) * d..(points.start * per_point + i + 1) * d];
        if h == 0.0 {
            target.fill(0.0);
            continue;
        }
        let block = &values[i * per_direction..(i + 1) * per_direction];
        let estimate = |s: usize, j: usize| -> f64 {
            let hs = h * scales[s];
            taps.iter()
                .enumerate()
                .map(|(tap, &(_, weight))| weight * block[s * per_estimate + tap * d + j] as f64)
                .sum::<f64>()
                / hs
        };
        if scales.len() == 2 {
            for (j, slot) in target.iter_mut().enumerate() {
                // D(h/2) + (D(h/2) − D(h)) / (2^order − 1)
                let (coarse, fine) = (estimate(0, j), estimate(1, j));
                *slot = (fine + (fine - coarse) / (richardson - 1.0)) as f32;
            }
        } else {
            let estimates: Vec<Vec<f64>> =
                (0..scales.len()).map(|s| (0..d).map(|j| estimate(s, j)).collect()).collect();
            let norm = |a: &[f64]| a.iter().map(|p| p * p).sum::<f64>().sqrt();
            let disagreement = |i: usize| {
                let difference: Vec<f64> = estimates[i].iter().zip(&estimates[i + 1]).map(|(p, q)| p - q).collect();
                norm(&difference) / norm(&estimates[i + 1]).max(f64::MIN_POSITIVE)
            };
            let chosen =
                (0..scales.len() - 1).min_by(|&a, &b| disagreement(a).total_cmp(&disagreement(b))).unwrap_or(0);
            for (slot, value) in target.iter_mut().zip(&estimates[chosen]) {
                *slot = *value as f32;
            }
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

/// J·v for piecewise-linear fields from one-sided differences: between kinks a one-sided difference is exact, so
/// each side keeps its most self-consistent step, and the two sides are averaged when they agree (no kink near x on
/// either side) or the more consistent side is kept when they do not.
#[allow(clippy::too_many_arguments)]
fn piecewise_linear_chunk(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    v: &[f32],
    per_point: usize,
    stencil: Stencil,
    points: Range<usize>,
    out: &mut [f32],
    options: JobOptions,
) -> Result<()> {
    let d = field.dim();
    let scales = &PIECEWISE_LINEAR_STEPS;
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
            rows.extend_from_slice(xp);
            times.push(tp);
            for &scale in scales {
                for sign in [1.0, -1.0] {
                    let shift = sign * h * scale;
                    rows.extend(xp.iter().zip(vk).map(|(&a, &b)| (a as f64 + shift * b as f64) as f32));
                    times.push(tp);
                }
            }
        }
    }
    let values = field.score(&rows, &times, options)?;
    let per_direction = (1 + 2 * scales.len()) * d;
    for (i, &h) in steps.iter().enumerate() {
        let target = &mut out[(points.start * per_point + i) * d..(points.start * per_point + i + 1) * d];
        if h == 0.0 {
            target.fill(0.0);
            continue;
        }
        let block = &values[i * per_direction..(i + 1) * per_direction];
        let at = |row: usize, j: usize| block[row * d + j] as f64;
        let side = |sign: f64| -> Vec<Vec<f64>> {
            scales
                .iter()
                .enumerate()
                .map(|(k, &scale)| {
                    let row = 1 + 2 * k + usize::from(sign < 0.0);
                    (0..d).map(|j| sign * (at(row, j) - at(0, j)) / (h * scale)).collect()
                })
                .collect()
        };
        let (forward, backward) = (side(1.0), side(-1.0));
        let ((kf, df), (kb, db)) = (most_consistent(&forward), most_consistent(&backward));
        let (f, b) = (&forward[kf], &backward[kb]);
        let agree = relative_distance(f, b) <= 2.0 * df.max(db) + 1e-6;
        for (j, slot) in target.iter_mut().enumerate() {
            *slot = if agree {
                0.5 * (f[j] + b[j])
            } else if df <= db {
                f[j]
            } else {
                b[j]
            } as f32;
        }
    }
    Ok(())
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
