//! `scorelens descriptors MODEL --x X.npy --t T [--map score|denoiser] [--k K] [--radius R]
//!  [--directions axes|random] [--n-directions P] [--seed S] -o DIR`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use scorelens::analysis::{self, DescribedMap, DescriptorSettings, Directions, PointDescriptors};
use scorelens::io::{npy, write_atomically};
use scorelens::{Error, Result};

use super::inputs::ModelInputs;
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
    // Rows are independent (the random directions come from the seed alone): split over devices like any batch.
    let blocks = job.split(|field, _, x, t| {
        let mut rows: Vec<PointDescriptors> = Vec::new();
        analysis::descriptors(field, x, t, &settings, job.options(&bar), |_, r| {
            rows.push(r);
            Ok(())
        })?;
        Ok(rows)
    })?;
    let rows: Vec<PointDescriptors> = blocks.into_iter().flatten().collect();
    let n = rows.len();
    let dir = &args.output;
    npy::write_f64(&dir.join("local_scaling.npy"), &[n], &rows.iter().map(|r| r.local_scaling).collect::<Vec<_>>())?;
    npy::write_f64(&dir.join("local_rank.npy"), &[n], &rows.iter().map(|r| r.local_rank).collect::<Vec<_>>())?;
    npy::write_i64(
        &dir.join("local_complexity.npy"),
        &[n],
        &rows.iter().map(|r| r.local_complexity as i64).collect::<Vec<_>>(),
    )?;
    let piecewise_linear = job.field.is_piecewise_linear();
    let summary = serde_json::json!({
        "command": "descriptors",
        "model": job.source,
        "map": format!("{:?}", args.map).to_lowercase(),
        "k": k,
        "radius": args.radius,
        "directions": format!("{:?}", args.directions).to_lowercase(),
        "n_directions": if args.directions == DirectionChoice::Random { args.n_directions } else { d },
        "seed": args.seed,
        "adapter": job.field_adapter(),
        "devices": job.devices.len().max(1),
        "shard": job.shard.summary(),
        "local_complexity_note": if piecewise_linear {
            "ReLU network: sign changes are the boundaries of its linear regions"
        } else {
            "smooth activations: the count is of sign changes of the activations' inputs, as for ReLU (not linear regions)"
        },
        "rows": rows.iter().enumerate().map(|(i, r)| serde_json::json!({
            "row": job.shard.rows.start + i,
            "local_scaling": r.local_scaling,
            "local_rank": r.local_rank,
            "local_complexity": r.local_complexity,
        })).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&summary).map_err(|e| Error::bad_input("summary.json", e.to_string()))?;
    write_atomically(&dir.join("summary.json"), text.as_bytes())?;
    job.shard.write_manifest(dir, &[], &[])
}
