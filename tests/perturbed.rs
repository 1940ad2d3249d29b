//! A field with a known error added (src/field/perturbed.rs) and the error projected onto a ridge's normal or
//! tangent space (src/analysis/ridge/projected.rs), against f64 references: the random-feature formula written out
//! here, the smoothed data's f64 KDE (src/reference/kde.rs) and closed-form 2×2 eigenvectors.

mod common;

use common::{gpu, normal_vec, rel_err, rng};
use scorelens::analysis::ridge::projected::{split_at_ridge, RidgePart, RidgeProjectedError};
use scorelens::field::{ErrorTerm, Perturbed, RandomFeatureError, ScoreSource, SmoothedData, Smoothing};
use scorelens::reference::kde::kde_point;
use scorelens::sampler::{sample, SamplerConfig, SamplerKind, SeededNoise};
use scorelens::scheduler::JobOptions;
use scorelens::{NoiseSchedule, ScoreField};

const VE: NoiseSchedule = NoiseSchedule::VeSong { sigma: 25.0 };

/// The random-feature error written out from its parameters: (size/std) √(2/M) Σⱼ aⱼ cos(ωⱼ·x + bⱼ).
fn reference_error(e: &RandomFeatureError, d: usize, x: &[f64], std: f64) -> Vec<f64> {
    let (w, b, a) = e.parameters();
    let m = b.len();
    let mut out = vec![0.0; d];
    for j in 0..m {
        let arg: f64 = (0..d).map(|k| w[j * d + k] * x[k]).sum::<f64>() + b[j];
        for k in 0..d {
            out[k] += (2.0 / m as f64).sqrt() * a[j * d + k] * arg.cos() * e.size() / std;
        }
    }
    out
}

fn as_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

#[test]
fn random_feature_error_matches_its_formula_and_has_the_size_asked_for() {
    let (d, m) = (7, 53);
    let e = RandomFeatureError::new(d, m, 0.8, 0.3, 11).unwrap();
    let x = normal_vec(&mut rng(1), 37 * d, 1.0);
    let got = e.error(&x, 0.2, 0.5, JobOptions::default()).unwrap();
    let want: Vec<f64> = x.chunks(d).flat_map(|r| reference_error(&e, d, &as_f64(r), 0.5)).collect();
    let err = rel_err(&got.iter().map(|&v| v as f32).collect::<Vec<_>>(), &want);
    assert!(err < 1e-6, "rel err {err:e}");
    // E‖std·e‖² = size² over points spread wider than the length scale (M = 400 features: the mean over the
    // features of ‖aⱼ‖² is 1 ± 0.04).
    let (d, size) = (16, 0.25);
    let e = RandomFeatureError::new(d, 400, 0.5, size, 3).unwrap();
    let x = normal_vec(&mut rng(2), 3000 * d, 3.0);
    let g = e.error(&x, 0.5, 1.0, JobOptions::default()).unwrap();
    let mean_sq = g.chunks(d).map(|r| r.iter().map(|v| v * v).sum::<f64>()).sum::<f64>() / 3000.0;
    assert!((mean_sq.sqrt() / size - 1.0).abs() < 0.1, "RMS {} for size {size}", mean_sq.sqrt());
    // The same seed gives the same field; the first features do not depend on M.
    let again = RandomFeatureError::new(7, 53, 0.8, 0.3, 11).unwrap();
    let more = RandomFeatureError::new(7, 60, 0.8, 0.3, 11).unwrap();
    assert_eq!(again.parameters().0, RandomFeatureError::new(7, 53, 0.8, 0.3, 11).unwrap().parameters().0);
    assert_eq!(&more.parameters().1[..53], again.parameters().1);
    for bad in [
        RandomFeatureError::new(0, 4, 1.0, 1.0, 0),
        RandomFeatureError::new(3, 0, 1.0, 1.0, 0),
        RandomFeatureError::new(3, 4, 0.0, 1.0, 0),
        RandomFeatureError::new(3, 4, 1.0, f64::NAN, 0),
    ] {
        assert!(bad.is_err());
    }
}

#[test]
fn perturbed_score_is_the_exact_score_plus_the_error_and_switches_on_below_a_level() {
    let d = 3;
    let data = normal_vec(&mut rng(5), 211 * d, 1.0);
    let base = ScoreField::Smoothed(SmoothedData::new(gpu(), data.clone(), d, VE, Smoothing::Schedule).unwrap());
    let error = RandomFeatureError::new(d, 31, 0.7, 0.2, 9).unwrap();
    let field = Perturbed::new(&base, &error).unwrap().on_below_std(0.5).unwrap();
    let rows = 19;
    let x = normal_vec(&mut rng(6), rows * d, 1.0);
    // t = 0.05 (std 0.34: on) and t = 0.4 (std 1.4: off), per row.
    let t: Vec<f32> = (0..rows).map(|r| if r % 2 == 0 { 0.05 } else { 0.4 }).collect();
    let got = field.score(&x, &t, JobOptions::default()).unwrap();
    let want: Vec<f64> = (0..rows)
        .flat_map(|r| {
            let (tr, xr) = (t[r] as f64, as_f64(&x[r * d..(r + 1) * d]));
            let std = VE.std(tr);
            let s = kde_point(&data, d, VE.alpha(tr), std, &xr).score;
            let e = if std <= 0.5 { reference_error(&error, d, &xr, std) } else { vec![0.0; d] };
            s.iter().zip(e).map(|(a, b)| a + b).collect::<Vec<_>>()
        })
        .collect();
    let err = rel_err(&got, &want);
    assert!(err < 1e-5, "rel err {err:e}");
    assert!(Perturbed::new(&base, &RandomFeatureError::new(4, 3, 1.0, 1.0, 0).unwrap()).is_err());
}

#[test]
fn the_sampler_on_a_perturbed_field_takes_the_perturbed_steps() {
    // Probability-flow Euler on the smoothed data plus an error, against the same steps in f64.
    let d = 2;
    let data = normal_vec(&mut rng(7), 97 * d, 1.0);
    let base = ScoreField::Smoothed(SmoothedData::new(gpu(), data.clone(), d, VE, Smoothing::Schedule).unwrap());
    let error = RandomFeatureError::new(d, 17, 0.5, 0.4, 2).unwrap();
    let field = Perturbed::new(&base, &error).unwrap();
    let x0 = normal_vec(&mut rng(8), 5 * d, 2.0);
    let config = SamplerConfig::new(SamplerKind::OdeEuler, 6);
    let got = sample(&field, &x0, &config, &mut SeededNoise::new(0), JobOptions::default()).unwrap().samples;
    let times: Vec<f64> = (0..6).map(|k| 1.0 + (1e-3 - 1.0) * k as f64 / 5.0).collect();
    let dt = times[0] - times[1];
    let mut want = Vec::new();
    for row in x0.chunks(d) {
        let mut x = as_f64(row);
        for &t in &times {
            let std = VE.std(t);
            let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let s = kde_point(&data, d, 1.0, std, &as_f64(&xf)).score;
            let e = reference_error(&error, d, &as_f64(&xf), std);
            let g2 = VE.diffusion(t).powi(2);
            for k in 0..d {
                x[k] = (x[k] + 0.5 * g2 * (s[k] + e[k]) * dt) as f32 as f64;
            }
        }
        want.extend(x);
    }
    let err = rel_err(&got, &want);
    assert!(err < 1e-4, "rel err {err:e}");
    // With size 0 the run is the base field's, value for value.
    let zero = RandomFeatureError::new(d, 17, 0.5, 0.0, 2).unwrap();
    let unperturbed = Perturbed::new(&base, &zero).unwrap();
    let a = sample(&unperturbed, &x0, &config, &mut SeededNoise::new(0), JobOptions::default()).unwrap().samples;
    let b = sample(&base, &x0, &config, &mut SeededNoise::new(0), JobOptions::default()).unwrap().samples;
    assert_eq!(a, b);
    // Only rows 1..3 perturbed: those follow the perturbed run, the rest the base run, value for value.
    let partial = Perturbed::new(&base, &error).unwrap().only_rows(1..3);
    let c = sample(&partial, &x0, &config, &mut SeededNoise::new(0), JobOptions::default()).unwrap().samples;
    let full = sample(&field, &x0, &config, &mut SeededNoise::new(0), JobOptions::default()).unwrap().samples;
    for r in 0..5 {
        let want = if (1..3).contains(&r) { &full } else { &b };
        assert_eq!(&c[r * d..(r + 1) * d], &want[r * d..(r + 1) * d], "row {r}");
    }
}

#[test]
fn ridge_projection_splits_an_error_into_the_hessians_normal_and_tangent_parts() {
    // D = 2, d = 1: the normal space is the eigenvector of the smaller eigenvalue of the 2×2 Hessian (closed form).
    let d = 2;
    let data = normal_vec(&mut rng(12), 149 * d, 1.0);
    let t = 0.1f32;
    let smoothed = SmoothedData::new(gpu(), data.clone(), d, VE, Smoothing::Schedule).unwrap();
    let x = normal_vec(&mut rng(13), 23 * d, 1.2);
    let v: Vec<f64> = normal_vec(&mut rng(14), 23 * d, 1.0).iter().map(|&a| a as f64).collect();
    let (normal, tangent) = split_at_ridge(&smoothed, &x, t, &v, 1, JobOptions::default()).unwrap();
    let mut want_normal = Vec::new();
    for (xr, vr) in x.chunks(d).zip(v.chunks(d)) {
        let h = kde_point(&data, d, 1.0, VE.std(t as f64), &as_f64(xr)).hessian;
        let (a, b, c) = (h[0], h[1], h[3]);
        let small = 0.5 * (a + c) - (0.25 * (a - c).powi(2) + b * b).sqrt();
        // (H − λ I) n = 0: n ∝ (b, λ − a) (or (λ − c, b) when that is the longer).
        let (p, q) =
            if (small - a).abs() + b.abs() > (small - c).abs() + b.abs() { (b, small - a) } else { (small - c, b) };
        let len = (p * p + q * q).sqrt();
        let (nx, ny) = (p / len, q / len);
        let dot = nx * vr[0] + ny * vr[1];
        want_normal.extend([dot * nx, dot * ny]);
    }
    let err = rel_err(&normal.iter().map(|&a| a as f32).collect::<Vec<_>>(), &want_normal);
    assert!(err < 1e-4, "normal part rel err {err:e}");
    for ((n, tg), vv) in normal.iter().zip(&tangent).zip(&v) {
        assert!((n + tg - vv).abs() < 1e-12);
    }

    // D = 5, d = 2, as an error term: the tangent part lies in the span of the two top eigenvectors, i.e.
    // (I − E Eᵀ) e is orthogonal to the normal part and the parts add up to the inner error.
    let d = 5;
    let data = normal_vec(&mut rng(15), 83 * d, 1.0);
    let smoothed = SmoothedData::new(gpu(), data.clone(), d, VE, Smoothing::Schedule).unwrap();
    let inner = RandomFeatureError::new(d, 21, 0.9, 0.3, 4).unwrap();
    let x = normal_vec(&mut rng(16), 9 * d, 1.0);
    let std = VE.std(t as f64);
    let parts: Vec<Vec<f64>> = [RidgePart::Normal, RidgePart::Tangent]
        .iter()
        .map(|&part| {
            RidgeProjectedError::new(&smoothed, &inner, 2, part)
                .unwrap()
                .error(&x, t as f64, std, JobOptions::default())
                .unwrap()
        })
        .collect();
    for (r, xr) in x.chunks(d).enumerate() {
        let h = kde_point(&data, d, 1.0, std, &as_f64(xr)).hessian;
        let e = reference_error(&inner, d, &as_f64(xr), std);
        let (n, tg) = (&parts[0][r * d..(r + 1) * d], &parts[1][r * d..(r + 1) * d]);
        let scale = e.iter().map(|a| a * a).sum::<f64>().sqrt();
        let sum_err: f64 = (0..d).map(|k| (n[k] + tg[k] - e[k]).powi(2)).sum::<f64>().sqrt();
        assert!(sum_err < 1e-5 * scale, "row {r}: parts do not add up ({sum_err:e})");
        let dot: f64 = (0..d).map(|k| n[k] * tg[k]).sum();
        assert!(dot.abs() < 1e-5 * scale * scale, "row {r}: parts not orthogonal ({dot:e})");
        // H maps the tangent part into the same 2-space and the normal part into its complement: n·(H t) = 0.
        let ht: Vec<f64> = (0..d).map(|i| (0..d).map(|j| h[i * d + j] * tg[j]).sum()).collect();
        let norm_h = h.iter().map(|a| a * a).sum::<f64>().sqrt();
        let cross: f64 = (0..d).map(|k| n[k] * ht[k]).sum();
        assert!(cross.abs() < 1e-4 * norm_h * scale * scale, "row {r}: n·Ht = {cross:e}");
    }
    assert!(RidgeProjectedError::new(&smoothed, &inner, 5, RidgePart::Normal).is_err());
    assert!(RidgeProjectedError::new(
        &smoothed,
        &RandomFeatureError::new(3, 2, 1.0, 1.0, 0).unwrap(),
        2,
        RidgePart::Normal
    )
    .is_err());
}
