//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod cli;
pub mod spectra;

use std::path::PathBuf;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use scorelens::GpuContext;

/// The shared GPU context. Fails (never skips) when no adapter exists: CI must run these on lavapipe.
pub fn gpu() -> Arc<GpuContext> {
    GpuContext::shared().unwrap_or_else(|e| panic!("GPU tests need an adapter (CI uses lavapipe): {e}"))
}

pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

pub fn normal_vec(rng: &mut impl Rng, len: usize, scale: f32) -> Vec<f32> {
    scorelens::model::normal_values(rng, len, scale, 0.0)
}

/// ‖got − want‖ / ‖want‖, failing on any non-finite value.
pub fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    assert!(got.iter().all(|v| v.is_finite()), "GPU result has a non-finite value");
    let num: f64 = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).powi(2)).sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

pub fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)
}

use scorelens::model::{MlpModel, NoiseSchedule};
use scorelens::Activation;

/// An MLP score model with random weights (see `MlpModel::random`).
pub fn random_mlp(
    seed: u64,
    dim: usize,
    hidden: &[usize],
    embed_dim: usize,
    act: Activation,
    schedule: NoiseSchedule,
) -> MlpModel {
    MlpModel::random(seed, dim, hidden, embed_dim, act, schedule)
}

/// Times in (0, 1], one per row.
pub fn random_times(seed: u64, rows: usize) -> Vec<f32> {
    let mut r = rng(seed);
    (0..rows).map(|_| r.random_range(0.01f32..=1.0)).collect()
}
