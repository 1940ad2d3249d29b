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

/// The executor runs a convolution with one group as patches (layout::im2col) times the weight, and a transposed one
/// as x ᵀ times the weight scattered back (layout::col2im): both equal the direct twin.
#[test]
fn convolutions_as_patch_products_equal_the_direct_twin() {
    use scorelens::graph::layout::{col2im, im2col, transpose};
    use scorelens::ops::graph::Conv2d;
    use scorelens::reference::graph_ops::{record_conv2d, record_sparse_map};
    let value = |i: usize| ((i * 7919 % 1000) as f64 / 500.0) - 1.0;
    let cases = [
        Conv2d {
            rows: 1,
            c_in: 3,
            h_in: 7,
            w_in: 6,
            c_out: 5,
            h_out: 4,
            w_out: 3,
            kernel: [3, 2],
            stride: [2, 2],
            pad: [1, 0],
            dilation: [1, 2],
            groups: 1,
            transposed: false,
        },
        Conv2d {
            rows: 1,
            c_in: 2,
            h_in: 5,
            w_in: 5,
            c_out: 3,
            h_out: 5,
            w_out: 5,
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
            groups: 1,
            transposed: false,
        },
        Conv2d {
            rows: 1,
            c_in: 4,
            h_in: 3,
            w_in: 4,
            c_out: 2,
            h_out: 6,
            w_out: 8,
            kernel: [4, 3],
            stride: [2, 2],
            pad: [1, 1],
            dilation: [1, 1],
            groups: 1,
            transposed: true,
        },
        Conv2d {
            rows: 1,
            c_in: 3,
            h_in: 3,
            w_in: 3,
            c_out: 2,
            h_out: 7,
            w_out: 8,
            kernel: [3, 3],
            stride: [2, 2],
            pad: [0, 0],
            dilation: [1, 1],
            groups: 1,
            transposed: true,
        },
    ];
    for spec in cases {
        let x: Vec<f64> = (0..spec.c_in * spec.h_in * spec.w_in).map(value).collect();
        let taps = spec.kernel[0] * spec.kernel[1];
        let w: Vec<f64> = (0..spec.c_in * spec.c_out * taps).map(|i| value(i + 17)).collect();
        let mut want = vec![0.0; spec.c_out * spec.h_out * spec.w_out];
        record_conv2d(&spec, &x, &w, &mut want);
        let got = if spec.transposed {
            let (_, xt) = transpose(&[spec.c_in, spec.h_in * spec.w_in], &[1, 0]);
            let mut xs = vec![0.0; x.len()];
            record_sparse_map(1, &xt, &x, &mut xs, false);
            let width = spec.c_out * taps;
            let pixels = spec.h_in * spec.w_in;
            let mut cols = vec![0.0; pixels * width];
            for p in 0..pixels {
                for q in 0..width {
                    cols[p * width + q] = (0..spec.c_in).map(|c| xs[p * spec.c_in + c] * w[c * width + q]).sum();
                }
            }
            let mut out = vec![0.0; want.len()];
            record_sparse_map(1, &col2im(&spec), &cols, &mut out, false);
            out
        } else {
            let map = im2col(&spec);
            let mut patches = vec![0.0; map.outputs];
            record_sparse_map(1, &map, &x, &mut patches, false);
            let (pixels, inner) = (spec.h_out * spec.w_out, spec.c_in * taps);
            let mut out = vec![0.0; want.len()];
            for o in 0..spec.c_out {
                for p in 0..pixels {
                    out[o * pixels + p] = (0..inner).map(|k| patches[p * inner + k] * w[o * inner + k]).sum();
                }
            }
            out
        };
        let e = rel(&got, &want);
        assert!(e < 1e-12, "{spec:?}: {e:.2e}");
    }
}
