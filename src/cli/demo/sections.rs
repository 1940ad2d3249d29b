//! The demo's analyses, one function a section: each runs on the shipped models, writes its arrays and figures,
//! and adds its text, tables and findings to the report.

use scorelens::io::npy;
use scorelens::report::{scatter_chart, PointSet};
use scorelens::sampler::{initial_points, sample, SamplerConfig, SamplerKind, SeededNoise};
use scorelens::Result;

use super::geometry::KnownGeometry;
use super::stats::{median, nearest_distances};
use super::{Run, Trained};

fn rows_of(x: &[f32], d: usize) -> impl Iterator<Item = &[f32]> {
    x.chunks(d)
}

pub(crate) fn sampling(run: &mut Run, models: &[Trained], geometry: &KnownGeometry) -> Result<()> {
    println!("1. sampling");
    run.doc.heading(2, "1. Sampling");
    run.doc.paragraph(format!(
        "The known-manifold models `moons` and `circle16`: Euler–Maruyama on Song's grid, {} steps from t = 1 to \
         1e-3, x_T = std(1)·z, seeded. (The grid's last noise level is 0.032; the U-Net's chains in section 2 step \
         on a grid in σ that reaches the first paper's 0.01.)",
        run.sizes.steps
    ));
    let mut rows = Vec::new();
    let mut samples_of = Vec::new();
    for (m, n) in models.iter().zip(run.sizes.samples) {
        let mut noise = SeededNoise::new(2026);
        let x_init = initial_points(&m.field, n, &mut noise);
        let config = SamplerConfig::new(SamplerKind::Em, run.sizes.steps);
        let result = sample(&m.field, &x_init, &config, &mut noise, run.options)?;
        let d = m.dim;
        npy::write_f32(&run.path(&[m.name, "samples.npy"])?, &[n, d], &result.samples)?;
        let nearest = nearest_distances(&result.samples, &m.data, d);
        let data_probe: Vec<f32> = m.data.iter().take(200 * d).copied().collect();
        let data_nearest: Vec<f64> = {
            // Each probe's nearest other training point.
            let rest: Vec<f32> = m.data[(200 * d).min(m.data.len())..].to_vec();
            nearest_distances(&data_probe, &rest, d)
        };
        let manifold = match m.name {
            "moons" | "circle16" => {
                let distances: Vec<f64> =
                    rows_of(&result.samples, d).filter_map(|x| geometry.of(m.name, x).map(|g| g.0)).collect();
                format!("{:.4}", median(distances))
            }
            _ => "—".into(),
        };
        rows.push(vec![
            format!("`{}`", m.name),
            n.to_string(),
            format!("{:.4}", median(nearest.clone())),
            format!("{:.4}", median(data_nearest.clone())),
            manifold,
        ]);
        run.summary.insert(
            format!("sampling_{}", m.name),
            serde_json::json!({
                "samples": n,
                "median_nearest_training_distance": median(nearest),
                "median_training_nearest_neighbour_distance": median(data_nearest),
            }),
        );
        samples_of.push(result.samples);
    }
    run.doc.table(
        &[
            "model",
            "samples",
            "median distance to nearest training point",
            "same for training points (to the rest)",
            "median distance to the true manifold",
        ],
        rows,
    );
    // Figures: moons in the plane; the circle in its own plane.
    let moons = &models[0];
    let figure = run.path(&["moons", "samples.png"])?;
    let data: Vec<(f64, f64)> = rows_of(&moons.data, 2).take(3000).map(|p| (p[0] as f64, p[1] as f64)).collect();
    let samples: Vec<(f64, f64)> = rows_of(&samples_of[0], 2).map(|p| (p[0] as f64, p[1] as f64)).collect();
    scatter_chart(
        &figure,
        "Two moons: training data and EM samples",
        &[
            PointSet { label: "training data".into(), points: data, size: 1 },
            PointSet { label: "samples".into(), points: samples, size: 2 },
        ],
        Some(((-1.5, 2.5), (-1.25, 1.75))),
    )?;
    run.doc.figure("moons/samples.png", "Two moons: training data and samples from the trained model.");
    let circle = &models[1];
    let project = |x: &[f32]| -> (f64, f64) {
        let q = &geometry.circle_frame;
        let a = (0..16).map(|r| q[r * 2] * x[r] as f64).sum();
        let b = (0..16).map(|r| q[r * 2 + 1] * x[r] as f64).sum();
        (a, b)
    };
    scatter_chart(
        &run.path(&["circle16", "samples.png"])?,
        "Circle in R^16, seen in its plane: data and samples",
        &[
            PointSet {
                label: "training data".into(),
                points: rows_of(&circle.data, 16).take(2000).map(project).collect(),
                size: 1,
            },
            PointSet { label: "samples".into(), points: rows_of(&samples_of[1], 16).map(project).collect(), size: 2 },
        ],
        Some(((-1.6, 1.6), (-1.6, 1.6))),
    )?;
    run.doc.figure("circle16/samples.png", "The circle model's samples projected onto the circle's plane.");
    Ok(())
}
