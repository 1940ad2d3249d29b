//! Tangent spaces of the known manifolds (two moons, the circle in R^16, the 2-sphere in R^16) at the nearest point
//! of the manifold, and the split of a vector into its tangent and normal parts there.

use super::geometry::KnownGeometry;

pub(crate) struct Manifolds<'a> {
    pub geometry: &'a KnownGeometry,
    /// The sphere's frame Q, [16, 3] row-major (`sphere16_frame.npy`).
    pub sphere_frame: Vec<f64>,
}

impl Manifolds<'_> {
    /// The manifold's dimension for a model with a known manifold.
    pub fn dimension(model: &str) -> Option<usize> {
        match model {
            "moons" | "circle16" => Some(1),
            "sphere16" => Some(2),
            _ => None,
        }
    }

    /// An orthonormal tangent basis (d vectors of length D) at the point of the manifold nearest to `x`.
    pub fn tangent_basis(&self, model: &str, x: &[f32]) -> Option<Vec<Vec<f64>>> {
        match model {
            "moons" | "circle16" => self.geometry.of(model, x).map(|(_, t)| vec![t]),
            "sphere16" => {
                let q = &self.sphere_frame;
                let dim = x.len();
                let mut u: Vec<f64> = (0..3).map(|c| (0..dim).map(|r| q[r * 3 + c] * x[r] as f64).sum()).collect();
                let norm = u.iter().map(|a| a * a).sum::<f64>().sqrt();
                if !(norm > 0.0) {
                    return None;
                }
                u.iter_mut().for_each(|a| *a /= norm);
                let theta = u[2].clamp(-1.0, 1.0).acos();
                let phi = u[1].atan2(u[0]);
                let e_theta = [theta.cos() * phi.cos(), theta.cos() * phi.sin(), -theta.sin()];
                let e_phi = [-phi.sin(), phi.cos(), 0.0];
                let lift = |e: [f64; 3]| (0..dim).map(|r| (0..3).map(|c| q[r * 3 + c] * e[c]).sum()).collect();
                Some(vec![lift(e_theta), lift(e_phi)])
            }
            _ => None,
        }
    }

    /// ‖P_T v‖² (the tangent part's energy) and ‖v‖² at the manifold point nearest to `x`.
    pub fn tangent_energy(&self, model: &str, x: &[f32], v: &[f64]) -> Option<(f64, f64)> {
        let basis = self.tangent_basis(model, x)?;
        let tangent: f64 = basis.iter().map(|b| b.iter().zip(v).map(|(p, q)| p * q).sum::<f64>().powi(2)).sum();
        Some((tangent, v.iter().map(|a| a * a).sum()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sphere_tangents_are_orthonormal_and_orthogonal_to_the_radius() {
        // Q = the first three axes of R^16.
        let mut q = vec![0.0; 48];
        for c in 0..3 {
            q[c * 3 + c] = 1.0;
        }
        let geometry = KnownGeometry { circle_frame: vec![] };
        let m = Manifolds { geometry: &geometry, sphere_frame: q };
        let mut x = vec![0f32; 16];
        x[0] = 0.3;
        x[1] = -0.5;
        x[2] = 0.8;
        x[7] = 0.2;
        let basis = m.tangent_basis("sphere16", &x).unwrap();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
        let radius: Vec<f64> = x.iter().enumerate().map(|(i, &v)| if i < 3 { v as f64 } else { 0.0 }).collect();
        assert!((dot(&basis[0], &basis[0]) - 1.0).abs() < 1e-12 && (dot(&basis[1], &basis[1]) - 1.0).abs() < 1e-12);
        assert!(dot(&basis[0], &basis[1]).abs() < 1e-12);
        assert!(dot(&basis[0], &radius).abs() < 1e-7 && dot(&basis[1], &radius).abs() < 1e-7);
        // An off-subspace direction has no tangent part; the tangent basis has all its energy there.
        let mut off = vec![0.0; 16];
        off[9] = 1.0;
        assert!(m.tangent_energy("sphere16", &x, &off).unwrap().0 < 1e-20);
        let (t, all) = m.tangent_energy("sphere16", &x, &basis[1]).unwrap();
        assert!((t / all - 1.0).abs() < 1e-12);
    }
}
