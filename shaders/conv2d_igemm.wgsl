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
//   T(v) = silu(v · norm[off + (b·C + c)·2] + norm[off + (b·C + c)·2 + 1]) when NORM_SRC1 / NORM_SRC2 is set
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
// Tiling as matmul_tiled.wgsl: M = B·class_h·class_w output pixels, N = Cout, K = taps_h·taps_w·(C1 + C2); a 16×16
// workgroup computes a 64×64 tile, 4×4 per thread, K-step 16. Dispatch (⌈Cout/64⌉, ⌈M/64⌉, 1) per class.
// Every index is bounds-checked.

struct Params {
    batch: u32, hin: u32, win: u32, c1: u32,
    c2: u32, cout: u32, hout: u32, wout: u32,
    stride: u32, m: u32, k: u32, norm_offset1: u32,
    norm_offset2: u32, bias_offset: u32, bias_stride: u32, phase_h: u32,
    phase_w: u32, taps_h: u32, taps_w: u32, class_h: u32,
    class_w: u32, pad0: u32, pad1: u32, pad2: u32,
}

override TRANSPOSED: bool = false;
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

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

var<workgroup> tile_a: array<f32, 1024>; // [TILE_K][TILE_M]
var<workgroup> tile_b: array<f32, 1024>; // [TILE_K][TILE_N]

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

// One input element of the concatenated, normalised input for class row (b, i, j) and tap (th, tw), or 0 where
// the tap falls outside the input.
fn load_input(b: u32, i: u32, j: u32, th: u32, tw: u32, ci: u32) -> f32 {
    var hi: u32;
    var wi: u32;
    if (TRANSPOSED) {
        if (i < th || j < tw) { return 0.0; }
        hi = i - th;
        wi = j - tw;
        if (hi >= params.hin || wi >= params.win) { return 0.0; }
    } else {
        hi = i * params.stride + th;
        wi = j * params.stride + tw;
    }
    let pixel = (b * params.hin + hi) * params.win + wi;
    if (ci < params.c1) {
        var v = src1[pixel * params.c1 + ci];
        if (NORM_SRC1) {
            let n = params.norm_offset1 + (b * params.c1 + ci) * 2u;
            v = silu(v * norm[n] + norm[n + 1u]);
        }
        return v;
    }
    let c = ci - params.c1;
    var v = src2[pixel * params.c2 + c];
    if (NORM_SRC2) {
        let n = params.norm_offset2 + (b * params.c2 + c) * 2u;
        v = silu(v * norm[n] + norm[n + 1u]);
    }
    return v;
}

// The output pixel (b·Hout + ho)·Wout + wo of class row m, for the epilogue.
fn output_pixel(m: u32) -> u32 {
    let per_image = params.class_h * params.class_w;
    let b = m / per_image;
    let r = m - b * per_image;
    let i = r / params.class_w;
    let j = r - i * params.class_w;
    var ho = i;
    var wo = j;
    if (TRANSPOSED) {
        ho = i * params.stride + params.phase_h;
        wo = j * params.stride + params.phase_w;
    }
    return (b * params.hout + ho) * params.wout + wo;
}

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let m0 = group.y * TILE_M;
    let n0 = group.x * TILE_N;
    let row0 = local.y * 4u;
    let col0 = local.x * 4u;
    let per_image = params.class_h * params.class_w;
    let cin = params.c1 + params.c2;
    let weight_row = 9u * cin;

    // Each thread loads A rows (lid >> 4) + 16·r at column (lid & 15) of every K-step: decompose its rows once.
    let kk_load = lid & 15u;
    var row_b: array<u32, 4>;
    var row_i: array<u32, 4>;
    var row_j: array<u32, 4>;
    var row_ok: array<bool, 4>;
    for (var r = 0u; r < 4u; r++) {
        let m = m0 + (lid >> 4u) + 16u * r;
        row_ok[r] = m < params.m;
        let b = m / per_image;
        let p = m - b * per_image;
        row_b[r] = b;
        row_i[r] = p / params.class_w;
        row_j[r] = p - row_i[r] * params.class_w;
    }

    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) { acc[i] = vec4<f32>(0.0); }

    for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
        let k = k0 + kk_load;
        let tap = k / cin;
        let ci = k - tap * cin;
        let th = tap / params.taps_w;
        let tw = tap - th * params.taps_w;
        var kh = th;
        var kw = tw;
        if (TRANSPOSED) {
            kh = params.phase_h + params.stride * th;
            kw = params.phase_w + params.stride * tw;
        }
        let weight_col = (kh * 3u + kw) * cin + ci;
        for (var r = 0u; r < 4u; r++) {
            var va = 0.0;
            if (row_ok[r] && k < params.k) {
                va = load_input(row_b[r], row_i[r], row_j[r], th, tw, ci);
            }
            tile_a[kk_load * TILE_M + (lid >> 4u) + 16u * r] = va;

            // Weights [Cout, K]: consecutive threads walk K.
            let nn = (lid >> 4u) + 16u * r;
            let gn = n0 + nn;
            var vb = 0.0;
            if (gn < params.cout && k < params.k) { vb = weight[gn * weight_row + weight_col]; }
            tile_b[kk_load * TILE_N + nn] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            let ao = kk * TILE_M + row0;
            let bo = kk * TILE_N + col0;
            let bv = vec4<f32>(tile_b[bo], tile_b[bo + 1u], tile_b[bo + 2u], tile_b[bo + 3u]);
            acc[0] = fma(vec4<f32>(tile_a[ao]), bv, acc[0]);
            acc[1] = fma(vec4<f32>(tile_a[ao + 1u]), bv, acc[1]);
            acc[2] = fma(vec4<f32>(tile_a[ao + 2u]), bv, acc[2]);
            acc[3] = fma(vec4<f32>(tile_a[ao + 3u]), bv, acc[3]);
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let m = m0 + row0 + i;
        if (m >= params.m) { continue; }
        let b = m / per_image;
        let pixel = output_pixel(m);
        var scale = 1.0;
        if (SCALE_SAMPLES) { scale = sample_scale[b]; }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + col0 + j;
            if (n >= params.cout) { continue; }
            var v = acc[i][j];
            if (BIAS_MODE == 1u) { v += bias[n]; }
            if (BIAS_MODE == 2u) { v += bias[params.bias_offset + time_index[b] * params.bias_stride + n]; }
            out[pixel * params.cout + n] = activate(ACT, v) * scale;
        }
    }
}
