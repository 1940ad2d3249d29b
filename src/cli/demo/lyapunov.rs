//! arXiv 2508.07581 (Chandramoorthy & de Clercq, "When and how can inexact generative models still sample from the
//! data manifold?"): its headline by an intervention, next to the Lyapunov-vector alignment that predicts it.
//!
//! On each model with a known manifold: a smooth random error of known size is added to the trained score
//! ([`Perturbed`] with a [`RandomFeatureError`]); the probability-flow ODE runs from the same x_T with and without
//! it; the displacement of each sample is split into its parts tangent and normal to the manifold at the
//! unperturbed sample. Beside it, the top Lyapunov vectors of the same sampler at its final points and their share
//! in the tangent space.

use scorelens::analysis::lyapunov::{lyapunov as lyapunov_run, Dynamics, LyapunovSettings};
use scorelens::field::{Perturbed, RandomFeatureError};
use scorelens::io::npy;
use scorelens::report::{histogram_points, panel, Layer, Panel};
use scorelens::sampler::{initial_points, sample, SamplerConfig, SamplerKind, SeededNoise};
use scorelens::Result;

use super::geometry::KnownGeometry;
use super::stats::{mean, median, Clock};
use super::tangents::Manifolds;
use super::{Finding, Run, Trained};
use std::path::Path;

pub(crate) const PAPER: &str = "arXiv 2508.07581";
/// The added error: RMS size in units of the noise (std(t)·‖e‖), its length scale and features, its seed.
pub(crate) const ERROR_SIZE: f64 = 0.05;
const ERROR_LENGTH: f64 = 0.5;
const ERROR_FEATURES: usize = 64;
const ERROR_SEED: u64 = 25087581;
/// The rule, fixed before the run (docs/demo.md, "arXiv 2508.07581").
pub(crate) const MOSTLY_TANGENT: f64 = 0.8;

/// On the models with a known manifold: moons, circle16 and sphere16.
pub(crate) fn section(run: &mut Run, models: &[Trained], geometry: &KnownGeometry, assets: &Path) -> Result<()> {
    let frame = npy::read_f32(&assets.join("data").join("sphere16_frame.npy"))?;
    let manifolds = Manifolds { geometry, sphere_frame: frame.data.iter().map(|&v| v as f64).collect() };
    let models: Vec<&Trained> = models.iter().filter(|m| Manifolds::dimension(m.name).is_some()).collect();
    let manifolds = &manifolds;
    println!("4. an inexact score moves samples along the manifold (arXiv 2508.07581)");
    let steps = run.sizes.steps;
    run.doc.heading(2, "4. Errors in the score move samples along the manifold (arXiv 2508.07581)");
    run.doc.paragraph(format!(
        "The paper: \"despite learning errors in the score function … the generated samples appear to shift along \
         the support of the data distribution but not away from it\", because the top Lyapunov vectors of the \
         sampler align with the tangent spaces of the data manifold. Intervention: the trained score plus a smooth \
         random error e(x, t) = (ε / std(t)) g(x), g a random-feature field ({ERROR_FEATURES} features, length scale \
         {ERROR_LENGTH}, E‖g‖² = 1), so std(t)·‖e‖ has RMS ε = {ERROR_SIZE} (the unit in which the model cards \
         measure score errors). The probability-flow ODE (Euler, {steps} steps on Song's grid) runs from the same \
         x_T with and without it; each sample's displacement Δ = x̃₀ − x₀ is split at the manifold point nearest \
         to x₀ into its tangent part P_T Δ and the normal rest. Deciding number: the tangent share of the \
         displacement, Σ‖P_T Δ‖² / Σ‖Δ‖² over the samples (a random direction: d/D). Beside it, K = d + 1 \
         Lyapunov vectors of the same sampler from {} other draws of x_T: the share of the top d (d = the \
         manifold's dimension) in the tangent space at their final points.",
        run.sizes.lyapunov_trajectories
    ));
    let mut rows = Vec::new();
    for m in models {
        let Some(d_manifold) = Manifolds::dimension(m.name) else { continue };
        let clock = Clock::start();
        let d = m.dim;
        let n = 4 * run.sizes.lyapunov_trajectories;
        // The intervention: same x_T, same (deterministic) sampler, with and without the error.
        let x_init = initial_points(&m.field, n, &mut SeededNoise::new(2508));
        let config = SamplerConfig::new(SamplerKind::OdeEuler, steps);
        // One run carries both: the first n rows without the error, the next n (the same x_T) with it.
        let error = RandomFeatureError::new(d, ERROR_FEATURES, ERROR_LENGTH, ERROR_SIZE, ERROR_SEED)?;
        let perturbed = Perturbed::new(&m.field, &error)?.only_rows(n..2 * n);
        let both = sample(&perturbed, &x_init.repeat(2), &config, &mut SeededNoise::new(0), run.options)?.samples;
        let (clean, moved) = both.split_at(n * d);
        let (mut tangent_sum, mut total_sum) = (0.0, 0.0);
        let mut shares = Vec::new();
        let mut sizes = Vec::new();
        for (x0, x1) in clean.chunks(d).zip(moved.chunks(d)) {
            let delta: Vec<f64> = x0.iter().zip(x1).map(|(a, b)| *b as f64 - *a as f64).collect();
            if let Some((t, all)) = manifolds.tangent_energy(m.name, x0, &delta) {
                tangent_sum += t;
                total_sum += all;
                sizes.push(all.sqrt());
                if all > 0.0 {
                    shares.push(t / all);
                }
            }
        }
        let share = tangent_sum / total_sum;
        let chance = d_manifold as f64 / d as f64;
        npy::write_f32(&run.path(&[m.name, "intervention_clean.npy"])?, &[n, d], clean)?;
        npy::write_f32(&run.path(&[m.name, "intervention_perturbed.npy"])?, &[n, d], moved)?;
        npy::write_f64(&run.path(&[m.name, "intervention_tangent_share.npy"])?, &[shares.len()], &shares)?;

        // The prediction: the top Lyapunov vectors at the final points, their share in the tangent space.
        println!("  {}: intervention ({})", m.name, clock.lap());
        // The top d and one more (the first d vectors of the QR do not depend on the later ones).
        let k = (d_manifold + 1).min(d);
        let x_lyap = initial_points(&m.field, run.sizes.lyapunov_trajectories, &mut SeededNoise::new(7));
        let dynamics = Dynamics::Sampler { kind: SamplerKind::OdeEuler, steps, eps: 1e-3, seed: 7 };
        let result = lyapunov_run(&m.field, &x_lyap, dynamics, LyapunovSettings::new(k), run.options)?;
        let b = result.trajectories;
        let mut vector_shares = Vec::new();
        for i in 0..b {
            let x = &result.final_x[i * d..(i + 1) * d];
            let top: f64 = (0..d_manifold.min(k))
                .filter_map(|j| {
                    let v: Vec<f64> =
                        result.vectors[(i * k + j) * d..(i * k + j + 1) * d].iter().map(|&a| a as f64).collect();
                    manifolds.tangent_energy(m.name, x, &v).map(|(t, all)| t / all)
                })
                .sum();
            vector_shares.push(top / d_manifold.min(k) as f64);
        }
        let vector_share = mean(vector_shares.iter().copied());
        println!("  {}: with the Lyapunov vectors ({})", m.name, clock.lap());
        let exponents: Vec<f64> = (0..k).map(|j| mean((0..b).map(|i| result.exponents[i * k + j]))).collect();
        npy::write_f64(&run.path(&[m.name, "lyapunov_exponents.npy"])?, &[b, k], &result.exponents)?;
        npy::write_f32(&run.path(&[m.name, "lyapunov_vectors.npy"])?, &[b, k, d], &result.vectors)?;
        npy::write_f64(&run.path(&[m.name, "lyapunov_tangent_share.npy"])?, &[b], &vector_shares)?;

        let figure = format!("{}/intervention_tangent_share.png", m.name);
        let caption = format!(
            "{}: tangent share of the displacement, pooled {share:.3} (rule: ≥ {MOSTLY_TANGENT}; random direction \
             {chance:.3}); top-{d_manifold} Lyapunov vectors' tangent share {vector_share:.3}",
            m.name
        );
        panel(
            &run.path(&[m.name, "intervention_tangent_share.png"])?,
            &Panel::new(
                &format!("{}: where an ε = {ERROR_SIZE} score error moves the samples", m.name),
                "tangent share ‖P_T Δ‖² / ‖Δ‖² (per sample; Lyapunov: top-d vectors)",
                "fraction of samples / trajectories",
            )
            .log(false, false),
            &[
                Layer::line(
                    format!("displacement Δ of {} samples (pooled {share:.3})", shares.len()),
                    normalised(histogram_points(&shares, 20, 0.0, 1.0), shares.len()),
                ),
                Layer::line(
                    format!("top-{d_manifold} Lyapunov vectors, {b} trajectories (mean {vector_share:.3})"),
                    normalised(histogram_points(&vector_shares, 20, 0.0, 1.0), vector_shares.len()),
                ),
                Layer::dashed(format!("random direction: d/D = {chance:.3}"), vec![(chance, 0.0), (chance, 1.0)]),
            ],
        )?;
        run.doc.figure(figure.clone(), caption);
        rows.push(vec![
            format!("`{}`", m.name),
            format!("{d_manifold} / {d}"),
            format!("{:.4}", median(sizes.clone())),
            format!("{share:.3}"),
            format!("{chance:.3}"),
            format!("{vector_share:.3}"),
            exponents.iter().map(|e| format!("{e:.2}")).collect::<Vec<_>>().join(", "),
        ]);
        run.summary.insert(
            format!("intervention_{}", m.name),
            serde_json::json!({"error_size": ERROR_SIZE, "samples": n, "median_displacement": median(sizes.clone()),
                "tangent_share": share, "random_share": chance, "lyapunov_top_tangent_share": vector_share,
                "lyapunov_mean_exponents": exponents}),
        );
        run.claim(Finding {
            paper: PAPER,
            model: m.name.to_string(),
            claim: "\"despite learning errors in the score function … the generated samples appear to shift along \
                    the support of the data distribution but not away from it\""
                .into(),
            measured: format!(
                "score + smooth error of RMS {ERROR_SIZE} (noise units), probability-flow ODE from the same {n} x_T: \
                 median displacement {:.4}, tangent share of its energy {share:.3} (random direction {chance:.3}); \
                 predicted by the top-{d_manifold} Lyapunov vectors' tangent share {vector_share:.3}",
                median(sizes.clone())
            ),
            deciding: format!("Σ‖P_T Δ‖² / Σ‖Δ‖² = {share:.3}"),
            rule: format!("holds if ≥ {MOSTLY_TANGENT}"),
            holds: Some(share >= MOSTLY_TANGENT),
            figure: Some(figure.clone()),
        });
        run.claim(Finding {
            paper: PAPER,
            model: m.name.to_string(),
            claim: "\"the alignment of the top Lyapunov vectors … with the tangent spaces … leads to robustness\""
                .into(),
            measured: format!(
                "K = {k} Lyapunov vectors of the probability-flow ODE from {b} draws of x_T: the top {d_manifold} \
                 hold {vector_share:.3} of their energy in the tangent space at the final point (random {chance:.3})"
            ),
            deciding: format!("mean tangent share of v₁…v_d = {vector_share:.3}"),
            rule: format!("holds if ≥ {MOSTLY_TANGENT}"),
            holds: Some(vector_share >= MOSTLY_TANGENT),
            figure: Some(figure),
        });
    }
    run.doc.table(
        &[
            "model",
            "d / D",
            "median ‖Δ‖",
            "tangent share of Δ (pooled)",
            "random direction",
            "top-d Lyapunov vectors' tangent share",
            "mean exponents λ₁…λ_K",
        ],
        rows,
    );
    Ok(())
}

/// Histogram counts as fractions of `n`.
fn normalised(points: Vec<(f64, f64)>, n: usize) -> Vec<(f64, f64)> {
    points.into_iter().map(|(x, c)| (x, c / n.max(1) as f64)).collect()
}
