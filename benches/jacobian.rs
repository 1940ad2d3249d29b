//! Full Jacobians per second: the MLP (D = 64, hidden 512×3) and the Song U-Net (784×784) in exact forward and
//! reverse mode, and the U-Net's finite-difference J·v. Criterion's `elem/s` are Jacobians (or products) per second; the FLOPs per Jacobian are
//! printed first (D forward-mode products ≈ D × the forward's matmul FLOPs).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scorelens::derivative::{self, JacobianMethod, JvpMethod};
use scorelens::model::{MlpModel, NoiseSchedule, UnetModel};
use scorelens::scheduler::JobOptions;
use scorelens::{Activation, GpuContext, ScoreField, ScoreModel};

fn bench_jacobians(c: &mut Criterion) {
    let ctx = GpuContext::shared().expect("a GPU adapter");
    let mlp = MlpModel::random(1, 64, &[512, 512, 512], 64, Activation::Silu, NoiseSchedule::VeSong { sigma: 25.0 });
    println!("MLP Jacobian: {:.1} MFLOP each on {}", 64.0 * mlp.flops_per_row() / 1e6, ctx.adapter_description());
    let field = ScoreField::new(ctx.clone(), &ScoreModel::Mlp(mlp)).unwrap();
    let mut group = c.benchmark_group(format!("jacobian/{}", ctx.caps.info.name));
    group.sample_size(10);
    for points in [1usize, 64] {
        let x: Vec<f32> = (0..points * 64).map(|i| ((i % 89) as f32 - 44.0) / 44.0).collect();
        group.throughput(Throughput::Elements(points as u64));
        for (name, method) in [("mlp-forward", JacobianMethod::Forward), ("mlp-reverse", JacobianMethod::Reverse)] {
            group.bench_function(BenchmarkId::new(name, points), |bench| {
                bench.iter(|| {
                    derivative::jacobian(&field, &x, &[0.5], method, JobOptions::default(), |_, _| Ok(())).unwrap()
                })
            });
        }
    }
    let unet = UnetModel::random(1, [32, 64, 128, 256], 256, NoiseSchedule::VeSong { sigma: 25.0 });
    println!("U-Net Jacobian: {:.1} GFLOP each (784 products)", 784.0 * unet.flops_per_image() / 1e9);
    let unet_field = ScoreField::new(ctx.clone(), &ScoreModel::Unet(unet)).unwrap();
    let one: Vec<f32> = (0..784).map(|i| ((i % 255) as f32) / 255.0).collect();
    group.throughput(Throughput::Elements(1));
    for (name, method) in [("unet-forward", JacobianMethod::Forward), ("unet-reverse", JacobianMethod::Reverse)] {
        group.bench_function(BenchmarkId::new(name, 1), |bench| {
            bench.iter(|| {
                derivative::jacobian(&unet_field, &one, &[0.5], method, JobOptions::default(), |_, _| Ok(())).unwrap()
            })
        });
    }
    let images = 4;
    let x: Vec<f32> = (0..images * 784).map(|i| ((i % 255) as f32) / 255.0).collect();
    let v: Vec<f32> = (0..images * 784).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect();
    group.throughput(Throughput::Elements(images as u64));
    group.bench_function(BenchmarkId::new("unet-jvp-fd", images), |bench| {
        bench
            .iter(|| derivative::jvp(&unet_field, &x, &[0.5], &v, JvpMethod::Fd, false, JobOptions::default()).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_jacobians);
criterion_main!(benches);
