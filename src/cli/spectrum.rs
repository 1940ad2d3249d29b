//! `scorelens spectrum MODEL --x X.npy --t T [--k K] [--vectors] [--method dense] -o DIR`, and
//! `scorelens spectrum MODEL --from-samples DIR ... -o OUT`: the spectrum at every noise level a sampler recorded.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use scorelens::results::spectrum::{
    spectra_from_samples, spectrum, RecordedLevels, RowLog, SampledSpectra, SpectrumMethod as Method, SpectrumRequest,
    SpectrumResult,
};
use scorelens::scheduler::JobOptions;
use scorelens::{Error, Result};

use super::inputs::{run_signature, FieldArgs, Job, LoadedField};
use super::progress::Bar;
use super::ComputeArgs;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum SpectrumMethod {
    Auto,
    Dense,
    Subspace,
    Rsvd,
    Krylov,
}

#[derive(Args)]
pub struct SpectrumArgs {
    #[command(flatten)]
    pub source: FieldArgs,
    /// Points X, a .npy of shape [B, ...] (one row per point, as the model expects).
    #[arg(long = "x", value_name = "X.npy", required_unless_present = "from_samples")]
    pub x: Option<PathBuf>,
    /// Diffusion time in (0, 1]: one number for all rows, or a .npy of shape [B].
    #[arg(long = "t", value_name = "T", allow_negative_numbers = true, required_unless_present = "from_samples")]
    pub t: Option<String>,
    /// A `scorelens sample --record-sigmas` output folder: the spectrum of its recorded iterates at every level,
    /// each at its own grid time, one subfolder per σ (sigma_<σ>/) and a summary across levels.
    #[arg(long = "from-samples", value_name = "DIR", conflicts_with_all = ["x", "t"])]
    pub from_samples: Option<PathBuf>,
    /// Take only shard i of n (0 ≤ i < n): its contiguous block of rows; `scorelens merge` joins the outputs.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Singular triplets kept per point (default: all D).
    #[arg(long)]
    pub k: Option<usize>,
    /// Also write the singular vectors (left_vectors.npy, right_vectors.npy: [B, K, D]).
    #[arg(long)]
    pub vectors: bool,
    /// auto: the cheapest of dense, krylov and rsvd by a cost model of the field (summary.json says which and
    /// why); dense: SVD of the exact Jacobian in f64; krylov: block Golub–Kahan–Lanczos with restarts (both
    /// residuals ‖J v − s u‖, ‖Jᵀ u − s v‖ below --tol); subspace: block subspace iteration; rsvd: randomized
    /// SVD (oversampled). The matrix-free ones stop when every kept triplet's residual is below --tol.
    #[arg(long, value_enum, default_value_t = SpectrumMethod::Auto)]
    pub method: SpectrumMethod,
    /// Residual tolerance ‖J vᵢ − sᵢ uᵢ‖ / s₁ of the matrix-free methods.
    #[arg(long, default_value_t = 1e-5)]
    pub tol: f64,
    /// Iteration cap of the matrix-free methods (krylov: block steps).
    #[arg(long = "max-iter", default_value_t = 100)]
    pub max_iter: usize,
    /// Extra random directions of rsvd.
    #[arg(long, default_value_t = 8)]
    pub oversampling: usize,
    /// Rademacher probes for the non-conservativeness estimate of the matrix-free methods.
    #[arg(long, default_value_t = 64)]
    pub probes: usize,
    /// Seed of the random starting blocks and probes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also draw spectrum.png (1/sᵢ against rank, log axis, with the std(t)² lines) and alignment.png (uᵢ·vᵢ).
    #[arg(long)]
    pub plot: bool,
    /// The threshold rule of the local dimension counts 1/sᵢ > c · std(t)².
    #[arg(long = "threshold-c", default_value_t = 2.0)]
    pub threshold_c: f64,
    /// Output folder (created if missing).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
}

pub fn run(args: &SpectrumArgs) -> Result<()> {
    if !(args.threshold_c > 0.0 && args.threshold_c.is_finite()) {
        return Err(Error::InvalidArgument(format!("--threshold-c {} must be a positive number", args.threshold_c)));
    }
    match (&args.from_samples, &args.x, &args.t) {
        (Some(dir), _, _) => from_samples(args, dir),
        (None, Some(x), Some(t)) => {
            let job = Job::load(&args.source, x, t, args.shard.as_deref(), &args.compute)?;
            let result = spectrum_of(args, &job.fields(), &job.points, &job.shard, &job.source, &args.output)?;
            if let Some(warning) = result.unconverged_warning() {
                eprintln!("{}", warning.replace("raise max_iter or loosen tol", "raise --max-iter or loosen --tol"));
            }
            result.save(&args.output)?;
            if args.plot {
                result.plot(&args.output)?;
            }
            Ok(())
        }
        _ => Err(Error::InvalidArgument("give --x X.npy --t T, or --from-samples DIR".into())),
    }
}

/// The library's request from the flags.
fn request(args: &SpectrumArgs, d: usize) -> SpectrumRequest {
    SpectrumRequest {
        k: args.k.unwrap_or(d),
        method: match args.method {
            SpectrumMethod::Auto => Method::Auto,
            SpectrumMethod::Dense => Method::Dense,
            SpectrumMethod::Subspace => Method::Subspace,
            SpectrumMethod::Rsvd => Method::Rsvd,
            SpectrumMethod::Krylov => Method::Krylov,
        },
        vectors: args.vectors,
        threshold_c: args.threshold_c,
        tol: args.tol,
        max_iter: args.max_iter,
        oversampling: args.oversampling,
        probes: args.probes,
        seed: args.seed,
    }
}

/// The first paper's experiment: spectra of the sampler's iterates at each recorded noise level.
fn from_samples(args: &SpectrumArgs, samples: &Path) -> Result<()> {
    let levels = RecordedLevels::read(samples)?;
    let what = samples.join("recorded.npy").display().to_string();
    std::fs::create_dir_all(&args.output).map_err(|e| Error::io(&args.output, e))?;
    let loaded: Vec<LoadedField> =
        args.compute.contexts()?.into_iter().map(|ctx| args.source.load_on(ctx)).collect::<Result<_>>()?;
    let fields: Vec<&scorelens::ScoreField> = loaded.iter().map(|l| &l.field).collect();
    let field = fields[0];
    let request = request(args, field.dim());
    let bar = Bar::new();
    let options = JobOptions { memory_budget: args.compute.memory_budget()?, progress: &bar };
    let std_of = |level: usize| field.schedule().std(levels.times[level]);
    let mut log: Option<(usize, RowLog)> = None;
    let mut result = spectra_from_samples(
        &fields,
        &levels,
        args.shard.as_deref(),
        &request,
        options,
        &loaded[0].source,
        &run_signature(),
        &what,
        |level, row, s| {
            if log.as_ref().is_none_or(|(l, _)| *l != level) {
                let sigma = levels.sigmas.get(level).copied().unwrap_or(std_of(level));
                log = Some((level, RowLog::create(&args.output.join(format!("sigma_{sigma}")))?));
            }
            log.as_mut().expect("opened above").1.write(row, s)
        },
    )?;
    result.samples = samples.display().to_string();
    result.save(&args.output)?;
    if args.plot {
        for level in &result.levels {
            level.spectrum.plot(&args.output.join(SampledSpectra::folder(level)))?;
        }
    }
    Ok(())
}

/// The spectrum of the job's rows, its rows logged to `dir`/rows.jsonl as they finish.
fn spectrum_of(
    args: &SpectrumArgs,
    fields: &[&scorelens::ScoreField],
    points: &scorelens::batch::Points,
    shard: &scorelens::batch::Shard,
    source: &str,
    dir: &Path,
) -> Result<SpectrumResult> {
    let request = request(args, fields[0].dim());
    let d = fields[0].dim();
    if request.k == 0 || request.k > d {
        return Err(Error::InvalidArgument(format!("--k {} must be between 1 and D = {d}", request.k)));
    }
    let mut log = RowLog::create(dir)?;
    let bar = Bar::new();
    let options = JobOptions { memory_budget: args.compute.memory_budget()?, progress: &bar };
    spectrum(fields, points, shard, &request, options, source, &run_signature(), |row, s| log.write(row, s))
}
