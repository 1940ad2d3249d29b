//! arXiv 2408.08307 (Humayun et al.) on the ReLU network `moons_relu`, a continuous piecewise-linear map of x at
//! each t:
//! - local complexity δ as the paper computes it for such a network: the hidden units whose pre-activation changes
//!   sign between the point and a vertex x ± r eⱼ of the cross-polytope (ℓ1 ball) of radius r around it, i.e. the
//!   linear-region boundaries crossing that neighbourhood; with ψ and ν of the denoiser there;
//! - ψ, ν, δ at on-manifold inputs (training points) against off-manifold ones (farther than 0.05 from every training
//!   point, the paper's toy criterion);
//! - the density relation p(x) ∝ exp(−ψ) where it holds: the probability-flow ODE sampler is an invertible map
//!   G: x_T → x_0, and log p_G(x_0) = log p_T(x_T) − ψ_G with ψ_G = log |det ∂G/∂x_T| = Σ log R_jj of its tangent map
//!   carried by the Lyapunov machinery with K = D. Compared with the log density of the smoothed training data at
//!   x_0 (std(ε), the model's last noise level).

use scorelens::analysis::lyapunov::{lyapunov as lyapunov_run, Dynamics, LyapunovSettings};
use scorelens::analysis::{descriptors as describe, DescribedMap, DescriptorSettings, Directions, PointDescriptors};
use scorelens::io::npy;
use scorelens::report::{histogram_points, line_chart, scatter_chart_labelled, PointSet, Series};
use scorelens::sampler::{initial_points, SamplerKind, SeededNoise};
use scorelens::Result;

use super::stats::{auc, mean, median, nearest_distances, smoothed_log_density, spearman};
use super::{Finding, Run, Trained};

pub(crate) const PAPER: &str = "arXiv 2408.08307";

/// The cross-polytope's radius (the paper's toy calls inputs within 0.05 of the data on-manifold).
const RADIUS: f64 = 0.05;
/// The sampler's last time (Song's grid).
const EPS: f64 = 1e-3;

fn descriptors_at(run: &Run, m: &Trained, x: &[f32], t: f64) -> Result<Vec<PointDescriptors>> {
    let settings =
        DescriptorSettings { map: DescribedMap::Denoiser, k: m.dim, radius: RADIUS, directions: Directions::Axes };
    let mut found = Vec::new();
    describe(&m.field, x, &[t as f32], &settings, run.options, |_, p| {
        found.push(p);
        Ok(())
    })?;
    Ok(found)
}

pub(crate) fn claims(run: &mut Run, relu: &Trained) -> Result<()> {
    println!("3. local geometry of the ReLU model ({PAPER})");
    let d = relu.dim;
    let n = run.sizes.relu_trajectories;
    let steps = run.sizes.steps;
    run.doc.heading(2, format!("3. Local scaling, rank and complexity of a ReLU network ({PAPER})"));
    run.doc.paragraph(format!(
        "`moons_relu` (the moons MLP with ReLU units: at each t a continuous piecewise-linear map of x). δ: hidden \
         units whose pre-activation changes sign between x and a vertex x ± r eⱼ of the cross-polytope of radius \
         r = {RADIUS} (the linear-region boundaries crossing it); ψ = Σ log σᵢ and ν = exp(−Σ pᵢ log pᵢ) of the \
         denoiser x + std(t)² s(x, t) at t = ε = {EPS}. The generator: the probability-flow ODE (Euler, {steps} steps \
         on Song's grid) from {n} draws x_T ~ N(0, std(1)² I); its tangent map carried with K = D = {d} vectors gives \
         ψ_G = Σ log R_jj = log |det ∂x_0/∂x_T|, so the model's density of each sample is \
         log p(x_0) = log p_T(x_T) − ψ_G."
    ));

    // The generator and its volume change.
    let mut noise = SeededNoise::new(8308);
    let x_init = initial_points(&relu.field, n, &mut noise);
    let dynamics = Dynamics::Sampler { kind: SamplerKind::OdeEuler, steps, eps: EPS, seed: 8308 };
    let result = lyapunov_run(&relu.field, &x_init, dynamics, LyapunovSettings::new(d), run.options)?;
    let k = result.k;
    let psi_g: Vec<f64> = (0..n).map(|b| result.log_growth[b * k..(b + 1) * k].iter().sum()).collect();
    let prior_std = relu.field.schedule().std(1.0);
    let log_prior: Vec<f64> = x_init
        .chunks(d)
        .map(|x| {
            x.iter()
                .map(|&v| {
                    -0.5 * (2.0 * std::f64::consts::PI * prior_std * prior_std).ln()
                        - (v as f64).powi(2) / (2.0 * prior_std * prior_std)
                })
                .sum()
        })
        .collect();
    let log_model: Vec<f64> = log_prior.iter().zip(&psi_g).map(|(p, s)| p - s).collect();
    let x0 = &result.final_x;
    let smoothing = relu.field.schedule().std(EPS);
    let log_data = smoothed_log_density(x0, &relu.data, d, smoothing);
    npy::write_f32(&run.path(&["moons_relu", "ode_samples.npy"])?, &[n, d], x0)?;
    npy::write_f64(&run.path(&["moons_relu", "psi_generator.npy"])?, &[n], &psi_g)?;
    npy::write_f64(&run.path(&["moons_relu", "log_density_model.npy"])?, &[n], &log_model)?;
    npy::write_f64(&run.path(&["moons_relu", "log_density_smoothed_data.npy"])?, &[n], &log_data)?;

    // Descriptors at the samples.
    let at_samples = descriptors_at(run, relu, x0, EPS)?;
    let deltas: Vec<f64> = at_samples.iter().map(|p| p.local_complexity as f64).collect();
    npy::write_f64(&run.path(&["moons_relu", "local_complexity.npy"])?, &[n], &deltas)?;
    let psi_den = median(at_samples.iter().map(|p| p.local_scaling).collect());
    let nu_den = median(at_samples.iter().map(|p| p.local_rank).collect());
    let (dmin, dmax) = deltas.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    run.claim(Finding {
        paper: PAPER,
        model: "moons_relu".into(),
        claim: "local complexity δ: the number of linear-region boundaries (neurons whose pre-activation changes \
                sign) crossing the cross-polytope around the point; local scaling ψ and local rank ν"
            .into(),
        measured: format!(
            "at the {n} ODE samples, t = ε, r = {RADIUS}: δ median {:.0} (range {dmin:.0}–{dmax:.0}) of 384 hidden \
             units; denoiser ψ median {psi_den:.2}, ν median {nu_den:.2} (D = {d})",
            median(deltas.clone())
        ),
        deciding: "—".into(),
        rule: "reported (a measurement the later rows use)".into(),
        holds: None,
        figure: Some("moons_relu/local_complexity.png".into()),
    });

    // On- against off-manifold inputs (the paper's toy: on = within 0.05 of the training data).
    // At most 128 points a side: two linearisations each (the point, its vertices), the section's main cost.
    let side = n.min(128);
    let on: Vec<f32> = relu.data.iter().take(side * d).copied().collect();
    let off: Vec<f32> = {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(2408);
        let mut out = Vec::with_capacity(side * d);
        while out.len() < side * d {
            let p = [rng.random_range(-1.5f32..2.5), rng.random_range(-1.25f32..1.75)];
            if nearest_distances(&p, &relu.data, d)[0] > 0.05 {
                out.extend_from_slice(&p);
            }
        }
        out
    };
    let on_d = descriptors_at(run, relu, &on, EPS)?;
    let off_d = descriptors_at(run, relu, &off, EPS)?;
    type Descriptor = fn(&PointDescriptors) -> f64;
    let pick = |v: &[PointDescriptors], f: Descriptor| v.iter().map(f).collect::<Vec<f64>>();
    let by: [(&str, Descriptor); 3] =
        [("δ", |p| p.local_complexity as f64), ("ψ", |p| p.local_scaling), ("ν", |p| p.local_rank)];
    let aucs: Vec<(&str, f64, f64, f64)> = by
        .iter()
        .map(|&(name, f)| {
            let (a, b) = (pick(&on_d, f), pick(&off_d, f));
            (name, auc(&a, &b), median(a.clone()), median(b.clone()))
        })
        .collect();
    let separation = aucs.iter().map(|a| (a.1 - 0.5).abs()).fold(0.0, f64::max);
    let figure = "moons_relu/local_complexity.png";
    line_chart(
        &run.path(&["moons_relu", "local_complexity.png"])?,
        &format!("moons_relu: δ at r = {RADIUS}, t = ε; AUC on vs off = {:.2}", aucs[0].1),
        "δ (hidden units whose sign changes in the cross-polytope)",
        "points",
        &[
            Series {
                label: format!("ODE samples ({n})"),
                points: histogram_points(&deltas, 24, 0.0, 48.0),
                reference: None,
            },
            Series {
                label: "training points (on-manifold)".into(),
                points: histogram_points(&pick(&on_d, by[0].1), 24, 0.0, 48.0),
                reference: None,
            },
            Series {
                label: "points > 0.05 from the data (off-manifold)".into(),
                points: histogram_points(&pick(&off_d, by[0].1), 24, 0.0, 48.0),
                reference: None,
            },
        ],
        false,
    )?;
    run.doc.figure(
        figure,
        format!(
            "Histograms of the local complexity δ (r = {RADIUS}, t = ε) at the ODE samples, at training points and \
             at off-manifold points. AUC of δ separating on from off: {:.2} (ψ: {:.2}, ν: {:.2}).",
            aucs[0].1, aucs[1].1, aucs[2].1
        ),
    );
    run.claim(Finding {
        paper: PAPER,
        model: "moons_relu".into(),
        claim: "the descriptors ψ, ν, δ are distinct on and off the data manifold (the paper's 2-D toy: on = \
                within 0.05 of the training data)"
            .into(),
        measured: format!(
            "{side} points a side, t = ε, r = {RADIUS}: {}",
            aucs.iter()
                .map(|(name, a, on, off)| format!("{name}: median {on:.2} on vs {off:.2} off, AUC {a:.2}"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        deciding: format!("max |AUC − 0.5| = {separation:.2}"),
        rule: "holds if some descriptor separates on from off with |AUC − 0.5| ≥ 0.25 (AUC ≥ 0.75 or ≤ 0.25)".into(),
        holds: Some(separation >= 0.25),
        figure: Some(figure.into()),
    });

    // The density relation.
    let pairs: Vec<(f64, f64)> = log_data.iter().copied().zip(log_model.iter().copied()).collect();
    let rho = spearman(&pairs);
    let pearson = super::stats::pearson(&pairs);
    let figure = "moons_relu/density.png";
    scatter_chart_labelled(
        &run.path(&["moons_relu", "density.png"])?,
        &format!("moons_relu: log p(x0) = log p_T(x_T) − ψ_G against the data; Spearman {rho:+.2}"),
        (&format!("log density of the training data smoothed by std(ε) = {smoothing:.3}"), "log p_T(x_T) − ψ_G"),
        &[PointSet { label: format!("{n} ODE samples"), points: pairs.clone(), size: 3 }],
        None,
    )?;
    run.doc.figure(
        figure,
        format!(
            "The model's log density of each ODE sample, log p_T(x_T) − ψ_G, against the smoothed training data's \
             log density there. Spearman {rho:+.2}, Pearson {pearson:+.2} over {n} samples."
        ),
    );
    // Where low and high ψ_G fall.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| psi_g[a].total_cmp(&psi_g[b]));
    let third = n / 3;
    let set = |idx: &[usize], label: String| PointSet {
        label,
        points: idx.iter().map(|&i| (x0[i * d] as f64, x0[i * d + 1] as f64)).collect(),
        size: 3,
    };
    let (low, high) = (&order[..third], &order[n - third..]);
    let figure_map = "moons_relu/psi_map.png";
    scatter_chart_labelled(
        &run.path(&["moons_relu", "psi_map.png"])?,
        "moons_relu: ODE samples by the generator's ψ_G = log|det ∂x0/∂x_T|",
        ("x₁", "x₂"),
        &[
            PointSet {
                label: "training data".into(),
                points: relu.data.chunks(d).take(3000).map(|p| (p[0] as f64, p[1] as f64)).collect(),
                size: 1,
            },
            set(low, format!("lowest third of ψ_G (≤ {:.2}): high density", psi_g[low[low.len().saturating_sub(1)]])),
            set(&order[third..n - third], "middle third".into()),
            set(high, format!("highest third of ψ_G (≥ {:.2}): low density", psi_g[high[0]])),
        ],
        Some(((-1.5, 2.5), (-1.25, 1.75))),
    )?;
    run.doc.figure(
        figure_map,
        format!(
            "Where low and high ψ_G fall: the ODE samples in the plane, by thirds of ψ_G (median {:.2}); the \
             training data grey.",
            median(psi_g.clone())
        ),
    );
    run.summary.insert(
        "moons_relu_geometry".into(),
        serde_json::json!({"samples": n, "radius": RADIUS, "median_local_complexity": median(deltas.clone()),
            "median_denoiser_psi": psi_den, "median_denoiser_nu": nu_den,
            "auc_on_vs_off": aucs.iter().map(|a| (a.0, a.1)).collect::<Vec<_>>(),
            "spearman_model_vs_data_log_density": rho, "pearson_model_vs_data_log_density": pearson,
            "mean_psi_generator": mean(psi_g.iter().copied())}),
    );
    run.claim(Finding {
        paper: PAPER,
        model: "moons_relu".into(),
        claim: "local scaling gives the density of a generated point: −log p_G(G(z)) = −log p_z(z) + ψ (for an \
                invertible generator; here the probability-flow ODE x_T → x_0)"
            .into(),
        measured: format!(
            "log p_T(x_T) − ψ_G at {n} ODE samples against the smoothed training data's log density there \
             (std(ε) = {smoothing:.3}); ψ_G median {:.2}",
            median(psi_g.clone())
        ),
        deciding: format!("Spearman ρ = {rho:+.2} (Pearson {pearson:+.2})"),
        rule: "holds if ρ ≥ 0.5 (the model's density ranks the samples as the data's does: positive and strong)".into(),
        holds: Some(rho >= 0.5),
        figure: Some(figure.into()),
    });
    Ok(())
}
