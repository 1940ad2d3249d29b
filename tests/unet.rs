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
        eprintln!("song_unet image {i}: rel err {e:.2e}");
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

/// The tutorial's state dict as saved (keys prefixed `module.` by DataParallel), and in float16 / bfloat16.
#[test]
fn prefixed_and_half_precision_unet_files() {
    use safetensors::tensor::{Dtype, SafeTensors, TensorView};
    let bytes = std::fs::read(fixture("song_unet/model.safetensors")).unwrap();
    let original = SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone();
    let x = npy::read_f32(&fixture("song_unet/x.npy")).unwrap();
    let t = npy::read_f32(&fixture("song_unet/t.npy")).unwrap();
    let images = 2;
    let (x2, t2) = (&x.data[..images * 784], &t.data[..images]);
    for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = original
            .iter()
            .map(|(name, view)| {
                let values: Vec<f32> =
                    view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                let raw: Vec<u8> = match dtype {
                    Dtype::F16 => values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
                    Dtype::BF16 => values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect(),
                    _ => values.iter().flat_map(|&v| v.to_le_bytes()).collect(),
                };
                (format!("module.{name}"), view.shape().to_vec(), raw)
            })
            .collect();
        let views: Vec<(String, TensorView)> =
            encoded.iter().map(|(n, s, d)| (n.clone(), TensorView::new(dtype, s.clone(), d).unwrap())).collect();
        let file = safetensors::tensor::serialize(views, metadata.clone()).unwrap();
        let model = ScoreModel::from_bytes(std::path::Path::new("module.safetensors"), &file).unwrap();
        let ScoreModel::Unet(unet) = &model else { panic!("not a U-Net") };
        let field = ScoreField::new(gpu(), &model).unwrap();
        let got = field.score(x2, t2, JobOptions::default()).unwrap();
        // The reference runs on the same (rounded) weights the file holds.
        let want = unet_score(unet, x2, t2);
        for (i, e) in per_image_errors(&got, &want, 784).iter().enumerate() {
            assert!(*e <= 1e-5, "{dtype:?} image {i}: rel err {e:e}");
        }
    }
}

#[test]
fn unet_batches_beyond_the_memory_budget_run_in_chunks() {
    let model = UnetModel::random(15, [32, 32, 32, 32], 32, scorelens::NoiseSchedule::VeSong { sigma: 25.0 });
    let field = ScoreField::new(gpu(), &ScoreModel::Unet(model.clone())).unwrap();
    let images = 37;
    let x = normal_vec(&mut rng(16), images * 784, 1.0);
    let t = random_times(17, images);
    let whole = field.score(&x, &t, JobOptions::default()).unwrap();
    // About 4 images per chunk: the job must be split, and agree with the unsplit run and the reference.
    let small = JobOptions { memory_budget: 1 << 23, ..JobOptions::default() };
    let split = field.score(&x, &t, small).unwrap();
    let whole64: Vec<f64> = whole.iter().map(|&v| v as f64).collect();
    assert!(rel_err(&split, &whole64) <= 1e-6);
    let worst = per_image_errors(&split, &unet_score(&model, &x, &t), 784).into_iter().fold(0.0, f64::max);
    assert!(worst <= 1e-5, "worst per-image rel err {worst:e}");
}
