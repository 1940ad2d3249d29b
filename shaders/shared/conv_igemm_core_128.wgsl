// shared/conv_igemm_core_128.wgsl — the 128×128-tile variant of shared/conv_igemm_core.wgsl (run when
// SCORELENS_CONV_TILE=128, see ops::conv::ConvTile): the same implicit GEMM and the same load_input / store_output
// contract with the kernel body, prefixed after shared/activations.wgsl, shared/register_tile_128.wgsl and
// shared/conv_geometry.wgsl. A 16×16-thread workgroup computes a 128×128 tile, 8×8 outputs per thread (rows and
// columns as shared/register_tile_128.wgsl), K-step 8. Each thread loads 4 elements of A and 4 of B per step, at
// K column (lid & 7) and tile rows / columns (lid >> 3) + 32·r, so consecutive threads walk K (the contiguous
// channel axis of the NHWC input and of the weight rows) and each thread decomposes its rows once and its tap once
// per step.

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let m0 = group.y * BIG_M;
    let n0 = group.x * BIG_N;
    let tx = local.x;
    let ty = local.y;
    let cin = params.c1 + params.c2;
    let weight_row = 9u * cin;

    let kk_load = lid & 7u;
    var rows: array<vec3<u32>, 4>;
    var row_ok: array<bool, 4>;
    for (var r = 0u; r < 4u; r++) {
        let m = m0 + (lid >> 3u) + 32u * r;
        row_ok[r] = m < params.m;
        rows[r] = class_row(m);
    }

    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i++) { acc[i] = vec4<f32>(0.0); }

    for (var k0 = 0u; k0 < params.k; k0 += BIG_K) {
        let k = k0 + kk_load;
        let tap = conv_tap(k, cin);
        for (var r = 0u; r < 4u; r++) {
            let mm = (lid >> 3u) + 32u * r;
            var va = 0.0;
            if (row_ok[r] && k < params.k) {
                va = load_input(rows[r].x, rows[r].y, rows[r].z, tap.th, tap.tw, tap.ci);
            }
            stage_a_128(kk_load, mm, va);

            // Weights [Cout, K]: consecutive threads walk K.
            let gn = n0 + mm;
            var vb = 0.0;
            if (gn < params.cout && k < params.k) { vb = weight[gn * weight_row + tap.w]; }
            stage_b_128(kk_load, mm, vb);
        }
        workgroupBarrier();
        multiply_tiles_128(tx, ty, &acc);
        workgroupBarrier();
    }

    for (var r = 0u; r < 8u; r++) {
        let m = m0 + tile_row_128(r, ty);
        if (m >= params.m) { continue; }
        let row = m / (params.class_h * params.class_w);
        let pixel = output_pixel(m);
        for (var h = 0u; h < 2u; h++) {
            let v = acc[2u * r + h];
            for (var j = 0u; j < 4u; j++) {
                let n = n0 + tile_col_128(h, j, tx);
                if (n >= params.cout) { continue; }
                store_output(m, row, pixel, n, v[j]);
            }
        }
    }
}
