// kde_distances.wgsl — the softmax logits of the smoothed empirical density: scaled squared distances between
// query points and one tile of data points.
//
// For b < rows, i < tile_rows:
//     logits[b·ld + i] = max(−‖x_b − α·dataᵢ‖² · inv_two_var, LOWEST_LOGIT)
// summed over the differences themselves, never as ‖x‖² − 2x·y + ‖y‖² (which cancels when σ is small next to ‖x‖).
//
// Bindings (group 0): 0 data (read, the tile [tile_rows, dim]), 1 x (read, [rows, dim]),
//                     2 logits (read_write, [rows, ld]), 3 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. A 16×16-thread workgroup computes a 64×64 block (64 query rows × 64 data rows, 4×4 per
// thread), stepping over dim 16 at a time through workgroup memory. Dispatch (⌈tile_rows/64⌉, ⌈rows/64⌉, 1).
// Shared: the entry point `main` and centred_data (shared/kde_block.wgsl); this file defines `block`.

@group(0) @binding(0) var<storage, read> data: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> logits: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> tile_x: array<f32, 1024>; // [kk][bb]
var<workgroup> tile_y: array<f32, 1024>; // [kk][ii]

// Called by main (shared/kde_block.wgsl).
fn block(group: vec3<u32>, row0: u32, col0: u32, lid: u32) {
    let b0 = group.y * 64u;
    let i0 = group.x * 64u;
    var acc = array<vec4<f32>, 4>();

    for (var k0 = 0u; k0 < params.dim; k0 += 16u) {
        for (var r = 0u; r < 4u; r++) {
            // Consecutive threads walk k, the contiguous axis of both x and data.
            let e = lid + r * THREADS;
            let kk = e & 15u;
            let mm = e >> 4u;
            let gk = k0 + kk;
            var vx = 0.0;
            if (b0 + mm < params.rows && gk < params.dim) { vx = x[(b0 + mm) * params.dim + gk]; }
            tile_x[kk * 64u + mm] = vx;
            tile_y[kk * 64u + mm] = centred_data(i0 + mm, gk, 0.0);
        }
        workgroupBarrier();
        let steps = min(16u, params.dim - k0);
        for (var kk = 0u; kk < steps; kk++) {
            let xo = kk * 64u + row0;
            let yo = kk * 64u + col0;
            let yv = vec4<f32>(tile_y[yo], tile_y[yo + 1u], tile_y[yo + 2u], tile_y[yo + 3u]);
            let d0 = vec4<f32>(tile_x[xo]) - yv;
            acc[0] = fma(d0, d0, acc[0]);
            let d1 = vec4<f32>(tile_x[xo + 1u]) - yv;
            acc[1] = fma(d1, d1, acc[1]);
            let d2 = vec4<f32>(tile_x[xo + 2u]) - yv;
            acc[2] = fma(d2, d2, acc[2]);
            let d3 = vec4<f32>(tile_x[xo + 3u]) - yv;
            acc[3] = fma(d3, d3, acc[3]);
        }
        workgroupBarrier();
    }

    for (var j = 0u; j < 4u; j++) {
        let b = b0 + row0 + j;
        if (b >= params.rows) { continue; }
        for (var c = 0u; c < 4u; c++) {
            let i = i0 + col0 + c;
            if (i >= params.tile_rows) { continue; }
            logits[b * params.ld + i] = max(-acc[j][c] * params.inv_two_var, LOWEST_LOGIT);
        }
    }
}
