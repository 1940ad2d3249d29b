// kde_covariance.wgsl — the softmax-weighted covariance of the (scaled) data around each query point's weighted
// mean, folded over one data tile; the Hessian of log p is then −I/σ² + cov/σ⁴.
//
// For b < rows and k, l < dim, with state[b] = (M, S, ·, ·) final (after every tile's kde_softmax_update),
// wᵢ = exp(logits[b·ld + i] − M) / S and m_b = x_b + acc_b / S (kde_mean_update.wgsl):
//     cov[(b·dim + k)·dim + l] (+)= Σᵢ wᵢ (α·dataᵢₖ − m_bk)(α·dataᵢₗ − m_bl)      (i < tile_rows)
// overwritten when `first`, accumulated otherwise. Centred on m_b (the second pass over the data), never as
// E[yyᵀ] − mmᵀ, which cancels when the spread is small next to ‖m‖.
//
// Bindings (group 0): 0 data (read, the tile [tile_rows, dim]), 1 x (read, [rows, dim]), 2 logits (read,
//                     [rows, ld]), 3 state (read, vec4 [rows]), 4 acc (read, [rows, dim]),
//                     5 cov (read_write, [rows, dim, dim]), 6 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. Per query point (workgroup z), a 16×16-thread workgroup computes a 64×64 block of its
// dim×dim covariance (shared/register_tile.wgsl), stepping over the tile's data points 16 at a time.
// Dispatch (⌈dim/64⌉, ⌈dim/64⌉, rows).
// Shared: `main` and centred_data (shared/kde_block.wgsl), weighted_mean (shared/kde_moments.wgsl), stage_weights
// (shared/kde_weights.wgsl), multiply_tiles (shared/register_tile.wgsl); this file defines `block`.

@group(0) @binding(0) var<storage, read> data: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> state: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> acc: array<f32>;
@group(0) @binding(5) var<storage, read_write> cov: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;

var<workgroup> mean_rows: array<f32, 64>; // m_bk for this block's rows k
var<workgroup> mean_cols: array<f32, 64>; // m_bl for this block's columns l

// Called by main (shared/kde_block.wgsl).
fn block(group: vec3<u32>, row0: u32, col0: u32, lid: u32) {
    let b = group.z;
    if (b >= params.rows) { return; }
    let k0 = group.y * TILE_M;
    let l0 = group.x * TILE_N;
    let s = state[b];
    let inv_s = 1.0 / s.y;
    if (lid < 64u) {
        let k = k0 + lid;
        if (k < params.dim) { mean_rows[lid] = weighted_mean(b, k, inv_s); }
    } else if (lid < 128u) {
        let l = l0 + lid - 64u;
        if (l < params.dim) { mean_cols[lid - 64u] = weighted_mean(b, l, inv_s); }
    }

    var out = array<vec4<f32>, 4>();

    for (var i0 = 0u; i0 < params.tile_rows; i0 += TILE_K) {
        stage_weights(lid, b, i0, s, inv_s);
        for (var r = 0u; r < 4u; r++) {
            // Consecutive threads walk the coordinate, the contiguous axis of data.
            let e = lid + r * THREADS;
            let c = e & 63u;
            let ii = e >> 6u;
            tile_a[ii * TILE_M + c] = weights[ii] * centred_data(i0 + ii, k0 + c, mean_rows[c]);
            tile_b[ii * TILE_N + c] = centred_data(i0 + ii, l0 + c, mean_cols[c]);
        }
        workgroupBarrier();
        multiply_tiles(row0, col0, &out);
        workgroupBarrier();
    }

    for (var j = 0u; j < 4u; j++) {
        let k = k0 + row0 + j;
        if (k >= params.dim) { continue; }
        for (var c = 0u; c < 4u; c++) {
            let l = l0 + col0 + c;
            if (l >= params.dim) { continue; }
            let index = (b * params.dim + k) * params.dim + l;
            var previous = 0.0;
            if (params.first == 0u) { previous = cov[index]; }
            cov[index] = previous + out[j][c];
        }
    }
}
