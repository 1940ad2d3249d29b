//! `scorelens descriptors MODEL --x X.npy --t T [--map score|denoiser] [--k K] [--radius R]
//!  [--directions axes|random] [--n-directions P] [--seed S] [--method auto|dense|krylov] [--tol T]
//!  [--max-iter N] -o DIR`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use scorelens::analysis::{DescribedMap, DescriptorMethod, DescriptorSettings, Directions, SingularValueSolver};
use scorelens::results::descriptors::descriptors;
use scorelens::{Error, Result};

use super::inputs::{run_signature, ModelInputs};
use super::progress::Bar;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum MapChoice {
    Score,
    Denoiser,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum DirectionChoice {
    Axes,
    Random,
}

#[derive(Args)]
pub struct DescriptorArgs {
    #[command(flatten)]
    pub inputs: ModelInputs,
    /// The map described: the score s(x, t) or the denoiser (posterior mean).
    #[arg(long, value_enum, default_value_t = MapChoice::Denoiser)]
    pub map: MapChoice,
    /// Singular values used for local scaling and rank (default: all D).
    #[arg(long)]
    pub k: Option<usize>,
    /// Radius r of the cross-polytope (ℓ1 ball) whose vertices x ± r·bⱼ count sign changes.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    pub radius: f64,
    #[arg(long, value_enum, default_value_t = DirectionChoice::Axes)]
    pub directions: DirectionChoice,
    /// P random orthonormal directions (with --directions random).
    #[arg(long = "n-directions", default_value_t = 16)]
    pub n_directions: usize,
    /// Seed of the random directions and of the krylov route's starting blocks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// How the singular values are found: auto (the cheaper of dense and krylov by a cost model of the field;
    /// summary.json says which and why), dense (the exact Jacobian, every value in f64) or krylov (the top K by
    /// block Golub–Kahan–Lanczos on J·v and Jᵀ·u, both residuals below --tol).
    #[arg(long, default_value = "auto")]
    pub method: String,
    /// Residual tolerance ‖M vᵢ − sᵢ uᵢ‖ / s₁ of the krylov route (M the map's Jacobian).
    #[arg(long, default_value_t = 1e-5)]
    pub tol: f64,
    /// Block steps at most on the krylov route.
    #[arg(long = "max-iter", default_value_t = 100)]
    pub max_iter: usize,
    /// Output folder (created if missing).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
}

pub fn run(args: &DescriptorArgs) -> Result<()> {
    let solver = SingularValueSolver {
        method: DescriptorMethod::parse(&args.method)?,
        tolerance: args.tol,
        max_iterations: args.max_iter,
        seed: args.seed,
    };
    if !(args.tol > 0.0 && args.tol.is_finite()) {
        return Err(Error::InvalidArgument(format!("--tol {} must be a positive number", args.tol)));
    }
    if args.max_iter == 0 {
        return Err(Error::InvalidArgument("--max-iter 0: the krylov route needs at least one step".into()));
    }
    let job = args.inputs.load()?;
    let d = job.field.dim();
    let k = args.k.unwrap_or(d);
    if k == 0 || k > d {
        return Err(Error::InvalidArgument(format!("--k {k} must be between 1 and D = {d}")));
    }
    let settings = DescriptorSettings {
        map: match args.map {
            MapChoice::Score => DescribedMap::Score,
            MapChoice::Denoiser => DescribedMap::Denoiser,
        },
        k,
        radius: args.radius,
        directions: match args.directions {
            DirectionChoice::Axes => Directions::Axes,
            DirectionChoice::Random => Directions::Random { count: args.n_directions, seed: args.seed },
        },
    };
    std::fs::create_dir_all(&args.output).map_err(|e| Error::io(&args.output, e))?;
    let bar = Bar::new();
    let result = descriptors(
        &job.fields(),
        &job.points,
        &job.shard,
        &settings,
        &solver,
        args.seed,
        job.options(&bar),
        &job.source,
        &run_signature(),
    )?;
    if let Some(warning) = result.unconverged_warning() {
        eprintln!("{}", warning.replace("raise max_iter or loosen tol", "raise --max-iter or loosen --tol"));
    }
    result.save(&args.output)
}
