//! `scorelens bench [--json] [--quick]`: a fixed suite on the chosen adapter, timed end to end on the wall clock
//! (record, submit, wait; for score fields also upload and read-back), median of repeats after one warm-up run
//! that also compiles the pipelines. `benches/peers/` runs the same workloads in PyTorch and prints ratios.

use std::time::{Duration, Instant};

use clap::Args;
use scorelens::derivative::{self, JacobianMethod, JvpMethod};
use scorelens::gpu::{BufferRole, Recorder};
use scorelens::model::{MlpModel, NoiseSchedule, UnetModel};
use scorelens::ops::matmul::{record_matmul, record_matmul_with, Epilogue, MatmulShape, TilePlan};
use scorelens::scheduler::JobOptions;
use scorelens::{Activation, Error, GpuContext, Result, ScoreField, ScoreModel};
use serde::Serialize;

use super::ComputeArgs;

#[derive(Args)]
pub struct BenchArgs {
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Smaller shapes and fewer repeats: a run of a minute or two on a software driver.
    #[arg(long)]
    pub quick: bool,
    /// Only items whose name contains one of these (comma-separated), e.g. `matmul,unet`.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Run matmuls on cooperative matrices (tensor cores; wgpu's experimental 8×8 f32 feature), as
    /// SCORELENS_COOP_MATRIX=1 does: adds the `… coop` items and sends the chooser's medium and large shapes there.
    /// An error (exit 2) on an adapter without them.
    #[arg(long)]
    pub coop_matrix: bool,
    /// Also time these ONNX networks through the graph engine (forward, J·V with 8 tangents, whole Jacobians by
    /// forward and reverse mode): items `graph NAME …`, beside the built-in architectures' items.
    #[arg(long, value_name = "FILE.onnx")]
    pub onnx: Vec<std::path::PathBuf>,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

#[derive(Serialize)]
struct Item {
    name: String,
    seconds: f64,
    repeats: usize,
    gflop: f64,
    gflops_per_s: f64,
    /// Rows, images or products per second, as `unit` says.
    per_second: f64,
    unit: &'static str,
    peak_fraction: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    adapter: String,
    backend: String,
    driver: String,
    peak_f32_gflops: Option<f64>,
    items: Vec<Item>,
}

/// Published dense float32 (non-tensor-core) peaks of adapters we report against, in GFLOP/s.
fn known_peak_gflops(name: &str) -> Option<f64> {
    let n = name.to_lowercase();
    [("h100 pcie", 51_200.0), ("h100", 66_900.0), ("h200", 66_900.0), ("a100", 19_500.0), ("rtx 4090", 82_600.0)]
        .iter()
        .find(|(key, _)| n.contains(key))
        .map(|(_, peak)| *peak)
}

/// Median seconds of `run` over repeats that fill at least `budget` (at least 3), after one warm-up call.
fn time_it(budget: Duration, mut run: impl FnMut() -> Result<()>) -> Result<(f64, usize)> {
    run()?;
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < 3 || (started.elapsed() < budget && times.len() < 100) {
        let t0 = Instant::now();
        run()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times.len()))
}

pub fn run(args: &BenchArgs) -> Result<()> {
    args.compute.single_adapter("bench")?;
    let budget_bytes = args.compute.memory_budget()?;
    if args.coop_matrix {
        scorelens::gpu::request_coop_matrix();
    }
    let ctx = GpuContext::shared()?;
    let peak = known_peak_gflops(&ctx.caps.info.name);
    let time_budget = if args.quick { Duration::from_millis(300) } else { Duration::from_secs(2) };
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| name.contains(o.as_str()));
    let options = JobOptions { memory_budget: budget_bytes, ..JobOptions::default() };
    if !args.json {
        println!("adapter: {}", ctx.adapter_description());
    }
    let mut items = Vec::new();
    let mut record = |name: String, seconds: f64, repeats: usize, flop: f64, count: f64, unit: &'static str| {
        let gflops = flop / seconds / 1e9;
        let item = Item {
            name,
            seconds,
            repeats,
            gflop: flop / 1e9,
            gflops_per_s: gflops,
            per_second: count / seconds,
            unit,
            peak_fraction: peak.map(|p| gflops / p),
        };
        if !args.json {
            let fraction = item.peak_fraction.map_or(String::new(), |f| format!("  {:.1}% of peak", 100.0 * f));
            println!(
                "{:<34} {:>10.3} ms {:>10.2} GFLOP/s {:>12.1} {}/s{fraction}",
                item.name,
                seconds * 1e3,
                gflops,
                item.per_second,
                unit
            );
        }
        items.push(item);
    };

    let matmuls: &[(usize, usize, usize)] = if args.quick {
        &[(256, 256, 256), (1024, 512, 512)]
    } else {
        &[(256, 256, 256), (1024, 1024, 1024), (4096, 4096, 4096), (65536, 64, 512)]
    };
    for &(m, n, k) in matmuls {
        // The item without a suffix runs what the chooser picks (or SCORELENS_MATMUL_TILE forces); shapes of the
        // medium and large buckets also run each tiled variant by name (and the cooperative-matrix one when the
        // device has it enabled), to compare them on one adapter.
        let mut variants: Vec<(String, Option<TilePlan>)> = vec![(format!("matmul {m}x{n}x{k}"), None)];
        if m >= 512 && n >= 512 {
            variants.push((format!("matmul {m}x{n}x{k} tile64"), Some(TilePlan::Tile64)));
            variants.push((format!("matmul {m}x{n}x{k} tile128"), Some(TilePlan::Tile128)));
            if ctx.coop_matrix_enabled() {
                variants.push((format!("matmul {m}x{n}x{k} coop"), Some(TilePlan::Coop)));
            }
        }
        if !variants.iter().any(|(name, _)| wanted(name)) {
            continue;
        }
        let shape = MatmulShape::new(m, n, k).with_trans_b();
        let a = ctx.upload("bench/a", &vec![0.5f32; m * k]);
        let b = ctx.upload("bench/b", &vec![0.25f32; n * k]);
        let c = ctx.buffer("bench/c", (m * n * 4) as u64, BufferRole::Storage);
        for (name, plan) in variants {
            if !wanted(&name) {
                continue;
            }
            let (seconds, repeats) = time_it(time_budget, || {
                let mut rec = Recorder::new(&ctx, "bench/matmul");
                match plan {
                    Some(plan) => record_matmul_with(&mut rec, plan.kernel(), &shape, &a, &b, Epilogue::NONE, &c)?,
                    None => record_matmul(&mut rec, &shape, &a, &b, Epilogue::NONE, &c)?,
                }
                let index = rec.submit();
                ctx.wait_for(Some(index))
            })?;
            record(name, seconds, repeats, shape.flops(), 1.0, "products");
        }
    }

    let mlp = MlpModel::random(1, 64, &[512, 512, 512], 64, Activation::Silu, NoiseSchedule::VeSong { sigma: 25.0 });
    let mlp_flops = mlp.flops_per_row();
    let mlp_field = ScoreField::new(ctx.clone(), &ScoreModel::Mlp(mlp))?;
    let mlp_batches: &[usize] = if args.quick { &[1024] } else { &[1, 1024, 65_536] };
    for &rows in mlp_batches {
        let name = format!("mlp forward D64-h512x3 b{rows}");
        if !wanted(&name) {
            continue;
        }
        let x: Vec<f32> = (0..rows * 64).map(|i| ((i % 97) as f32 - 48.0) / 48.0).collect();
        let (seconds, repeats) = time_it(time_budget, || mlp_field.score(&x, &[0.5], options).map(|_| ()))?;
        record(name, seconds, repeats, mlp_flops * rows as f64, rows as f64, "rows");
    }

    // Exact forward-mode J·V of the MLP, 8 tangents for each of 1024 points.
    let name = "mlp jvp exact k8 b1024".to_string();
    if wanted(&name) {
        let (points, k) = (1024, 8);
        let x: Vec<f32> = (0..points * 64).map(|i| ((i % 89) as f32 - 44.0) / 44.0).collect();
        let v: Vec<f32> = (0..points * k * 64).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect();
        let (seconds, repeats) = time_it(time_budget, || {
            derivative::jvp(&mlp_field, &x, &[0.5], &v, JvpMethod::Exact, false, options).map(|_| ())
        })?;
        record(name, seconds, repeats, (k + 1) as f64 * mlp_flops * points as f64, (points * k) as f64, "products");
    }

    // Full Jacobians of the MLP (exact forward and reverse mode): D products per point.
    let jacobian_points: &[usize] = if args.quick { &[16] } else { &[16, 256] };
    for &points in jacobian_points {
        for (label, method) in [("forward", JacobianMethod::Forward), ("reverse", JacobianMethod::Reverse)] {
            let name = format!("mlp jacobian {label} b{points}");
            if !wanted(&name) {
                continue;
            }
            let x: Vec<f32> = (0..points * 64).map(|i| ((i % 89) as f32 - 44.0) / 44.0).collect();
            let (seconds, repeats) =
                time_it(time_budget, || derivative::jacobian(&mlp_field, &x, &[0.5], method, options, |_, _| Ok(())))?;
            record(name, seconds, repeats, 64.0 * mlp_flops * points as f64, points as f64, "jacobians");
        }
    }

    // Spectra of MLP Jacobians: dense (all D values, f64 SVD of the exact Jacobian) and the top 32 by randomized
    // SVD (8 extra directions, 4 power iterations, no early stop). FLOPs: the Jacobian's D forward-mode products
    // (dense) or 2·(32 + 8) products per iteration (rsvd), SVDs not counted.
    for &points in if args.quick { &[16usize][..] } else { &[16usize, 128][..] } {
        let name = format!("mlp spectrum dense b{points}");
        if wanted(&name) {
            let x: Vec<f32> = (0..points * 64).map(|i| ((i % 79) as f32 - 39.0) / 39.0).collect();
            let settings = scorelens::analysis::SpectrumSettings { k: 64, threshold_c: 2.0, vectors: false };
            let (seconds, repeats) = time_it(time_budget, || {
                scorelens::analysis::spectra(&mlp_field, &x, &[0.5], settings, options, |_, _| Ok(()))
            })?;
            record(name, seconds, repeats, 64.0 * mlp_flops * points as f64, points as f64, "spectra");
        }
        let name = format!("mlp top32 rsvd b{points}");
        if wanted(&name) {
            let x: Vec<f32> = (0..points * 64).map(|i| ((i % 79) as f32 - 39.0) / 39.0).collect();
            let (seconds, repeats) = time_it(time_budget, || top32(&mlp_field, &x, options))?;
            record(name, seconds, repeats, 4.0 * 80.0 * mlp_flops * points as f64, points as f64, "points");
        }
    }

    // One Lyapunov step (ODE-Euler sampler): score, J·Q for K tangents, the update and the QR; FLOPs counted as
    // (K + 2) forwards per trajectory (score, linearisation, one forward-mode pass per tangent).
    let lyapunov_sizes: &[(usize, usize)] = if args.quick { &[(16, 32)] } else { &[(16, 32), (128, 32)] };
    for &(trajectories, k) in lyapunov_sizes {
        let name = format!("lyapunov step mlp b{trajectories} k{k}");
        if wanted(&name) {
            let x: Vec<f32> = (0..trajectories * 64).map(|i| ((i % 83) as f32 - 41.0) / 41.0).collect();
            let steps = 3;
            let (seconds, repeats) = time_it(time_budget, || lyapunov_steps(&mlp_field, &x, k, steps, options))?;
            let flop = (k + 2) as f64 * mlp_flops * trajectories as f64;
            record(name, seconds / steps as f64, repeats, flop, trajectories as f64, "trajectory-steps");
        }
        // The same steps through the host path (updates and QR on the host, one round trip per stage): what
        // keeping the iteration on the GPU saves.
        let name = format!("lyapunov step mlp b{trajectories} k{k} host");
        if wanted(&name) && !args.quick {
            let x: Vec<f32> = (0..trajectories * 64).map(|i| ((i % 83) as f32 - 41.0) / 41.0).collect();
            let steps = 3;
            let run = || lyapunov_steps_with(&mlp_field, &x, k, steps, options, true);
            let (seconds, repeats) = time_it(time_budget, run)?;
            let flop = (k + 2) as f64 * mlp_flops * trajectories as f64;
            record(name, seconds / steps as f64, repeats, flop, trajectories as f64, "trajectory-steps");
        }
    }

    // One SCMS sweep of the smoothed data (log p, score and Hessian at every point, then the host eigensolves and
    // the constrained step): a noisy circle, N data points, B starting points; N (6D + 2D²) FLOPs a point, as
    // benches/peers/scms_numpy.py counts them.
    let scms_sizes: &[(usize, usize, usize)] =
        if args.quick { &[(2, 2000, 200)] } else { &[(2, 100_000, 10_000), (64, 10_000, 1_000)] };
    for &(d, n, b) in scms_sizes {
        let name = format!("scms sweep D{d} n{n} b{b}");
        if wanted(&name) {
            use scorelens::analysis::ridge::{scms, Eigensolver, ScmsSettings};
            use scorelens::field::{KdeField, KdeScale};
            let circle = |count: usize, phase: f32| -> Vec<f32> {
                (0..count)
                    .flat_map(|i| {
                        let a = i as f32 * 2.399 + phase;
                        let mut row = vec![0.0f32; d];
                        row[0] = a.cos() * (1.0 + 0.02 * (i as f32 * 0.7).sin());
                        row[1] = a.sin() * (1.0 + 0.02 * (i as f32 * 1.3).cos());
                        row
                    })
                    .collect()
            };
            let kde = KdeField::new(ctx.clone(), circle(n, 0.0), d, KdeScale::bandwidth(0.1))?;
            let starts: Vec<f32> = circle(b, 0.5).iter().map(|v| v * 1.1).collect();
            let settings = ScmsSettings {
                ridge_dim: 1,
                tolerance: 1e-12,
                max_iterations: 1,
                beta: 0.0,
                eigensolver: Eigensolver::Dense,
            };
            let (seconds, repeats) = time_it(time_budget, || scms(&kde, &starts, settings, options).map(|_| ()))?;
            let flop = (b * n) as f64 * (6 * d + 2 * d * d) as f64;
            record(name, seconds, repeats, flop, b as f64, "points");
        }
    }

    for path in &args.onnx {
        let model = ScoreModel::load(path)?;
        let field = ScoreField::new(ctx.clone(), &model)?;
        let stem = path.file_stem().map_or("net".into(), |s| s.to_string_lossy().to_string());
        let stem = if stem == "model" {
            path.parent().and_then(|p| p.file_name()).map_or(stem, |s| s.to_string_lossy().to_string())
        } else {
            stem
        };
        let d = field.dim();
        let flops = field.flops_per_row();
        let batches: &[usize] = if args.quick { &[1, 16] } else { &[1, 64] };
        for &rows in batches {
            let name = format!("graph {stem} forward b{rows}");
            if wanted(&name) {
                let x: Vec<f32> = (0..rows * d).map(|i| ((i % 255) as f32) / 127.0 - 1.0).collect();
                let (seconds, repeats) = time_it(time_budget, || field.score(&x, &[0.5], options).map(|_| ()))?;
                record(name, seconds, repeats, flops * rows as f64, rows as f64, "rows");
            }
        }
        let name = format!("graph {stem} jvp k8 b4");
        if wanted(&name) {
            let (rows, k) = (4, 8);
            let x: Vec<f32> = (0..rows * d).map(|i| ((i % 255) as f32) / 127.0 - 1.0).collect();
            let v: Vec<f32> = (0..rows * k * d).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect();
            let (seconds, repeats) = time_it(time_budget, || {
                derivative::jvp(&field, &x, &[0.5], &v, JvpMethod::Exact, false, options).map(|_| ())
            })?;
            record(name, seconds, repeats, (k + 1) as f64 * flops * rows as f64, (rows * k) as f64, "products");
        }
        for (label, method) in [("forward", JacobianMethod::Forward), ("reverse", JacobianMethod::Reverse)] {
            let name = format!("graph {stem} jacobian {label} b1");
            if !wanted(&name) || (args.quick && d > 256) {
                continue;
            }
            let x: Vec<f32> = (0..d).map(|i| ((i % 255) as f32) / 127.0 - 1.0).collect();
            let (seconds, repeats) =
                time_it(time_budget, || derivative::jacobian(&field, &x, &[0.5], method, options, |_, _| Ok(())))?;
            record(name, seconds, repeats, d as f64 * flops, 1.0, "jacobians");
        }
    }

    let unet = UnetModel::random(1, [32, 64, 128, 256], 256, NoiseSchedule::VeSong { sigma: 25.0 });
    let unet_flops = unet.flops_per_image();
    let unet_field = ScoreField::new(ctx.clone(), &ScoreModel::Unet(unet))?;
    let unet_batches: &[usize] = if args.quick { &[1, 16] } else { &[1, 64, 512] };
    for &images in unet_batches {
        let name = format!("unet forward b{images}");
        if !wanted(&name) {
            continue;
        }
        let x: Vec<f32> = (0..images * 784).map(|i| ((i % 255) as f32) / 255.0).collect();
        let (seconds, repeats) = time_it(time_budget, || unet_field.score(&x, &[0.5], options).map(|_| ()))?;
        record(name, seconds, repeats, unet_flops * images as f64, images as f64, "images");
    }
    // Full 784×784 Jacobians of the U-Net, exact forward and reverse mode (784 products each).
    if !args.quick {
        let x: Vec<f32> = (0..784).map(|i| ((i % 255) as f32) / 255.0).collect();
        for (label, method) in [("forward", JacobianMethod::Forward), ("reverse", JacobianMethod::Reverse)] {
            let name = format!("unet jacobian {label} b1");
            if !wanted(&name) {
                continue;
            }
            let (seconds, repeats) =
                time_it(time_budget, || derivative::jacobian(&unet_field, &x, &[0.5], method, options, |_, _| Ok(())))?;
            record(name, seconds, repeats, 784.0 * unet_flops, 1.0, "jacobians");
        }
    }
    // Exact forward-mode J·V, 8 tangents for each of 4 images (one linearisation, then 8 tangent passes each).
    let name = "unet jvp exact k8 b4".to_string();
    if wanted(&name) {
        let (images, k) = (4, 8);
        let x: Vec<f32> = (0..images * 784).map(|i| ((i % 255) as f32) / 255.0).collect();
        let v: Vec<f32> = (0..images * k * 784).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect();
        let (seconds, repeats) = time_it(time_budget, || {
            derivative::jvp(&unet_field, &x, &[0.5], &v, JvpMethod::Exact, false, options).map(|_| ())
        })?;
        record(name, seconds, repeats, (k + 1) as f64 * unet_flops * images as f64, (images * k) as f64, "products");
    }
    // One finite-difference J·v per image (three guarded central steps: six forwards).
    let name = "unet jvp fd b4".to_string();
    if wanted(&name) {
        let images = 4;
        let x: Vec<f32> = (0..images * 784).map(|i| ((i % 255) as f32) / 255.0).collect();
        let v: Vec<f32> = (0..images * 784).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect();
        let (seconds, repeats) = time_it(time_budget, || {
            derivative::jvp(&unet_field, &x, &[0.5], &v, JvpMethod::Fd, false, options).map(|_| ())
        })?;
        record(name, seconds, repeats, 6.0 * unet_flops * images as f64, images as f64, "products");
    }

    if !args.quick {
        let x: Vec<f32> = (0..784).map(|i| ((i % 255) as f32) / 255.0).collect();
        let name = "unet spectrum dense b1".to_string();
        if wanted(&name) {
            let settings = scorelens::analysis::SpectrumSettings { k: 784, threshold_c: 2.0, vectors: false };
            let (seconds, repeats) = time_it(time_budget, || {
                scorelens::analysis::spectra(&unet_field, &x, &[0.5], settings, options, |_, _| Ok(()))
            })?;
            record(name, seconds, repeats, 784.0 * unet_flops, 1.0, "spectra");
        }
        // The first paper's per-level workload is 128 points: on GPUs; a software driver takes one (≈ 17 s).
        let top32_points: &[usize] = if ctx.caps.is_cpu() { &[1] } else { &[1, 128] };
        for &points in top32_points {
            let name = format!("unet top32 rsvd b{points}");
            if wanted(&name) {
                let x: Vec<f32> = (0..points * 784).map(|i| ((i % 253) as f32) / 253.0).collect();
                let (seconds, repeats) = time_it(time_budget, || top32(&unet_field, &x, options))?;
                let flop = 4.0 * 80.0 * unet_flops * points as f64;
                record(name, seconds, repeats, flop, points as f64, "points");
            }
        }
    }
    // The U-Net Lyapunov workload is 128 trajectories × 32 tangents: on GPUs only (hours a step here).
    let unet_lyapunov: &[(usize, usize)] = if ctx.caps.is_cpu() { &[(2, 8)] } else { &[(2, 8), (128, 32)] };
    for &(trajectories, k) in unet_lyapunov.iter().filter(|_| !args.quick) {
        let name = format!("lyapunov step unet b{trajectories} k{k}");
        if wanted(&name) {
            let x: Vec<f32> = (0..trajectories * 784).map(|i| ((i % 251) as f32) / 251.0).collect();
            let steps = 2;
            let (seconds, repeats) = time_it(time_budget, || lyapunov_steps(&unet_field, &x, k, steps, options))?;
            let flop = (k + 2) as f64 * unet_flops * trajectories as f64;
            record(name, seconds / steps as f64, repeats, flop, trajectories as f64, "trajectory-steps");
        }
    }

    if args.json {
        let info = &ctx.caps.info;
        let report = Report {
            adapter: info.name.clone(),
            backend: format!("{:?}", info.backend),
            driver: format!("{} {}", info.driver, info.driver_info),
            peak_f32_gflops: peak,
            items,
        };
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| Error::bad_input("bench report", e.to_string()))?;
        println!("{text}");
    }
    Ok(())
}

/// `steps` ODE-Euler sampler steps of the Lyapunov analysis from `x` with K tangents.
fn lyapunov_steps(field: &ScoreField, x: &[f32], k: usize, steps: usize, options: JobOptions) -> Result<()> {
    lyapunov_steps_with(field, x, k, steps, options, false)
}

/// As [`lyapunov_steps`], through the host path when `host`.
fn lyapunov_steps_with(
    field: &ScoreField,
    x: &[f32],
    k: usize,
    steps: usize,
    options: JobOptions,
    host: bool,
) -> Result<()> {
    use scorelens::analysis::lyapunov::{lyapunov, lyapunov_generic, Dynamics, LyapunovSettings};
    use scorelens::sampler::SamplerKind;
    let dynamics = Dynamics::Sampler { kind: SamplerKind::OdeEuler, steps, eps: 0.3, seed: 0 };
    let run = if host { lyapunov_generic } else { lyapunov };
    run(field, x, dynamics, LyapunovSettings::new(k), options).map(|_| ())
}

/// The top 32 singular triplets per point by randomized SVD, a fixed 4 iterations (no early stop).
fn top32(field: &ScoreField, x: &[f32], options: JobOptions) -> Result<()> {
    use scorelens::analysis::lowrank::{top_singular_triplets, LowRankSettings};
    let settings = LowRankSettings { k: 32, oversampling: 8, tolerance: 0.0, max_iterations: 4, seed: 0 };
    top_singular_triplets(field, x, &[0.5], 0, settings, options).map(|_| ())
}
