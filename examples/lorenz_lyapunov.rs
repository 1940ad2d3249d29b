//! Lyapunov exponents of Lorenz-63 (with covariant vectors) or Lorenz-96, written as user WGSL fields, on the GPU.
//!
//!     cargo run --release --example lorenz_lyapunov [STEPS] [TRAJECTORIES] [D]
//!
//! Without D: Lorenz-63, 40,000 steps of dt = 0.005 after 2,000 transient ones, 16 trajectories by default. Known
//! values: 0.9056, 0, −14.5723 (sum −(σ + 1 + β) = −13.6667).
//!
//! With D: Lorenz-96 (F = 8) of dimension D, all D exponents (K = D), dt = 0.01 after 1,000 transient steps, a QR
//! every 10 steps. The exponents sum to −D exactly (the Jacobian's trace); for D = 40, λ₁ ≈ 1.68 with about 13
//! positive exponents (the literature's values).

use std::time::Instant;

use scorelens::analysis::lyapunov::{lyapunov, Dynamics, LyapunovSettings};
use scorelens::field::UserField;
use scorelens::scheduler::JobOptions;
use scorelens::{GpuContext, NoiseSchedule, ScoreField};

const LORENZ63: &str = include_str!("fields/lorenz63.wgsl");
const LORENZ96: &str = include_str!("fields/lorenz96.wgsl");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let steps: Option<usize> = args.next().and_then(|a| a.parse().ok());
    let trajectories: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    match args.next().and_then(|a| a.parse().ok()) {
        Some(d) => lorenz96(steps.unwrap_or(20_000), trajectories, d),
        None => lorenz63(steps.unwrap_or(40_000), trajectories),
    }
}

fn lorenz63(steps: usize, trajectories: usize) -> Result<(), Box<dyn std::error::Error>> {
    let field = ScoreField::User(UserField::from_source(
        GpuContext::shared()?,
        "lorenz63.wgsl",
        LORENZ63,
        3,
        NoiseSchedule::VeSong { sigma: 25.0 },
    )?);
    let x0: Vec<f32> = (0..trajectories).flat_map(|i| [1.0 + 0.1 * i as f32, 2.0, 20.0]).collect();
    let settings = LyapunovSettings { clv: true, ..LyapunovSettings::new(3) };
    let dynamics = Dynamics::Flow { dt: 0.005, steps, transient: 2_000, t: 1.0 };
    let run = lyapunov(&field, &x0, dynamics, settings, JobOptions::default())?;
    let mean = |values: &[f64], j: usize| values.iter().skip(j).step_by(3).sum::<f64>() / trajectories as f64;
    let exponents: Vec<f64> = (0..3).map(|j| mean(&run.exponents, j)).collect();
    println!(
        "time spanned {:.1}: exponents {:.4} {:.4} {:.4} (sum {:.5})",
        run.time_span,
        exponents[0],
        exponents[1],
        exponents[2],
        exponents.iter().sum::<f64>()
    );
    if let Some(clv) = &run.clv {
        println!("covariant vector 2 against the flow: mean |cos| = {:.5}", mean(&clv.alignment, 1));
    }
    Ok(())
}

fn lorenz96(steps: usize, trajectories: usize, d: usize) -> Result<(), Box<dyn std::error::Error>> {
    let field = ScoreField::User(UserField::from_source(
        GpuContext::shared()?,
        "lorenz96.wgsl",
        LORENZ96,
        d,
        NoiseSchedule::VeSong { sigma: 25.0 },
    )?);
    let x0: Vec<f32> =
        (0..trajectories).flat_map(|b| (0..d).map(move |i| 8.0 + (1.3 * i as f32 + b as f32).sin())).collect();
    let settings = LyapunovSettings { qr_every: 10, ..LyapunovSettings::new(d) };
    let dynamics = Dynamics::Flow { dt: 0.01, steps, transient: 1_000, t: 1.0 };
    let started = Instant::now();
    let run = lyapunov(&field, &x0, dynamics, settings, JobOptions::default())?;
    let seconds = started.elapsed().as_secs_f64();
    let mean: Vec<f64> =
        (0..d).map(|j| run.exponents.iter().skip(j).step_by(d).sum::<f64>() / trajectories as f64).collect();
    let positive = mean.iter().filter(|&&l| l > 0.0).count();
    println!(
        "Lorenz-96, D = K = {d}, {trajectories} trajectories × {steps} steps (time {:.0}) in {seconds:.1} s ({}): \
         λ1 {:.4}, {positive} positive, λ_D {:.4}, sum {:.5} (exact −{d})",
        run.time_span,
        run.propagator.name(),
        mean[0],
        mean[d - 1],
        mean.iter().sum::<f64>()
    );
    Ok(())
}
