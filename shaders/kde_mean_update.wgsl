// kde_mean_update.wgsl — the running softmax-weighted displacement of each query point towards the data, folded
// over one data tile (after kde_softmax_update.wgsl has updated the tile's max).
//
// For b < rows, k < dim, with state[b] = (M, S, M_prev, ·):
//     acc[b·dim + k] = acc[b·dim + k] · exp(M_prev − M)  (0 when `first`)
//                      + Σᵢ exp(logits[b·ld + i] − M) · (α·data[i·dim + k] − x[b·dim + k])      (i < tile_rows)
// so that after the last tile the weighted mean is m_b = x_b + acc_b / S and the score is acc_b / (S σ²). The
// displacement is summed from differences, not as Σ w y − x, so it keeps its digits when m_b is close to x_b.
//
// Bindings (group 0): 0 data (read, the tile [tile_rows, dim]), 1 x (read, [rows, dim]), 2 logits (read,
//                     [rows, ld]), 3 state (read, vec4 [rows]), 4 acc (read_write, [rows, dim]),
//                     5 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. A 16×16-thread workgroup computes a 64×64 block of acc (64 query rows × 64 coordinates,
// 4×4 per thread), stepping over the tile's data points 16 at a time through workgroup memory.
// Dispatch (⌈dim/64⌉, ⌈rows/64⌉, 1).
// Shared: the entry point `main` and centred_data (shared/kde_block.wgsl); this file defines `block`.

@group(0) @binding(0) var<storage, read> data: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> state: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> acc: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

var<workgroup> tile_w: array<f32, 1024>; // [ii][bb]: exp(logit − M)
var<workgroup> tile_y: array<f32, 1024>; // [ii][kk]: α·data
var<workgroup> row_max: array<f32, 64>;

// Called by main (shared/kde_block.wgsl).
fn block(group: vec3<u32>, row0: u32, col0: u32, lid: u32) {
    let b0 = group.y * 64u;
    let k0 = group.x * 64u;
    if (lid < 64u && b0 + lid < params.rows) { row_max[lid] = state[b0 + lid].x; }

    // This thread's x entries: the shift of each of its outputs.
    var shift: array<vec4<f32>, 4>;
    var out: array<vec4<f32>, 4>;
    for (var j = 0u; j < 4u; j++) {
        out[j] = vec4<f32>(0.0);
        shift[j] = vec4<f32>(0.0);
        let b = b0 + row0 + j;
        if (b >= params.rows) { continue; }
        for (var c = 0u; c < 4u; c++) {
            let k = k0 + col0 + c;
            if (k < params.dim) { shift[j][c] = x[b * params.dim + k]; }
        }
    }
    workgroupBarrier();

    for (var i0 = 0u; i0 < params.tile_rows; i0 += 16u) {
        for (var r = 0u; r < 4u; r++) {
            let e = lid + r * THREADS;
            // Weights: consecutive threads walk i (contiguous in logits).
            let ii = e & 15u;
            let bb = e >> 4u;
            var w = 0.0;
            if (b0 + bb < params.rows && i0 + ii < params.tile_rows) {
                w = exp(logits[(b0 + bb) * params.ld + i0 + ii] - row_max[bb]);
            }
            tile_w[ii * 64u + bb] = w;
            // Data: consecutive threads walk k (contiguous in data).
            let kk = e & 63u;
            let iy = e >> 6u;
            tile_y[iy * 64u + kk] = centred_data(i0 + iy, k0 + kk, 0.0);
        }
        workgroupBarrier();
        let steps = min(16u, params.tile_rows - i0);
        for (var ii = 0u; ii < steps; ii++) {
            let wo = ii * 64u + row0;
            let yo = ii * 64u + col0;
            let yv = vec4<f32>(tile_y[yo], tile_y[yo + 1u], tile_y[yo + 2u], tile_y[yo + 3u]);
            out[0] = fma(vec4<f32>(tile_w[wo]), yv - shift[0], out[0]);
            out[1] = fma(vec4<f32>(tile_w[wo + 1u]), yv - shift[1], out[1]);
            out[2] = fma(vec4<f32>(tile_w[wo + 2u]), yv - shift[2], out[2]);
            out[3] = fma(vec4<f32>(tile_w[wo + 3u]), yv - shift[3], out[3]);
        }
        workgroupBarrier();
    }

    for (var j = 0u; j < 4u; j++) {
        let b = b0 + row0 + j;
        if (b >= params.rows) { continue; }
        var rescale = 0.0;
        if (params.first == 0u) {
            let s = state[b];
            rescale = exp(s.z - s.x);
        }
        for (var c = 0u; c < 4u; c++) {
            let k = k0 + col0 + c;
            if (k >= params.dim) { continue; }
            let index = b * params.dim + k;
            var previous = 0.0;
            if (params.first == 0u) { previous = acc[index] * rescale; }
            acc[index] = previous + out[j][c];
        }
    }
}
