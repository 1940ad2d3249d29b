//! Finite-difference Jacobian-vector products for any score field (see the module above for the step rule).
//!
//! Perturbed points x + k·h·v are formed in f64 and rounded to f32, evaluated as one batch through the field (which
//! splits it to fit the device), and combined in f64.

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

/// Host values per chunk of perturbed rows (bounds host memory, not device memory: the field splits its own work).
const ROWS_VALUES_PER_CHUNK: usize = 1 << 24;

/// J·v by finite differences for `per_point` directions per point (`v` [B, P, D]); with `richardson`, two steps
/// h and h/2 combined to cancel the leading truncation term.
#[allow(clippy::too_many_arguments)]
pub fn jvp(field: &ScoreField, x: &[f32], t: &[f32], v: &[f32], per_point: usize, stencil: Stencil, richardson: bool, options: JobOptions) -> Result<Vec<f32>> {
    let d = field.dim();
    let points = x.len() / d;
    let scales: &[f64] = if richardson { &[1.0, 0.5] } else { &[1.0] };
    let evaluations = stencil.taps().len() * scales.len();
    let points_per_chunk = (ROWS_VALUES_PER_CHUNK / (per_point * evaluations * d).max(1)).max(1);
    let mut out = vec![0f32; v.len()];
    let mut start = 0;
    while start < points {
        let chunk = start..(start + points_per_chunk).min(points);
        jvp_chunk(field, x, t, v, per_point, stencil, scales, chunk.clone(), &mut out, options)?;
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
            taps.iter().enumerate().map(|(tap, &(_, weight))| weight * block[s * per_estimate + tap * d + j] as f64).sum::<f64>() / hs
        };
        for (j, slot) in target.iter_mut().enumerate() {
            *slot = if scales.len() == 2 {
                // D(h/2) + (D(h/2) − D(h)) / (2^order − 1)
                let (coarse, fine) = (estimate(0, j), estimate(1, j));
                (fine + (fine - coarse) / (richardson - 1.0)) as f32
            } else {
                estimate(0, j) as f32
            };
        }
    }
    Ok(())
}

/// The Jacobian by central differences along the coordinate axes, [B, D, D] with row i = ∂s_i/∂x.
pub fn jacobian(field: &ScoreField, x: &[f32], t: &[f32], points: usize, options: JobOptions, mut sink: impl FnMut(Range<usize>, &[f32]) -> Result<()>) -> Result<()> {
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
