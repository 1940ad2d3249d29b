// kde_point_covariance_rows.wgsl — for few query points at moderate dimension (dim ≤ 64), the softmax-weighted
// covariance around each query point's weighted mean over one slice of one data tile, one thread per query point
// (the slices are summed by kde_point_covariance_combine.wgsl).
//
// For query b < rows, slice j (the tile's points i in [j·SLICE, min((j + 1)·SLICE, tile_rows))) and the rows
// k in [4c, 4c + 4) of the covariance (c = workgroup z), with the final weights wᵢ = weights[b·ld + i]
// (kde_point_weights.wgsl) and m_b = x_b + acc_b / S (state[b] = (M, S, ·, ·) final):
//     partial_cov[((j·rows + b)·dim + k)·dim + l] = Σᵢ wᵢ (α·dataᵢₖ − m_bk)(α·dataᵢₗ − m_bl)     (k, l < dim)
// centred on m_b, never as E[yyᵀ] − mmᵀ. Only the column quads at or right of c are summed; each entry is written
// at (k, l) and (l, k).
//
// Bindings (group 0): 0 data (read, the tile [tile_rows, dim]), 1 x (read, [rows, dim]), 2 weights (read,
//                     [rows, ld]), 3 state (read, vec4 [rows]), 4 acc (read, [rows, dim]),
//                     5 partial_cov (read_write, [slices, rows, dim, dim]), 6 params (uniform,
//                     shared/kde_params.wgsl).
// Layout: row-major. Workgroup (j, r, c) = slice j, query points 8r..8r + 7 (one per thread, the lanes of one SIMD
// vector on lavapipe), covariance rows 4c..4c + 3. The slice is staged through workgroup memory 32 points at a
// time as vec4 quads and walked in the same order by every thread (broadcast reads); each thread keeps its 4 rows ×
// QUADS column quads in vec4 accumulators indexed by loops of constant length QUADS (override, ⌈dim / 4⌉), which
// the compiler unrolls. Dispatch (⌈tile_rows / SLICE⌉, ⌈rows / 8⌉, ⌈dim / 4⌉); SLICE (512) as kde_point_moments.
// Shared: THREADS, SLICE, STAGE, QUADS, `points` and stage_points (shared/kde_point.wgsl).

@group(0) @binding(0) var<storage, read> data: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read> state: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> acc: array<f32>;
@group(0) @binding(5) var<storage, read_write> partial_cov: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;

// m_b[k..k + 3] = x_b + acc_b / S, zero past dim or past the last query point.
fn mean_quad(b: u32, in_range: bool, k: u32, inv_s: f32) -> vec4<f32> {
    var quad = vec4<f32>(0.0);
    if (!in_range) { return quad; }
    let base = b * params.dim;
    if (k < params.dim) { quad.x = x[base + k] + acc[base + k] * inv_s; }
    if (k + 1u < params.dim) { quad.y = x[base + k + 1u] + acc[base + k + 1u] * inv_s; }
    if (k + 2u < params.dim) { quad.z = x[base + k + 2u] + acc[base + k + 2u] * inv_s; }
    if (k + 3u < params.dim) { quad.w = x[base + k + 3u] + acc[base + k + 3u] * inv_s; }
    return quad;
}

@compute @workgroup_size(8, 1, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = group.y * THREADS + lid;
    let in_range = b < params.rows;
    let c = group.z;
    let start = group.x * SLICE;
    let end = min(start + SLICE, params.tile_rows);
    var inv_s = 0.0;
    if (in_range) { inv_s = 1.0 / state[b].y; }
    var mean: array<vec4<f32>, 16>;
    for (var q = 0u; q < QUADS; q++) { mean[q] = mean_quad(b, in_range, 4u * q, inv_s); }
    let mean_c = mean_quad(b, in_range, 4u * c, inv_s);
    // out[4·q + r]: row 4c + r, columns 4q..4q + 3.
    var out: array<vec4<f32>, 64>;
    for (var q = 0u; q < QUADS; q++) {
        out[4u * q] = vec4<f32>(0.0);
        out[4u * q + 1u] = vec4<f32>(0.0);
        out[4u * q + 2u] = vec4<f32>(0.0);
        out[4u * q + 3u] = vec4<f32>(0.0);
    }
    for (var i0 = start; i0 < end; i0 += STAGE) {
        let count = min(STAGE, end - i0);
        stage_points(lid, i0, count);
        for (var i = 0u; i < count; i++) {
            var w = 0.0;
            if (in_range) { w = weights[b * params.ld + i0 + i]; }
            let row = i * QUADS;
            let za = w * (points[row + c] - mean_c);
            for (var q = 0u; q < QUADS; q++) {
                // The blocks left of the diagonal are the mirror images of those above it.
                if (q < c) { continue; }
                let zb = points[row + q] - mean[q];
                out[4u * q] = fma(vec4<f32>(za.x), zb, out[4u * q]);
                out[4u * q + 1u] = fma(vec4<f32>(za.y), zb, out[4u * q + 1u]);
                out[4u * q + 2u] = fma(vec4<f32>(za.z), zb, out[4u * q + 2u]);
                out[4u * q + 3u] = fma(vec4<f32>(za.w), zb, out[4u * q + 3u]);
            }
        }
        workgroupBarrier();
    }
    if (in_range) {
        let base = (group.x * params.rows + b) * params.dim * params.dim;
        for (var q = 0u; q < QUADS; q++) {
            for (var r = 0u; r < 4u; r++) {
                let k = 4u * c + r;
                let quad = out[4u * q + r];
                for (var t = 0u; t < 4u; t++) {
                    let l = 4u * q + t;
                    if (q >= c && k < params.dim && l < params.dim) {
                        partial_cov[base + k * params.dim + l] = quad[t];
                        partial_cov[base + l * params.dim + k] = quad[t];
                    }
                }
            }
        }
    }
}
