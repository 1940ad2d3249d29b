// kde_small_covariance.wgsl — for a small dimension (dim ≤ 8), the softmax-weighted covariance of the scaled data
// around each query point's weighted mean over one data tile, one thread per query point.
//
// Same result as kde_covariance.wgsl: for b < rows, with the final state[b] = (M, S, ·, ·) and acc
// (kde_small_moments.wgsl), wᵢ = exp(ℓᵢ − M) / S, m_b = x_b + acc_b / S:
//     cov[(b·dim + k)·dim + l] (+)= Σᵢ wᵢ (α·dataᵢₖ − m_bk)(α·dataᵢₗ − m_bl)      (i < tile_rows)
// overwritten when `first`; centred on m_b (second pass), never E[yyᵀ] − mmᵀ.
//
// Bindings (group 0): 0 data (read, the tile [tile_rows, dim]), 1 x (read, [rows, dim]), 2 state (read, vec4
//                     [rows]), 3 acc (read, [rows, dim]), 4 cov (read_write, [rows, dim, dim]),
//                     5 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. 32-thread workgroups (shared/kde_small.wgsl), thread b = one query point; the tile is
// staged through workgroup memory 256 data points at a time; full rows are summed as vec4 pairs.
// Dispatch (⌈rows/32⌉, 1, 1).
// Shared: `main`, stage_points, load_x, point_logit (shared/kde_small.wgsl), weighted_mean
// (shared/kde_moments.wgsl); this file defines `query`.

@group(0) @binding(0) var<storage, read> data: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> state: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> acc: array<f32>;
@group(0) @binding(4) var<storage, read_write> cov: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

// Called by main (shared/kde_small.wgsl) for query point b.
fn query(b: u32, in_range: bool, dim: u32, lid: u32) {
    var xb: array<f32, 8>;
    var mean: array<f32, 8>;
    // Rows k of the covariance as two vec4 halves (columns 0–3, 4–7); fixed-size vector arithmetic keeps it in
    // registers (a dynamically indexed scalar array of 64 was miscompiled by lavapipe for long tiles).
    // Two-level sums (a partial per 256-point chunk, added to the total at the chunk's end) keep the rounding
    // error near (256 + N/256)·ε instead of N·ε.
    var c_lo: array<vec4<f32>, 8>;
    var c_hi: array<vec4<f32>, 8>;
    var part_lo: array<vec4<f32>, 8>;
    var part_hi: array<vec4<f32>, 8>;
    for (var k = 0u; k < MAX_DIM; k++) {
        xb[k] = 0.0;
        mean[k] = 0.0;
        c_lo[k] = vec4<f32>(0.0);
        c_hi[k] = vec4<f32>(0.0);
    }
    var m = 0.0;
    var inv_s = 0.0;
    if (in_range) {
        let st = state[b];
        m = st.x;
        inv_s = 1.0 / st.y;
        xb = load_x(b, dim);
        for (var k = 0u; k < dim; k++) { mean[k] = weighted_mean(b, k, inv_s); }
    }

    for (var i0 = 0u; i0 < params.tile_rows; i0 += STAGE) {
        let count = stage_points(lid, i0, dim);
        if (in_range) {
            for (var k = 0u; k < MAX_DIM; k++) {
                part_lo[k] = vec4<f32>(0.0);
                part_hi[k] = vec4<f32>(0.0);
            }
            for (var i = 0u; i < count; i++) {
                var z: array<f32, 8>;
                for (var k = 0u; k < dim; k++) { z[k] = points[i * dim + k] - mean[k]; }
                let w = exp(point_logit(xb, i, dim) - m) * inv_s;
                let z_lo = vec4<f32>(z[0], z[1], z[2], z[3]);
                let z_hi = vec4<f32>(z[4], z[5], z[6], z[7]);
                for (var k = 0u; k < dim; k++) {
                    let wz = vec4<f32>(w * z[k]);
                    part_lo[k] = fma(wz, z_lo, part_lo[k]);
                    part_hi[k] = fma(wz, z_hi, part_hi[k]);
                }
            }
            for (var k = 0u; k < dim; k++) {
                c_lo[k] += part_lo[k];
                c_hi[k] += part_hi[k];
            }
        }
        workgroupBarrier();
    }

    if (in_range) {
        for (var k = 0u; k < dim; k++) {
            for (var l = 0u; l < dim; l++) {
                let index = (b * params.dim + k) * params.dim + l;
                var value = 0.0;
                if (l < 4u) { value = c_lo[k][l]; } else { value = c_hi[k][l - 4u]; }
                if (params.first == 0u) { value += cov[index]; }
                cov[index] = value;
            }
        }
    }
}
