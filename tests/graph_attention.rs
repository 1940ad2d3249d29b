//! Fused attention (crate::graph::attention, ops::attention): the kernels against their f64 twins, the twins
//! against central differences and each other's transpose, and networks with self- and cross-attention whose fused
//! programs (one attention node in the score, one attention-tangent node in J·V, one scores' cotangent node in
//! Jᵀ·U) match the unfused twin exactly in f64 and on the GPU to f32 rounding. Sizes are not multiples of
//! the kernels' 64-thread workgroups or 16-column chunks (sequence lengths 7, 11, 13; head sizes 5, 19, 33).

mod common;

use std::sync::Arc;

use common::{gpu, rel_err, rng};
use rand::Rng;
use scorelens::gpu::{BufferRole, Recorder};
use scorelens::graph::exec::{GraphExecutor, GraphOptions, Pass};
use scorelens::graph::ir::{Graph, MatMul, MatrixLayout, Op, Stream, ValueId};
use scorelens::graph::{Parameterization, ScoreNetwork, TimeInput};
use scorelens::model::NoiseSchedule;
use scorelens::ops::attention::{
    record_attention, record_attention_score_adjoint, record_attention_tangent, AttentionOperand, AttentionShape,
};
use scorelens::ops::graph::{BinaryOp, MatrixMap, RowMap, UnaryFn};
use scorelens::reference::attention as twin;
use scorelens::reference::graph::{run_network, HostRun};
use scorelens::scheduler::JobOptions;
use scorelens::GpuContext;

fn uniform(r: &mut impl Rng, len: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..len).map(|_| r.random_range(lo..hi) as f32 as f64).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn up(ctx: &GpuContext, data: &[f64]) -> wgpu::Buffer {
    ctx.upload("test/in", &f32s(data))
}

fn check(what: &str, got: &[f32], want: &[f64], tol: f64) {
    let err = rel_err(got, want);
    println!("{what}: rel err {err:.2e}");
    assert!(err <= tol, "{what}: rel err {err:e} > {tol:e}");
}

fn twin_rel(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

/// The probabilities softmax(scale · Q · K) from the forward twin's own softmax, [rows, lead, lq, lk] contiguous:
/// its output over an identity V.
fn twin_probabilities(s: &AttentionShape, q: (&[f64], MatrixMap), k: (&[f64], MatrixMap)) -> Vec<f64> {
    let lk = s.lk;
    let eye = AttentionShape { dv: lk, ..*s };
    let ident: Vec<f64> = (0..lk * lk).map(|i| if i / lk == i % lk { 1.0 } else { 0.0 }).collect();
    let shared = MatrixMap { rows: RowMap::shared(), lead_stride: 0, transposed: false };
    let mut p = vec![0.0; s.rows * s.lead * s.lq * lk];
    twin::record_attention(&eye, q, k, (&ident, shared), &mut p);
    p
}

/// One operand's data for `rows` rows under `map` (enough elements for every row and head it addresses).
fn operand_data(r: &mut impl Rng, s: &AttentionShape, map: MatrixMap, size: usize, scale: f64) -> Vec<f64> {
    let rows = if map.rows.stride == 0 { 1 } else { s.rows.div_ceil(map.rows.rep as usize) };
    let len = (rows - 1) * map.rows.stride as usize + (s.lead - 1) * map.lead_stride as usize + size;
    uniform(r, len, -scale, scale)
}

/// The kernels on random operands in every layout they address: per-row and shared (constant) operands,
/// transposed storage, one matrix for all heads, a primal repeated over tangent rows, each subset of tangents.
#[test]
fn attention_kernels_match_their_twins_on_awkward_shapes() {
    let ctx = gpu();
    let mut r = rng(61);
    let lay = |rows: RowMap, lead_stride: usize, transposed: bool| MatrixMap {
        rows,
        lead_stride: lead_stride as u32,
        transposed,
    };
    for (case, (lead, lq, lk, dk, dv)) in
        [(3, 7, 13, 5, 19), (1, 1, 1, 3, 2), (2, 11, 70, 9, 33)].into_iter().enumerate()
    {
        let points = 5;
        let rep = 3;
        let primal = AttentionShape { rows: points, lead, lq, lk, dk, dv, scale: 0.6 };
        let tangent = AttentionShape { rows: points * rep, ..primal };
        let per = |size: usize| size * lead;
        // Q per row; K constant, shared by the heads, stored transposed; V per row, stored transposed.
        let q_map = |rows: RowMap| lay(rows, lq * dk, false);
        let k_map = lay(RowMap::shared(), 0, true);
        let v_map = |rows: RowMap| lay(rows, lk * dv, true);
        let q = operand_data(&mut r, &primal, q_map(RowMap::rows(per(lq * dk))), lq * dk, 1.5);
        let k = operand_data(&mut r, &primal, k_map, dk * lk, 1.5);
        let v = operand_data(&mut r, &primal, v_map(RowMap::rows(per(lk * dv))), lk * dv, 1.0);
        let (gq, gk, gv) = (up(&ctx, &q), up(&ctx, &k), up(&ctx, &v));
        let out_len = points * lead * lq * dv;
        let out = ctx.buffer("test/out", (out_len * 4) as u64, BufferRole::Storage);
        let mut rec = Recorder::new(&ctx, "test/attention");
        let operand = |buffer, map| AttentionOperand { buffer, map };
        record_attention(
            &mut rec,
            &primal,
            operand(&gq, q_map(RowMap::rows(per(lq * dk)))),
            operand(&gk, k_map),
            operand(&gv, v_map(RowMap::rows(per(lk * dv)))),
            &out,
        )
        .unwrap();
        rec.submit();
        let got = ctx.download(&out, out_len).unwrap();
        let mut want = vec![0.0; out_len];
        twin::record_attention(
            &primal,
            (&q, q_map(RowMap::rows(per(lq * dk)))),
            (&k, k_map),
            (&v, v_map(RowMap::rows(per(lk * dv)))),
            &mut want,
        );
        check(&format!("case {case}: attention"), &got, &want, 2e-6);

        let p = twin_probabilities(&primal, (&q, q_map(RowMap::rows(per(lq * dk)))), (&k, k_map));
        let gp = up(&ctx, &p);
        let p_rows = RowMap::repeated(per(lq * lk), rep);
        // Tangents: per tangent row, untransposed; each nonempty subset.
        let t_map = |size: usize| lay(RowMap::rows(per(size)), size, false);
        let dq = operand_data(&mut r, &tangent, t_map(lq * dk), lq * dk, 1.0);
        let dkt = operand_data(&mut r, &tangent, t_map(dk * lk), dk * lk, 1.0);
        let dvt = operand_data(&mut r, &tangent, t_map(lk * dv), lk * dv, 1.0);
        let (gdq, gdk, gdv) = (up(&ctx, &dq), up(&ctx, &dkt), up(&ctx, &dvt));
        let q_rep = q_map(RowMap::repeated(per(lq * dk), rep));
        let v_rep = v_map(RowMap::repeated(per(lk * dv), rep));
        let out_len = points * rep * lead * lq * dv;
        for present in 1..8u32 {
            let has = |bit: u32| present & (1 << bit) != 0;
            let out = ctx.buffer("test/out", (out_len * 4) as u64, BufferRole::Storage);
            let mut rec = Recorder::new(&ctx, "test/attention-tangent");
            let tangents = [
                has(0).then(|| operand(&gdq, t_map(lq * dk))),
                has(1).then(|| operand(&gdk, t_map(dk * lk))),
                has(2).then(|| operand(&gdv, t_map(lk * dv))),
            ];
            record_attention_tangent(
                &mut rec,
                &tangent,
                operand(&gq, q_rep),
                operand(&gk, k_map),
                operand(&gv, v_rep),
                (&gp, p_rows),
                tangents,
                &out,
            )
            .unwrap();
            rec.submit();
            let got = ctx.download(&out, out_len).unwrap();
            let mut want = vec![0.0; out_len];
            let tangents = [
                has(0).then(|| (&dq[..], t_map(lq * dk))),
                has(1).then(|| (&dkt[..], t_map(dk * lk))),
                has(2).then(|| (&dvt[..], t_map(lk * dv))),
            ];
            twin::record_attention_tangent(
                &tangent,
                (&q, q_rep),
                (&k, k_map),
                (&v, v_rep),
                (&p, p_rows),
                tangents,
                &mut want,
            );
            check(&format!("case {case}: attention tangent, tangents {present:03b}"), &got, &want, 2e-6);
        }
        // The scores' cotangent from an output cotangent per tangent row.
        let ct = uniform(&mut r, out_len, -1.0, 1.0);
        let gct = up(&ctx, &ct);
        let s_len = points * rep * lead * lq * lk;
        let out = ctx.buffer("test/out", (s_len * 4) as u64, BufferRole::Storage);
        let mut rec = Recorder::new(&ctx, "test/attention-score-adjoint");
        record_attention_score_adjoint(&mut rec, &tangent, operand(&gv, v_rep), (&gp, p_rows), &gct, &out).unwrap();
        rec.submit();
        let got = ctx.download(&out, s_len).unwrap();
        let mut want = vec![0.0; s_len];
        twin::record_attention_score_adjoint(&tangent, (&v, v_rep), (&p, p_rows), &ct, &mut want);
        check(&format!("case {case}: attention score adjoint"), &got, &want, 2e-6);
    }
}

/// The tangent twin is the derivative of the forward twin: central differences in f64 along random directions.
#[test]
fn attention_tangent_twin_is_the_derivative_of_the_forward_twin() {
    let mut r = rng(62);
    let (lead, lq, lk, dk, dv) = (2, 5, 7, 3, 4);
    let s = AttentionShape { rows: 1, lead, lq, lk, dk, dv, scale: 0.8 };
    let map = |size: usize| MatrixMap { rows: RowMap::rows(lead * size), lead_stride: size as u32, transposed: false };
    let sizes = [lq * dk, dk * lk, lk * dv];
    let x: Vec<Vec<f64>> = sizes.iter().map(|&n| uniform(&mut r, lead * n, -1.5, 1.5)).collect();
    let d: Vec<Vec<f64>> = sizes.iter().map(|&n| uniform(&mut r, lead * n, -1.0, 1.0)).collect();
    let forward = |h: f64| {
        let shifted: Vec<Vec<f64>> =
            x.iter().zip(&d).map(|(a, b)| a.iter().zip(b).map(|(a, b)| a + h * b).collect()).collect();
        let mut out = vec![0.0; lead * lq * dv];
        twin::record_attention(
            &s,
            (&shifted[0], map(sizes[0])),
            (&shifted[1], map(sizes[1])),
            (&shifted[2], map(sizes[2])),
            &mut out,
        );
        out
    };
    let p = twin_probabilities(&s, (&x[0], map(sizes[0])), (&x[1], map(sizes[1])));
    let mut jvp = vec![0.0; lead * lq * dv];
    let tangents =
        [Some((&d[0][..], map(sizes[0]))), Some((&d[1][..], map(sizes[1]))), Some((&d[2][..], map(sizes[2])))];
    twin::record_attention_tangent(
        &s,
        (&x[0], map(sizes[0])),
        (&x[1], map(sizes[1])),
        (&x[2], map(sizes[2])),
        (&p, RowMap::rows(lead * lq * lk)),
        tangents,
        &mut jvp,
    );
    let h = 1e-5;
    let (plus, minus) = (forward(h), forward(-h));
    let fd: Vec<f64> = plus.iter().zip(&minus).map(|(a, b)| (a - b) / (2.0 * h)).collect();
    let err = twin_rel(&jvp, &fd);
    println!("tangent twin vs central differences: {err:.2e}");
    assert!(err < 1e-8, "tangent twin differs from central differences by {err:e}");
}

/// The scores' cotangent twin is the adjoint of the tangent twin: for the tangent of Q alone,
/// ⟨dO(dQ), Ō⟩ = ⟨dQ, S̄ · Kᵀ⟩ with S̄ the scores' cotangent of Ō.
#[test]
fn attention_score_adjoint_twin_is_the_transpose_of_the_tangent_twin() {
    let mut r = rng(64);
    let (lead, lq, lk, dk, dv) = (3, 4, 6, 5, 7);
    let s = AttentionShape { rows: 1, lead, lq, lk, dk, dv, scale: 0.45 };
    let map = |size: usize| MatrixMap { rows: RowMap::rows(lead * size), lead_stride: size as u32, transposed: false };
    let q = uniform(&mut r, lead * lq * dk, -1.5, 1.5);
    let k = uniform(&mut r, lead * dk * lk, -1.5, 1.5);
    let v = uniform(&mut r, lead * lk * dv, -1.0, 1.0);
    let dq = uniform(&mut r, lead * lq * dk, -1.0, 1.0);
    let ct = uniform(&mut r, lead * lq * dv, -1.0, 1.0);
    let p = twin_probabilities(&s, (&q, map(lq * dk)), (&k, map(dk * lk)));
    let p_rows = RowMap::rows(lead * lq * lk);
    let mut d_out = vec![0.0; lead * lq * dv];
    let tangents = [Some((&dq[..], map(lq * dk))), None, None];
    twin::record_attention_tangent(
        &s,
        (&q, map(lq * dk)),
        (&k, map(dk * lk)),
        (&v, map(lk * dv)),
        (&p, p_rows),
        tangents,
        &mut d_out,
    );
    let mut s_bar = vec![0.0; lead * lq * lk];
    twin::record_attention_score_adjoint(&s, (&v, map(lk * dv)), (&p, p_rows), &ct, &mut s_bar);
    let left: f64 = d_out.iter().zip(&ct).map(|(a, b)| a * b).sum();
    let mut right = 0.0;
    for l in 0..lead {
        for i in 0..lq {
            for c in 0..dk {
                let q_bar: f64 = (0..lk).map(|j| s_bar[(l * lq + i) * lk + j] * k[l * dk * lk + c * lk + j]).sum();
                right += dq[l * lq * dk + i * dk + c] * q_bar;
            }
        }
    }
    println!("⟨dO, Ō⟩ = {left:.12}, ⟨dQ, Q̄⟩ = {right:.12}");
    assert!((left - right).abs() < 1e-12 * left.abs().max(1.0), "{left} ≠ {right}");
}

fn weights(g: &mut Graph, r: &mut impl Rng, name: &str, shape: Vec<usize>, scale: f64) -> ValueId {
    let len = shape.iter().product();
    let data = f32s(&uniform(r, len, -scale, scale));
    g.add_const(name, shape, data)
}

fn product(g: &mut Graph, a: ValueId, b: ValueId, mm: MatMul, shape: Vec<usize>) -> ValueId {
    g.add_node("product", Op::MatMul(mm), vec![a, b], shape)
}

fn plain(m: usize, n: usize, k: usize) -> MatMul {
    let l = MatrixLayout { lead_stride: 0, transposed: false };
    MatMul { m, n, k, lead: 1, a: l, b: l }
}

fn transpose(g: &mut Graph, x: ValueId, perm: &[usize]) -> ValueId {
    let shape = g.values[x].shape.clone();
    let (out, map) = scorelens::graph::layout::transpose(&shape, perm);
    g.add_node("transpose", Op::Linear(vec![Arc::new(map)]), vec![x], out)
}

fn reshape(g: &mut Graph, x: ValueId, shape: Vec<usize>) -> ValueId {
    g.add_node("reshape", Op::Reshape, vec![x], shape)
}

/// Tokens [tokens, width] → heads [heads, tokens, size] (the per-head matrices of a projection).
fn heads(
    g: &mut Graph,
    r: &mut impl Rng,
    x: ValueId,
    tokens: usize,
    width: usize,
    heads: usize,
    size: usize,
) -> ValueId {
    let w = weights(g, r, "w", vec![width, heads * size], 1.0 / (width as f64).sqrt());
    let y = product(g, x, w, plain(tokens, heads * size, width), vec![tokens, heads * size]);
    let y = reshape(g, y, vec![tokens, heads, size]);
    transpose(g, y, &[1, 0, 2])
}

/// Self-attention (`cross` false: Q, K, V from the tokens, scores divided by √dk) or attention over a fixed
/// linear mix of the tokens (`cross` true: K a constant shared by the heads, stored transposed; V from 11 mixed
/// tokens; scores multiplied by a constant on the left), with an output projection, a residual and a GELU.
fn attention_network(r: &mut impl Rng, cross: bool) -> ScoreNetwork {
    let (tokens, width, h, dk, dv) = (7, 6, 2, 5, 19);
    let mut g = Graph::default();
    let x = g.add_value("x", vec![tokens, width], Stream::Primal);
    let t = g.add_value("t", vec![], Stream::Primal);
    g.inputs = vec![x, t];
    let q = heads(&mut g, r, x, tokens, width, h, dk);
    let lk = if cross { 11 } else { tokens };
    let (k, k_layout) = if cross {
        (weights(&mut g, r, "k", vec![lk, dk], 1.0), MatrixLayout { lead_stride: 0, transposed: true })
    } else {
        let k = heads(&mut g, r, x, tokens, width, h, dk);
        (transpose(&mut g, k, &[0, 2, 1]), MatrixLayout { lead_stride: dk * lk, transposed: false })
    };
    let v = if cross {
        let mix = weights(&mut g, r, "mix", vec![lk, tokens], 0.5);
        let mixed = product(&mut g, mix, x, plain(lk, width, tokens), vec![lk, width]);
        heads(&mut g, r, mixed, lk, width, h, dv)
    } else {
        heads(&mut g, r, x, tokens, width, h, dv)
    };
    let contiguous = |size: usize| MatrixLayout { lead_stride: size, transposed: false };
    let mm1 = MatMul { m: tokens, n: lk, k: dk, lead: h, a: contiguous(tokens * dk), b: k_layout };
    let s = product(&mut g, q, k, mm1, vec![h, tokens, lk]);
    let s = if cross {
        let c = g.add_const("c", vec![1, 1, 1], vec![0.37]);
        g.add_node("scale", Op::Binary(BinaryOp::Mul), vec![c, s], vec![h, tokens, lk])
    } else {
        let c = g.add_const("c", vec![], vec![(dk as f32).sqrt()]);
        g.add_node("scale", Op::Binary(BinaryOp::Div), vec![s, c], vec![h, tokens, lk])
    };
    let p = g.add_node("softmax", Op::Softmax { outer: h * tokens, n: lk, inner: 1 }, vec![s], vec![h, tokens, lk]);
    let mm2 = MatMul { m: tokens, n: dv, k: lk, lead: h, a: contiguous(tokens * lk), b: contiguous(lk * dv) };
    let o = product(&mut g, p, v, mm2, vec![h, tokens, dv]);
    let o = transpose(&mut g, o, &[1, 0, 2]);
    let o = reshape(&mut g, o, vec![tokens, h * dv]);
    let wo = weights(&mut g, r, "wo", vec![h * dv, width], 1.0 / ((h * dv) as f64).sqrt());
    let o = product(&mut g, o, wo, plain(tokens, width, h * dv), vec![tokens, width]);
    let y = g.add_node("residual", Op::Binary(BinaryOp::Add), vec![x, o], vec![tokens, width]);
    g.output = g.add_node("act", Op::Unary { f: UnaryFn::Gelu, derivative: false }, vec![y], vec![tokens, width]);
    let schedule = NoiseSchedule::VeSong { sigma: 25.0 };
    ScoreNetwork::from_graph(
        "test.onnx".into(),
        "onnx",
        g,
        schedule,
        Parameterization::Epsilon,
        TimeInput::T,
        Default::default(),
    )
    .unwrap()
}

#[test]
fn attention_networks_fuse_exactly_in_every_program() {
    let ctx = gpu();
    let mut r = rng(63);
    for cross in [false, true] {
        let name = if cross { "cross" } else { "self" };
        let net = Arc::new(attention_network(&mut r, cross));
        let d = net.dim();
        let (points, rep) = (9, 3);
        let x = uniform(&mut r, points * d, -2.0, 2.0);
        let t = uniform(&mut r, points, 0.1, 1.0);
        let v = uniform(&mut r, points * rep * d, -1.0, 1.0);
        let fused = GraphExecutor::with_options(ctx.clone(), net.clone(), GraphOptions::default()).unwrap();
        let unfused =
            GraphExecutor::with_options(ctx.clone(), net.clone(), GraphOptions { fusion: false, memory_plan: true })
                .unwrap();
        let p = fused.program();
        let count =
            |nodes: &[usize], pick: &dyn Fn(&Op) -> bool| nodes.iter().filter(|&&n| pick(&p.graph.nodes[n].op)).count();
        let softmaxes =
            |nodes: &[usize]| count(nodes, &|op| matches!(op, Op::Softmax { .. } | Op::SoftmaxTangent { .. }));
        assert_eq!(count(&p.score, &|op| matches!(op, Op::Attention(_))), 1, "{name}: one attention in the score");
        assert_eq!(softmaxes(&p.score), 0, "{name}: the score's softmax fused");
        assert_eq!(count(&p.jvp, &|op| matches!(op, Op::AttentionTangent(..))), 1, "{name}: one attention tangent");
        assert_eq!(softmaxes(&p.jvp), 0, "{name}: the softmax tangent fused in J·V");
        let adjoints = count(&p.vjp, &|op| matches!(op, Op::AttentionScoreAdjoint(_)));
        assert_eq!(adjoints, 1, "{name}: one scores' cotangent node in Jᵀ·U");
        assert_eq!(softmaxes(&p.vjp), 0, "{name}: the softmax linearisation fused in Jᵀ·U");
        println!(
            "{name}: score {} → {} nodes, jvp {} → {}",
            net.program.primal.len(),
            p.score.len(),
            net.program.jvp.len(),
            p.jvp.len()
        );
        // The fused programs' twins equal the unfused twin in f64.
        let mut run = HostRun::new(&p.graph, points, rep);
        run.set(p.graph.inputs[0], x.clone());
        for (k, values) in net.row_inputs(&t).into_iter().enumerate() {
            run.set(p.graph.inputs[k + 1], values);
        }
        run.run(&p.score);
        let err = twin_rel(run.get(p.graph.output), &run_network(&net, Pass::Score, &x, &t, None));
        assert!(err < 1e-12, "{name}: fused score twin differs by {err:e}");
        run.run(&p.linearisation);
        run.set(net.program.dx, v.clone());
        run.run(&p.jvp);
        let err = twin_rel(run.get(net.program.dy), &run_network(&net, Pass::Jvp, &x, &t, Some((&v, rep))));
        assert!(err < 1e-12, "{name}: fused J·V twin differs by {err:e}");
        run.set(net.program.y_bar, v.clone());
        run.run(&p.vjp);
        let err = twin_rel(run.get(net.program.x_bar), &run_network(&net, Pass::Vjp, &x, &t, Some((&v, rep))));
        assert!(err < 1e-12, "{name}: fused Jᵀ·U twin differs by {err:e}");
        // The GPU, fused and unfused, against the unfused twin.
        for pass in [Pass::Score, Pass::Jvp, Pass::Vjp] {
            let tangents = (pass != Pass::Score).then_some((&v[..], rep));
            let want = run_network(&net, pass, &x, &t, tangents);
            let v32 = f32s(&v);
            let tangents32 = (pass != Pass::Score).then_some((&v32[..], rep));
            for (label, exec) in [("fused", &fused), ("unfused", &unfused)] {
                let got = exec.run(pass, &f32s(&x), &f32s(&t), tangents32, JobOptions::default()).unwrap();
                check(&format!("{name} {label} {pass:?}"), &got, &want, 2e-5);
            }
            let budget = fused.resident_bytes() + fused.bytes_per_point(pass, rep) * 4;
            let small = JobOptions { memory_budget: budget, ..Default::default() };
            let got = fused.run(pass, &f32s(&x), &f32s(&t), tangents32, small).unwrap();
            check(&format!("{name} fused {pass:?} in chunks"), &got, &want, 2e-5);
        }
    }
}
