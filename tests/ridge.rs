//! Density ridges by SCMS on the GPU field: two points (the segment), a noisy circle (the radius found by an
//! independent 1-D maximisation along rays), the same circle embedded in 5 and 37 dimensions, the f64 reference
//! SCMS, and the normal/tangent split of a score error.

mod common;

use common::{gpu, normal_vec, rng};
use rand::Rng;
use scorelens::analysis::ridge::{error_split, scms, symmetric_eigen, ScmsSettings};
use scorelens::field::{KdeField, KdeScale};
use scorelens::reference::kde::{kde_point, scms_point};
use scorelens::scheduler::JobOptions;

#[test]
fn two_points_give_the_segment_between_them() {
    let mut r = rng(21);
    for dim in [2usize, 5] {
        let mut data = vec![0.0f32; 2 * dim];
        data[0] = -1.0;
        data[dim] = 1.0;
        let field = KdeField::new(gpu(), data, dim, KdeScale::bandwidth(0.6)).unwrap();
        let starts: Vec<f32> = (0..20)
            .flat_map(|_| {
                let mut p = normal_vec(&mut r, dim, 0.5);
                p[0] = r.random_range(-0.9f32..0.9);
                p
            })
            .collect();
        let settings = ScmsSettings { ridge_dim: 1, ..ScmsSettings::default() };
        let result = scms(&field, &starts, settings, JobOptions::default()).unwrap();
        for b in 0..20 {
            let p = &result.points[b * dim..(b + 1) * dim];
            assert!(result.converged[b], "point {b} did not converge: {p:?}");
            assert!(result.normal_ratio[b] < settings.tolerance);
            let off: f32 = p[1..].iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!(off < 1e-4 && p[0].abs() <= 1.0, "point {b} = {p:?} is off the segment");
            // SCMS moves across the ridge only: the coordinate along the segment is kept.
            assert!((p[0] - starts[b * dim]).abs() < 1e-4, "point {b} slid along the segment");
            assert!(result.below_beta[b] && result.eigengap[b] > 0.0);
            let values = &result.eigenvalues[b * dim..(b + 1) * dim];
            assert!(values.windows(2).all(|w| w[0] >= w[1]), "eigenvalues not descending: {values:?}");
        }
    }
}

/// A noisy unit circle in the first two coordinates of `dim`.
fn noisy_circle(r: &mut impl Rng, n: usize, dim: usize, noise: f32) -> Vec<f32> {
    let mut data = vec![0.0f32; n * dim];
    for i in 0..n {
        let theta = r.random_range(0.0..std::f32::consts::TAU);
        let radius = 1.0 + noise * normal_vec(r, 1, 1.0)[0];
        data[i * dim] = radius * theta.cos();
        data[i * dim + 1] = radius * theta.sin();
    }
    data
}

/// The radius at which log p is largest along the ray at angle θ in the plane (golden-section search in f64).
fn radial_maximum(data: &[f32], dim: usize, sigma: f64, theta: f64) -> f64 {
    let f = |rho: f64| {
        let mut x = vec![0.0; dim];
        x[0] = rho * theta.cos();
        x[1] = rho * theta.sin();
        kde_point(data, dim, 1.0, sigma, &x).log_density
    };
    let (mut a, mut b) = (0.6f64, 1.4f64);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    while b - a > 1e-9 {
        let (c, d) = (b - g * (b - a), a + g * (b - a));
        if f(c) > f(d) {
            b = d;
        } else {
            a = c;
        }
    }
    0.5 * (a + b)
}

#[test]
fn noisy_circle_ridge_sits_at_the_radial_maximum() {
    let mut r = rng(22);
    let sigma = 0.1;
    for dim in [2usize, 5, 37] {
        let data = noisy_circle(&mut r, 1500, dim, 0.02);
        let field = KdeField::new(gpu(), data.clone(), dim, KdeScale::bandwidth(sigma)).unwrap();
        let count = 24;
        let mut starts = Vec::new();
        for _ in 0..count {
            let theta = r.random_range(0.0..std::f32::consts::TAU);
            let radius = r.random_range(0.85f32..1.15);
            let mut p = normal_vec(&mut r, dim, 0.03);
            p[0] = radius * theta.cos();
            p[1] = radius * theta.sin();
            starts.extend(p);
        }
        let settings = ScmsSettings { ridge_dim: 1, tolerance: 1e-4, max_iterations: 500, beta: 0.0 };
        let result = scms(&field, &starts, settings, JobOptions::default()).unwrap();
        let mut worst = 0.0f64;
        for b in 0..count {
            let p: Vec<f64> = result.points[b * dim..(b + 1) * dim].iter().map(|&v| v as f64).collect();
            assert!(result.converged[b], "D {dim}: point {b} did not converge ({} steps)", result.iterations[b]);
            // The f64 field at the final point: its normal gradient is below the tolerance (with slack for f32).
            let reference = kde_point(&data, dim, 1.0, sigma, &p);
            let eigen = symmetric_eigen(&reference.hessian, dim).unwrap();
            let normal = eigen.project_normal(&reference.score, 1);
            let ratio = normal.iter().map(|v| v * v).sum::<f64>().sqrt()
                / reference.score.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!(ratio < 3.0 * settings.tolerance, "D {dim}: point {b}: f64 normal ratio {ratio:e}");
            let off: f64 = p[2..].iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!(off < 1e-3, "D {dim}: point {b} is {off} off the plane");
            let (rho, theta) = ((p[0] * p[0] + p[1] * p[1]).sqrt(), p[1].atan2(p[0]));
            let expected = radial_maximum(&data, dim, sigma, theta);
            worst = worst.max((rho - expected).abs());
            assert!((rho - expected).abs() < 2e-3, "D {dim}: point {b}: radius {rho} vs radial maximum {expected}");
        }
        let median = {
            let mut it = result.iterations.clone();
            it.sort();
            it[it.len() / 2]
        };
        println!("circle in D {dim}: worst |radius − radial maximum| {worst:.1e}, median steps {median}");
    }
}

#[test]
fn agrees_with_the_f64_reference_scms() {
    let mut r = rng(23);
    let (n, dim, sigma) = (60, 3, 0.5);
    let data = normal_vec(&mut r, n * dim, 1.0);
    let starts = normal_vec(&mut r, 10 * dim, 1.0);
    let field = KdeField::new(gpu(), data.clone(), dim, KdeScale::bandwidth(sigma)).unwrap();
    let settings = ScmsSettings { ridge_dim: 1, tolerance: 1e-5, max_iterations: 2000, beta: 0.0 };
    let result = scms(&field, &starts, settings, JobOptions::default()).unwrap();
    let mut worst = 0.0f64;
    for b in 0..10 {
        let x0: Vec<f64> = starts[b * dim..(b + 1) * dim].iter().map(|&v| v as f64).collect();
        let (want, converged, steps) = scms_point(&data, dim, 1.0, sigma, &x0, 1, 1e-5, 2000);
        assert_eq!(result.converged[b], converged, "point {b}");
        if !converged {
            continue;
        }
        let err: f64 = (0..dim).map(|k| (result.points[b * dim + k] as f64 - want[k]).powi(2)).sum::<f64>().sqrt();
        worst = worst.max(err);
        println!("point {b}: steps {} (reference {steps}), |Δ| {err:.1e}", result.iterations[b]);
        assert!(err < 1e-3, "point {b}: GPU {:?} vs f64 {want:?}", &result.points[b * dim..(b + 1) * dim]);
    }
    println!("worst distance to the f64 SCMS: {worst:.1e}");
}

#[test]
fn error_split_is_an_orthogonal_decomposition() {
    let mut r = rng(24);
    let (n, dim, sigma) = (300, 6, 0.4);
    let data = normal_vec(&mut r, n * dim, 1.0);
    let x = normal_vec(&mut r, 12 * dim, 1.0);
    let model = normal_vec(&mut r, 12 * dim, 2.0);
    let field = KdeField::new(gpu(), data.clone(), dim, KdeScale::bandwidth(sigma)).unwrap();
    for ridge_dim in [1, 2] {
        let (normal, tangent) = error_split(&field, &x, &model, ridge_dim, JobOptions::default()).unwrap();
        let (mut worst, mut num, mut den) = (0.0f64, 0.0f64, 0.0f64);
        for b in 0..12 {
            let xb: Vec<f64> = x[b * dim..(b + 1) * dim].iter().map(|&v| v as f64).collect();
            let p = kde_point(&data, dim, 1.0, sigma, &xb);
            let e: Vec<f64> = (0..dim).map(|k| model[b * dim + k] as f64 - p.score[k]).collect();
            let (nb, tb) = (&normal[b * dim..(b + 1) * dim], &tangent[b * dim..(b + 1) * dim]);
            let e_norm = e.iter().map(|v| v * v).sum::<f64>().sqrt();
            // e = e_⊥ + e_∥ (up to the GPU score's f32 error) and e_⊥ ⟂ e_∥.
            let sum_err = (0..dim).map(|k| (nb[k] + tb[k] - e[k]).powi(2)).sum::<f64>().sqrt() / e_norm;
            let dot = (0..dim).map(|k| nb[k] * tb[k]).sum::<f64>() / (e_norm * e_norm);
            worst = worst.max(sum_err);
            assert!(sum_err < 1e-5 && dot.abs() < 1e-10, "point {b}: |e − (n + t)| {sum_err:e}, n·t {dot:e}");
            // Against the f64 projection.
            let want = symmetric_eigen(&p.hessian, dim).unwrap().project_normal(&e, ridge_dim);
            num += (0..dim).map(|k| (nb[k] - want[k]).powi(2)).sum::<f64>();
            den += want.iter().map(|v| v * v).sum::<f64>();
        }
        let rel = (num / den).sqrt();
        println!("error split d = {ridge_dim}: normal part vs f64 {rel:.1e}, worst |e − (n + t)|/|e| {worst:.1e}");
        assert!(rel < 1e-4, "d = {ridge_dim}: {rel:e}");
    }
    assert!(error_split(&field, &x, &model[1..], 1, JobOptions::default()).is_err());
    assert!(error_split(&field, &x, &model, 6, JobOptions::default()).is_err());
    assert!(scms(&field, &x, ScmsSettings { ridge_dim: 0, ..ScmsSettings::default() }, JobOptions::default()).is_err());
}
