//! `scorelens jvp | vjp | jacobian | divergence MODEL --x X.npy --t T ...`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use scorelens::derivative::{self, has_exact_jvp, has_exact_vjp, DivergenceMethod, JacobianMethod, JvpMethod};
use scorelens::io::npy;
use scorelens::scheduler::JobOptions;
use scorelens::{Error, Result, ScoreField};

use super::inputs::{read_directions, ModelInputs};
use super::progress::Bar;

#[derive(Clone, Copy, ValueEnum)]
pub enum JvpChoice {
    Exact,
    Fd,
    Fd4,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum JacobianChoice {
    Forward,
    Reverse,
    Fd,
}

#[derive(Args)]
pub struct JvpArgs {
    #[command(flatten)]
    pub inputs: ModelInputs,
    /// Directions V, X's shape ([B, ...]), or [B, P, ...] for P directions per point.
    #[arg(long = "v", value_name = "V.npy")]
    pub v: PathBuf,
    /// exact (forward mode; the default where the model has it), fd (central differences) or fd4 (fourth order).
    #[arg(long, value_enum)]
    pub method: Option<JvpChoice>,
    /// Combine two finite-difference steps to cancel the leading error term (smooth fields).
    #[arg(long)]
    pub richardson: bool,
    /// Output .npy (float32, V's shape).
    #[arg(short = 'o', long = "output", value_name = "OUT.npy")]
    pub output: PathBuf,
}

#[derive(Args)]
pub struct VjpArgs {
    #[command(flatten)]
    pub inputs: ModelInputs,
    /// Cotangents U, X's shape ([B, ...]), or [B, Q, ...] for Q cotangents per point.
    #[arg(long = "u", value_name = "U.npy")]
    pub u: PathBuf,
    /// Output .npy (float32, U's shape).
    #[arg(short = 'o', long = "output", value_name = "OUT.npy")]
    pub output: PathBuf,
}

#[derive(Args)]
pub struct JacobianArgs {
    #[command(flatten)]
    pub inputs: ModelInputs,
    /// forward (D JVPs per point), reverse (D VJPs per point) or fd; default forward where exact products exist.
    #[arg(long, value_enum)]
    pub method: Option<JacobianChoice>,
    /// Output .npy: float32 [B, D, D], row i holding ∂s_i/∂x (torch.func.jacrev's layout, flattened).
    #[arg(short = 'o', long = "output", value_name = "J.npy")]
    pub output: PathBuf,
}

#[derive(Args)]
pub struct DivergenceArgs {
    #[command(flatten)]
    pub inputs: ModelInputs,
    /// Hutchinson's estimator with this many Rademacher probes per point (default: the exact trace).
    #[arg(long)]
    pub probes: Option<usize>,
    /// Seed of the probes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output .npy: float32 [B].
    #[arg(short = 'o', long = "output", value_name = "OUT.npy")]
    pub output: PathBuf,
}

fn require(available: bool, what: &str) -> Result<()> {
    if available {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{what}: this model has no such exact derivative in this build yet; use a finite-difference method"
        )))
    }
}

pub fn run_jvp(args: &JvpArgs) -> Result<()> {
    let job = args.inputs.load()?;
    let v = read_directions(&args.v, "V", &job)?;
    let method = match args.method {
        Some(JvpChoice::Exact) => {
            require(has_exact_jvp(&job.field), "--method exact")?;
            JvpMethod::Exact
        }
        Some(JvpChoice::Fd) => JvpMethod::Fd,
        Some(JvpChoice::Fd4) => JvpMethod::Fd4,
        None if has_exact_jvp(&job.field) => JvpMethod::Exact,
        None => {
            log::warn!("no exact JVP for this model yet: using fourth-order finite differences");
            JvpMethod::Fd4
        }
    };
    let bar = Bar::new();
    let per_row = v.data.len() / job.x.rows.max(1);
    let out = job.map_rows(per_row, |field, rows, x, t| {
        let v = &v.data[rows.start * per_row..rows.end * per_row];
        derivative::jvp(field, x, t, v, method, args.richardson, job.options(&bar))
    })?;
    npy::write_f32(&args.output, &v.shape, &out)
}

pub fn run_vjp(args: &VjpArgs) -> Result<()> {
    let job = args.inputs.load()?;
    let u = read_directions(&args.u, "U", &job)?;
    let bar = Bar::new();
    let per_row = u.data.len() / job.x.rows.max(1);
    if !has_exact_vjp(&job.field) {
        log::warn!("no exact VJP for this field: using Jᵀu from a finite-difference Jacobian (slow)");
    }
    let out = job.map_rows(per_row, |field, rows, x, t| {
        let u = &u.data[rows.start * per_row..rows.end * per_row];
        if has_exact_vjp(field) {
            derivative::vjp(field, x, t, u, job.options(&bar))
        } else {
            vjp_from_fd_jacobian(field, x, t, u, job.options(&bar))
        }
    })?;
    npy::write_f32(&args.output, &u.shape, &out)
}

fn vjp_from_fd_jacobian(field: &ScoreField, x: &[f32], t: &[f32], u: &[f32], options: JobOptions) -> Result<Vec<f32>> {
    let d = field.dim();
    let points = x.len() / d;
    let per_point = u.len() / (points * d);
    let mut out = vec![0f32; u.len()];
    derivative::jacobian(field, x, t, JacobianMethod::Fd, options, |range, j| {
        for (local, p) in range.enumerate() {
            let jp = &j[local * d * d..(local + 1) * d * d];
            for q in 0..per_point {
                let row = (p * per_point + q) * d;
                for c in 0..d {
                    out[row + c] = (0..d).map(|i| jp[i * d + c] as f64 * u[row + i] as f64).sum::<f64>() as f32;
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

pub fn run_jacobian(args: &JacobianArgs) -> Result<()> {
    let job = args.inputs.load()?;
    let method = match args.method {
        Some(JacobianChoice::Forward) => {
            require(has_exact_jvp(&job.field), "--method forward")?;
            JacobianMethod::Forward
        }
        Some(JacobianChoice::Reverse) => {
            require(has_exact_vjp(&job.field), "--method reverse")?;
            JacobianMethod::Reverse
        }
        Some(JacobianChoice::Fd) => JacobianMethod::Fd,
        None if has_exact_jvp(&job.field) => JacobianMethod::Forward,
        None => {
            log::warn!("no exact Jacobian for this model yet: using central finite differences");
            JacobianMethod::Fd
        }
    };
    let d = job.field.dim();
    let mut writer = npy::StreamWriter::create(&args.output, &[job.x.rows, d, d])?;
    let bar = Bar::new();
    if job.devices.len() > 1 {
        let values = job.map_rows(d * d, |field, _, x, t| {
            let mut block = Vec::new();
            derivative::jacobian(field, x, t, method, job.options(&bar), |_, values| {
                block.extend_from_slice(values);
                Ok(())
            })?;
            Ok(block)
        })?;
        writer.write(&values)?;
    } else {
        let field = job.devices.first().unwrap_or(&job.field);
        derivative::jacobian(field, &job.x.data, &job.t, method, job.options(&bar), |_, values| writer.write(values))?;
    }
    writer.finish()
}

pub fn run_divergence(args: &DivergenceArgs) -> Result<()> {
    let job = args.inputs.load()?;
    let bar = Bar::new();
    // Probes are drawn per row (keyed by the row's index in the whole input), so device blocks and shards draw
    // as the whole run does.
    let out = job.map_rows(1, |field, rows, x, t| {
        let method = match args.probes {
            Some(probes) => {
                DivergenceMethod::Hutchinson { probes, seed: args.seed, first_row: job.shard.rows.start + rows.start }
            }
            None => DivergenceMethod::Exact,
        };
        let values = derivative::divergence(field, x, t, method, job.options(&bar))?;
        Ok(values.into_iter().map(|v| v as f32).collect())
    })?;
    let out32: Vec<f32> = out.iter().map(|&v| v as f32).collect();
    npy::write_f32(&args.output, &[job.x.rows], &out32)
}
