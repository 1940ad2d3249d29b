//! The resident block Krylov solver (src/solver/resident_krylov.rs: bases on the GPU in f32, projections in f64
//! on the host) against faer's f64 SVD on explicit matrices with prescribed spectra (clustered, tiny gaps,
//! repeated, rank-deficient; sizes that are not multiples of the block) and against its host twin
//! (block_krylov_svd), with f32 products; and its Gram kernel (shaders/block_gram.wgsl) against the f64 twin.

mod common;

use common::spectra::{
    check_triplets, largest_principal_angle, prescribed_spectra, subspace_gap, with_singular_values, Tolerances,
};
use common::{fixture, gpu, normal_vec, rng};
use scorelens::analysis::lowrank::JacobianBatch;
use scorelens::derivative::blocks::ResidentJacobians;
use scorelens::gpu::{BufferRole, Recorder};
use scorelens::io::npy;
use scorelens::ops::gram::{gram_len, record_block_gram, RowBlock};
use scorelens::reference::gram::block_gram;
use scorelens::scheduler::JobOptions;
use scorelens::solver::block_krylov::{block_krylov_svd, KrylovSettings, Triplets};
use scorelens::solver::operator::{DenseBatch, DeviceDense};
use scorelens::solver::resident_krylov::{block_krylov_svd_resident, resident_fits};
use scorelens::{ScoreField, ScoreModel};

fn resident(matrices: Vec<Vec<f64>>, d: usize, settings: KrylovSettings, first_row: usize) -> Vec<Triplets> {
    let ctx = gpu();
    let mut op = DeviceDense::new(ctx.clone(), DenseBatch::new(matrices, d, true).unwrap());
    block_krylov_svd_resident(&ctx, &mut op, settings, first_row).unwrap()
}

/// The resident triplets of `a` against the f64 SVD: values within `value_tol` · s₁, both residuals recomputed
/// here from A in f64 within 2 · tol, principal angles within `angle_tol` where s_k / s_{k+1} > 1.01; and the
/// host twin on the same f32 products reaches the same values. Returns (resident, host) products.
fn check(name: &str, a: &[f64], d: usize, k: usize, tol: f64, value_tol: f64, angle_tol: f64) -> (usize, usize) {
    let settings = KrylovSettings::new(k, tol, 300, 11);
    assert!(resident_fits(&settings, d), "{name}: D = {d} too small for the resident method");
    let found = resident(vec![a.to_vec()], d, settings, 0).remove(0);
    let bounds = Tolerances { solver: tol, residual: 2.0 * tol, value: value_tol, angle: angle_tol };
    let reference = check_triplets(name, a, d, k, &found, &bounds);
    let s1 = reference.values[0];
    let mut op = DenseBatch::new(vec![a.to_vec()], d, true).unwrap();
    let host = block_krylov_svd(&mut op, settings, 0).unwrap().remove(0);
    assert!(host.converged, "{name}: the host twin did not converge");
    for i in 0..k {
        let gap = (found.singular_values[i] - host.singular_values[i]).abs() / s1;
        assert!(
            gap <= 2.0 * value_tol,
            "{name}: s{i} resident {} vs host {}",
            found.singular_values[i],
            host.singular_values[i]
        );
    }
    if subspace_gap(&reference.values, k) {
        let l = largest_principal_angle(&host.left, &reference.left, k, d);
        eprintln!("{name}: the host twin's left principal angle {l:e}");
    }
    eprintln!(
        "{name}: resident {} steps, {} products; host {} steps, {} products",
        found.iterations, found.products, host.iterations, host.products
    );
    (found.products, host.products)
}

#[test]
fn gram_kernel_matches_its_f64_twin_on_awkward_sizes() {
    let ctx = gpu();
    // 3 points, rows of 203 elements (not a multiple of the 64 threads), 5 × 7 pairs, point strides with gaps and
    // offsets into shared buffers; values of mixed magnitude.
    let (points, d, ra, rc) = (3, 203, 5, 7);
    let (a_stride, a_offset, c_stride, c_offset) = (ra * d + 11, 5, rc * d + 2 * d, 3 * d + 1);
    let mut g = rng(5);
    let a: Vec<f32> = normal_vec(&mut g, a_offset + points * a_stride, 1.0)
        .into_iter()
        .enumerate()
        .map(|(e, v)| if e % 3 == 0 { v * 1e3 } else { v })
        .collect();
    let c: Vec<f32> = normal_vec(&mut g, c_offset + points * c_stride, 1.0);
    let (abuf, cbuf) = (ctx.upload("a", &a), ctx.upload("c", &c));
    for diagonal in [false, true] {
        let rows_c = if diagonal { ra } else { rc };
        let c_block = RowBlock { buffer: &cbuf, rows: rows_c, stride: c_stride, offset: c_offset };
        let a_block = RowBlock { buffer: &abuf, rows: ra, stride: a_stride, offset: a_offset };
        let len = gram_len(points, ra, rows_c, diagonal);
        let out = ctx.buffer("out", (len * 4) as u64, BufferRole::Storage);
        let mut rec = Recorder::new(&ctx, "test");
        record_block_gram(&mut rec, points, d, a_block, c_block, diagonal, &out).unwrap();
        rec.submit();
        let got: Vec<f64> = ctx.download::<f32>(&out, len).unwrap().into_iter().map(f64::from).collect();
        let want = block_gram(&a, (ra, a_stride, a_offset), &c, (rows_c, c_stride, c_offset), points, d, diagonal);
        let norm = want.iter().map(|v| v * v).sum::<f64>().sqrt();
        let err = got.iter().zip(&want).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt() / norm;
        eprintln!("block_gram (diagonal {diagonal}): relative error {err:e}");
        assert!(err <= 1e-6, "diagonal {diagonal}: relative error {err:e}");
    }
}

#[test]
fn gram_kernel_names_a_short_buffer() {
    let ctx = gpu();
    let small = ctx.upload("a", &[0f32; 10]);
    let out = ctx.buffer("out", 64, BufferRole::Storage);
    let mut rec = Recorder::new(&ctx, "test");
    let block = RowBlock { buffer: &small, rows: 2, stride: 20, offset: 0 };
    let err = record_block_gram(&mut rec, 2, 10, block, block, false, &out).unwrap_err().to_string();
    assert!(err.contains("block_gram") && err.contains("a needs"), "{err}");
}

#[test]
fn prescribed_spectra_with_f32_products_on_the_device() {
    let d = 67; // not a multiple of the block (8) nor of the Gram kernel's 64 threads
    for (seed, (name, s, k)) in prescribed_spectra(d).into_iter().enumerate() {
        let a = with_singular_values(&s, 40 + seed as u64);
        check(name, &a, d, k, 1e-5, 1e-5, 1e-3);
    }
}

#[test]
fn resident_reaches_1e_5_on_a_slowly_decaying_spectrum() {
    // Relative gaps of ~1% as the U-Net's, many restarts: the f32 bases must not stall above the tolerance.
    let d = 150;
    let s: Vec<f64> = (0..d).map(|i| 2.0 / (1.0 + 0.01 * i as f64)).collect();
    let a = with_singular_values(&s, 7);
    let (resident, host) = check("slow decay", &a, d, 20, 1e-5, 1e-5, 1e-3);
    // Same method, same draws: the f32 bases may cost a step or two, not more.
    assert!(resident <= host + 4 * 8 * 2, "resident {resident} products vs host {host}");
}

#[test]
fn a_point_at_the_cap_is_flagged_and_the_batch_does_not_change_a_point() {
    let d = 45;
    let easy =
        with_singular_values(&(0..d).map(|i| if i < 6 { 0.5f64.powi(i as i32) } else { 0.0 }).collect::<Vec<_>>(), 3);
    let hard = with_singular_values(&(0..d).map(|i| 1.0 - 1e-3 * i as f64).collect::<Vec<_>>(), 4);
    let mut settings = KrylovSettings::new(5, 1e-5, 3, 2);
    settings.basis = 25;
    let both = resident(vec![easy.clone(), hard.clone()], d, settings, 10);
    assert!(both[0].converged, "the easy point converges within 3 steps");
    assert!(!both[1].converged, "the hard point cannot converge in 3 steps and must say so");
    assert_eq!(both[1].iterations, 3);
    let alone = resident(vec![hard], d, settings, 11).remove(0);
    let first = resident(vec![easy], d, settings, 10).remove(0);
    assert_eq!((alone.iterations, alone.products), (both[1].iterations, both[1].products));
    assert_eq!((first.iterations, first.products), (both[0].iterations, both[0].products));
    for i in 0..5 {
        assert!((alone.singular_values[i] - both[1].singular_values[i]).abs() <= 1e-6);
        assert!((first.singular_values[i] - both[0].singular_values[i]).abs() <= 1e-6);
    }
}

#[test]
fn too_small_a_dimension_is_refused_by_name() {
    let ctx = gpu();
    let mut op = DeviceDense::new(ctx.clone(), DenseBatch::new(vec![vec![1.0; 400]], 20, true).unwrap());
    let err = block_krylov_svd_resident(&ctx, &mut op, KrylovSettings::new(8, 1e-5, 10, 0), 0).unwrap_err().to_string();
    assert!(err.contains("D = 20") && err.contains("host path"), "{err}");
}

#[test]
fn song_unet_jacobian_top_32_resident() {
    // The fixture's exact U-Net Jacobian (first point; D = 784) with f32 products: the top 32 to both residuals
    // ≤ 1e-5 and values within 1e-5 of PyTorch's f64 SVD, with the bases in f32 on the device.
    let jac = scorelens::io::npy::read_f32(&fixture("song_unet/jacobian.npy")).unwrap();
    let want = scorelens::io::npy::read_f64(&fixture("song_unet/singular_values.npy")).unwrap();
    let d = 784;
    let a: Vec<f64> = jac.data[..d * d].iter().map(|&v| v as f64).collect();
    let found = resident(vec![a], d, KrylovSettings::new(32, 1e-5, 400, 0), 0).remove(0);
    assert!(found.converged, "{} steps", found.iterations);
    for i in 0..32 {
        let err = (found.singular_values[i] - want.data[i]).abs();
        assert!(err <= 1e-5, "s{i}: {} vs {} ({err:e})", found.singular_values[i], want.data[i]);
        assert!(found.residuals[i] <= 1e-5 && found.transpose_residuals[i] <= 1e-5);
    }
    eprintln!("song_unet jacobian (resident): {} steps, {} products", found.iterations, found.products);
}

#[test]
fn network_jacobians_resident_match_pytorch_and_the_host_path() {
    // The MLP fixture (D = 16, 8 points) through the network's own products on device blocks (ResidentJacobians):
    // k = 2, b = 2, a basis of 10 (D ≥ 10 + 2·2). Points finish at different steps, so the batch shrinks and the
    // others are linearised again.
    let model = ScoreModel::load(&fixture("mlp_silu/model.safetensors")).unwrap();
    let x = npy::read_f32(&fixture("mlp_silu/x.npy")).unwrap().data;
    let t = npy::read_f32(&fixture("mlp_silu/t.npy")).unwrap().data;
    let want = npy::read_f64(&fixture("mlp_silu/singular_values.npy")).unwrap();
    let (d, k) = (16, 2);
    let ctx = gpu();
    let field = ScoreField::new(ctx.clone(), &model).unwrap();
    let settings = KrylovSettings::new(k, 1e-5, 100, 3);
    assert!(resident_fits(&settings, d));
    let mut op = ResidentJacobians::new(&field, &x, &t, settings.block).unwrap();
    let found = block_krylov_svd_resident(&ctx, &mut op, settings, 0).unwrap();
    let mut host_op = JacobianBatch::new(&field, &x, &t, settings.block, JobOptions::default()).unwrap();
    let host = block_krylov_svd(&mut host_op, settings, 0).unwrap();
    assert_eq!(found.len(), 8);
    for (p, (f, h)) in found.iter().zip(&host).enumerate() {
        assert!(f.converged && h.converged, "point {p}");
        let s1 = want.data[p * d];
        for i in 0..k {
            let w = want.data[p * d + i];
            assert!(
                (f.singular_values[i] - w).abs() <= 2e-5 * s1,
                "point {p} s{i}: {} vs PyTorch {w}",
                f.singular_values[i]
            );
            assert!((f.singular_values[i] - h.singular_values[i]).abs() <= 2e-5 * s1, "point {p} s{i} vs host");
            assert!(f.residuals[i] <= 1e-5 && f.transpose_residuals[i] <= 1e-5, "point {p} triplet {i}");
        }
        eprintln!("point {p}: resident {} products, host {}", f.products, h.products);
    }
}
