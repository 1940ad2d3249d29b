//! Block Krylov singular triplets and symmetric-part eigenpairs (src/solver/block_krylov.rs) against faer's f64
//! SVD / eigendecomposition on explicit matrices with prescribed spectra: clustered values, tiny gaps, repeated
//! values, rank-deficient; sizes that are not multiples of the block; products in f64 and in f32 (as the GPU's).

mod common;

use common::cli::{s as path, scorelens, Scratch};
use common::spectra::{
    check_triplets, largest_principal_angle, orthogonal, prescribed_spectra, with_singular_values, Tolerances,
};
use common::{fixture, gpu, normal_vec, rng};
use faer::{Mat, Side};
use scorelens::analysis::{self, MatrixFreeSolver, SpectrumSettings};
use scorelens::io::npy;
use scorelens::scheduler::JobOptions;
use scorelens::solver::block_krylov::{block_krylov_svd, block_lanczos_symmetric_part, KrylovSettings};
use scorelens::solver::operator::DenseBatch;
use scorelens::{ScoreField, ScoreModel};

/// Runs the host solver on `a` (f32 products when `single`) and checks its triplets against the f64 SVD.
fn check_host(name: &str, a: &[f64], d: usize, k: usize, single: bool, tol: f64, value_tol: f64, angle_tol: f64) {
    let settings = KrylovSettings::new(k, tol, 300, 11);
    let mut op = DenseBatch::new(vec![a.to_vec()], d, single).unwrap();
    let found = block_krylov_svd(&mut op, settings, 0).unwrap().remove(0);
    // The solver's own residuals come from the (possibly f32) products; the true ones differ by that noise.
    let slack = if single { 2.0 } else { 1.0 + 1e-6 };
    let bounds = Tolerances { solver: tol, residual: slack * tol, value: value_tol, angle: angle_tol };
    check_triplets(name, a, d, k, &found, &bounds);
    eprintln!("{name}: {} steps, {} products", found.iterations, found.products);
}

#[test]
fn prescribed_spectra_in_f64() {
    let d = 61; // not a multiple of the block (8)
    for (seed, (name, s, k)) in prescribed_spectra(d).into_iter().enumerate() {
        let a = with_singular_values(&s, 40 + seed as u64);
        check_host(name, &a, d, k, false, 1e-10, 1e-9, 1e-6);
    }
}

#[test]
fn float32_products_reach_1e_5_on_a_slowly_decaying_spectrum() {
    // Values decaying as slowly as the U-Net's (relative gaps ~1%), products rounded and accumulated in f32.
    let d = 150;
    let s: Vec<f64> = (0..d).map(|i| 2.0 / (1.0 + 0.01 * i as f64)).collect();
    let a = with_singular_values(&s, 7);
    check_host("slow decay, f32 products", &a, d, 20, true, 1e-5, 1e-5, 1e-3);
}

#[test]
fn a_point_stopped_at_the_cap_is_flagged_and_others_are_not_affected() {
    let d = 45;
    let easy =
        with_singular_values(&(0..d).map(|i| if i < 6 { 0.5f64.powi(i as i32) } else { 0.0 }).collect::<Vec<_>>(), 3);
    let hard = with_singular_values(&(0..d).map(|i| 1.0 - 1e-3 * i as f64).collect::<Vec<_>>(), 4);
    let mut settings = KrylovSettings::new(5, 1e-10, 3, 2);
    settings.basis = 25;
    let mut op = DenseBatch::new(vec![easy.clone(), hard.clone()], d, false).unwrap();
    let both = block_krylov_svd(&mut op, settings, 10).unwrap();
    assert!(both[0].converged, "the easy point converges within 3 steps");
    assert!(!both[1].converged, "the hard point cannot converge in 3 steps and must say so");
    assert_eq!(both[1].iterations, 3);
    assert!(both[1].transpose_residuals.iter().any(|&r| r > 1e-10));
    // The same rows alone (their global rows kept) give the same bits: the batch does not matter.
    let mut alone = DenseBatch::new(vec![hard], d, false).unwrap();
    let second = block_krylov_svd(&mut alone, settings, 11).unwrap().remove(0);
    assert_eq!(second, both[1]);
    let mut alone = DenseBatch::new(vec![easy], d, false).unwrap();
    let first = block_krylov_svd(&mut alone, settings, 10).unwrap().remove(0);
    assert_eq!(first, both[0]);
}

#[test]
fn symmetric_part_eigenpairs_by_magnitude() {
    // A = S + K with S = Q diag(λ) Qᵀ (mixed signs, a repeated pair, a cluster) and K antisymmetric, which the
    // symmetric part (A + Aᵀ)/2 = S must not see.
    let d = 53;
    let lambda: Vec<f64> = (0..d)
        .map(|i| match i {
            0 => -6.0,
            1 | 2 => 5.0,
            3 => -4.0,
            4..=7 => 3.0 - 1e-3 * i as f64,
            _ => 0.8 * 0.95f64.powi(i as i32) * if i % 2 == 0 { 1.0 } else { -1.0 },
        })
        .collect();
    let q = orthogonal(d, 77);
    let s = &q * Mat::<f64>::from_fn(d, d, |r, c| if r == c { lambda[r] } else { 0.0 }) * q.transpose();
    let g = normal_vec(&mut rng(78), d * d, 1.0);
    let a: Vec<f64> = (0..d * d).map(|e| s[(e / d, e % d)] + 0.7 * (g[e] - g[(e % d) * d + e / d]) as f64).collect();
    let k = 9;
    for single in [false, true] {
        let tol = if single { 1e-5 } else { 1e-10 };
        let mut op = DenseBatch::new(vec![a.clone()], d, single).unwrap();
        let found = block_lanczos_symmetric_part(&mut op, KrylovSettings::new(k, tol, 300, 5), 0).unwrap().remove(0);
        assert!(found.converged, "f32 products: {single}");
        let eig = s.self_adjoint_eigen(Side::Lower).unwrap();
        let mut want: Vec<f64> = (0..d).map(|i| eig.S().column_vector()[i]).collect();
        want.sort_by(|a, b| b.abs().total_cmp(&a.abs()));
        for i in 0..k {
            let err = (found.values[i] - want[i]).abs() / 6.0;
            assert!(err <= 10.0 * tol, "f32 {single}: λ{i} {} vs {}", found.values[i], want[i]);
            // The residual recomputed from S itself.
            let x = &found.vectors[i * d..(i + 1) * d];
            let r: f64 = (0..d)
                .map(|row| ((0..d).map(|c| s[(row, c)] * x[c]).sum::<f64>() - found.values[i] * x[row]).powi(2))
                .sum::<f64>()
                .sqrt()
                / 6.0;
            assert!(r <= 2.0 * tol, "f32 {single}: eigenpair {i} residual {r:e}");
        }
        eprintln!("symmetric part (f32 {single}): {} steps, {} products", found.iterations, found.products);
    }
}

#[test]
fn bad_settings_are_named() {
    let mut op = DenseBatch::new(vec![vec![1.0; 9]], 3, false).unwrap();
    let err = block_krylov_svd(&mut op, KrylovSettings::new(4, 1e-5, 10, 0), 0).unwrap_err().to_string();
    assert!(err.contains("k = 4") && err.contains("D = 3"), "{err}");
    let err = block_krylov_svd(&mut op, KrylovSettings { block: 0, ..KrylovSettings::new(2, 1e-5, 10, 0) }, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("block"), "{err}");
}

#[test]
fn song_unet_jacobian_top_32_with_f32_products() {
    // The fixture's exact U-Net Jacobian (PyTorch, first point; D = 784) as an explicit operator with f32
    // products: the top 32 triplets to both residuals ≤ 1e-5 and values within 1e-5 of PyTorch's f64 SVD.
    let jac = scorelens::io::npy::read_f32(&fixture("song_unet/jacobian.npy")).unwrap();
    let want = scorelens::io::npy::read_f64(&fixture("song_unet/singular_values.npy")).unwrap();
    let d = 784;
    let a: Vec<f64> = jac.data[..d * d].iter().map(|&v| v as f64).collect();
    let mut op = DenseBatch::new(vec![a], d, true).unwrap();
    let found = block_krylov_svd(&mut op, KrylovSettings::new(32, 1e-5, 400, 0), 0).unwrap().remove(0);
    assert!(found.converged, "{} steps", found.iterations);
    for i in 0..32 {
        let err = (found.singular_values[i] - want.data[i]).abs();
        assert!(err <= 1e-5, "s{i}: {} vs {} ({err:e})", found.singular_values[i], want.data[i]);
    }
    eprintln!("song_unet jacobian: {} steps, {} products", found.iterations, found.products);
}

#[test]
fn mlp_fixture_krylov_spectrum_matches_the_dense_route() {
    // On the GPU: the MLP fixture (D = 16, 8 points) by block Krylov on the exact products against the dense
    // route's f64 SVD of the exact Jacobian, and the fixture's PyTorch float64 singular values.
    let model = ScoreModel::load(&fixture("mlp_silu/model.safetensors")).unwrap();
    let x = npy::read_f32(&fixture("mlp_silu/x.npy")).unwrap().data;
    let t = npy::read_f32(&fixture("mlp_silu/t.npy")).unwrap().data;
    let want = npy::read_f64(&fixture("mlp_silu/singular_values.npy")).unwrap();
    let (d, k) = (16, 5);
    let field = ScoreField::new(gpu(), &model).unwrap();
    let mut dense = Vec::new();
    let settings = SpectrumSettings { k: d, threshold_c: 2.0, vectors: true };
    analysis::spectra(&field, &x, &t, settings, JobOptions::default(), |_, s| {
        dense.push(s);
        Ok(())
    })
    .unwrap();
    let lowrank =
        analysis::lowrank::LowRankSettings { k, oversampling: 0, tolerance: 1e-5, max_iterations: 100, seed: 3 };
    let options = JobOptions::default();
    let found =
        analysis::matrix_free_spectra(&field, &x, &t, 0, MatrixFreeSolver::Krylov, lowrank, 2.0, 64, options).unwrap();
    for (p, (f, full)) in found.iter().zip(&dense).enumerate() {
        assert!(f.converged, "point {p} not converged");
        assert!(f.products > 0);
        let s1 = full.singular_values[0];
        for i in 0..k {
            let (g, w) = (f.singular_values[i], full.singular_values[i]);
            assert!((g - w).abs() <= 1e-5 * s1, "point {p} s{i}: krylov {g} dense {w}");
            assert!(
                (g - want.data[p * d + i]).abs() <= 2e-5 * s1,
                "point {p} s{i}: krylov {g} PyTorch f64 {}",
                want.data[p * d + i]
            );
            assert!(f.residuals[i] <= 1e-5 && f.transpose_residuals[i] <= 1e-5, "point {p} triplet {i}");
            // The symmetric part's eigenvalues, against the dense route's.
            let (e, we) = (f.symmetric_eigenvalues[i], full.symmetric_eigenvalues[i]);
            assert!((e - we).abs() <= 1e-4 * we.abs().max(1e-3 * s1), "point {p} λ{i}: krylov {e} dense {we}");
        }
        if full.singular_values[k - 1] > 1.01 * full.singular_values[k] {
            let (dl, dr) = (&full.left.as_ref().unwrap()[..k * d], &full.right.as_ref().unwrap()[..k * d]);
            let left = largest_principal_angle(f.left.as_ref().unwrap(), dl, k, d);
            let right = largest_principal_angle(f.right.as_ref().unwrap(), dr, k, d);
            assert!(left <= 1e-3 && right <= 1e-3, "point {p}: principal angles {left:e}, {right:e}");
        }
    }
    // A point alone (its global row kept) gives the same values as in the batch.
    let alone = analysis::matrix_free_spectra(
        &field,
        &x[3 * d..4 * d],
        &t[3..4],
        3,
        MatrixFreeSolver::Krylov,
        lowrank,
        2.0,
        64,
        options,
    )
    .unwrap();
    assert_eq!(alone[0].singular_values, found[3].singular_values);
    assert_eq!(alone[0].products, found[3].products);
}

#[test]
fn cli_auto_records_its_route_and_reason_and_flags_rows_short_of_the_tolerance() {
    let scratch = Scratch::new();
    let model = fixture("mlp_silu/model.safetensors");
    let (x, t) = (fixture("mlp_silu/x.npy"), fixture("mlp_silu/t.npy"));
    let out = scratch.path("auto");
    let (code, _, stderr) =
        scorelens(&["spectrum", path(&model), "--x", path(&x), "--t", path(&t), "--k", "4", "-o", path(&out)]);
    assert_eq!(code, 0, "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    // D = 16: the dense Jacobian is 16 products a point, no iterative route comes near.
    assert_eq!(summary["method"], "dense", "{summary}");
    assert_eq!(summary["method_requested"], "auto");
    let reason = summary["method_reason"].as_str().unwrap();
    assert!(reason.contains("krylov") && reason.contains("D = 16"), "{reason}");
    assert_eq!(summary["products"], 8 * 16);
    assert!(summary["rows"].as_array().unwrap().iter().all(|r| r["converged"] == true));

    // Krylov with a cap of one step and an unreachable tolerance: every row says converged: false, and stderr
    // names them.
    let capped = scratch.path("capped");
    let (code, _, stderr) = scorelens(&[
        "spectrum",
        path(&model),
        "--x",
        path(&x),
        "--t",
        path(&t),
        "--k",
        "4",
        "--method",
        "krylov",
        "--max-iter",
        "1",
        "--tol",
        "1e-14",
        "-o",
        path(&capped),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("converged: false") && stderr.contains("rows 0, 1, 2"), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(capped.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["method"], "krylov");
    assert_eq!(summary["converged"], false);
    let rows = std::fs::read_to_string(capped.join("rows.jsonl")).unwrap();
    assert_eq!(rows.lines().count(), 8);
    for line in rows.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(row["converged"], false, "{line}");
    }
}

#[test]
fn small_dimensions_and_a_zero_operator() {
    // k = D, D smaller than the block, and J = 0: the basis fills R^D and the Ritz values are exact.
    for (d, k) in [(7, 7), (3, 2), (1, 1)] {
        let s: Vec<f64> = (0..d).map(|i| 3.0 - 0.4 * i as f64).collect();
        let a = with_singular_values(&s, 90 + d as u64);
        let mut op = DenseBatch::new(vec![a, vec![0.0; d * d]], d, false).unwrap();
        let settings = KrylovSettings { block: 4, ..KrylovSettings::new(k, 1e-10, 50, 1) };
        let found = block_krylov_svd(&mut op, settings, 0).unwrap();
        assert!(found[0].converged && found[1].converged, "D = {d}");
        for i in 0..k {
            assert!((found[0].singular_values[i] - s[i]).abs() <= 1e-12, "D = {d} s{i}");
            assert_eq!(found[1].singular_values[i], 0.0);
        }
        let eig = block_lanczos_symmetric_part(&mut op, settings, 0).unwrap();
        assert!(eig.iter().all(|e| e.converged && e.values.len() == k), "D = {d}");
        assert!(eig[1].values.iter().all(|&v| v == 0.0));
    }
}
