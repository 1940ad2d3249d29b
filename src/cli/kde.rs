//! `scorelens kde --data DATA.npy --bandwidth S --x X.npy [--hessian] -o DIR`: log p, ∇log p (and ∇²log p) of the
//! Gaussian-smoothed data distribution at every row of X.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use scorelens::field::{KdeField, KdeOutputs, KdeScale};
use scorelens::io::npy;
use scorelens::scheduler::{JobOptions, Progress};
use scorelens::{Error, Result};

use super::inputs::{split_rows, Shard};
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

/// Reads a finite [rows, D] array; `role` names it in errors ("data", "X").
pub fn read_rows(path: &Path, role: &str, dim: Option<(usize, &Path)>) -> Result<npy::Array> {
    let a = npy::read_f32(path)?;
    let what = format!("{} ({role})", path.display());
    if a.shape.len() != 2 || a.shape[1] == 0 {
        return Err(Error::bad_input(what, format!("shape {:?}; expected [rows, D] with D ≥ 1", a.shape)));
    }
    if let Some((d, other)) = dim {
        if a.shape[1] != d {
            return Err(Error::bad_input(
                what,
                format!("shape {:?} has D = {} but {} has D = {d}", a.shape, a.shape[1], other.display()),
            ));
        }
    }
    if let Some(i) = a.data.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite { what, row: i / a.shape[1], value: a.data[i] as f64 });
    }
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
    let d = job.field().dim();
    let x = args.inputs.read_points(&args.x, d)?;
    let shard = Shard::of(args.shard.as_deref(), x.shape[0])?;
    let x = shard.slice(&x.data, d);
    let rows = shard.len();
    std::fs::create_dir_all(&args.output).map_err(|e| Error::io(&args.output, e))?;
    let bar = Bar::new();
    let started = Instant::now();
    let blocks = split_rows(&job.fields, rows, |field, block| {
        field.evaluate(&x[block.start * d..block.end * d], args.hessian, job.options(&bar))
    })?;
    let mut out = KdeOutputs { log_density: Vec::new(), score: Vec::new(), hessian: args.hessian.then(Vec::new) };
    for block in blocks {
        out.log_density.extend(block.log_density);
        out.score.extend(block.score);
        if let (Some(all), Some(h)) = (&mut out.hessian, block.hessian) {
            all.extend(h);
        }
    }
    log::info!("kde: {rows} points over {} data points in {:.3} s", job.field().len(), started.elapsed().as_secs_f64());
    npy::write_f32(&args.output.join("log_density.npy"), &[rows], &out.log_density)?;
    npy::write_f32(&args.output.join("score.npy"), &[rows, d], &out.score)?;
    if let Some(h) = &out.hessian {
        npy::write_f32(&args.output.join("hessian.npy"), &[rows, d, d], h)?;
    }
    shard.write_manifest(&args.output, &[], &[])
}
