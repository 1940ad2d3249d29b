//! `scorelens kde --data DATA.npy --bandwidth S --x X.npy [--hessian] -o DIR`: log p, ∇log p (and ∇²log p) of the
//! Gaussian-smoothed data distribution at every row of X.

use std::path::{Path, PathBuf};

use clap::Args;
use scorelens::batch::check_rows;
use scorelens::field::{KdeField, KdeScale};
use scorelens::io::npy;
use scorelens::results::kde::kde;
use scorelens::scheduler::{JobOptions, Progress};
use scorelens::{Error, Result};

use super::inputs::{run_signature, Shard};
use super::progress::Bar;
use super::ComputeArgs;

/// --data DATA.npy --bandwidth S [--max-memory SIZE]: what every command on the smoothed data distribution takes.
#[derive(Args)]
pub struct KdeInputs {
    /// The data points x_1..x_N, a .npy of shape [N, D] (float32 or float64).
    #[arg(long, value_name = "DATA.npy")]
    pub data: PathBuf,
    /// The smoothing bandwidth σ > 0: p(x) = (1/N) Σ N(x; xᵢ, σ² I).
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub bandwidth: f64,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// The field on the GPU (on every device `--devices` names, rows split between them) with its memory budget.
pub struct KdeJob {
    pub fields: Vec<KdeField>,
    pub memory_budget: u64,
    #[allow(dead_code)] // the ridge summary now takes it from the field
    pub data_shape: Vec<usize>,
}

impl KdeJob {
    pub fn options<'a>(&self, progress: &'a dyn Progress) -> JobOptions<'a> {
        JobOptions { memory_budget: self.memory_budget, progress }
    }

    /// The field on the first device.
    pub fn field(&self) -> &KdeField {
        &self.fields[0]
    }
}

/// Reads a finite [rows, D] array; `role` names it in errors ("data", "X"); with `dim`, its D must be that of
/// the other file named.
pub fn read_rows(path: &Path, role: &str, dim: Option<(usize, &Path)>) -> Result<npy::Array> {
    let a = npy::read_f32(path)?;
    let what = format!("{} ({role})", path.display());
    let other = dim.map(|(d, other)| (d, other.display().to_string()));
    check_rows(&a.shape, &a.data, &what, other.as_ref().map(|(d, o)| (*d, o.as_str())))?;
    Ok(a)
}

impl KdeInputs {
    pub fn load(&self) -> Result<KdeJob> {
        let memory_budget = self.compute.memory_budget()?;
        if !(self.bandwidth > 0.0 && self.bandwidth.is_finite()) {
            return Err(Error::InvalidArgument(format!("--bandwidth {} must be a positive number", self.bandwidth)));
        }
        let data = read_rows(&self.data, "data", None)?;
        if data.shape[0] == 0 {
            return Err(Error::bad_input(format!("{} (data)", self.data.display()), "holds no data points"));
        }
        let dim = data.shape[1];
        let fields = self
            .compute
            .contexts()?
            .into_iter()
            .map(|ctx| KdeField::new(ctx, data.data.clone(), dim, KdeScale::bandwidth(self.bandwidth)))
            .collect::<Result<_>>()?;
        Ok(KdeJob { fields, memory_budget, data_shape: data.shape })
    }

    /// The query points, checked against the data's D.
    pub fn read_points(&self, path: &Path, dim: usize) -> Result<npy::Array> {
        read_rows(path, "X", Some((dim, &self.data)))
    }
}

#[derive(Args)]
pub struct KdeArgs {
    #[command(flatten)]
    pub inputs: KdeInputs,
    /// Query points X, a .npy of shape [B, D].
    #[arg(long = "x", value_name = "X.npy")]
    pub x: PathBuf,
    /// Also write hessian.npy [B, D, D].
    #[arg(long)]
    pub hessian: bool,
    /// Take only shard i of n of X's rows (0 ≤ i < n): its contiguous block; `scorelens merge` joins the folders.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Output folder (created if missing): log_density.npy [B], score.npy [B, D], hessian.npy [B, D, D].
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
}

pub fn run(args: &KdeArgs) -> Result<()> {
    let job = args.inputs.load()?;
    let x = args.inputs.read_points(&args.x, job.field().dim())?;
    let shard = Shard::of(args.shard.as_deref(), x.shape[0])?;
    let bar = Bar::new();
    let fields: Vec<&KdeField> = job.fields.iter().collect();
    let result = kde(&fields, &x.data, &shard, args.hessian, job.options(&bar), &run_signature())?;
    result.save(&args.output)
}
