//! Small ONNX graphs exercising the importer's ops (tools/fixtures/make_onnx_zoo.py: grouped, depthwise, strided,
//! dilated and transposed convolutions, instance norm, average pooling, TorchScript-style dynamic reshapes,
//! transposes that move the batch axis, pad, linear and nearest resize, reductions, slices, tiles, gathers,
//! where, split, einsum attention, GELU, pow with constant base and exponent) against onnx's float64 reference
//! evaluator with central-difference derivatives, each under another parameterisation and time input. The f64
//! twin must match to 1e-6 (the references' own accuracy), the GPU to 2e-5 (1e-4 for the Jacobian).

mod common;

use common::{fixture, gpu, rel_err};
use scorelens::derivative::{self, JacobianMethod, JvpMethod};
use scorelens::graph::exec::Pass;
use scorelens::io::npy;
use scorelens::reference::graph::run_network;
use scorelens::scheduler::JobOptions;
use scorelens::{ScoreField, ScoreModel};

fn load(name: &str, file: &str) -> Vec<f64> {
    npy::read_f64(&fixture(&format!("onnx_zoo/{name}/{file}"))).unwrap_or_else(|e| panic!("{e}")).data
}

fn rel64(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

fn check(name: &str) {
    let model = ScoreModel::load(&fixture(&format!("onnx_zoo/{name}/model.onnx"))).unwrap_or_else(|e| panic!("{e}"));
    let ScoreModel::Graph(net) = &model else { panic!("not a graph") };
    let (x, t, v, u) = (load(name, "x.npy"), load(name, "t.npy"), load(name, "v.npy"), load(name, "u.npy"));
    let (score, jvp, vjp) = (load(name, "score.npy"), load(name, "jvp.npy"), load(name, "vjp.npy"));
    // The f64 twin.
    let e = [
        rel64(&run_network(net, Pass::Score, &x, &t, None), &score),
        rel64(&run_network(net, Pass::Jvp, &x, &t, Some((&v, 1))), &jvp),
        rel64(&run_network(net, Pass::Vjp, &x, &t, Some((&u, 1))), &vjp),
    ];
    println!("{name}: f64 twin score {:.2e} jvp {:.2e} vjp {:.2e}", e[0], e[1], e[2]);
    assert!(e.iter().all(|&e| e < 1e-6), "{name}: f64 twin errors {e:?}");
    // The GPU, through the library's calls.
    let field = ScoreField::new(gpu(), &model).unwrap();
    let f32s = |a: &[f64]| a.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let (xf, tf) = (f32s(&x), f32s(&t));
    let opts = JobOptions::default();
    let e = [
        rel_err(&field.score(&xf, &tf, opts).unwrap(), &score),
        rel_err(&derivative::jvp(&field, &xf, &tf, &f32s(&v), JvpMethod::Exact, false, opts).unwrap(), &jvp),
        rel_err(&derivative::vjp(&field, &xf, &tf, &f32s(&u), opts).unwrap(), &vjp),
    ];
    println!("{name}: gpu score {:.2e} jvp {:.2e} vjp {:.2e}", e[0], e[1], e[2]);
    assert!(e.iter().all(|&e| e < 2e-5), "{name}: GPU errors {e:?}");
    let d = field.dim();
    let want = load(name, "jacobian_row0.npy");
    for method in [JacobianMethod::Forward, JacobianMethod::Reverse] {
        let mut jac = vec![0f32; d * d];
        derivative::jacobian(&field, &xf[..d], &tf[..1], method, opts, |_, values| {
            jac.copy_from_slice(values);
            Ok(())
        })
        .unwrap();
        let e = rel_err(&jac, &want);
        println!("{name}: gpu jacobian {method:?} {e:.2e}");
        assert!(e < 1e-4, "{name}: {method:?} Jacobian {e:.2e}");
    }
}

#[test]
fn convolutions_norms_and_pooling() {
    check("conv_zoo");
}

#[test]
fn layout_ops_and_dynamic_reshapes() {
    check("layout_zoo");
}

#[test]
fn attention_with_a_moving_batch_axis() {
    check("attention_zoo");
}

/// Local complexity's hidden units in a graph: the inputs of its ReLU-family units (conv_zoo's LeakyRelu), read from
/// the GPU linearisation, equal the f64 twin's values of the same node.
#[test]
fn relu_family_pre_activations_match_the_twin() {
    use scorelens::graph::ir::Op;
    use scorelens::ops::graph::UnaryFn;
    use scorelens::reference::graph::HostRun;
    let name = "conv_zoo";
    let model = ScoreModel::load(&fixture(&format!("onnx_zoo/{name}/model.onnx"))).unwrap();
    let ScoreModel::Graph(net) = &model else { panic!("not a graph") };
    let (x, t) = (load(name, "x.npy"), load(name, "t.npy"));
    let g = net.graph();
    let unit = g
        .nodes
        .iter()
        .find(|n| matches!(n.op, Op::Unary { f: UnaryFn::LeakyRelu(_), derivative: false }))
        .expect("a LeakyRelu")
        .inputs[0];
    let mut run = HostRun::new(g, 3, 1);
    run.set(g.inputs[0], x.clone());
    for (k, values) in net.row_inputs(&t).into_iter().enumerate() {
        run.set(g.inputs[k + 1], values);
    }
    run.run(&net.program.primal);
    let want = run.get(unit).to_vec();
    let field = ScoreField::new(gpu(), &model).unwrap();
    let f32s = |a: &[f64]| a.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    let lin = derivative::linearize(&field, &f32s(&x), &f32s(&t), 0).unwrap();
    let got = lin.pre_activations().unwrap();
    assert_eq!(got.len(), want.len(), "one LeakyRelu layer of units per point");
    let e = rel_err(&got, &want);
    assert!(e < 1e-5, "pre-activations {e:.2e}");
}
