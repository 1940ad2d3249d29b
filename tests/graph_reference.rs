//! The graph engine's f64 twin (reference::graph) against PyTorch float64 on ONNX exports: scores, J·v, Jᵀ·u and
//! a point's whole Jacobian by forward and by reverse mode. No GPU: this checks the import, the lowering and the
//! derivative rules; tests/graph_networks.rs checks the GPU executor against this twin.

use std::path::{Path, PathBuf};

use scorelens::graph::exec::Pass;
use scorelens::graph::{MetadataOverrides, ScoreNetwork};
use scorelens::io::npy;
use scorelens::reference::graph::run_network;

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx21").join(name)
}

fn f64s(path: &Path) -> Vec<f64> {
    npy::read_f64(path).unwrap_or_else(|e| panic!("{e}")).data
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

fn check(name: &str) {
    let d = dir(name);
    let net =
        ScoreNetwork::load_onnx(&d.join("model.onnx"), &MetadataOverrides::new()).unwrap_or_else(|e| panic!("{e}"));
    let (x, t) = (f64s(&d.join("x.npy")), f64s(&d.join("t.npy")));
    let dim = net.dim();
    let score = run_network(&net, Pass::Score, &x, &t, None);
    let e = rel(&score, &f64s(&d.join("score.npy")));
    println!("{name}: score {e:.2e}");
    assert!(e < 2e-6, "{name}: score rel. error {e:.2e}");
    let v = f64s(&d.join("v.npy"));
    let jvp = run_network(&net, Pass::Jvp, &x, &t, Some((&v, 1)));
    let e = rel(&jvp, &f64s(&d.join("jvp.npy")));
    println!("{name}: jvp {e:.2e}");
    assert!(e < 2e-6, "{name}: J·v rel. error {e:.2e}");
    let u = f64s(&d.join("u.npy"));
    let vjp = run_network(&net, Pass::Vjp, &x, &t, Some((&u, 1)));
    let e = rel(&vjp, &f64s(&d.join("vjp.npy")));
    println!("{name}: vjp {e:.2e}");
    assert!(e < 2e-6, "{name}: Jᵀ·u rel. error {e:.2e}");
    // The first point's Jacobian, row i = output i: forward mode gives columns, reverse mode rows. The f64 twin
    // is slow on large networks, so at most 48 evenly spread columns and rows are checked.
    let jac = f64s(&d.join("jacobian_row0.npy"));
    let picked: Vec<usize> = (0..dim).step_by(dim.div_ceil(48)).collect();
    let k = picked.len();
    let mut basis = vec![0.0; k * dim];
    for (r, &i) in picked.iter().enumerate() {
        basis[r * dim + i] = 1.0;
    }
    let x0 = &x[..dim];
    let cols = run_network(&net, Pass::Jvp, x0, &t[..1], Some((&basis, k)));
    let rows = run_network(&net, Pass::Vjp, x0, &t[..1], Some((&basis, k)));
    let (mut forward, mut reverse, mut want_cols, mut want_rows) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (r, &i) in picked.iter().enumerate() {
        for o in 0..dim {
            forward.push(cols[r * dim + o]);
            want_cols.push(jac[o * dim + i]);
            reverse.push(rows[r * dim + o]);
            want_rows.push(jac[i * dim + o]);
        }
    }
    let (ef, er) = (rel(&forward, &want_cols), rel(&reverse, &want_rows));
    println!("{name}: jacobian forward {ef:.2e} reverse {er:.2e}");
    assert!(ef < 1e-5 && er < 1e-5, "{name}: Jacobian rel. errors {ef:.2e} (forward), {er:.2e} (reverse)");
}

#[test]
fn scorenet_tutorial_matches_pytorch() {
    check("scorenet_tutorial");
}

#[test]
fn ddpm_unet_with_attention_matches_pytorch() {
    check("unet_attention_epsilon");
}

#[test]
fn dit_with_adaln_matches_pytorch() {
    check("dit_v");
}
