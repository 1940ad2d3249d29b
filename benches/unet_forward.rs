//! Song U-Net score forward throughput over batch sizes, end to end (upload, forward, read-back), on a model
//! with the tutorial's shapes (channels [32, 64, 128, 256], embedding 256). Criterion's `elem/s` are images/s;
//! GFLOP/s = images/s × the model's FLOPs per image (printed first; taps that exist only).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scorelens::model::{NoiseSchedule, UnetModel};
use scorelens::scheduler::JobOptions;
use scorelens::{GpuContext, ScoreField, ScoreModel};

fn bench_unet(c: &mut Criterion) {
    let ctx = GpuContext::shared().expect("a GPU adapter");
    let model = UnetModel::random(1, [32, 64, 128, 256], 256, NoiseSchedule::VeSong { sigma: 25.0 });
    println!("U-Net forward: {:.1} MFLOP per image on {}", model.flops_per_image() / 1e6, ctx.adapter_description());
    let field = ScoreField::new(ctx.clone(), &ScoreModel::Unet(model)).unwrap();
    let mut group = c.benchmark_group(format!("unet_forward/{}", ctx.caps.info.name));
    group.sample_size(10);
    let max_batch: usize = std::env::var("SCORELENS_BENCH_MAX_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(512);
    for batch in [1usize, 64, 512].into_iter().filter(|&b| b <= max_batch) {
        let x: Vec<f32> = (0..batch * 784).map(|i| ((i % 255) as f32) / 255.0).collect();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new("song-unet", batch), |bench| {
            bench.iter(|| field.score(&x, &[0.5], JobOptions::default()).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_unet);
criterion_main!(benches);
