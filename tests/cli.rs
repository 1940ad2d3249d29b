//! The `scorelens` binary: a correct run, and every bad input ending with one clear message and exit status 2.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::cli::{expect_user_error, s, scorelens, scorelens_without, sharded_and_two_devices, Scratch};
use common::{fixture, random_mlp, rel_err};
use scorelens::io::npy;
use scorelens::model::file::serialize_f32;
use scorelens::model::NoiseSchedule;
use scorelens::Activation;

fn model_parts() -> (Vec<(String, Vec<usize>, Vec<f32>)>, HashMap<String, String>) {
    let m = random_mlp(5, 4, &[6, 5], 4, Activation::Gelu, NoiseSchedule::VeSong { sigma: 25.0 });
    let mut tensors = vec![("embed.W".to_string(), vec![2], m.embed_w.clone())];
    for (l, layer) in m.layers.iter().enumerate() {
        tensors.push((format!("layers.{l}.weight"), vec![layer.outputs, layer.inputs], layer.weight.clone()));
        tensors.push((format!("layers.{l}.bias"), vec![layer.outputs], layer.bias.clone()));
    }
    let metadata: HashMap<String, String> = [
        ("format", "scorelens"),
        ("arch", "mlp"),
        ("act", "gelu"),
        ("dim", "4"),
        ("embed_dim", "4"),
        ("schedule", "ve-song"),
        ("sigma", "25"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    (tensors, metadata)
}

fn model_bytes(tensors: &[(String, Vec<usize>, Vec<f32>)], metadata: HashMap<String, String>) -> Vec<u8> {
    serialize_f32(tensors.iter().map(|(n, s, d)| (n.clone(), s.clone(), d.as_slice())).collect(), metadata).unwrap()
}

#[test]
fn score_reproduces_the_pytorch_fixture() {
    let scratch = Scratch::new();
    let out = scratch.path("score.npy");
    let (code, _, stderr) = scorelens(&[
        "score",
        s(&fixture("mlp_relu/model.safetensors")),
        "--x",
        s(&fixture("mlp_relu/x.npy")),
        "--t",
        s(&fixture("mlp_relu/t.npy")),
        "-o",
        s(&out),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let got = npy::read_f32(&out).unwrap();
    let want = npy::read_f64(&fixture("mlp_relu/score.npy")).unwrap();
    assert_eq!(got.shape, want.shape);
    let err = rel_err(&got.data, &want.data);
    assert!(err <= 1e-5, "rel err {err:e}");
}

/// A successful run prints only its results: on a headless machine without XDG_RUNTIME_DIR the Vulkan stack's
/// window-system probe must stay quiet (see gpu::context), for `info` and for a command that computes.
#[test]
fn success_is_quiet_without_xdg_runtime_dir() {
    let scratch = Scratch::new();
    let out = scratch.path("score.npy");
    let (x, model) = (fixture("mlp_silu/x.npy"), fixture("mlp_silu/model.safetensors"));
    for args in [&["info"][..], &["score", s(&model), "--x", s(&x), "--t", "0.5", "-o", s(&out)]] {
        let (code, _, stderr) = scorelens_without(args, &["XDG_RUNTIME_DIR"]);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?} printed on stderr:\n{stderr}");
    }
    assert!(out.exists());
}

#[test]
fn scalar_t_and_small_memory_budget() {
    let scratch = Scratch::new();
    let x = npy::read_f32(&fixture("mlp_silu/x.npy")).unwrap();
    let model = scorelens::ScoreModel::load(&fixture("mlp_silu/model.safetensors")).unwrap();
    let scorelens::ScoreModel::Mlp(mlp) = &model else { panic!("not an mlp") };
    let out = scratch.path("s.npy");
    let (code, _, stderr) = scorelens(&[
        "score",
        s(&fixture("mlp_silu/model.safetensors")),
        "--x",
        s(&fixture("mlp_silu/x.npy")),
        "--t",
        "0.25",
        "-o",
        s(&out),
        "--max-memory",
        "64KiB",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let got = npy::read_f32(&out).unwrap();
    let want = scorelens::reference::mlp::mlp_score(mlp, &x.data, &[0.25]);
    assert!(rel_err(&got.data, &want) <= 1e-5);
}

#[test]
fn bad_model_files() {
    let scratch = Scratch::new();
    let x = scratch.npy("x.npy", &[3, 4], &[0.5; 12]);
    let score = |model: &Path| -> Vec<String> {
        vec![
            "score".into(),
            s(model).into(),
            "--x".into(),
            s(&x).into(),
            "--t".into(),
            "0.5".into(),
            "-o".into(),
            s(&scratch.path("o.npy")).into(),
        ]
    };
    let run = |model: &Path, needles: &[&str]| {
        let args = score(model);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        expect_user_error(&args, needles);
    };

    run(&scratch.path("missing.safetensors"), &["missing.safetensors", "not found"]);
    run(
        &scratch.write("text.safetensors", b"hello, this is not a model"),
        &["text.safetensors", "not a safetensors file"],
    );
    run(&scratch.write("tiny.safetensors", b"abc"), &["tiny.safetensors", "not a safetensors file"]);

    let (tensors, metadata) = model_parts();
    let good = model_bytes(&tensors, metadata.clone());
    run(&scratch.write("truncated.safetensors", &good[..good.len() - 40]), &["truncated.safetensors", "truncated"]);

    let with = |key: &str, value: Option<&str>| {
        let mut m = metadata.clone();
        match value {
            Some(v) => m.insert(key.into(), v.into()),
            None => m.remove(key),
        };
        model_bytes(&tensors, m)
    };
    run(&scratch.write("noarch.safetensors", &with("arch", None)), &["noarch.safetensors", "`arch`", "missing"]);
    run(&scratch.write("badarch.safetensors", &with("arch", Some("transformer"))), &["`arch`", "transformer"]);
    run(&scratch.write("nosched.safetensors", &with("schedule", None)), &["`schedule`", "missing"]);
    run(&scratch.write("badsched.safetensors", &with("schedule", Some("cosine"))), &["`schedule`", "cosine"]);
    run(&scratch.write("nosigma.safetensors", &with("sigma", None)), &["`sigma`", "missing"]);
    run(&scratch.write("badact.safetensors", &with("act", Some("softplus"))), &["`act`", "softplus"]);
    run(&scratch.write("baddim.safetensors", &with("dim", Some("7"))), &["layers.2.weight", "7"]);

    let without: Vec<_> = tensors.iter().filter(|t| t.0 != "layers.1.bias").cloned().collect();
    run(&scratch.write("nobias.safetensors", &model_bytes(&without, metadata.clone())), &["layers.1.bias", "missing"]);

    let mut reshaped = tensors.clone();
    for t in reshaped.iter_mut().filter(|t| t.0 == "layers.1.weight") {
        t.1 = vec![5, 5];
        t.2.truncate(25);
    }
    run(
        &scratch.write("shape.safetensors", &model_bytes(&reshaped, metadata.clone())),
        &["layers.1.weight", "shape [5, 5]", "[5, 6]"],
    );

    let mut nan = tensors.clone();
    nan[1].2[3] = f32::NAN;
    run(&scratch.write("nan.safetensors", &model_bytes(&nan, metadata.clone())), &["layers.0.weight", "NaN"]);
}

#[test]
fn bad_points_and_times() {
    let scratch = Scratch::new();
    let model = fixture("mlp_silu/model.safetensors"); // D = 16
    let m = s(&model);
    let out = scratch.path("o.npy");
    let o = s(&out);

    let wrong_row = scratch.npy("wrong_row.npy", &[3, 15], &[0.0; 45]);
    expect_user_error(
        &["score", m, "--x", s(&wrong_row), "--t", "0.5", "-o", o],
        &["wrong_row.npy", "(X)", "[16]", "15"],
    );
    let flat = scratch.npy("flat.npy", &[16], &[0.0; 16]);
    expect_user_error(&["score", m, "--x", s(&flat), "--t", "0.5", "-o", o], &["flat.npy", "[B, 16]"]);

    let mut data = vec![0.1f32; 5 * 16];
    data[3 * 16 + 7] = f32::NAN;
    let nan_x = scratch.npy("nan_x.npy", &[5, 16], &data);
    expect_user_error(&["score", m, "--x", s(&nan_x), "--t", "0.5", "-o", o], &["nan_x.npy", "row 3", "not finite"]);

    let x = scratch.npy("x.npy", &[5, 16], &[0.1; 80]);
    let xs = s(&x);
    let t_len = scratch.npy("t_len.npy", &[4], &[0.5; 4]);
    expect_user_error(&["score", m, "--x", xs, "--t", s(&t_len), "-o", o], &["t_len.npy", "(T)", "[5]", "[4]"]);
    let t_inf = scratch.npy("t_inf.npy", &[5], &[0.5, 0.5, f32::INFINITY, 0.5, 0.5]);
    expect_user_error(&["score", m, "--x", xs, "--t", s(&t_inf), "-o", o], &["t_inf.npy", "row 2", "inf"]);
    let t_zero = scratch.npy("t_zero.npy", &[5], &[0.5, 0.0, 0.5, 0.5, 0.5]);
    expect_user_error(&["score", m, "--x", xs, "--t", s(&t_zero), "-o", o], &["t_zero.npy", "row 1", "outside (0, 1]"]);
    expect_user_error(&["score", m, "--x", xs, "--t", "1.5", "-o", o], &["--t 1.5", "outside (0, 1]"]);
    expect_user_error(&["score", m, "--x", xs, "--t", "-0.2", "-o", o], &["outside (0, 1]"]);
    expect_user_error(&["score", m, "--x", xs, "--t", "nan", "-o", o], &["--t nan", "not finite"]);
    expect_user_error(
        &["score", m, "--x", s(&scratch.path("nope.npy")), "--t", "0.5", "-o", o],
        &["nope.npy", "not found"],
    );
    let junk = scratch.write("junk.npy", b"not an array");
    expect_user_error(&["score", m, "--x", s(&junk), "--t", "0.5", "-o", o], &["junk.npy", "not a .npy file"]);
    expect_user_error(
        &["score", m, "--x", xs, "--t", "0.5", "-o", o, "--max-memory", "lots"],
        &["memory size", "lots"],
    );
    expect_user_error(&["score", m, "--x", xs, "--t", "0.5", "-o", o, "--max-memory", "1KiB"], &["--max-memory"]);
    assert!(!out.exists(), "no output may be written when the job fails");
}

#[test]
fn unet_scores_from_the_cli_in_both_input_shapes() {
    let scratch = Scratch::new();
    let model = fixture("song_unet/model.safetensors");
    let x = npy::read_f32(&fixture("song_unet/x.npy")).unwrap();
    let want = npy::read_f64(&fixture("song_unet/score.npy")).unwrap();
    let flat = scratch.npy("flat.npy", &[x.shape[0], 784], &x.data);
    for (input, shape) in [(fixture("song_unet/x.npy"), x.shape.clone()), (flat, vec![x.shape[0], 784])] {
        let out = scratch.path("score.npy");
        let (code, _, stderr) =
            scorelens(&["score", s(&model), "--x", s(&input), "--t", s(&fixture("song_unet/t.npy")), "-o", s(&out)]);
        assert_eq!(code, 0, "{stderr}");
        let got = npy::read_f32(&out).unwrap();
        assert_eq!(got.shape, shape, "OUT has X's shape");
        assert!(rel_err(&got.data, &want.data) <= 1e-5);
    }
    let wrong = scratch.npy("wrong.npy", &[2, 1, 27, 28], &vec![0.0; 2 * 27 * 28]);
    expect_user_error(
        &["score", s(&model), "--x", s(&wrong), "--t", "0.5", "-o", s(&scratch.path("o.npy"))],
        &["wrong.npy", "[1, 28, 28]"],
    );
    let (code, stdout, _) = scorelens(&["info", s(&model)]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("song-unet") && stdout.contains("[32, 64, 128, 256]") && stdout.contains("1115425"),
        "{stdout}"
    );
}

#[test]
fn derivative_commands() {
    let scratch = Scratch::new();
    let model = fixture("mlp_silu/model.safetensors");
    let (m, x, t) = (s(&model), fixture("mlp_silu/x.npy"), fixture("mlp_silu/t.npy"));
    let want_j = npy::read_f64(&fixture("mlp_silu/jacobian.npy")).unwrap();
    for (method, tolerance) in [("forward", 1e-5), ("reverse", 1e-5), ("fd", 1e-3)] {
        for budget in ["1GiB", "48KiB"] {
            let out = scratch.path(&format!("j_{method}_{budget}.npy"));
            let (code, _, stderr) = scorelens(&[
                "jacobian",
                m,
                "--x",
                s(&x),
                "--t",
                s(&t),
                "--method",
                method,
                "--max-memory",
                budget,
                "-o",
                s(&out),
            ]);
            assert_eq!(code, 0, "{method}: {stderr}");
            let got = npy::read_f32(&out).unwrap();
            assert_eq!(got.shape, want_j.shape);
            assert!(
                rel_err(&got.data, &want_j.data) <= tolerance,
                "{method} {budget}: {:e}",
                rel_err(&got.data, &want_j.data)
            );
        }
    }
    // vjp with the identity's rows, [B, D, D], is the Jacobian itself; jvp with them is its transpose.
    let (b, d) = (8, 16);
    let identity: Vec<f32> = (0..b).flat_map(|_| (0..d * d).map(|k| if k / d == k % d { 1.0 } else { 0.0 })).collect();
    let e = scratch.npy("identity.npy", &[b, d, d], &identity);
    let out = scratch.path("vjp.npy");
    let (code, _, stderr) = scorelens(&["vjp", m, "--x", s(&x), "--t", s(&t), "--u", s(&e), "-o", s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(rel_err(&npy::read_f32(&out).unwrap().data, &want_j.data) <= 1e-5);
    let out = scratch.path("jvp.npy");
    let (code, _, stderr) = scorelens(&["jvp", m, "--x", s(&x), "--t", s(&t), "--v", s(&e), "-o", s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    let jv = npy::read_f32(&out).unwrap().data;
    let transposed: Vec<f64> =
        (0..b * d * d).map(|k| want_j.data[(k / (d * d)) * d * d + (k % d) * d + (k / d) % d]).collect();
    assert!(rel_err(&jv, &transposed) <= 1e-5);
    // Divergence: the trace, and Hutchinson's estimate reproducible by seed.
    let out = scratch.path("div.npy");
    let (code, _, stderr) = scorelens(&["divergence", m, "--x", s(&x), "--t", s(&t), "-o", s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    let div = npy::read_f32(&out).unwrap();
    assert_eq!(div.shape, vec![b]);
    let traces: Vec<f64> = (0..b).map(|p| (0..d).map(|i| want_j.data[p * d * d + i * d + i]).sum()).collect();
    assert!(rel_err(&div.data, &traces) <= 1e-5);
    let runs: Vec<Vec<f32>> = (0..2)
        .map(|k| {
            let out = scratch.path(&format!("hutch{k}.npy"));
            let (code, _, stderr) = scorelens(&[
                "divergence",
                m,
                "--x",
                s(&x),
                "--t",
                s(&t),
                "--probes",
                "64",
                "--seed",
                "7",
                "-o",
                s(&out),
            ]);
            assert_eq!(code, 0, "{stderr}");
            npy::read_f32(&out).unwrap().data
        })
        .collect();
    assert_eq!(runs[0], runs[1]);
    // Bad directions: wrong shape, NaN.
    let wrong = scratch.npy("wrong.npy", &[8, 15], &[0.0; 120]);
    expect_user_error(
        &["jvp", m, "--x", s(&x), "--t", s(&t), "--v", s(&wrong), "-o", s(&out)],
        &["wrong.npy", "(V)", "[8, 15]"],
    );
    let mut nan = vec![0.0f32; 8 * 16];
    nan[5 * 16 + 2] = f32::NAN;
    let nan = scratch.npy("nan.npy", &[8, 16], &nan);
    expect_user_error(
        &["vjp", m, "--x", s(&x), "--t", s(&t), "--u", s(&nan), "-o", s(&out)],
        &["nan.npy", "row 5", "not finite"],
    );
}

#[test]
fn unet_jvp_and_vjp_are_exact_from_the_cli() {
    let scratch = Scratch::new();
    let model = fixture("song_unet/model.safetensors");
    let (m, x, t, v) =
        (s(&model), fixture("song_unet/x.npy"), fixture("song_unet/t.npy"), fixture("song_unet/jvp_v.npy"));
    let want = npy::read_f64(&fixture("song_unet/jvp.npy")).unwrap();
    for method in [None, Some("exact"), Some("fd4")] {
        let out = scratch.path("jvp.npy");
        let mut args = vec!["jvp", m, "--x", s(&x), "--t", s(&t), "--v", s(&v), "-o", s(&out)];
        if let Some(method) = method {
            args.extend(["--method", method]);
        }
        let (code, _, stderr) = scorelens(&args);
        assert_eq!(code, 0, "{stderr}");
        let got = npy::read_f32(&out).unwrap();
        assert_eq!(got.shape, want.shape);
        let tolerance = if method == Some("fd4") { 1e-3 } else { 1e-5 };
        assert!(rel_err(&got.data, &want.data) <= tolerance, "{method:?}");
    }
    // ⟨v, J v⟩ from the fixture equals ⟨Jᵀ v, v⟩ from `vjp`, image by image.
    let out = scratch.path("vjp.npy");
    let (code, _, stderr) = scorelens(&["vjp", m, "--x", s(&x), "--t", s(&t), "--u", s(&v), "-o", s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    let jtv = npy::read_f32(&out).unwrap().data;
    let vs = npy::read_f32(&v).unwrap().data;
    for image in 0..vs.len() / 784 {
        let block = image * 784..(image + 1) * 784;
        let left: f64 = vs[block.clone()].iter().zip(&want.data[block.clone()]).map(|(&a, &b)| a as f64 * b).sum();
        let right: f64 = jtv[block.clone()].iter().zip(&vs[block.clone()]).map(|(&a, &b)| a as f64 * b as f64).sum();
        assert!((left - right).abs() <= 1e-4 * left.abs().max(1.0), "image {image}: {left} vs {right}");
    }
}

#[test]
fn spectrum_writes_every_output() {
    let scratch = Scratch::new();
    let model = fixture("mlp_silu/model.safetensors");
    let (m, x, t) = (s(&model), fixture("mlp_silu/x.npy"), fixture("mlp_silu/t.npy"));
    let dir = scratch.path("spectrum");
    let (code, _, stderr) =
        scorelens(&["spectrum", m, "--x", s(&x), "--t", s(&t), "--k", "5", "--vectors", "--plot", "-o", s(&dir)]);
    assert_eq!(code, 0, "{stderr}");
    for figure in ["spectrum.png", "alignment.png"] {
        let bytes = std::fs::read(dir.join(figure)).unwrap_or_else(|e| panic!("{figure}: {e}"));
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "{figure} is not a drawn PNG");
    }
    for (name, shape) in [
        ("singular_values.npy", vec![8, 5]),
        ("residuals.npy", vec![8, 5]),
        ("alignment.npy", vec![8, 5]),
        ("overlap.npy", vec![8, 5]),
        ("nonconservativeness.npy", vec![8]),
        ("left_vectors.npy", vec![8, 5, 16]),
        ("right_vectors.npy", vec![8, 5, 16]),
    ] {
        let a = npy::read_f64(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(a.shape, shape, "{name}");
    }
    let want = npy::read_f64(&fixture("mlp_silu/singular_values.npy")).unwrap();
    let got = npy::read_f64(&dir.join("singular_values.npy")).unwrap();
    for p in 0..8 {
        for i in 0..5 {
            assert!((got.data[p * 5 + i] / want.data[p * 16 + i] - 1.0).abs() <= 1e-4);
        }
    }
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["rows"].as_array().unwrap().len(), 8);
    assert_eq!(std::fs::read_to_string(dir.join("rows.jsonl")).unwrap().lines().count(), 8);
    expect_user_error(&["spectrum", m, "--x", s(&x), "--t", s(&t), "--k", "17", "-o", s(&dir)], &["--k 17", "D = 16"]);
    // The matrix-free methods give the same top values.
    for method in ["rsvd", "subspace"] {
        let lowrank = scratch.path(method);
        let (code, _, stderr) =
            scorelens(&["spectrum", m, "--x", s(&x), "--t", s(&t), "--k", "3", "--method", method, "-o", s(&lowrank)]);
        assert_eq!(code, 0, "{method}: {stderr}");
        let values = npy::read_f64(&lowrank.join("singular_values.npy")).unwrap();
        assert_eq!(values.shape, vec![8, 3]);
        for p in 0..8 {
            for i in 0..3 {
                assert!(
                    (values.data[p * 3 + i] / want.data[p * 16 + i] - 1.0).abs() <= 1e-4,
                    "{method} point {p} s{i}"
                );
            }
        }
    }
}

#[test]
fn descriptors_write_every_output() {
    let scratch = Scratch::new();
    let model = fixture("mlp_relu/model.safetensors");
    let (m, x, t) = (s(&model), fixture("mlp_relu/x.npy"), fixture("mlp_relu/t.npy"));
    let dir = scratch.path("descriptors");
    let args = [
        "descriptors",
        m,
        "--x",
        s(&x),
        "--t",
        s(&t),
        "--directions",
        "random",
        "--n-directions",
        "4",
        "--radius",
        "0.5",
        "-o",
        s(&dir),
    ];
    let (code, _, stderr) = scorelens(&args);
    assert_eq!(code, 0, "{stderr}");
    for name in ["local_scaling.npy", "local_rank.npy"] {
        let a = npy::read_f64(&dir.join(name)).unwrap();
        assert_eq!(a.shape, vec![8], "{name}");
        assert!(a.data.iter().all(|v| v.is_finite()));
    }
    assert!(dir.join("local_complexity.npy").exists() && dir.join("summary.json").exists());
    expect_user_error(&["descriptors", m, "--x", s(&x), "--t", s(&t), "--radius", "-1", "-o", s(&dir)], &["--radius"]);
    expect_user_error(
        &[
            "descriptors",
            m,
            "--x",
            s(&x),
            "--t",
            s(&t),
            "--directions",
            "random",
            "--n-directions",
            "11",
            "-o",
            s(&dir),
        ],
        &["--n-directions 11", "D = 10"],
    );
}

#[test]
fn descriptors_say_which_route_found_the_singular_values() {
    let scratch = Scratch::new();
    let model = fixture("mlp_silu/model.safetensors");
    let (m, x, t) = (s(&model), fixture("mlp_silu/x.npy"), fixture("mlp_silu/t.npy"));
    let summary = |dir: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
    };
    let mut scaling = Vec::new();
    for method in ["dense", "krylov", "auto"] {
        let dir = scratch.path(method);
        let args = [
            "descriptors",
            m,
            "--x",
            s(&x),
            "--t",
            s(&t),
            "--k",
            "3",
            "--map",
            "score",
            "--method",
            method,
            "-o",
            s(&dir),
        ];
        let (code, _, stderr) = scorelens(&args);
        assert_eq!(code, 0, "{method}: {stderr}");
        let summary = summary(&dir);
        assert_eq!(summary["method_requested"], method);
        let taken = summary["method"].as_str().unwrap().to_string();
        assert_eq!(taken, if method == "auto" { taken.as_str() } else { method });
        assert!(["dense", "krylov"].contains(&taken.as_str()), "{summary}");
        let reason = summary["method_reason"].as_str().unwrap();
        assert!(if method == "auto" {
            reason.contains("dense") && reason.contains("krylov")
        } else {
            !reason.is_empty()
        });
        let rows = summary["rows"].as_array().unwrap();
        assert!(rows.iter().all(|r| r["converged"] == true && r["products"].as_u64().unwrap() > 0), "{summary}");
        let total: u64 = rows.iter().map(|r| r["products"].as_u64().unwrap()).sum();
        assert_eq!(summary["products"].as_u64(), Some(total));
        scaling.push(npy::read_f64(&dir.join("local_scaling.npy")).unwrap().data);
    }
    for (dense, krylov) in scaling[0].iter().zip(&scaling[1]) {
        assert!((dense - krylov).abs() <= 1e-4 * dense.abs().max(1.0), "ψ dense {dense} vs krylov {krylov}");
    }
    let dir = scratch.path("bad");
    expect_user_error(
        &["descriptors", m, "--x", s(&x), "--t", s(&t), "--method", "qr", "-o", s(&dir)],
        &["--method", "\"qr\"", "auto, dense or krylov"],
    );
    let (_, _, stderr) = scorelens(&["descriptors", m, "--x", s(&x), "--t", s(&t), "--method", "qr", "-o", s(&dir)]);
    assert_eq!(stderr.lines().filter(|l| !l.trim().is_empty()).count(), 1, "one line: {stderr}");
}

#[test]
fn shards_merge_into_the_unsharded_result() {
    let scratch = Scratch::new();
    let model = fixture("mlp_silu/model.safetensors");
    let (m, x, t) = (s(&model), fixture("mlp_silu/x.npy"), fixture("mlp_silu/t.npy"));
    let run = |args: &[&str]| {
        let (code, _, stderr) = scorelens(args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
    };
    // Files: score and jacobian over 8 rows in 3 shards (sizes 2, 3, 3).
    for command in ["score", "jacobian"] {
        let whole = scratch.path(&format!("{command}_whole.npy"));
        run(&[command, m, "--x", s(&x), "--t", s(&t), "-o", s(&whole)]);
        let parts: Vec<PathBuf> = (0..3).map(|i| scratch.path(&format!("{command}_{i}.npy"))).collect();
        for (i, part) in parts.iter().enumerate() {
            run(&[command, m, "--x", s(&x), "--t", s(&t), "--shard", &format!("{i}/3"), "-o", s(part)]);
        }
        let merged = scratch.path(&format!("{command}_merged.npy"));
        let mut args = vec!["merge", "-o", s(&merged)];
        args.extend(parts.iter().map(|p| s(p)));
        run(&args);
        let (a, b) = (npy::read_f32(&whole).unwrap(), npy::read_f32(&merged).unwrap());
        assert_eq!(a.shape, b.shape, "{command}");
        assert_eq!(a.data, b.data, "{command}: sharded runs give the same arrays");
    }
    // Folders: spectrum in 2 shards.
    let whole = scratch.path("spectrum_whole");
    run(&["spectrum", m, "--x", s(&x), "--t", s(&t), "--k", "4", "-o", s(&whole)]);
    let parts: Vec<PathBuf> = (0..2).map(|i| scratch.path(&format!("spectrum_{i}"))).collect();
    for (i, part) in parts.iter().enumerate() {
        run(&["spectrum", m, "--x", s(&x), "--t", s(&t), "--k", "4", "--shard", &format!("{i}/2"), "-o", s(part)]);
    }
    let merged = scratch.path("spectrum_merged");
    run(&["merge", "-o", s(&merged), s(&parts[0]), s(&parts[1])]);
    for name in ["singular_values.npy", "alignment.npy", "overlap.npy", "nonconservativeness.npy"] {
        let (a, b) = (npy::read_f64(&whole.join(name)).unwrap(), npy::read_f64(&merged.join(name)).unwrap());
        assert_eq!(a.shape, b.shape, "{name}");
        assert_eq!(a.data, b.data, "{name}");
    }
    assert_eq!(std::fs::read_to_string(merged.join("rows.jsonl")).unwrap().lines().count(), 8);
    expect_user_error(
        &["score", m, "--x", s(&x), "--t", s(&t), "--shard", "3/3", "-o", s(&scratch.path("o.npy"))],
        &["--shard", "I/N"],
    );
}

#[test]
fn sample_and_lyapunov_from_the_cli() {
    let scratch = Scratch::new();
    let model = fixture("mlp_silu/model.safetensors");
    let out = scratch.path("samples");
    let (code, _, stderr) = scorelens(&[
        "sample",
        s(&model),
        "--n",
        "6",
        "--steps",
        "30",
        "--sampler",
        "em",
        "--seed",
        "3",
        "--record-sigmas",
        "5,0.5",
        "-o",
        s(&out),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let samples = npy::read_f32(&out.join("samples.npy")).unwrap();
    assert_eq!(samples.shape, vec![6, 16]);
    let recorded = npy::read_f32(&out.join("recorded.npy")).unwrap();
    assert_eq!(recorded.shape, vec![2, 6, 16]);
    let times = npy::read_f64(&out.join("recorded_t.npy")).unwrap();
    let schedule = NoiseSchedule::VeSong { sigma: 25.0 };
    assert!(schedule.std(times.data[0]) <= 5.0 && schedule.std(times.data[1]) <= 0.5, "{:?}", times.data);
    // The same seed gives the same samples.
    let again = scratch.path("again");
    let args = ["sample", s(&model), "--n", "6", "--steps", "30", "--seed", "3", "--record-sigmas", "5,0.5", "-o"];
    assert_eq!(scorelens(&[&args[..], &[s(&again)]].concat()).0, 0);
    assert_eq!(npy::read_f32(&again.join("samples.npy")).unwrap().data, samples.data);

    // The first paper's experiment: spectra at every recorded level.
    let spectra = scratch.path("spectra");
    let (code, _, stderr) =
        scorelens(&["spectrum", s(&model), "--from-samples", s(&out), "--k", "4", "-o", s(&spectra)]);
    assert_eq!(code, 0, "{stderr}");
    for sigma in ["sigma_5", "sigma_0.5"] {
        let values = npy::read_f64(&spectra.join(sigma).join("singular_values.npy")).unwrap();
        assert_eq!(values.shape, vec![6, 4], "{sigma}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(spectra.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["levels"].as_array().unwrap().len(), 2);
    expect_user_error(
        &["spectrum", s(&model), "--from-samples", s(&scratch.path("nowhere")), "-o", s(&spectra)],
        &["nowhere"],
    );

    let lyap = scratch.path("lyapunov");
    let x_init = out.join("samples.npy");
    let (code, _, stderr) = scorelens(&[
        "lyapunov",
        s(&model),
        "--x-init",
        s(&x_init),
        "--steps",
        "20",
        "--sampler",
        "ode-heun",
        "--k",
        "3",
        "--clv",
        "--plot",
        "-o",
        s(&lyap),
    ]);
    assert_eq!(code, 0, "{stderr}");
    for name in [
        "log_growth.npy",
        "exponents.npy",
        "vectors.npy",
        "clv.npy",
        "alignment.npy",
        "history.npy",
        "summary.json",
        "exponents.png",
        "alignment.png",
    ] {
        assert!(lyap.join(name).exists(), "{name} missing");
    }
    assert_eq!(npy::read_f64(&lyap.join("exponents.npy")).unwrap().shape, vec![6, 3]);
    assert_eq!(npy::read_f32(&lyap.join("clv.npy")).unwrap().shape, vec![6, 3, 16]);

    // Flow mode with the example Lorenz field.
    let lorenz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/fields/lorenz63.wgsl");
    let x0 = scratch.npy("x0.npy", &[2, 3], &[1.0, 2.0, 20.0, -3.0, 1.0, 25.0]);
    let flow = scratch.path("flow");
    let (code, _, stderr) = scorelens(&[
        "lyapunov",
        "--field",
        s(&lorenz),
        "--dim",
        "3",
        "--flow",
        "--x0",
        s(&x0),
        "--dt",
        "0.01",
        "--steps",
        "500",
        "--transient",
        "100",
        "-o",
        s(&flow),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let log_growth = npy::read_f64(&flow.join("log_growth.npy")).unwrap();
    assert_eq!(log_growth.shape, vec![2, 3]);

    // Bad input: exit 2, one line naming the fault.
    expect_user_error(&["sample", s(&model), "--sampler", "euler", "-o", s(&out)], &["--sampler", "euler"]);
    expect_user_error(&["sample", s(&model), "--record-sigmas", "0.0001", "-o", s(&out)], &["--record-sigmas"]);
    expect_user_error(&["sample", s(&model), "--steps", "1", "-o", s(&out)], &["--steps"]);
    expect_user_error(&["lyapunov", s(&model), "--steps", "5", "-o", s(&lyap)], &["--x-init"]);
    expect_user_error(&["lyapunov", s(&model), "--x-init", s(&x_init), "--k", "17", "-o", s(&lyap)], &["--k 17"]);
    expect_user_error(&["lyapunov", s(&model), "--x-init", s(&x_init), "--sampler", "pc", "-o", s(&lyap)], &["pc"]);
    expect_user_error(&["lyapunov", s(&model), "--x-init", s(&x0), "-o", s(&lyap)], &["x0.npy"]);
    let broken = scratch.write("broken.wgsl", b"fn field(x: State, t: f32) -> State {\n  return x +;\n}\n");
    expect_user_error(
        &["score", "--field", s(&broken), "--dim", "3", "--x", s(&x0), "--t", "0.5", "-o", s(&scratch.path("o.npy"))],
        &["broken.wgsl", "line 2"],
    );
    expect_user_error(&["lyapunov", "--field", s(&lorenz), "--dim", "3", "--flow", "-o", s(&flow)], &["--x0"]);
}

#[test]
fn several_devices_give_the_arrays_of_one() {
    // Two independent devices on the one adapter CI has (lavapipe): rows split in two blocks, run in parallel.
    let scratch = Scratch::new();
    // Commands that time or report one adapter say so rather than ignore the flag.
    expect_user_error(&["bench", "--quick", "--devices", "0,0"], &["--devices 0,0", "bench", "SCORELENS_ADAPTER"]);
    expect_user_error(
        &["demo", "--quick", "--devices", "all", "-o", s(&scratch.path("demo"))],
        &["demo", "one adapter"],
    );
    let model = fixture("mlp_silu/model.safetensors");
    let rows = 37;
    let x: Vec<f32> = (0..rows * 16).map(|i| ((i * 29 % 83) as f32 / 41.0) - 1.0).collect();
    let x_path = scratch.npy("x.npy", &[rows, 16], &x);
    let v_path = scratch.npy("v.npy", &[rows, 16], &x.iter().map(|v| v * 0.5 + 0.1).collect::<Vec<_>>());
    for (command, extra) in [
        ("score", vec![]),
        ("jvp", vec!["--v", s(&v_path)]),
        ("vjp", vec!["--u", s(&v_path)]),
        ("jacobian", vec![]),
        ("divergence", vec![]),
    ] {
        let one = scratch.path(&format!("{command}_one.npy"));
        let two = scratch.path(&format!("{command}_two.npy"));
        let base = [command, s(&model), "--x", s(&x_path), "--t", "0.4"];
        let (code, _, stderr) = scorelens(&[&base[..], &extra[..], &["-o", s(&one)]].concat());
        assert_eq!(code, 0, "{command}: {stderr}");
        let (code, _, stderr) = scorelens(&[&base[..], &extra[..], &["--devices", "0,0", "-o", s(&two)]].concat());
        assert_eq!(code, 0, "{command} --devices 0,0: {stderr}");
        let (a, b) = (npy::read_f32(&one).unwrap(), npy::read_f32(&two).unwrap());
        assert_eq!(a.shape, b.shape, "{command}");
        assert_eq!(a.data, b.data, "{command}: two devices differ from one");
    }
    expect_user_error(
        &["score", s(&model), "--x", s(&x_path), "--t", "0.4", "--devices", "7", "-o", s(&scratch.path("o.npy"))],
        &["--devices", "adapter 7"],
    );
}

#[test]
fn the_demo_runs_on_the_shipped_models_and_writes_its_report() {
    let scratch = Scratch::new();
    let out = scratch.path("demo");
    let (code, stdout, stderr) = scorelens(&["demo", "--quick", "-o", s(&out)]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for name in [
        "report.md",
        "report.html",
        "summary.json",
        "moons/intervention_tangent_share.png",
        "sphere16/intervention_tangent_share.png",
        "circle16/ridge_align.png",
        "moons/ridge_controlled.png",
        "moons/samples.png",
        "moons/ridge.png",
        "circle16/samples.png",
        "moons/samples.npy",
        "digits_unet/samples.png",
        "digits_unet/samples.npy",
        "digits_unet/local_dimension_threshold.npy",
        "moons_relu/psi_map.png",
        "moons_relu/psi_generator.npy",
    ] {
        assert!(out.join(name).exists(), "{name} missing");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for section in ["Findings", "Jacobian spectra", "Local scaling", "Lyapunov", "ridges"] {
        assert!(report.contains(section), "report lacks {section}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary["engine_rel_err_vs_pytorch"].as_f64().unwrap() < 1e-5);

    // The findings: every row has its claim and a verdict; a decided row has its deciding number and rule; every
    // figure a row names exists and report.html links it; the first two papers' rows are there, on their models.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let findings = summary["findings"].as_array().expect("summary.json lists the findings");
    for row in findings {
        let text = |key: &str| row[key].as_str().unwrap_or_default().to_string();
        assert!(!text("claim").is_empty() && !text("measured").is_empty(), "{row}");
        let verdict = text("verdict");
        assert!(["holds", "does not hold", "reported"].contains(&verdict.as_str()), "{row}");
        assert_eq!(row["holds"].is_null(), verdict == "reported", "{row}");
        if !text("paper").is_empty() && verdict != "reported" {
            assert!(!text("deciding").is_empty() && !text("rule").is_empty(), "{row}");
        }
        if let Some(figure) = row["figure"].as_str() {
            assert!(out.join(figure).exists(), "figure {figure} of {row} missing");
            assert!(html.contains(&format!("href=\"{figure}\"")), "report.html does not link {figure}");
        }
    }
    let rows_of = |paper: &str, model: &str| {
        findings.iter().filter(|r| r["paper"] == paper && r["model"] == model).collect::<Vec<_>>()
    };
    let p1 = rows_of("arXiv 2311.09952", "digits_unet");
    assert_eq!(p1.len(), 4, "the four claims of arXiv 2311.09952 on the U-Net");
    assert!(p1.iter().all(|r| !r["holds"].is_null() && r["figure"].is_string()), "{p1:?}");
    let p2 = rows_of("arXiv 2408.08307", "moons_relu");
    assert_eq!(p2.len(), 3, "δ/ψ/ν, on/off manifold and the density relation on the ReLU model");
    assert!(p2.iter().filter(|r| !r["holds"].is_null()).count() >= 2, "{p2:?}");
    // The table comes first: before the first section.
    let (table, section) = (html.find("<h2>Findings</h2>").unwrap(), html.find("<h2>Setup</h2>").unwrap());
    assert!(table < section, "the findings table is not first");
    // The last two papers' rows: per model, each with its deciding number, rule, verdict and an existing figure.
    for (paper, models, per_model) in [
        ("arXiv 2508.07581", &["moons", "circle16", "sphere16"][..], 2),
        ("arXiv 2602.06021", &["moons", "circle16", "sphere16"][..], 5),
    ] {
        for model in models {
            let rows: Vec<_> = findings
                .iter()
                .filter(|f| f["paper"] == paper && f["model"].as_str().unwrap().starts_with(model))
                .collect();
            assert_eq!(rows.len(), per_model, "{paper} on {model}: {rows:?}");
            for f in rows {
                assert!(f["holds"].is_boolean(), "{f}");
                for key in ["claim", "measured", "deciding", "rule"] {
                    assert!(!f[key].as_str().unwrap().is_empty(), "{key} empty in {f}");
                }
                assert!(out.join(f["figure"].as_str().unwrap()).exists(), "{f}");
            }
        }
    }
}

#[test]
fn samplers_and_lyapunov_give_the_whole_runs_arrays_in_shards_and_on_two_devices() {
    // 7 rows in 3 shards (2, 2, 3): every row's x_T and noise are drawn from (seed, its row in the whole run).
    let scratch = Scratch::new();
    let model = fixture("mlp_silu/model.safetensors");
    let m = s(&model);
    let sample = ["sample", m, "--n", "7", "--steps", "12", "--seed", "3", "--record-sigmas", "5,0.5"];
    let outputs = ["samples.npy", "recorded.npy", "recorded_t.npy"];
    let em = sharded_and_two_devices(&scratch, "em", &[&sample[..], &["--sampler", "em"]].concat(), 3, &outputs);
    sharded_and_two_devices(&scratch, "pc", &[&sample[..], &["--sampler", "pc"]].concat(), 3, &outputs);
    // From given points (--x-init): the shard's rows of them, with the ODE.
    let x_init = em.join("samples.npy");
    let ode = ["sample", m, "--x-init", s(&x_init), "--steps", "8", "--sampler", "ode-heun"];
    sharded_and_two_devices(&scratch, "heun", &ode, 2, &["samples.npy"]);

    // The spectra of the recorded levels (--from-samples): sigma_*/ subfolders joined too, rows.jsonl numbered in
    // the whole run.
    let spectra = ["spectrum", m, "--from-samples", s(&em), "--k", "3"];
    let per_level = ["singular_values.npy", "alignment.npy", "local_dimension_threshold.npy", "rows.jsonl"];
    let names: Vec<String> =
        ["sigma_5", "sigma_0.5"].iter().flat_map(|l| per_level.iter().map(move |f| format!("{l}/{f}"))).collect();
    sharded_and_two_devices(&scratch, "levels", &spectra, 2, &names.iter().map(|n| n.as_str()).collect::<Vec<_>>());

    // Lyapunov along EM (noise and random tangents drawn per trajectory), with covariant vectors.
    let lyapunov = ["lyapunov", m, "--x-init", s(&x_init), "--steps", "10", "--sampler", "em", "--k", "3", "--clv"];
    let lyapunov_outputs = [
        "log_growth.npy",
        "exponents.npy",
        "vectors.npy",
        "final_x.npy",
        "alignment.npy",
        "history.npy",
        "history_time.npy",
        "clv.npy",
        "clv_x.npy",
        "clv_alignment.npy",
    ];
    sharded_and_two_devices(&scratch, "lyapunov", &lyapunov, 3, &lyapunov_outputs);

    // Bad specs and flags that do not apply: exit 2, naming them.
    let out_path = scratch.path("o");
    let out = s(&out_path);
    expect_user_error(&["sample", m, "--n", "4", "--shard", "4/4", "-o", out], &["--shard", "I/N"]);
    expect_user_error(&["sample", m, "--n", "4", "--shard", "1of2", "-o", out], &["--shard", "I/N"]);
    expect_user_error(&["sample", m, "--n", "2", "--shard", "0/3", "-o", out], &["--shard 0/3", "none of the 2 rows"]);
    expect_user_error(&["lyapunov", m, "--x-init", s(&x_init), "--shard", "0/0", "-o", out], &["--shard"]);
    // The matrix-free spectra and Hutchinson's divergence draw per row and stop per row: shards and devices too.
    let (x, t) = (fixture("mlp_silu/x.npy"), fixture("mlp_silu/t.npy"));
    let rsvd = ["spectrum", m, "--x", s(&x), "--t", s(&t), "--method", "rsvd", "--k", "2", "--vectors"];
    let rsvd_outputs = ["singular_values.npy", "residuals.npy", "nonconservativeness.npy", "right_vectors.npy"];
    sharded_and_two_devices(&scratch, "rsvd", &rsvd, 2, &rsvd_outputs);
    let divergence = ["divergence", m, "--x", s(&x), "--t", s(&t), "--probes", "4", "--seed", "9"];
    let file = |name: &str| scratch.path(name);
    let run_to = |extra: &[&str], out: &Path| {
        let (code, _, stderr) = scorelens(&[&divergence[..], extra, &["-o", s(out)]].concat());
        assert_eq!(code, 0, "divergence {extra:?}: {stderr}");
        std::fs::read(out).unwrap()
    };
    let whole = run_to(&[], &file("div_whole.npy"));
    assert_eq!(run_to(&["--devices", "0,0"], &file("div_two.npy")), whole, "divergence --probes on two devices");
    run_to(&["--shard", "0/2"], &file("div_0.npy"));
    run_to(&["--shard", "1/2"], &file("div_1.npy"));
    let merged = file("div_merged.npy");
    let (code, _, stderr) = scorelens(&["merge", "-o", s(&merged), s(&file("div_0.npy")), s(&file("div_1.npy"))]);
    assert_eq!(code, 0, "merge: {stderr}");
    assert_eq!(std::fs::read(&merged).unwrap(), whole, "divergence --probes in two shards");
    // merge checks the shards' order and origin.
    expect_user_error(
        &["merge", "-o", out, s(&scratch.path("em_1")), s(&scratch.path("em_0")), s(&scratch.path("em_2"))],
        &["shard 1/3", "in order"],
    );
    expect_user_error(
        &["merge", "-o", out, s(&scratch.path("em_0")), s(&scratch.path("pc_1")), s(&scratch.path("em_2"))],
        &["pc_1", "another run", "--sampler pc"],
    );
}

/// `scorelens info MODEL | head`: printing into a pipe whose reader has gone must end the command quietly (the
/// default SIGPIPE action, as `cat` does), not with a Rust panic about a broken pipe.
#[cfg(unix)]
#[test]
fn info_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let (reader, writer) = std::io::pipe().expect("a pipe");
    // The reader is closed before the command starts, so its first line already meets a broken pipe.
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_scorelens"))
        .args(["info", s(&fixture("mlp_silu/model.safetensors"))])
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("run scorelens");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(sigpipe_number()), "status {:?}, stderr {stderr}", out.status);
}

/// SIGPIPE's number on every Unix this runs on (POSIX leaves it open; Linux, macOS and the BSDs use 13).
#[cfg(unix)]
fn sigpipe_number() -> i32 {
    13
}
