//! Lyapunov exponents and covariant vectors of Lorenz-63, written as a user WGSL field, on the GPU.
//!
//!     cargo run --release --example lorenz_lyapunov [STEPS] [TRAJECTORIES]
//!
//! Defaults: 40,000 steps of dt = 0.005 after 2,000 transient ones, 16 trajectories. Known values: 0.9056, 0,
//! −14.5723 (sum −(σ + 1 + β) = −13.6667).

use scorelens::analysis::lyapunov::{lyapunov, Dynamics, LyapunovSettings};
use scorelens::field::UserField;
use scorelens::scheduler::JobOptions;
use scorelens::{GpuContext, NoiseSchedule, ScoreField};

const LORENZ: &str = include_str!("fields/lorenz63.wgsl");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let steps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(40_000);
    let trajectories: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let field = ScoreField::User(UserField::from_source(
        GpuContext::shared()?,
        "lorenz63.wgsl",
        LORENZ,
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
