//! `scorelens demo [-o DIR]`: the built-in main job. On the score models shipped in `assets/models/` (trained by
//! `tools/train/train.py`) it tests the four papers' claims, each as the paper states it, on a model of the kind the
//! paper used, and writes every array, PNG figures, `summary.json`, and `report.md` / `report.html` that open with
//! the findings table (claim, measurement, deciding number, rule, verdict, figure):
//! 1. sampling the known-manifold MLPs (two moons, a circle in R^16);
//! 2. Jacobian spectra of the image U-Net `digits_unet` at the paper's noise levels (arXiv 2311.09952);
//! 3. local complexity, scaling and rank of the ReLU network `moons_relu`, and the density of the probability-flow
//!    ODE's samples from its volume change (arXiv 2408.08307);
//! 4. Lyapunov exponents of the sampler and alignment of the top vectors with the known tangents (arXiv 2508.07581);
//! 5. ridges of the smoothed data and the normal / tangential split of the model's error (arXiv 2602.06021).
//!
//! It starts with the engine check it always had: the GPU against PyTorch's float64 output on a fixture.

mod geometry;
mod lyapunov;
mod relu_geometry;
mod ridges;
mod sections;
mod stats;
mod tangents;
mod unet_spectra;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use scorelens::io::{npy, write_atomically};
use scorelens::report::Document;
use scorelens::scheduler::JobOptions;
use scorelens::{Error, GpuContext, Result, ScoreField, ScoreModel};

use super::progress::Bar;
use super::ComputeArgs;

const FIXTURE_MODEL: &[u8] = include_bytes!("../../../tests/fixtures/mlp_silu/model.safetensors");
const FIXTURE_X: &[u8] = include_bytes!("../../../tests/fixtures/mlp_silu/x.npy");
const FIXTURE_T: &[u8] = include_bytes!("../../../tests/fixtures/mlp_silu/t.npy");
const FIXTURE_SCORE: &[u8] = include_bytes!("../../../tests/fixtures/mlp_silu/score.npy");

#[derive(Args)]
pub struct DemoArgs {
    /// Folder for the report, figures and arrays (created if missing).
    #[arg(short = 'o', long = "output", value_name = "DIR", default_value = "scorelens-demo")]
    pub output: PathBuf,
    /// Where the shipped models and data live.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/assets"))]
    pub assets: PathBuf,
    /// Fewer samples, trajectories and points (the same 500-step grid, which EM needs to be stable at t = 1e-3): a
    /// run of about two minutes on a 2-core software driver (used by the tests); the full run about three and a half.
    #[arg(long)]
    pub quick: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// Sizes of the run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    pub steps: usize,
    pub samples: [usize; 3],
    pub lyapunov_trajectories: usize,
    pub ridge_points: usize,
    /// Chains of the U-Net's σ-grid sampler, the steps of its grid, and the chains whose spectra are taken.
    pub unet_samples: usize,
    pub unet_steps: usize,
    pub unet_spectrum_points: usize,
    /// Probability-flow ODE trajectories of the ReLU model (its generator's volume change).
    pub relu_trajectories: usize,
}

/// A shipped model with its training data.
pub(crate) struct Trained {
    pub name: &'static str,
    pub field: ScoreField,
    pub ctx: std::sync::Arc<GpuContext>,
    pub data: Vec<f32>,
    pub dim: usize,
}

/// What every section shares: where to write, the job options, the report and the summary being built.
pub(crate) struct Run<'a> {
    pub dir: PathBuf,
    pub options: JobOptions<'a>,
    pub sizes: Sizes,
    pub doc: Document,
    pub summary: serde_json::Map<String, serde_json::Value>,
    /// The rows of the findings table, in the order they were measured.
    pub findings: Vec<Finding>,
}

/// One row of the findings table: a paper's claim as the paper states it, the measurement that tests it, the number
/// that decides it and the rule (fixed in docs/demo.md before the run) that turns the number into a verdict.
#[derive(Debug, Clone, Default)]
pub(crate) struct Finding {
    /// "arXiv 2311.09952" etc.
    pub paper: &'static str,
    /// The shipped model it was measured on.
    pub model: String,
    /// The claim in the paper's words.
    pub claim: String,
    /// What was measured, with its figures (e.g. "threshold-rule dimension 12.1 at σ = 3 → 31.4 at σ = 0.05").
    pub measured: String,
    /// The number that decides the verdict, as printed (e.g. "Spearman ρ = −0.94").
    pub deciding: String,
    /// The rule that decides (e.g. "holds if ρ < −0.5").
    pub rule: String,
    /// Some(true): holds; Some(false): does not hold; None: reported only.
    pub holds: Option<bool>,
    /// The figure that shows it, relative to the output folder (linked from report.html).
    pub figure: Option<String>,
}

impl Finding {
    pub fn verdict(&self) -> &'static str {
        match self.holds {
            Some(true) => "holds",
            Some(false) => "does not hold",
            None => "reported",
        }
    }
}

impl Run<'_> {
    /// Adds a row to the findings table (and prints it).
    pub fn claim(&mut self, finding: Finding) {
        println!(
            "  [{}] {} ({}): {} — {} [{}]",
            finding.paper,
            finding.claim,
            finding.model,
            finding.measured,
            finding.deciding,
            finding.verdict()
        );
        self.findings.push(finding);
    }

    pub fn path(&self, parts: &[&str]) -> Result<PathBuf> {
        let mut p = self.dir.clone();
        for part in parts {
            p.push(part);
        }
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        Ok(p)
    }
}

fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).powi(2)).sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den).sqrt()
}

fn npy_from_bytes(name: &str, bytes: &[u8]) -> Result<Vec<f64>> {
    let bad = |e: std::io::Error| Error::bad_file(name, e.to_string());
    let file = npyz::NpyFile::new(bytes).map_err(bad)?;
    Ok(match file.dtype().descr().as_str() {
        "'<f4'" => file.into_vec::<f32>().map_err(bad)?.into_iter().map(f64::from).collect(),
        _ => file.into_vec::<f64>().map_err(bad)?,
    })
}

fn load_trained(ctx: &std::sync::Arc<GpuContext>, assets: &Path, name: &'static str) -> Result<Trained> {
    load_model(ctx, assets, name, &format!("{name}.safetensors"), name)
}

/// A shipped model file and the training data it was trained on (`assets/data/<data>.npy`).
fn load_model(
    ctx: &std::sync::Arc<GpuContext>,
    assets: &Path,
    name: &'static str,
    file: &str,
    data: &str,
) -> Result<Trained> {
    let model = ScoreModel::load(&assets.join("models").join(file))?;
    let data_path = assets.join("data").join(format!("{data}.npy"));
    let data = npy::read_f32(&data_path)?;
    let dim = model.dim();
    if data.shape.len() != 2 || data.shape[1] != dim {
        return Err(Error::bad_input(
            data_path.display().to_string(),
            format!("shape {:?}; expected [N, {dim}] (the training data of {name})", data.shape),
        ));
    }
    Ok(Trained { name, field: ScoreField::new(ctx.clone(), &model)?, ctx: ctx.clone(), data: data.data, dim })
}

/// An int64 index file (the U-Net's held-out images).
fn read_indices(path: &Path) -> Result<Vec<usize>> {
    let bad = |e: std::io::Error| Error::bad_file(path, e.to_string());
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file)).map_err(bad)?;
    let values: Vec<i64> = npy.into_vec::<i64>().map_err(bad)?;
    values
        .into_iter()
        .map(|v| usize::try_from(v).map_err(|_| Error::bad_file(path, format!("negative index {v}"))))
        .collect()
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let started = Instant::now();
    let ctx = GpuContext::shared()?;
    let bar = Bar::new();
    args.compute.single_adapter("demo")?;
    let options = JobOptions { memory_budget: args.compute.memory_budget()?, progress: &bar };
    std::fs::create_dir_all(&args.output).map_err(|e| Error::io(&args.output, e))?;
    let sizes = if args.quick {
        Sizes {
            steps: 500,
            samples: [96, 48, 8],
            lyapunov_trajectories: 6,
            ridge_points: 24,
            unet_samples: 4,
            unet_steps: 40,
            unet_spectrum_points: 3,
            relu_trajectories: 64,
        }
    } else {
        Sizes {
            steps: 500,
            samples: [400, 128, 16],
            lyapunov_trajectories: 24,
            ridge_points: 96,
            unet_samples: 16,
            unet_steps: 60,
            unet_spectrum_points: 8,
            relu_trajectories: 256,
        }
    };
    let mut run = Run {
        dir: args.output.clone(),
        options,
        sizes,
        doc: Document::default(),
        summary: serde_json::Map::new(),
        findings: Vec::new(),
    };
    println!("scorelens demo → {}", args.output.display());
    println!("  adapter: {}", ctx.adapter_description());

    // 0. The engine against PyTorch's float64 output.
    let fixture = ScoreModel::from_bytes(Path::new("built-in mlp_silu"), FIXTURE_MODEL)?;
    let fixture_field = ScoreField::new(ctx.clone(), &fixture)?;
    let x: Vec<f32> = npy_from_bytes("x.npy", FIXTURE_X)?.iter().map(|&v| v as f32).collect();
    let t: Vec<f32> = npy_from_bytes("t.npy", FIXTURE_T)?.iter().map(|&v| v as f32).collect();
    let engine_error = rel_err(&fixture_field.score(&x, &t, options)?, &npy_from_bytes("score.npy", FIXTURE_SCORE)?);
    run.summary.insert("engine_rel_err_vs_pytorch".into(), engine_error.into());

    // The known-manifold MLPs (sampling the first two; Lyapunov vectors and ridges on all three), and the models
    // like the first two papers'.
    let models: Vec<Trained> = ["moons", "circle16", "sphere16"]
        .into_iter()
        .map(|name| load_trained(&ctx, &args.assets, name))
        .collect::<Result<_>>()?;
    let unet = load_model(&ctx, &args.assets, "digits_unet", "digits_unet.onnx", "digits")?;
    let heldout = read_indices(&args.assets.join("data").join("digits_unet_heldout_idx.npy"))?;
    let relu = load_model(&ctx, &args.assets, "moons_relu", "moons_relu.safetensors", "moons")?;
    let frame = npy::read_f32(&args.assets.join("data").join("circle16_frame.npy"))?;
    let geometry = geometry::KnownGeometry { circle_frame: frame.data.iter().map(|&v| v as f64).collect() };

    intro(&mut run, &ctx, &[&models[0], &models[1], &models[2], &unet, &relu], engine_error);
    sections::sampling(&mut run, &models[..2], &geometry)?;
    let timer = Instant::now();
    unet_spectra::claims(&mut run, &unet, &heldout)?;
    run.summary.insert("seconds_digits_unet_spectra".into(), timer.elapsed().as_secs_f64().into());
    let timer = Instant::now();
    relu_geometry::claims(&mut run, &relu)?;
    run.summary.insert("seconds_moons_relu_geometry".into(), timer.elapsed().as_secs_f64().into());
    let timer = Instant::now();
    lyapunov::section(&mut run, &models, &geometry, &args.assets)?;
    run.summary.insert("seconds_manifold_intervention".into(), timer.elapsed().as_secs_f64().into());
    let timer = Instant::now();
    ridges::section(&mut run, &models)?;
    run.summary.insert("seconds_ridges".into(), timer.elapsed().as_secs_f64().into());

    let seconds = started.elapsed().as_secs_f64();
    run.summary.insert("seconds".into(), seconds.into());
    run.summary.insert("adapter".into(), ctx.adapter_description().into());
    run.summary.insert(
        "findings".into(),
        run.findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "paper": f.paper, "model": f.model, "claim": f.claim, "measured": f.measured,
                    "deciding": f.deciding, "rule": f.rule, "holds": f.holds, "verdict": f.verdict(),
                    "figure": f.figure,
                })
            })
            .collect::<Vec<_>>()
            .into(),
    );
    let mut doc = Document::default();
    doc.heading(1, "scorelens demo report");
    doc.paragraph(format!(
        "Made by `scorelens demo` in {seconds:.0} s on {}. Every number below was measured in this run; the arrays \
         behind them are in this folder (one subfolder per analysis and model).",
        ctx.adapter_description()
    ));
    doc.heading(2, "Findings");
    doc.table(
        &["paper", "model", "claim (the paper's words)", "measured here", "deciding number", "rule", "verdict"],
        run.findings
            .iter()
            .map(|f| {
                let measured = match &f.figure {
                    Some(fig) => format!("{} ([figure]({fig}))", f.measured),
                    None => f.measured.clone(),
                };
                vec![
                    f.paper.to_string(),
                    f.model.clone(),
                    f.claim.clone(),
                    measured,
                    f.deciding.clone(),
                    f.rule.clone(),
                    f.verdict().to_string(),
                ]
            })
            .collect(),
    );
    let body = std::mem::take(&mut run.doc);
    write_atomically(&args.output.join("report.md"), format!("{}{}", doc.markdown(), body.markdown()).as_bytes())?;
    let html = doc.html("scorelens demo report");
    let html =
        html.replace("</body></html>\n", &body.html("").split("<body>\n").nth(1).unwrap_or_default().to_string());
    write_atomically(&args.output.join("report.html"), html.as_bytes())?;
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(run.summary.clone()))
        .map_err(|e| Error::bad_input("summary.json", e.to_string()))?;
    write_atomically(&args.output.join("summary.json"), text.as_bytes())?;
    println!("  wrote report.md, report.html, summary.json and the figures in {:.0} s", seconds);
    if engine_error > 1e-5 {
        return Err(Error::Device(format!("the GPU differs from PyTorch's fixture by {engine_error:.2e} (> 1e-5)")));
    }
    Ok(())
}

fn intro(run: &mut Run, ctx: &GpuContext, models: &[&Trained], engine_error: f64) {
    run.doc.heading(2, "Setup");
    run.doc.paragraph(format!(
        "Adapter: {}. Engine check: the GPU's score of the PyTorch fixture `mlp_silu` differs from PyTorch's float64 \
         output by {engine_error:.1e} (relative).",
        ctx.adapter_description()
    ));
    run.doc.table(
        &["model", "D", "parameters", "schedule", "training points"],
        models
            .iter()
            .map(|m| {
                vec![
                    format!("`{}`", m.name),
                    m.dim.to_string(),
                    m.field.parameter_count().to_string(),
                    m.field.schedule().to_string(),
                    (m.data.len() / m.dim).to_string(),
                ]
            })
            .collect(),
    );
    run.doc.paragraph(
        "All are trained by denoising score matching with Song's VE schedule (sigma 25); their cards are in \
         `assets/models/`. `moons`, `circle16` and `sphere16` (SiLU MLPs) have known manifolds (two arcs in the \
         plane, a circle in R^16, a 2-sphere in R^16); `digits_unet` is a convolutional \
         U-Net on the 8×8 digits read through its ONNX graph (the first paper's kind of model); `moons_relu` is the \
         moons MLP with ReLU units, a piecewise-linear network (the second paper's).",
    );
}
