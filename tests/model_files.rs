//! Model files: F16 / BF16 weights upcast to f32, `module.` prefixes accepted, metadata read into typed configs.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{fixture, gpu, normal_vec, random_times, rel_err, rng};
use safetensors::tensor::{Dtype, TensorView};
use scorelens::model::{MlpModel, NoiseSchedule};
use scorelens::reference::mlp::mlp_score;
use scorelens::scheduler::JobOptions;
use scorelens::{Activation, ScoreField, ScoreModel};

/// Re-encodes `model` with every tensor in `dtype` and its names prefixed by `prefix`.
fn encode(model: &MlpModel, dtype: Dtype, prefix: &str) -> Vec<u8> {
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> =
        vec![("embed.W".into(), vec![model.embed_w.len()], &model.embed_w)];
    for (l, layer) in model.layers.iter().enumerate() {
        tensors.push((format!("layers.{l}.weight"), vec![layer.outputs, layer.inputs], &layer.weight));
        tensors.push((format!("layers.{l}.bias"), vec![layer.outputs], &layer.bias));
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, data)| {
            let raw: Vec<u8> = match dtype {
                Dtype::F16 => data.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
                Dtype::BF16 => data.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
                _ => data.iter().flat_map(|&v| v.to_le_bytes()).collect(),
            };
            (format!("{prefix}{name}"), shape, raw)
        })
        .collect();
    let views: Vec<(String, TensorView)> =
        bytes.iter().map(|(n, s, d)| (n.clone(), TensorView::new(dtype, s.clone(), d).unwrap())).collect();
    let metadata: HashMap<String, String> = [
        ("format", "scorelens"),
        ("arch", "mlp"),
        ("act", "tanh"),
        ("schedule", "vp"),
        ("beta_min", "0.1"),
        ("beta_max", "20"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    safetensors::tensor::serialize(views, Some(metadata)).unwrap()
}

fn rounded(model: &MlpModel, round: fn(f32) -> f32) -> MlpModel {
    let mut m = model.clone();
    m.embed_w.iter_mut().for_each(|v| *v = round(*v));
    for layer in &mut m.layers {
        layer.weight.iter_mut().for_each(|v| *v = round(*v));
        layer.bias.iter_mut().for_each(|v| *v = round(*v));
    }
    m
}

#[test]
fn half_precision_and_prefixed_files_load_and_run() {
    let model =
        MlpModel::random(3, 9, &[40, 33], 12, Activation::Tanh, NoiseSchedule::Vp { beta_min: 0.1, beta_max: 20.0 });
    let cases: [(Dtype, &str, fn(f32) -> f32); 4] = [
        (Dtype::F32, "module.", |v| v),
        (Dtype::F16, "", |v| half::f16::from_f32(v).to_f32()),
        (Dtype::BF16, "module.", |v| half::bf16::from_f32(v).to_f32()),
        (Dtype::F16, "module.module.", |v| half::f16::from_f32(v).to_f32()),
    ];
    let x = normal_vec(&mut rng(4), 50 * 9, 1.0);
    let t = random_times(5, 50);
    for (dtype, prefix, round) in cases {
        let bytes = encode(&model, dtype, prefix);
        let loaded = ScoreModel::from_bytes(Path::new("half.safetensors"), &bytes).unwrap();
        let ScoreModel::Mlp(mlp) = &loaded else { panic!("not an mlp") };
        let expected = rounded(&model, round);
        assert_eq!(mlp.layers[1].weight, expected.layers[1].weight, "{dtype:?} weights");
        assert_eq!(mlp.schedule, NoiseSchedule::Vp { beta_min: 0.1, beta_max: 20.0 });
        assert_eq!(mlp.act, Activation::Tanh);
        let field = ScoreField::new(gpu(), &loaded).unwrap();
        let got = field.score(&x, &t, JobOptions::default()).unwrap();
        let err = rel_err(&got, &mlp_score(&expected, &x, &t));
        assert!(err <= 1e-5, "{dtype:?} {prefix:?}: rel err {err:e}");
    }
}

#[test]
fn fixture_metadata_is_read_into_the_config() {
    let model = ScoreModel::load(&fixture("mlp_relu/model.safetensors")).unwrap();
    let ScoreModel::Mlp(m) = &model else { panic!("not an mlp") };
    assert_eq!(m.dim, 10);
    assert_eq!(m.embed_dim(), 8);
    assert_eq!(m.hidden(), vec![48, 48, 48]);
    assert_eq!(m.act, Activation::Relu);
    assert_eq!(m.schedule, NoiseSchedule::VeSong { sigma: 25.0 });
    assert_eq!(model.parameter_count(), 4 + 48 * 18 + 48 + 2 * (48 * 48 + 48) + 10 * 48 + 10);
}
