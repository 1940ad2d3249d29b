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
// Bindings (group 0): 0 src1 (read), 1 src2 (read), 2 norm (read), 3 weight (read), 4 bias (read),
//                     5 time_index (read, u32), 6 sample_scale (read), 7 out (read_write), 8 params (uniform).
// Layout: src1 [B, Hin, Win, C1], src2 [B, Hin, Win, C2], out [B, Hout, Wout, Cout] (NHWC, row-major);
//         weight [Cout, 3, 3, C1 + C2] (PyTorch's weights reordered on the host; K index = (kh·3 + kw)·Cin + ci).
// Tiling as matmul_tiled.wgsl: M = B·Hout·Wout output pixels, N = Cout, K = 9·(C1 + C2); a 16×16-thread workgroup
// computes a 64×64 tile, 4×4 per thread, K-step 16. Dispatch (⌈Cout/64⌉, ⌈M/64⌉, 1). Every index is bounds-checked.

struct Params {
    batch: u32, hin: u32, win: u32, c1: u32,
    c2: u32, cout: u32, hout: u32, wout: u32,
    stride: u32, m: u32, k: u32, norm_offset1: u32,
    norm_offset2: u32, bias_offset: u32, bias_stride: u32, pad0: u32,
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

// One input element of the concatenated, normalised input, or 0 where the tap falls outside it.
fn load_input(b: u32, ho: u32, wo: u32, kh: u32, kw: u32, ci: u32) -> f32 {
    var hi: u32;
    var wi: u32;
    if (TRANSPOSED) {
        // ho − kh must be a non-negative multiple of S that lands inside the input.
        if (ho < kh || wo < kw) { return 0.0; }
        let dh = ho - kh;
        let dw = wo - kw;
        hi = dh / params.stride;
        wi = dw / params.stride;
        if (hi * params.stride != dh || wi * params.stride != dw || hi >= params.hin || wi >= params.win) { return 0.0; }
    } else {
        hi = ho * params.stride + kh;
        wi = wo * params.stride + kw;
    }
    let pixel = (b * params.hin + hi) * params.win + wi;
    if (ci < params.c1) {
        var v = src1[pixel * params.c1 + ci];
        if (NORM_SRC1) {
            let j = params.norm_offset1 + (b * params.c1 + ci) * 2u;
            v = silu(v * norm[j] + norm[j + 1u]);
        }
        return v;
    }
    let c = ci - params.c1;
    var v = src2[pixel * params.c2 + c];
    if (NORM_SRC2) {
        let j = params.norm_offset2 + (b * params.c2 + c) * 2u;
        v = silu(v * norm[j] + norm[j + 1u]);
    }
    return v;
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
    let pixels_out = params.hout * params.wout;
    let cin = params.c1 + params.c2;

    // Each thread loads A rows (lid >> 4) + 16·r at column (lid & 15) of every K-step: decompose its rows once.
    let kk_load = lid & 15u;
    var row_b: array<u32, 4>;
    var row_ho: array<u32, 4>;
    var row_wo: array<u32, 4>;
    var row_ok: array<bool, 4>;
    for (var r = 0u; r < 4u; r++) {
        let m = m0 + (lid >> 4u) + 16u * r;
        row_ok[r] = m < params.m;
        let b = m / pixels_out;
        let p = m - b * pixels_out;
        row_b[r] = b;
        row_ho[r] = p / params.wout;
        row_wo[r] = p - row_ho[r] * params.wout;
    }

    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) { acc[i] = vec4<f32>(0.0); }

    for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
        let k = k0 + kk_load;
        let tap = k / cin;
        let ci = k - tap * cin;
        let kh = tap / 3u;
        let kw = tap - kh * 3u;
        for (var r = 0u; r < 4u; r++) {
            var va = 0.0;
            if (row_ok[r] && k < params.k) {
                va = load_input(row_b[r], row_ho[r], row_wo[r], kh, kw, ci);
            }
            tile_a[kk_load * TILE_M + (lid >> 4u) + 16u * r] = va;

            // Weights [Cout, K]: consecutive threads walk K.
            let nn = (lid >> 4u) + 16u * r;
            let gn = n0 + nn;
            var vb = 0.0;
            if (gn < params.cout && k < params.k) { vb = weight[gn * params.k + k]; }
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
        let b = m / pixels_out;
        var scale = 1.0;
        if (SCALE_SAMPLES) { scale = sample_scale[b]; }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + col0 + j;
            if (n >= params.cout) { continue; }
            var v = acc[i][j];
            if (BIAS_MODE == 1u) { v += bias[n]; }
            if (BIAS_MODE == 2u) { v += bias[params.bias_offset + time_index[b] * params.bias_stride + n]; }
            out[m * params.cout + n] = activate(ACT, v) * scale;
        }
    }
}
