// kde_small_moments.wgsl — for a small dimension (dim ≤ 8), the online log-sum-exp and weighted displacement of
// each query point over one data tile, fused in one pass with one thread per query point (the 64-wide tiles of
// kde_distances.wgsl / kde_mean_update.wgsl would compute mostly padding there).
//
// Same results as kde_distances → kde_softmax_update → kde_mean_update: for b < rows, with
// ℓᵢ = max(−‖x_b − α·dataᵢ‖² · inv_two_var, LOWEST_LOGIT) over the tile's points i < tile_rows, the running
//     state[b] = (M, S, M_prev, 0),   M = max ℓ so far,   S = Σ exp(ℓᵢ − M)
//     acc[b·dim + k] = Σᵢ exp(ℓᵢ − M) · (α·dataᵢₖ − x_bk)
// updated point by point (rescaling by exp(M_old − M_new) whenever the max grows), continued from the previous
// tile's state unless `first`.
//
// Bindings (group 0): 0 data (read, the tile [tile_rows, dim]), 1 x (read, [rows, dim]),
//                     2 state (read_write, vec4 [rows]), 3 acc (read_write, [rows, dim]),
//                     4 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. 32-thread workgroups (shared/kde_small.wgsl), thread b = one query point; the tile is
// staged through workgroup memory 256 data points at a time. Dispatch (⌈rows/32⌉, 1, 1).
// Shared: `main`, stage_points, load_x, point_logit (shared/kde_small.wgsl); this file defines `query`.

@group(0) @binding(0) var<storage, read> data: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> acc: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

// Called by main (shared/kde_small.wgsl) for query point b.
fn query(b: u32, in_range: bool, dim: u32, lid: u32) {
    var xb: array<f32, 8>;
    var sum_d: array<f32, 8>;
    var m = LOWEST_LOGIT;
    var s = 0.0;
    for (var k = 0u; k < MAX_DIM; k++) {
        xb[k] = 0.0;
        sum_d[k] = 0.0;
    }
    if (in_range) {
        xb = load_x(b, dim);
        if (params.first == 0u) {
            let st = state[b];
            m = st.x;
            s = st.y;
            for (var k = 0u; k < dim; k++) { sum_d[k] = acc[b * params.dim + k]; }
        }
    }
    let m_before = m;

    // Two-level sums (a partial per 256-point chunk, added to the total at the chunk's end) keep the rounding
    // error near (256 + N/256)·ε instead of N·ε.
    var chunk_s = 0.0;
    var chunk_d: array<f32, 8>;
    for (var i0 = 0u; i0 < params.tile_rows; i0 += STAGE) {
        let count = stage_points(lid, i0, dim);
        if (in_range) {
            chunk_s = 0.0;
            for (var k = 0u; k < MAX_DIM; k++) { chunk_d[k] = 0.0; }
            for (var i = 0u; i < count; i++) {
                let logit = point_logit(xb, i, dim);
                if (logit > m) {
                    // A new max: rescale what was summed so far, and this point weighs exp(0) = 1.
                    let scale = exp(m - logit);
                    s *= scale;
                    chunk_s = chunk_s * scale + 1.0;
                    for (var k = 0u; k < dim; k++) {
                        sum_d[k] *= scale;
                        chunk_d[k] = chunk_d[k] * scale + (points[i * dim + k] - xb[k]);
                    }
                    m = logit;
                } else {
                    let w = exp(logit - m);
                    chunk_s += w;
                    for (var k = 0u; k < dim; k++) { chunk_d[k] = fma(w, points[i * dim + k] - xb[k], chunk_d[k]); }
                }
            }
            s += chunk_s;
            for (var k = 0u; k < dim; k++) { sum_d[k] += chunk_d[k]; }
        }
        workgroupBarrier();
    }

    if (in_range) {
        state[b] = vec4<f32>(m, s, m_before, 0.0);
        for (var k = 0u; k < dim; k++) { acc[b * params.dim + k] = sum_d[k]; }
    }
}
