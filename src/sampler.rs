//! Samplers of the reverse process for a field's noise schedule: reverse-SDE Euler–Maruyama, predictor–corrector
//! (Langevin corrector), and the probability-flow ODE by Euler, Heun and RK4.
//!
//! The time grid is Song's tutorial's: t_k = linspace(1, eps, steps), Δt = t_0 − t_1. With the reverse-time
//! velocity of the SDE, b(x, t) = g(t)² s(x, t) − f(x, t), and of the ODE, v(x, t) = ½ g(t)² s(x, t) − f(x, t):
//! - `em`: x ← x + b(x, t_k) Δt + g(t_k) √Δt z at every grid point; the last step adds no noise;
//! - `pc`: a Langevin corrector x ← x + ε s + √(2ε) z with ε = 2 (snr √D / ‖s‖)² (‖s‖ per sample, so a point's
//!   path does not depend on the rest of its batch; Song's tutorial averages ‖s‖ over the batch), then the EM step;
//! - `ode-euler`: x ← x + v(x, t_k) Δt at every grid point;
//! - `ode-heun`, `ode-rk4`: the classical steps of dx/dt = −v from t_k to t_{k+1} (steps − 1 steps ending at eps:
//!   their stages need the field between grid points, which past eps would leave (0, 1]).
//!
//! Scores are evaluated on the GPU for whole batches; the update, O(B·D), is done on the host in f64 so that the
//! noise draws, seeded, are the same on every adapter. Every row draws from its own generator, seeded by (seed,
//! the row's index in the whole run, the draw event: x_T, then each step's noise), so a row's path is the same
//! whatever batch, shard (`--shard`) or device (`--devices`) it runs in.

use rand_distr::{Distribution, StandardNormal};

use crate::error::{Error, Result};
use crate::field::{ScoreField, ScoreSource};
use crate::model::NoiseSchedule;
use crate::scheduler::{JobOptions, Silent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerKind {
    Em,
    Pc,
    OdeEuler,
    OdeHeun,
    OdeRk4,
}

impl SamplerKind {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "em" => SamplerKind::Em,
            "pc" => SamplerKind::Pc,
            "ode-euler" => SamplerKind::OdeEuler,
            "ode-heun" => SamplerKind::OdeHeun,
            "ode-rk4" => SamplerKind::OdeRk4,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "sampler {other:?}: expected em, pc, ode-euler, ode-heun or ode-rk4"
                )))
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            SamplerKind::Em => "em",
            SamplerKind::Pc => "pc",
            SamplerKind::OdeEuler => "ode-euler",
            SamplerKind::OdeHeun => "ode-heun",
            SamplerKind::OdeRk4 => "ode-rk4",
        }
    }

    pub fn is_stochastic(&self) -> bool {
        matches!(self, SamplerKind::Em | SamplerKind::Pc)
    }

    /// Whether the step uses the field between grid points (and so takes steps − 1 steps).
    pub fn is_multistage(&self) -> bool {
        matches!(self, SamplerKind::OdeHeun | SamplerKind::OdeRk4)
    }
}

/// Song's grid: t_k = linspace(1, eps, steps), Δt = t_0 − t_1.
#[derive(Debug, Clone)]
pub struct TimeGrid {
    pub times: Vec<f64>,
    pub dt: f64,
}

impl TimeGrid {
    pub fn new(steps: usize, eps: f64) -> Result<Self> {
        if steps < 2 {
            return Err(Error::InvalidArgument(format!("steps {steps}: need at least 2 grid points")));
        }
        if !(eps > 0.0 && eps < 1.0) {
            return Err(Error::InvalidArgument(format!("eps {eps}: expected 0 < eps < 1")));
        }
        let times: Vec<f64> = (0..steps).map(|k| 1.0 + (eps - 1.0) * k as f64 / (steps - 1) as f64).collect();
        let dt = times[0] - times[1];
        Ok(TimeGrid { times, dt })
    }

    /// The times at which a sampler of `kind` steps (its last step ends at eps for the multistage ones).
    pub fn step_times(&self, kind: SamplerKind) -> &[f64] {
        if kind.is_multistage() {
            &self.times[..self.times.len() - 1]
        } else {
            &self.times
        }
    }
}

/// Gaussian draws for the stochastic samplers; tests substitute recorded draws. `out` holds whole rows of
/// `row_len` values, the batch's rows in order; each call is one draw event (x_T, one step's noise, ...).
pub trait NoiseSource {
    fn fill(&mut self, out: &mut [f64], row_len: usize);
}

pub use crate::draws::{row_rng, stream};

/// Standard normal draws, row by row: the values of row r at draw event e (the e-th call to `fill`) come from
/// [`row_rng`]`(seed, SAMPLER_NOISE, first_row + r, e)`. A run split into blocks of rows draws, for each block,
/// from `SeededNoise::for_rows(seed, block start)` (or [`SeededNoise::offset_rows`] after shared events) and gets
/// the draws of the whole run.
#[derive(Debug, Clone)]
pub struct SeededNoise {
    seed: u64,
    first_row: usize,
    event: u64,
}

impl SeededNoise {
    pub fn new(seed: u64) -> Self {
        SeededNoise::for_rows(seed, 0)
    }

    /// Draws for a block of rows whose first row is row `first_row` of the whole run.
    pub fn for_rows(seed: u64, first_row: usize) -> Self {
        SeededNoise { seed, first_row, event: 0 }
    }

    /// The same source for the rows from `rows` further on, at the same draw event (a device's block of a batch
    /// whose x_T was drawn whole).
    pub fn offset_rows(&self, rows: usize) -> Self {
        SeededNoise { first_row: self.first_row + rows, ..self.clone() }
    }
}

impl NoiseSource for SeededNoise {
    fn fill(&mut self, out: &mut [f64], row_len: usize) {
        for (r, row) in out.chunks_mut(row_len.max(1)).enumerate() {
            let mut rng = row_rng(self.seed, stream::SAMPLER_NOISE, (self.first_row + r) as u64, self.event);
            for v in row {
                *v = StandardNormal.sample(&mut rng);
            }
        }
        self.event += 1;
    }
}

/// x_T: std(1)·z for VE schedules, z for VP (its marginal at t = 1), drawn from `noise`.
pub fn initial_points(field: &ScoreField, n: usize, noise: &mut dyn NoiseSource) -> Vec<f32> {
    let schedule = field.schedule();
    let scale = if schedule.drift_scale(1.0) != 0.0 { 1.0 } else { schedule.std(1.0) };
    let mut z = vec![0.0; n * field.dim()];
    noise.fill(&mut z, field.dim());
    z.iter().map(|&v| (scale * v) as f32).collect()
}

#[derive(Debug, Clone)]
pub struct SamplerConfig {
    pub kind: SamplerKind,
    pub steps: usize,
    pub eps: f64,
    /// The Langevin corrector's signal-to-noise ratio (`pc`).
    pub snr: f64,
    /// Record the iterate at the first grid time where std(t) ≤ each of these.
    pub record_sigmas: Vec<f64>,
}

impl SamplerConfig {
    pub fn new(kind: SamplerKind, steps: usize) -> Self {
        SamplerConfig { kind, steps, eps: 1e-3, snr: 0.16, record_sigmas: Vec::new() }
    }
}

/// The samples and, per recorded σ, the iterate and its grid time.
#[derive(Debug, Clone)]
pub struct SampleRun {
    pub samples: Vec<f32>,
    pub recorded: Vec<Vec<f32>>,
    pub recorded_t: Vec<f64>,
}

/// Reverse-time velocities at one time: b = g² s − f (SDE) or v = ½ g² s − f (ODE), with f = drift_scale · x.
#[derive(Debug, Clone, Copy)]
pub struct StepCoefficients {
    /// Multiplies s.
    pub score: f64,
    /// Multiplies x (−drift_scale).
    pub x: f64,
}

impl StepCoefficients {
    pub fn at(field: &ScoreField, t: f64, ode: bool) -> Self {
        StepCoefficients::of(&field.schedule(), t, ode)
    }

    /// The coefficients of a schedule at time t.
    pub fn of(schedule: &NoiseSchedule, t: f64, ode: bool) -> Self {
        let g2 = schedule.diffusion(t).powi(2);
        StepCoefficients { score: if ode { 0.5 * g2 } else { g2 }, x: -schedule.drift_scale(t) }
    }

    /// The velocity at (x, s).
    fn velocity(&self, x: f32, s: f32) -> f64 {
        self.score * s as f64 + self.x * x as f64
    }
}

/// Runs the sampler from `x_init` ([N, D]); stochastic samplers draw from `noise`. Any [`ScoreSource`]: a field,
/// or a field with a known error added ([`crate::field::Perturbed`]).
pub fn sample<F: ScoreSource + ?Sized>(
    field: &F,
    x_init: &[f32],
    config: &SamplerConfig,
    noise: &mut dyn NoiseSource,
    options: JobOptions,
) -> Result<SampleRun> {
    let d = field.dim();
    if x_init.is_empty() || x_init.len() % d != 0 {
        return Err(Error::bad_input("initial points", format!("{} values do not form rows of {d}", x_init.len())));
    }
    let grid = TimeGrid::new(config.steps, config.eps)?;
    let schedule = field.schedule();
    let last_std = schedule.std(*grid.times.last().unwrap_or(&1.0));
    for &sigma in &config.record_sigmas {
        if !(sigma >= last_std) {
            return Err(Error::InvalidArgument(format!(
                "record_sigmas {sigma}: below std(eps) = {last_std:.4e}, the smallest noise level the grid reaches"
            )));
        }
    }
    let inner = JobOptions { progress: &Silent, ..options };
    let mut x = x_init.to_vec();
    let mut run = SampleRun {
        samples: Vec::new(),
        recorded: vec![Vec::new(); config.record_sigmas.len()],
        recorded_t: vec![f64::NAN; config.record_sigmas.len()],
    };
    let times = grid.step_times(config.kind);
    let dt = grid.dt;
    let mut z = vec![0.0; x.len()];
    options.progress.start(config.kind.name(), times.len());
    for (k, &t) in times.iter().enumerate() {
        let std = schedule.std(t);
        for (r, &sigma) in config.record_sigmas.iter().enumerate() {
            if run.recorded[r].is_empty() && std <= sigma {
                run.recorded[r] = x.clone();
                run.recorded_t[r] = t;
            }
        }
        let last = k + 1 == times.len();
        let t32 = [t as f32];
        match config.kind {
            SamplerKind::Em | SamplerKind::Pc => {
                if config.kind == SamplerKind::Pc {
                    let s = field.score(&x, &t32, inner)?;
                    noise.fill(&mut z, d);
                    for (row, (xr, (sr, zr))) in x.chunks_mut(d).zip(s.chunks(d).zip(z.chunks(d))).enumerate() {
                        let norm = sr.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
                        if !(norm > 0.0 && norm.is_finite()) {
                            return Err(Error::bad_input(
                                "score",
                                format!("‖s‖ = {norm} at row {row}, t = {t}: the Langevin corrector needs a finite, nonzero score"),
                            ));
                        }
                        let step = 2.0 * (config.snr * (d as f64).sqrt() / norm).powi(2);
                        for i in 0..d {
                            xr[i] = (xr[i] as f64 + step * sr[i] as f64 + (2.0 * step).sqrt() * zr[i]) as f32;
                        }
                    }
                }
                let s = field.score(&x, &t32, inner)?;
                let c = StepCoefficients::of(&schedule, t, false);
                let g = schedule.diffusion(t);
                if !last {
                    noise.fill(&mut z, d);
                }
                for i in 0..x.len() {
                    let mean = x[i] as f64 + c.velocity(x[i], s[i]) * dt;
                    x[i] = if last { mean } else { mean + g * dt.sqrt() * z[i] } as f32;
                }
            }
            SamplerKind::OdeEuler => {
                let s = field.score(&x, &t32, inner)?;
                let c = StepCoefficients::of(&schedule, t, true);
                for i in 0..x.len() {
                    x[i] = (x[i] as f64 + c.velocity(x[i], s[i]) * dt) as f32;
                }
            }
            SamplerKind::OdeHeun | SamplerKind::OdeRk4 => {
                x = multistage_step(field, &x, t, dt, config.kind, inner)?;
            }
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::NotFinite {
                what: format!("sampler state at step {k} (t = {t:.4})"),
                row: i / d,
                value: x[i] as f64,
            });
        }
        options.progress.advance(1);
    }
    options.progress.finish();
    run.samples = x;
    Ok(run)
}

/// The stage times and weights of Heun's and the classical RK4 step from t to t − Δt: (offset of the stage
/// time in units of Δt, the stage's input as combinations of earlier stages, weight in the update).
pub fn tableau(kind: SamplerKind) -> (&'static [f64], &'static [&'static [f64]], &'static [f64]) {
    match kind {
        SamplerKind::OdeHeun => (&[0.0, 1.0], &[&[], &[1.0]], &[0.5, 0.5]),
        _ => (
            &[0.0, 0.5, 0.5, 1.0],
            &[&[], &[0.5], &[0.0, 0.5], &[0.0, 0.0, 1.0]],
            &[1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0],
        ),
    }
}

/// One Heun or RK4 step of dx/dt = −v(x, t) from t to t − Δt (written as x ← x + Δt Σ b_i v(stage_i)).
fn multistage_step<F: ScoreSource + ?Sized>(
    field: &F,
    x: &[f32],
    t: f64,
    dt: f64,
    kind: SamplerKind,
    options: JobOptions,
) -> Result<Vec<f32>> {
    let (offsets, a, b) = tableau(kind);
    let mut stages: Vec<Vec<f64>> = Vec::with_capacity(offsets.len());
    for (i, &offset) in offsets.iter().enumerate() {
        let ti = t - offset * dt;
        let xi: Vec<f32> = (0..x.len())
            .map(|e| (x[e] as f64 + dt * a[i].iter().zip(&stages).map(|(&aij, k)| aij * k[e]).sum::<f64>()) as f32)
            .collect();
        let s = field.score(&xi, &[ti as f32], options)?;
        let c = StepCoefficients::of(&field.schedule(), ti, true);
        stages.push(xi.iter().zip(&s).map(|(&xv, &sv)| c.velocity(xv, sv)).collect());
    }
    Ok((0..x.len())
        .map(|e| (x[e] as f64 + dt * b.iter().zip(&stages).map(|(&w, k)| w * k[e]).sum::<f64>()) as f32)
        .collect())
}
