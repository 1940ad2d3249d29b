//! Density ridges by SCMS on the GPU field: two points (the segment), a noisy circle (the radius found by an
//! independent 1-D maximisation along rays), the same circle embedded in 5 and 37 dimensions, the f64 reference
//! SCMS, and the normal/tangent split of a score error.

mod common;

use common::{gpu, normal_vec, rng};
use rand::Rng;
use scorelens::analysis::ridge::{error_split, ridge_phase, route, scms, symmetric_eigen, Eigensolver, ScmsSettings};
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
        let settings = ScmsSettings {
            ridge_dim: 1,
            tolerance: 1e-4,
            max_iterations: 500,
            beta: 0.0,
            eigensolver: Eigensolver::Dense,
        };
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
    let settings = ScmsSettings {
        ridge_dim: 1,
        tolerance: 1e-5,
        max_iterations: 2000,
        beta: 0.0,
        eigensolver: Eigensolver::Dense,
    };
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
    for (ridge_dim, eigensolver) in
        [(1, Eigensolver::Dense), (2, Eigensolver::Dense), (1, Eigensolver::Krylov), (2, Eigensolver::Krylov)]
    {
        let (normal, tangent) = error_split(&field, &x, &model, ridge_dim, eigensolver, JobOptions::default()).unwrap();
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
        println!(
            "error split d = {ridge_dim} ({}): normal part vs f64 {rel:.1e}, worst |e − (n + t)|/|e| {worst:.1e}",
            eigensolver.name()
        );
        assert!(rel < 1e-4, "d = {ridge_dim}: {rel:e}");
    }
    for eigensolver in [Eigensolver::Dense, Eigensolver::Krylov] {
        assert!(error_split(&field, &x, &model[1..], 1, eigensolver, JobOptions::default()).is_err());
        assert!(error_split(&field, &x, &model, 6, eigensolver, JobOptions::default()).is_err());
    }
    assert!(scms(&field, &x, ScmsSettings { ridge_dim: 0, ..ScmsSettings::default() }, JobOptions::default()).is_err());
}

#[test]
fn a_ridge_phase_is_scms_and_the_error_split_from_one_solve() {
    // The phase takes the split from SCMS's first step (the normal spaces at x) instead of solving again: the
    // same split as error_split, the same ridge points as scms, on both routes (D = 7, 11 points).
    let mut r = rng(27);
    let (n, dim) = (350, 7);
    let data = normal_vec(&mut r, n * dim, 1.0);
    let x = normal_vec(&mut r, 11 * dim, 1.0);
    let model = normal_vec(&mut r, 11 * dim, 2.0);
    let field = KdeField::new(gpu(), data, dim, KdeScale::bandwidth(0.5)).unwrap();
    for eigensolver in [Eigensolver::Dense, Eigensolver::Krylov] {
        let settings = ScmsSettings { ridge_dim: 1, max_iterations: 20, eigensolver, ..ScmsSettings::default() };
        let phase = ridge_phase(&field, &x, &model, settings, JobOptions::default()).unwrap();
        let (normal, tangent) = error_split(&field, &x, &model, 1, eigensolver, JobOptions::default()).unwrap();
        let ridge = scms(&field, &x, settings, JobOptions::default()).unwrap();
        let rel = |a: &[f64], b: &[f64]| {
            let num: f64 = a.iter().zip(b).map(|(p, q)| (p - q).powi(2)).sum();
            (num / b.iter().map(|q| q * q).sum::<f64>()).sqrt()
        };
        let (en, et) = (rel(&phase.normal, &normal), rel(&phase.tangent, &tangent));
        assert!(en < 1e-6 && et < 1e-6, "{}: normal {en:e}, tangent {et:e}", eigensolver.name());
        let moved = phase.ridge.points.iter().zip(&ridge.points).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(moved < 1e-6, "{}: ridge points {moved:e} apart", eigensolver.name());
        assert_eq!(phase.route.chosen, eigensolver);
        for b in 0..11 {
            let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
            let want = norm(&normal[b * dim..(b + 1) * dim]);
            assert!((phase.normal_norm[b] - want).abs() <= 1e-6 * want.max(1.0), "point {b}");
        }
    }
    // Bad model scores are still refused.
    let settings = ScmsSettings { ridge_dim: 1, ..ScmsSettings::default() };
    assert!(ridge_phase(&field, &x, &model[1..], settings, JobOptions::default()).is_err());
}

/// A noisy unit circle in the first two coordinates of `dim`, with isotropic noise in every coordinate.
fn embedded_circle(r: &mut impl Rng, n: usize, dim: usize, noise: f32) -> Vec<f32> {
    let mut data = normal_vec(r, n * dim, noise);
    for i in 0..n {
        let theta = r.random_range(0.0..std::f32::consts::TAU);
        data[i * dim] += theta.cos();
        data[i * dim + 1] += theta.sin();
    }
    data
}

fn starts_near_circle(r: &mut impl Rng, count: usize, dim: usize) -> Vec<f32> {
    let mut starts = Vec::new();
    for _ in 0..count {
        let theta = r.random_range(0.0..std::f32::consts::TAU);
        let radius = r.random_range(0.85f32..1.15);
        let mut p = normal_vec(r, dim, 0.03);
        p[0] += radius * theta.cos();
        p[1] += radius * theta.sin();
        starts.extend(p);
    }
    starts
}

#[test]
fn krylov_scms_reaches_the_dense_points_in_37_dimensions() {
    let mut r = rng(25);
    let (dim, count, sigma) = (37usize, 19usize, 0.1);
    // Noise in every coordinate (the normal eigenvalues form a cluster), and without it (a repeated eigenvalue
    // −1/σ² of multiplicity 35: rank-deficient data).
    for noise in [0.02f32, 0.0] {
        let data =
            if noise > 0.0 { embedded_circle(&mut r, 1500, dim, noise) } else { noisy_circle(&mut r, 1500, dim, 0.02) };
        let field = KdeField::new(gpu(), data, dim, KdeScale::bandwidth(sigma)).unwrap();
        let starts = starts_near_circle(&mut r, count, dim);
        let run = |eigensolver| {
            let settings = ScmsSettings { ridge_dim: 1, tolerance: 1e-4, max_iterations: 300, beta: 0.0, eigensolver };
            scms(&field, &starts, settings, JobOptions::default()).unwrap()
        };
        let (dense, krylov) = (run(Eigensolver::Dense), run(Eigensolver::Krylov));
        assert_eq!((dense.route.chosen, krylov.route.chosen), (Eigensolver::Dense, Eigensolver::Krylov));
        assert_eq!((dense.eigenvalue_count, krylov.eigenvalue_count), (dim, 2));
        assert_eq!(krylov.eigen.unconverged_solves, 0, "a Lanczos solve stopped short");
        assert!(krylov.eigen.vector_products > 0 && dense.eigen.vector_products == 0);
        let mut worst = 0.0f64;
        for b in 0..count {
            assert!(dense.converged[b] && krylov.converged[b], "noise {noise}: point {b} did not converge");
            let dist = (0..dim)
                .map(|k| (dense.points[b * dim + k] as f64 - krylov.points[b * dim + k] as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            worst = worst.max(dist);
            // The d + 1 leading eigenvalues at the final points (the dense ones against the Lanczos ones).
            for i in 0..2 {
                let (a, c) = (dense.eigenvalues[b * dim + i], krylov.eigenvalues[b * 2 + i]);
                assert!((a - c).abs() <= 1e-3 * (1.0 / (sigma * sigma)), "point {b}: λ{} {a} vs {c}", i + 1);
            }
            assert_eq!(dense.below_beta[b], krylov.below_beta[b]);
        }
        println!(
            "D {dim}, noise {noise}: krylov vs dense points within {worst:.1e}; {} H·v ({} block products) over {} solves",
            krylov.eigen.vector_products, krylov.eigen.block_products, krylov.eigen.solves
        );
        assert!(worst < 1e-4, "noise {noise}: krylov and dense SCMS end {worst:e} apart");
    }
}

#[test]
fn the_route_follows_the_memory_budget_and_the_dimension() {
    let mut r = rng(26);
    let dim = 200;
    let field = KdeField::new(gpu(), normal_vec(&mut r, 300 * dim, 1.0), dim, KdeScale::bandwidth(0.5)).unwrap();
    let roomy = route::choose(&field, 1, Eigensolver::Auto, 1 << 30);
    // Krylov per point stays far below dense: no D² term.
    assert!(roomy.krylov_bytes_per_point * 4 < roomy.dense_bytes_per_point, "{roomy:?}");
    // A budget that holds the data and a Krylov point but not one dense Hessian.
    let tight = roomy.dense_bytes_per_point - 1;
    let chosen = route::choose(&field, 1, Eigensolver::Auto, tight);
    assert_eq!(chosen.chosen, Eigensolver::Krylov, "{chosen:?}");
    assert!(chosen.reason.contains("memory budget"), "{}", chosen.reason);
    // Forced routes are kept whatever the model says.
    assert_eq!(route::choose(&field, 1, Eigensolver::Dense, tight).chosen, Eigensolver::Dense);
    // Small D: dense.
    let small = KdeField::new(gpu(), normal_vec(&mut r, 300 * 5, 1.0), 5, KdeScale::bandwidth(0.5)).unwrap();
    assert_eq!(route::choose(&small, 1, Eigensolver::Auto, 1 << 30).chosen, Eigensolver::Dense);
    // Krylov SCMS under the tight budget runs, and its plan stays within it.
    let starts = normal_vec(&mut r, 7 * dim, 1.0);
    let settings = ScmsSettings { ridge_dim: 1, max_iterations: 3, ..ScmsSettings::default() };
    let options = JobOptions { memory_budget: tight, ..JobOptions::default() };
    let result = scms(&field, &starts, settings, options).unwrap();
    assert_eq!(result.route.chosen, Eigensolver::Krylov);
    assert!(result.eigen.peak_planned_bytes <= tight, "{:?}", result.eigen);
    assert!(result.points.iter().all(|v| v.is_finite()));
}
