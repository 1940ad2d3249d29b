//! f64 reference of the Song U-Net forward and its layers, in PyTorch's own layouts (NCHW activations, Conv2d
//! weights [out, in, 3, 3], ConvTranspose2d weights [in, out, 3, 3]), written from the spec and independent of the
//! GPU path's NHWC layout and weight reordering.

use crate::model::unet::{UnetModel, GN_EPS, KERNEL};

/// A batch of NCHW activations in f64.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f64>,
}

impl Tensor {
    pub fn zeros(batch: usize, channels: usize, height: usize, width: usize) -> Self {
        Tensor { batch, channels, height, width, data: vec![0.0; batch * channels * height * width] }
    }

    pub fn at(&self, b: usize, c: usize, h: usize, w: usize) -> f64 {
        self.data[((b * self.channels + c) * self.height + h) * self.width + w]
    }

    fn at_mut(&mut self, b: usize, c: usize, h: usize, w: usize) -> &mut f64 {
        &mut self.data[((b * self.channels + c) * self.height + h) * self.width + w]
    }

    /// The same values in NHWC order.
    pub fn to_nhwc(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.data.len());
        for b in 0..self.batch {
            for h in 0..self.height {
                for w in 0..self.width {
                    for c in 0..self.channels {
                        out.push(self.at(b, c, h, w));
                    }
                }
            }
        }
        out
    }

    /// Channel concatenation [self, other].
    pub fn concat(&self, other: &Tensor) -> Tensor {
        let mut out = Tensor::zeros(self.batch, self.channels + other.channels, self.height, self.width);
        for b in 0..self.batch {
            for (c, src) in (0..self.channels)
                .map(|c| (c, (self, c)))
                .chain((0..other.channels).map(|c| (self.channels + c, (other, c))))
            {
                for h in 0..self.height {
                    for w in 0..self.width {
                        *out.at_mut(b, c, h, w) = src.0.at(b, src.1, h, w);
                    }
                }
            }
        }
        out
    }
}

/// Conv2d, 3×3, no padding, no bias: weight [out, in, 3, 3].
pub fn conv2d(x: &Tensor, weight: &[f32], outputs: usize, stride: usize) -> Tensor {
    let ho = (x.height - KERNEL) / stride + 1;
    let wo = (x.width - KERNEL) / stride + 1;
    let mut out = Tensor::zeros(x.batch, outputs, ho, wo);
    for b in 0..x.batch {
        for co in 0..outputs {
            for i in 0..ho {
                for j in 0..wo {
                    let mut acc = 0.0;
                    for ci in 0..x.channels {
                        for kh in 0..KERNEL {
                            for kw in 0..KERNEL {
                                let w = weight[((co * x.channels + ci) * KERNEL + kh) * KERNEL + kw] as f64;
                                acc += w * x.at(b, ci, i * stride + kh, j * stride + kw);
                            }
                        }
                    }
                    *out.at_mut(b, co, i, j) = acc;
                }
            }
        }
    }
    out
}

/// ConvTranspose2d, 3×3, padding 0, no bias: weight [in, out, 3, 3]; out[ho = hi·S + kh] += x[hi] · w.
pub fn conv_transpose2d(x: &Tensor, weight: &[f32], outputs: usize, stride: usize, output_padding: usize) -> Tensor {
    let ho = (x.height - 1) * stride + KERNEL + output_padding;
    let wo = (x.width - 1) * stride + KERNEL + output_padding;
    let mut out = Tensor::zeros(x.batch, outputs, ho, wo);
    for b in 0..x.batch {
        for ci in 0..x.channels {
            for i in 0..x.height {
                for j in 0..x.width {
                    let v = x.at(b, ci, i, j);
                    for co in 0..outputs {
                        for kh in 0..KERNEL {
                            for kw in 0..KERNEL {
                                let w = weight[((ci * outputs + co) * KERNEL + kh) * KERNEL + kw] as f64;
                                *out.at_mut(b, co, i * stride + kh, j * stride + kw) += v * w;
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// x[b, c] += per_sample[b][c] (the dense(e) term broadcast over pixels).
pub fn add_per_channel(x: &mut Tensor, per_sample: &[Vec<f64>]) {
    for b in 0..x.batch {
        for c in 0..x.channels {
            for h in 0..x.height {
                for w in 0..x.width {
                    *x.at_mut(b, c, h, w) += per_sample[b][c];
                }
            }
        }
    }
}

/// GroupNorm with biased variance, eps, affine.
pub fn group_norm(x: &Tensor, groups: usize, gamma: &[f32], beta: &[f32], eps: f64) -> Tensor {
    let mut out = x.clone();
    let cg = x.channels / groups;
    let n = (cg * x.height * x.width) as f64;
    for b in 0..x.batch {
        for g in 0..groups {
            let values = || {
                (g * cg..(g + 1) * cg)
                    .flat_map(move |c| (0..x.height).flat_map(move |h| (0..x.width).map(move |w| x.at(b, c, h, w))))
            };
            let mean = values().sum::<f64>() / n;
            let var = values().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            let rstd = 1.0 / (var + eps).sqrt();
            for c in g * cg..(g + 1) * cg {
                for h in 0..x.height {
                    for w in 0..x.width {
                        *out.at_mut(b, c, h, w) = (x.at(b, c, h, w) - mean) * rstd * gamma[c] as f64 + beta[c] as f64;
                    }
                }
            }
        }
    }
    out
}

pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

pub fn silu_tensor(mut x: Tensor) -> Tensor {
    x.data.iter_mut().for_each(|v| *v = silu(*v));
    x
}

/// y = W x + b with W [out, in].
pub fn linear(x: &[f64], weight: &[f32], bias: &[f32]) -> Vec<f64> {
    let inputs = x.len();
    bias.iter()
        .enumerate()
        .map(|(o, &b)| b as f64 + (0..inputs).map(|i| weight[o * inputs + i] as f64 * x[i]).sum::<f64>())
        .collect()
}

/// The score of the U-Net for images x ([B, 1, H, W] flattened, f32) at times t (one per image or one for all).
pub fn unet_score(model: &UnetModel, x: &[f32], t: &[f32]) -> Vec<f64> {
    let (h, w) = (model.height, model.width);
    let batch = x.len() / (h * w);
    let time = |b: usize| if t.len() == 1 { t[0] } else { t[b] };
    let embeddings: Vec<Vec<f64>> = (0..batch)
        .map(|b| {
            let features = model.fourier_features(time(b));
            linear(&features, &model.embed_dense.weight, &model.embed_dense.bias).into_iter().map(silu).collect()
        })
        .collect();
    let dense_terms = |block: usize| -> Vec<Vec<f64>> {
        let d = model.blocks[block].dense.as_ref().expect("dense layer");
        embeddings.iter().map(|e| linear(e, &d.weight, &d.bias)).collect()
    };
    let mut input = Tensor { batch, channels: 1, height: h, width: w, data: x.iter().map(|&v| v as f64).collect() };
    let mut skips = Vec::new();
    // Encoder.
    for i in 0..4 {
        let block = &model.blocks[i];
        let mut z = conv2d(&input, &block.conv.weight, block.conv.outputs, block.conv.stride);
        add_per_channel(&mut z, &dense_terms(i));
        let n = block.norm.as_ref().expect("encoder norm");
        input = silu_tensor(group_norm(&z, n.groups, &n.weight, &n.bias, GN_EPS));
        skips.push(input.clone());
    }
    // Decoder: tconv4 on h4, then on [h, skip].
    let mut hcur = skips[3].clone();
    for (i, skip) in [(4usize, None), (5, Some(2usize)), (6, Some(1)), (7, Some(0))] {
        let block = &model.blocks[i];
        let inp = match skip {
            Some(s) => hcur.concat(&skips[s]),
            None => hcur.clone(),
        };
        let c = &block.conv;
        let mut z = conv_transpose2d(&inp, &c.weight, c.outputs, c.stride, c.output_padding);
        if let Some(bias) = &c.bias {
            let per: Vec<Vec<f64>> = (0..batch).map(|_| bias.iter().map(|&v| v as f64).collect()).collect();
            add_per_channel(&mut z, &per);
        }
        if block.dense.is_some() {
            add_per_channel(&mut z, &dense_terms(i));
        }
        hcur = match &block.norm {
            Some(n) => silu_tensor(group_norm(&z, n.groups, &n.weight, &n.bias, GN_EPS)),
            None => z,
        };
    }
    let mut out = hcur.data;
    let per_image = h * w;
    for b in 0..batch {
        let factor = model.output_factor(time(b));
        out[b * per_image..(b + 1) * per_image].iter_mut().for_each(|v| *v *= factor);
    }
    out
}
