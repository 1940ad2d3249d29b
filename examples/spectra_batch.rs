//! Embedding scorelens as another program's accelerated backend: load a model, take the Jacobian spectra of a
//! batch on the GPU, and read the results (singular values, local dimension, alignment).
//!
//!     cargo run --release --example spectra_batch [MODEL.safetensors] [POINTS]
//!
//! Without arguments it uses the MLP fixture shipped with the tests and 8 points.

use std::path::PathBuf;

use scorelens::analysis::{spectra, SpectrumSettings};
use scorelens::scheduler::JobOptions;
use scorelens::{GpuContext, ScoreField, ScoreModel};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let path = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mlp_silu/model.safetensors"));
    let points: usize = args.next().and_then(|a| a.to_str()?.parse().ok()).unwrap_or(8);
    let model = ScoreModel::load(&path)?;
    let field = ScoreField::new(GpuContext::shared()?, &model)?;
    let d = field.dim();
    let t = 0.05f32;
    let x: Vec<f32> = (0..points * d).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();

    // Every point's spectrum arrives through the callback as its chunk of Jacobians finishes on the GPU.
    let settings = SpectrumSettings { k: d, threshold_c: 2.0, vectors: false };
    let std2 = field.schedule().std(t as f64).powi(2);
    spectra(&field, &x, &[t], settings, JobOptions::default(), |row, s| {
        println!(
            "point {row}: s1 = {:.3}, s_D = {:.3}, 1/s_D = {:.4} (std(t)² = {std2:.4}), local dimension {} (threshold) / {} (gap), \
             non-conservativeness {:.3}",
            s.singular_values[0],
            s.singular_values[d - 1],
            1.0 / s.singular_values[d - 1],
            s.local_dimension_threshold,
            s.local_dimension_gap,
            s.nonconservativeness
        );
        Ok(())
    })?;
    Ok(())
}
