// groupnorm_stats.wgsl — GroupNorm statistics of NHWC activations, folded with the affine parameters into one
// scale and shift per (sample, channel), which the next convolution applies as it loads (conv2d_igemm.wgsl).
//
// For sample b and group g (channels g·Cg … g·Cg + Cg − 1, Cg = C / G), over its n = H·W·Cg values:
//   mean = Σ z / n,  var = Σ (z − mean)² / n  (two passes; PyTorch's biased variance),  rstd = 1 / sqrt(var + eps)
//   coef[offset + (b·C + c)·2]     = gamma[c] · rstd
//   coef[offset + (b·C + c)·2 + 1] = beta[c] − mean · gamma[c] · rstd
// so that GroupNorm(z)[b, c] = z · coef[…] + coef[… + 1]; and the statistics themselves,
//   coef[stats_offset + (b·G + g)·2] = mean,  coef[stats_offset + (b·G + g)·2 + 1] = rstd
// which the tangent and adjoint kernels need.
//
// Bindings (group 0): 0 z (read), 1 gamma (read, [C]), 2 beta (read, [C]), 3 coef (read_write), 4 params (uniform).
// Layout: z [B, H, W, C] (NHWC); coef holds [B, C, 2] at element `offset` and [B, G, 2] at `stats_offset`.
// One 256-thread workgroup per (group, sample): dispatch (G, B, 1). Reductions are workgroup trees.

struct Params { batch: u32, pixels: u32, channels: u32, groups: u32, offset: u32, eps: f32, stats_offset: u32, pad0: u32 }

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> coef: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

const THREADS: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

fn workgroup_sum(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var stride = THREADS / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) { partial[lid] += partial[lid + stride]; }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = group.x;
    let b = group.y;
    if (g >= params.groups || b >= params.batch) { return; }
    let cg = params.channels / params.groups;
    let n = params.pixels * cg;
    let base = b * params.pixels * params.channels + g * cg;

    var sum = 0.0;
    for (var i = lid; i < n; i += THREADS) {
        let p = i / cg;
        sum += z[base + p * params.channels + (i - p * cg)];
    }
    let mean = workgroup_sum(lid, sum) / f32(n);

    var squares = 0.0;
    for (var i = lid; i < n; i += THREADS) {
        let p = i / cg;
        let d = z[base + p * params.channels + (i - p * cg)] - mean;
        squares += d * d;
    }
    let variance = workgroup_sum(lid, squares) / f32(n);
    let rstd = 1.0 / sqrt(variance + params.eps);

    if (lid == 0u) {
        let s = params.stats_offset + (b * params.groups + g) * 2u;
        coef[s] = mean;
        coef[s + 1u] = rstd;
    }
    for (var c = lid; c < cg; c += THREADS) {
        let channel = g * cg + c;
        let scale = gamma[channel] * rstd;
        let j = params.offset + (b * params.channels + channel) * 2u;
        coef[j] = scale;
        coef[j + 1u] = beta[channel] - mean * scale;
    }
}
