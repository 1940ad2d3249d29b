//! `scorelens kde` and `scorelens ridge`: correct runs against the fixture and the library, and every bad input
//! ending with one `error:` line that names the file, flag or shape, exit status 2, and no partial outputs.

mod common;

use std::path::{Path, PathBuf};

use common::cli::{expect_user_error, s, scorelens, sharded_and_two_devices, Scratch};
use common::{fixture, rel_err};
use scorelens::io::npy;

#[test]
fn kde_reproduces_the_fixture() {
    let scratch = Scratch::new();
    let out = scratch.path("out");
    let (code, _, stderr) = scorelens(&[
        "kde",
        "--data",
        s(&fixture("kde/data.npy")),
        "--bandwidth",
        "0.4",
        "--x",
        s(&fixture("kde/x.npy")),
        "--hessian",
        "--max-memory",
        "64KiB",
        "-o",
        s(&out),
    ]);
    assert_eq!(code, 0, "{stderr}");
    for name in ["log_density", "score", "hessian"] {
        let got = npy::read_f32(&out.join(format!("{name}.npy"))).unwrap();
        let want = npy::read_f64(&fixture(&format!("kde/{name}.npy"))).unwrap();
        assert_eq!(got.shape, want.shape, "{name}");
        let e = rel_err(&got.data, &want.data);
        assert!(e <= 1e-5, "{name}: {e:e}");
    }
}

#[test]
fn ridge_writes_every_output() {
    let scratch = Scratch::new();
    // Two data points: the ridge (d = 1) is the line through them; starts between them land on the segment.
    let data = scratch.npy("data.npy", &[2, 2], &[-1.0, 0.0, 1.0, 0.0]);
    let starts = scratch.npy("x0.npy", &[3, 2], &[0.0, 0.3, -0.5, -0.2, 0.7, 0.1]);
    let out = scratch.path("ridge");
    let (code, _, stderr) = scorelens(&[
        "ridge",
        "--data",
        s(&data),
        "--bandwidth",
        "0.6",
        "--x",
        s(&starts),
        "--dim",
        "1",
        "--plot",
        "-o",
        s(&out),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let points = npy::read_f32(&out.join("points.npy")).unwrap();
    assert_eq!(points.shape, vec![3, 2]);
    assert!(points.data.chunks(2).all(|p| p[1].abs() < 1e-4 && p[0].abs() <= 1.0), "{:?}", points.data);
    let eigenvalues = npy::read_f64(&out.join("eigenvalues.npy")).unwrap();
    assert_eq!(eigenvalues.shape, vec![3, 2]);
    assert!(eigenvalues.data.chunks(2).all(|e| e[0] >= e[1]));
    for name in ["converged.npy", "iterations.npy", "eigengap.npy", "normal_ratio.npy", "ridge.png"] {
        assert!(out.join(name).exists(), "{name} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["converged"], 3);
    assert_eq!(summary["fraction_below_beta"], 1.0);
    assert!(summary["adapter"].as_str().unwrap().len() > 3);
}

#[test]
fn bad_inputs_name_the_file_flag_or_shape() {
    let scratch = Scratch::new();
    let data = scratch.npy("data.npy", &[4, 3], &[0.5; 12]);
    let x = scratch.npy("x.npy", &[2, 3], &[0.1; 6]);
    let x_wrong_d = scratch.npy("x4.npy", &[2, 4], &[0.1; 8]);
    let flat = scratch.npy("flat.npy", &[12], &[0.5; 12]);
    let mut with_nan = vec![0.5f32; 12];
    with_nan[7] = f32::NAN;
    let nan = scratch.npy("nan.npy", &[4, 3], &with_nan);
    let empty = scratch.npy("empty.npy", &[0, 3], &[]);
    let text = scratch.path("text.npy");
    std::fs::write(&text, b"not an array").unwrap();
    let out = scratch.path("out");
    let missing = scratch.path("missing.npy");

    let kde = |data: &Path, bandwidth: &str, x: &Path, needles: &[&str]| {
        expect_user_error(&["kde", "--data", s(data), "--bandwidth", bandwidth, "--x", s(x), "-o", s(&out)], needles);
    };
    kde(&missing, "0.5", &x, &["missing.npy", "not found"]);
    kde(&data, "0.5", &missing, &["missing.npy", "not found"]);
    kde(&text, "0.5", &x, &["text.npy", "not a .npy"]);
    kde(&flat, "0.5", &x, &["flat.npy", "[12]", "[rows, D]"]);
    kde(&data, "0.5", &x_wrong_d, &["x4.npy", "D = 4", "data.npy", "D = 3"]);
    kde(&nan, "0.5", &x, &["nan.npy", "row 2", "not finite"]);
    kde(&data, "0.5", &nan, &["nan.npy", "row 2"]);
    kde(&empty, "0.5", &x, &["empty.npy", "no data points"]);
    kde(&data, "0", &x, &["--bandwidth", "positive"]);
    kde(&data, "-1", &x, &["--bandwidth"]);
    kde(&data, "nan", &x, &["--bandwidth"]);
    expect_user_error(
        &["kde", "--data", s(&data), "--bandwidth", "1", "--x", s(&x), "--max-memory", "lots", "-o", s(&out)],
        &["memory size", "lots"],
    );
    assert!(!out.join("score.npy").exists(), "a failed run left an output");

    let ridge = |extra: &[&str], needles: &[&str]| {
        let mut args = vec!["ridge", "--data", s(&data), "--bandwidth", "0.5", "--x", s(&x), "-o", s(&out)];
        args.extend_from_slice(extra);
        expect_user_error(&args, needles);
    };
    ridge(&["--dim", "3"], &["--dim 3", "D = 3"]);
    ridge(&["--dim", "0"], &["--dim 0"]);
    ridge(&["--dim", "1", "--tol", "0"], &["--tol"]);
    ridge(&["--dim", "1", "--beta", "nan"], &["--beta"]);
    ridge(&["--dim", "1", "--plot"], &["--plot", "D = 3"]);
    expect_user_error(
        &["ridge", "--data", s(&data), "--bandwidth", "0.5", "--x", s(&x_wrong_d), "--dim", "1", "-o", s(&out)],
        &["x4.npy", "D = 4"],
    );
    assert!(!out.join("points.npy").exists(), "a failed run left an output");
}

#[test]
fn ridge_error_splits_the_error_and_tables_a_trajectory() {
    let scratch = Scratch::new();
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mlp_silu/model.safetensors");
    let data: Vec<f32> = (0..40 * 16).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let data_path = scratch.npy("data.npy", &[40, 16], &data);
    let x: Vec<f32> = (0..5 * 16).map(|i| ((i * 13 % 29) as f32 / 14.0) - 1.0).collect();
    let x_path = scratch.npy("x.npy", &[5, 16], &x);
    let out = scratch.path("split");
    let (code, _, stderr) = scorelens(&[
        "ridge-error",
        s(&model),
        "--data",
        s(&data_path),
        "--x",
        s(&x_path),
        "--t",
        "0.3",
        "--dim",
        "1",
        "-o",
        s(&out),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let normal = npy::read_f64(&out.join("error_normal.npy")).unwrap();
    let tangent = npy::read_f64(&out.join("error_tangent.npy")).unwrap();
    assert_eq!(normal.shape, vec![5, 16]);
    // The two parts are orthogonal.
    for (n, t) in normal.data.chunks(16).zip(tangent.data.chunks(16)) {
        let dot: f64 = n.iter().zip(t).map(|(a, b)| a * b).sum();
        let scale = n.iter().map(|a| a * a).sum::<f64>().sqrt() * t.iter().map(|a| a * a).sum::<f64>().sqrt();
        assert!(dot.abs() <= 1e-4 * scale.max(1e-12), "not orthogonal: {dot} vs {scale}");
    }
    // A recorded trajectory: the phase table per level.
    let samples = scratch.path("samples");
    let (code, _, stderr) =
        scorelens(&["sample", s(&model), "--n", "4", "--steps", "20", "--record-sigmas", "1,0.3", "-o", s(&samples)]);
    assert_eq!(code, 0, "{stderr}");
    let phases = scratch.path("phases");
    let (code, _, stderr) = scorelens(&[
        "ridge-error",
        s(&model),
        "--data",
        s(&data_path),
        "--trajectory",
        s(&samples),
        "--dim",
        "1",
        "--plot",
        "-o",
        s(&phases),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(npy::read_f64(&phases.join("distance_to_ridge.npy")).unwrap().shape, vec![2, 4]);
    assert!(phases.join("phases.png").exists());
    expect_user_error(
        &[
            "ridge-error",
            s(&model),
            "--data",
            s(&x_path),
            "--x",
            s(&x_path),
            "--t",
            "0.3",
            "--dim",
            "16",
            "-o",
            s(&out),
        ],
        &["--dim 16"],
    );
    let wrong = scratch.npy("wrong.npy", &[3, 4], &[0.0; 12]);
    expect_user_error(
        &["ridge-error", s(&model), "--data", s(&wrong), "--x", s(&x_path), "--t", "0.3", "--dim", "1", "-o", s(&out)],
        &["wrong.npy", "[N, 16]"],
    );
}

#[test]
fn kde_ridge_and_ridge_error_give_the_whole_runs_arrays_in_shards_and_on_two_devices() {
    let scratch = Scratch::new();
    let (data, x) = (fixture("kde/data.npy"), fixture("kde/x.npy")); // [200, 5] and 16 rows: shards of 5, 5, 6
    let kde = ["kde", "--data", s(&data), "--bandwidth", "0.4", "--x", s(&x), "--hessian"];
    sharded_and_two_devices(&scratch, "kde", &kde, 3, &["log_density.npy", "score.npy", "hessian.npy"]);
    let ridge = ["ridge", "--data", s(&data), "--bandwidth", "0.4", "--x", s(&x), "--dim", "1", "--max-iter", "40"];
    let ridge_outputs =
        ["points.npy", "converged.npy", "iterations.npy", "eigenvalues.npy", "eigengap.npy", "normal_ratio.npy"];
    sharded_and_two_devices(&scratch, "ridge", &ridge, 3, &ridge_outputs);

    // ridge-error: points at two times (one KDE per distinct t in each block), and a recorded trajectory.
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mlp_silu/model.safetensors");
    let train: Vec<f32> = (0..40 * 16).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let train = scratch.npy("train.npy", &[40, 16], &train);
    let points: Vec<f32> = (0..5 * 16).map(|i| ((i * 13 % 29) as f32 / 14.0) - 1.0).collect();
    let points = scratch.npy("points.npy", &[5, 16], &points);
    let times = scratch.npy("times.npy", &[5], &[0.3, 0.5, 0.3, 0.5, 0.5]);
    let split = ["ridge-error", s(&model), "--data", s(&train), "--x", s(&points), "--t", s(&times), "--dim", "1"];
    let split_outputs = ["error_normal.npy", "error_tangent.npy", "error_normal_norm.npy", "error_tangent_norm.npy"];
    sharded_and_two_devices(&scratch, "split", &split, 2, &split_outputs);
    let samples = scratch.path("samples");
    let (code, _, stderr) =
        scorelens(&["sample", s(&model), "--n", "5", "--steps", "12", "--record-sigmas", "1,0.3", "-o", s(&samples)]);
    assert_eq!(code, 0, "{stderr}");
    let phases =
        ["ridge-error", s(&model), "--data", s(&train), "--trajectory", s(&samples), "--dim", "1", "--max-iter", "30"];
    let phase_outputs = ["distance_to_ridge.npy", "error_normal_norm.npy", "error_tangent_norm.npy", "t.npy"];
    sharded_and_two_devices(&scratch, "phases", &phases, 2, &phase_outputs);
    expect_user_error(&[&kde[..], &["--shard", "16/16", "-o", s(&scratch.path("o"))]].concat(), &["--shard", "I/N"]);
}

fn summary_of(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn ridge_and_ridge_error_take_either_eigensolver_and_record_the_route() {
    let scratch = Scratch::new();
    // A noisy circle in the first two of 16 coordinates (the tiled kernels), starts near it.
    let dim = 16;
    let data: Vec<f32> = (0..300 * dim)
        .map(|i| {
            let (row, k) = (i / dim, i % dim);
            let theta = row as f32 * 2.399;
            let wiggle = 0.02 * ((i * 37 % 101) as f32 / 50.0 - 1.0);
            wiggle
                + if k == 0 {
                    theta.cos()
                } else if k == 1 {
                    theta.sin()
                } else {
                    0.0
                }
        })
        .collect();
    let data = scratch.npy("circle.npy", &[300, dim], &data);
    let starts: Vec<f32> = (0..5 * dim)
        .map(|i| {
            let (row, k) = (i / dim, i % dim);
            let theta = row as f32 * 1.3 + 0.2;
            let radius = 0.9 + 0.05 * row as f32;
            0.01 * ((i * 13 % 29) as f32 / 14.0 - 1.0)
                + if k == 0 {
                    radius * theta.cos()
                } else if k == 1 {
                    radius * theta.sin()
                } else {
                    0.0
                }
        })
        .collect();
    let x = scratch.npy("starts.npy", &[5, dim], &starts);
    let run = |name: &str, extra: &[&str]| -> PathBuf {
        let out = scratch.path(name);
        let args = [
            &["ridge", "--data", s(&data), "--bandwidth", "0.15", "--x", s(&x), "--dim", "1"][..],
            extra,
            &["-o", s(&out)],
        ]
        .concat();
        let (code, _, stderr) = scorelens(&args);
        assert_eq!(code, 0, "{stderr}");
        out
    };
    let dense = run("dense", &["--eigensolver", "dense"]);
    let krylov = run("krylov", &["--eigensolver", "krylov"]);
    let auto = run("auto", &[]);
    for (dir, requested, chosen) in
        [(&dense, "dense", "dense"), (&krylov, "krylov", "krylov"), (&auto, "auto", "dense")]
    {
        let summary = summary_of(dir);
        assert_eq!(summary["eigensolver"]["requested"], requested);
        assert_eq!(summary["eigensolver"]["chosen"], chosen, "{}", summary["eigensolver"]);
        assert!(summary["eigensolver"]["reason"].as_str().unwrap().len() > 3);
        assert_eq!(summary["converged"], 5);
    }
    assert_eq!(summary_of(&krylov)["eigen"]["lanczos_unconverged"], 0);
    assert!(summary_of(&krylov)["eigen"]["hessian_vector_products"].as_u64().unwrap() > 0);
    // Krylov writes the d + 1 leading eigenvalues; they and the points agree with the dense run.
    let (de, ke) = (
        npy::read_f64(&dense.join("eigenvalues.npy")).unwrap(),
        npy::read_f64(&krylov.join("eigenvalues.npy")).unwrap(),
    );
    assert_eq!((de.shape.clone(), ke.shape.clone()), (vec![5, dim], vec![5, 2]));
    for b in 0..5 {
        for i in 0..2 {
            let (a, c) = (de.data[b * dim + i], ke.data[b * 2 + i]);
            assert!((a - c).abs() <= 1e-3 * a.abs().max(1.0), "point {b}: λ{} {a} vs {c}", i + 1);
        }
    }
    let (dp, kp) =
        (npy::read_f32(&dense.join("points.npy")).unwrap(), npy::read_f32(&krylov.join("points.npy")).unwrap());
    let worst = dp.data.iter().zip(&kp.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "points differ by {worst}");

    // ridge-error: both eigensolvers split the error the same way.
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mlp_silu/model.safetensors");
    let split = |name: &str, eigensolver: &str| -> PathBuf {
        let out = scratch.path(name);
        let (code, _, stderr) = scorelens(&[
            "ridge-error",
            s(&model),
            "--data",
            s(&data),
            "--x",
            s(&x),
            "--t",
            "0.05",
            "--dim",
            "1",
            "--eigensolver",
            eigensolver,
            "-o",
            s(&out),
        ]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(summary_of(&out)["eigensolver"]["chosen"], eigensolver);
        out
    };
    let (sd, sk) = (split("split_dense", "dense"), split("split_krylov", "krylov"));
    for name in ["error_normal.npy", "error_tangent.npy"] {
        let (a, b) = (npy::read_f64(&sd.join(name)).unwrap(), npy::read_f64(&sk.join(name)).unwrap());
        let num: f64 = a.data.iter().zip(&b.data).map(|(p, q)| (p - q).powi(2)).sum();
        let den: f64 = a.data.iter().map(|p| p * p).sum();
        assert!((num / den).sqrt() < 1e-4, "{name}: dense and krylov differ by {:e}", (num / den).sqrt());
    }
    expect_user_error(
        &[
            "ridge",
            "--data",
            s(&data),
            "--bandwidth",
            "0.15",
            "--x",
            s(&x),
            "--dim",
            "1",
            "--eigensolver",
            "qr",
            "-o",
            s(&scratch.path("bad")),
        ],
        &["--eigensolver", "qr"],
    );
}
