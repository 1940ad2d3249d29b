//! The demo's analyses, one function a section: each runs on the shipped models, writes its arrays and figures,
//! and adds its text, tables and findings to the report.

use scorelens::analysis::{descriptors as describe, spectra as spectra_of, DescribedMap, DescriptorSettings};
use scorelens::analysis::{Directions, SpectrumSettings};
use scorelens::io::npy;
use scorelens::report::{line_chart, scatter_chart, PointSet, Series};
use scorelens::sampler::{initial_points, sample, SamplerConfig, SamplerKind, SeededNoise};
use scorelens::Result;

use super::geometry::KnownGeometry;
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
        "Euler–Maruyama on Song's grid, {} steps from t = 1 to 1e-3, x_T = std(1)·z, seeded; the iterate is recorded \
         at the first grid time where std(t) ≤ σ for σ ∈ {:?}. (σ = 0.01 of the first paper lies below the grid's \
         last noise level, 0.032: EM with this Δt is unstable there.)",
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

pub(crate) fn spectra(run: &mut Run, models: &[Trained], recorded: &[Recorded]) -> Result<()> {
    println!("2. Jacobian spectra against noise level (arXiv 2311.09952)");
    run.doc.heading(2, "2. Jacobian spectra and local dimension (arXiv 2311.09952)");
    run.doc.paragraph(
        "At each recorded level, the exact score Jacobian J = U S Vᵀ of the first samples, at their grid time. For \
         Gaussian data 1/sᵢ is the variance along vᵢ plus σ², so directions off the manifold sit at 1/sᵢ ≈ σ². Local \
         dimension by the threshold rule #{i : 1/sᵢ > 2σ²} and by the largest gap in log sᵢ; alignment cᵢ = uᵢ·vᵢ \
         (−1 for a conservative field); non-conservativeness ‖J − Jᵀ‖_F / ‖J + Jᵀ‖_F.",
    );
    let mut dimension_curves = Vec::new();
    for (m, rec) in models.iter().zip(recorded) {
        let d = m.dim;
        let points = run.sizes.spectrum_points.min(rec.samples.len() / d);
        let mut rows = Vec::new();
        let mut threshold_curve = Vec::new();
        let mut gap_curve = Vec::new();
        let mut alignments = Vec::new();
        let mut inverse_curves = Vec::new();
        for (level, (&sigma, &t)) in SIGMAS.iter().zip(&rec.times).enumerate() {
            let x = &rec.iterates[level][..points * d];
            let settings = SpectrumSettings { k: d, threshold_c: 2.0, vectors: false };
            let mut found = Vec::new();
            spectra_of(&m.field, x, &[t as f32], settings, run.options, |_, s| {
                found.push(s);
                Ok(())
            })?;
            let std = m.field.schedule().std(t);
            let threshold = mean(found.iter().map(|s| s.local_dimension_threshold as f64));
            let gap = mean(found.iter().map(|s| s.local_dimension_gap as f64));
            let top_alignment = mean(found.iter().map(|s| s.alignment[0]));
            let last_alignment = mean(found.iter().map(|s| s.alignment[d - 1]));
            let nonconservative = mean(found.iter().map(|s| s.nonconservativeness));
            let values: Vec<f64> = found.iter().flat_map(|s| s.singular_values.iter().copied()).collect();
            npy::write_f64(&run.path(&[m.name, &format!("spectrum_sigma_{sigma}.npy")])?, &[found.len(), d], &values)?;
            threshold_curve.push((sigma, threshold));
            alignments.push((top_alignment, last_alignment));
            gap_curve.push((sigma, gap));
            inverse_curves.push(Series {
                label: format!("σ = {sigma} (std {std:.3})"),
                points: (0..d)
                    .map(|i| ((i + 1) as f64, mean(found.iter().map(|s| 1.0 / s.singular_values[i]))))
                    .collect(),
                reference: Some(std * std),
            });
            rows.push(vec![
                sigma.to_string(),
                format!("{std:.4}"),
                format!("{threshold:.2}"),
                format!("{gap:.2}"),
                format!("{top_alignment:+.3}"),
                format!("{last_alignment:+.3}"),
                format!("{nonconservative:.3}"),
            ]);
            run.summary.insert(
                format!("spectra_{}_sigma_{sigma}", m.name),
                serde_json::json!({"std": std, "local_dimension_threshold": threshold, "local_dimension_gap": gap,
                    "alignment_top": top_alignment, "alignment_last": last_alignment, "nonconservativeness": nonconservative}),
            );
        }
        run.doc.heading(3, format!("`{}` (D = {d}, {points} points a level)", m.name));
        run.doc.table(
            &["σ", "std(t)", "local dim. (threshold)", "local dim. (gap)", "c₁ = u₁·v₁", "c_D", "non-conservativeness"],
            rows,
        );
        let figure = format!("{}/inverse_singular_values.png", m.name);
        line_chart(
            &run.path(&[m.name, "inverse_singular_values.png"])?,
            &format!("{}: mean 1/s_i by rank at each noise level (dashed: std(t)²)", m.name),
            "rank i",
            "1 / s_i",
            &inverse_curves,
            true,
        )?;
        run.doc.figure(
            figure,
            format!("`{}`: mean inverse singular values against rank, each level's std(t)² dashed.", m.name),
        );
        // The manifold shows once σ is small against its curvature but still above the data's own jitter
        // (moons: noise 0.05, so σ = 0.07; circle: 0.01, so the smallest level, 0.032).
        let level = if m.name == "moons" { SIGMAS.len() - 2 } else { SIGMAS.len() - 1 };
        let (at, small, small_gap) = (SIGMAS[level], threshold_curve[level].1, gap_curve[level].1);
        let large_gap = gap_curve.first().map_or(f64::NAN, |p| p.1);
        let (top, last) = alignments[level];
        run.finding(
            &format!("{}: conservative off the manifold (u₁·v₁ ≈ −1), not within it (u_D·v_D departs from −1)", m.name),
            format!("u₁·v₁ = {top:+.3}, u_D·v_D = {last:+.3} at σ = {at}"),
            Some(top < -0.9 && last > -0.9),
        );
        match m.name {
            "circle16" | "moons" => {
                run.finding(
                    &format!("{}: local dimension ≈ 1 (the manifold's) at small noise", m.name),
                    format!("{small:.2} (threshold rule) / {small_gap:.2} (gap rule) at σ = {at}"),
                    Some((small - 1.0).abs() <= 0.5 || (small_gap - 1.0).abs() <= 0.5),
                );
                if m.name == "circle16" {
                    run.finding(
                        "circle16: local dimension grows toward D at large noise",
                        format!("gap rule {small_gap:.2} at σ = {at} → {large_gap:.2} at σ = 3 (D = 16)"),
                        Some(large_gap > small_gap + 1.0),
                    );
                }
            }
            _ => run.finding(
                &format!("{}: local dimension well below D at small noise", m.name),
                format!("{small:.1} (threshold) / {small_gap:.1} (gap) of D = {d} at σ = {at}"),
                Some(small.min(small_gap) < d as f64 / 2.0),
            ),
        }
        dimension_curves.push(Series {
            label: format!("{} (threshold rule)", m.name),
            points: threshold_curve,
            reference: None,
        });
        dimension_curves.push(Series { label: format!("{} (gap rule)", m.name), points: gap_curve, reference: None });
    }
    // Local dimension against σ: x is σ, drawn on its log (x) axis by plotting log10 σ.
    let curves: Vec<Series> = dimension_curves
        .into_iter()
        .map(|s| Series { points: s.points.iter().map(|&(x, y)| (x.log10(), y)).collect(), ..s })
        .collect();
    line_chart(
        &run.path(&["local_dimension.png"])?,
        "Local dimension against noise level",
        "log10 σ",
        "local dimension",
        &curves,
        false,
    )?;
    run.doc.figure("local_dimension.png", "Local dimension (both rules) of every model against log10 σ.");
    run.doc.paragraph(
        "Reading: the first paper finds the learned Jacobian's spectrum splits into σ⁻²-sized off-manifold values and \
         small on-manifold ones, so the local dimension read at small σ is the data manifold's; the alignment uᵢ·vᵢ is \
         near −1 for the off-manifold (top) directions and departs from it within the manifold, where the learned \
         field is not conservative.",
    );
    Ok(())
}

pub(crate) fn descriptors(run: &mut Run, models: &[Trained], recorded: &[Recorded]) -> Result<()> {
    println!("3. local scaling, rank and complexity (arXiv 2408.08307)");
    run.doc.heading(2, "3. Local scaling, rank and complexity (arXiv 2408.08307)");
    let radius = 0.05;
    run.doc.paragraph(format!(
        "For the denoiser D(x) = x + std(t)² s(x, t) at the recorded samples: local scaling ψ = Σ log σᵢ, local rank \
         ν = exp(−Σ pᵢ log pᵢ) with pᵢ = σᵢ/Σσⱼ (all D singular values of ∂D/∂x), and local complexity δ: hidden \
         SiLU units whose pre-activation changes sign between the point and any vertex x ± r eⱼ of the cross-polytope \
         of radius r = {radius} (coordinate axes). SiLU is smooth, so δ counts sign changes of its inputs, not linear \
         regions."
    ));
    let mut rank_curves = Vec::new();
    for (m, rec) in models.iter().zip(recorded) {
        let d = m.dim;
        let points = run.sizes.spectrum_points.min(rec.samples.len() / d);
        let mut rows = Vec::new();
        let mut curve = Vec::new();
        for (level, (&sigma, &t)) in SIGMAS.iter().zip(&rec.times).enumerate() {
            let settings =
                DescriptorSettings { map: DescribedMap::Denoiser, k: d, radius, directions: Directions::Axes };
            let mut found = Vec::new();
            describe(&m.field, &rec.iterates[level][..points * d], &[t as f32], &settings, run.options, |_, p| {
                found.push(p);
                Ok(())
            })?;
            let psi = mean(found.iter().map(|p| p.local_scaling));
            let nu = mean(found.iter().map(|p| p.local_rank));
            let delta = mean(found.iter().map(|p| p.local_complexity as f64));
            curve.push((sigma.log10(), nu));
            rows.push(vec![sigma.to_string(), format!("{psi:.2}"), format!("{nu:.2}"), format!("{delta:.1}")]);
            run.summary.insert(
                format!("descriptors_{}_sigma_{sigma}", m.name),
                serde_json::json!({"local_scaling": psi, "local_rank": nu, "local_complexity": delta}),
            );
        }
        run.doc.heading(3, format!("`{}` (D = {d})", m.name));
        run.doc.table(&["σ", "ψ (mean)", "ν (mean)", "δ (mean)"], rows);
        let at = |level: usize| curve.get(level).map_or(f64::NAN, |p| p.1);
        run.finding(
            &format!("{}: local rank ν of the denoiser from large to small noise (reported)", m.name),
            format!(
                "ν = {:.2} (σ = 3) → {:.2} (σ = 0.07) → {:.2} (σ = 0.032), D = {d}",
                at(0),
                at(SIGMAS.len() - 2),
                at(SIGMAS.len() - 1)
            ),
            None,
        );
        rank_curves.push(Series { label: m.name.to_string(), points: curve, reference: None });
    }
    line_chart(
        &run.path(&["local_rank.png"])?,
        "Local rank ν of the denoiser against noise level",
        "log10 σ",
        "ν",
        &rank_curves,
        false,
    )?;
    run.doc.figure("local_rank.png", "Local rank of the denoiser against log10 σ.");
    Ok(())
}
