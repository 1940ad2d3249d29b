// shared/conv_igemm_core.wgsl — the implicit-GEMM tiling shared by the 3×3 convolution kernels
// (conv2d_igemm.wgsl for values, conv2d_tangent.wgsl for tangents, conv2d_adjoint.wgsl for cotangents), 64×64 tiles.
// Prefixed (after shared/activations.wgsl, shared/register_tile.wgsl and shared/conv_geometry.wgsl) to a kernel that
// defines its bindings and two functions the core calls:
//   load_input(row, i, j, th, tw, ci) -> f32   one element of the (transposed) convolution's input for output
//                                             class row (row, i, j) and tap (th, tw, ci), 0 outside the input
//   store_output(m, row, pixel, n, value)       the epilogue for output element (pixel, n) of GEMM row m
// GEMM rows m decompose as (row, i, j) over params.batch rows of class_h × class_w outputs; K as (th, tw, ci)
// over taps_h × taps_w taps of C1 + C2 channels; N is the output channel. A 16×16-thread workgroup computes a
// 64×64 tile, 4×4 per thread, K-step 16. See conv2d_igemm.wgsl for the output phase classes; the 128×128 variant
// is shared/conv_igemm_core_128.wgsl.

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
    let cin = params.c1 + params.c2;
    let weight_row = 9u * cin;

    // Each thread loads A rows (lid >> 4) + 16·r at column (lid & 15) of every K-step: decompose its rows once.
    let kk_load = lid & 15u;
    var rows: array<vec3<u32>, 4>;
    var row_ok: array<bool, 4>;
    for (var r = 0u; r < 4u; r++) {
        let m = m0 + (lid >> 4u) + 16u * r;
        row_ok[r] = m < params.m;
        rows[r] = class_row(m);
    }

    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) { acc[i] = vec4<f32>(0.0); }

    for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
        let k = k0 + kk_load;
        let tap = conv_tap(k, cin);
        for (var r = 0u; r < 4u; r++) {
            var va = 0.0;
            if (row_ok[r] && k < params.k) {
                va = load_input(rows[r].x, rows[r].y, rows[r].z, tap.th, tap.tw, tap.ci);
            }
            tile_a[kk_load * TILE_M + (lid >> 4u) + 16u * r] = va;

            // Weights [Cout, K]: consecutive threads walk K.
            let nn = (lid >> 4u) + 16u * r;
            let gn = n0 + nn;
            var vb = 0.0;
            if (gn < params.cout && k < params.k) { vb = weight[gn * weight_row + tap.w]; }
            tile_b[kk_load * TILE_N + nn] = vb;
        }
        workgroupBarrier();
        multiply_tiles(row0, col0, &acc);
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let m = m0 + row0 + i;
        if (m >= params.m) { continue; }
        let row = m / (params.class_h * params.class_w);
        let pixel = output_pixel(m);
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + col0 + j;
            if (n >= params.cout) { continue; }
            store_output(m, row, pixel, n, acc[i][j]);
        }
    }
}
