//! Embedding scorelens in another program: load a model file, score a batch on the GPU, read the result.
//!
//!     cargo run --release --example score_batch [MODEL.safetensors]
//!
//! Without an argument it uses the MLP fixture shipped with the tests.

use std::path::PathBuf;

use scorelens::scheduler::JobOptions;
use scorelens::{GpuContext, ScoreField, ScoreModel};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mlp_silu/model.safetensors"));
    let model = ScoreModel::load(&path)?;
    let ctx = GpuContext::shared()?;
    let field = ScoreField::new(ctx.clone(), &model)?;

    let dim = model.dim();
    let rows = 1000;
    let x: Vec<f32> = (0..rows * dim).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let score = field.score(&x, &[0.1], JobOptions::default())?;

    let mean_norm: f32 =
        score.chunks(dim).map(|s| s.iter().map(|v| v * v).sum::<f32>().sqrt()).sum::<f32>() / rows as f32;
    println!(
        "{} on {}: {rows} points of dimension {dim}, mean |s(x, 0.1)| = {mean_norm:.4}",
        path.display(),
        ctx.adapter_description()
    );
    Ok(())
}
