//! The built-in architectures' graph builders (scorelens::graph::builtin) against the architectures' own f64
//! references (scorelens::reference::{mlp, unet}), run on the graph's f64 twin: the builder must state the same
//! function (embedding, activations, output scale) and its derivative programs the same Jacobian. CPU only.

mod common;

use common::{normal_vec, random_times, rng};
use scorelens::graph::builtin;
use scorelens::graph::exec::Pass;
use scorelens::model::{MlpModel, OutputScale, UnetModel};
use scorelens::reference::graph::run_network;
use scorelens::reference::mlp::{mlp_jacobian, mlp_score};
use scorelens::reference::unet::unet_score;
use scorelens::{Activation, NoiseSchedule, ScoreModel};

fn rel(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got.iter().zip(want).map(|(a, b)| (a - b) * (a - b)).sum();
    let den: f64 = want.iter().map(|b| b * b).sum();
    (num / den).sqrt()
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

#[test]
fn mlp_graph_states_the_mlp_and_its_jacobian() {
    let schedules = [
        NoiseSchedule::VeSong { sigma: 25.0 },
        NoiseSchedule::Vp { beta_min: 0.1, beta_max: 20.0 },
        NoiseSchedule::Ve { sigma_min: 0.01, sigma_max: 50.0 },
    ];
    for (i, act) in Activation::ALL.into_iter().enumerate() {
        for scale in [OutputScale::InvStd, OutputScale::None] {
            // Widths that are no multiples of anything; one model without hidden layers.
            let hidden: &[usize] = if i == 3 { &[] } else { &[13, 7] };
            let mut model = MlpModel::random(40 + i as u64, 5, hidden, 6, act, schedules[i % 3]);
            model.output_scale = scale;
            let net = builtin::network(&ScoreModel::Mlp(model.clone())).unwrap();
            assert_eq!(net.parameters, model.parameter_count());
            assert_eq!(net.is_piecewise_linear(), act == Activation::Relu || hidden.is_empty(), "{act}");
            let points = 3;
            let x = normal_vec(&mut rng(7), points * 5, 1.0);
            let t = random_times(8, points);
            let want = mlp_score(&model, &x, &t);
            let got = run_network(&net, Pass::Score, &widen(&x), &widen(&t), None);
            let e = rel(&got, &want);
            assert!(e < 1e-12, "{act} {scale:?}: score rel err {e:e}");

            // Identity tangents: J·e_j are the Jacobian's columns, Jᵀ·e_i its rows.
            let jac = mlp_jacobian(&model, &x, &t);
            let identity: Vec<f64> = (0..points * 25).map(|k| f64::from(k % 25 % 6 == 0)).collect();
            let rows = run_network(&net, Pass::Vjp, &widen(&x), &widen(&t), Some((&identity, 5)));
            let e = rel(&rows, &jac);
            assert!(e < 1e-12, "{act} {scale:?}: Jᵀ rows rel err {e:e}");
            let columns = run_network(&net, Pass::Jvp, &widen(&x), &widen(&t), Some((&identity, 5)));
            let transposed: Vec<f64> =
                (0..points * 25).map(|k| columns[(k / 25) * 25 + (k % 5) * 5 + (k % 25) / 5]).collect();
            let e = rel(&transposed, &jac);
            assert!(e < 1e-12, "{act} {scale:?}: J columns rel err {e:e}");
        }
    }
}

#[test]
fn unet_graph_states_the_song_unet() {
    for (seed, scale) in [(5u64, OutputScale::InvStd), (6, OutputScale::None)] {
        let mut model = UnetModel::random(seed, [32, 32, 64, 32], 22, NoiseSchedule::VeSong { sigma: 25.0 });
        model.output_scale = scale;
        let net = builtin::network(&ScoreModel::Unet(model.clone())).unwrap();
        assert_eq!(net.parameters, model.parameter_count());
        assert_eq!(net.row_shape, vec![1, 28, 28]);
        assert!(!net.is_piecewise_linear());
        let x = normal_vec(&mut rng(seed + 1), 2 * 784, 1.0);
        let t = random_times(seed + 2, 2);
        let want = unet_score(&model, &x, &t);
        let got = run_network(&net, Pass::Score, &widen(&x), &widen(&t), None);
        let e = rel(&got, &want);
        assert!(e < 1e-11, "{scale:?}: score rel err {e:e}");
    }
}

/// The MLP's first layer, W_x x + (W_e e(t) + b), runs as one product whose store adds the other product, the bias
/// and the activation (fuse: the addend): no Add or activation is left in its fused score program, and that
/// program's f64 twin is the MLP.
#[test]
fn mlp_first_layer_sum_is_fused_into_one_store() {
    use scorelens::graph::fuse::fuse_program;
    use scorelens::graph::ir::Op;
    use scorelens::reference::graph::HostRun;
    let model = MlpModel::random(61, 7, &[19, 11], 6, Activation::Silu, NoiseSchedule::VeSong { sigma: 25.0 });
    let net = builtin::network(&ScoreModel::Mlp(model.clone())).unwrap();
    let p = fuse_program(&net.program, &[], true);
    let ops: Vec<&Op> = p.score.iter().map(|&n| &p.graph.nodes[n].op).collect();
    let with_addend =
        ops.iter().filter(|op| matches!(op, Op::FusedMatMul(_, e) if e.addend && e.bias && e.act.is_some()));
    assert_eq!(with_addend.count(), 1, "{ops:?}");
    assert!(!ops.iter().any(|op| matches!(op, Op::Unary { .. })), "an activation left unfused: {ops:?}");
    let adds = ops.iter().filter(|op| matches!(op, Op::Binary(scorelens::ops::graph::BinaryOp::Add))).count();
    assert_eq!(adds, 0, "{ops:?}");
    let points = 4;
    let x = normal_vec(&mut rng(62), points * 7, 1.0);
    let t = random_times(63, points);
    let mut run = HostRun::new(&p.graph, points, 1);
    run.set(p.graph.inputs[0], widen(&x));
    for (k, values) in net.row_inputs(&widen(&t)).into_iter().enumerate() {
        run.set(p.graph.inputs[k + 1], values);
    }
    run.run(&p.score);
    let e = rel(run.get(p.graph.output), &mlp_score(&model, &x, &t));
    assert!(e < 1e-12, "fused score rel err {e:e}");
}
