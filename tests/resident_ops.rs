//! The kernels that keep iterations on the GPU: batched QR of row blocks (MGS²) against faer's Householder QR in
//! f64, and the linear combinations of Runge–Kutta updates against f64 sums. Sizes are not multiples of the
//! 256-thread workgroups.

mod common;

use std::sync::{Arc, OnceLock};

use common::{gpu, normal_vec, rel_err, rng};
use scorelens::analysis::qr::qr_rows;
use scorelens::gpu::{BufferRole, Recorder};
use scorelens::ops::lincomb::record_lincomb;
use scorelens::ops::qr::{record_qr_rows, QrFactors};
use scorelens::GpuContext;

/// A second device whose reductions are the workgroup tree (the shared one uses subgroups where the adapter has
/// them, lavapipe included), so both variants of the QR kernel run.
fn tree_gpu() -> Arc<GpuContext> {
    static TREE: OnceLock<Arc<GpuContext>> = OnceLock::new();
    TREE.get_or_init(|| {
        let ctx = Arc::new(GpuContext::new().expect("GPU tests need an adapter (CI uses lavapipe)"));
        ctx.set_subgroup_reductions(false).unwrap();
        ctx
    })
    .clone()
}

/// Runs the GPU QR on `blocks` ([b, k, d]) with R kept in slot 1 of 2; returns (Q, R, log diag) of that slot.
fn gpu_qr(blocks: &[f32], b: usize, k: usize, d: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    gpu_qr_on(&gpu(), blocks, b, k, d)
}

fn gpu_qr_on(ctx: &GpuContext, blocks: &[f32], b: usize, k: usize, d: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let q = ctx.upload("test/q", blocks);
    let r = ctx.buffer("test/r", (2 * b * k * k * 4) as u64, BufferRole::Storage);
    let log_diag = ctx.buffer("test/log_diag", (2 * b * k * 4) as u64, BufferRole::Storage);
    let mut rec = Recorder::new(ctx, "test/qr");
    record_qr_rows(&mut rec, &q, b, k, d, QrFactors { r: Some(&r), log_diag: &log_diag, slot: 1 }).unwrap();
    rec.submit();
    let q: Vec<f32> = ctx.download(&q, b * k * d).unwrap();
    let r: Vec<f32> = ctx.download(&r, 2 * b * k * k).unwrap();
    let l: Vec<f32> = ctx.download(&log_diag, 2 * b * k).unwrap();
    (q, r[b * k * k..].to_vec(), l[b * k..].to_vec())
}

/// max |Q Qᵀ − I| over the blocks of GPU rows, in f64.
fn orthonormality_error(q: &[f32], b: usize, k: usize, d: usize) -> f64 {
    let mut worst = 0f64;
    for blk in 0..b {
        for i in 0..k {
            for j in 0..k {
                let dot: f64 = (0..d).map(|e| q[(blk * k + i) * d + e] as f64 * q[(blk * k + j) * d + e] as f64).sum();
                worst = worst.max((dot - if i == j { 1.0 } else { 0.0 }).abs());
            }
        }
    }
    worst
}

fn check_qr(ctx: &GpuContext, blocks: &[f32], b: usize, k: usize, d: usize, tolerance: f64) {
    let wide: Vec<f64> = blocks.iter().map(|&v| v as f64).collect();
    let (q_ref, r_ref) = qr_rows(&wide, b, k, d);
    let (q, r, log_diag) = gpu_qr_on(ctx, blocks, b, k, d);
    let eq = rel_err(&q, &q_ref);
    let er = rel_err(&r, &r_ref);
    let log_ref: Vec<f64> = (0..b * k).map(|e| r_ref[(e / k) * k * k + (e % k) * (k + 1)].ln()).collect();
    let el = rel_err(&log_diag, &log_ref);
    let worst = orthonormality_error(&q, b, k, d);
    let path = if ctx.subgroup_reductions() { "subgroups" } else { "tree" };
    println!("qr ({path}) b={b} k={k} d={d}: Q {eq:.2e}, R {er:.2e}, log diag {el:.2e}, |QQᵀ − I| {worst:.2e}");
    assert!(eq < tolerance && er < tolerance && el < tolerance, "Q {eq:.2e} R {er:.2e} log {el:.2e}");
    assert!(worst < 1e-5, "rows not orthonormal: {worst:.2e}");
}

#[test]
fn qr_rows_matches_householder_in_f64() {
    let mut g = rng(11);
    for &(b, k, d) in &[(3, 1, 5), (5, 7, 37), (2, 9, 300), (3, 32, 531)] {
        let blocks = normal_vec(&mut g, b * k * d, 1.0);
        check_qr(&gpu(), &blocks, b, k, d, 2e-6);
        check_qr(&tree_gpu(), &blocks, b, k, d, 2e-6);
    }
}

#[test]
fn qr_rows_keeps_orthogonality_on_ill_conditioned_blocks() {
    // Rows spanning directions scaled from 1 to 1e-4 after a random rotation: κ ≈ 1e4, where one Gram–Schmidt
    // sweep in float32 would lose orthogonality.
    let (b, k, d) = (4, 6, 83);
    let mut g = rng(12);
    let basis = normal_vec(&mut g, b * k * d, 1.0);
    let mix = normal_vec(&mut g, b * k * k, 1.0);
    let mut blocks = vec![0f32; b * k * d];
    for blk in 0..b {
        for i in 0..k {
            for j in 0..k {
                let scale = 10f32.powf(-4.0 * j as f32 / (k - 1) as f32);
                for e in 0..d {
                    blocks[(blk * k + i) * d + e] += mix[(blk * k + i) * k + j] * scale * basis[(blk * k + j) * d + e];
                }
            }
        }
    }
    // Q's trailing rows are only determined to ε κ; R's and log R's relative errors stay small.
    let wide: Vec<f64> = blocks.iter().map(|&v| v as f64).collect();
    let (_, r_ref) = qr_rows(&wide, b, k, d);
    let (q, r, _) = gpu_qr(&blocks, b, k, d);
    let er = rel_err(&r, &r_ref);
    let worst = orthonormality_error(&q, b, k, d);
    println!("ill-conditioned: R {er:.2e}, |QQᵀ − I| {worst:.2e}");
    assert!(er < 1e-5, "R {er:.2e}");
    assert!(worst < 1e-5, "orthogonality lost: {worst:.2e}");
}

#[test]
fn qr_rows_zero_row_gives_zero_and_minus_infinity() {
    let (b, k, d) = (1, 3, 10);
    let mut blocks = normal_vec(&mut rng(13), b * k * d, 1.0);
    // Row 2 = row 0 + row 1: nothing left after projecting.
    for e in 0..d {
        blocks[2 * d + e] = blocks[e] + blocks[d + e];
    }
    let (q, r, log_diag) = gpu_qr(&blocks, b, k, d);
    assert!(r[8].abs() < 1e-5, "R_22 = {}", r[8]);
    assert!(log_diag[2] < -10.0, "log R_22 = {}", log_diag[2]);
    assert!(q.iter().all(|v| v.is_finite()));
}

#[test]
fn lincomb_matches_f64_sums() {
    let ctx = gpu();
    let len = 1000 + 37;
    let mut g = rng(14);
    let inputs: Vec<Vec<f32>> = (0..6).map(|_| normal_vec(&mut g, len, 1.0)).collect();
    let buffers: Vec<wgpu::Buffer> = inputs.iter().map(|v| ctx.upload("test/in", v)).collect();
    let coef = [0.5, -1.25, 3.0, 1e-3, -2.0, 0.75];
    for terms in 1..=6 {
        let out = ctx.buffer("test/out", (len * 4) as u64, BufferRole::Storage);
        let list: Vec<(f64, &wgpu::Buffer)> = coef.iter().zip(&buffers).take(terms).map(|(&c, b)| (c, b)).collect();
        let mut rec = Recorder::new(&ctx, "test/lincomb");
        record_lincomb(&mut rec, len, &list, &out).unwrap();
        rec.submit();
        let got: Vec<f32> = ctx.download(&out, len).unwrap();
        let want: Vec<f64> = (0..len).map(|i| (0..terms).map(|j| coef[j] * inputs[j][i] as f64).sum()).collect();
        let e = rel_err(&got, &want);
        assert!(e < 1e-6, "{terms} terms: {e:.2e}");
    }
    // The output may not alias an input.
    let mut rec = Recorder::new(&ctx, "test/lincomb");
    let err = record_lincomb(&mut rec, len, &[(1.0, &buffers[0])], &buffers[0]).unwrap_err();
    assert!(err.to_string().contains("also an input"), "{err}");
}
