// kde_hvp_accumulate.wgsl — the second half of a Hessian-vector product of log p: the softmax-weighted sum of the
// centred data points, each scaled by its projection (kde_hvp_project.wgsl), folded over one data tile.
//
// For b < rows, p < per_point, k < dim, with wᵢ = exp(logits[b·ld + i] − M) / S and m_b = x_b + acc_b / S
// (state[b] = (M, S, ·, ·), final):
//     u[(b·per_point + p)·dim + k] (+)= Σᵢ wᵢ · proj[(b·per_point + p)·ld + i] · (α·dataᵢₖ − m_bk)   (i < tile_rows)
// overwritten when `first`. Then H·v = −v/σ² + u/σ⁴ = −v/σ² + Cov_w (v)/σ⁴ without forming Cov_w.
//
// Bindings (group 0): 0 data (read, the tile [tile_rows, dim]), 1 x (read, [rows, dim]), 2 logits (read,
//                     [rows, ld]), 3 state (read, vec4 [rows]), 4 acc (read, [rows, dim]),
//                     5 proj (read, [rows, per_point, ld]), 6 u (read_write, [rows, per_point, dim]),
//                     7 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. Per query point (workgroup z), a 16 × (BLOCK_ROWS/4)-thread workgroup computes a
// BLOCK_ROWS × 64 block (BLOCK_ROWS directions × 64 coordinates, 4×4 per thread, shared/register_tile.wgsl),
// stepping over the tile's data points 16 at a time; BLOCK_ROWS (override, shared/kde_block.wgsl) is 64, or 16
// for narrow blocks. Dispatch (⌈dim/64⌉, ⌈per_point/BLOCK_ROWS⌉, rows).
// Shared: `main` and centred_data (shared/kde_block.wgsl), weighted_mean (shared/kde_moments.wgsl), stage_weights
// (shared/kde_weights.wgsl), multiply_tiles (shared/register_tile.wgsl); this file defines `block`.

@group(0) @binding(0) var<storage, read> data: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> state: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> acc: array<f32>;
@group(0) @binding(5) var<storage, read> proj: array<f32>;
@group(0) @binding(6) var<storage, read_write> u: array<f32>;
@group(0) @binding(7) var<uniform> params: Params;

var<workgroup> mean_cols: array<f32, 64>;

// Called by main (shared/kde_block.wgsl).
fn block(group: vec3<u32>, row0: u32, col0: u32, lid: u32) {
    let b = group.z;
    if (b >= params.rows) { return; }
    let p0 = group.y * BLOCK_ROWS;
    let k0 = group.x * TILE_N;
    let s = state[b];
    let inv_s = 1.0 / s.y;
    // One mean per column, by the first 64 threads (stage_weights' barrier below publishes them).
    if (lid < 64u && k0 + lid < params.dim) { mean_cols[lid] = weighted_mean(b, k0 + lid, inv_s); }

    var out = array<vec4<f32>, 4>();

    for (var i0 = 0u; i0 < params.tile_rows; i0 += TILE_K) {
        stage_weights(lid, b, i0, s, inv_s);
        // Weighted projections: 16 × BLOCK_ROWS values, 4 per thread; consecutive threads walk i (contiguous in
        // proj).
        for (var r = 0u; r < 4u; r++) {
            let e = lid + r * THREADS;
            let ii = e & 15u;
            let pp = e >> 4u;
            var a = 0.0;
            if (p0 + pp < params.per_point && i0 + ii < params.tile_rows) {
                a = weights[ii] * proj[(b * params.per_point + p0 + pp) * params.ld + i0 + ii];
            }
            tile_a[ii * TILE_M + pp] = a;
        }
        // Centred data: 16×64 values, 1024 / THREADS per thread; consecutive threads walk k (contiguous in data).
        for (var e = lid; e < TILE_K * TILE_N; e += THREADS) {
            let kk = e & 63u;
            let iy = e >> 6u;
            tile_b[iy * TILE_N + kk] = centred_data(i0 + iy, k0 + kk, mean_cols[kk]);
        }
        workgroupBarrier();
        multiply_tiles(row0, col0, &out);
        workgroupBarrier();
    }

    for (var j = 0u; j < 4u; j++) {
        let p = p0 + row0 + j;
        if (p >= params.per_point) { continue; }
        for (var c = 0u; c < 4u; c++) {
            let k = k0 + col0 + c;
            if (k >= params.dim) { continue; }
            let index = (b * params.per_point + p) * params.dim + k;
            var previous = 0.0;
            if (params.first == 0u) { previous = u[index]; }
            u[index] = previous + out[j][c];
        }
    }
}
