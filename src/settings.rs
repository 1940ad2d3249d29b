//! Settings given as plain parameters (the command line's flags, the Python package's keywords), checked into the
//! library's types. Both faces call these, so they take the same defaults and refuse the same values; errors name
//! the parameter (`sigma_min`), which the command line maps to its flag (`--sigma-min`).

use crate::error::{Error, Result};
use crate::field::Smoothing;
use crate::model::NoiseSchedule;

/// The numbers of a noise schedule, each optional (its default when absent).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScheduleParameters {
    pub sigma: Option<f64>,
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    pub beta_min: Option<f64>,
    pub beta_max: Option<f64>,
}

fn positive(parameter: &str, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(Error::InvalidArgument(format!("{parameter} {value}: expected a positive number")))
    }
}

/// The noise process of a field that has no file to read it from (a user's WGSL field, the smoothed data):
/// `name` ve-song (the default; σ = 25 unless given, σ ≠ 1), ve (σ from 0.01 to 50) or vp (β from 0.1 to 20).
pub fn schedule(name: Option<&str>, p: ScheduleParameters) -> Result<NoiseSchedule> {
    match name.unwrap_or("ve-song") {
        "ve-song" => {
            let sigma = positive("sigma", p.sigma.unwrap_or(25.0))?;
            if sigma == 1.0 {
                return Err(Error::InvalidArgument("sigma 1: ve-song needs sigma ≠ 1".into()));
            }
            Ok(NoiseSchedule::VeSong { sigma })
        }
        "ve" => Ok(NoiseSchedule::Ve {
            sigma_min: positive("sigma_min", p.sigma_min.unwrap_or(0.01))?,
            sigma_max: positive("sigma_max", p.sigma_max.unwrap_or(50.0))?,
        }),
        "vp" => Ok(NoiseSchedule::Vp {
            beta_min: positive("beta_min", p.beta_min.unwrap_or(0.1))?,
            beta_max: positive("beta_max", p.beta_max.unwrap_or(20.0))?,
        }),
        other => Err(Error::InvalidArgument(format!("schedule {other:?}: expected ve-song, ve or vp"))),
    }
}

/// How the smoothed data is smoothed: by a fixed `bandwidth` σ > 0 (α = 1 at every t), or by the schedule.
pub fn smoothing(bandwidth: Option<f64>) -> Result<Smoothing> {
    match bandwidth {
        Some(s) => Ok(Smoothing::Bandwidth(positive("bandwidth", s)?)),
        None => Ok(Smoothing::Schedule),
    }
}

/// Checks data points for a smoothed field: [N, D] with N, D ≥ 1. Returns (N, D).
pub fn check_data(shape: &[usize], what: &str) -> Result<(usize, usize)> {
    if shape.len() != 2 || shape[0] == 0 || shape[1] == 0 {
        return Err(Error::bad_input(what, format!("shape {shape:?}; expected [N, D] data points")));
    }
    Ok((shape[0], shape[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_take_their_defaults_and_refuse_bad_numbers() {
        let none = ScheduleParameters::default();
        assert_eq!(schedule(None, none).unwrap(), NoiseSchedule::VeSong { sigma: 25.0 });
        assert_eq!(schedule(Some("ve"), none).unwrap(), NoiseSchedule::Ve { sigma_min: 0.01, sigma_max: 50.0 });
        let vp = schedule(Some("vp"), ScheduleParameters { beta_max: Some(10.0), ..none }).unwrap();
        assert_eq!(vp, NoiseSchedule::Vp { beta_min: 0.1, beta_max: 10.0 });
        let err = schedule(Some("ve"), ScheduleParameters { sigma_min: Some(-1.0), ..none }).unwrap_err();
        assert_eq!(err.to_string(), "invalid argument: sigma_min -1: expected a positive number");
        let err = schedule(None, ScheduleParameters { sigma: Some(1.0), ..none }).unwrap_err();
        assert!(err.to_string().ends_with("sigma 1: ve-song needs sigma ≠ 1"), "{err}");
        assert!(schedule(Some("edm"), none).unwrap_err().to_string().contains("schedule \"edm\": expected"));
        assert_eq!(smoothing(Some(0.5)).unwrap(), Smoothing::Bandwidth(0.5));
        assert!(smoothing(Some(f64::NAN)).is_err() && smoothing(Some(0.0)).is_err());
        assert_eq!(check_data(&[3, 2], "data").unwrap(), (3, 2));
        assert!(check_data(&[0, 2], "data").unwrap_err().to_string().contains("expected [N, D] data points"));
    }
}
