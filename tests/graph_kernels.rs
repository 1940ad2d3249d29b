//! The graph engine's primitive kernels (ops::graph) against their f64 twins (reference::graph_ops), on sizes that
//! are not multiples of the workgroups and tiles; and the adjoint property of the twin convolution.

mod common;

use common::{gpu, rel_err, rng};
use rand::Rng;
use scorelens::gpu::{BufferRole, Recorder};
use scorelens::ops::graph::{
    self, upload_sparse_map, BatchedMatmul, BinaryOp, Conv2d, MatrixMap, Operand, RowMap, UnaryFn,
};
use scorelens::reference::graph_ops::{self as twin, SparseMap};
use scorelens::GpuContext;

/// Uniform values in [lo, hi), rounded to f32 (the GPU sees f32; the twin must see the same numbers).
fn uniform(r: &mut impl Rng, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..len).map(|_| r.random_range(lo..hi) as f32 as f64).collect()
}

fn normal(r: &mut impl Rng, len: usize, scale: f32) -> Vec<f64> {
    common::normal_vec(r, len, scale).iter().map(|&v| v as f64).collect()
}

fn up(ctx: &GpuContext, data: &[f64]) -> wgpu::Buffer {
    let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
    ctx.upload("test/in", &v)
}

fn scratch(ctx: &GpuContext, len: usize) -> wgpu::Buffer {
    ctx.buffer("test/out", (len * 4) as u64, BufferRole::Storage)
}

/// Records with `f`, submits, and downloads `len` values of `out`.
fn run(ctx: &GpuContext, out: &wgpu::Buffer, len: usize, f: impl FnOnce(&mut Recorder)) -> Vec<f32> {
    let mut rec = Recorder::new(ctx, "test/graph");
    f(&mut rec);
    rec.submit();
    ctx.download(out, len).unwrap()
}

fn check(what: &str, got: &[f32], want: &[f64], tol: f64) -> f64 {
    let err = rel_err(got, want);
    println!("{what}: rel err {err:.2e}");
    assert!(err <= tol, "{what}: rel err {err:e} > {tol:e}");
    err
}

#[test]
fn unary_matches_twin_for_every_function_in_both_modes() {
    let ctx = gpu();
    // Each function on inputs in its domain (and the tails where the stable forms matter).
    let cases: Vec<(UnaryFn, f64, f64)> = vec![
        (UnaryFn::Identity, -3.0, 3.0),
        (UnaryFn::Relu, -3.0, 3.0),
        (UnaryFn::LeakyRelu(0.1), -3.0, 3.0),
        (UnaryFn::Sigmoid, -40.0, 40.0),
        (UnaryFn::Tanh, -20.0, 20.0),
        (UnaryFn::Tanh, -0.3, 0.3),
        (UnaryFn::Erf, -5.0, 5.0),
        (UnaryFn::Exp, -6.0, 6.0),
        (UnaryFn::Log, 0.01, 50.0),
        (UnaryFn::Sin, -7.0, 7.0),
        (UnaryFn::Cos, -7.0, 7.0),
        (UnaryFn::Sqrt, 0.01, 50.0),
        (UnaryFn::Reciprocal, 0.2, 5.0),
        (UnaryFn::Reciprocal, -5.0, -0.2),
        (UnaryFn::Neg, -3.0, 3.0),
        (UnaryFn::Abs, -3.0, 3.0),
        (UnaryFn::Softplus, -40.0, 40.0),
        (UnaryFn::Softplus, -25.0, -10.0),
        (UnaryFn::Gelu, -12.0, 12.0),
        (UnaryFn::Gelu, -3.0, 3.0),
        (UnaryFn::GeluTanh, -12.0, 12.0),
        (UnaryFn::GeluTanh, -3.0, 3.0),
        (UnaryFn::Silu, -40.0, 40.0),
        (UnaryFn::Silu, -3.0, 3.0),
        (UnaryFn::PowConst(2.0), -3.0, 3.0),
        (UnaryFn::PowConst(3.0), -3.0, 3.0),
        (UnaryFn::PowConst(-2.0), 0.3, 3.0),
        (UnaryFn::PowConst(-3.0), -3.0, -0.3),
        (UnaryFn::PowConst(0.5), 0.01, 9.0),
        (UnaryFn::PowConst(2.5), 0.0, 4.0),
        (UnaryFn::PowConst(1.0), -3.0, 3.0),
        (UnaryFn::PowConst(0.0), -3.0, 3.0),
        (UnaryFn::ExpBase(3f32.ln()), -4.0, 4.0),
        (UnaryFn::ExpBase(-0.7), -4.0, 4.0),
        (UnaryFn::Scale(-1.7), -3.0, 3.0),
    ];
    let mut r = rng(1);
    let mut worst = 0.0f64;
    for (case, &(f, lo, hi)) in cases.iter().enumerate() {
        for derivative in [false, true] {
            for len in [1, 1001] {
                let x = uniform(&mut r, len, lo, hi);
                let (gx, out) = (up(&ctx, &x), scratch(&ctx, len));
                let got = run(&ctx, &out, len, |rec| graph::record_unary(rec, f, derivative, len, &gx, &out).unwrap());
                let mut want = vec![0.0; len];
                twin::record_unary(f, derivative, &x, &mut want);
                let what = format!("unary #{case} {f:?} derivative={derivative} len={len} on [{lo}, {hi})");
                worst = worst.max(check(&what, &got, &want, 1e-5));
            }
        }
    }
    println!("unary: worst rel err {worst:.2e}");
}

/// The stable forms in the tails, element by element (a norm-wise error would hide them behind the large values).
#[test]
fn unary_tails_keep_their_relative_accuracy() {
    let ctx = gpu();
    let mut r = rng(11);
    let cases: Vec<(UnaryFn, bool, f64, f64)> = vec![
        (UnaryFn::Sigmoid, false, -40.0, -15.0),
        (UnaryFn::Sigmoid, true, -40.0, -15.0),
        (UnaryFn::Sigmoid, true, 15.0, 40.0),
        (UnaryFn::Tanh, true, 8.0, 20.0),
        (UnaryFn::Tanh, true, -20.0, -8.0),
        (UnaryFn::Softplus, false, -40.0, -15.0),
        (UnaryFn::Softplus, true, -40.0, -15.0),
        (UnaryFn::Gelu, false, -9.0, -4.0),
        (UnaryFn::Gelu, true, -9.0, -4.0),
        (UnaryFn::GeluTanh, false, -5.0, -3.0),
        (UnaryFn::GeluTanh, true, -5.0, -3.0),
        (UnaryFn::Erf, true, -9.0, -3.0),
        (UnaryFn::Silu, false, -40.0, -15.0),
        (UnaryFn::Silu, true, -40.0, -15.0),
    ];
    for (f, derivative, lo, hi) in cases {
        let len = 300;
        let x = uniform(&mut r, len, lo, hi);
        let (gx, out) = (up(&ctx, &x), scratch(&ctx, len));
        let got = run(&ctx, &out, len, |rec| graph::record_unary(rec, f, derivative, len, &gx, &out).unwrap());
        let mut want = vec![0.0; len];
        twin::record_unary(f, derivative, &x, &mut want);
        let worst = got.iter().zip(&want).map(|(&g, &w)| (g as f64 - w).abs() / w.abs()).fold(0.0, f64::max);
        println!("unary tail {f:?} derivative={derivative} on [{lo}, {hi}): worst elementwise rel err {worst:.2e}");
        assert!(worst <= 3e-5, "{f:?} derivative={derivative} on [{lo}, {hi}): elementwise rel err {worst:e}");
    }
}

#[test]
fn binary_matches_twin_with_broadcasting_and_row_maps() {
    let ctx = gpu();
    let mut r = rng(2);
    // (rows, out shape, a, b), each operand as (shape, 0 shared or 1 own rows, rep).
    type Side = (Vec<usize>, u32, u32);
    let cases: Vec<(usize, Vec<usize>, Side, Side)> = vec![
        (4, vec![5, 3, 7], (vec![5, 1, 7], 1, 1), (vec![3, 1], 0, 1)),
        (6, vec![17], (vec![17], 1, 3), (vec![17], 1, 1)),
        (3, vec![17], (vec![17], 1, 1), (vec![], 1, 1)),
        (5, vec![33, 9], (vec![1], 0, 1), (vec![33, 9], 1, 5)),
        (2, vec![2, 3, 1, 4, 2, 3], (vec![2, 1, 1, 4, 1, 3], 1, 2), (vec![3, 1, 4, 2, 1], 0, 1)),
        (7, vec![], (vec![], 1, 1), (vec![], 1, 7)),
        (3, vec![257], (vec![257], 1, 1), (vec![257], 1, 1)),
    ];
    for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Pow] {
        for (case, (rows, out_shape, (a_shape, a_own, a_rep), (b_shape, b_own, b_rep))) in cases.iter().enumerate() {
            let (a_size, b_size) = (a_shape.iter().product::<usize>(), b_shape.iter().product::<usize>());
            let a_map = RowMap { stride: a_own * a_size as u32, rep: *a_rep };
            let b_map = RowMap { stride: b_own * b_size as u32, rep: *b_rep };
            let a_rows = if *a_own == 0 { 1 } else { rows.div_ceil(*a_rep as usize) };
            let b_rows = if *b_own == 0 { 1 } else { rows.div_ceil(*b_rep as usize) };
            let (a, b) = match op {
                // Positive bases with real exponents, and negative bases with integer exponents (odd and even).
                BinaryOp::Pow if case % 2 == 0 => {
                    (uniform(&mut r, a_rows * a_size, 0.1, 3.0), uniform(&mut r, b_rows * b_size, -2.0, 2.5))
                }
                BinaryOp::Pow => (
                    uniform(&mut r, a_rows * a_size, -2.0, 2.0),
                    (0..b_rows * b_size).map(|_| r.random_range(-3..=4) as f64).collect(),
                ),
                BinaryOp::Div => {
                    let b: Vec<f64> = uniform(&mut r, b_rows * b_size, 0.3, 3.0);
                    let sign: Vec<f64> = b.iter().map(|v| if r.random_bool(0.5) { -v } else { *v }).collect();
                    (normal(&mut r, a_rows * a_size, 1.0), sign)
                }
                _ => (normal(&mut r, a_rows * a_size, 1.0), normal(&mut r, b_rows * b_size, 1.0)),
            };
            let len = rows * out_shape.iter().product::<usize>();
            let (ga, gb, out) = (up(&ctx, &a), up(&ctx, &b), scratch(&ctx, len));
            let got = run(&ctx, &out, len, |rec| {
                let a = Operand { buffer: &ga, shape: a_shape, rows: a_map };
                let b = Operand { buffer: &gb, shape: b_shape, rows: b_map };
                graph::record_binary(rec, op, *rows, out_shape, a, b, &out).unwrap()
            });
            let mut want = vec![0.0; len];
            twin::record_binary(op, *rows, out_shape, (&a, a_shape, a_map), (&b, b_shape, b_map), &mut want);
            check(&format!("binary {op:?} #{case} {out_shape:?} a {a_shape:?} b {b_shape:?}"), &got, &want, 1e-5);
        }
    }
}

#[test]
fn sparse_map_matches_twin_and_accumulates() {
    let ctx = gpu();
    let mut r = rng(3);
    let random_map = |r: &mut rand::rngs::StdRng, outputs: usize, inputs: usize, nnz: usize| {
        let triples = (0..nnz)
            .map(|_| (r.random_range(0..outputs), r.random_range(0..inputs), r.random_range(-2.0..2.0) as f32 as f64))
            .collect();
        SparseMap::from_triples(outputs, inputs, triples)
    };
    let maps = [
        random_map(&mut r, 33, 17, 70),
        random_map(&mut r, 1, 300, 250),
        random_map(&mut r, 257, 5, 40), // many empty rows
        SparseMap::gather(9, &[Some(3), None, Some(8), Some(0), Some(3)]),
    ];
    let maps: Vec<SparseMap> = maps.iter().flat_map(|m| [m.clone(), m.transpose()]).collect();
    for (case, map) in maps.iter().enumerate() {
        for (rows, accumulate) in [(1, false), (5, false), (3, true)] {
            let x = normal(&mut r, rows * map.inputs, 1.0);
            let before = normal(&mut r, rows * map.outputs, 1.0);
            let (gx, out) = (up(&ctx, &x), up(&ctx, &before));
            let buffers = upload_sparse_map(&ctx, "test/map", map);
            let len = rows * map.outputs;
            let got = run(&ctx, &out, len, |rec| {
                graph::record_sparse_map(rec, rows, &buffers, &gx, &out, accumulate).unwrap()
            });
            let mut want = before.clone();
            twin::record_sparse_map(rows, map, &x, &mut want, accumulate);
            let what = format!(
                "sparse map #{case} {}×{} nnz {} rows {rows} accumulate {accumulate}",
                map.outputs,
                map.inputs,
                map.nnz()
            );
            check(&what, &got, &want, 1e-5);
        }
    }
}

/// More workgroups than one grid dimension holds (65535): the flat kernels' 2-D grid and the matmul's batch split.
#[test]
fn dispatches_beyond_one_grid_dimension() {
    let ctx = gpu();
    let mut r = rng(12);
    let len = 256 * 65535 + 1001;
    let x = uniform(&mut r, len, -4.0, 4.0);
    let (gx, out) = (up(&ctx, &x), scratch(&ctx, len));
    let got = run(&ctx, &out, len, |rec| graph::record_unary(rec, UnaryFn::Sigmoid, false, len, &gx, &out).unwrap());
    let mut want = vec![0.0; len];
    twin::record_unary(UnaryFn::Sigmoid, false, &x, &mut want);
    check("unary sigmoid on 256·65535 + 1001 elements", &got, &want, 1e-5);

    let (rows, m, n, k) = (70001, 2, 3, 2);
    let spec = BatchedMatmul {
        m,
        n,
        k,
        rows,
        lead: 1,
        a: MatrixMap { rows: RowMap::rows(m * k), lead_stride: 0, transposed: false },
        b: MatrixMap { rows: RowMap::repeated(k * n, 7), lead_stride: 0, transposed: true },
    };
    let a = normal(&mut r, rows * m * k, 1.0);
    let b = normal(&mut r, rows.div_ceil(7) * k * n, 1.0);
    let len = rows * m * n;
    let (ga, gb, out) = (up(&ctx, &a), up(&ctx, &b), scratch(&ctx, len));
    let got = run(&ctx, &out, len, |rec| graph::record_batched_matmul(rec, &spec, &ga, &gb, &out).unwrap());
    let mut want = vec![0.0; len];
    twin::record_batched_matmul(&spec, &a, &b, &mut want);
    check("matmul over 70001 products", &got, &want, 1e-5);
}

/// Elements an operand needs under `map` for `rows · lead` matrices of `len` elements.
fn matrix_extent(map: &MatrixMap, rows: usize, lead: usize, len: usize) -> usize {
    ((rows - 1) / map.rows.rep as usize) * map.rows.stride as usize + (lead - 1) * map.lead_stride as usize + len
}

#[test]
fn batched_matmul_matches_twin_on_awkward_shapes_layouts_and_maps() {
    let ctx = gpu();
    let mut r = rng(4);
    let mut worst = 0.0f64;
    let mut seen = 0;
    for (m, n, k) in [(1, 1, 1), (3, 5, 7), (17, 33, 1), (1, 40, 19), (33, 1, 20), (20, 17, 65), (40, 37, 300)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            // (rows, lead, a map, b map): own matrices; b shared over rows and lead; a repeated (rep 2) with a
            // broadcast lead; b with padding between rows and repeated by 3.
            let (mk, kn) = (m * k, k * n);
            let layouts = [
                (3, 2, RowMap::rows(2 * mk), mk as u32, RowMap::rows(2 * kn), kn as u32),
                (4, 3, RowMap::rows(3 * mk), mk as u32, RowMap::shared(), 0),
                (4, 2, RowMap::repeated(mk, 2), 0, RowMap::rows(2 * kn), kn as u32),
                (6, 1, RowMap::rows(mk), 0, RowMap::repeated(kn + 5, 3), 0),
            ];
            for (rows, lead, a_rows, a_lead, b_rows, b_lead) in layouts {
                let spec = BatchedMatmul {
                    m,
                    n,
                    k,
                    rows,
                    lead,
                    a: MatrixMap { rows: a_rows, lead_stride: a_lead, transposed: ta },
                    b: MatrixMap { rows: b_rows, lead_stride: b_lead, transposed: tb },
                };
                let a = normal(&mut r, matrix_extent(&spec.a, rows, lead, mk), 1.0);
                let b = normal(&mut r, matrix_extent(&spec.b, rows, lead, kn), 1.0);
                let len = rows * lead * m * n;
                let (ga, gb, out) = (up(&ctx, &a), up(&ctx, &b), scratch(&ctx, len));
                let got = run(&ctx, &out, len, |rec| graph::record_batched_matmul(rec, &spec, &ga, &gb, &out).unwrap());
                let mut want = vec![0.0; len];
                twin::record_batched_matmul(&spec, &a, &b, &mut want);
                worst = worst.max(check(&format!("matmul {spec:?}"), &got, &want, 1e-5));
                seen += 1;
            }
        }
    }
    println!("matmul: {seen} cases, worst rel err {worst:.2e}");
}

/// A convolution spec with the usual output size (forward) or (in − 1)·s − 2p + d(k − 1) + 1 + extra (transposed).
#[allow(clippy::too_many_arguments)]
fn conv_spec(
    rows: usize,
    c_in: usize,
    c_out: usize,
    hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
    transposed: bool,
    extra: [usize; 2],
) -> Conv2d {
    let out = |a: usize| {
        if transposed {
            (hw[a] - 1) * stride[a] + dilation[a] * (kernel[a] - 1) + 1 + extra[a] - 2 * pad[a]
        } else {
            (hw[a] + 2 * pad[a] - dilation[a] * (kernel[a] - 1) - 1) / stride[a] + 1
        }
    };
    Conv2d {
        rows,
        c_in,
        h_in: hw[0],
        w_in: hw[1],
        c_out,
        h_out: out(0),
        w_out: out(1),
        kernel,
        stride,
        pad,
        dilation,
        groups,
        transposed,
    }
}

fn conv_cases() -> Vec<Conv2d> {
    vec![
        conv_spec(2, 3, 5, [9, 11], [3, 3], [1, 1], [1, 1], [1, 1], 1, false, [0, 0]),
        conv_spec(1, 4, 6, [8, 7], [3, 3], [1, 1], [1, 1], [1, 1], 2, false, [0, 0]),
        conv_spec(3, 6, 6, [10, 9], [3, 3], [1, 1], [1, 1], [1, 1], 6, false, [0, 0]), // depthwise
        conv_spec(2, 3, 4, [13, 12], [3, 3], [2, 2], [1, 1], [1, 1], 1, false, [0, 0]),
        conv_spec(2, 2, 3, [12, 13], [3, 3], [1, 1], [2, 2], [2, 2], 1, false, [0, 0]),
        conv_spec(1, 3, 2, [9, 10], [3, 2], [2, 1], [1, 0], [1, 1], 1, false, [0, 0]), // asymmetric kernel
        conv_spec(2, 17, 3, [5, 6], [1, 1], [1, 1], [0, 0], [1, 1], 1, false, [0, 0]),
        conv_spec(2, 4, 3, [6, 5], [3, 3], [2, 2], [1, 1], [1, 1], 1, true, [1, 1]), // output padding
        conv_spec(1, 4, 6, [5, 7], [4, 4], [2, 2], [1, 1], [1, 1], 2, true, [0, 0]),
        conv_spec(2, 3, 2, [7, 6], [3, 2], [2, 3], [1, 0], [2, 1], 1, true, [1, 2]),
        conv_spec(1, 5, 5, [6, 6], [3, 3], [1, 1], [1, 1], [1, 1], 5, true, [0, 0]), // depthwise transposed
    ]
}

#[test]
fn conv2d_matches_twin_forward_and_transposed() {
    let ctx = gpu();
    let mut r = rng(5);
    for spec in conv_cases() {
        let in_len = spec.rows * spec.c_in * spec.h_in * spec.w_in;
        let out_len = spec.rows * spec.c_out * spec.h_out * spec.w_out;
        let w_len = spec.c_in * spec.c_out / spec.groups * spec.kernel[0] * spec.kernel[1];
        let (x, w) = (normal(&mut r, in_len, 1.0), normal(&mut r, w_len, 0.5));
        let (gx, gw, out) = (up(&ctx, &x), up(&ctx, &w), scratch(&ctx, out_len));
        let got = run(&ctx, &out, out_len, |rec| graph::record_conv2d(rec, &spec, &gx, &gw, &out).unwrap());
        let mut want = vec![0.0; out_len];
        twin::record_conv2d(&spec, &x, &w, &mut want);
        check(&format!("conv2d {spec:?}"), &got, &want, 1e-5);
    }
}

/// ⟨conv(x), y⟩ = ⟨x, convᵀ(y)⟩ with the same weight, in the twin: how the engine transposes convolutions.
#[test]
fn conv2d_twin_transposed_is_the_adjoint() {
    let mut r = rng(6);
    let mut forward: Vec<Conv2d> = conv_cases().into_iter().filter(|s| !s.transposed).collect();
    // Stride 2 on odd input sizes (the last input row and column reach no output).
    forward.push(conv_spec(2, 4, 6, [11, 9], [3, 3], [2, 2], [1, 1], [1, 1], 2, false, [0, 0]));
    forward.push(conv_spec(1, 2, 3, [7, 9], [2, 3], [2, 2], [0, 1], [1, 2], 1, false, [0, 0]));
    // And the other way: a transposed convolution's adjoint is the convolution.
    let transposed: Vec<Conv2d> = conv_cases().into_iter().filter(|s| s.transposed).collect();
    for spec in forward.into_iter().chain(transposed) {
        let adjoint = Conv2d {
            c_in: spec.c_out,
            c_out: spec.c_in,
            h_in: spec.h_out,
            w_in: spec.w_out,
            h_out: spec.h_in,
            w_out: spec.w_in,
            transposed: !spec.transposed,
            ..spec
        };
        let in_len = spec.rows * spec.c_in * spec.h_in * spec.w_in;
        let out_len = spec.rows * spec.c_out * spec.h_out * spec.w_out;
        let w_len = spec.c_in * spec.c_out / spec.groups * spec.kernel[0] * spec.kernel[1];
        let (x, y, w) = (normal(&mut r, in_len, 1.0), normal(&mut r, out_len, 1.0), normal(&mut r, w_len, 1.0));
        let (mut ax, mut aty) = (vec![0.0; out_len], vec![0.0; in_len]);
        twin::record_conv2d(&spec, &x, &w, &mut ax);
        twin::record_conv2d(&adjoint, &y, &w, &mut aty);
        let lhs: f64 = ax.iter().zip(&y).map(|(a, b)| a * b).sum();
        let rhs: f64 = x.iter().zip(&aty).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0), "{spec:?}: ⟨Ax, y⟩ = {lhs} but ⟨x, Aᵀy⟩ = {rhs}");
    }
}

#[test]
fn norm_matches_twin_on_small_and_large_groups() {
    let ctx = gpu();
    let mut r = rng(7);
    for (groups, size, eps, shift, tol) in [
        (3, 40000, 1e-5, 3.0, 1e-4),
        (7, 17, 1e-5, 0.0, 1e-5),
        (1000, 3, 1e-3, -2.0, 1e-5),
        (5, 1, 1e-5, 1.0, 1e-5),
        (2, 70001, 1e-6, 10.0, 1e-4),
        (300, 257, 1e-5, 0.5, 1e-5),
    ] {
        let x: Vec<f64> = normal(&mut r, groups * size, 2.0).iter().map(|v| ((v + shift) as f32) as f64).collect();
        let (gx, out) = (up(&ctx, &x), scratch(&ctx, groups * size));
        let got = run(&ctx, &out, groups * size, |rec| graph::record_norm(rec, groups, size, eps, &gx, &out).unwrap());
        let mut want = vec![0.0; groups * size];
        twin::record_norm(groups, size, eps as f64, &x, &mut want);
        check(&format!("norm {groups} groups of {size}"), &got, &want, tol);
    }
}

/// The normalisation with a per-channel scale and shift and an activation fused into its store: GroupNorm-like
/// (channels of 37 elements, 3 channels per group) and LayerNorm-like (one value per element of the last axis).
#[test]
fn norm_with_affine_and_activation_matches_twin() {
    let ctx = gpu();
    let mut r = rng(31);
    // (rows, row_len, group size, channels, inner)
    for (rows, row_len, size, channels, inner) in [(3, 5 * 3 * 37, 3 * 37, 15, 37), (7, 3 * 13, 13, 13, 1)] {
        for act in [None, Some(UnaryFn::Relu), Some(UnaryFn::Silu)] {
            for (with_scale, with_shift) in [(true, true), (true, false), (false, true)] {
                let len = rows * row_len;
                let x = normal(&mut r, len, 2.0);
                let scale = normal(&mut r, channels, 1.0);
                let shift = normal(&mut r, channels, 1.0);
                let (gx, gs, gb, out) = (up(&ctx, &x), up(&ctx, &scale), up(&ctx, &shift), scratch(&ctx, len));
                let store = graph::NormStore {
                    row_len,
                    channels,
                    inner,
                    scale: with_scale.then_some(&gs),
                    shift: with_shift.then_some(&gb),
                    act,
                };
                let got = run(&ctx, &out, len, |rec| {
                    graph::record_norm_affine(rec, len / size, size, 1e-5, &gx, Some(store), &out).unwrap()
                });
                let mut want = vec![0.0; len];
                let affine =
                    (row_len, channels, inner, with_scale.then_some(&scale[..]), with_shift.then_some(&shift[..]), act);
                twin::record_norm_affine(len / size, size, 1e-5, &x, affine, &mut want);
                let what = format!(
                    "norm+affine rows={rows} size={size} channels={channels} {act:?} {with_scale} {with_shift}"
                );
                check(&what, &got, &want, 1e-5);
            }
        }
    }
}

#[test]
fn norm_tangent_matches_twin() {
    let ctx = gpu();
    let mut r = rng(8);
    for (rows, rep, gpr, size, tol) in [
        (6usize, 3usize, 4, 33, 1e-5),
        (2, 1, 1, 70000, 1e-4),
        (5, 5, 3, 1, 1e-5),
        (4, 2, 2, 40000, 1e-4),
        (9, 3, 7, 6, 1e-5),
    ] {
        let eps = 1e-5f32;
        let x: Vec<f64> = normal(&mut r, rows.div_ceil(rep) * gpr * size, 1.5).iter().map(|v| v + 0.5).collect();
        let x: Vec<f64> = x.iter().map(|&v| v as f32 as f64).collect();
        let d = normal(&mut r, rows * gpr * size, 1.0);
        let len = rows * gpr * size;
        let (gx, gd, out) = (up(&ctx, &x), up(&ctx, &d), scratch(&ctx, len));
        let got = run(&ctx, &out, len, |rec| {
            graph::record_norm_tangent(rec, rows, rep, gpr, size, eps, &gx, &gd, &out).unwrap()
        });
        let mut want = vec![0.0; len];
        twin::record_norm_tangent(rows, rep, gpr, size, eps as f64, &x, &d, &mut want);
        check(&format!("norm tangent rows {rows} rep {rep} {gpr} groups of {size}"), &got, &want, tol);
    }
}

#[test]
fn softmax_matches_twin_along_any_axis() {
    let ctx = gpu();
    let mut r = rng(9);
    for (rows, outer, n, inner, scale, tol) in [
        (3, 4, 17, 5, 3.0, 1e-5), // a middle axis
        (2, 1, 33, 1, 3.0, 1e-5), // the last axis
        (2, 1, 7, 9, 3.0, 1e-5),  // the first axis
        (4, 3, 1, 2, 1.0, 1e-5),  // n = 1
        (1, 1, 40000, 1, 4.0, 1e-4),
        (2, 2, 3000, 3, 10.0, 1e-5),
        (5, 1, 257, 1, 20.0, 1e-5),
    ] {
        let len = rows * outer * n * inner;
        let x = normal(&mut r, len, scale);
        let (gx, out) = (up(&ctx, &x), scratch(&ctx, len));
        let got = run(&ctx, &out, len, |rec| graph::record_softmax(rec, rows, outer, n, inner, &gx, &out).unwrap());
        let mut want = vec![0.0; len];
        twin::record_softmax(rows, outer, n, inner, &x, &mut want);
        check(&format!("softmax rows {rows} [{outer}, {n}, {inner}]"), &got, &want, tol);
    }
}

#[test]
fn softmax_tangent_matches_twin() {
    let ctx = gpu();
    let mut r = rng(10);
    for (rows, rep, outer, n, inner, tol) in
        [(6usize, 2usize, 3, 33, 4, 1e-5), (3, 3, 1, 5, 1, 1e-5), (2, 1, 1, 40000, 1, 1e-4), (4, 4, 2, 300, 7, 1e-5)]
    {
        let per_row = outer * n * inner;
        // y: a softmax of random logits (the primal), d random.
        let logits = normal(&mut r, rows.div_ceil(rep) * per_row, 2.0);
        let mut y = vec![0.0; logits.len()];
        twin::record_softmax(rows.div_ceil(rep), outer, n, inner, &logits, &mut y);
        let y: Vec<f64> = y.iter().map(|&v| v as f32 as f64).collect();
        let d = normal(&mut r, rows * per_row, 1.0);
        let len = rows * per_row;
        let (gy, gd, out) = (up(&ctx, &y), up(&ctx, &d), scratch(&ctx, len));
        let got = run(&ctx, &out, len, |rec| {
            graph::record_softmax_tangent(rec, rows, rep, outer, n, inner, &gy, &gd, &out).unwrap()
        });
        let mut want = vec![0.0; len];
        twin::record_softmax_tangent(rows, rep, outer, n, inner, &y, &d, &mut want);
        check(&format!("softmax tangent rows {rows} rep {rep} [{outer}, {n}, {inner}]"), &got, &want, tol);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Fusion (graph::fuse) and buffer planning (graph::exec): fused programs on the GPU against the unfused programs'
// f64 twin, on sizes that are not multiples of the tiles.

mod fused {
    use super::*;
    use scorelens::graph::exec::{GraphExecutor, GraphOptions, Pass};
    use scorelens::graph::fuse;
    use scorelens::graph::ir::{Graph, MatMul, MatrixLayout, Op, Stream, ValueId};
    use scorelens::graph::{Parameterization, ScoreNetwork, TimeInput};
    use scorelens::model::NoiseSchedule;
    use scorelens::reference::graph::{run_network, HostRun};
    use scorelens::scheduler::JobOptions;
    use std::sync::Arc;

    fn weights(g: &mut Graph, r: &mut impl Rng, name: &str, shape: Vec<usize>, scale: f32) -> ValueId {
        let len = shape.iter().product();
        let data: Vec<f32> = normal(r, len, scale).iter().map(|&v| v as f32).collect();
        g.add_const(name, shape, data)
    }

    /// x·Wᵀ + b over the last axis of [tokens, k] rows, as Gemm and MatMul + Add lower.
    fn dense(g: &mut Graph, r: &mut impl Rng, x: ValueId, tokens: usize, k: usize, n: usize) -> ValueId {
        let w = weights(g, r, "w", vec![n, k], 1.0 / (k as f32).sqrt());
        let b = weights(g, r, "b", vec![n], 0.3);
        let layout = |transposed| MatrixLayout { lead_stride: 0, transposed };
        let mm = MatMul { m: tokens, n, k, lead: 1, a: layout(false), b: layout(true) };
        let shape = if tokens == 1 { vec![n] } else { vec![tokens, n] };
        let y = g.add_node("dense", Op::MatMul(mm), vec![x, w], shape.clone());
        g.add_node("dense", Op::Binary(BinaryOp::Add), vec![y, b], shape)
    }

    fn unary(g: &mut Graph, f: UnaryFn, x: ValueId) -> ValueId {
        let shape = g.values[x].shape.clone();
        g.add_node("act", Op::Unary { f, derivative: false }, vec![x], shape)
    }

    fn conv(g: &mut Graph, r: &mut impl Rng, x: ValueId, c_in: usize, c_out: usize, h: usize, w: usize) -> ValueId {
        let weight = weights(g, r, "k", vec![c_out, c_in, 3, 3], 1.0 / (9.0 * c_in as f32).sqrt());
        let bias = weights(g, r, "kb", vec![c_out, 1, 1], 0.3);
        let spec = Conv2d {
            rows: 0,
            c_in,
            h_in: h,
            w_in: w,
            c_out,
            h_out: h,
            w_out: w,
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
            groups: 1,
            transposed: false,
        };
        let y = g.add_node("conv", Op::Conv(spec), vec![x, weight], vec![c_out, h, w]);
        g.add_node("conv", Op::Binary(BinaryOp::Add), vec![y, bias], vec![c_out, h, w])
    }

    fn network(g: Graph) -> ScoreNetwork {
        let schedule = NoiseSchedule::VeSong { sigma: 25.0 };
        let meta = Default::default();
        ScoreNetwork::from_graph("test.onnx".into(), "onnx", g, schedule, Parameterization::Epsilon, TimeInput::T, meta)
            .unwrap()
    }

    fn start(shape: Vec<usize>) -> (Graph, ValueId) {
        let mut g = Graph::default();
        let x = g.add_value("x", shape, Stream::Primal);
        let t = g.add_value("t", vec![], Stream::Primal);
        g.inputs = vec![x, t];
        (g, x)
    }

    /// An MLP (every fusable activation, one per layer), a token MLP (bias over the last axis of [7, ·] rows) and
    /// a convolution stack (per-channel bias and ReLU into the patch product).
    fn networks() -> Vec<(&'static str, ScoreNetwork)> {
        let mut r = rng(21);
        let (mut g, x) = start(vec![13]);
        let mut h = x;
        let widths = [13, 29, 17, 31, 19];
        let acts = [UnaryFn::Silu, UnaryFn::Gelu, UnaryFn::Tanh, UnaryFn::Relu];
        for (l, act) in acts.iter().enumerate() {
            let y = dense(&mut g, &mut r, h, 1, widths[l], widths[l + 1]);
            h = unary(&mut g, *act, y);
        }
        g.output = dense(&mut g, &mut r, h, 1, 19, 13);
        let mlp = network(g);

        let (mut g, x) = start(vec![7, 5]);
        let y = dense(&mut g, &mut r, x, 7, 5, 11);
        let y = unary(&mut g, UnaryFn::Gelu, y);
        g.output = dense(&mut g, &mut r, y, 7, 11, 5);
        let tokens = network(g);

        let (mut g, x) = start(vec![3, 9, 11]);
        let y = conv(&mut g, &mut r, x, 3, 5, 9, 11);
        let y = unary(&mut g, UnaryFn::Relu, y);
        // GroupNorm (one channel per group) with its affine parameters and SiLU, as the U-Nets write it.
        let y = g.add_node("norm", Op::Norm { size: 99, eps: 1e-5 }, vec![y], vec![5, 9, 11]);
        let scale = weights(&mut g, &mut r, "gamma", vec![5, 1, 1], 1.0);
        let y = g.add_node("norm", Op::Binary(BinaryOp::Mul), vec![y, scale], vec![5, 9, 11]);
        let shift = weights(&mut g, &mut r, "beta", vec![5, 1, 1], 1.0);
        let y = g.add_node("norm", Op::Binary(BinaryOp::Add), vec![y, shift], vec![5, 9, 11]);
        let y = unary(&mut g, UnaryFn::Silu, y);
        g.output = conv(&mut g, &mut r, y, 5, 3, 9, 11);
        let convs = network(g);

        // Residual outputs: the last product absorbs the input as an addend; with one product row per point the
        // output factor c(t) too, with 7 (tokens) it stays a Mul (the addend and the scale would index different
        // row groups).
        let (mut g, x) = start(vec![13]);
        let y = dense(&mut g, &mut r, x, 1, 13, 23);
        let y = unary(&mut g, UnaryFn::Silu, y);
        let y = dense(&mut g, &mut r, y, 1, 23, 13);
        g.output = g.add_node("residual", Op::Binary(BinaryOp::Add), vec![y, x], vec![13]);
        let residual = network(g);
        let (mut g, x) = start(vec![7, 5]);
        let y = dense(&mut g, &mut r, x, 7, 5, 11);
        let y = unary(&mut g, UnaryFn::Tanh, y);
        let y = dense(&mut g, &mut r, y, 7, 11, 5);
        g.output = g.add_node("residual", Op::Binary(BinaryOp::Add), vec![y, x], vec![7, 5]);
        let residual_tokens = network(g);
        // A residual from a pre-activation: the activation cannot go into its product's store (the Add reads the
        // pre-activation too), so the next product applies it as it loads A, in the score as well.
        let (mut g, x) = start(vec![3, 9]);
        let h = dense(&mut g, &mut r, x, 3, 9, 14);
        let y = unary(&mut g, UnaryFn::Gelu, h);
        let y = dense(&mut g, &mut r, y, 3, 14, 14);
        let y = g.add_node("residual", Op::Binary(BinaryOp::Add), vec![y, h], vec![3, 14]);
        g.output = dense(&mut g, &mut r, y, 3, 14, 9);
        let pre_residual = network(g);
        vec![
            ("pre residual", pre_residual),
            ("mlp", mlp),
            ("tokens", tokens),
            ("convs", convs),
            ("residual", residual),
            ("residual tokens", residual_tokens),
        ]
    }

    fn count(g: &Graph, nodes: &[usize], pick: impl Fn(&Op) -> bool) -> usize {
        nodes.iter().filter(|&&n| pick(&g.nodes[n].op)).count()
    }

    #[test]
    fn fused_programs_match_the_unfused_twin_with_fewer_nodes_and_buffers() {
        let ctx = gpu();
        let mut r = rng(22);
        for (name, net) in networks() {
            let net = Arc::new(net);
            let d = net.dim();
            let (points, rep) = (37, 3);
            let x = uniform(&mut r, points * d, -2.0, 2.0);
            let t = uniform(&mut r, points, 0.1, 1.0);
            let v = uniform(&mut r, points * rep * d, -1.0, 1.0);
            let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
            let fused = GraphExecutor::with_options(ctx.clone(), net.clone(), GraphOptions::default()).unwrap();
            let plain = GraphExecutor::with_options(
                ctx.clone(),
                net.clone(),
                GraphOptions { fusion: false, memory_plan: false },
            )
            .unwrap();
            let p = fused.program();
            let epilogues =
                |nodes: &[usize]| count(&p.graph, nodes, |op| matches!(op, Op::FusedMatMul(..) | Op::FusedConv(..)));
            println!(
                "{name}: score {} → {} nodes ({} fused), jvp {} → {} ({} fused), vjp {} → {} ({} fused)",
                net.program.primal.len(),
                p.score.len(),
                epilogues(&p.score),
                net.program.jvp.len(),
                p.jvp.len(),
                epilogues(&p.jvp),
                net.program.vjp.len(),
                p.vjp.len(),
                epilogues(&p.vjp),
            );
            assert!(p.score.len() < net.program.primal.len(), "{name}: nothing fused in the score");
            if name == "convs" {
                let norms =
                    count(&p.graph, &p.score, |op| matches!(op, Op::FusedNorm { store, .. } if store.act.is_some()));
                assert_eq!(norms, 1, "{name}: the norm, its affine map and SiLU in one node");
            }
            // The output factor c(t) (ε-parameterised networks) in the last product's row scale, in the score
            // and the tangent program (the adjoint program multiplies by it first, before any product).
            let scaled = |nodes: &[usize]| count(&p.graph, nodes, |op| matches!(op, Op::FusedMatMul(_, e) if e.scale));
            let want_scaled = match name {
                "mlp" | "tokens" | "pre residual" => (1, 1),
                // The score's addend is read per product row (one per point): fused; the tangent program's
                // addend is a tangent and the factor a primal: not.
                "residual" => (1, 0),
                _ => (0, 0),
            };
            assert_eq!((scaled(&p.score), scaled(&p.jvp)), want_scaled, "{name}: row scales in score, jvp");
            let output_muls = |nodes: &[usize]| count(&p.graph, nodes, |op| matches!(op, Op::Binary(BinaryOp::Mul)));
            if want_scaled.0 == 1 {
                assert_eq!(output_muls(&p.score), 0, "{name}: the output factor still a Mul in the score");
            }
            // Activations on A's loads: every activation of the linearisation (their inputs stay stored for the
            // derivative factors), none in the score (the stores take them) but the pre-residual network's.
            let on_load =
                |nodes: &[usize]| count(&p.graph, nodes, |op| matches!(op, Op::FusedMatMul(_, e) if e.act_a.is_some()));
            let activations =
                |nodes: &[usize]| count(&p.graph, nodes, |op| matches!(op, Op::Unary { derivative: false, .. }));
            let want_on_load = match name {
                "mlp" => (0, 4),
                "tokens" | "residual" | "residual tokens" => (0, 1),
                "pre residual" => (1, 1),
                _ => (0, 0),
            };
            assert_eq!((on_load(&p.score), on_load(&p.linearisation)), want_on_load, "{name}: on load in score, lin.");
            if name != "convs" {
                assert_eq!(activations(&p.linearisation), 0, "{name}: activation passes left in the linearisation");
            }
            if name == "mlp" {
                // Every layer's bias and activation in the score; every derivative factor in both products, and the
                // output factor in the tangent program's last product.
                assert_eq!(epilogues(&p.score), 5, "{name}");
                assert_eq!(epilogues(&p.jvp), 5, "{name}");
                assert_eq!(epilogues(&p.vjp), 4, "{name}");
                let factors = count(&p.graph, &p.linearisation, |op| matches!(op, Op::Unary { derivative: true, .. }));
                assert_eq!(factors, 0, "{name}: derivative factors still computed");
            }
            for (pass, rep) in [(Pass::Score, 1), (Pass::Jvp, rep), (Pass::Vjp, rep)] {
                let less = fused.bytes_per_point(pass, rep);
                let more = plain.bytes_per_point(pass, rep);
                println!("{name} {pass:?}: {less} B per point planned, {more} B unplanned");
                assert!(less < more, "{name} {pass:?}: the plan needs {less} B per point, unplanned {more} B");
                let tangents = (pass != Pass::Score).then_some((&v[..], rep));
                let want = run_network(&net, pass, &x, &t, tangents);
                let tangents32 = f32s(&v);
                let tangents32 = (pass != Pass::Score).then_some((&tangents32[..], rep));
                for (label, exec) in [("fused", &fused), ("plain", &plain)] {
                    let got = exec.run(pass, &f32s(&x), &f32s(&t), tangents32, JobOptions::default()).unwrap();
                    check(&format!("{name} {label} {pass:?}"), &got, &want, 2e-5);
                }
                // A budget that forces several chunks runs the same plan per chunk.
                let budget = fused.resident_bytes() + fused.bytes_per_point(pass, rep) * 8;
                let small = JobOptions { memory_budget: budget, ..Default::default() };
                let got = fused.run(pass, &f32s(&x), &f32s(&t), tangents32, small).unwrap();
                check(&format!("{name} fused {pass:?} in chunks"), &got, &want, 2e-5);
            }
            // The fused program's own twin agrees with the unfused one in f64 (the pass is exact).
            let mut run = HostRun::new(&p.graph, points, 1);
            run.set(p.graph.inputs[0], x.clone());
            for (k, values) in net.row_inputs(&t).into_iter().enumerate() {
                run.set(p.graph.inputs[k + 1], values);
            }
            run.run(&p.score);
            let want = run_network(&net, Pass::Score, &x, &t, None);
            let err = twin_rel(run.get(p.graph.output), &want);
            assert!(err < 1e-12, "{name}: fused twin differs from the unfused twin by {err:e}");
        }
    }

    fn twin_rel(a: &[f64], b: &[f64]) -> f64 {
        let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
        let den: f64 = b.iter().map(|y| y * y).sum();
        (num / den).sqrt()
    }

    /// SiLU as x·Sigmoid(x), GELU's erf form in the three ways exporters associate it and its tanh form become single unary
    /// nodes; the network computes the same (to the f32 rounding of √2 in the file) and its J·v, built from the
    /// recognised functions' exact derivatives, matches central differences of the original graph in f64.
    #[test]
    fn silu_and_gelu_patterns_are_recognised_exactly() {
        let mut r = rng(23);
        let (mut g, x) = start(vec![11]);
        let scalar = |g: &mut Graph, v: f32| g.add_const("c", vec![1], vec![v]);
        let shape = vec![11];
        let mut h = dense(&mut g, &mut r, x, 1, 11, 11);
        // SiLU, both orders.
        let s = unary(&mut g, UnaryFn::Sigmoid, h);
        h = g.add_node("silu", Op::Binary(BinaryOp::Mul), vec![s, h], shape.clone());
        h = dense(&mut g, &mut r, h, 1, 11, 11);
        let s = unary(&mut g, UnaryFn::Sigmoid, h);
        h = g.add_node("silu", Op::Binary(BinaryOp::Mul), vec![h, s], shape.clone());
        // GELU: (x · (1 + erf(x / √2))) · ½, (½ x) · (1 + erf(x · 1/√2)), x · ((1 + erf(x/√2)) · ½).
        for form in 0..3 {
            h = dense(&mut g, &mut r, h, 1, 11, 11);
            let d = if form == 1 {
                let c = scalar(&mut g, std::f32::consts::FRAC_1_SQRT_2);
                g.add_node("gelu", Op::Binary(BinaryOp::Mul), vec![h, c], shape.clone())
            } else {
                let c = scalar(&mut g, std::f32::consts::SQRT_2);
                g.add_node("gelu", Op::Binary(BinaryOp::Div), vec![h, c], shape.clone())
            };
            let e = unary(&mut g, UnaryFn::Erf, d);
            let one = scalar(&mut g, 1.0);
            let p = g.add_node("gelu", Op::Binary(BinaryOp::Add), vec![e, one], shape.clone());
            let half = scalar(&mut g, 0.5);
            let mul = |g: &mut Graph, a, b| g.add_node("gelu", Op::Binary(BinaryOp::Mul), vec![a, b], shape.clone());
            h = match form {
                0 => {
                    let q = mul(&mut g, h, p);
                    mul(&mut g, q, half)
                }
                1 => {
                    let q = mul(&mut g, half, h);
                    mul(&mut g, q, p)
                }
                _ => {
                    let q = mul(&mut g, p, half);
                    mul(&mut g, h, q)
                }
            };
        }
        // GELU, tanh form as PyTorch's exporter writes it: ½ · (x · (1 + tanh(β · (x + κ · (x · (x · x)))))).
        h = dense(&mut g, &mut r, h, 1, 11, 11);
        {
            let mul = |g: &mut Graph, a, b| g.add_node("gelu", Op::Binary(BinaryOp::Mul), vec![a, b], shape.clone());
            let xx = mul(&mut g, h, h);
            let cube = mul(&mut g, h, xx);
            let kappa = scalar(&mut g, 0.044715);
            let k3 = mul(&mut g, kappa, cube);
            let sum = g.add_node("gelu", Op::Binary(BinaryOp::Add), vec![h, k3], shape.clone());
            let beta = scalar(&mut g, (2.0 / std::f32::consts::PI).sqrt());
            let inner = mul(&mut g, beta, sum);
            let th = unary(&mut g, UnaryFn::Tanh, inner);
            let one = scalar(&mut g, 1.0);
            let p = g.add_node("gelu", Op::Binary(BinaryOp::Add), vec![one, th], shape.clone());
            let q = mul(&mut g, h, p);
            let half = scalar(&mut g, 0.5);
            h = mul(&mut g, half, q);
        }
        // A sigmoid read twice (gate and SiLU) stays.
        let s = unary(&mut g, UnaryFn::Sigmoid, h);
        let gate = g.add_node("silu", Op::Binary(BinaryOp::Mul), vec![h, s], shape.clone());
        h = g.add_node("gate", Op::Binary(BinaryOp::Add), vec![gate, s], shape.clone());
        g.output = dense(&mut g, &mut r, h, 1, 11, 11);

        let mut recognised = g.clone();
        let found = fuse::recognise_activations(&mut recognised);
        assert_eq!(found, 7, "3 SiLU, 3 erf-form and 1 tanh-form GELU patterns");
        let kinds = |g: &Graph, f: UnaryFn| {
            g.nodes.iter().filter(|n| matches!(n.op, Op::Unary { f: h, derivative: false } if h == f)).count()
        };
        assert_eq!(kinds(&recognised, UnaryFn::Silu), 3);
        assert_eq!(kinds(&recognised, UnaryFn::Gelu), 3);
        assert_eq!(kinds(&recognised, UnaryFn::GeluTanh), 1);
        assert_eq!(kinds(&recognised, UnaryFn::Erf), 0);
        assert_eq!(kinds(&recognised, UnaryFn::Tanh), 0);
        assert_eq!(kinds(&recognised, UnaryFn::Sigmoid), 1, "the shared sigmoid stays");

        let points = 5;
        let xs = uniform(&mut r, points * 11, -2.0, 2.0);
        let forward = |g: &Graph, xs: &[f64]| -> Vec<f64> {
            let mut run = HostRun::new(g, points, 1);
            run.set(g.inputs[0], xs.to_vec());
            run.set(g.inputs[1], vec![0.5; points]);
            run.run(&(0..g.nodes.len()).collect::<Vec<_>>());
            run.get(g.output).to_vec()
        };
        let err = twin_rel(&forward(&recognised, &xs), &forward(&g, &xs));
        println!("recognised vs written out: rel err {err:.2e}");
        assert!(err < 1e-6, "recognised network differs by {err:e}");

        // J·v of the recognised program (score parameterisation: the network itself) against central differences.
        let net = ScoreNetwork::from_graph(
            "test.onnx".into(),
            "onnx",
            g.clone(),
            NoiseSchedule::VeSong { sigma: 25.0 },
            Parameterization::Score,
            TimeInput::T,
            Default::default(),
        )
        .unwrap();
        assert_eq!(kinds(&net.program.graph, UnaryFn::Gelu), 3, "linearize recognises the patterns");
        let v = uniform(&mut r, points * 11, -1.0, 1.0);
        let jvp = run_network(&net, Pass::Jvp, &xs, &[0.5], Some((&v, 1)));
        let step = 1e-5;
        let shifted = |sign: f64| -> Vec<f64> {
            let xp: Vec<f64> = xs.iter().zip(&v).map(|(a, b)| a + sign * step * b).collect();
            forward(&g, &xp)
        };
        let (plus, minus) = (shifted(1.0), shifted(-1.0));
        let fd: Vec<f64> = plus.iter().zip(&minus).map(|(p, m)| (p - m) / (2.0 * step)).collect();
        let err = twin_rel(&jvp, &fd);
        println!("J·v of the recognised network vs central differences: rel err {err:.2e}");
        assert!(err < 1e-6, "J·v differs from central differences by {err:e}");
    }
}
