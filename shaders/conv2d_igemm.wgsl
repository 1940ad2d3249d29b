// conv2d_igemm.wgsl — 3×3 convolution or transposed convolution (no padding) as an implicit GEMM over NHWC
// activations, reading a channel concatenation of two inputs, applying each input's pending GroupNorm + SiLU as it
// is loaded, with a fused epilogue (bias or time-embedding bias, activation, per-sample scale).
//
//   out[b, ho, wo, co] = act( Σ_{kh, kw, ci} in(b, hi, wi, ci) · w[co, kh, kw, ci] + bias(b, co) ) · sample_scale[b]
//   convolution:            hi = ho·S + kh,      wi = wo·S + kw
//   transposed convolution: hi = (ho − kh) / S,  wi = (wo − kw) / S, a tap counting only where both divide
//                           exactly and land inside the input (PyTorch's ConvTranspose2d, padding 0)
//   in(b, h, w, ci) = T1(src1[b, h, w, ci])        for ci < C1
//                   = T2(src2[b, h, w, ci − C1])   for C1 ≤ ci < C1 + C2   (concatenation: src1 first, then src2)
//   T(v) = activate(ACT_SILU, v · norm[off + (b·C + c)·2] + norm[off + (b·C + c)·2 + 1]) when NORM_SRC1 / NORM_SRC2 is set
//          (a GroupNorm folded into one scale and shift per sample and channel, see groupnorm_stats.wgsl), else v
//   bias(b, co) = bias[co] (BIAS_MODE 1), bias[bias_offset + time_index[b]·bias_stride + co] (BIAS_MODE 2), or 0
//   sample_scale applies only when SCALE_SAMPLES is set; act is an ACT code of shared/activations.wgsl.
//
// A transposed convolution of stride S runs as S² dispatches, one per output phase (ho mod S, wo mod S) =
// (phase_h, phase_w): the outputs ho = S·i + phase_h only meet taps kh = phase_h + S·th, with hi = i − th, so no
// work is spent on taps that skip. A dispatch covers the class's rows (b, i, j) and its taps (th, tw, ci):
//   convolution:  one class, taps_h = taps_w = 3, ho = i, kh = th, hi = S·i + th
//   transposed:   class (phase_h, phase_w), taps_h = ⌈(3 − phase_h)/S⌉, ho = S·i + phase_h, kh = phase_h + S·th
//
// Bindings (group 0): 0 src1 (read), 1 src2 (read), 2 norm (read), 3 weight (read), 4 bias (read),
//                     5 time_index (read, u32), 6 sample_scale (read), 7 out (read_write), 8 params (uniform).
// Layout: src1 [B, Hin, Win, C1], src2 [B, Hin, Win, C2], out [B, Hout, Wout, Cout] (NHWC, row-major);
//         weight [Cout, 3, 3, C1 + C2] (PyTorch's weights reordered on the host; row = (kh·3 + kw)·Cin + ci).
// Tiling (shared/conv_igemm_core.wgsl, as matmul_tiled.wgsl): M = B·class_h·class_w output pixels, N = Cout,
// K = taps_h·taps_w·(C1 + C2); 64×64 tiles. Dispatch (⌈Cout/64⌉, ⌈M/64⌉, 1) per class. Every index is bounds-checked.
// The same body on shared/conv_igemm_core_128.wgsl (as matmul_tiled_128.wgsl) is the kernel conv2d_igemm_128:
// 128×128 tiles, dispatch (⌈Cout/128⌉, ⌈M/128⌉, 1) per class (ops::conv::ConvTile).

override NORM_SRC1: bool = false;
override NORM_SRC2: bool = false;
override BIAS_MODE: u32 = 0u;
override ACT: u32 = 0u;
override SCALE_SAMPLES: bool = false;

@group(0) @binding(0) var<storage, read> src1: array<f32>;
@group(0) @binding(1) var<storage, read> src2: array<f32>;
@group(0) @binding(2) var<storage, read> norm: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read> time_index: array<u32>;
@group(0) @binding(6) var<storage, read> sample_scale: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;

fn load_input(b: u32, i: u32, j: u32, th: u32, tw: u32, ci: u32) -> f32 {
    let p = input_pixel(b, i, j, th, tw);
    if (p < 0) { return 0.0; }
    let pixel = u32(p);
    if (ci < params.c1) {
        var v = src1[pixel * params.c1 + ci];
        if (NORM_SRC1) {
            let n = params.norm_offset1 + (b * params.c1 + ci) * 2u;
            v = activate(ACT_SILU, v * norm[n] + norm[n + 1u]);
        }
        return v;
    }
    let c = ci - params.c1;
    var v = src2[pixel * params.c2 + c];
    if (NORM_SRC2) {
        let n = params.norm_offset2 + (b * params.c2 + c) * 2u;
        v = activate(ACT_SILU, v * norm[n] + norm[n + 1u]);
    }
    return v;
}

fn store_output(m: u32, b: u32, pixel: u32, n: u32, acc: f32) {
    var v = acc;
    if (BIAS_MODE == 1u) { v += bias[n]; }
    if (BIAS_MODE == 2u) { v += bias[params.bias_offset + time_index[b] * params.bias_stride + n]; }
    v = activate(ACT, v);
    if (SCALE_SAMPLES) { v *= sample_scale[b]; }
    out[pixel * params.cout + n] = v;
}
