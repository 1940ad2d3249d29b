//! The matmul kernels against the f64 reference, on shapes that are not multiples of the 64×64×16 tiles.

mod common;

use common::{gpu, normal_vec, rel_err, rng};
use rand::Rng;
use scorelens::gpu::{BufferRole, Recorder};
use scorelens::ops::matmul::{record_matmul_with, Epilogue, MatmulShape};
use scorelens::{reference, Activation};

fn check(shape: MatmulShape, kernel: &'static str, act: Activation, with_bias: bool, with_scale: bool, seed: u64) {
    let ctx = gpu();
    let mut r = rng(seed);
    let (ea, eb, ec) = shape.extents();
    let a = normal_vec(&mut r, ea as usize, 1.0);
    let b = normal_vec(&mut r, eb as usize, 1.0);
    let bias = normal_vec(&mut r, shape.n as usize, 1.0);
    let scale: Vec<f32> = (0..shape.m).map(|_| r.random_range(0.5..2.0)).collect();

    let (ga, gb) = (ctx.upload("a", &a), ctx.upload("b", &b));
    let (gbias, gscale) = (ctx.upload("bias", &bias), ctx.upload("scale", &scale));
    let gc = ctx.buffer("c", ec * 4, BufferRole::Storage);
    let mut rec = Recorder::new(&ctx, "test/matmul");
    let epilogue = Epilogue { act, bias: with_bias.then_some(&gbias), row_scale: with_scale.then_some(&gscale) };
    record_matmul_with(&mut rec, kernel, &shape, &ga, &gb, epilogue, &gc).unwrap();
    rec.submit();
    let got: Vec<f32> = ctx.download(&gc, ec as usize).unwrap();

    let mut want = vec![0.0f64; ec as usize];
    reference::matmul::matmul(&shape, &a, &b, with_bias.then_some(&bias), act, with_scale.then_some(&scale), &mut want);
    let err = rel_err(&got, &want);
    assert!(err <= 1e-5, "{kernel} {shape:?} act {act} bias {with_bias} scale {with_scale}: rel err {err:e}");
}

#[test]
fn tiled_matches_reference_on_awkward_shapes_and_layouts() {
    let shapes = [(1, 1, 1), (3, 5, 7), (17, 65, 15), (65, 63, 17), (130, 257, 33), (77, 1, 300), (200, 129, 1)];
    let mut seed = 0;
    for &(m, n, k) in &shapes {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let mut shape = MatmulShape::new(m, n, k);
            if ta {
                shape = shape.with_trans_a();
            }
            if tb {
                shape = shape.with_trans_b();
            }
            seed += 1;
            check(shape, "matmul_tiled", Activation::Identity, false, false, seed);
        }
    }
}

#[test]
fn small_matches_reference_on_awkward_shapes_and_layouts() {
    for &(m, n, k) in &[(1, 1, 1), (1, 300, 37), (5, 65, 129), (16, 3, 600)] {
        for (ta, tb) in [(false, false), (true, true), (false, true)] {
            let mut shape = MatmulShape::new(m, n, k);
            if ta {
                shape = shape.with_trans_a();
            }
            if tb {
                shape = shape.with_trans_b();
            }
            check(shape, "matmul_small", Activation::Identity, false, false, (m * 1000 + n + k) as u64);
        }
    }
}

#[test]
fn fused_epilogues_match_reference_for_every_activation() {
    let mut seed = 100;
    for act in [Activation::Identity, Activation::Relu, Activation::Silu, Activation::Gelu, Activation::Tanh] {
        for kernel in ["matmul_tiled", "matmul_small"] {
            for (bias, scale) in [(true, false), (true, true), (false, true)] {
                seed += 1;
                let shape = MatmulShape::new(13, 70, 45).with_trans_b();
                check(shape, kernel, act, bias, scale, seed);
            }
        }
    }
}

#[test]
fn batched_products_with_strides() {
    for kernel in ["matmul_tiled", "matmul_small"] {
        let shape = MatmulShape::new(9, 31, 66).with_batch(5).with_trans_b();
        check(shape, kernel, Activation::Identity, true, false, 7);
        let shape = MatmulShape::new(70, 3, 20).with_batch(3).with_trans_a();
        check(shape, kernel, Activation::Silu, false, false, 8);
    }
}

#[test]
fn operands_at_offsets_and_output_column_blocks() {
    for kernel in ["matmul_tiled", "matmul_small"] {
        // C is a 20-column block (starting at column 7) of a 40-column matrix; A and B start mid-buffer.
        let shape = MatmulShape::new(37, 20, 19).with_trans_b().with_offsets(5, 11, 7).with_ldc(40);
        check(shape, kernel, Activation::Relu, true, true, 21);
    }
}
