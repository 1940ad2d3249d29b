//! `arch = mlp`: the MLP score network of model-format.md.
//!
//! h0 = [x, e(t)], e(t) = [sin(2π W t), cos(2π W t)]; h(l+1) = act(W_l h(l) + b_l); out = W_L h(L) + b_L;
//! score = out / std(t) when output_scale = inv_std.

use std::collections::HashMap;

use crate::activation::Activation;
use crate::error::Result;
use crate::model::file::ModelFile;
use crate::model::schedule::NoiseSchedule;
use crate::model::{parse_output_scale, parse_schedule, OutputScale};

/// One `nn.Linear`: weight [out, in] row-major, bias [out].
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub inputs: usize,
    pub outputs: usize,
}

#[derive(Debug, Clone)]
pub struct MlpModel {
    /// D: entries of one input row.
    pub dim: usize,
    /// The Fourier frequencies W, [E/2].
    pub embed_w: Vec<f32>,
    pub layers: Vec<Linear>,
    pub act: Activation,
    pub schedule: NoiseSchedule,
    pub output_scale: OutputScale,
}

impl MlpModel {
    pub fn embed_dim(&self) -> usize {
        2 * self.embed_w.len()
    }

    pub fn hidden(&self) -> Vec<usize> {
        self.layers[..self.layers.len() - 1].iter().map(|l| l.outputs).collect()
    }

    pub fn parameter_count(&self) -> usize {
        self.embed_w.len() + self.layers.iter().map(|l| l.weight.len() + l.bias.len()).sum::<usize>()
    }

    /// Multiply-adds ×2 of one forward pass per row.
    pub fn flops_per_row(&self) -> f64 {
        self.layers.iter().map(|l| 2.0 * (l.inputs * l.outputs) as f64).sum()
    }

    /// e(t) = [sin(2π W t), cos(2π W t)] in f64, from the f32 weights and time.
    pub fn fourier_features(&self, t: f32) -> Vec<f64> {
        fourier_features(&self.embed_w, t)
    }

    /// The factor the network's output is multiplied by at time t (1/std(t) for inv_std).
    pub fn output_factor(&self, t: f32) -> f64 {
        match self.output_scale {
            OutputScale::InvStd => 1.0 / self.schedule.std(t as f64),
            OutputScale::None => 1.0,
        }
    }

    pub(crate) fn from_file(file: &ModelFile) -> Result<Self> {
        let act: Activation = {
            let raw = file.meta("act")?;
            raw.parse().map_err(|e: String| file.bad_meta("act", e))?
        };
        let schedule = parse_schedule(file)?;
        let output_scale = parse_output_scale(file)?;

        let (_, embed_w) = file.tensor("embed.W", &[None])?;
        let embed_dim = 2 * embed_w.len();
        if let Some(e) = file.meta_usize_opt("embed_dim")? {
            if e != embed_dim {
                return Err(file.bad_meta(
                    "embed_dim",
                    format!("says {e} but tensor `embed.W` has {} frequencies (embed_dim {embed_dim})", embed_w.len()),
                ));
            }
        }

        let mut layers = Vec::new();
        while file.has_tensor(&format!("layers.{}.weight", layers.len())) {
            let l = layers.len();
            let (shape, weight) = file.tensor(&format!("layers.{l}.weight"), &[None, None])?;
            let (outputs, inputs) = (shape[0], shape[1]);
            let (_, bias) = file.tensor(&format!("layers.{l}.bias"), &[Some(outputs)])?;
            layers.push(Linear { weight, bias, inputs, outputs });
        }
        if layers.is_empty() {
            return Err(file.bad_tensor("layers.0.weight", "missing (an mlp needs at least its output layer)"));
        }
        let dim = layers.last().map(|l| l.outputs).unwrap_or(0);
        if let Some(d) = file.meta_usize_opt("dim")? {
            if d != dim {
                let last = layers.len() - 1;
                return Err(file.bad_tensor(
                    &format!("layers.{last}.weight"),
                    format!("has {dim} outputs but metadata `dim` is {d}"),
                ));
            }
        }
        if dim == 0 {
            return Err(file.bad_meta("dim", "the model has zero output dimensions"));
        }
        if layers[0].inputs != dim + embed_dim {
            return Err(file.bad_tensor(
                "layers.0.weight",
                format!(
                    "shape [{}, {}], expected [{}, {}] (dim {dim} + embed_dim {embed_dim} inputs)",
                    layers[0].outputs,
                    layers[0].inputs,
                    layers[0].outputs,
                    dim + embed_dim
                ),
            ));
        }
        for l in 1..layers.len() {
            if layers[l].inputs != layers[l - 1].outputs {
                return Err(file.bad_tensor(
                    &format!("layers.{l}.weight"),
                    format!(
                        "shape [{}, {}], expected [{}, {}] (layer {} has {} outputs)",
                        layers[l].outputs,
                        layers[l].inputs,
                        layers[l].outputs,
                        layers[l - 1].outputs,
                        l - 1,
                        layers[l - 1].outputs
                    ),
                ));
            }
        }
        Ok(MlpModel { dim, embed_w, layers, act, schedule, output_scale })
    }

    /// A model with random weights: N(0, 1/fan_in) weights, N(0, 0.01) biases, N(0, 16) Fourier frequencies.
    /// For tests, benchmarks and demos; the same seed gives the same model on every machine.
    pub fn random(
        seed: u64,
        dim: usize,
        hidden: &[usize],
        embed_dim: usize,
        act: Activation,
        schedule: NoiseSchedule,
    ) -> Self {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut normal = |len: usize, scale: f32| crate::model::normal_values(&mut rng, len, scale, 0.0);
        let mut widths = vec![dim + embed_dim];
        widths.extend_from_slice(hidden);
        widths.push(dim);
        let layers = widths
            .windows(2)
            .map(|w| Linear {
                weight: normal(w[0] * w[1], (1.0 / w[0] as f32).sqrt()),
                bias: normal(w[1], 0.1),
                inputs: w[0],
                outputs: w[1],
            })
            .collect();
        let embed_w = normal(embed_dim / 2, 4.0);
        MlpModel { dim, embed_w, layers, act, schedule, output_scale: OutputScale::InvStd }
    }

    /// The model as a safetensors file, metadata included (for tests, demos and exports).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let mut tensors: Vec<(String, Vec<usize>, &[f32])> =
            vec![("embed.W".into(), vec![self.embed_w.len()], &self.embed_w)];
        for (l, layer) in self.layers.iter().enumerate() {
            tensors.push((format!("layers.{l}.weight"), vec![layer.outputs, layer.inputs], &layer.weight));
            tensors.push((format!("layers.{l}.bias"), vec![layer.outputs], &layer.bias));
        }
        let mut metadata: HashMap<String, String> = HashMap::new();
        metadata.insert("format".into(), "scorelens".into());
        metadata.insert("arch".into(), "mlp".into());
        metadata.insert("act".into(), self.act.name().into());
        metadata.insert("dim".into(), self.dim.to_string());
        metadata.insert("embed_dim".into(), self.embed_dim().to_string());
        metadata.insert("hidden".into(), format!("{:?}", self.hidden()));
        crate::model::schedule_metadata(&self.schedule, self.output_scale, &mut metadata);
        crate::model::file::serialize_f32(tensors, metadata)
    }
}

/// e(t) = [sin(2π W t), cos(2π W t)] in f64 from f32 W and t, the sin block first.
pub fn fourier_features(w: &[f32], t: f32) -> Vec<f64> {
    let t = t as f64;
    let phases: Vec<f64> = w.iter().map(|&w| 2.0 * std::f64::consts::PI * w as f64 * t).collect();
    phases.iter().map(|p| p.sin()).chain(phases.iter().map(|p| p.cos())).collect()
}
