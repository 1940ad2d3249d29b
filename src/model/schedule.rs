//! The forward noise processes of model-format.md: `ve-song`, `ve`, `vp`, all in f64.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NoiseSchedule {
    /// Song's tutorial: std(t) = sqrt((σ^{2t} − 1) / (2 ln σ)), g(t) = σ^t, f = 0.
    VeSong { sigma: f64 },
    /// std(t) = σ_min (σ_max/σ_min)^t, g(t) = std(t) sqrt(2 ln(σ_max/σ_min)), f = 0.
    Ve { sigma_min: f64, sigma_max: f64 },
    /// β(t) = β_min + t (β_max − β_min), α(t) = exp(−½∫₀ᵗβ), std = sqrt(1 − α²), f = −½β x, g = sqrt(β).
    Vp { beta_min: f64, beta_max: f64 },
}

impl NoiseSchedule {
    pub fn name(&self) -> &'static str {
        match self {
            NoiseSchedule::VeSong { .. } => "ve-song",
            NoiseSchedule::Ve { .. } => "ve",
            NoiseSchedule::Vp { .. } => "vp",
        }
    }

    /// The standard deviation of the perturbation kernel at time t.
    pub fn std(&self, t: f64) -> f64 {
        match *self {
            NoiseSchedule::VeSong { sigma } => ((sigma.powf(2.0 * t) - 1.0) / (2.0 * sigma.ln())).sqrt(),
            NoiseSchedule::Ve { sigma_min, sigma_max } => sigma_min * (sigma_max / sigma_min).powf(t),
            // 1 − α² = −expm1(−∫β), which stays accurate for small t.
            NoiseSchedule::Vp { .. } => (-(-self.beta_integral(t)).exp_m1()).sqrt(),
        }
    }

    /// The mean scaling α(t) of x_0 (1 for the VE schedules).
    pub fn alpha(&self, t: f64) -> f64 {
        match self {
            NoiseSchedule::Vp { .. } => (-0.5 * self.beta_integral(t)).exp(),
            _ => 1.0,
        }
    }

    /// The diffusion coefficient g(t) of the forward SDE.
    pub fn diffusion(&self, t: f64) -> f64 {
        match *self {
            NoiseSchedule::VeSong { sigma } => sigma.powf(t),
            NoiseSchedule::Ve { sigma_min, sigma_max } => self.std(t) * (2.0 * (sigma_max / sigma_min).ln()).sqrt(),
            NoiseSchedule::Vp { beta_min, beta_max } => (beta_min + t * (beta_max - beta_min)).sqrt(),
        }
    }

    /// The drift coefficient: f(x, t) = drift_scale(t) · x (0 for VE, −½β(t) for VP).
    pub fn drift_scale(&self, t: f64) -> f64 {
        match *self {
            NoiseSchedule::Vp { beta_min, beta_max } => -0.5 * (beta_min + t * (beta_max - beta_min)),
            _ => 0.0,
        }
    }

    fn beta_integral(&self, t: f64) -> f64 {
        match *self {
            NoiseSchedule::Vp { beta_min, beta_max } => beta_min * t + 0.5 * t * t * (beta_max - beta_min),
            _ => 0.0,
        }
    }
}

impl fmt::Display for NoiseSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NoiseSchedule::VeSong { sigma } => write!(f, "ve-song (sigma {sigma})"),
            NoiseSchedule::Ve { sigma_min, sigma_max } => {
                write!(f, "ve (sigma_min {sigma_min}, sigma_max {sigma_max})")
            }
            NoiseSchedule::Vp { beta_min, beta_max } => {
                write!(f, "vp (beta_min {beta_min}, beta_max {beta_max})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ve_song_std_matches_the_closed_form() {
        let s = NoiseSchedule::VeSong { sigma: 25.0 };
        // sqrt((25 - 1) / (2 ln 25)) at t = 0.5
        let expected = ((25f64 - 1.0) / (2.0 * 25f64.ln())).sqrt();
        assert!((s.std(0.5) - expected).abs() < 1e-14);
        assert!((s.diffusion(1.0) - 25.0).abs() < 1e-12);
    }

    #[test]
    fn vp_std_and_alpha_are_consistent() {
        let s = NoiseSchedule::Vp { beta_min: 0.1, beta_max: 20.0 };
        for t in [1e-4, 0.01, 0.3, 1.0] {
            let (a, sd) = (s.alpha(t), s.std(t));
            assert!((a * a + sd * sd - 1.0).abs() < 1e-13, "t={t}");
        }
        // Small t: 1 − α² = 1 − e^{−I} ≈ I(1 − I/2), I = β_min t + ½ t² (β_max − β_min); no cancellation.
        let t = 1e-6f64;
        let integral = 0.1 * t + 0.5 * t * t * 19.9;
        let expected = (integral * (1.0 - integral / 2.0)).sqrt();
        assert!((s.std(t) / expected - 1.0).abs() < 1e-12, "{} vs {expected}", s.std(t));
    }

    #[test]
    fn ve_geometric() {
        let s = NoiseSchedule::Ve { sigma_min: 0.01, sigma_max: 50.0 };
        assert!((s.std(0.0) - 0.01).abs() < 1e-15);
        assert!((s.std(1.0) - 50.0).abs() < 1e-12);
    }
}
