//! ONNX networks on the GPU through the graph engine against PyTorch float64 (tests/fixtures/onnx21: the dynamo
//! exporter's opset-21 graphs of Song's tutorial ScoreNet, a DDPM U-Net with attention predicting ε, and a DiT
//! with adaLN predicting v): scores, J·v, Jᵀ·u within 2e-5 and the first point's whole Jacobian, by forward and by
//! reverse mode, within 1e-4, through the same library calls the CLI makes. Also two networks exported by the
//! TorchScript exporter through tools/export_onnx.py (tests/fixtures/torch_onnx, references from torch.func in
//! float64): an EDM-preconditioned denoiser fed σ, and a residual MLP with LayerNorm and exact GELU.

mod common;

use common::{fixture, gpu, rel_err};
use scorelens::derivative::{self, JacobianMethod, JvpMethod};
use scorelens::io::npy;
use scorelens::scheduler::JobOptions;
use scorelens::{ScoreField, ScoreModel};

fn f32s(name: &str, file: &str) -> Vec<f32> {
    npy::read_f32(&fixture(&format!("{name}/{file}"))).unwrap_or_else(|e| panic!("{e}")).data
}

fn f64s(name: &str, file: &str) -> Vec<f64> {
    npy::read_f64(&fixture(&format!("{name}/{file}"))).unwrap_or_else(|e| panic!("{e}")).data
}

fn check(name: &str) {
    let model = ScoreModel::load(&fixture(&format!("{name}/model.onnx"))).unwrap_or_else(|e| panic!("{e}"));
    let field = ScoreField::new(gpu(), &model).unwrap_or_else(|e| panic!("{e}"));
    let (x, t) = (f32s(name, "x.npy"), f32s(name, "t.npy"));
    let d = field.dim();
    let opts = JobOptions::default();
    let score = field.score(&x, &t, opts).unwrap();
    let e = rel_err(&score, &f64s(name, "score.npy"));
    println!("{name}: score {e:.2e}");
    assert!(e < 2e-5, "{name}: score rel. error {e:.2e}");
    let jvp = derivative::jvp(&field, &x, &t, &f32s(name, "v.npy"), JvpMethod::Exact, false, opts).unwrap();
    let e = rel_err(&jvp, &f64s(name, "jvp.npy"));
    println!("{name}: jvp {e:.2e}");
    assert!(e < 2e-5, "{name}: J·v rel. error {e:.2e}");
    let vjp = derivative::vjp(&field, &x, &t, &f32s(name, "u.npy"), opts).unwrap();
    let e = rel_err(&vjp, &f64s(name, "vjp.npy"));
    println!("{name}: vjp {e:.2e}");
    assert!(e < 2e-5, "{name}: Jᵀ·u rel. error {e:.2e}");
    let want: Vec<f64> = f32s(name, "jacobian_row0.npy").iter().map(|&v| v as f64).collect();
    if d > 256 {
        // The whole 784×784 Jacobian takes minutes on a software driver: 40 spread columns (J·eᵢ) and rows
        // (Jᵀ·eᵢ) instead, through the same products.
        let picked: Vec<usize> = (0..d).step_by(d.div_ceil(40)).collect();
        let mut basis = vec![0f32; picked.len() * d];
        for (r, &i) in picked.iter().enumerate() {
            basis[r * d + i] = 1.0;
        }
        let cols = derivative::jvp(&field, &x[..d], &t[..1], &basis, JvpMethod::Exact, false, opts).unwrap();
        let rows = derivative::vjp(&field, &x[..d], &t[..1], &basis, opts).unwrap();
        let (mut want_cols, mut want_rows) = (Vec::new(), Vec::new());
        for &i in &picked {
            want_cols.extend((0..d).map(|o| want[o * d + i]));
            want_rows.extend((0..d).map(|o| want[i * d + o]));
        }
        let (ec, er) = (rel_err(&cols, &want_cols), rel_err(&rows, &want_rows));
        println!("{name}: jacobian columns {ec:.2e} rows {er:.2e}");
        assert!(ec < 1e-4 && er < 1e-4, "{name}: Jacobian columns {ec:.2e}, rows {er:.2e}");
        return;
    }
    for method in [JacobianMethod::Forward, JacobianMethod::Reverse] {
        let mut jac = vec![0f32; d * d];
        derivative::jacobian(&field, &x[..d], &t[..1], method, opts, |rows, values| {
            jac[rows.start * d * d..rows.end * d * d].copy_from_slice(values);
            Ok(())
        })
        .unwrap();
        let e = rel_err(&jac, &want);
        println!("{name}: jacobian {method:?} {e:.2e}");
        assert!(e < 1e-4, "{name}: {method:?} Jacobian rel. error {e:.2e}");
    }
}

#[test]
fn scorenet_tutorial_on_the_gpu_matches_pytorch() {
    check("onnx21/scorenet_tutorial");
}

#[test]
fn ddpm_unet_with_attention_on_the_gpu_matches_pytorch() {
    check("onnx21/unet_attention_epsilon");
}

#[test]
fn dit_with_adaln_on_the_gpu_matches_pytorch() {
    check("onnx21/dit_v");
}

#[test]
fn edm_denoiser_fed_sigma_matches_pytorch() {
    check("torch_onnx/edm_denoiser");
}

#[test]
fn residual_mlp_with_layernorm_and_gelu_matches_pytorch() {
    check("torch_onnx/residual_mlp");
}
