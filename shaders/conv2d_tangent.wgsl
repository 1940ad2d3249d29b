// conv2d_tangent.wgsl — the tangent (forward-mode derivative) of a U-Net convolution block: the convolution of
// the input tangents, each input's pending GroupNorm + SiLU differentiated as it is loaded.
//
// For tangent row r (of point b = r / P, P = group_rows) and output (ho, wo, co):
//   ż_out[r, ho, wo, co] = Σ_{kh, kw, ci} ḣ(r, hi, wi, ci) · w[co, kh, kw, ci]       (no bias: it has no tangent)
// with the geometry of conv2d_igemm.wgsl, and for an input with a pending norm (z its primal pre-norm value):
//   y = z·scale + shift,  x̂ = (z − μ)·rstd,  ḣ = silu'(y) · scale · (ż − m1 − x̂·m2)
// where (scale, shift) per (b, channel), (μ, rstd) per (b, group), and (m1, m2) = (mean ż, mean ż·x̂) per (r, group)
// (groupnorm_tangent_stats.wgsl) all sit in the coefficient buffer. Without a pending norm ḣ = ż.
// The store multiplies by sample_scale[b] when SCALE_SAMPLES (the score's 1/std(t)); with STORE_GROUP_TRANSPOSED
// it writes out[(b·Dout + (pixel·Cout + co))·P + (r − b·P)], Dout = Hout·Wout·Cout (Jacobian columns as rows).
//
// Bindings (group 0): 0 src1 (read, tangents), 1 src2 (read, tangents), 2 primal1 (read), 3 primal2 (read),
//                     4 coef (read), 5 weight (read), 6 sample_scale (read), 7 out (read_write), 8 params (uniform).
// Layout: src1 [R, Hin, Win, C1], src2 [R, Hin, Win, C2], primal1 [B, Hin, Win, C1], primal2 [B, Hin, Win, C2],
//         out [R, Hout, Wout, Cout] (NHWC), weight [Cout, 3, 3, C1 + C2]; coef offsets and group counts in params.
// Tiling: shared/conv_igemm_core.wgsl with GEMM rows over the R tangent rows. Dispatch (⌈Cout/64⌉, ⌈M/64⌉, 1)
// per output phase class; conv2d_tangent_128 is this body on shared/conv_igemm_core_128.wgsl, dispatch
// (⌈Cout/128⌉, ⌈M/128⌉, 1).

override NORM_SRC1: bool = false;
override NORM_SRC2: bool = false;
override SCALE_SAMPLES: bool = false;
override STORE_GROUP_TRANSPOSED: bool = false;

@group(0) @binding(0) var<storage, read> src1: array<f32>;
@group(0) @binding(1) var<storage, read> src2: array<f32>;
@group(0) @binding(2) var<storage, read> primal1: array<f32>;
@group(0) @binding(3) var<storage, read> primal2: array<f32>;
@group(0) @binding(4) var<storage, read> coef: array<f32>;
@group(0) @binding(5) var<storage, read> weight: array<f32>;
@group(0) @binding(6) var<storage, read> sample_scale: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;

// ḣ for one element: the derivative of activate(ACT_SILU, GroupNorm(z)) applied to ż.
fn normalised_tangent(dz: f32, z: f32, b: u32, r: u32, c: u32, channels: u32, groups: u32, norm_offset: u32, stats_offset: u32, tstats_offset: u32) -> f32 {
    let n = norm_offset + (b * channels + c) * 2u;
    let scale = coef[n];
    let y = z * scale + coef[n + 1u];
    let g = c / (channels / groups);
    let s = stats_offset + (b * groups + g) * 2u;
    let x_hat = (z - coef[s]) * coef[s + 1u];
    let t = tstats_offset + (r * groups + g) * 2u;
    return activate_derivative(ACT_SILU, y) * scale * (dz - coef[t] - x_hat * coef[t + 1u]);
}

fn load_input(r: u32, i: u32, j: u32, th: u32, tw: u32, ci: u32) -> f32 {
    let p = input_pixel(r, i, j, th, tw);
    if (p < 0) { return 0.0; }
    let pixel = u32(p);
    let b = r / params.group_rows;
    // The primal pixel of the same tap, for the tangent row's point.
    let primal_pixel = pixel - (r - b) * params.hin * params.win;
    if (ci < params.c1) {
        let dz = src1[pixel * params.c1 + ci];
        if (!NORM_SRC1) { return dz; }
        let z = primal1[primal_pixel * params.c1 + ci];
        return normalised_tangent(dz, z, b, r, ci, params.c1, params.groups1, params.norm_offset1, params.stats_offset1, params.tstats_offset1);
    }
    let c = ci - params.c1;
    let dz = src2[pixel * params.c2 + c];
    if (!NORM_SRC2) { return dz; }
    let z = primal2[primal_pixel * params.c2 + c];
    return normalised_tangent(dz, z, b, r, c, params.c2, params.groups2, params.norm_offset2, params.stats_offset2, params.tstats_offset2);
}

fn store_output(m: u32, r: u32, pixel: u32, n: u32, acc: f32) {
    let b = r / params.group_rows;
    var v = acc;
    if (SCALE_SAMPLES) { v *= sample_scale[b]; }
    if (STORE_GROUP_TRANSPOSED) {
        let d_out = params.hout * params.wout * params.cout;
        let local_pixel = pixel - r * params.hout * params.wout;
        out[(b * d_out + local_pixel * params.cout + n) * params.group_rows + (r - b * params.group_rows)] = v;
    } else {
        out[pixel * params.cout + n] = v;
    }
}
