//! 3×3 convolutions and transposed convolutions over NHWC activations (shaders/conv2d_igemm.wgsl).

use crate::activation::Activation;
use crate::error::{Error, Result};
use bytemuck::Zeroable;

use crate::gpu::{Kernel, Recorder};

/// Geometry of one (transposed) convolution over a batch; the input is the channel concatenation [src1, src2].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    /// Channels of the first input.
    pub c1: usize,
    /// Channels of the second input (0 when there is none).
    pub c2: usize,
    pub outputs: usize,
    pub stride: usize,
    pub transposed: bool,
    pub output_padding: usize,
}

pub const KERNEL: usize = 3;

impl ConvShape {
    pub fn inputs(&self) -> usize {
        self.c1 + self.c2
    }

    pub fn output_size(&self) -> (usize, usize) {
        let size = |n: usize| {
            if self.transposed {
                (n - 1) * self.stride + KERNEL + self.output_padding
            } else {
                (n - KERNEL) / self.stride + 1
            }
        };
        (size(self.height), size(self.width))
    }

    /// Multiply-adds ×2 over the taps that exist (a transposed convolution's skipped taps are not counted).
    pub fn flops(&self) -> f64 {
        let (ho, wo) = self.output_size();
        let pixels = if self.transposed { self.height * self.width } else { ho * wo };
        2.0 * (self.batch * pixels * KERNEL * KERNEL * self.inputs() * self.outputs) as f64
    }
}

/// Environment variable that forces the convolution tile: `64`, `128` (or `auto`, the default).
pub const CONV_TILE_ENV: &str = "SCORELENS_CONV_TILE";

/// The workgroup tile of the three convolution kernels (values, tangents, adjoints), which share one core each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvTile {
    /// shared/conv_igemm_core.wgsl: 64×64 tiles, 4×4 outputs per thread, K-step 16 (`conv2d_igemm`, …).
    Tile64,
    /// shared/conv_igemm_core_128.wgsl: 128×128 tiles, 8×8 outputs per thread, K-step 8 (`conv2d_igemm_128`, …).
    Tile128,
}

impl ConvTile {
    pub const ALL: [ConvTile; 2] = [ConvTile::Tile64, ConvTile::Tile128];

    /// Output rows (and columns) one workgroup covers: a class dispatches (⌈Cout/side⌉, ⌈M/side⌉, 1).
    pub fn side(self) -> usize {
        match self {
            ConvTile::Tile64 => 64,
            ConvTile::Tile128 => 128,
        }
    }

    /// The kernel of this tile among a kernel's two entries in `gpu::kernels::KERNELS`.
    fn pick(self, tile64: &'static str, tile128: &'static str) -> &'static str {
        match self {
            ConvTile::Tile64 => tile64,
            ConvTile::Tile128 => tile128,
        }
    }

    /// Parses `64` / `tile64`, `128` / `tile128`; `auto` (or empty) is `None`.
    pub fn parse(text: &str) -> Result<Option<ConvTile>> {
        match text.trim().to_lowercase().as_str() {
            "" | "auto" => Ok(None),
            "64" | "tile64" => Ok(Some(ConvTile::Tile64)),
            "128" | "tile128" => Ok(Some(ConvTile::Tile128)),
            other => Err(Error::InvalidArgument(format!("{CONV_TILE_ENV}={other:?}: expected auto, 64 or 128"))),
        }
    }

    /// The tile `SCORELENS_CONV_TILE` forces, if any: [`crate::DeviceOptions::from_env`] reads it once, and the
    /// kernels take the context's [`crate::GpuContext::conv_tile`].
    pub fn forced() -> Result<Option<ConvTile>> {
        match std::env::var(CONV_TILE_ENV) {
            Ok(text) => ConvTile::parse(&text),
            Err(_) => Ok(None),
        }
    }

    /// The tile every adapter runs unless `SCORELENS_CONV_TILE` forces another: 64. The 128 tile was meant for
    /// software drivers (the matmul's is 3.1× faster on lavapipe), but on lavapipe the U-Net benches ran 5–58 %
    /// slower with every convolution on it, and within noise of 64 with only layers of Cout ≥ 128 on it
    /// (docs/BENCHMARKS.md, 2026-11-24). Likely causes, not measured apart: most layers have 32 or 64 output
    /// channels, so a 128-column tile is mostly padding, and the deep layers have few 128-row tiles to share
    /// among the cores. On GPUs 64 keeps four times as many workgroups in flight.
    pub const DEFAULT: ConvTile = ConvTile::Tile64;

    /// The tile a context opened from the environment runs: the forced one, else [`ConvTile::DEFAULT`].
    pub fn current() -> Result<ConvTile> {
        Ok(ConvTile::forced()?.unwrap_or(ConvTile::DEFAULT))
    }
}

/// Where a pending GroupNorm + SiLU of an input lives: element offset of its [B, C, 2] scale/shift block.
#[derive(Debug, Clone, Copy)]
pub struct PendingNorm {
    pub offset: usize,
}

/// The bias of a convolution's store.
#[derive(Debug, Clone, Copy)]
pub enum ConvBias<'a> {
    None,
    /// bias[co].
    PerChannel(&'a wgpu::Buffer),
    /// bias[offset + time_index[b] · stride + co]: a row of a table of per-time values (the dense(e) term).
    PerTime {
        table: &'a wgpu::Buffer,
        offset: usize,
        stride: usize,
        time_index: &'a wgpu::Buffer,
    },
}

pub struct ConvInputs<'a> {
    pub src1: &'a wgpu::Buffer,
    pub norm1: Option<PendingNorm>,
    pub src2: Option<&'a wgpu::Buffer>,
    pub norm2: Option<PendingNorm>,
    /// The buffer holding the pending norms' coefficients (both inputs' blocks).
    pub norm: Option<&'a wgpu::Buffer>,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    hin: u32,
    win: u32,
    c1: u32,
    c2: u32,
    cout: u32,
    hout: u32,
    wout: u32,
    stride: u32,
    m: u32,
    k: u32,
    norm_offset1: u32,
    norm_offset2: u32,
    bias_offset: u32,
    bias_stride: u32,
    phase_h: u32,
    phase_w: u32,
    taps_h: u32,
    taps_w: u32,
    class_h: u32,
    class_w: u32,
    group_rows: u32,
    stats_offset1: u32,
    stats_offset2: u32,
    tstats_offset1: u32,
    tstats_offset2: u32,
    groups1: u32,
    groups2: u32,
    grad_stride1: u32,
    grad_offset1: u32,
    grad_stride2: u32,
    grad_offset2: u32,
}

/// Reorders a PyTorch weight (Conv2d [out, in, 3, 3] or ConvTranspose2d [in, out, 3, 3]) to [out, 3, 3, in].
pub fn reorder_weight(weight: &[f32], inputs: usize, outputs: usize, transposed: bool) -> Vec<f32> {
    let mut out = vec![0f32; weight.len()];
    for co in 0..outputs {
        for ci in 0..inputs {
            for tap in 0..KERNEL * KERNEL {
                let src = if transposed { (ci * outputs + co) * 9 + tap } else { (co * inputs + ci) * 9 + tap };
                out[(co * 9 + tap) * inputs + ci] = weight[src];
            }
        }
    }
    out
}

/// The weight of a block's adjoint, in the [out, 3, 3, in] layout of [`reorder_weight`]: a convolution's adjoint is
/// the transposed convolution with the same PyTorch tensor read as [in' = out, out' = in, 3, 3], and the other way
/// round, so only the roles of the two channel counts swap.
pub fn adjoint_weight(weight: &[f32], inputs: usize, outputs: usize, transposed: bool) -> Vec<f32> {
    reorder_weight(weight, outputs, inputs, !transposed)
}

/// Records out = act(conv(T(inputs)) + bias) · sample_scale. `weight` is [out, 3, 3, in] (see [`reorder_weight`]).
/// The tile is the context's [`crate::GpuContext::conv_tile`] (64 unless [`crate::DeviceOptions::conv_tile`] or
/// `SCORELENS_CONV_TILE` forces 128).
#[allow(clippy::too_many_arguments)]
pub fn record_conv2d(
    rec: &mut Recorder,
    shape: &ConvShape,
    inputs: &ConvInputs,
    weight: &wgpu::Buffer,
    bias: ConvBias,
    act: Activation,
    sample_scale: Option<&wgpu::Buffer>,
    out: &wgpu::Buffer,
) -> Result<()> {
    let tile = rec.ctx().conv_tile();
    record_conv2d_with(rec, tile, shape, inputs, weight, bias, act, sample_scale, out)
}

/// [`record_conv2d`] on the given tile.
#[allow(clippy::too_many_arguments)]
pub fn record_conv2d_with(
    rec: &mut Recorder,
    tile: ConvTile,
    shape: &ConvShape,
    inputs: &ConvInputs,
    weight: &wgpu::Buffer,
    bias: ConvBias,
    act: Activation,
    sample_scale: Option<&wgpu::Buffer>,
    out: &wgpu::Buffer,
) -> Result<()> {
    check_output("conv2d_igemm", shape, out)?;
    if shape.c2 > 0 && inputs.src2.is_none() {
        return Err(Error::Kernel { kernel: "conv2d_igemm".into(), message: "c2 > 0 without a second input".into() });
    }
    let ctx = rec.ctx();
    let (bias_mode, bias_buffer, bias_offset, bias_stride, time_index) = match bias {
        ConvBias::None => (0u32, None, 0, 0, None),
        ConvBias::PerChannel(b) => (1, Some(b), 0, 0, None),
        ConvBias::PerTime { table, offset, stride, time_index } => (2, Some(table), offset, stride, Some(time_index)),
    };
    let kernel = ctx.kernel(
        tile.pick("conv2d_igemm", "conv2d_igemm_128"),
        &[
            ("TRANSPOSED", shape.transposed as u32 as f64),
            ("NORM_SRC1", inputs.norm1.is_some() as u32 as f64),
            ("NORM_SRC2", inputs.norm2.is_some() as u32 as f64),
            ("BIAS_MODE", bias_mode as f64),
            ("ACT", act.code() as f64),
            ("SCALE_SAMPLES", sample_scale.is_some() as u32 as f64),
        ],
    )?;
    let dummy = ctx.dummy();
    let fields = Params {
        norm_offset1: inputs.norm1.map_or(0, |n| n.offset as u32),
        norm_offset2: inputs.norm2.map_or(0, |n| n.offset as u32),
        bias_offset: bias_offset as u32,
        bias_stride: bias_stride as u32,
        ..Params::zeroed()
    };
    let buffers = [
        inputs.src1,
        inputs.src2.unwrap_or(dummy),
        inputs.norm.unwrap_or(dummy),
        weight,
        bias_buffer.unwrap_or(dummy),
        time_index.unwrap_or(dummy),
        sample_scale.unwrap_or(dummy),
        out,
    ];
    dispatch_classes(rec, &kernel, tile, shape, shape.inputs(), &buffers, fields)
}

/// The output buffer must hold the whole [batch, Hout, Wout, outputs] result.
fn check_output(kernel: &str, shape: &ConvShape, out: &wgpu::Buffer) -> Result<()> {
    let (ho, wo) = shape.output_size();
    if (shape.batch * ho * wo * shape.outputs * 4) as u64 > out.size() {
        return Err(Error::Kernel { kernel: kernel.into(), message: format!("output buffer too small for {shape:?}") });
    }
    Ok(())
}

/// Dispatches `kernel` (one of `tile`'s) once per output phase class of `shape`: `buffers` then the class's
/// parameters, whose geometry comes from `shape` and the class and the rest from `fields`. `channels` is the K
/// dimension per tap.
fn dispatch_classes(
    rec: &mut Recorder,
    kernel: &Kernel,
    tile: ConvTile,
    shape: &ConvShape,
    channels: usize,
    buffers: &[&wgpu::Buffer],
    fields: Params,
) -> Result<()> {
    let (ho, wo) = shape.output_size();
    let ctx = rec.ctx();
    for class in output_classes(shape) {
        let m = shape.batch * class.rows * class.cols;
        if m == 0 {
            continue;
        }
        let params = Params {
            batch: shape.batch as u32,
            hin: shape.height as u32,
            win: shape.width as u32,
            c1: shape.c1 as u32,
            c2: shape.c2 as u32,
            cout: shape.outputs as u32,
            hout: ho as u32,
            wout: wo as u32,
            stride: shape.stride as u32,
            m: m as u32,
            k: (class.taps_h * class.taps_w * channels) as u32,
            phase_h: class.phase_h as u32,
            phase_w: class.phase_w as u32,
            taps_h: class.taps_h as u32,
            taps_w: class.taps_w as u32,
            class_h: class.rows as u32,
            class_w: class.cols as u32,
            ..fields
        };
        let uniform = ctx.uniform(&format!("{}/params", kernel.name), &params);
        let mut bindings = buffers.to_vec();
        bindings.push(&uniform);
        let side = tile.side();
        rec.dispatch(kernel, &bindings, [shape.outputs.div_ceil(side) as u32, m.div_ceil(side) as u32, 1])?;
    }
    Ok(())
}

/// One output phase class of a (transposed) convolution: the outputs (S·i + phase_h, S·j + phase_w) of a
/// transposed convolution, which meet only the taps phase + S·t; a plain convolution is one class of all taps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputClass {
    pub phase_h: usize,
    pub phase_w: usize,
    pub taps_h: usize,
    pub taps_w: usize,
    /// Output rows and columns in the class.
    pub rows: usize,
    pub cols: usize,
}

pub fn output_classes(shape: &ConvShape) -> Vec<OutputClass> {
    let (ho, wo) = shape.output_size();
    if !shape.transposed {
        return vec![OutputClass { phase_h: 0, phase_w: 0, taps_h: KERNEL, taps_w: KERNEL, rows: ho, cols: wo }];
    }
    let s = shape.stride;
    let mut classes = Vec::new();
    for phase_h in 0..s {
        for phase_w in 0..s {
            classes.push(OutputClass {
                phase_h,
                phase_w,
                taps_h: KERNEL.saturating_sub(phase_h).div_ceil(s),
                taps_w: KERNEL.saturating_sub(phase_w).div_ceil(s),
                rows: ho.saturating_sub(phase_h).div_ceil(s),
                cols: wo.saturating_sub(phase_w).div_ceil(s),
            });
        }
    }
    classes
}

/// A tangent input of a convolution: the tangent values and, when the input has a pending GroupNorm + SiLU, its
/// primal pre-norm values and where its coefficients, statistics and tangent statistics sit in the coef buffer.
pub struct TangentSource<'a> {
    pub tangent: &'a wgpu::Buffer,
    pub norm: Option<TangentNorm<'a>>,
}

pub struct TangentNorm<'a> {
    pub primal: &'a wgpu::Buffer,
    pub groups: usize,
    /// [B, C, 2] scale and shift.
    pub norm_offset: usize,
    /// [B, G, 2] mean and rstd.
    pub stats_offset: usize,
    /// [R, G, 2] tangent means m1, m2.
    pub tstats_offset: usize,
}

/// Records ż_out = conv(ḣ) for `shape.batch` tangent rows in groups of `per_point` per point (see
/// shaders/conv2d_tangent.wgsl). `shape.batch` counts tangent rows.
#[allow(clippy::too_many_arguments)]
pub fn record_conv2d_tangent(
    rec: &mut Recorder,
    shape: &ConvShape,
    per_point: usize,
    src1: &TangentSource,
    src2: Option<&TangentSource>,
    coef: &wgpu::Buffer,
    weight: &wgpu::Buffer,
    sample_scale: Option<&wgpu::Buffer>,
    store_transposed: bool,
    out: &wgpu::Buffer,
) -> Result<()> {
    check_output("conv2d_tangent", shape, out)?;
    let ctx = rec.ctx();
    let tile = ctx.conv_tile();
    let kernel = ctx.kernel(
        tile.pick("conv2d_tangent", "conv2d_tangent_128"),
        &[
            ("TRANSPOSED", shape.transposed as u32 as f64),
            ("NORM_SRC1", src1.norm.is_some() as u32 as f64),
            ("NORM_SRC2", src2.is_some_and(|s| s.norm.is_some()) as u32 as f64),
            ("SCALE_SAMPLES", sample_scale.is_some() as u32 as f64),
            ("STORE_GROUP_TRANSPOSED", store_transposed as u32 as f64),
        ],
    )?;
    let dummy = ctx.dummy();
    let n1 = src1.norm.as_ref();
    let n2 = src2.and_then(|s| s.norm.as_ref());
    let fields = Params {
        norm_offset1: n1.map_or(0, |n| n.norm_offset as u32),
        norm_offset2: n2.map_or(0, |n| n.norm_offset as u32),
        group_rows: per_point as u32,
        stats_offset1: n1.map_or(0, |n| n.stats_offset as u32),
        stats_offset2: n2.map_or(0, |n| n.stats_offset as u32),
        tstats_offset1: n1.map_or(0, |n| n.tstats_offset as u32),
        tstats_offset2: n2.map_or(0, |n| n.tstats_offset as u32),
        groups1: n1.map_or(1, |n| n.groups as u32),
        groups2: n2.map_or(1, |n| n.groups as u32),
        ..Params::zeroed()
    };
    let buffers = [
        src1.tangent,
        src2.map_or(dummy, |s| s.tangent),
        n1.map_or(dummy, |n| n.primal),
        n2.map_or(dummy, |n| n.primal),
        coef,
        weight,
        sample_scale.unwrap_or(dummy),
        out,
    ];
    dispatch_classes(rec, &kernel, tile, shape, shape.inputs(), &buffers, fields)
}

/// A gradient read by the adjoint kernels: channel c of pixel p at buffer[p · stride + offset + c].
#[derive(Clone, Copy)]
pub struct GradientSource<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub stride: usize,
    pub offset: usize,
}

/// The GroupNorm + SiLU a block's output went through, for its adjoint.
#[derive(Clone, Copy)]
pub struct AdjointNorm<'a> {
    pub primal: &'a wgpu::Buffer,
    pub groups: usize,
    pub norm_offset: usize,
    pub stats_offset: usize,
    /// [R, G, 2] adjoint means n1, n2.
    pub astats_offset: usize,
}

/// Records the gradient with respect to a block's input from the gradient(s) of its output (see
/// shaders/conv2d_adjoint.wgsl). `shape` is the adjoint's own geometry: its input grid is the block's output
/// (c1 = the block's output channels, c2 = 0), its outputs the block's input channels, `transposed` flipped.
#[allow(clippy::too_many_arguments)]
pub fn record_conv2d_adjoint(
    rec: &mut Recorder,
    shape: &ConvShape,
    per_point: usize,
    grad1: GradientSource,
    grad2: Option<GradientSource>,
    norm: Option<AdjointNorm>,
    coef: &wgpu::Buffer,
    weight: &wgpu::Buffer,
    sample_scale: Option<&wgpu::Buffer>,
    out: &wgpu::Buffer,
) -> Result<()> {
    check_output("conv2d_adjoint", shape, out)?;
    let ctx = rec.ctx();
    let tile = ctx.conv_tile();
    let kernel = ctx.kernel(
        tile.pick("conv2d_adjoint", "conv2d_adjoint_128"),
        &[
            ("TRANSPOSED", shape.transposed as u32 as f64),
            ("NORM_SRC1", norm.is_some() as u32 as f64),
            ("TWO_SOURCES", grad2.is_some() as u32 as f64),
            ("SCALE_SAMPLES", sample_scale.is_some() as u32 as f64),
        ],
    )?;
    let dummy = ctx.dummy();
    let fields = Params {
        norm_offset1: norm.map_or(0, |n| n.norm_offset as u32),
        group_rows: per_point as u32,
        stats_offset1: norm.map_or(0, |n| n.stats_offset as u32),
        tstats_offset1: norm.map_or(0, |n| n.astats_offset as u32),
        groups1: norm.map_or(1, |n| n.groups as u32),
        grad_stride1: grad1.stride as u32,
        grad_offset1: grad1.offset as u32,
        grad_stride2: grad2.map_or(0, |g| g.stride as u32),
        grad_offset2: grad2.map_or(0, |g| g.offset as u32),
        ..Params::zeroed()
    };
    let buffers = [
        grad1.buffer,
        grad2.map_or(dummy, |g| g.buffer),
        norm.map_or(dummy, |n| n.primal),
        coef,
        weight,
        sample_scale.unwrap_or(dummy),
        out,
    ];
    dispatch_classes(rec, &kernel, tile, shape, shape.c1, &buffers, fields)
}
