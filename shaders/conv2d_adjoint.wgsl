// conv2d_adjoint.wgsl — the adjoint (reverse-mode derivative) of a U-Net block: the gradient with respect to the
// block's input from the gradient with respect to its output, back through GroupNorm + SiLU and the convolution.
//
// The adjoint of a convolution is the transposed convolution with the same weights, and the other way round, so
// this kernel runs the (transposed) convolution of conv2d_igemm.wgsl on z̄, the gradient of the block's pre-norm
// output, formed as it is loaded. For cotangent row r (of point b = r / P, P = group_rows) and channel c:
//   h̄ = g1[pixel·grad_stride1 + grad_offset1 + c] (+ g2[pixel·grad_stride2 + grad_offset2 + c] with TWO_SOURCES:
//       an activation that feeds two blocks, e.g. a skip connection, sums its two gradients)
//   with a pending norm (NORM_SRC1): y = z·scale + shift, ȳ = h̄·silu'(y), x̂ = (z − μ)·rstd,
//       z̄ = scale·ȳ − rstd·(n1 + x̂·n2),   (n1, n2) = (mean γȳ, mean γȳx̂) per (r, group) (groupnorm_adjoint_stats)
//   without: z̄ = h̄ · sample_scale[b] when SCALE_SAMPLES (the score's 1/std(t)), else h̄
// and stores out[r, hi, wi, ci] = Σ z̄ · w, the gradient with respect to the block's (concatenated) input.
//
// Bindings (group 0): 0 grad1 (read), 1 grad2 (read), 2 primal (read), 3 coef (read), 4 weight (read),
//                     5 sample_scale (read), 6 out (read_write), 7 params (uniform).
// Layout: grad1/grad2 [R, H, W, grad_stride] (the block's output grid, NHWC), primal [B, H, W, C],
//         out [R, Hout, Wout, Cout] (the block's input grid); weight [Cout, 3, 3, C] (see ops::conv::adjoint_weight);
//         coef offsets and group counts in params (norm_offset1, stats_offset1, tstats_offset1, groups1).
// Tiling: shared/conv_igemm_core.wgsl over the R cotangent rows. Dispatch (⌈Cout/64⌉, ⌈M/64⌉, 1) per phase class;
// conv2d_adjoint_128 is this body on shared/conv_igemm_core_128.wgsl, dispatch (⌈Cout/128⌉, ⌈M/128⌉, 1).

override NORM_SRC1: bool = false;
override TWO_SOURCES: bool = false;
override SCALE_SAMPLES: bool = false;

@group(0) @binding(0) var<storage, read> grad1: array<f32>;
@group(0) @binding(1) var<storage, read> grad2: array<f32>;
@group(0) @binding(2) var<storage, read> primal: array<f32>;
@group(0) @binding(3) var<storage, read> coef: array<f32>;
@group(0) @binding(4) var<storage, read> weight: array<f32>;
@group(0) @binding(5) var<storage, read> sample_scale: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<uniform> params: Params;

fn load_input(r: u32, i: u32, j: u32, th: u32, tw: u32, c: u32) -> f32 {
    let p = input_pixel(r, i, j, th, tw);
    if (p < 0) { return 0.0; }
    let pixel = u32(p);
    var g = grad1[pixel * params.grad_stride1 + params.grad_offset1 + c];
    if (TWO_SOURCES) { g += grad2[pixel * params.grad_stride2 + params.grad_offset2 + c]; }
    let b = r / params.group_rows;
    if (!NORM_SRC1) {
        if (SCALE_SAMPLES) { g *= sample_scale[b]; }
        return g;
    }
    let channels = params.c1;
    let primal_pixel = pixel - (r - b) * params.hin * params.win;
    let z = primal[primal_pixel * channels + c];
    let n = params.norm_offset1 + (b * channels + c) * 2u;
    let scale = coef[n];
    let y_bar = g * activate_derivative(ACT_SILU, z * scale + coef[n + 1u]);
    let group = c / (channels / params.groups1);
    let s = params.stats_offset1 + (b * params.groups1 + group) * 2u;
    let rstd = coef[s + 1u];
    let x_hat = (z - coef[s]) * rstd;
    let a = params.tstats_offset1 + (r * params.groups1 + group) * 2u;
    return scale * y_bar - rstd * (coef[a] + x_hat * coef[a + 1u]);
}

fn store_output(m: u32, r: u32, pixel: u32, n: u32, acc: f32) {
    out[pixel * params.cout + n] = acc;
}
