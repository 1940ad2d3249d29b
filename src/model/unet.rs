//! `arch = song-unet`: the ScoreNet U-Net of Song et al.'s tutorial (model-format.md; analyses.md §6).
//!
//! Encoder: h_k = silu(GN_k(conv_k(h_{k−1}) + dense_k(e))), valid 3×3 convolutions without bias, strides 1, 2, 2, 2.
//! Decoder: transposed 3×3 convolutions on [decoder, skip] channel concatenations, strides 2, 2, 2, 1; the last
//! (tconv1) has a bias and no norm. e = silu(embed.1(GFP(t))). score = out / std(t).
//! Shapes are read off the tensors: `channels` and `embed_dim` in the metadata are checked, not trusted.

use crate::error::Result;
use crate::model::file::ModelFile;
use crate::model::mlp::fourier_features;
use crate::model::{parse_output_scale, parse_schedule, NoiseSchedule, OutputScale};

/// A 3×3 (transposed) convolution as PyTorch stores it: Conv2d [out, in, 3, 3], ConvTranspose2d [in, out, 3, 3].
#[derive(Debug, Clone)]
pub struct Conv {
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub inputs: usize,
    pub outputs: usize,
    pub stride: usize,
    pub transposed: bool,
    pub output_padding: usize,
}

#[derive(Debug, Clone)]
pub struct GroupNorm {
    pub groups: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// `nn.Linear`: weight [out, in], bias [out] (the dense layers of the time path).
pub type Dense = crate::model::mlp::Linear;

/// One block: convolution, + dense(e) per channel, then (except the last) GroupNorm and SiLU.
#[derive(Debug, Clone)]
pub struct Block {
    pub name: &'static str,
    pub conv: Conv,
    pub dense: Option<Dense>,
    pub norm: Option<GroupNorm>,
}

pub const KERNEL: usize = 3;

/// Which encoder block's output each block concatenates after its own input (blocks in execution order: conv1..4,
/// tconv4, tconv3, tconv2, tconv1).
pub const SKIP_OF: [Option<usize>; 8] = [None, None, None, None, None, Some(2), Some(1), Some(0)];
pub const GN_EPS: f64 = 1e-5;

#[derive(Debug, Clone)]
pub struct UnetModel {
    /// Input images are [1, 28, 28].
    pub height: usize,
    pub width: usize,
    /// GFP frequencies W, [embed_dim / 2].
    pub embed_w: Vec<f32>,
    /// embed.1: [embed_dim, embed_dim].
    pub embed_dense: Dense,
    /// conv1..conv4 then tconv4, tconv3, tconv2, tconv1, in execution order.
    pub blocks: Vec<Block>,
    pub schedule: NoiseSchedule,
    pub output_scale: OutputScale,
}

/// Spatial size after a valid 3×3 convolution or a transposed one.
pub fn conv_output_size(input: usize, stride: usize, transposed: bool, output_padding: usize) -> usize {
    if transposed {
        (input - 1) * stride + KERNEL + output_padding
    } else {
        (input - KERNEL) / stride + 1
    }
}

impl UnetModel {
    pub fn embed_dim(&self) -> usize {
        self.embed_dense.outputs
    }

    pub fn channels(&self) -> Vec<usize> {
        self.blocks[..4].iter().map(|b| b.conv.outputs).collect()
    }

    pub fn dim(&self) -> usize {
        self.height * self.width
    }

    pub fn parameter_count(&self) -> usize {
        let dense = |d: &Dense| d.weight.len() + d.bias.len();
        self.embed_w.len()
            + dense(&self.embed_dense)
            + self
                .blocks
                .iter()
                .map(|b| {
                    b.conv.weight.len()
                        + b.conv.bias.as_ref().map_or(0, Vec::len)
                        + b.dense.as_ref().map_or(0, dense)
                        + b.norm.as_ref().map_or(0, |n| n.weight.len() + n.bias.len())
                })
                .sum::<usize>()
    }

    /// Spatial sizes (height, width) of each block's input and output, in execution order.
    pub fn block_sizes(&self) -> Vec<((usize, usize), (usize, usize))> {
        let mut sizes = Vec::new();
        let mut hw = (self.height, self.width);
        for b in &self.blocks {
            let c = &b.conv;
            let out = (
                conv_output_size(hw.0, c.stride, c.transposed, c.output_padding),
                conv_output_size(hw.1, c.stride, c.transposed, c.output_padding),
            );
            sizes.push((hw, out));
            hw = out;
        }
        sizes
    }

    /// FLOPs (2 × multiply-adds) of one forward pass of one image, counting only taps that exist.
    pub fn flops_per_image(&self) -> f64 {
        let mut flops = 2.0 * (self.embed_dense.inputs * self.embed_dense.outputs) as f64;
        for (b, (input, output)) in self.blocks.iter().zip(self.block_sizes()) {
            let c = &b.conv;
            let taps = (KERNEL * KERNEL * c.inputs * c.outputs) as f64;
            let pixels = if c.transposed { input.0 * input.1 } else { output.0 * output.1 };
            flops += 2.0 * taps * pixels as f64;
            if let Some(d) = &b.dense {
                flops += 2.0 * (d.inputs * d.outputs) as f64;
            }
        }
        flops
    }

    pub fn fourier_features(&self, t: f32) -> Vec<f64> {
        fourier_features(&self.embed_w, t)
    }

    pub fn output_factor(&self, t: f32) -> f64 {
        match self.output_scale {
            OutputScale::InvStd => 1.0 / self.schedule.std(t as f64),
            OutputScale::None => 1.0,
        }
    }

    /// A U-Net with random weights for the given encoder channels (multiples of 32, as its GroupNorms need) and
    /// embedding width; GroupNorm affine parameters are perturbed away from (1, 0). For tests and benchmarks.
    pub fn random(seed: u64, channels: [usize; 4], embed_dim: usize, schedule: NoiseSchedule) -> Self {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut normal = |len: usize, scale: f32, shift: f32| crate::model::normal_values(&mut rng, len, scale, shift);
        let mut dense = |inputs: usize, outputs: usize| Dense {
            weight: normal(inputs * outputs, (1.0 / inputs as f32).sqrt(), 0.0),
            bias: normal(outputs, 0.1, 0.0),
            inputs,
            outputs,
        };
        let embed_dense = dense(embed_dim, embed_dim);
        let dense_layers: Vec<Dense> =
            [channels[0], channels[1], channels[2], channels[3], channels[2], channels[1], channels[0]]
                .iter()
                .map(|&c| dense(embed_dim, c))
                .collect();
        let mut normal = |len: usize, scale: f32, shift: f32| crate::model::normal_values(&mut rng, len, scale, shift);
        let ch = channels;
        // (name, inputs, outputs, stride, transposed, output_padding, groups or 0, has bias)
        let specs: [(&'static str, usize, usize, usize, bool, usize, usize, bool); 8] = [
            ("conv1", 1, ch[0], 1, false, 0, 4, false),
            ("conv2", ch[0], ch[1], 2, false, 0, 32, false),
            ("conv3", ch[1], ch[2], 2, false, 0, 32, false),
            ("conv4", ch[2], ch[3], 2, false, 0, 32, false),
            ("tconv4", ch[3], ch[2], 2, true, 0, 32, false),
            ("tconv3", 2 * ch[2], ch[1], 2, true, 1, 32, false),
            ("tconv2", 2 * ch[1], ch[0], 2, true, 1, 32, false),
            ("tconv1", 2 * ch[0], 1, 1, true, 0, 0, true),
        ];
        let mut dense_layers = dense_layers.into_iter();
        let blocks = specs
            .iter()
            .map(|&(name, inputs, outputs, stride, transposed, output_padding, groups, has_bias)| {
                let conv = Conv {
                    weight: normal(
                        inputs * outputs * KERNEL * KERNEL,
                        (1.0 / (inputs * KERNEL * KERNEL) as f32).sqrt(),
                        0.0,
                    ),
                    bias: has_bias.then(|| normal(outputs, 0.1, 0.0)),
                    inputs,
                    outputs,
                    stride,
                    transposed,
                    output_padding,
                };
                let norm = (groups > 0).then(|| GroupNorm {
                    groups,
                    weight: normal(outputs, 0.2, 1.0),
                    bias: normal(outputs, 0.2, 0.0),
                });
                let dense = if has_bias { None } else { dense_layers.next() };
                Block { name, conv, dense, norm }
            })
            .collect();
        UnetModel {
            height: 28,
            width: 28,
            embed_w: normal(embed_dim / 2, 30.0, 0.0),
            embed_dense,
            blocks,
            schedule,
            output_scale: OutputScale::InvStd,
        }
    }

    pub(crate) fn from_file(file: &ModelFile) -> Result<Self> {
        let schedule = parse_schedule(file)?;
        let output_scale = parse_output_scale(file)?;
        let (_, embed_w) = file.tensor("embed.0.W", &[None])?;
        let embed_dim = 2 * embed_w.len();
        if let Some(e) = file.meta_usize_opt("embed_dim")? {
            if e != embed_dim {
                return Err(file.bad_meta(
                    "embed_dim",
                    format!("says {e} but `embed.0.W` has {} frequencies (embed_dim {embed_dim})", embed_w.len()),
                ));
            }
        }
        let dense = |name: &str, inputs: usize, outputs: Option<usize>| -> Result<Dense> {
            let (shape, weight) = file.tensor(&format!("{name}.weight"), &[outputs, Some(inputs)])?;
            let (_, bias) = file.tensor(&format!("{name}.bias"), &[Some(shape[0])])?;
            Ok(Dense { weight, bias, inputs, outputs: shape[0] })
        };
        let embed_dense = dense("embed.1", embed_dim, Some(embed_dim))?;

        let conv = |name: &str,
                    inputs: usize,
                    outputs: Option<usize>,
                    stride: usize,
                    transposed: bool,
                    output_padding: usize,
                    with_bias: bool|
         -> Result<Conv> {
            let tensor = format!("{name}.weight");
            let k = Some(KERNEL);
            let (shape, weight) = if transposed {
                file.tensor(&tensor, &[Some(inputs), outputs, k, k])?
            } else {
                file.tensor(&tensor, &[outputs, Some(inputs), k, k])?
            };
            let outputs = if transposed { shape[1] } else { shape[0] };
            let bias = if with_bias { Some(file.tensor(&format!("{name}.bias"), &[Some(outputs)])?.1) } else { None };
            Ok(Conv { weight, bias, inputs, outputs, stride, transposed, output_padding })
        };
        let norm = |name: &str, channels: usize, groups: usize| -> Result<GroupNorm> {
            if channels % groups != 0 {
                return Err(file.bad_tensor(
                    &format!("{name}.weight"),
                    format!("{channels} channels cannot form {groups} groups"),
                ));
            }
            let (_, weight) = file.tensor(&format!("{name}.weight"), &[Some(channels)])?;
            let (_, bias) = file.tensor(&format!("{name}.bias"), &[Some(channels)])?;
            Ok(GroupNorm { groups, weight, bias })
        };

        // Encoder: channel counts come from the tensors.
        let mut blocks = Vec::new();
        let mut input_channels = 1;
        let encoder: [(&'static str, &str, &str, usize, usize); 4] = [
            ("conv1", "dense1", "gnorm1", 1, 4),
            ("conv2", "dense2", "gnorm2", 2, 32),
            ("conv3", "dense3", "gnorm3", 2, 32),
            ("conv4", "dense4", "gnorm4", 2, 32),
        ];
        for (name, dense_name, norm_name, stride, groups) in encoder {
            let c = conv(name, input_channels, None, stride, false, 0, false)?;
            let d = dense(&format!("{dense_name}.dense"), embed_dim, Some(c.outputs))?;
            let n = norm(norm_name, c.outputs, groups)?;
            input_channels = c.outputs;
            blocks.push(Block { name, conv: c, dense: Some(d), norm: Some(n) });
        }
        let ch: Vec<usize> = blocks.iter().map(|b| b.conv.outputs).collect();
        if let Some(raw) = file.meta_opt("channels") {
            let parsed: Option<Vec<usize>> = serde_json::from_str(raw).ok();
            if parsed.as_deref() != Some(&ch[..]) {
                return Err(file.bad_meta("channels", format!("says {raw} but the encoder's tensors have {ch:?}")));
            }
        }
        // Decoder: tconv4 on h4; then each on [h, skip].
        let decoder: [(&'static str, Option<&str>, Option<&str>, usize, usize, usize, Option<usize>); 4] = [
            ("tconv4", Some("dense5"), Some("tgnorm4"), ch[3], 2, 0, Some(ch[2])),
            ("tconv3", Some("dense6"), Some("tgnorm3"), 2 * ch[2], 2, 1, Some(ch[1])),
            ("tconv2", Some("dense7"), Some("tgnorm2"), 2 * ch[1], 2, 1, Some(ch[0])),
            ("tconv1", None, None, 2 * ch[0], 1, 0, Some(1)),
        ];
        for (name, dense_name, norm_name, inputs, stride, output_padding, outputs) in decoder {
            let last = dense_name.is_none();
            let c = conv(name, inputs, outputs, stride, true, output_padding, last)?;
            let d = dense_name.map(|n| dense(&format!("{n}.dense"), embed_dim, Some(c.outputs))).transpose()?;
            let n = norm_name.map(|n| norm(n, c.outputs, 32)).transpose()?;
            blocks.push(Block { name, conv: c, dense: d, norm: n });
        }
        let model = UnetModel { height: 28, width: 28, embed_w, embed_dense, blocks, schedule, output_scale };
        // The skip connections must meet their decoder outputs at the same size.
        let sizes = model.block_sizes();
        for (decoder, encoder) in [(4usize, 2usize), (5, 1), (6, 0)] {
            if sizes[decoder].1 != sizes[encoder].1 {
                return Err(file.bad_tensor(
                    &format!("{}.weight", model.blocks[decoder].name),
                    format!(
                        "output {:?} does not meet the skip from {} of size {:?}",
                        sizes[decoder].1, model.blocks[encoder].name, sizes[encoder].1
                    ),
                ));
            }
        }
        Ok(model)
    }
}
