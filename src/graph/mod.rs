//! The network engine: any score network as a graph of primitive ops (ir), imported from ONNX (onnx) or built
//! for the built-in architectures, with forward and reverse mode by graph transformation (linearize) and one
//! executor on the GPU (exec) whose f64 twin is crate::reference::graph.
//!
//! A network's raw output becomes the score through an affine map per row, s = a(t) · out + b(t) · x, appended to
//! the graph as two per-row inputs, so scores, J·V and Jᵀ·U all follow it exactly.

pub mod attention;
pub mod builtin;
pub mod exec;
pub mod fuse;
pub mod ir;
pub mod layout;
pub mod linearize;
pub mod onnx;
mod uses;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::graph::ir::{Graph, Op, Stream};
use crate::graph::linearize::Linearized;
use crate::model::NoiseSchedule;
use crate::ops::graph::BinaryOp;

/// What the network outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parameterization {
    /// The score itself.
    Score,
    /// The noise ε of x = α x₀ + std ε: s = −ε / std.
    Epsilon,
    /// The denoiser D ≈ E[x₀ | x]: s = (α D − x) / std².
    Denoiser,
    /// v = α ε − std x₀ (Salimans & Ho): ε = (α v + std x) / (α² + std²), s = −ε / std.
    V,
}

impl Parameterization {
    pub const NAMES: &'static str = "\"score\", \"epsilon\", \"denoiser\" or \"v\"";

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "score" => Parameterization::Score,
            "epsilon" | "eps" => Parameterization::Epsilon,
            "denoiser" | "x0" => Parameterization::Denoiser,
            "v" => Parameterization::V,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Parameterization::Score => "score",
            Parameterization::Epsilon => "epsilon",
            Parameterization::Denoiser => "denoiser",
            Parameterization::V => "v",
        }
    }

    /// Whether s depends on x besides the network output (b ≠ 0 in [`Parameterization::affine`]).
    pub fn shifts(self) -> bool {
        matches!(self, Parameterization::Denoiser | Parameterization::V)
    }

    /// (a, b) with s = a · out + b · x at noise level (α, std). For v with α² + std² ≠ 1 (VE schedules) the general
    /// form ε = (α v + std x)/(α² + std²) is used, which reduces to α v + std x on variance-preserving schedules.
    pub fn affine(self, alpha: f64, std: f64) -> (f64, f64) {
        match self {
            Parameterization::Score => (1.0, 0.0),
            Parameterization::Epsilon => (-1.0 / std, 0.0),
            Parameterization::Denoiser => (alpha / (std * std), -1.0 / (std * std)),
            Parameterization::V => {
                let norm = alpha * alpha + std * std;
                (-alpha / (std * norm), -1.0 / norm)
            }
        }
    }
}

/// What the network's second input receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeInput {
    /// The diffusion time t.
    T,
    /// The noise level std(t).
    Sigma,
    /// EDM's c_noise = ln(std(t)) / 4.
    CNoise,
    /// ln std(t).
    LogSigma,
}

impl TimeInput {
    pub const NAMES: &'static str = "\"t\", \"sigma\", \"c_noise\" or \"log_sigma\"";

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "t" => TimeInput::T,
            "sigma" => TimeInput::Sigma,
            "c_noise" => TimeInput::CNoise,
            "log_sigma" => TimeInput::LogSigma,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            TimeInput::T => "t",
            TimeInput::Sigma => "sigma",
            TimeInput::CNoise => "c_noise",
            TimeInput::LogSigma => "log_sigma",
        }
    }

    pub fn value(self, schedule: &NoiseSchedule, t: f64) -> f64 {
        match self {
            TimeInput::T => t,
            TimeInput::Sigma => schedule.std(t),
            TimeInput::CNoise => 0.25 * schedule.std(t).ln(),
            TimeInput::LogSigma => schedule.std(t).ln(),
        }
    }
}

/// Settings that a model file carries in its metadata and that command-line flags (or library callers) override:
/// keys without the `scorelens.` prefix (`parameterization`, `time_input`, `schedule`, `sigma`, …).
pub type MetadataOverrides = HashMap<String, String>;

/// A score network on the host: its graph with the score conversion appended and its derivative programs.
#[derive(Debug, Clone)]
pub struct ScoreNetwork {
    pub path: PathBuf,
    /// Where the graph came from (`onnx`, `mlp`, `song-unet`).
    pub source: &'static str,
    pub schedule: NoiseSchedule,
    pub parameterization: Parameterization,
    pub time_input: TimeInput,
    /// Per-row shape of x.
    pub row_shape: Vec<usize>,
    /// Inputs: x, the time input, then a (and b) of the score conversion (per-row scalars).
    pub program: Linearized,
    /// Weights in the network.
    pub parameters: usize,
    /// The ONNX metadata as read, for `info`.
    pub metadata: HashMap<String, String>,
    /// The Gaussian Fourier frequencies W of a built-in architecture: its time input is then the row
    /// e(t) = [sin(2π W t), cos(2π W t)], computed on the host in f64 from the f32 W and t (exact to f32 rounding,
    /// whatever the driver's sin) rather than by the network.
    pub time_features: Option<Vec<f32>>,
}

impl ScoreNetwork {
    /// Reads an ONNX score network; `overrides` replace the file's `scorelens.*` metadata.
    pub fn load_onnx(path: &Path, overrides: &MetadataOverrides) -> Result<Self> {
        let net = onnx::load(path, None)?;
        Self::from_onnx(net, overrides)
    }

    pub fn from_onnx(net: onnx::OnnxNetwork, overrides: &MetadataOverrides) -> Result<Self> {
        let path = net.path.clone();
        let lookup = |key: &str| -> Option<String> {
            overrides.get(key).cloned().or_else(|| net.metadata.get(&format!("scorelens.{key}")).cloned())
        };
        let missing = |key: &str, values: &str| Error::BadMetadata {
            path: path.clone(),
            key: format!("scorelens.{key}"),
            message: format!(
                "missing: say what the network is with the metadata key scorelens.{key} or the {key} setting \
                     (--{} {values})",
                key.replace('_', "-")
            ),
        };
        let bad = |key: &str, message: String| Error::BadMetadata {
            path: path.clone(),
            key: format!("scorelens.{key}"),
            message,
        };
        let parameterization = match lookup("parameterization") {
            None => return Err(missing("parameterization", Parameterization::NAMES)),
            Some(p) => Parameterization::parse(&p)
                .ok_or_else(|| bad("parameterization", format!("{p:?}, expected {}", Parameterization::NAMES)))?,
        };
        let time_input = match lookup("time_input") {
            None => TimeInput::T,
            Some(p) => TimeInput::parse(&p)
                .ok_or_else(|| bad("time_input", format!("{p:?}, expected {}", TimeInput::NAMES)))?,
        };
        let schedule = schedule_from(&path, &lookup)?;
        Self::from_graph(path, "onnx", net.graph, schedule, parameterization, time_input, net.metadata)
    }

    /// Wraps a network graph (inputs x and the time input) with the score conversion and derives its programs.
    pub fn from_graph(
        path: PathBuf,
        source: &'static str,
        mut graph: Graph,
        schedule: NoiseSchedule,
        parameterization: Parameterization,
        time_input: TimeInput,
        metadata: HashMap<String, String>,
    ) -> Result<Self> {
        let x = graph.inputs[0];
        let row_shape = graph.values[x].shape.clone();
        let parameters = graph.parameter_count();
        if parameterization != Parameterization::Score {
            let scalar = vec![1usize; row_shape.len()];
            let a = graph.add_value("score/a", scalar.clone(), Stream::Primal);
            graph.inputs.push(a);
            let out = graph.output;
            graph.output = graph.add_node("score", Op::Binary(BinaryOp::Mul), vec![out, a], row_shape.clone());
            // ε-predictors have b = 0: no b · x term to compute (or to differentiate).
            if parameterization.shifts() {
                let b = graph.add_value("score/b", scalar, Stream::Primal);
                graph.inputs.push(b);
                let scaled = graph.output;
                let shift = graph.add_node("score", Op::Binary(BinaryOp::Mul), vec![x, b], row_shape.clone());
                graph.output =
                    graph.add_node("score", Op::Binary(BinaryOp::Add), vec![scaled, shift], row_shape.clone());
            }
        }
        let program = linearize::linearize(graph).map_err(|e| match e {
            Error::InvalidArgument(m) => Error::bad_file(&path, m),
            other => other,
        })?;
        Ok(ScoreNetwork {
            path,
            source,
            schedule,
            parameterization,
            time_input,
            row_shape,
            program,
            parameters,
            metadata,
            time_features: None,
        })
    }

    pub fn dim(&self) -> usize {
        self.row_shape.iter().product()
    }

    pub fn graph(&self) -> &Graph {
        &self.program.graph
    }

    /// The per-row primal inputs besides x, for rows whose times are `t` (one per row), each flattened over the
    /// rows: the time input (a scalar, or the Fourier features of a built-in), then a (and b) when the output needs
    /// converting.
    pub fn row_inputs(&self, t: &[f64]) -> Vec<Vec<f64>> {
        let time: Vec<f64> = match &self.time_features {
            // The times arrive as f32 widened to f64: the features are those of the f32 time, as the built-in
            // architectures define them.
            Some(w) => t.iter().flat_map(|&t| crate::model::mlp::fourier_features(w, t as f32)).collect(),
            None => t.iter().map(|&t| self.time_input.value(&self.schedule, t)).collect(),
        };
        let mut inputs = vec![time];
        if self.parameterization != Parameterization::Score {
            let (mut a, mut b) = (Vec::with_capacity(t.len()), Vec::with_capacity(t.len()));
            for &t in t {
                let (ai, bi) = self.parameterization.affine(self.schedule.alpha(t), self.schedule.std(t));
                a.push(ai);
                b.push(bi);
            }
            inputs.push(a);
            if self.parameterization.shifts() {
                inputs.push(b);
            }
        }
        inputs
    }

    /// Whether s is piecewise linear in x: every node that depends on x is linear in it or a ReLU-family unit
    /// (finite differences then have no truncation error between kinks).
    /// Which values of the network depend on x.
    pub fn active_values(&self) -> Vec<bool> {
        let g = self.graph();
        let mut active = vec![false; g.values.len()];
        active[g.inputs[0]] = true;
        for &n in &self.program.primal {
            let node = &g.nodes[n];
            if node.inputs.iter().any(|&i| active[i]) {
                active[node.output] = true;
            }
        }
        active
    }

    pub fn is_piecewise_linear(&self) -> bool {
        use crate::ops::graph::UnaryFn;
        let g = self.graph();
        let active = self.active_values();
        for &n in &self.program.primal {
            let node = &g.nodes[n];
            let hits: Vec<bool> = node.inputs.iter().map(|&i| active[i]).collect();
            if !hits.iter().any(|&h| h) {
                continue;
            }
            let linear = match &node.op {
                Op::Unary { f, .. } => matches!(
                    f,
                    UnaryFn::Relu
                        | UnaryFn::LeakyRelu(_)
                        | UnaryFn::Abs
                        | UnaryFn::Neg
                        | UnaryFn::Scale(_)
                        | UnaryFn::Identity
                ),
                Op::Binary(BinaryOp::Add | BinaryOp::Sub) => true,
                Op::Binary(BinaryOp::Mul) => hits.iter().filter(|&&h| h).count() == 1,
                Op::Binary(BinaryOp::Div) => !hits[1],
                Op::Binary(BinaryOp::Pow) => false,
                Op::Reshape | Op::Linear(_) | Op::Conv(_) => true,
                Op::MatMul(_) => hits.iter().filter(|&&h| h).count() == 1,
                _ => false,
            };
            if !linear {
                return false;
            }
        }
        true
    }

    /// FLOPs of one forward pass of one row.
    pub fn flops_per_row(&self) -> f64 {
        self.program.graph.flops_per_row(&self.program.primal)
    }

    /// One line per property, for `scorelens info MODEL`.
    pub fn describe(&self) -> Vec<(String, String)> {
        let g = self.graph();
        let mut ops: Vec<(&str, usize)> = Vec::new();
        for &n in &self.program.primal {
            let kind = g.nodes[n].op.kind();
            match ops.iter_mut().find(|(k, _)| *k == kind) {
                Some(e) => e.1 += 1,
                None => ops.push((kind, 1)),
            }
        }
        vec![
            ("arch".into(), format!("graph ({})", self.source)),
            ("schedule".into(), self.schedule.to_string()),
            ("parameterization".into(), self.parameterization.name().into()),
            ("time input".into(), self.time_input.name().into()),
            ("input shape per row".into(), format!("{:?}", self.row_shape)),
            ("parameters".into(), self.parameters.to_string()),
            ("primitive ops".into(), ops.iter().map(|(k, c)| format!("{k} ×{c}")).collect::<Vec<_>>().join(", ")),
            ("GFLOP per row".into(), format!("{:.4}", self.flops_per_row() / 1e9)),
        ]
    }
}

/// The noise schedule from metadata keys (without the `scorelens.` prefix).
pub fn schedule_from(path: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<NoiseSchedule> {
    let bad = |key: &str, message: String| Error::BadMetadata {
        path: path.to_path_buf(),
        key: format!("scorelens.{key}"),
        message,
    };
    let number = |key: &str| -> Result<f64> {
        let text = lookup(key)
            .ok_or_else(|| bad(key, format!("missing: the schedule needs {key} (--{})", key.replace('_', "-"))))?;
        let v: f64 = text.trim().parse().map_err(|_| bad(key, format!("{text:?} is not a number")))?;
        if v > 0.0 && v.is_finite() {
            Ok(v)
        } else {
            Err(bad(key, format!("{v} must be positive")))
        }
    };
    let Some(name) = lookup("schedule") else {
        return Err(bad(
            "schedule",
            "missing: say which noise process the network was trained for with the metadata key scorelens.schedule or \
             the schedule setting (--schedule ve-song|ve|vp, with --sigma, --sigma-min/--sigma-max or --beta-min/--beta-max)"
                .into(),
        ));
    };
    match name.as_str() {
        "ve-song" => {
            let sigma = number("sigma")?;
            if sigma == 1.0 {
                return Err(bad("sigma", "1 makes std(t) = 0/0 (ve-song needs sigma ≠ 1)".into()));
            }
            Ok(NoiseSchedule::VeSong { sigma })
        }
        "ve" => {
            let (lo, hi) = (number("sigma_min")?, number("sigma_max")?);
            if hi <= lo {
                return Err(bad("sigma_max", format!("{hi} must exceed sigma_min {lo}")));
            }
            Ok(NoiseSchedule::Ve { sigma_min: lo, sigma_max: hi })
        }
        "vp" => {
            let (lo, hi) = (number("beta_min")?, number("beta_max")?);
            if hi < lo {
                return Err(bad("beta_max", format!("{hi} is below beta_min {lo}")));
            }
            Ok(NoiseSchedule::Vp { beta_min: lo, beta_max: hi })
        }
        other => Err(bad("schedule", format!("unknown schedule {other:?} (expected \"ve-song\", \"ve\" or \"vp\")"))),
    }
}
