//! The Song U-Net on the GPU against the PyTorch float64 fixture and the f64 reference.

mod common;

use common::{fixture, gpu, normal_vec, random_times, rel_err, rng};
use scorelens::io::npy;
use scorelens::model::UnetModel;
use scorelens::reference::unet::unet_score;
use scorelens::scheduler::JobOptions;
use scorelens::{ScoreField, ScoreModel};

fn load(path: &str) -> UnetModel {
    match ScoreModel::load(&fixture(path)).unwrap() {
        ScoreModel::Unet(m) => m,
        _ => panic!("not a U-Net"),
    }
}

fn per_image_errors(got: &[f32], want: &[f64], per_image: usize) -> Vec<f64> {
    got.chunks(per_image).zip(want.chunks(per_image)).map(|(g, w)| rel_err(g, w)).collect()
}

#[test]
fn pytorch_fixture_song_unet() {
    let model = load("song_unet/model.safetensors");
    assert_eq!(model.channels(), vec![32, 64, 128, 256]);
    assert_eq!(model.embed_dim(), 256);
    assert_eq!(model.parameter_count(), 1_115_425);
    let x = npy::read_f32(&fixture("song_unet/x.npy")).unwrap();
    let t = npy::read_f32(&fixture("song_unet/t.npy")).unwrap();
    let want = npy::read_f64(&fixture("song_unet/score.npy")).unwrap();
    let field = ScoreField::new(gpu(), &ScoreModel::Unet(model.clone())).unwrap();
    let got = field.score(&x.data, &t.data, JobOptions::default()).unwrap();
    for (i, e) in per_image_errors(&got, &want.data, 784).iter().enumerate() {
        assert!(*e <= 1e-5, "image {i}: rel err {e:e}");
    }
    // The f64 reference agrees with PyTorch too (it is what the random-model tests trust).
    let reference = unet_score(&model, &x.data, &t.data);
    let as_f32: Vec<f32> = reference.iter().map(|&v| v as f32).collect();
    assert!(rel_err(&as_f32, &want.data) <= 1e-6);
}

fn check_random(seed: u64, channels: [usize; 4], embed: usize, images: usize, shared_t: bool) {
    let model = UnetModel::random(seed, channels, embed, scorelens::NoiseSchedule::VeSong { sigma: 25.0 });
    let field = ScoreField::new(gpu(), &ScoreModel::Unet(model.clone())).unwrap();
    let x = normal_vec(&mut rng(seed + 1), images * 784, 1.0);
    let t = if shared_t { vec![0.42] } else { random_times(seed + 2, images) };
    let got = field.score(&x, &t, JobOptions::default()).unwrap();
    let want = unet_score(&model, &x, &t);
    let errors = per_image_errors(&got, &want, 784);
    let worst = errors.iter().cloned().fold(0.0, f64::max);
    assert!(worst <= 1e-5, "channels {channels:?} embed {embed} batch {images}: worst per-image rel err {worst:e}");
}

#[test]
fn random_full_size_unets_batches_1_and_3() {
    check_random(11, [32, 64, 128, 256], 256, 1, true);
    check_random(12, [32, 64, 128, 256], 256, 3, false);
}

#[test]
fn random_unets_batch_64() {
    check_random(13, [32, 32, 64, 64], 64, 64, false);
}

#[test]
fn random_unets_batch_257() {
    check_random(14, [32, 32, 32, 32], 32, 257, false);
}
