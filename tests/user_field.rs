//! User WGSL fields: evaluation, exact JVPs from `field_jvp`, finite differences without it, and error messages
//! that point into the user's file.

mod common;

use common::{gpu, normal_vec, rel_err, rng};
use scorelens::derivative::{jacobian, jvp, JacobianMethod, JvpMethod};
use scorelens::field::UserField;
use scorelens::scheduler::JobOptions;
use scorelens::{NoiseSchedule, ScoreField};

const SCHEDULE: NoiseSchedule = NoiseSchedule::VeSong { sigma: 25.0 };

/// s_i = −x_i / (1 + t) + c_i tanh(x_{i+1}), c_i = 0.3 (i ≡ 0 mod 3) or −0.15: coupled and nonlinear.
const COUPLED: &str = r#"
fn coupling(i: u32) -> f32 {
    if i % 3u == 0u { return 0.3; }
    return -0.15;
}

fn field(x: State, t: f32) -> State {
    var s: State;
    for (var i = 0u; i < DIM; i++) {
        s[i] = -x[i] / (1.0 + t) + coupling(i) * tanh(x[(i + 1u) % DIM]);
    }
    return s;
}
"#;

const COUPLED_JVP: &str = r#"
fn field_jvp(x: State, v: State, t: f32) -> State {
    var out: State;
    for (var i = 0u; i < DIM; i++) {
        let j = (i + 1u) % DIM;
        let th = tanh(x[j]);
        out[i] = -v[i] / (1.0 + t) + coupling(i) * (1.0 - th * th) * v[j];
    }
    return out;
}
"#;

fn coupling(i: usize) -> f64 {
    if i % 3 == 0 {
        0.3
    } else {
        -0.15
    }
}

fn reference_score(x: &[f32], t: &[f32], d: usize) -> Vec<f64> {
    let rows = x.len() / d;
    let mut out = vec![0.0; x.len()];
    for r in 0..rows {
        let tr = if t.len() == 1 { t[0] } else { t[r] } as f64;
        for i in 0..d {
            let j = (i + 1) % d;
            out[r * d + i] = -(x[r * d + i] as f64) / (1.0 + tr) + coupling(i) * (x[r * d + j] as f64).tanh();
        }
    }
    out
}

fn reference_jvp(x: &[f32], t: &[f32], v: &[f32], d: usize, per_point: usize) -> Vec<f64> {
    let rows = x.len() / d;
    let mut out = vec![0.0; v.len()];
    for r in 0..rows {
        let tr = if t.len() == 1 { t[0] } else { t[r] } as f64;
        for p in 0..per_point {
            let base = (r * per_point + p) * d;
            for i in 0..d {
                let j = (i + 1) % d;
                let th = (x[r * d + j] as f64).tanh();
                out[base + i] = -(v[base + i] as f64) / (1.0 + tr) + coupling(i) * (1.0 - th * th) * v[base + j] as f64;
            }
        }
    }
    out
}

fn field(code: &str, d: usize) -> ScoreField {
    ScoreField::User(UserField::from_source(gpu(), "coupled.wgsl", code, d, SCHEDULE).unwrap())
}

#[test]
fn user_field_matches_the_f64_reference() {
    for (d, rows, seed) in [(1, 5, 1), (3, 130, 2), (37, 1001, 3)] {
        let f = field(COUPLED, d);
        let x = normal_vec(&mut rng(seed), rows * d, 1.5);
        let t: Vec<f32> = (0..rows).map(|r| 0.05 + 0.9 * r as f32 / rows as f32).collect();
        let got = f.score(&x, &t, JobOptions::default()).unwrap();
        let err = rel_err(&got, &reference_score(&x, &t, d));
        assert!(err < 1e-6, "D {d} rows {rows}: rel err {err:e}");
        // Split by a tiny budget: the same values.
        let options = JobOptions { memory_budget: 4096, ..JobOptions::default() };
        let chunked = f.score(&x, &t[..1], options).unwrap();
        let err = rel_err(&chunked, &reference_score(&x, &t[..1], d));
        assert!(err < 1e-6, "chunked D {d}: rel err {err:e}");
    }
}

#[test]
fn field_jvp_gives_exact_products_and_jacobians() {
    let code = format!("{COUPLED}{COUPLED_JVP}");
    for (d, rows, per_point) in [(2, 3, 1), (13, 70, 5), (37, 9, 37)] {
        let f = field(&code, d);
        assert!(scorelens::derivative::has_exact_jvp(&f));
        let x = normal_vec(&mut rng(d as u64), rows * d, 1.0);
        let v = normal_vec(&mut rng(d as u64 + 100), rows * per_point * d, 1.0);
        let t = vec![0.3f32];
        let got = jvp(&f, &x, &t, &v, JvpMethod::Exact, false, JobOptions::default()).unwrap();
        let err = rel_err(&got, &reference_jvp(&x, &t, &v, d, per_point));
        assert!(err < 1e-6, "D {d} P {per_point}: rel err {err:e}");
        // Forward-mode Jacobian: row i = ∂s_i/∂x, against J·e_j.
        let mut jac = Vec::new();
        jacobian(&f, &x, &t, JacobianMethod::Forward, JobOptions::default(), |_, j| {
            jac.extend_from_slice(j);
            Ok(())
        })
        .unwrap();
        let identity: Vec<f32> =
            (0..rows).flat_map(|_| (0..d).flat_map(move |j| (0..d).map(move |i| (i == j) as u8 as f32))).collect();
        let columns = reference_jvp(&x, &t, &identity, d, d);
        let mut want = vec![0.0; rows * d * d];
        for r in 0..rows {
            for j in 0..d {
                for i in 0..d {
                    want[r * d * d + i * d + j] = columns[(r * d + j) * d + i];
                }
            }
        }
        let err = rel_err(&jac, &want);
        assert!(err < 1e-6, "Jacobian D {d}: rel err {err:e}");
    }
}

#[test]
fn without_field_jvp_products_fall_back_to_finite_differences() {
    let d = 11;
    let f = field(COUPLED, d);
    assert!(!scorelens::derivative::has_exact_jvp(&f));
    let x = normal_vec(&mut rng(7), 20 * d, 1.0);
    let v = normal_vec(&mut rng(8), 20 * d, 1.0);
    let t = vec![0.5f32];
    let got = jvp(&f, &x, &t, &v, JvpMethod::Fd4, false, JobOptions::default()).unwrap();
    let err = rel_err(&got, &reference_jvp(&x, &t, &v, d, 1));
    assert!(err < 1e-4, "FD rel err {err:e}");
    let exact = jvp(&f, &x, &t, &v, JvpMethod::Exact, false, JobOptions::default());
    let message = exact.err().expect("no field_jvp: exact mode must fail").to_string();
    assert!(message.contains("field_jvp"), "{message}");
}

fn compile_error(code: &str) -> String {
    match UserField::from_source(gpu(), "my_field.wgsl", code, 3, SCHEDULE) {
        Ok(_) => panic!("bad code compiled:\n{code}"),
        Err(e) => {
            assert!(e.is_user_error(), "{e}");
            e.to_string()
        }
    }
}

#[test]
fn errors_name_the_file_and_the_line() {
    let syntax =
        "fn field(x: State, t: f32) -> State {\n    var s: State;\n    s[0] = x[0] +* 2.0;\n    return s;\n}\n";
    let message = compile_error(syntax);
    assert!(message.starts_with("my_field.wgsl: line 3"), "{message}");

    let undefined = "fn field(x: State, t: f32) -> State {\n    return nope(x);\n}\n";
    let message = compile_error(undefined);
    assert!(message.contains("my_field.wgsl: line 2"), "{message}");

    let missing = "fn not_a_field(x: State) -> State { return x; }\n";
    assert!(compile_error(missing).contains("defines no `fn field(x: State, t: f32) -> State`"));

    let wrong = "fn field(x: State) -> State { return x; }\n";
    assert!(compile_error(wrong).contains("must be declared as `fn field(x: State, t: f32) -> State`"));

    let wrong_jvp =
        "fn field(x: State, t: f32) -> State { return x; }\nfn field_jvp(x: State, t: f32) -> State { return x; }\n";
    assert!(compile_error(wrong_jvp).contains("field_jvp"));

    let reserved = "fn field(x: State, t: f32) -> State { return x; }\nfn scorelens_x(a: f32) -> f32 { return a; }\n";
    assert!(compile_error(reserved).contains("reserved"));
}
