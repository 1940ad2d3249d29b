//! The U-Net's layer kernels alone against their f64 references, on shapes that are not multiples of the tiles:
//! convolution, transposed convolution, channel concatenation, GroupNorm (statistics, and its apply fused into the
//! next convolution's loads), the per-time bias (dense(e) add), per-channel bias and per-sample scale.

mod common;

use common::{gpu, normal_vec, rel_err, rng};
use rand::Rng;
use scorelens::gpu::{BufferRole, Recorder};
use scorelens::ops::conv::{
    record_conv2d, record_conv2d_with, reorder_weight, ConvBias, ConvInputs, ConvShape, ConvTile, PendingNorm,
};
use scorelens::ops::groupnorm::record_groupnorm_stats;
use scorelens::reference::unet::{add_per_channel, conv2d, conv_transpose2d, group_norm, silu_tensor, Tensor};
use scorelens::Activation;

fn nchw(batch: usize, channels: usize, h: usize, w: usize, seed: u64) -> Tensor {
    let data = normal_vec(&mut rng(seed), batch * channels * h * w, 1.0).iter().map(|&v| v as f64).collect();
    Tensor { batch, channels, height: h, width: w, data }
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_nhwc().iter().map(|&v| v as f32).collect()
}

/// Rounds a tensor to f32 values (the GPU sees f32 inputs; the reference must too).
fn rounded(t: &Tensor) -> Tensor {
    Tensor { data: t.data.iter().map(|&v| v as f32 as f64).collect(), ..t.clone() }
}

fn reference_conv(x: &Tensor, weight: &[f32], shape: &ConvShape) -> Tensor {
    if shape.transposed {
        conv_transpose2d(x, weight, shape.outputs, shape.stride, shape.output_padding)
    } else {
        conv2d(x, weight, shape.outputs, shape.stride)
    }
}

/// Runs the convolution through `record_conv2d` (the tile the context picks, or SCORELENS_CONV_TILE forces), or
/// through `record_conv2d_with` on the given tile.
fn run(
    tile: Option<ConvTile>,
    shape: &ConvShape,
    inputs: &ConvInputs,
    weight_pt: &[f32],
    bias: ConvBias,
    act: Activation,
    scale: Option<&wgpu::Buffer>,
) -> Vec<f32> {
    let ctx = gpu();
    let weight = ctx.upload("w", &reorder_weight(weight_pt, shape.inputs(), shape.outputs, shape.transposed));
    let (ho, wo) = shape.output_size();
    let len = shape.batch * ho * wo * shape.outputs;
    let out = ctx.buffer("out", (len * 4) as u64, BufferRole::Storage);
    let mut rec = Recorder::new(&ctx, "test/conv");
    match tile {
        None => record_conv2d(&mut rec, shape, inputs, &weight, bias, act, scale, &out).unwrap(),
        Some(tile) => record_conv2d_with(&mut rec, tile, shape, inputs, &weight, bias, act, scale, &out).unwrap(),
    }
    rec.submit();
    ctx.download(&out, len).unwrap()
}

fn check_plain(
    tile: Option<ConvTile>,
    batch: usize,
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    stride: usize,
    transposed: bool,
    output_padding: usize,
    seed: u64,
) -> f64 {
    let ctx = gpu();
    let shape =
        ConvShape { batch, height: h, width: w, c1: cin, c2: 0, outputs: cout, stride, transposed, output_padding };
    let x = rounded(&nchw(batch, cin, h, w, seed));
    let weight = normal_vec(&mut rng(seed + 1), cin * cout * 9, 0.3);
    let src = ctx.upload("x", &f32s(&x));
    let inputs = ConvInputs { src1: &src, norm1: None, src2: None, norm2: None, norm: None };
    let got = run(tile, &shape, &inputs, &weight, ConvBias::None, Activation::Identity, None);
    let want = reference_conv(&x, &weight, &shape).to_nhwc();
    let err = rel_err(&got, &want);
    assert!(err <= 1e-5, "{tile:?} {shape:?}: rel err {err:e}");
    err
}

#[test]
fn convolutions_stride_1_and_2() {
    check_plain(None, 1, 5, 5, 1, 1, 1, false, 0, 1);
    check_plain(None, 3, 11, 9, 3, 70, 1, false, 0, 2);
    check_plain(None, 2, 13, 12, 17, 5, 2, false, 0, 3);
    check_plain(None, 5, 28, 28, 1, 33, 1, false, 0, 4);
}

#[test]
fn transposed_convolutions_stride_1_and_2_with_output_padding() {
    check_plain(None, 1, 2, 2, 1, 1, 1, true, 0, 5);
    check_plain(None, 3, 5, 4, 7, 66, 2, true, 0, 6);
    check_plain(None, 2, 5, 5, 9, 13, 2, true, 1, 7);
    check_plain(None, 4, 6, 7, 65, 3, 1, true, 0, 8);
    // Stride 3: taps per phase 1, and a phase class with no rows in the output is skipped.
    check_plain(None, 2, 4, 3, 5, 6, 3, true, 2, 9);
    check_plain(None, 2, 10, 11, 4, 7, 3, false, 0, 10);
}

/// coef for z [B, C, H, W] from the GPU statistics kernel, compared with GroupNorm's closed form.
fn gpu_groupnorm_coefficients(z: &Tensor, groups: usize, gamma: &[f32], beta: &[f32]) -> Vec<f32> {
    let ctx = gpu();
    let zb = ctx.upload("z", &f32s(z));
    let (g, b) = (ctx.upload("gamma", gamma), ctx.upload("beta", beta));
    let offset = 6;
    let len = offset + z.batch * z.channels * 2;
    // The (mean, rstd) statistics go after the coefficients.
    let coef = ctx.buffer("coef", ((len + z.batch * groups * 2) * 4) as u64, BufferRole::Storage);
    let mut rec = Recorder::new(&ctx, "test/groupnorm");
    record_groupnorm_stats(
        &mut rec,
        z.batch,
        z.height * z.width,
        z.channels,
        groups,
        1e-5,
        &zb,
        &g,
        &b,
        &coef,
        offset,
        len,
    )
    .unwrap();
    rec.submit();
    ctx.download::<f32>(&coef, len).unwrap()[offset..].to_vec()
}

#[test]
fn groupnorm_statistics_any_group_count() {
    for (channels, groups, h, w, seed) in
        [(12, 3, 7, 5, 20), (12, 12, 3, 3, 21), (12, 1, 9, 4, 22), (32, 4, 26, 26, 23), (64, 32, 12, 12, 24)]
    {
        let mut r = rng(seed);
        let mut z = rounded(&nchw(3, channels, h, w, seed));
        // An offset mean and scale, as real pre-norm activations have.
        z.data.iter_mut().for_each(|v| *v = (*v * 2.5 + 1.5) as f32 as f64);
        let gamma: Vec<f32> = (0..channels).map(|_| r.random_range(0.5..1.5)).collect();
        let beta: Vec<f32> = (0..channels).map(|_| r.random_range(-0.5..0.5)).collect();
        let coef = gpu_groupnorm_coefficients(&z, groups, &gamma, &beta);
        // Applying the coefficients must reproduce GroupNorm.
        let want = group_norm(&z, groups, &gamma, &beta, 1e-5);
        let mut got = Vec::new();
        for b in 0..z.batch {
            for c in 0..channels {
                for i in 0..h * w {
                    let v = z.data[(b * channels + c) * h * w + i] as f32;
                    got.push(v * coef[(b * channels + c) * 2] + coef[(b * channels + c) * 2 + 1]);
                }
            }
        }
        let err = rel_err(&got, &want.data);
        assert!(err <= 1e-5, "C {channels} G {groups}: rel err {err:e}");
    }
}

#[test]
fn concatenated_normalised_inputs_with_time_bias_and_scale() {
    let ctx = gpu();
    let (batch, h, w, c1, c2, cout) = (3, 5, 6, 8, 12, 37);
    let mut r = rng(30);
    let z1 = rounded(&nchw(batch, c1, h, w, 31));
    let z2 = rounded(&nchw(batch, c2, h, w, 32));
    let (g1, b1): (Vec<f32>, Vec<f32>) =
        (0..c1).map(|_| (r.random_range(0.5..1.5f32), r.random_range(-0.5..0.5f32))).unzip();
    let (g2, b2): (Vec<f32>, Vec<f32>) =
        (0..c2).map(|_| (r.random_range(0.5..1.5f32), r.random_range(-0.5..0.5f32))).unzip();

    // Both inputs' pending norms in one coefficient buffer, at two offsets.
    let coef1 = gpu_groupnorm_coefficients(&z1, 2, &g1, &b1);
    let coef2 = gpu_groupnorm_coefficients(&z2, 4, &g2, &b2);
    let offset2 = coef1.len() + 10;
    let mut coef = coef1.clone();
    coef.resize(offset2, 0.0);
    coef.extend_from_slice(&coef2);

    let shape =
        ConvShape { batch, height: h, width: w, c1, c2, outputs: cout, stride: 2, transposed: true, output_padding: 1 };
    let weight = normal_vec(&mut r, (c1 + c2) * cout * 9, 0.2);
    // A table of 2 distinct times × (5 + cout) columns; this block's terms start at column 5.
    let table = normal_vec(&mut r, 2 * (5 + cout), 1.0);
    let time_index: Vec<u32> = vec![1, 0, 1];
    let scale: Vec<f32> = vec![0.5, 2.0, 1.25];

    let (s1, s2, cb) = (ctx.upload("z1", &f32s(&z1)), ctx.upload("z2", &f32s(&z2)), ctx.upload("coef", &coef));
    let (tb, ti, sc) = (ctx.upload("table", &table), ctx.upload("ti", &time_index), ctx.upload("scale", &scale));
    let inputs = ConvInputs {
        src1: &s1,
        norm1: Some(PendingNorm { offset: 0 }),
        src2: Some(&s2),
        norm2: Some(PendingNorm { offset: offset2 }),
        norm: Some(&cb),
    };
    let bias = ConvBias::PerTime { table: &tb, offset: 5, stride: 5 + cout, time_index: &ti };
    let x = silu_tensor(group_norm(&z1, 2, &g1, &b1, 1e-5)).concat(&silu_tensor(group_norm(&z2, 4, &g2, &b2, 1e-5)));
    let mut want = reference_conv(&x, &weight, &shape);
    let per_sample: Vec<Vec<f64>> = time_index
        .iter()
        .map(|&u| (0..cout).map(|c| table[u as usize * (5 + cout) + 5 + c] as f64).collect())
        .collect();
    add_per_channel(&mut want, &per_sample);
    let mut want = silu_tensor(want);
    let per_image = want.data.len() / batch;
    for b in 0..batch {
        want.data[b * per_image..(b + 1) * per_image].iter_mut().for_each(|v| *v *= scale[b] as f64);
    }
    // The context's tile, then each tile forced.
    for tile in [None, Some(ConvTile::Tile64), Some(ConvTile::Tile128)] {
        let got = run(tile, &shape, &inputs, &weight, bias, Activation::Silu, Some(&sc));
        let err = rel_err(&got, &want.to_nhwc());
        assert!(err <= 1e-5, "{tile:?}: rel err {err:e}");
    }
}

#[test]
fn per_channel_bias() {
    let ctx = gpu();
    let shape = ConvShape {
        batch: 2,
        height: 9,
        width: 9,
        c1: 6,
        c2: 0,
        outputs: 3,
        stride: 1,
        transposed: true,
        output_padding: 0,
    };
    let x = rounded(&nchw(2, 6, 9, 9, 40));
    let weight = normal_vec(&mut rng(41), 6 * 3 * 9, 0.3);
    let bias = vec![0.5f32, -1.0, 2.0];
    let (src, bb) = (ctx.upload("x", &f32s(&x)), ctx.upload("bias", &bias));
    let inputs = ConvInputs { src1: &src, norm1: None, src2: None, norm2: None, norm: None };
    let got = run(None, &shape, &inputs, &weight, ConvBias::PerChannel(&bb), Activation::Identity, None);
    let mut want = reference_conv(&x, &weight, &shape);
    add_per_channel(&mut want, &[bias.iter().map(|&v| v as f64).collect(), bias.iter().map(|&v| v as f64).collect()]);
    assert!(rel_err(&got, &want.to_nhwc()) <= 1e-5);
}

/// Each tile forced through the public op (`record_conv2d_with`), on shapes whose GEMM sizes are not multiples of
/// 64 or 128: M = B·Hout·Wout (per phase class for the transposed ones), N = Cout and K = 9·Cin (or the taps of a
/// class) all leave partial tiles and partial K-steps of both cores.
#[test]
fn both_tiles_match_the_reference() {
    for tile in ConvTile::ALL {
        let errs = [
            // M = 3·9·7 = 189, N = 70, K = 27.
            check_plain(Some(tile), 3, 11, 9, 3, 70, 1, false, 0, 50),
            // M = 2·9·10 = 180, N = 133 (two 128-column tiles, three 64-column ones), K = 153.
            check_plain(Some(tile), 2, 11, 12, 17, 133, 1, false, 0, 51),
            // Stride 2: M = 5·6·5 = 150, N = 129, K = 45.
            check_plain(Some(tile), 5, 13, 12, 5, 129, 2, false, 0, 52),
            // Transposed, stride 2 with output padding: four phase classes of 1, 2 or 4 taps of 65 channels.
            check_plain(Some(tile), 3, 9, 7, 65, 131, 2, true, 1, 53),
            // Transposed, stride 1: M = 4·8·9 = 288, N = 3, K = 9·65 = 585.
            check_plain(Some(tile), 4, 6, 7, 65, 3, 1, true, 0, 54),
        ];
        eprintln!("{tile:?}: rel errs {:?}", errs.map(|e| format!("{e:.2e}")));
    }
}

#[test]
fn tile_default_and_override_parsing() {
    if std::env::var_os("SCORELENS_CONV_TILE").is_none() {
        assert_eq!(ConvTile::current().unwrap(), ConvTile::Tile64);
    }
    for (text, tile) in [("64", ConvTile::Tile64), ("tile128", ConvTile::Tile128), (" 128 ", ConvTile::Tile128)] {
        assert_eq!(ConvTile::parse(text).unwrap(), Some(tile));
    }
    assert_eq!(ConvTile::parse("auto").unwrap(), None);
    assert!(ConvTile::parse("96").is_err());
    assert_eq!(ConvTile::Tile64.side(), 64);
    assert_eq!(ConvTile::Tile128.side(), 128);
}
