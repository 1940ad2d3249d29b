// kde_point_moments.wgsl — for few query points at moderate dimension (dim ≤ 64), the log-sum-exp and weighted
// displacement of each query point over one slice of one data tile: the slices of a tile are separate
// workgroups (so that a few query points still keep every core busy), merged by kde_point_combine.wgsl.
//
// For query b < rows and slice j (the tile's points i in [j·SLICE, min((j + 1)·SLICE, tile_rows))), with
// ℓᵢ = max(−‖x_b − α·dataᵢ‖² · inv_two_var, LOWEST_LOGIT):
//     partial_state[j·rows + b] = (mⱼ, sⱼ, 0, 0),   mⱼ = maxᵢ ℓᵢ,   sⱼ = Σᵢ exp(ℓᵢ − mⱼ)
//     partial_acc[(j·rows + b)·dim + k] = Σᵢ exp(ℓᵢ − mⱼ) · (α·dataᵢₖ − x_bk)
// summed point by point with an online max m' (rescaling by exp(m − m') whenever the max grows).
//
// Bindings (group 0): 0 data (read, the tile [tile_rows, dim]), 1 x (read, [rows, dim]),
//                     2 partial_state (read_write, vec4 [slices, rows]), 3 partial_acc (read_write,
//                     [slices, rows, dim]), 4 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. Workgroup (j, r) = slice j, query points 8r..8r + 7, one per thread (the lanes of one SIMD
// vector on lavapipe). The slice is staged through workgroup memory 32 points at a time, and every thread walks
// the staged points in the same order: each data word is read at one address by all lanes (a broadcast, not a
// gather), and x_b and the displacement are vec4 arrays indexed by loops of constant length QUADS (override,
// ⌈dim / 4⌉), which the compiler unrolls into registers (lavapipe reads run-time-indexed private arrays lane by
// lane). Each point updates the max branch-free: (s, acc) · exp(m − m') + exp(ℓ − m') · (1, α·dataᵢ − x_b).
// Dispatch (⌈tile_rows / SLICE⌉, ⌈rows / 8⌉, 1); SLICE (512) is POINT_SLICE in src/ops/kde.rs.
// Shared: THREADS, SLICE, STAGE, QUADS, `points`, stage_points, staged_logit and load_x (shared/kde_point.wgsl).

@group(0) @binding(0) var<storage, read> data: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial_state: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> partial_acc: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(8, 1, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = group.y * THREADS + lid;
    let in_range = b < params.rows;
    let start = group.x * SLICE;
    let end = min(start + SLICE, params.tile_rows);
    var xb: array<vec4<f32>, 16>;
    var sum_d: array<vec4<f32>, 16>;
    for (var q = 0u; q < QUADS; q++) {
        xb[q] = load_x(b, in_range, 4u * q);
        sum_d[q] = vec4<f32>(0.0);
    }
    var m = LOWEST_LOGIT;
    var s = 0.0;
    for (var i0 = start; i0 < end; i0 += STAGE) {
        let count = min(STAGE, end - i0);
        stage_points(lid, i0, count);
        for (var i = 0u; i < count; i++) {
            let row = i * QUADS;
            let logit = staged_logit(&xb, row);
            // A new max rescales what was summed so far (this point then weighs exp(0) = 1).
            let m_new = max(m, logit);
            let scale = exp(m - m_new);
            let w = exp(logit - m_new);
            s = fma(s, scale, w);
            for (var q = 0u; q < QUADS; q++) {
                sum_d[q] = fma(vec4<f32>(w), points[row + q] - xb[q], sum_d[q] * scale);
            }
            m = m_new;
        }
        workgroupBarrier();
    }
    if (in_range) {
        let slot = group.x * params.rows + b;
        partial_state[slot] = vec4<f32>(m, s, 0.0, 0.0);
        for (var q = 0u; q < QUADS; q++) {
            let total = sum_d[q];
            for (var c = 0u; c < 4u; c++) {
                if (4u * q + c < params.dim) { partial_acc[slot * params.dim + 4u * q + c] = total[c]; }
            }
        }
    }
}
