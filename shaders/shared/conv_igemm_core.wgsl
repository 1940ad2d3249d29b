// shared/conv_igemm_core.wgsl — the implicit-GEMM tiling shared by the 3×3 convolution kernels
// (conv2d_igemm.wgsl for values, conv2d_tangent.wgsl for tangents, conv2d_adjoint.wgsl for cotangents).
// Prefixed (after shared/activations.wgsl) to a kernel that defines its bindings and two functions the core calls:
//   load_input(row, i, j, th, tw, ci) -> f32   one element of the (transposed) convolution's input for output
//                                             class row (row, i, j) and tap (th, tw, ci), 0 outside the input
//   store_output(m, row, pixel, n, value)       the epilogue for output element (pixel, n) of GEMM row m
// GEMM rows m decompose as (row, i, j) over params.batch rows of class_h × class_w outputs; K as (th, tw, ci)
// over taps_h × taps_w taps of C1 + C2 channels; N is the output channel. A 16×16-thread workgroup computes a
// 64×64 tile, 4×4 per thread, K-step 16. See conv2d_igemm.wgsl for the output phase classes.

struct Params {
    batch: u32, hin: u32, win: u32, c1: u32,
    c2: u32, cout: u32, hout: u32, wout: u32,
    stride: u32, m: u32, k: u32, norm_offset1: u32,
    norm_offset2: u32, bias_offset: u32, bias_stride: u32, phase_h: u32,
    phase_w: u32, taps_h: u32, taps_w: u32, class_h: u32,
    class_w: u32, group_rows: u32, stats_offset1: u32, stats_offset2: u32,
    tstats_offset1: u32, tstats_offset2: u32, groups1: u32, groups2: u32,
    grad_stride1: u32, grad_offset1: u32, grad_stride2: u32, grad_offset2: u32,
}

override TRANSPOSED: bool = false;


// The input pixel (row·Hin + hi)·Win + wi that tap (th, tw) of class output (i, j) reads, or -1 outside the input.
fn input_pixel(row: u32, i: u32, j: u32, th: u32, tw: u32) -> i32 {
    var hi: u32;
    var wi: u32;
    if (TRANSPOSED) {
        if (i < th || j < tw) { return -1; }
        hi = i - th;
        wi = j - tw;
        if (hi >= params.hin || wi >= params.win) { return -1; }
    } else {
        hi = i * params.stride + th;
        wi = j * params.stride + tw;
    }
    return i32((row * params.hin + hi) * params.win + wi);
}

// The output pixel (row·Hout + ho)·Wout + wo of class row m.
fn output_pixel(m: u32) -> u32 {
    let per_row = params.class_h * params.class_w;
    let row = m / per_row;
    let r = m - row * per_row;
    let i = r / params.class_w;
    let j = r - i * params.class_w;
    var ho = i;
    var wo = j;
    if (TRANSPOSED) {
        ho = i * params.stride + params.phase_h;
        wo = j * params.stride + params.phase_w;
    }
    return (row * params.hout + ho) * params.wout + wo;
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
    let per_row = params.class_h * params.class_w;
    let cin = params.c1 + params.c2;
    let weight_row = 9u * cin;

    // Each thread loads A rows (lid >> 4) + 16·r at column (lid & 15) of every K-step: decompose its rows once.
    let kk_load = lid & 15u;
    var row_n: array<u32, 4>;
    var row_i: array<u32, 4>;
    var row_j: array<u32, 4>;
    var row_ok: array<bool, 4>;
    for (var r = 0u; r < 4u; r++) {
        let m = m0 + (lid >> 4u) + 16u * r;
        row_ok[r] = m < params.m;
        let n = m / per_row;
        let p = m - n * per_row;
        row_n[r] = n;
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
                va = load_input(row_n[r], row_i[r], row_j[r], th, tw, ci);
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
        multiply_tiles(row0, col0, &acc);
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let m = m0 + row0 + i;
        if (m >= params.m) { continue; }
        let row = m / per_row;
        let pixel = output_pixel(m);
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + col0 + j;
            if (n >= params.cout) { continue; }
            store_output(m, row, pixel, n, acc[i][j]);
        }
    }
}
