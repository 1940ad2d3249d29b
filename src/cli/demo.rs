//! `scorelens demo [-o DIR]`: the built-in main job. For now it scores a built-in MLP score model (the PyTorch
//! fixture `mlp_silu`) on built-in inputs, checks the GPU against PyTorch's float64 output and against the f64
//! reference, and prints a summary. Later issues grow it into the full analysis report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use scorelens::io::{npy, write_atomically};
use scorelens::reference::mlp::mlp_score;
use scorelens::scheduler::JobOptions;
use scorelens::{Error, GpuContext, Result, ScoreField, ScoreModel};

use super::progress::Bar;
use super::ComputeArgs;

const MODEL: &[u8] = include_bytes!("../../tests/fixtures/mlp_silu/model.safetensors");
const FIXTURE_X: &[u8] = include_bytes!("../../tests/fixtures/mlp_silu/x.npy");
const FIXTURE_T: &[u8] = include_bytes!("../../tests/fixtures/mlp_silu/t.npy");
const FIXTURE_SCORE: &[u8] = include_bytes!("../../tests/fixtures/mlp_silu/score.npy");

#[derive(Args)]
pub struct DemoArgs {
    /// Folder for the demo's arrays and summary.json (created if missing).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Points in the built-in batch.
    #[arg(long, default_value_t = 65_536)]
    pub rows: usize,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).powi(2)).sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den).sqrt()
}

fn npy_from_bytes(name: &str, bytes: &[u8]) -> Result<(Vec<u64>, Vec<f64>)> {
    let bad = |e: std::io::Error| Error::bad_file(name, e.to_string());
    let file = npyz::NpyFile::new(bytes).map_err(bad)?;
    let shape = file.shape().to_vec();
    let data = match file.dtype().descr().as_str() {
        "'<f4'" => file.into_vec::<f32>().map_err(bad)?.into_iter().map(f64::from).collect(),
        _ => file.into_vec::<f64>().map_err(bad)?,
    };
    Ok((shape, data))
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let budget = args.compute.memory_budget()?;
    let model = ScoreModel::from_bytes(Path::new("built-in mlp_silu"), MODEL)?;
    let ScoreModel::Mlp(mlp) = &model else {
        return Err(Error::Device("the built-in demo model is an MLP".into()));
    };
    let dim = mlp.dim;
    let ctx = GpuContext::shared()?;
    let field = ScoreField::new(ctx.clone(), &model)?;
    let options = JobOptions { memory_budget: budget, progress: &Bar::new() };

    println!("scorelens demo");
    println!("  adapter      {}", ctx.adapter_description());
    println!(
        "  model        built-in mlp_silu: D = {dim}, hidden {:?}, {} parameters, {}",
        mlp.hidden(),
        model.parameter_count(),
        model.schedule()
    );

    // 1. PyTorch's float64 answer on its own 8 points.
    let (_, fx) = npy_from_bytes("x.npy", FIXTURE_X)?;
    let (_, ft) = npy_from_bytes("t.npy", FIXTURE_T)?;
    let (_, fscore) = npy_from_bytes("score.npy", FIXTURE_SCORE)?;
    let fx: Vec<f32> = fx.iter().map(|&v| v as f32).collect();
    let ft: Vec<f32> = ft.iter().map(|&v| v as f32).collect();
    let fixture_score = field.score(&fx, &ft, options)?;
    let err_pytorch = rel_err(&fixture_score, &fscore);
    println!("  vs PyTorch   rel. error {err_pytorch:.2e} on the fixture's {} points (float64 reference)", ft.len());

    // 2. A built-in batch at four noise levels.
    let mut rng = rand::rngs::StdRng::seed_from_u64(2311);
    let rows = args.rows.max(4);
    let x: Vec<f32> = (0..rows * dim).map(|_| StandardNormal.sample(&mut rng)).collect();
    let levels = [0.05f32, 0.2, 0.5, 1.0];
    let t: Vec<f32> = (0..rows).map(|r| levels[r * levels.len() / rows]).collect();
    let started = Instant::now();
    let score = field.score(&x, &t, options)?;
    let seconds = started.elapsed().as_secs_f64();
    let gflops = field.flops_per_row() * rows as f64 / seconds / 1e9;
    let check_rows = rows.min(2048);
    let stride = rows / check_rows;
    let picked: Vec<usize> = (0..check_rows).map(|i| i * stride).collect();
    let px: Vec<f32> = picked.iter().flat_map(|&r| x[r * dim..(r + 1) * dim].iter().copied()).collect();
    let pt: Vec<f32> = picked.iter().map(|&r| t[r]).collect();
    let ps: Vec<f32> = picked.iter().flat_map(|&r| score[r * dim..(r + 1) * dim].iter().copied()).collect();
    let err_reference = rel_err(&ps, &mlp_score(mlp, &px, &pt));
    println!("  batch        {rows} points × {} noise levels in {:.1} ms ({gflops:.2} GFLOP/s, first call includes kernel compilation)", levels.len(), seconds * 1e3);
    println!("  vs f64 ref.  rel. error {err_reference:.2e} on {check_rows} of them");
    println!("  per level    t      std(t)     mean ‖s‖·std(t)");
    let mut level_rows = Vec::new();
    for (li, &level) in levels.iter().enumerate() {
        let range = (li * rows / levels.len())..((li + 1) * rows / levels.len());
        let std = model.schedule().std(level as f64);
        let mean_norm = range
            .clone()
            .map(|r| score[r * dim..(r + 1) * dim].iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt())
            .sum::<f64>()
            / range.len() as f64;
        println!("               {level:<6} {std:<10.4} {:.4}", mean_norm * std);
        level_rows.push(serde_json::json!({"t": level, "std": std, "mean_score_norm_times_std": mean_norm * std}));
    }
    let ok = err_pytorch <= 1e-5 && err_reference <= 1e-5;
    println!(
        "  verdict      {}",
        if ok {
            "GPU matches PyTorch and the f64 reference to ≤ 1e-5"
        } else {
            "MISMATCH: GPU differs from the references by more than 1e-5"
        }
    );

    if let Some(dir) = &args.output {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        npy::write_f32(&dir.join("x.npy"), &[rows, dim], &x)?;
        npy::write_f32(&dir.join("t.npy"), &[rows], &t)?;
        npy::write_f32(&dir.join("score.npy"), &[rows, dim], &score)?;
        let summary = serde_json::json!({
            "adapter": ctx.adapter_description(),
            "model": {"name": "mlp_silu", "dim": dim, "hidden": mlp.hidden(), "parameters": model.parameter_count(), "schedule": model.schedule().to_string()},
            "rows": rows,
            "seconds": seconds,
            "gflops_per_s": gflops,
            "rel_err_vs_pytorch_fixture": err_pytorch,
            "rel_err_vs_f64_reference": err_reference,
            "levels": level_rows,
        });
        let text =
            serde_json::to_string_pretty(&summary).map_err(|e| Error::bad_input("summary.json", e.to_string()))?;
        write_atomically(&dir.join("summary.json"), text.as_bytes())?;
        println!("  wrote        {}/{{x,t,score}}.npy and summary.json", dir.display());
    }
    if ok {
        Ok(())
    } else {
        Err(Error::Device("the GPU result disagrees with the references (see above)".into()))
    }
}
