//! Score-model files and their architectures (shared spec: model-format.md).

pub mod file;
pub mod mlp;
pub mod schedule;
pub mod unet;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub use file::ModelFile;
pub use mlp::{Linear, MlpModel};
pub use schedule::NoiseSchedule;
pub use unet::UnetModel;

use crate::error::{Error, Result};
use crate::graph::{MetadataOverrides, ScoreNetwork};

/// What the network's raw output is multiplied by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputScale {
    /// Divide by std(t) (the default).
    InvStd,
    None,
}

impl OutputScale {
    pub fn name(self) -> &'static str {
        match self {
            OutputScale::InvStd => "inv_std",
            OutputScale::None => "none",
        }
    }
}

/// A loaded score model, on the host.
#[derive(Debug, Clone)]
pub enum ScoreModel {
    Mlp(MlpModel),
    Unet(UnetModel),
    /// Any network as a graph (an ONNX export).
    Graph(Arc<ScoreNetwork>),
}

/// Whether a path names an ONNX model (by its extension).
pub fn is_onnx(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

impl ScoreModel {
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, &MetadataOverrides::new())
    }

    /// Loads a model file, `.onnx` or `.safetensors`; `overrides` replace metadata keys of the file (without the
    /// `scorelens.` prefix: parameterization, time_input, schedule, sigma, sigma_min, sigma_max, beta_min, beta_max).
    pub fn load_with(path: &Path, overrides: &MetadataOverrides) -> Result<Self> {
        if is_onnx(path) {
            return Ok(ScoreModel::Graph(Arc::new(ScoreNetwork::load_onnx(path, overrides)?)));
        }
        let mut file = ModelFile::open(path)?;
        for (key, value) in overrides {
            if matches!(key.as_str(), "parameterization" | "time_input") {
                return Err(Error::InvalidArgument(format!(
                    "{key} applies to ONNX networks; {} is a safetensors model of a built-in architecture",
                    path.display()
                )));
            }
            file.metadata.insert(key.clone(), value.clone());
        }
        Self::from_file(&file)
    }

    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        if is_onnx(path) {
            let net = crate::graph::onnx::from_bytes(path, bytes, None)?;
            return Ok(ScoreModel::Graph(Arc::new(ScoreNetwork::from_onnx(net, &MetadataOverrides::new())?)));
        }
        Self::from_file(&ModelFile::from_bytes(path, bytes)?)
    }

    fn from_file(file: &ModelFile) -> Result<Self> {
        if let Some(format) = file.meta_opt("format") {
            if format != "scorelens" {
                return Err(file.bad_meta("format", format!("{format:?}, expected \"scorelens\"")));
            }
        }
        match file.meta("arch")? {
            "mlp" => Ok(ScoreModel::Mlp(MlpModel::from_file(file)?)),
            "song-unet" => Ok(ScoreModel::Unet(UnetModel::from_file(file)?)),
            other => {
                Err(file
                    .bad_meta("arch", format!("unknown architecture {other:?} (expected \"mlp\" or \"song-unet\")")))
            }
        }
    }

    pub fn arch(&self) -> &'static str {
        match self {
            ScoreModel::Mlp(_) => "mlp",
            ScoreModel::Unet(_) => "song-unet",
            ScoreModel::Graph(_) => "graph",
        }
    }

    /// The shape of one input row, as X's trailing dimensions must be.
    pub fn row_shape(&self) -> Vec<usize> {
        match self {
            ScoreModel::Mlp(m) => vec![m.dim],
            ScoreModel::Unet(m) => vec![1, m.height, m.width],
            ScoreModel::Graph(n) => n.row_shape.clone(),
        }
    }

    /// D: entries of one input row.
    pub fn dim(&self) -> usize {
        self.row_shape().iter().product()
    }

    pub fn schedule(&self) -> NoiseSchedule {
        match self {
            ScoreModel::Mlp(m) => m.schedule,
            ScoreModel::Unet(m) => m.schedule,
            ScoreModel::Graph(n) => n.schedule,
        }
    }

    pub fn parameter_count(&self) -> usize {
        match self {
            ScoreModel::Mlp(m) => m.parameter_count(),
            ScoreModel::Unet(m) => m.parameter_count(),
            ScoreModel::Graph(n) => n.parameters,
        }
    }

    /// One line per property, for `scorelens info MODEL`.
    pub fn describe(&self) -> Vec<(String, String)> {
        if let ScoreModel::Graph(n) = self {
            return n.describe();
        }
        let mut rows = vec![
            ("arch".to_string(), self.arch().to_string()),
            ("schedule".to_string(), self.schedule().to_string()),
            ("input shape per row".to_string(), format!("{:?}", self.row_shape())),
            ("parameters".to_string(), self.parameter_count().to_string()),
        ];
        match self {
            ScoreModel::Mlp(m) => {
                rows.push(("activation".into(), m.act.to_string()));
                rows.push(("embed_dim".into(), m.embed_dim().to_string()));
                rows.push(("hidden".into(), format!("{:?}", m.hidden())));
                rows.push(("output_scale".into(), m.output_scale.name().into()));
            }
            ScoreModel::Unet(m) => {
                rows.push(("channels".into(), format!("{:?}", m.channels())));
                rows.push(("embed_dim".into(), m.embed_dim().to_string()));
                rows.push(("output_scale".into(), m.output_scale.name().into()));
                rows.push(("GFLOP per image".into(), format!("{:.4}", m.flops_per_image() / 1e9)));
            }
            ScoreModel::Graph(_) => unreachable!(),
        }
        rows
    }
}

pub(crate) fn parse_schedule(file: &ModelFile) -> Result<NoiseSchedule> {
    let positive = |key: &str| -> Result<f64> {
        let v = file.meta_f64(key)?;
        if v > 0.0 {
            Ok(v)
        } else {
            Err(file.bad_meta(key, format!("{v} must be positive")))
        }
    };
    match file.meta("schedule")? {
        "ve-song" => {
            let sigma = positive("sigma")?;
            if sigma == 1.0 {
                return Err(file.bad_meta("sigma", "1 makes std(t) = 0/0 (ve-song needs sigma ≠ 1)"));
            }
            Ok(NoiseSchedule::VeSong { sigma })
        }
        "ve" => {
            let (sigma_min, sigma_max) = (positive("sigma_min")?, positive("sigma_max")?);
            if sigma_max <= sigma_min {
                return Err(file.bad_meta("sigma_max", format!("{sigma_max} must exceed sigma_min {sigma_min}")));
            }
            Ok(NoiseSchedule::Ve { sigma_min, sigma_max })
        }
        "vp" => {
            let (beta_min, beta_max) = (positive("beta_min")?, positive("beta_max")?);
            if beta_max < beta_min {
                return Err(file.bad_meta("beta_max", format!("{beta_max} is below beta_min {beta_min}")));
            }
            Ok(NoiseSchedule::Vp { beta_min, beta_max })
        }
        other => {
            Err(file
                .bad_meta("schedule", format!("unknown schedule {other:?} (expected \"ve-song\", \"ve\" or \"vp\")")))
        }
    }
}

pub(crate) fn parse_output_scale(file: &ModelFile) -> Result<OutputScale> {
    match file.meta_opt("output_scale") {
        None | Some("inv_std") => Ok(OutputScale::InvStd),
        Some("none") => Ok(OutputScale::None),
        Some(other) => Err(file.bad_meta("output_scale", format!("{other:?}, expected \"inv_std\" or \"none\""))),
    }
}

pub(crate) fn schedule_metadata(schedule: &NoiseSchedule, scale: OutputScale, metadata: &mut HashMap<String, String>) {
    metadata.insert("schedule".into(), schedule.name().into());
    match *schedule {
        NoiseSchedule::VeSong { sigma } => {
            metadata.insert("sigma".into(), sigma.to_string());
        }
        NoiseSchedule::Ve { sigma_min, sigma_max } => {
            metadata.insert("sigma_min".into(), sigma_min.to_string());
            metadata.insert("sigma_max".into(), sigma_max.to_string());
        }
        NoiseSchedule::Vp { beta_min, beta_max } => {
            metadata.insert("beta_min".into(), beta_min.to_string());
            metadata.insert("beta_max".into(), beta_max.to_string());
        }
    }
    metadata.insert("output_scale".into(), scale.name().into());
}

/// `len` draws of shift + scale·N(0, 1) (random models for tests, benchmarks and demos).
pub fn normal_values(rng: &mut impl rand::Rng, len: usize, scale: f32, shift: f32) -> Vec<f32> {
    use rand_distr::{Distribution, StandardNormal};
    (0..len)
        .map(|_| {
            let z: f32 = StandardNormal.sample(rng);
            shift + scale * z
        })
        .collect()
}
