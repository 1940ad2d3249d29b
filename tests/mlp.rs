//! The MLP score field on the GPU against the f64 reference and the PyTorch float64 fixtures.

mod common;

use common::{fixture, gpu, normal_vec, random_mlp, random_times, rel_err, rng};
use scorelens::io::npy;
use scorelens::model::NoiseSchedule;
use scorelens::reference::mlp::mlp_score;
use scorelens::scheduler::JobOptions;
use scorelens::{Activation, ScoreField, ScoreModel};

const VE_SONG: NoiseSchedule = NoiseSchedule::VeSong { sigma: 25.0 };
const VE: NoiseSchedule = NoiseSchedule::Ve { sigma_min: 0.01, sigma_max: 50.0 };
const VP: NoiseSchedule = NoiseSchedule::Vp { beta_min: 0.1, beta_max: 20.0 };

/// Writes the model to safetensors and loads it back, so the file path is exercised too.
fn roundtrip(model: &scorelens::model::MlpModel) -> ScoreModel {
    let bytes = model.to_safetensors().unwrap();
    ScoreModel::from_bytes(std::path::Path::new("random.safetensors"), &bytes).unwrap()
}

fn check_random(
    seed: u64,
    dim: usize,
    hidden: &[usize],
    embed: usize,
    act: Activation,
    schedule: NoiseSchedule,
    rows: usize,
    shared_t: bool,
) {
    let model = random_mlp(seed, dim, hidden, embed, act, schedule);
    let loaded = roundtrip(&model);
    let field = ScoreField::new(gpu(), &loaded).unwrap();
    let x = normal_vec(&mut rng(seed + 1), rows * dim, 1.0);
    let t = if shared_t { vec![0.37] } else { random_times(seed + 2, rows) };
    let got = field.score(&x, &t, JobOptions::default()).unwrap();
    let want = mlp_score(&model, &x, &t);
    let err = rel_err(&got, &want);
    assert!(err <= 1e-5, "D {dim} hidden {hidden:?} E {embed} {act} {} rows {rows}: rel err {err:e}", schedule.name());
}

#[test]
fn tiny_shapes() {
    check_random(1, 1, &[1], 2, Activation::Relu, VE_SONG, 1, true);
    check_random(2, 2, &[], 4, Activation::Silu, VE_SONG, 3, false);
    check_random(3, 5, &[3, 1, 7], 6, Activation::Tanh, VE, 17, false);
}

#[test]
fn every_activation_and_schedule() {
    let mut seed = 10;
    for act in Activation::ALL {
        for schedule in [VE_SONG, VE, VP] {
            seed += 10;
            check_random(seed, 17, &[65, 63, 129], 8, act, schedule, 257, false);
        }
    }
}

#[test]
fn wide_hidden_layers_and_large_batches() {
    check_random(200, 3, &[600], 16, Activation::Gelu, VE_SONG, 5000, false);
    check_random(201, 300, &[257, 600], 32, Activation::Silu, VP, 1000, true);
    check_random(202, 64, &[512, 512, 512], 64, Activation::Tanh, VE, 1001, false);
    check_random(203, 131, &[1, 599], 10, Activation::Relu, VE_SONG, 4999, false);
}

fn check_fixture(name: &str) {
    let model = ScoreModel::load(&fixture(&format!("{name}/model.safetensors"))).unwrap();
    let x = npy::read_f32(&fixture(&format!("{name}/x.npy"))).unwrap();
    let t = npy::read_f32(&fixture(&format!("{name}/t.npy"))).unwrap();
    let want = npy::read_f64(&fixture(&format!("{name}/score.npy"))).unwrap();
    assert_eq!(want.shape, x.shape);
    let field = ScoreField::new(gpu(), &model).unwrap();
    let got = field.score(&x.data, &t.data, JobOptions::default()).unwrap();
    let err = rel_err(&got, &want.data);
    assert!(err <= 1e-5, "{name}: rel err {err:e}");
    let d = x.shape[1];
    for (i, (g, w)) in got.chunks(d).zip(want.data.chunks(d)).enumerate() {
        let e = rel_err(g, w);
        assert!(e <= 1e-5, "{name} row {i}: rel err {e:e}");
    }
}

#[test]
fn pytorch_fixture_mlp_silu() {
    check_fixture("mlp_silu");
}

#[test]
fn pytorch_fixture_mlp_relu() {
    check_fixture("mlp_relu");
}

// Independent NumPy float64 references written from model-format.md alone (tools/fixtures/), for activations,
// schedules and output scales the PyTorch fixtures do not cover.
#[test]
fn numpy_fixtures_other_activations_schedules_and_scales() {
    for name in ["numpy_mlp_gelu_ve", "numpy_mlp_tanh_vp", "numpy_mlp_silu_none", "numpy_mlp_relu_wide"] {
        check_fixture(name);
    }
}

// Float64 PyTorch references (tools/fixtures/make_torch_mlp_fixtures.py) for gelu, tanh, ve, vp and no output scale.
#[test]
fn pytorch_fixtures_other_activations_and_schedules() {
    for name in ["torch_mlp_gelu_vp", "torch_mlp_tanh_ve", "torch_mlp_silu_none"] {
        check_fixture(name);
    }
}
