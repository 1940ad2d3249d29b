//! The shipped score models (assets/models) still load and compute what PyTorch computed when they were made:
//! scores at the inputs saved by tools/train/train.py against its float64 PyTorch outputs (tools/train/reference),
//! for the safetensors MLPs (moons, circle16, digits, moons_relu, sphere16) and the ONNX U-Net (digits_unet, also
//! J·v and the first point's whole Jacobian by forward mode).

mod common;

use std::path::PathBuf;

use common::{gpu, rel_err};
use scorelens::derivative::{self, JvpMethod};
use scorelens::io::npy;
use scorelens::scheduler::JobOptions;
use scorelens::{ScoreField, ScoreModel};

fn root(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn f32s(file: &str) -> Vec<f32> {
    npy::read_f32(&root(&format!("tools/train/reference/{file}"))).unwrap_or_else(|e| panic!("{e}")).data
}

fn f64s(file: &str) -> Vec<f64> {
    npy::read_f64(&root(&format!("tools/train/reference/{file}"))).unwrap_or_else(|e| panic!("{e}")).data
}

/// The model's scores at the saved inputs (random t, and t = 0.5) against PyTorch float64.
fn check_scores(name: &str, file: &str, bound: f64) -> ScoreField {
    let model = ScoreModel::load(&root(&format!("assets/models/{file}"))).unwrap_or_else(|e| panic!("{name}: {e}"));
    let field = ScoreField::new(gpu(), &model).unwrap_or_else(|e| panic!("{name}: {e}"));
    let opts = JobOptions::default();
    let (x, t) = (f32s(&format!("{name}_x.npy")), f32s(&format!("{name}_t.npy")));
    let e = rel_err(&field.score(&x, &t, opts).unwrap(), &f64s(&format!("{name}_score.npy")));
    println!("{name}: score at random t, rel. error {e:.2e}");
    assert!(e <= bound, "{name}: score rel. error {e:.2e} at random t");
    let xh = f32s(&format!("{name}_x_t0.5.npy"));
    let th = vec![0.5f32; xh.len() / field.dim()];
    let e = rel_err(&field.score(&xh, &th, opts).unwrap(), &f64s(&format!("{name}_score_t0.5.npy")));
    println!("{name}: score at t = 0.5, rel. error {e:.2e}");
    assert!(e <= bound, "{name}: score rel. error {e:.2e} at t = 0.5");
    field
}

#[test]
fn shipped_mlp_models_match_pytorch() {
    for name in ["moons", "circle16", "digits", "moons_relu", "sphere16"] {
        check_scores(name, &format!("{name}.safetensors"), 1e-5);
    }
}

#[test]
fn shipped_unet_matches_pytorch_with_its_derivatives() {
    let field = check_scores("digits_unet", "digits_unet.onnx", 1e-5);
    let d = field.dim();
    assert_eq!(d, 64);
    let opts = JobOptions::default();
    let (x, t, v) = (f32s("digits_unet_jac_x.npy"), f32s("digits_unet_jac_t.npy"), f32s("digits_unet_jac_v.npy"));
    let jvp = derivative::jvp(&field, &x, &t, &v, JvpMethod::Exact, false, opts).unwrap();
    let e = rel_err(&jvp, &f64s("digits_unet_jac_jvp.npy"));
    println!("digits_unet: J·v rel. error {e:.2e}");
    assert!(e <= 1e-5, "digits_unet: J·v rel. error {e:.2e}");
    // The first point's Jacobian, column by column (J·e_i), against torch.autograd's [D, D] (row o = ∂s_o/∂x).
    let mut basis = vec![0f32; d * d];
    (0..d).for_each(|i| basis[i * d + i] = 1.0);
    let cols = derivative::jvp(&field, &x[..d], &t[..1], &basis, JvpMethod::Exact, false, opts).unwrap();
    let jac = f64s("digits_unet_jacobian.npy");
    let want: Vec<f64> = (0..d).flat_map(|i| (0..d).map(move |o| (i, o))).map(|(i, o)| jac[o * d + i]).collect();
    let e = rel_err(&cols, &want);
    println!("digits_unet: Jacobian of point 0, rel. error {e:.2e}");
    assert!(e <= 1e-5, "digits_unet: Jacobian rel. error {e:.2e}");
}
