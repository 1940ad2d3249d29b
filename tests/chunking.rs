//! Jobs larger than the memory budget or than one binding run in pieces and give the unsplit answer.

mod common;

use common::{gpu, normal_vec, random_mlp, random_times, rel_err, rng};
use scorelens::model::NoiseSchedule;
use scorelens::reference::mlp::mlp_score;
use scorelens::scheduler::{parse_memory_size, JobOptions, Progress};
use scorelens::{Activation, ScoreField, ScoreModel};
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Default)]
struct CountChunks {
    chunks: AtomicUsize,
    rows: AtomicUsize,
}

impl Progress for CountChunks {
    fn advance(&self, rows: usize) {
        self.chunks.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows, Ordering::Relaxed);
    }
}

#[test]
fn a_million_rows_under_a_two_mebibyte_budget() {
    let model = random_mlp(77, 2, &[8], 2, Activation::Silu, NoiseSchedule::VeSong { sigma: 25.0 });
    let field = ScoreField::new(gpu(), &ScoreModel::Mlp(model.clone())).unwrap();
    let rows = 1_000_000;
    let x = normal_vec(&mut rng(78), rows * 2, 1.0);
    let t = random_times(79, rows);
    let counter = CountChunks::default();
    let options = JobOptions { memory_budget: parse_memory_size("2MiB").unwrap(), progress: &counter };
    let got = field.score(&x, &t, options).unwrap();
    assert!(counter.chunks.load(Ordering::Relaxed) > 10, "expected many chunks");
    assert_eq!(counter.rows.load(Ordering::Relaxed), rows);
    let err = rel_err(&got, &mlp_score(&model, &x, &t));
    assert!(err <= 1e-5, "rel err {err:e}");
}

#[test]
fn rows_wider_than_one_binding_are_split_by_the_binding_limit() {
    let ctx = gpu();
    let dim = 64;
    let binding = ctx.caps.max_binding_bytes() as usize;
    // Enough rows that the points x [rows, dim], the widest per-row value, exceed one binding, capped to keep CI quick.
    let rows = (binding / (4 * dim) + 1000).min(600_000);
    let model = random_mlp(80, dim, &[16], 4, Activation::Relu, NoiseSchedule::VeSong { sigma: 25.0 });
    let field = ScoreField::new(ctx.clone(), &ScoreModel::Mlp(model.clone())).unwrap();
    let x = normal_vec(&mut rng(81), rows * dim, 1.0);
    let counter = CountChunks::default();
    let options = JobOptions { memory_budget: 8 << 30, progress: &counter };
    let got = field.score(&x, &[0.3], options).unwrap();
    if rows * dim * 4 > binding {
        assert!(counter.chunks.load(Ordering::Relaxed) >= 2, "a job over one binding must be split");
    }
    // Check a spread of rows against the reference (the whole batch would be slow on one CPU core).
    let picked: Vec<usize> = (0..rows).step_by(97).collect();
    let px: Vec<f32> = picked.iter().flat_map(|&r| x[r * dim..(r + 1) * dim].iter().copied()).collect();
    let pg: Vec<f32> = picked.iter().flat_map(|&r| got[r * dim..(r + 1) * dim].iter().copied()).collect();
    let err = rel_err(&pg, &mlp_score(&model, &px, &[0.3]));
    assert!(err <= 1e-5, "rel err {err:e}");
}

#[test]
fn split_and_unsplit_runs_agree() {
    let model = random_mlp(90, 33, &[70, 45], 6, Activation::Gelu, NoiseSchedule::Vp { beta_min: 0.1, beta_max: 20.0 });
    let field = ScoreField::new(gpu(), &ScoreModel::Mlp(model)).unwrap();
    let rows = 3001;
    let x = normal_vec(&mut rng(91), rows * 33, 1.0);
    let t = random_times(92, rows);
    let whole = field.score(&x, &t, JobOptions::default()).unwrap();
    let split = field.score(&x, &t, JobOptions { memory_budget: 200 << 10, ..JobOptions::default() }).unwrap();
    let whole64: Vec<f64> = whole.iter().map(|&v| v as f64).collect();
    assert!(rel_err(&split, &whole64) <= 1e-6);
}

/// Only per-row values bound the rows of a chunk: weights are bound whole, one copy for all rows. (Counted as rows,
/// a 512×512 weight cut the MLP's runs into chunks of binding / 1 MiB rows, each J·V chunk linearised on its own.)
#[test]
fn weights_do_not_split_a_batch() {
    let ctx = gpu();
    let (dim, width) = (8, 512);
    let rows = (ctx.caps.max_binding_bytes() as usize / (4 * width * width) + 1).min(4096);
    let model = random_mlp(93, dim, &[width, width], 4, Activation::Silu, NoiseSchedule::VeSong { sigma: 25.0 });
    let field = ScoreField::new(ctx, &ScoreModel::Mlp(model.clone())).unwrap();
    let x = normal_vec(&mut rng(94), rows * dim, 1.0);
    let counter = CountChunks::default();
    let got = field.score(&x, &[0.4], JobOptions { progress: &counter, ..JobOptions::default() }).unwrap();
    assert_eq!(counter.chunks.load(Ordering::Relaxed), 1, "score of {rows} rows split");
    let err = rel_err(&got, &mlp_score(&model, &x, &[0.4]));
    assert!(err <= 1e-5, "rel err {err:e}");
    let v = normal_vec(&mut rng(95), rows * 2 * dim, 1.0);
    let counter = CountChunks::default();
    let options = JobOptions { progress: &counter, ..JobOptions::default() };
    scorelens::derivative::jvp(&field, &x, &[0.4], &v, scorelens::JvpMethod::Exact, false, options).unwrap();
    assert_eq!(counter.chunks.load(Ordering::Relaxed), 1, "J·V of {rows} points × 2 tangents split");
}
