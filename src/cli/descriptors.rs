//! `scorelens descriptors MODEL --x X.npy --t T [--map score|denoiser] [--k K] [--radius R]
//!  [--directions axes|random] [--n-directions P] [--seed S] -o DIR`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use scorelens::analysis::{DescribedMap, DescriptorSettings, Directions};
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
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder (created if missing).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
}

pub fn run(args: &DescriptorArgs) -> Result<()> {
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
        args.seed,
        job.options(&bar),
        &job.source,
        &run_signature(),
    )?;
    result.save(&args.output)
}
