// kde_point_moments.wgsl — for few query points at moderate dimension (dim ≤ 64), the log-sum-exp and weighted
// displacement of each query point over one slice of one data tile: the slices of a tile are separate
// workgroups (so that a few query points still keep every core busy), merged by kde_point_combine.wgsl.
//
// For query b < rows and slice j (the tile's points i in [j·SLICE, min((j + 1)·SLICE, tile_rows))), with
// ℓᵢ = max(−‖x_b − α·dataᵢ‖² · inv_two_var, LOWEST_LOGIT):
//     partial_state[j·rows + b] = (mⱼ, sⱼ, 0, 0),   mⱼ = maxᵢ ℓᵢ,   sⱼ = Σᵢ exp(ℓᵢ − mⱼ)
//     partial_acc[(j·rows + b)·dim + k] = Σᵢ exp(ℓᵢ − mⱼ) · (α·dataᵢₖ − x_bk)
// summed point by point with an online max (rescaling by exp(m_old − m_new) whenever the max grows).
//
// Bindings (group 0): 0 data (read, the tile [tile_rows, dim]), 1 x (read, [rows, dim]),
//                     2 partial_state (read_write, vec4 [slices, rows]), 3 partial_acc (read_write,
//                     [slices, rows, dim]), 4 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. Workgroup (j, r) = slice j, query points 8r..8r + 7, one per thread (the lanes of one SIMD
// vector on lavapipe). The slice is staged through workgroup memory 32 points at a time, and every thread walks
// the staged points in the same order: each data word is read at one address by all lanes (a broadcast, not a
// gather), and x_b and the displacement live in private arrays indexed only by the uniform coordinate loop.
// Dispatch (⌈tile_rows / SLICE⌉, ⌈rows / 8⌉, 1); SLICE (512) is POINT_SLICE in src/ops/kde.rs.

@group(0) @binding(0) var<storage, read> data: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial_state: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> partial_acc: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

const THREADS: u32 = 8u;
const MAX_DIM: u32 = 64u;
const SLICE: u32 = 512u;
const STAGE: u32 = 32u;
var<workgroup> points: array<f32, 2048>; // [STAGE][dim], α·data

@compute @workgroup_size(8, 1, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = group.y * THREADS + lid;
    let in_range = b < params.rows;
    let dim = min(params.dim, MAX_DIM);
    let start = group.x * SLICE;
    let end = min(start + SLICE, params.tile_rows);
    var xb: array<f32, 64>;
    var sum_d: array<f32, 64>;
    for (var k = 0u; k < dim; k++) {
        var value = 0.0;
        if (in_range) { value = x[b * params.dim + k]; }
        xb[k] = value;
        sum_d[k] = 0.0;
    }
    var m = LOWEST_LOGIT;
    var s = 0.0;
    for (var i0 = start; i0 < end; i0 += STAGE) {
        let count = min(STAGE, end - i0);
        for (var e = lid; e < count * dim; e += THREADS) { points[e] = params.alpha * data[i0 * params.dim + e]; }
        workgroupBarrier();
        for (var i = 0u; i < count; i++) {
            let row = i * dim;
            var dist = 0.0;
            for (var k = 0u; k < dim; k++) {
                let d = xb[k] - points[row + k];
                dist = fma(d, d, dist);
            }
            let logit = max(-dist * params.inv_two_var, LOWEST_LOGIT);
            if (logit > m) {
                // A new max: rescale what was summed so far; this point weighs exp(0) = 1.
                let scale = exp(m - logit);
                s = fma(s, scale, 1.0);
                for (var k = 0u; k < dim; k++) { sum_d[k] = fma(sum_d[k], scale, points[row + k] - xb[k]); }
                m = logit;
            } else {
                let w = exp(logit - m);
                s += w;
                for (var k = 0u; k < dim; k++) { sum_d[k] = fma(w, points[row + k] - xb[k], sum_d[k]); }
            }
        }
        workgroupBarrier();
    }
    if (in_range) {
        let slot = group.x * params.rows + b;
        partial_state[slot] = vec4<f32>(m, s, 0.0, 0.0);
        for (var k = 0u; k < dim; k++) { partial_acc[slot * params.dim + k] = sum_d[k]; }
    }
}
