//! `sample`: samples drawn by a reverse-SDE or probability-flow ODE sampler, and the iterates at recorded noise
//! levels. Writes samples.npy [N, ...row], recorded.npy [R, N, ...row] and recorded_t.npy [R] (with recorded
//! levels), summary.json, and shard.json for a shard.

use std::path::Path;
use std::time::Instant;

use ndarray::ArrayD;

use super::{array, concatenate, create_dir, write_arrays, write_json, ArrayRef, Layout, NamedArrays, RunInfo};
use crate::batch::{split_rows, Shard};
use crate::error::{Error, Result};
use crate::field::ScoreField;
use crate::sampler::{self, SamplerConfig, SeededNoise};
use crate::scheduler::JobOptions;

/// The samples join along their rows; the recorded iterates [R, N, ...] along N; the recorded times are the
/// grid's, the same in every block.
pub const LAYOUT: Layout = Layout { axis: &[("recorded.npy", 1)], same: &["recorded_t.npy"] };

/// Where the sampler starts: x_T drawn from the prior for `n` rows, or given points (all the run's rows).
#[derive(Debug, Clone)]
pub enum Start {
    Prior {
        n: usize,
    },
    /// Points [N, ...row_shape] or [N, D], already checked against the field.
    Points {
        shape: Vec<usize>,
        values: Vec<f32>,
    },
}

impl Start {
    fn rows(&self) -> usize {
        match self {
            Start::Prior { n } => *n,
            Start::Points { shape, .. } => shape.first().copied().unwrap_or(0),
        }
    }
}

/// A sampler run over a shard of rows, in the library's types.
#[derive(Debug, Clone)]
pub struct SampleResult {
    /// [N, ...row]: the final iterates (N the shard's rows).
    pub samples: ArrayD<f32>,
    /// [R, N, ...row]: the iterate at each recorded level (None without recorded levels).
    pub recorded: Option<ArrayD<f32>>,
    /// [R]: the grid time of each recorded level.
    pub recorded_t: Option<ArrayD<f64>>,
    pub config: SamplerConfig,
    pub seed: u64,
    pub dim: usize,
    /// The schedule as `scorelens info` prints it.
    pub schedule: String,
    /// std(t) at each recorded time.
    pub recorded_std: Vec<f64>,
    pub info: RunInfo,
}

/// Runs the sampler on shard `shard` (`I/N`, None for all) of the run's rows, spread over `fields` (one per
/// device, rows split in contiguous blocks). Row r of the whole run draws its x_T (event 0, when drawn) and its
/// noise from (seed, r), so shards and devices give the whole run's rows. `source` and `run` label the summary
/// and the manifest.
pub fn sample(
    fields: &[&ScoreField],
    start: Start,
    config: &SamplerConfig,
    seed: u64,
    shard: Option<&str>,
    options: JobOptions,
    source: &str,
    run: &str,
) -> Result<SampleResult> {
    let field = *fields.first().ok_or_else(|| Error::Device("no device to run on".into()))?;
    let d = field.dim();
    if !(config.snr > 0.0 && config.snr.is_finite()) {
        return Err(Error::InvalidArgument(format!("snr {}: expected a positive number", config.snr)));
    }
    if start.rows() == 0 {
        return Err(Error::InvalidArgument("n 0: need at least one sample".into()));
    }
    let shard = Shard::parse(shard, start.rows())?;
    let noise = SeededNoise::for_rows(seed, shard.rows.start);
    let (x_init, mut shape, noise) = match start {
        Start::Points { shape, values } => (shard.slice(&values, d).to_vec(), shape, noise),
        Start::Prior { .. } => {
            let mut noise = noise;
            let mut shape = vec![0];
            shape.extend(field.row_shape());
            (sampler::initial_points(field, shard.len(), &mut noise), shape, noise)
        }
    };
    shape[0] = shard.len();
    let started = Instant::now();
    let blocks = split_rows(fields, shard.len(), |field, rows| {
        let x = &x_init[rows.start * d..rows.end * d];
        let run = sampler::sample(field, x, config, &mut noise.offset_rows(rows.start), options)?;
        let mut block_shape = shape.clone();
        block_shape[0] = rows.len();
        let samples = array(&block_shape, run.samples)?;
        let mut recorded_shape = vec![run.recorded.len()];
        recorded_shape.extend_from_slice(&block_shape);
        let recorded = array(&recorded_shape, run.recorded.concat())?;
        Ok((samples, recorded, run.recorded_t))
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let recorded_t = blocks[0].2.clone();
    let samples: Vec<_> = blocks.iter().map(|b| b.0.clone()).collect();
    let recorded: Vec<_> = blocks.into_iter().map(|b| b.1).collect();
    let samples = concatenate(&samples, LAYOUT.axis_of("samples.npy"))?;
    let recorded = concatenate(&recorded, LAYOUT.axis_of("recorded.npy"))?;
    let schedule = field.schedule();
    let with_levels = !config.record_sigmas.is_empty();
    Ok(SampleResult {
        samples,
        recorded: with_levels.then_some(recorded),
        recorded_t: if with_levels { Some(array(&[recorded_t.len()], recorded_t.clone())?) } else { None },
        config: config.clone(),
        seed,
        dim: d,
        schedule: schedule.to_string(),
        recorded_std: recorded_t.iter().map(|&t| schedule.std(t)).collect(),
        info: RunInfo {
            source: source.to_string(),
            adapter: field.ctx().adapter_description(),
            devices: fields.len(),
            shard,
            seconds,
            run: run.to_string(),
        },
    })
}

impl SampleResult {
    /// The recorded times as a list (empty without recorded levels).
    pub fn recorded_times(&self) -> Vec<f64> {
        self.recorded_t.as_ref().map(|t| t.iter().copied().collect()).unwrap_or_default()
    }

    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "command": "sample",
            "model": self.info.source,
            "sampler": self.config.kind.name(),
            "steps": self.config.steps,
            "eps": self.config.eps,
            "snr": self.config.snr,
            "seed": self.seed,
            "n": self.samples.shape()[0],
            "dim": self.dim,
            "schedule": self.schedule,
            "record_sigmas": self.config.record_sigmas,
            "recorded_t": self.recorded_times(),
            "recorded_std": self.recorded_std,
            "adapter": self.info.adapter,
            "devices": self.info.devices,
            "shard": self.info.shard.summary(),
            "seconds": self.info.seconds,
        })
    }

    /// The arrays, named as their files and in the order the command line writes them.
    pub fn arrays(&self) -> NamedArrays<'_> {
        let mut arrays: NamedArrays = vec![("samples", ArrayRef::F32(&self.samples))];
        if let (Some(recorded), Some(t)) = (&self.recorded, &self.recorded_t) {
            arrays.extend([("recorded", ArrayRef::F32(recorded)), ("recorded_t", ArrayRef::F64(t))]);
        }
        arrays
    }

    /// Writes the command line's files into `dir` (created if missing).
    pub fn save(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        write_arrays(dir, &self.arrays())?;
        LAYOUT.write_manifest(dir, &self.info)?;
        write_json(&dir.join("summary.json"), &self.summary())
    }
}
