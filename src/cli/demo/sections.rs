//! The demo's analyses, one function a section: each runs on the shipped models, writes its arrays and figures,
//! and adds its text, tables and findings to the report.

use scorelens::analysis::lyapunov::{lyapunov as lyapunov_run, Dynamics, LyapunovSettings};
use scorelens::analysis::ridge::{ridge_phase, ScmsSettings};
use scorelens::field::{KdeField, KdeScale};
use scorelens::io::npy;
use scorelens::report::{histogram_points, line_chart, scatter_chart, PointSet, Series};
use scorelens::sampler::{initial_points, sample, SamplerConfig, SamplerKind, SeededNoise};
use scorelens::Result;

use super::geometry::{abs_cos, random_abs_cos, KnownGeometry};
use super::{Run, Trained};

/// The noise levels recorded along every sampler run: the first paper's levels that Song's 500-step grid reaches
/// (its last point, t = 1e-3, has std 0.032), and two large ones.
pub(crate) const SIGMAS: [f64; 6] = [3.0, 1.0, 0.3, 0.15, 0.07, 0.032];

/// One model's sampler run: the iterates at each recorded level and the final samples.
pub(crate) struct Recorded {
    pub times: Vec<f64>,
    pub iterates: Vec<Vec<f32>>,
    pub samples: Vec<f32>,
}

fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values.into_iter().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    if values.is_empty() {
        f64::NAN
    } else {
        values[values.len() / 2]
    }
}

fn rows_of(x: &[f32], d: usize) -> impl Iterator<Item = &[f32]> {
    x.chunks(d)
}

/// Distance from each row to its nearest training point (brute force on the host; the demo's sizes are small).
fn nearest_distances(points: &[f32], data: &[f32], d: usize) -> Vec<f64> {
    rows_of(points, d)
        .map(|p| {
            rows_of(data, d)
                .map(|q| p.iter().zip(q).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>())
                .fold(f64::INFINITY, f64::min)
                .sqrt()
        })
        .collect()
}

pub(crate) fn sampling(run: &mut Run, models: &[Trained], geometry: &KnownGeometry) -> Result<Vec<Recorded>> {
    println!("1. sampling");
    run.doc.heading(2, "1. Sampling");
    run.doc.paragraph(format!(
        "The known-manifold models `moons` and `circle16`: Euler–Maruyama on Song's grid, {} steps from t = 1 to \
         1e-3, x_T = std(1)·z, seeded; the iterate is recorded at the first grid time where std(t) ≤ σ for \
         σ ∈ {:?}. (The grid's last noise level is 0.032; the U-Net's chains in section 2 step on a grid in σ that \
         reaches the first paper's 0.01.)",
        run.sizes.steps, SIGMAS
    ));
    let mut out = Vec::new();
    let mut rows = Vec::new();
    for (m, n) in models.iter().zip(run.sizes.samples) {
        let mut noise = SeededNoise::new(2026);
        let x_init = initial_points(&m.field, n, &mut noise);
        let mut config = SamplerConfig::new(SamplerKind::Em, run.sizes.steps);
        config.record_sigmas = SIGMAS.to_vec();
        let result = sample(&m.field, &x_init, &config, &mut noise, run.options)?;
        let d = m.dim;
        npy::write_f32(&run.path(&[m.name, "samples.npy"])?, &[n, d], &result.samples)?;
        npy::write_f32(&run.path(&[m.name, "recorded.npy"])?, &[SIGMAS.len(), n, d], &result.recorded.concat())?;
        npy::write_f64(&run.path(&[m.name, "recorded_t.npy"])?, &[SIGMAS.len()], &result.recorded_t)?;
        let nearest = nearest_distances(&result.samples, &m.data, d);
        let data_probe: Vec<f32> = m.data.iter().take(200 * d).copied().collect();
        let data_nearest: Vec<f64> = {
            // Each probe's nearest other training point.
            let rest: Vec<f32> = m.data[(200 * d).min(m.data.len())..].to_vec();
            nearest_distances(&data_probe, &rest, d)
        };
        let manifold = match m.name {
            "moons" | "circle16" => {
                let distances: Vec<f64> =
                    rows_of(&result.samples, d).filter_map(|x| geometry.of(m.name, x).map(|g| g.0)).collect();
                format!("{:.4}", median(distances))
            }
            _ => "—".into(),
        };
        rows.push(vec![
            format!("`{}`", m.name),
            n.to_string(),
            format!("{:.4}", median(nearest.clone())),
            format!("{:.4}", median(data_nearest.clone())),
            manifold,
        ]);
        run.summary.insert(
            format!("sampling_{}", m.name),
            serde_json::json!({
                "samples": n,
                "median_nearest_training_distance": median(nearest),
                "median_training_nearest_neighbour_distance": median(data_nearest),
                "recorded_t": result.recorded_t,
            }),
        );
        out.push(Recorded { times: result.recorded_t, iterates: result.recorded, samples: result.samples });
    }
    run.doc.table(
        &[
            "model",
            "samples",
            "median distance to nearest training point",
            "same for training points (to the rest)",
            "median distance to the true manifold",
        ],
        rows,
    );
    // Figures: moons in the plane; the circle in its own plane.
    let moons = &models[0];
    let figure = run.path(&["moons", "samples.png"])?;
    let data: Vec<(f64, f64)> = rows_of(&moons.data, 2).take(3000).map(|p| (p[0] as f64, p[1] as f64)).collect();
    let samples: Vec<(f64, f64)> = rows_of(&out[0].samples, 2).map(|p| (p[0] as f64, p[1] as f64)).collect();
    scatter_chart(
        &figure,
        "Two moons: training data and EM samples",
        &[
            PointSet { label: "training data".into(), points: data, size: 1 },
            PointSet { label: "samples".into(), points: samples, size: 2 },
        ],
        Some(((-1.5, 2.5), (-1.25, 1.75))),
    )?;
    run.doc.figure("moons/samples.png", "Two moons: training data and samples from the trained model.");
    let circle = &models[1];
    let project = |x: &[f32]| -> (f64, f64) {
        let q = &geometry.circle_frame;
        let a = (0..16).map(|r| q[r * 2] * x[r] as f64).sum();
        let b = (0..16).map(|r| q[r * 2 + 1] * x[r] as f64).sum();
        (a, b)
    };
    scatter_chart(
        &run.path(&["circle16", "samples.png"])?,
        "Circle in R^16, seen in its plane: data and samples",
        &[
            PointSet {
                label: "training data".into(),
                points: rows_of(&circle.data, 16).take(2000).map(project).collect(),
                size: 1,
            },
            PointSet { label: "samples".into(), points: rows_of(&out[1].samples, 16).map(project).collect(), size: 2 },
        ],
        Some(((-1.6, 1.6), (-1.6, 1.6))),
    )?;
    run.doc.figure("circle16/samples.png", "The circle model's samples projected onto the circle's plane.");
    Ok(out)
}

pub(crate) fn lyapunov(run: &mut Run, models: &[Trained], geometry: &KnownGeometry) -> Result<()> {
    println!("4. Lyapunov vectors of the sampler (arXiv 2508.07581)");
    run.doc.heading(2, "4. Lyapunov vectors of the sampler (arXiv 2508.07581)");
    run.doc.paragraph(format!(
        "The probability-flow ODE sampler (Euler, {} steps on Song's grid) from {} draws of x_T per model, K tangent \
         vectors each, re-orthonormalised by QR every step. The paper's claim: the top finite-time Lyapunov vectors \
         align with the data manifold's tangent spaces (and so are orthogonal to the score). For the moons and the \
         circle the tangent at the final point's nearest manifold point is known; a random direction would give \
         E|cos| = {:.2} (D = 2) and {:.2} (D = 16).",
        run.sizes.steps,
        run.sizes.lyapunov_trajectories,
        random_abs_cos(2),
        random_abs_cos(16)
    ));
    let mut rows = Vec::new();
    let mut histograms = Vec::new();
    // The models whose manifold is known in closed form (the digits' is not, and its network is the costliest).
    for m in models.iter().filter(|m| m.name != "digits") {
        let d = m.dim;
        let k = d.min(4);
        let mut noise = SeededNoise::new(7);
        let x_init = initial_points(&m.field, run.sizes.lyapunov_trajectories, &mut noise);
        let dynamics = Dynamics::Sampler { kind: SamplerKind::OdeEuler, steps: run.sizes.steps, eps: 1e-3, seed: 7 };
        let result = lyapunov_run(&m.field, &x_init, dynamics, LyapunovSettings::new(k), run.options)?;
        let b = result.trajectories;
        npy::write_f64(&run.path(&[m.name, "lyapunov_exponents.npy"])?, &[b, k], &result.exponents)?;
        npy::write_f32(&run.path(&[m.name, "lyapunov_vectors.npy"])?, &[b, k, d], &result.vectors)?;
        npy::write_f64(&run.path(&[m.name, "lyapunov_alignment_with_score.npy"])?, &[b, k], &result.alignment)?;
        let exponents: Vec<f64> = (0..k).map(|j| mean((0..b).map(|i| result.exponents[i * k + j]))).collect();
        let score_alignment: Vec<f64> = (0..k).map(|j| mean((0..b).map(|i| result.alignment[i * k + j]))).collect();
        let tangent_cos: Vec<f64> = (0..b)
            .filter_map(|i| {
                let x = &result.final_x[i * d..(i + 1) * d];
                let v: Vec<f64> = result.vectors[i * k * d..i * k * d + d].iter().map(|&v| v as f64).collect();
                geometry.of(m.name, x).map(|(_, tangent)| abs_cos(&v, &tangent))
            })
            .collect();
        let tangent_text = if tangent_cos.is_empty() {
            "—".to_string()
        } else {
            npy::write_f64(&run.path(&[m.name, "lyapunov_tangent_cos.npy"])?, &[tangent_cos.len()], &tangent_cos)?;
            histograms.push(Series {
                label: format!("{} (random: {:.2})", m.name, random_abs_cos(d)),
                points: histogram_points(&tangent_cos, 20, 0.0, 1.0),
                reference: None,
            });
            let mean_cos = mean(tangent_cos.iter().copied());
            run.finding(
                &format!("{}: the top Lyapunov vector of the sampler aligns with the manifold's tangent", m.name),
                format!(
                    "mean |cos(v₁, tangent)| = {mean_cos:.3} over {b} trajectories (random direction: {:.2})",
                    random_abs_cos(d)
                ),
                // Well above chance: closer to 1 than to a random direction's mean.
                Some(mean_cos > 0.5 * (1.0 + random_abs_cos(d))),
            );
            format!("{mean_cos:.3}")
        };
        run.finding(
            &format!("{}: the top Lyapunov vector is orthogonal to the score at the sample", m.name),
            format!("mean |v₁·s|/‖s‖ = {:.3} (random direction: {:.2})", score_alignment[0], random_abs_cos(d)),
            Some(score_alignment[0] < random_abs_cos(d)),
        );
        rows.push(vec![
            format!("`{}`", m.name),
            k.to_string(),
            exponents.iter().map(|e| format!("{e:.3}")).collect::<Vec<_>>().join(", "),
            score_alignment.iter().map(|a| format!("{a:.3}")).collect::<Vec<_>>().join(", "),
            tangent_text,
        ]);
        run.summary.insert(
            format!("lyapunov_{}", m.name),
            serde_json::json!({"mean_exponents": exponents, "mean_alignment_with_score": score_alignment,
                "mean_abs_cos_with_tangent": if tangent_cos.is_empty() { None } else { Some(mean(tangent_cos.iter().copied())) }}),
        );
    }
    run.doc.table(&["model", "K", "mean exponents λ₁…λ_K", "mean |vᵢ·s|/‖s‖", "mean |cos(v₁, true tangent)|"], rows);
    line_chart(
        &run.path(&["lyapunov_tangent_alignment.png"])?,
        "|cos| between the top Lyapunov vector and the true tangent",
        "|cos(v1, tangent)|",
        "trajectories",
        &histograms,
        false,
    )?;
    run.doc.figure("lyapunov_tangent_alignment.png", "Histogram of |cos(v₁, tangent)| over trajectories.");
    Ok(())
}

pub(crate) fn ridges(run: &mut Run, models: &[Trained], recorded: &[Recorded], geometry: &KnownGeometry) -> Result<()> {
    println!("5. ridges and the normal / tangential error (arXiv 2602.06021)");
    run.doc.heading(2, "5. Density ridges and the model's error (arXiv 2602.06021)");
    run.doc.paragraph(
        "At each recorded level (time t), p_t is the training set smoothed by the model's own forward process \
         (α = 1, σ = std(t)); subspace-constrained mean shift (d = 1) takes the recorded iterates to the ridge of \
         log p_t. The model's error e = s_θ − ∇log p_t at the iterates is split into its part normal to the ridge \
         (E Eᵀ e, E the Hessian's D − 1 most negative eigenvectors) and the tangential rest. The paper's account: \
         samples first reach a neighbourhood of the ridge (distance shrinking with σ), the normal error governs their \
         distance to it, and the tangential error moves them along it.",
    );
    let mut curves = Vec::new();
    for (index, (m, rec)) in models.iter().zip(recorded).enumerate().filter(|(_, (m, _))| m.name != "digits") {
        let d = m.dim;
        // Above D = 2 every SCMS sweep forms D×D Hessians over the data: fewer points, and every 5th training
        // point (2,000 on a circle of length 2π: spacing 0.003, far below the smallest σ, so the same ridge).
        let points = if d > 2 { run.sizes.ridge_points / 4 } else { run.sizes.ridge_points }.min(rec.samples.len() / d);
        let stride = if d > 2 { 5 } else { 1 };
        let data: Vec<f32> = m.data.chunks(d).step_by(stride).flatten().copied().collect();
        let mut rows = Vec::new();
        let (mut distance_curve, mut normal_curve, mut tangent_curve) = (Vec::new(), Vec::new(), Vec::new());
        let mut last_ridge = Vec::new();
        let mut ridge_on_manifold = Vec::new();
        for (level, (&sigma, &t)) in SIGMAS.iter().zip(&rec.times).enumerate().skip(2) {
            let x = &rec.iterates[level][..points * d];
            let kde = KdeField::new(m.ctx.clone(), data.clone(), d, KdeScale::at_time(&m.field.schedule(), t))?;
            let settings = ScmsSettings {
                ridge_dim: 1,
                tolerance: 1e-4,
                max_iterations: 200,
                beta: 0.0,
                ..ScmsSettings::default()
            };
            let model_scores = m.field.score(x, &[t as f32], run.options)?;
            let phase = ridge_phase(&kde, x, &model_scores, settings, run.options)?;
            let ridge = &phase.ridge;
            let converged = ridge.converged.iter().filter(|&&c| c).count() as f64 / points as f64;
            let ridge_to_manifold: Vec<f64> = ridge
                .points
                .chunks(d)
                .zip(&ridge.converged)
                .filter(|(_, &c)| c)
                .filter_map(|(p, _)| geometry.of(m.name, p).map(|g| g.0))
                .collect();
            let std = m.field.schedule().std(t);
            ridge_on_manifold.push((sigma, median(ridge_to_manifold.clone())));
            npy::write_f32(&run.path(&[m.name, &format!("ridge_sigma_{sigma}.npy")])?, &[points, d], &ridge.points)?;
            npy::write_f64(
                &run.path(&[m.name, &format!("error_normal_sigma_{sigma}.npy")])?,
                &[points, d],
                &phase.normal,
            )?;
            npy::write_f64(
                &run.path(&[m.name, &format!("error_tangent_sigma_{sigma}.npy")])?,
                &[points, d],
                &phase.tangent,
            )?;
            let (dist, en, et) = (
                median(phase.distance.clone()),
                mean(phase.normal_norm.iter().copied()),
                mean(phase.tangent_norm.iter().copied()),
            );
            distance_curve.push((sigma.log10(), dist));
            normal_curve.push((sigma.log10(), en * std));
            tangent_curve.push((sigma.log10(), et * std));
            rows.push(vec![
                sigma.to_string(),
                format!("{:.0}%", 100.0 * converged),
                format!("{dist:.4}"),
                format!("{:.4}", median(ridge_to_manifold.clone())),
                format!("{:.3}", en * std),
                format!("{:.3}", et * std),
            ]);
            run.summary.insert(
                format!("ridge_{}_sigma_{sigma}", m.name),
                serde_json::json!({"converged": converged, "median_distance_to_ridge": dist,
                    "median_ridge_to_true_manifold": median(ridge_to_manifold), "mean_normal_error_times_std": en * std,
                    "mean_tangent_error_times_std": et * std}),
            );
            last_ridge = ridge.points.clone();
        }
        run.doc.heading(3, format!("`{}`", m.name));
        run.doc.table(
            &[
                "σ",
                "SCMS converged",
                "median distance iterate → ridge",
                "median ridge → true manifold",
                "mean ‖e⊥‖·std(t)",
                "mean ‖e∥‖·std(t)",
            ],
            rows,
        );
        let first = distance_curve.first().map_or(f64::NAN, |p| p.1);
        let last = distance_curve.last().map_or(f64::NAN, |p| p.1);
        run.finding(
            &format!("{}: samples approach the ridge as noise decreases", m.name),
            format!("median distance to the ridge {first:.3} at σ = 0.3 → {last:.4} at σ = 0.032"),
            Some(last < first),
        );
        if let Some(&(sigma, distance)) = ridge_on_manifold.iter().find(|(s, _)| *s == 0.07) {
            run.finding(
                &format!("{}: the ridge of the smoothed training data lies on the data manifold", m.name),
                format!("median distance of converged ridge points to the true curve {distance:.4} at σ = {sigma}"),
                Some(distance < 0.02),
            );
        }
        curves.push(Series {
            label: format!("{}: distance to ridge", m.name),
            points: distance_curve,
            reference: None,
        });
        curves.push(Series { label: format!("{}: ‖e⊥‖·std", m.name), points: normal_curve, reference: None });
        curves.push(Series { label: format!("{}: ‖e∥‖·std", m.name), points: tangent_curve, reference: None });
        if index == 0 {
            let data: Vec<(f64, f64)> = rows_of(&m.data, 2).take(3000).map(|p| (p[0] as f64, p[1] as f64)).collect();
            let ridge: Vec<(f64, f64)> = rows_of(&last_ridge, 2).map(|p| (p[0] as f64, p[1] as f64)).collect();
            let samples: Vec<(f64, f64)> =
                rows_of(&rec.samples, 2).take(points).map(|p| (p[0] as f64, p[1] as f64)).collect();
            scatter_chart(
                &run.path(&["moons", "ridge.png"])?,
                "Two moons: data, samples and the ridge of p_t (σ = 0.032)",
                &[
                    PointSet { label: "training data".into(), points: data, size: 1 },
                    PointSet { label: "samples".into(), points: samples, size: 2 },
                    PointSet { label: "ridge points (SCMS from the samples)".into(), points: ridge, size: 2 },
                ],
                Some(((-1.5, 2.5), (-1.25, 1.75))),
            )?;
            run.doc.figure("moons/ridge.png", "Two moons: the ridge of the smoothed data found from the samples.");
        }
    }
    line_chart(
        &run.path(&["ridge_phases.png"])?,
        "Distance to the ridge and the error split against noise level",
        "log10 σ",
        "distance / error norm × std(t)",
        &curves,
        true,
    )?;
    run.doc.figure("ridge_phases.png", "Median distance of the iterates to the ridge, and the mean normal and tangential error norms (× std(t)), against log10 σ.");
    Ok(())
}
