//! The reductions on subgroup operations against the workgroup trees and an f64 reference: the GroupNorm tangent
//! and adjoint statistics (shared/workgroup_sum.wgsl and shared/workgroup_sum_subgroup.wgsl), both paths forced in
//! turn on the CI adapter (lavapipe offers subgroups, so the subgroup path is tested there, which is why it is on
//! by default on lavapipe; see `Capabilities::subgroups_by_default`).

mod common;

use common::{gpu, normal_vec, rel_err, rng};
use rand::Rng;
use scorelens::gpu::Recorder;
use scorelens::ops::conv::{AdjointNorm, GradientSource};
use scorelens::ops::groupnorm::{record_groupnorm_adjoint_stats, record_groupnorm_tangent_stats};
use scorelens::Activation;

struct Case {
    points: usize,
    per_point: usize,
    pixels: usize,
    channels: usize,
    groups: usize,
}

const CASES: [Case; 3] = [
    // n = pixels · channels / groups below, near and above the 256 threads of a workgroup.
    Case { points: 2, per_point: 3, pixels: 37, channels: 12, groups: 3 },
    Case { points: 1, per_point: 2, pixels: 64, channels: 8, groups: 2 },
    Case { points: 3, per_point: 1, pixels: 300, channels: 8, groups: 4 },
];

/// (mean, rstd) per (point, group) for the primal, written where the kernels read them.
fn stats(r: &mut impl Rng, points: usize, groups: usize) -> Vec<f32> {
    (0..points * groups).flat_map(|_| [r.random_range(-0.5f32..0.5), r.random_range(0.5f32..2.0)]).collect()
}

/// Runs the tangent statistics with subgroups `on`, returning (gpu, f64 reference) for the written slots.
fn tangent_stats(case: &Case, on: bool, seed: u64) -> (Vec<f32>, Vec<f64>) {
    let ctx = gpu();
    let Case { points, per_point, pixels, channels, groups } = *case;
    let rows = points * per_point;
    let cg = channels / groups;
    let n = pixels * cg;
    let mut r = rng(seed);
    let tangent = normal_vec(&mut r, rows * pixels * channels, 1.0);
    let primal = normal_vec(&mut r, points * pixels * channels, 1.0);
    let stats_offset = 5;
    let tstats_offset = stats_offset + points * groups * 2 + 3;
    let mut coef = vec![0.0f32; tstats_offset + rows * groups * 2 + 1];
    coef[stats_offset..stats_offset + points * groups * 2].copy_from_slice(&stats(&mut r, points, groups));

    let (gt, gp, gc) = (ctx.upload("tangent", &tangent), ctx.upload("primal", &primal), ctx.upload("coef", &coef));
    ctx.set_subgroup_reductions(on).unwrap();
    let mut rec = Recorder::new(&ctx, "test/tangent-stats");
    record_groupnorm_tangent_stats(
        &mut rec,
        rows,
        per_point,
        pixels,
        channels,
        groups,
        &gt,
        &gp,
        &gc,
        stats_offset,
        tstats_offset,
    )
    .unwrap();
    rec.submit();
    let got: Vec<f32> = ctx.download(&gc, coef.len()).unwrap();

    let mut want = Vec::new();
    for row in 0..rows {
        let b = row / per_point;
        for g in 0..groups {
            let s = stats_offset + (b * groups + g) * 2;
            let (mean, rstd) = (coef[s] as f64, coef[s + 1] as f64);
            let (mut m1, mut m2) = (0.0f64, 0.0f64);
            for p in 0..pixels {
                for c in g * cg..(g + 1) * cg {
                    let dz = tangent[(row * pixels + p) * channels + c] as f64;
                    let x_hat = (primal[(b * pixels + p) * channels + c] as f64 - mean) * rstd;
                    m1 += dz;
                    m2 += dz * x_hat;
                }
            }
            want.extend([m1 / n as f64, m2 / n as f64]);
        }
    }
    let start = tstats_offset;
    (got[start..start + rows * groups * 2].to_vec(), want)
}

/// The adjoint statistics (two gradient sources in strided buffers) with subgroups `on`.
fn adjoint_stats(case: &Case, on: bool, seed: u64) -> (Vec<f32>, Vec<f64>) {
    let ctx = gpu();
    let Case { points, per_point, pixels, channels, groups } = *case;
    let rows = points * per_point;
    let cg = channels / groups;
    let n = pixels * cg;
    let mut r = rng(seed);
    let (stride1, offset1, stride2, offset2) = (channels + 3, 2, channels + 1, 1);
    let grad1 = normal_vec(&mut r, rows * pixels * stride1, 1.0);
    let grad2 = normal_vec(&mut r, rows * pixels * stride2, 1.0);
    let primal = normal_vec(&mut r, points * pixels * channels, 1.0);
    let norm_offset = 3;
    let stats_offset = norm_offset + points * channels * 2 + 1;
    let astats_offset = stats_offset + points * groups * 2 + 2;
    let mut coef = vec![0.0f32; astats_offset + rows * groups * 2];
    for v in &mut coef[norm_offset..norm_offset + points * channels * 2] {
        *v = r.random_range(-1.0f32..1.0);
    }
    coef[stats_offset..stats_offset + points * groups * 2].copy_from_slice(&stats(&mut r, points, groups));

    let (g1, g2, gp, gc) =
        (ctx.upload("g1", &grad1), ctx.upload("g2", &grad2), ctx.upload("primal", &primal), ctx.upload("coef", &coef));
    ctx.set_subgroup_reductions(on).unwrap();
    let mut rec = Recorder::new(&ctx, "test/adjoint-stats");
    let norm = AdjointNorm { primal: &gp, groups, norm_offset, stats_offset, astats_offset };
    record_groupnorm_adjoint_stats(
        &mut rec,
        rows,
        per_point,
        pixels,
        channels,
        norm,
        GradientSource { buffer: &g1, stride: stride1, offset: offset1 },
        Some(GradientSource { buffer: &g2, stride: stride2, offset: offset2 }),
        &gc,
    )
    .unwrap();
    rec.submit();
    let got: Vec<f32> = ctx.download(&gc, coef.len()).unwrap();

    let mut want = Vec::new();
    for row in 0..rows {
        let b = row / per_point;
        for g in 0..groups {
            let s = stats_offset + (b * groups + g) * 2;
            let (mean, rstd) = (coef[s] as f64, coef[s + 1] as f64);
            let (mut n1, mut n2) = (0.0f64, 0.0f64);
            for p in 0..pixels {
                for c in g * cg..(g + 1) * cg {
                    let pixel = row * pixels + p;
                    let h_bar =
                        grad1[pixel * stride1 + offset1 + c] as f64 + grad2[pixel * stride2 + offset2 + c] as f64;
                    let z = primal[(b * pixels + p) * channels + c] as f64;
                    let k = norm_offset + (b * channels + c) * 2;
                    let (scale, shift) = (coef[k] as f64, coef[k + 1] as f64);
                    let gamma_y_bar = h_bar * Activation::Silu.derivative_f64(z * scale + shift) * scale / rstd;
                    n1 += gamma_y_bar;
                    n2 += gamma_y_bar * (z - mean) * rstd;
                }
            }
            want.extend([n1 / n as f64, n2 / n as f64]);
        }
    }
    (got[astats_offset..].to_vec(), want)
}

#[test]
fn subgroup_and_tree_reductions_match_reference() {
    let ctx = gpu();
    let has = ctx.caps.features.contains(wgpu::Features::SUBGROUP);
    eprintln!(
        "adapter {}: subgroups {has}, on by default {}",
        ctx.adapter_description(),
        ctx.caps.subgroups_by_default()
    );
    let initial = ctx.subgroup_reductions();
    let paths: &[bool] = if has { &[false, true] } else { &[false] };
    for (i, case) in CASES.iter().enumerate() {
        for &on in paths {
            let (got, want) = tangent_stats(case, on, 10 + i as u64);
            let err = rel_err(&got, &want);
            eprintln!("tangent stats case {i} subgroups={on}: rel err {err:.2e}");
            assert!(err <= 1e-5, "tangent stats case {i} subgroups={on}: rel err {err:e}");
            let (got, want) = adjoint_stats(case, on, 20 + i as u64);
            let err = rel_err(&got, &want);
            eprintln!("adjoint stats case {i} subgroups={on}: rel err {err:.2e}");
            assert!(err <= 1e-5, "adjoint stats case {i} subgroups={on}: rel err {err:e}");
        }
    }
    if !has {
        assert!(ctx.set_subgroup_reductions(true).is_err(), "forcing subgroups on must fail without the feature");
    }
    ctx.set_subgroup_reductions(initial).unwrap();
}
