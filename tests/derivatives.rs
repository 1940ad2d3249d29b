//! Derivative operators: exact forward and reverse mode, finite differences, Jacobians and divergences, against
//! the PyTorch fixtures, the f64 reference and each other.

mod common;

use common::{fixture, gpu, normal_vec, random_mlp, random_times, rel_err, rng};
use scorelens::derivative::{self, DivergenceMethod, JacobianMethod, JvpMethod};
use scorelens::io::npy;
use scorelens::model::NoiseSchedule;
use scorelens::reference::mlp::mlp_jacobian;
use scorelens::scheduler::JobOptions;
use scorelens::{Activation, ScoreField, ScoreModel};

fn field_of(model: &ScoreModel) -> ScoreField {
    ScoreField::new(gpu(), model).unwrap()
}

fn jacobian(field: &ScoreField, x: &[f32], t: &[f32], method: JacobianMethod, options: JobOptions) -> Vec<f32> {
    let d = field.dim();
    let mut out = vec![0f32; x.len() * d];
    derivative::jacobian(field, x, t, method, options, |points, values| {
        out[points.start * d * d..points.end * d * d].copy_from_slice(values);
        Ok(())
    })
    .unwrap();
    out
}

fn load_fixture(name: &str) -> (ScoreModel, Vec<f32>, Vec<f32>) {
    let model = ScoreModel::load(&fixture(&format!("{name}/model.safetensors"))).unwrap();
    let x = npy::read_f32(&fixture(&format!("{name}/x.npy"))).unwrap().data;
    let t = npy::read_f32(&fixture(&format!("{name}/t.npy"))).unwrap().data;
    (model, x, t)
}

#[test]
fn mlp_fixture_jacobians_every_method() {
    for name in ["mlp_silu", "mlp_relu"] {
        let (model, x, t) = load_fixture(name);
        let want = npy::read_f64(&fixture(&format!("{name}/jacobian.npy"))).unwrap();
        let field = field_of(&model);
        for (method, tolerance) in
            [(JacobianMethod::Forward, 1e-5), (JacobianMethod::Reverse, 1e-5), (JacobianMethod::Fd, 1e-3)]
        {
            let got = jacobian(&field, &x, &t, method, JobOptions::default());
            let err = rel_err(&got, &want.data);
            eprintln!("{name} {method:?}: rel err {err:.2e}");
            assert!(err <= tolerance, "{name} {method:?}: rel err {err:e}");
        }
    }
}

#[test]
fn forward_and_reverse_agree_with_the_f64_reference_on_random_mlps() {
    let mut seed = 500;
    for act in Activation::ALL {
        for (dim, hidden, points) in
            [(1, vec![3], 2), (7, vec![65, 33], 9), (40, vec![], 3), (19, vec![130, 17, 64], 5)]
        {
            seed += 1;
            let mlp = random_mlp(seed, dim, &hidden, 6, act, NoiseSchedule::Vp { beta_min: 0.1, beta_max: 20.0 });
            let field = field_of(&ScoreModel::Mlp(mlp.clone()));
            let x = normal_vec(&mut rng(seed), points * dim, 1.0);
            let t = random_times(seed + 1, points);
            let want = mlp_jacobian(&mlp, &x, &t);
            let forward = jacobian(&field, &x, &t, JacobianMethod::Forward, JobOptions::default());
            let reverse = jacobian(&field, &x, &t, JacobianMethod::Reverse, JobOptions::default());
            assert!(
                rel_err(&forward, &want) <= 1e-5,
                "{act} D {dim} {hidden:?}: forward {:e}",
                rel_err(&forward, &want)
            );
            assert!(
                rel_err(&reverse, &want) <= 1e-5,
                "{act} D {dim} {hidden:?}: reverse {:e}",
                rel_err(&reverse, &want)
            );
        }
    }
}

/// ⟨u, J v⟩ = ⟨Jᵀ u, v⟩ for every (point, direction) block of D values, to `tolerance` of ‖u‖‖Jv‖.
fn assert_adjoint_identity(field: &ScoreField, x: &[f32], t: &[f32], v: &[f32], u: &[f32], tolerance: f64) -> Vec<f32> {
    let d = field.dim();
    let jv = derivative::jvp(field, x, t, v, JvpMethod::Exact, false, JobOptions::default()).unwrap();
    let jtu = derivative::vjp(field, x, t, u, JobOptions::default()).unwrap();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(&p, &q)| p as f64 * q as f64).sum::<f64>();
    for k in 0..v.len() / d {
        let block = k * d..(k + 1) * d;
        let (left, right) = (dot(&u[block.clone()], &jv[block.clone()]), dot(&jtu[block.clone()], &v[block.clone()]));
        let scale =
            dot(&u[block.clone()], &u[block.clone()]).sqrt() * dot(&jv[block.clone()], &jv[block.clone()]).sqrt();
        assert!(
            (left - right).abs() <= tolerance * scale.max(1e-30),
            "direction {k}: <u, Jv> {left} vs <Jᵀu, v> {right}"
        );
    }
    jv
}

#[test]
fn adjoint_identity_and_many_directions_per_point() {
    let mlp = random_mlp(600, 23, &[70, 41], 8, Activation::Gelu, NoiseSchedule::VeSong { sigma: 25.0 });
    let field = field_of(&ScoreModel::Mlp(mlp.clone()));
    let (points, per_point, d) = (11, 5, 23);
    let x = normal_vec(&mut rng(601), points * d, 1.0);
    let t = random_times(602, points);
    let v = normal_vec(&mut rng(603), points * per_point * d, 1.0);
    let u = normal_vec(&mut rng(604), points * per_point * d, 1.0);
    let jv = assert_adjoint_identity(&field, &x, &t, &v, &u, 1e-5);
    // Each direction's product equals the reference Jacobian times it.
    let j = mlp_jacobian(&mlp, &x, &t);
    let mut want = vec![0f64; v.len()];
    for p in 0..points {
        for k in 0..per_point {
            for i in 0..d {
                want[(p * per_point + k) * d + i] =
                    (0..d).map(|c| j[p * d * d + i * d + c] * v[(p * per_point + k) * d + c] as f64).sum();
            }
        }
    }
    assert!(rel_err(&jv, &want) <= 1e-5);
}

#[test]
fn finite_differences_agree_with_exact_to_the_documented_error() {
    let mlp = random_mlp(700, 12, &[64, 64], 8, Activation::Silu, NoiseSchedule::VeSong { sigma: 25.0 });
    let field = field_of(&ScoreModel::Mlp(mlp));
    let points = 16;
    let x = normal_vec(&mut rng(701), points * 12, 1.0);
    let t = random_times(702, points);
    let v = normal_vec(&mut rng(703), points * 12, 1.0);
    let exact = derivative::jvp(&field, &x, &t, &v, JvpMethod::Exact, false, JobOptions::default()).unwrap();
    let exact64: Vec<f64> = exact.iter().map(|&a| a as f64).collect();
    for (method, richardson, tolerance) in [
        (JvpMethod::Fd, false, 1e-3),
        (JvpMethod::Fd4, false, 3e-4),
        (JvpMethod::Fd, true, 3e-4),
        (JvpMethod::Fd4, true, 3e-4),
    ] {
        let fd = derivative::jvp(&field, &x, &t, &v, method, richardson, JobOptions::default()).unwrap();
        let err = rel_err(&fd, &exact64);
        eprintln!("{method:?} richardson {richardson}: rel err vs exact {err:.2e}");
        assert!(err <= tolerance, "{method:?} richardson {richardson}: {err:e}");
    }
}

#[test]
fn finite_differences_on_random_relu_networks() {
    for seed in [710u64, 711, 712] {
        let mlp = random_mlp(seed, 15, &[80, 80, 80], 8, Activation::Relu, NoiseSchedule::VeSong { sigma: 25.0 });
        let field = field_of(&ScoreModel::Mlp(mlp.clone()));
        let points = 12;
        let x = normal_vec(&mut rng(seed + 1), points * 15, 1.0);
        let t = random_times(seed + 2, points);
        let want = mlp_jacobian(&mlp, &x, &t);
        let got = jacobian(&field, &x, &t, JacobianMethod::Fd, JobOptions::default());
        let err = rel_err(&got, &want);
        eprintln!("relu seed {seed}: FD Jacobian rel err {err:.2e}");
        assert!(err <= 1e-3, "seed {seed}: {err:e}");
    }
}

#[test]
fn unet_fixture_jvp_by_finite_differences() {
    let (model, x, t) = load_fixture("song_unet");
    let v = npy::read_f32(&fixture("song_unet/jvp_v.npy")).unwrap().data;
    let want = npy::read_f64(&fixture("song_unet/jvp.npy")).unwrap();
    let field = field_of(&model);
    for method in [JvpMethod::Fd, JvpMethod::Fd4] {
        let got = derivative::jvp(&field, &x, &t, &v, method, false, JobOptions::default()).unwrap();
        let err = rel_err(&got, &want.data);
        eprintln!("song_unet jvp {method:?}: rel err {err:.2e}");
        assert!(err <= 1e-3, "{method:?}: {err:e}");
    }
}

#[test]
fn divergence_exact_is_the_trace_and_hutchinson_is_seeded() {
    let mlp = random_mlp(800, 9, &[50], 4, Activation::Tanh, NoiseSchedule::VeSong { sigma: 25.0 });
    let field = field_of(&ScoreModel::Mlp(mlp.clone()));
    let points = 6;
    let x = normal_vec(&mut rng(801), points * 9, 1.0);
    let t = random_times(802, points);
    let j = mlp_jacobian(&mlp, &x, &t);
    let trace: Vec<f64> = (0..points).map(|p| (0..9).map(|i| j[p * 81 + i * 9 + i]).sum()).collect();
    let exact = derivative::divergence(&field, &x, &t, DivergenceMethod::Exact, JobOptions::default()).unwrap();
    for p in 0..points {
        assert!(
            (exact[p] - trace[p]).abs() <= 1e-5 * trace[p].abs().max(1.0),
            "point {p}: {} vs {}",
            exact[p],
            trace[p]
        );
    }
    let hutchinson = |seed| {
        derivative::divergence(
            &field,
            &x,
            &t,
            DivergenceMethod::Hutchinson { probes: 4000, seed },
            JobOptions::default(),
        )
        .unwrap()
    };
    let (a, b) = (hutchinson(1), hutchinson(1));
    assert_eq!(a, b, "the same seed gives the same estimate");
    let frob: Vec<f64> = (0..points).map(|p| (0..81).map(|k| j[p * 81 + k].powi(2)).sum::<f64>().sqrt()).collect();
    for p in 0..points {
        // Standard error ≤ sqrt(2/probes)·‖J‖_F; allow five of them.
        assert!(
            (a[p] - trace[p]).abs() <= 5.0 * (2.0f64 / 4000.0).sqrt() * frob[p],
            "point {p}: {} vs {}",
            a[p],
            trace[p]
        );
    }
}

#[test]
fn jacobians_larger_than_the_budget_are_split_and_agree() {
    let mlp = random_mlp(900, 48, &[96, 96], 8, Activation::Gelu, NoiseSchedule::VeSong { sigma: 25.0 });
    let field = field_of(&ScoreModel::Mlp(mlp));
    let points = 40;
    let x = normal_vec(&mut rng(901), points * 48, 1.0);
    let t = random_times(902, points);
    for method in [JacobianMethod::Forward, JacobianMethod::Reverse] {
        let whole = jacobian(&field, &x, &t, method, JobOptions::default());
        // 160 KiB: the weights fit, a single point's 48 tangents do not: points and tangents are both split.
        let split = jacobian(&field, &x, &t, method, JobOptions { memory_budget: 160 << 10, ..JobOptions::default() });
        let whole64: Vec<f64> = whole.iter().map(|&v| v as f64).collect();
        assert!(rel_err(&split, &whole64) <= 1e-6, "{method:?}");
    }
}

#[test]
fn unet_exact_jvp_matches_the_pytorch_fixture() {
    let (model, x, t) = load_fixture("song_unet");
    let v = npy::read_f32(&fixture("song_unet/jvp_v.npy")).unwrap().data;
    let want = npy::read_f64(&fixture("song_unet/jvp.npy")).unwrap();
    let field = field_of(&model);
    let got = derivative::jvp(&field, &x, &t, &v, JvpMethod::Exact, false, JobOptions::default()).unwrap();
    for (i, (g, w)) in got.chunks(784).zip(want.data.chunks(784)).enumerate() {
        let err = rel_err(g, w);
        eprintln!("song_unet exact jvp image {i}: rel err {err:.2e}");
        assert!(err <= 1e-5, "image {i}: {err:e}");
    }
}

/// The first point's Jacobian, as the fixture holds it; a 256 MiB budget splits its 784 tangents.
fn check_unet_fixture_jacobian(method: JacobianMethod) {
    let (model, x, t) = load_fixture("song_unet");
    let want = npy::read_f32(&fixture("song_unet/jacobian.npy")).unwrap();
    let field = field_of(&model);
    let options = JobOptions { memory_budget: 256 << 20, ..JobOptions::default() };
    let got = jacobian(&field, &x[..784], &t[..1], method, options);
    let want64: Vec<f64> = want.data.iter().map(|&v| v as f64).collect();
    let err = rel_err(&got, &want64);
    eprintln!("song_unet {method:?} Jacobian: rel err {err:.2e}");
    assert!(err <= 1e-4, "{method:?}: {err:e}");
}

#[test]
fn unet_forward_mode_jacobian_matches_the_pytorch_fixture() {
    check_unet_fixture_jacobian(JacobianMethod::Forward);
}

#[test]
fn random_unet_exact_jvp_agrees_with_finite_differences_for_many_directions() {
    let model = scorelens::model::UnetModel::random(31, [32, 32, 64, 64], 64, NoiseSchedule::VeSong { sigma: 25.0 });
    let field = field_of(&ScoreModel::Unet(model));
    let (points, per_point) = (3, 4);
    let x = normal_vec(&mut rng(32), points * 784, 1.0);
    let t = random_times(33, points);
    let v = normal_vec(&mut rng(34), points * per_point * 784, 1.0);
    let exact = derivative::jvp(&field, &x, &t, &v, JvpMethod::Exact, false, JobOptions::default()).unwrap();
    let fd = derivative::jvp(&field, &x, &t, &v, JvpMethod::Fd4, false, JobOptions::default()).unwrap();
    let exact64: Vec<f64> = exact.iter().map(|&a| a as f64).collect();
    let err = rel_err(&fd, &exact64);
    eprintln!("random U-Net: fd4 vs exact jvp rel err {err:.2e}");
    assert!(err <= 1e-3, "{err:e}");
    // Split over a small budget: the same numbers.
    let split = derivative::jvp(
        &field,
        &x,
        &t,
        &v,
        JvpMethod::Exact,
        false,
        JobOptions { memory_budget: 24 << 20, ..JobOptions::default() },
    )
    .unwrap();
    assert!(rel_err(&split, &exact64) <= 1e-6);
}

#[test]
fn unet_reverse_mode_jacobian_matches_the_pytorch_fixture() {
    check_unet_fixture_jacobian(JacobianMethod::Reverse);
}

#[test]
fn random_unet_adjoint_identity() {
    let model = scorelens::model::UnetModel::random(41, [32, 32, 64, 64], 64, NoiseSchedule::VeSong { sigma: 25.0 });
    let field = field_of(&ScoreModel::Unet(model));
    let (points, per_point, d) = (3, 3, 784);
    let x = normal_vec(&mut rng(42), points * d, 1.0);
    let t = random_times(43, points);
    let v = normal_vec(&mut rng(44), points * per_point * d, 1.0);
    let u = normal_vec(&mut rng(45), points * per_point * d, 1.0);
    assert_adjoint_identity(&field, &x, &t, &v, &u, 1e-5);
}
