//! A user WGSL field: compile it, score a batch and take exact Jacobian-vector products from its `field_jvp`.
//!
//!     cargo run --release --example user_field [FIELD.wgsl DIM]
//!
//! Without arguments it uses examples/fields/lorenz63.wgsl (D = 3).

use std::path::PathBuf;

use scorelens::derivative::{jvp, JvpMethod};
use scorelens::field::UserField;
use scorelens::scheduler::JobOptions;
use scorelens::{GpuContext, NoiseSchedule, ScoreField};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let path = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/fields/lorenz63.wgsl"));
    let dim: usize = args.next().and_then(|a| a.to_str()?.parse().ok()).unwrap_or(3);
    let schedule = NoiseSchedule::VeSong { sigma: 25.0 };
    let field = ScoreField::User(UserField::from_file(GpuContext::shared()?, &path, dim, schedule)?);

    let rows = 5;
    let x: Vec<f32> = (0..rows * dim).map(|i| (i as f32 * 0.37).sin() * 10.0).collect();
    let s = field.score(&x, &[1.0], JobOptions::default())?;
    // J·v with v = x (for Lorenz-63, quadratic, this differs from s by the quadratic terms).
    let method = if scorelens::derivative::has_exact_jvp(&field) { JvpMethod::Exact } else { JvpMethod::Fd4 };
    let jv = jvp(&field, &x, &[1.0], &x, method, false, JobOptions::default())?;
    for r in 0..rows {
        println!(
            "x = {:?}\n  field = {:?}\n  J·x   = {:?}",
            &x[r * dim..(r + 1) * dim],
            &s[r * dim..(r + 1) * dim],
            &jv[r * dim..(r + 1) * dim]
        );
    }
    Ok(())
}
