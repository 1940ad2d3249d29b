//! MLP score forward throughput (D = 64, hidden 512×3, embedding 64) over batch sizes, end to end: upload,
//! forward, read-back. Criterion's `Melem/s` reads as MFLOP/s of the forward's matmuls.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scorelens::model::{MlpModel, NoiseSchedule};
use scorelens::scheduler::JobOptions;
use scorelens::{Activation, GpuContext, ScoreField, ScoreModel};

fn bench_mlp(c: &mut Criterion) {
    let ctx = GpuContext::shared().expect("a GPU adapter");
    let m = MlpModel::random(1, 64, &[512, 512, 512], 64, Activation::Silu, NoiseSchedule::VeSong { sigma: 25.0 });
    let flops_per_row = m.flops_per_row();
    let field = ScoreField::new(ctx.clone(), &ScoreModel::Mlp(m)).unwrap();
    let mut group = c.benchmark_group(format!("mlp_forward/{}", ctx.caps.info.name));
    group.sample_size(10);
    let max_rows: usize = std::env::var("SCORELENS_BENCH_MAX_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(65_536);
    for rows in [1usize, 64, 1024, 8192, 65_536].into_iter().filter(|&r| r <= max_rows) {
        let x: Vec<f32> = (0..rows * 64).map(|i| ((i % 97) as f32 - 48.0) / 48.0).collect();
        group.throughput(Throughput::Elements((flops_per_row * rows as f64) as u64));
        group.bench_function(BenchmarkId::new("D64-h512x3", rows), |bench| {
            bench.iter(|| field.score(&x, &[0.5], JobOptions::default()).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_mlp);
criterion_main!(benches);
