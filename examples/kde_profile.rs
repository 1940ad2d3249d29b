//! Where the time of the smoothed-data field (`KdeField`, `SmoothedData`) goes at moderate dimension: log density +
//! score (first pass only), Hessian (both passes) and Hessian-vector products, per call, on each kernel path.
//!
//!     cargo run --profile ci --example kde_profile [D,..] [ROWS,..] [auto|tiled|small|point|smoothed,..] [REPS] [P,..]
//!
//! Defaults: D = 16, rows 8,24, path auto, 5 repetitions, H·V with 1 and 16 directions (`none`: no H·V). A path
//! names `KdeField`'s kernels (`KdePath`); `smoothed` times `SmoothedData::score` and `::hessian` instead, which
//! build the field at t on every call, as the demo's ridge section does. The data are N = 10,000
//! uniform points in [−½, ½]^D, smoothed as the VE schedule (σ_max = 25) at t = 0.01 (printed: α, σ), the regime of the
//! demo's ridge runs. Every field is built once and warmed by one call (pipelines compiled, data uploaded); each
//! line is the mean wall time of REPS calls, read-backs included.

use std::time::Instant;

use scorelens::field::{KdeField, KdePath, SmoothedData, Smoothing};
use scorelens::model::NoiseSchedule;
use scorelens::scheduler::JobOptions;
use scorelens::GpuContext;

const N: usize = 10_000;
const T: f32 = 0.01;

/// A fixed-seed linear congruential stream in [−½, ½).
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
    }
    fn take(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn list<T: std::str::FromStr>(arg: Option<&String>, default: &str) -> Vec<T> {
    arg.map(String::as_str).unwrap_or(default).split(',').filter_map(|s| s.parse().ok()).collect()
}

fn path(name: &str) -> KdePath {
    match name {
        "tiled" => KdePath::Tiled,
        "small" => KdePath::Small,
        "point" => KdePath::Point,
        _ => KdePath::Auto,
    }
}

/// Mean milliseconds of `reps` calls of `f`, after one warm-up call.
fn time(reps: usize, mut f: impl FnMut() -> scorelens::Result<()>) -> scorelens::Result<f64> {
    f()?;
    let start = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e3 / reps as f64)
}

fn main() -> scorelens::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dims: Vec<usize> = list(args.get(1), "16");
    let rows_list: Vec<usize> = list(args.get(2), "8,24");
    let paths: Vec<String> = list(args.get(3), "auto");
    let reps: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(5);
    let directions: Vec<usize> = list(args.get(5), "1,16");
    let ctx = GpuContext::shared()?;
    let schedule = NoiseSchedule::VeSong { sigma: 25.0 };
    let options = JobOptions::default();
    let mut stream = Stream(1);
    println!("N = {N}, t = {T}, {reps} calls per line; milliseconds per call");
    for &d in &dims {
        let data = stream.take(N * d);
        let smoothed = SmoothedData::new(ctx.clone(), data.clone(), d, schedule, Smoothing::Schedule)?;
        let scale = smoothed.scale_at(T);
        println!("D {d}: α = {:.4}, σ = {:.4}", scale.alpha, scale.sigma);
        for name in paths.iter().filter(|name| *name != "smoothed") {
            let Ok(field) = KdeField::new(ctx.clone(), data.clone(), d, smoothed.scale_at(T))?.with_path(path(name))
            else {
                continue;
            };
            for &rows in &rows_list {
                let x = stream.take(rows * d);
                let score = time(reps, || field.score(&x, options).map(drop))?;
                let hessian = time(reps, || field.hessian(&x, options).map(drop))?;
                let mut line = format!("D {d:>3} rows {rows:>5} {name:>6}: score {score:>9.2}  hessian {hessian:>9.2}");
                for &p in &directions {
                    let v = stream.take(rows * p * d);
                    let hv = time(reps, || field.hessian_vector(&x, &v, p, options).map(drop))?;
                    line += &format!("  hv(P={p}) {hv:>9.2}");
                }
                println!("{line}");
            }
        }
        for &rows in rows_list.iter().filter(|_| paths.iter().any(|name| name == "smoothed")) {
            let x = stream.take(rows * d);
            let t = vec![T; rows];
            let score = time(reps, || smoothed.score(&x, &t, options).map(drop))?;
            let hessian = time(reps, || smoothed.hessian(&x, &t, options).map(drop))?;
            println!("D {d:>3} rows {rows:>5} SmoothedData: score {score:>9.2}  hessian {hessian:>9.2}");
        }
    }
    Ok(())
}
