//! `scorelens spectrum MODEL --x X.npy --t T [--k K] [--vectors] [--method dense] -o DIR`, and
//! `scorelens spectrum MODEL --from-samples DIR ... -o OUT`: the spectrum at every noise level a sampler recorded.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use scorelens::analysis::{self, MatrixFreeSolver, PointSpectrum, SpectrumRoute, SpectrumSettings};
use scorelens::io::{npy, write_atomically};
use scorelens::report::{self, Series};
use scorelens::{Error, Result};

use super::inputs::{FieldArgs, Job, LoadedField, Points};
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
            spectrum_of(args, &job, &args.output)?;
            job.shard.write_manifest(&args.output, &[], &[])
        }
        _ => Err(Error::InvalidArgument("give --x X.npy --t T, or --from-samples DIR".into())),
    }
}

/// The first paper's experiment: spectra of the sampler's iterates at each recorded noise level.
fn from_samples(args: &SpectrumArgs, samples: &std::path::Path) -> Result<()> {
    let recorded = npy::read_f32(&samples.join("recorded.npy"))?;
    let times = npy::read_f64(&samples.join("recorded_t.npy"))?;
    let what = samples.join("recorded.npy").display().to_string();
    if recorded.shape.len() < 3 || times.data.len() != recorded.shape[0] {
        return Err(Error::bad_input(
            what,
            format!(
                "shape {:?} with {} times in recorded_t.npy; expected [R, N, ...] and R times (scorelens sample --record-sigmas)",
                recorded.shape,
                times.data.len()
            ),
        ));
    }
    let sigmas: Vec<f64> = std::fs::read_to_string(samples.join("summary.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| serde_json::from_value(v["record_sigmas"].clone()).ok())
        .unwrap_or_default();
    let levels = recorded.shape[0];
    let per_level = recorded.data.len() / levels;
    std::fs::create_dir_all(&args.output).map_err(|e| Error::io(&args.output, e))?;
    let mut rows = Vec::new();
    let mut field = args.source.load()?;
    let mut devices: Vec<scorelens::ScoreField> = match &args.compute.devices {
        Some(spec) => scorelens::gpu::contexts_for(spec)?
            .into_iter()
            .map(|ctx| args.source.load_on(ctx).map(|l| l.field))
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let mut shard = None;
    for level in 0..levels {
        let t = times.data[level];
        let std = field.field.schedule().std(t);
        let sigma = sigmas.get(level).copied().unwrap_or(std);
        let points = Points {
            shape: recorded.shape[1..].to_vec(),
            data: recorded.data[level * per_level..(level + 1) * per_level].to_vec(),
            rows: recorded.shape[1],
        };
        super::inputs::check_points(&points, &field.field, &what)?;
        let mut job =
            Job::from_parts(field, points, vec![t as f32], args.shard.as_deref(), args.compute.memory_budget()?)?;
        job.devices = std::mem::take(&mut devices);
        let dir = args.output.join(format!("sigma_{sigma}"));
        let spectra = spectrum_of(args, &job, &dir)?;
        devices = job.devices;
        shard = Some(job.shard);
        field = LoadedField { field: job.field, source: job.source };
        let dims: Vec<f64> = spectra.iter().map(|s| s.local_dimension_threshold as f64).collect();
        let gaps: Vec<f64> = spectra.iter().map(|s| s.local_dimension_gap as f64).collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        rows.push(serde_json::json!({
            "sigma": sigma,
            "t": t,
            "std": std,
            "folder": format!("sigma_{sigma}"),
            "points": spectra.len(),
            "mean_local_dimension_threshold": mean(&dims),
            "mean_local_dimension_gap": mean(&gaps),
            "mean_nonconservativeness": mean(&spectra.iter().map(|s| s.nonconservativeness).collect::<Vec<_>>()),
            "mean_alignment": mean(&spectra.iter().map(|s| mean(&s.alignment)).collect::<Vec<_>>()),
        }));
    }
    let shard = shard.ok_or_else(|| Error::bad_input(what, "no recorded levels"))?;
    let summary = serde_json::json!({
        "command": "spectrum --from-samples",
        "samples": samples.display().to_string(),
        "levels": rows,
        "shard": shard.summary(),
    });
    let text = serde_json::to_string_pretty(&summary).map_err(|e| Error::bad_input("summary.json", e.to_string()))?;
    write_atomically(&args.output.join("summary.json"), text.as_bytes())?;
    shard.write_manifest(&args.output, &[], &[])
}

/// The spectrum of every row of the job, written to `dir`; returns the spectra.
fn spectrum_of(args: &SpectrumArgs, job: &Job, dir: &std::path::Path) -> Result<Vec<PointSpectrum>> {
    let d = job.field.dim();
    let k = args.k.unwrap_or(d);
    if k == 0 || k > d {
        return Err(Error::InvalidArgument(format!("--k {k} must be between 1 and D = {d}")));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // Finished rows are appended here as they come, so an interrupted run keeps them.
    let progress_path = dir.join("rows.jsonl");
    let mut progress = std::fs::File::create(&progress_path).map_err(|e| Error::io(&progress_path, e))?;

    let settings = SpectrumSettings { k, threshold_c: args.threshold_c, vectors: args.vectors };
    let rows = job.x.rows;
    let mut spectra: Vec<PointSpectrum> = Vec::with_capacity(rows);
    let started = Instant::now();
    let bar = Bar::new();
    // Rows are numbered in the whole input (a shard's first row is its offset), so merged rows.jsonl are the whole's.
    let first_row = job.shard.rows.start;
    // The route is chosen for the whole input (not this shard's rows), so every shard takes the same one.
    let choice = match args.method {
        SpectrumMethod::Auto => Some(analysis::route::choose_route_for(
            &job.field,
            job.shard.total,
            k,
            args.tol,
            args.probes,
            args.oversampling,
            job.options(&bar),
        )),
        _ => None,
    };
    let route = match (args.method, &choice) {
        (_, Some(choice)) => choice.route,
        (SpectrumMethod::Dense, _) => SpectrumRoute::Dense,
        (SpectrumMethod::Subspace, _) => SpectrumRoute::Subspace,
        (SpectrumMethod::Rsvd, _) => SpectrumRoute::Rsvd,
        (SpectrumMethod::Krylov | SpectrumMethod::Auto, _) => SpectrumRoute::Krylov,
    };
    let mut record = |row: usize, s: PointSpectrum| -> Result<()> {
        let line = serde_json::json!({
            "row": first_row + row,
            "converged": s.converged,
            "singular_values": s.singular_values,
            "local_dimension_threshold": s.local_dimension_threshold,
            "local_dimension_gap": s.local_dimension_gap,
            "nonconservativeness": s.nonconservativeness,
        });
        writeln!(progress, "{line}").and_then(|_| progress.flush()).map_err(|e| Error::io(&progress_path, e))?;
        spectra.push(s);
        Ok(())
    };
    if route == SpectrumRoute::Dense && job.devices.len() > 1 {
        let blocks = job.split(|field, _, x, t| {
            let mut block = Vec::new();
            analysis::spectra(field, x, t, settings, job.options(&bar), |_, s| {
                block.push(s);
                Ok(())
            })?;
            Ok(block)
        })?;
        for (row, s) in blocks.into_iter().flatten().enumerate() {
            record(row, s)?;
        }
    } else if route == SpectrumRoute::Dense {
        let field = job.devices.first().unwrap_or(&job.field);
        analysis::spectra(field, &job.x.data, &job.t, settings, job.options(&bar), &mut record)?;
    } else {
        // Starting blocks and probes are drawn per row and each row stops at its own convergence, so device
        // blocks and shards give the whole run's rows.
        let blocks = job.split(|field, rows, x, t| {
            let lowrank = analysis::lowrank::LowRankSettings {
                k,
                oversampling: if route == SpectrumRoute::Rsvd { args.oversampling } else { 0 },
                tolerance: args.tol,
                max_iterations: args.max_iter,
                seed: args.seed,
                first_row: job.shard.rows.start + rows.start,
            };
            let solver =
                if route == SpectrumRoute::Krylov { MatrixFreeSolver::Krylov } else { MatrixFreeSolver::Power };
            let options = job.options(&bar);
            analysis::matrix_free_spectra(field, x, t, solver, lowrank, args.threshold_c, args.probes, options)
        })?;
        for (row, s) in blocks.into_iter().flatten().enumerate() {
            record(row, s)?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(warning) = analysis::spectrum::unconverged_warning(&spectra, first_row, route.name()) {
        eprintln!("{warning}");
    }

    let per_row = |f: &dyn Fn(&PointSpectrum) -> &Vec<f64>| -> Vec<f64> {
        spectra.iter().flat_map(|s| f(s).iter().copied()).collect()
    };
    npy::write_f64(&dir.join("singular_values.npy"), &[rows, k], &per_row(&|s| &s.singular_values))?;
    npy::write_f64(&dir.join("residuals.npy"), &[rows, k], &per_row(&|s| &s.residuals))?;
    npy::write_f64(&dir.join("alignment.npy"), &[rows, k], &per_row(&|s| &s.alignment))?;
    npy::write_f64(&dir.join("overlap.npy"), &[rows, k], &per_row(&|s| &s.overlap))?;
    let threshold: Vec<i64> = spectra.iter().map(|s| s.local_dimension_threshold as i64).collect();
    let gap: Vec<i64> = spectra.iter().map(|s| s.local_dimension_gap as i64).collect();
    npy::write_i64(&dir.join("local_dimension_threshold.npy"), &[rows], &threshold)?;
    npy::write_i64(&dir.join("local_dimension_gap.npy"), &[rows], &gap)?;
    let nonconservativeness: Vec<f64> = spectra.iter().map(|s| s.nonconservativeness).collect();
    npy::write_f64(&dir.join("nonconservativeness.npy"), &[rows], &nonconservativeness)?;
    if args.vectors {
        for (name, pick) in [("left_vectors.npy", 0), ("right_vectors.npy", 1)] {
            let values: Vec<f32> = spectra
                .iter()
                .flat_map(|s| {
                    if pick == 0 { s.left.as_deref() } else { s.right.as_deref() }
                        .unwrap_or(&[])
                        .iter()
                        .map(|&v| v as f32)
                })
                .collect();
            npy::write_f32(&dir.join(name), &[rows, k, d], &values)?;
        }
    }
    let std_of_row: Vec<f64> = (0..rows)
        .map(|r| job.field.schedule().std(if job.t.len() == 1 { job.t[0] } else { job.t[r] } as f64))
        .collect();
    let summary = serde_json::json!({
        "command": "spectrum",
        "model": job.source,
        "method": route.name(),
        "method_requested": format!("{:?}", args.method).to_lowercase(),
        "method_reason": choice.as_ref().map_or_else(|| "given by --method".to_string(), |c| c.reason.clone()),
        "products": spectra.iter().map(|s| s.products).sum::<usize>(),
        "converged": spectra.iter().all(|s| s.converged),
        "tol": args.tol,
        "k": k,
        "dim": d,
        "threshold_c": args.threshold_c,
        "adapter": job.field_adapter(),
        "seconds": seconds,
        "devices": job.devices.len().max(1),
        "shard": job.shard.summary(),
        "rows": spectra.iter().enumerate().map(|(r, s)| serde_json::json!({
            "row": first_row + r,
            "std": std_of_row[r],
            "s1": s.singular_values[0],
            "s_k": s.singular_values[k - 1],
            "converged": s.converged,
            "products": s.products,
            "max_residual": s.residuals.iter().cloned().fold(0.0, f64::max),
            "max_transpose_residual": (!s.transpose_residuals.is_empty())
                .then(|| s.transpose_residuals.iter().cloned().fold(0.0, f64::max)),
            "local_dimension_threshold": s.local_dimension_threshold,
            "local_dimension_gap": s.local_dimension_gap,
            "nonconservativeness": s.nonconservativeness,
            "mean_alignment": s.alignment.iter().sum::<f64>() / k as f64,
        })).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&summary).map_err(|e| Error::bad_input("summary.json", e.to_string()))?;
    write_atomically(&dir.join("summary.json"), text.as_bytes())?;
    if args.plot {
        plot(dir, &spectra, &std_of_row)?;
    }
    Ok(spectra)
}

/// The figures of the first paper: 1/sᵢ against rank with each row's noise level std(t)² (dashed, same colour;
/// off-manifold directions sit near it), and uᵢ·vᵢ against rank (−1 where the field is locally conservative).
fn plot(dir: &std::path::Path, spectra: &[PointSpectrum], std_of_row: &[f64]) -> Result<()> {
    const MOST_CURVES: usize = 12;
    let label = |r: usize| format!("row {r}: std(t)² = {:.3}", std_of_row[r].powi(2));
    let inverse: Vec<Series> = spectra
        .iter()
        .take(MOST_CURVES)
        .enumerate()
        .map(|(r, s)| Series {
            label: label(r),
            points: s.singular_values.iter().enumerate().map(|(i, v)| ((i + 1) as f64, 1.0 / v)).collect(),
            reference: Some(std_of_row[r].powi(2)),
        })
        .collect();
    report::line_chart(
        &dir.join("spectrum.png"),
        "Inverse singular values of the score Jacobian (dashed: std(t)²)",
        "rank i",
        "1 / s_i",
        &inverse,
        true,
    )?;
    let alignment: Vec<Series> = spectra
        .iter()
        .take(MOST_CURVES)
        .enumerate()
        .map(|(r, s)| Series {
            label: label(r),
            points: s.alignment.iter().enumerate().map(|(i, a)| ((i + 1) as f64, *a)).collect(),
            reference: None,
        })
        .collect();
    report::line_chart(
        &dir.join("alignment.png"),
        "Alignment of singular vectors u_i · v_i",
        "rank i",
        "u_i · v_i",
        &alignment,
        false,
    )
}
