//! Matmul kernel throughput. Criterion's "elements" are floating-point operations here, so its `Melem/s`
//! reads as MFLOP/s (×1e-3 for GFLOP/s). Each iteration records, submits and waits for one product.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scorelens::gpu::{BufferRole, Recorder};
use scorelens::ops::matmul::{kernel_for, record_matmul, record_matmul_with, Epilogue, MatmulShape, TilePlan};
use scorelens::GpuContext;

fn bench_matmul(c: &mut Criterion) {
    let ctx = GpuContext::shared().expect("a GPU adapter");
    let mut group = c.benchmark_group(format!("matmul/{}", ctx.caps.info.name));
    group.sample_size(10);
    let shapes: &[(usize, usize, usize)] =
        &[(64, 64, 64), (256, 256, 256), (1024, 1024, 1024), (4096, 512, 512), (1, 512, 512), (65536, 64, 512)];
    for &(m, n, k) in shapes {
        let shape = MatmulShape::new(m, n, k).with_trans_b();
        let a = ctx.upload("a", &vec![0.5f32; m * k]);
        let b = ctx.upload("b", &vec![0.25f32; n * k]);
        let out = ctx.buffer("c", (m * n * 4) as u64, BufferRole::Storage);
        group.throughput(Throughput::Elements(shape.flops() as u64));
        let id = BenchmarkId::new(kernel_for(&shape), format!("{m}x{n}x{k}"));
        group.bench_function(id, |bench| {
            bench.iter(|| {
                let mut rec = Recorder::new(&ctx, "bench/matmul");
                record_matmul(&mut rec, &shape, &a, &b, Epilogue::NONE, &out).unwrap();
                let index = rec.submit();
                ctx.wait_for(Some(index)).unwrap();
            })
        });
        // Both tiled variants by name on the shapes big enough for either, to compare them.
        if m >= 1024 && n >= 512 {
            for plan in [TilePlan::Tile64, TilePlan::Tile128] {
                let id = BenchmarkId::new(plan.kernel(), format!("{m}x{n}x{k} forced"));
                group.bench_function(id, |bench| {
                    bench.iter(|| {
                        let mut rec = Recorder::new(&ctx, "bench/matmul");
                        record_matmul_with(&mut rec, plan.kernel(), &shape, &a, &b, Epilogue::NONE, &out).unwrap();
                        let index = rec.submit();
                        ctx.wait_for(Some(index)).unwrap();
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_matmul);
criterion_main!(benches);
