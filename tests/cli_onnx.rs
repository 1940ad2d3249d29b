//! The CLI with ONNX networks: a run through every derivative command, metadata overridden by flags, and each
//! bad input (tests/fixtures/onnx_bad, made by tools/fixtures/make_onnx_bad.py) ending with one clear line and
//! exit status 2.

mod common;

use common::cli::{expect_user_error, s, scorelens, Scratch};
use common::{fixture, rel_err};
use scorelens::io::npy;

fn bad(name: &str) -> String {
    fixture(&format!("onnx_bad/{name}.onnx")).to_str().unwrap().to_string()
}

#[test]
fn derivative_commands_run_on_an_onnx_network() {
    let dir = fixture("onnx21/dit_v");
    let scratch = Scratch::new();
    let (model, x, t) = (dir.join("model.onnx"), dir.join("x.npy"), dir.join("t.npy"));
    let out = scratch.path("score.npy");
    let (code, _, stderr) = scorelens(&["score", s(&model), "--x", s(&x), "--t", s(&t), "-o", s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    let want = npy::read_f64(&dir.join("score.npy")).unwrap().data;
    let e = rel_err(&npy::read_f32(&out).unwrap().data, &want);
    assert!(e < 2e-5, "score {e:.2e}");
    let out = scratch.path("jvp.npy");
    let (code, _, stderr) =
        scorelens(&["jvp", s(&model), "--x", s(&x), "--t", s(&t), "--v", s(&dir.join("v.npy")), "-o", s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    let e = rel_err(&npy::read_f32(&out).unwrap().data, &npy::read_f64(&dir.join("jvp.npy")).unwrap().data);
    assert!(e < 2e-5, "jvp {e:.2e}");
    let out = scratch.path("vjp.npy");
    let (code, _, stderr) =
        scorelens(&["vjp", s(&model), "--x", s(&x), "--t", s(&t), "--u", s(&dir.join("u.npy")), "-o", s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    let e = rel_err(&npy::read_f32(&out).unwrap().data, &npy::read_f64(&dir.join("vjp.npy")).unwrap().data);
    assert!(e < 2e-5, "vjp {e:.2e}");
    let out = scratch.path("jac.npy");
    let (code, _, stderr) =
        scorelens(&["jacobian", s(&model), "--x", s(&x), "--t", s(&t), "--method", "reverse", "-o", s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    let jac = npy::read_f32(&out).unwrap();
    assert_eq!(jac.shape, vec![4, 64, 64]);
    let want: Vec<f64> =
        npy::read_f32(&dir.join("jacobian_row0.npy")).unwrap().data.iter().map(|&v| v as f64).collect();
    let e = rel_err(&jac.data[..64 * 64], &want);
    assert!(e < 1e-4, "jacobian {e:.2e}");
    let (code, stdout, stderr) = scorelens(&["info", s(&model)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("parameterization") && stdout.contains("v"), "{stdout}");
}

#[test]
fn flags_override_the_metadata() {
    let scratch = Scratch::new();
    let x = scratch.npy("x.npy", &[3, 4], &[0.5, -1.0, 2.0, 0.25, 1.0, 1.5, -0.5, 0.0, 0.3, 0.2, 0.1, -2.0]);
    let score = |extra: &[&str], model: &str| -> Vec<f32> {
        let out = scratch.path("o.npy");
        let mut args = vec!["score", model, "--x", s(&x), "--t", "0.5", "-o", s(&out)];
        args.extend_from_slice(extra);
        let (code, _, stderr) = scorelens(&args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        npy::read_f32(&out).unwrap().data
    };
    // The file says score; as epsilon under the same ve schedule, s = −out / std(t).
    let raw = score(&[], &bad("ok"));
    let eps = score(&["--parameterization", "epsilon"], &bad("ok"));
    let std = 0.01f64 * (10.0f64 / 0.01).powf(0.5);
    let want: Vec<f64> = raw.iter().map(|&v| -(v as f64) / std).collect();
    assert!(rel_err(&eps, &want) < 1e-6);
    // A missing parameterization given on the command line.
    let given = score(&["--parameterization", "score"], &bad("no_parameterization"));
    assert!(rel_err(&given, &raw.iter().map(|&v| v as f64).collect::<Vec<_>>()) < 1e-7);
}

#[test]
fn bad_onnx_inputs_exit_2_with_one_clear_line() {
    let scratch = Scratch::new();
    let x = scratch.npy("x.npy", &[2, 4], &[0.0; 8]);
    let x5 = scratch.npy("x5.npy", &[2, 5], &[0.0; 10]);
    let run = |model: &str, x: &std::path::Path, extra: &[&str], needles: &[&str]| {
        let out = scratch.path("o.npy");
        let mut args = vec!["score", model, "--x", s(x), "--t", "0.5", "-o", s(&out)];
        args.extend_from_slice(extra);
        expect_user_error(&args, needles);
        assert!(!out.exists(), "{model}: an output was written");
    };
    run(&bad("truncated"), &x, &[], &["truncated.onnx", "truncated"]);
    run(&bad("not_onnx"), &x, &[], &["not_onnx.onnx", "not a readable ONNX model"]);
    run(&bad("unsupported_op"), &x, &[], &["head_hardmax", "Hardmax", "not supported"]);
    run(&bad("random_op"), &x, &[], &["noise_draw", "RandomNormalLike", "random"]);
    run(&bad("no_parameterization"), &x, &[], &["scorelens.parameterization", "--parameterization"]);
    run(&bad("no_schedule"), &x, &[], &["scorelens.schedule", "--schedule"]);
    run(&bad("wrong_output"), &x, &[], &["wrong_output.onnx", "output", "[3]", "[4]"]);
    run(&bad("bad_conv_pads"), &x, &[], &["bad_pads_conv", "Conv attributes do not fit a 2-D input", "[1, 1, 1, 1]"]);
    run(&bad("ok"), &x5, &[], &["x5.npy", "[4]"]);
    run(&bad("ok"), &x, &["--parameterization", "noise"], &["scorelens.parameterization", "\"noise\""]);
    run(&bad("ok"), &x, &["--schedule", "vp"], &["scorelens.beta_min", "missing"]);
}

/// The analyses take an ONNX network as they take a safetensors one: spectrum (singular values checked against the
/// fixture's float64 Jacobian: their squares sum to ‖J‖²_F, the largest is its 2-norm), descriptors, sample, lyapunov.
#[test]
fn analyses_run_on_an_onnx_network() {
    let dir = fixture("torch_onnx/residual_mlp");
    let scratch = Scratch::new();
    let (model, x, t) = (dir.join("model.onnx"), dir.join("x.npy"), dir.join("t.npy"));
    let out = scratch.path("spectrum");
    let (code, _, stderr) = scorelens(&["spectrum", s(&model), "--x", s(&x), "--t", s(&t), "-o", s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    let values = npy::read_f64(&out.join("singular_values.npy")).unwrap();
    let d = 10;
    assert_eq!(values.shape, vec![3, d]);
    let jac = npy::read_f64(&dir.join("jacobian_row0.npy")).unwrap().data;
    let frobenius: f64 = jac.iter().map(|v| v * v).sum();
    let squares: f64 = values.data[..d].iter().map(|v| v * v).sum();
    assert!((squares / frobenius - 1.0).abs() < 1e-4, "Σ s² {squares} vs ‖J‖² {frobenius}");
    // Power iteration on JᵀJ for the largest singular value.
    let mut v = vec![1.0; d];
    let mut top = 0.0;
    for _ in 0..500 {
        let jv: Vec<f64> = (0..d).map(|i| (0..d).map(|k| jac[i * d + k] * v[k]).sum()).collect();
        let jtjv: Vec<f64> = (0..d).map(|k| (0..d).map(|i| jac[i * d + k] * jv[i]).sum()).collect();
        let norm = jtjv.iter().map(|x| x * x).sum::<f64>().sqrt();
        top = norm.sqrt();
        v = jtjv.iter().map(|x| x / norm).collect();
    }
    assert!((values.data[0] / top - 1.0).abs() < 1e-4, "s₁ {} vs {top}", values.data[0]);
    for args in [
        vec!["descriptors", s(&model), "--x", s(&x), "--t", "0.5", "-o"],
        vec!["sample", s(&model), "--n", "6", "--steps", "10", "--sampler", "ode-heun", "-o"],
        vec!["lyapunov", s(&model), "--x-init", s(&x), "--steps", "5", "--sampler", "ode-euler", "--k", "3", "-o"],
    ] {
        let out = scratch.path(args[0]);
        let mut args = args.clone();
        args.push(s(&out));
        let (code, _, stderr) = scorelens(&args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(out.join("summary.json").exists(), "{args:?}: no summary.json");
    }
}
