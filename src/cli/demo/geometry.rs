//! The data manifolds of the shipped models, known in closed form: their tangents and distances.
//!
//! Two moons (sklearn's make_moons, not standardised): the upper arc (cos θ, sin θ) and the lower arc
//! (1 − cos θ, 0.5 − sin θ), θ ∈ [0, π]: unit circles about (0, 0) and (1, 0.5). The circle: x = Q (cos θ, sin θ),
//! Q the 16×2 orthonormal frame shipped as `circle16_frame.npy`.

use std::f64::consts::PI;

pub(crate) struct KnownGeometry {
    /// Q, [16, 2] row-major.
    pub circle_frame: Vec<f64>,
}

/// (distance to the arc, unit tangent there) for a unit circle arc about `center` covering angles [lo, hi].
fn arc(p: (f64, f64), center: (f64, f64), lo: f64, hi: f64) -> (f64, (f64, f64)) {
    let (dx, dy) = (p.0 - center.0, p.1 - center.1);
    let angle = dy.atan2(dx);
    let clamped = if angle >= lo && angle <= hi {
        angle
    } else {
        // The nearer end of the arc.
        let gap = |a: f64| {
            let d = (angle - a).rem_euclid(2.0 * PI);
            d.min(2.0 * PI - d)
        };
        if gap(lo) < gap(hi) {
            lo
        } else {
            hi
        }
    };
    let on = (center.0 + clamped.cos(), center.1 + clamped.sin());
    let distance = ((p.0 - on.0).powi(2) + (p.1 - on.1).powi(2)).sqrt();
    (distance, (-clamped.sin(), clamped.cos()))
}

impl KnownGeometry {
    /// Distance from a 2-D point to the two moons and the unit tangent at the nearest point.
    pub fn moons(&self, p: &[f32]) -> (f64, Vec<f64>) {
        let p = (p[0] as f64, p[1] as f64);
        let upper = arc(p, (0.0, 0.0), 0.0, PI);
        let lower = arc(p, (1.0, 0.5), -PI, 0.0);
        let (d, t) = if upper.0 <= lower.0 { upper } else { lower };
        (d, vec![t.0, t.1])
    }

    /// Distance from a point in R^16 to the unit circle of the frame and the unit tangent at the nearest point.
    pub fn circle(&self, x: &[f32]) -> (f64, Vec<f64>) {
        let d = x.len();
        let q = &self.circle_frame;
        let a: Vec<f64> = (0..2).map(|c| (0..d).map(|r| q[r * 2 + c] * x[r] as f64).sum()).collect();
        let theta = a[1].atan2(a[0]);
        let on: Vec<f64> = (0..d).map(|r| q[r * 2] * theta.cos() + q[r * 2 + 1] * theta.sin()).collect();
        let distance = x.iter().zip(&on).map(|(&xi, oi)| (xi as f64 - oi).powi(2)).sum::<f64>().sqrt();
        let tangent = (0..d).map(|r| -q[r * 2] * theta.sin() + q[r * 2 + 1] * theta.cos()).collect();
        (distance, tangent)
    }

    /// The known manifold of a model, if it has one.
    pub fn of(&self, model: &str, x: &[f32]) -> Option<(f64, Vec<f64>)> {
        match model {
            "moons" => Some(self.moons(x)),
            "circle16" => Some(self.circle(x)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moons_points_lie_on_the_arcs() {
        let g = KnownGeometry { circle_frame: vec![] };
        for k in 0..20 {
            let th = PI * k as f64 / 19.0;
            let (d, t) = g.moons(&[th.cos() as f32, th.sin() as f32]);
            assert!(d < 1e-6 && (t[0] + th.sin()).abs() < 1e-6, "upper {k}");
            let (d, _) = g.moons(&[(1.0 - th.cos()) as f32, (0.5 - th.sin()) as f32]);
            assert!(d < 1e-6, "lower {k}");
        }
    }
}
