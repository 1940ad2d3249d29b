// kde_point_weights.wgsl — for few query points at moderate dimension (dim ≤ 64), the final softmax weights of one
// data tile's points for each query point, once per tile for kde_point_covariance_rows.wgsl (whose workgroups,
// one per quad of covariance rows, would otherwise each recompute them).
//
// For b < rows, i < tile_rows, with state[b] = (M, S, ·, ·) final (after every tile's first pass) and
// ℓᵢ = max(−‖x_b − α·dataᵢ‖² · inv_two_var, LOWEST_LOGIT) (as kde_point_moments.wgsl computes it):
//     weights[b·ld + i] = exp(ℓᵢ − M) / S
//
// Bindings (group 0): 0 data (read, the tile [tile_rows, dim]), 1 x (read, [rows, dim]), 2 state (read, vec4
//                     [rows]), 3 weights (read_write, [rows, ld]), 4 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. Workgroup (j, r) = slice j of SLICE (512) points, query points 8r..8r + 7, one per thread;
// the slice is staged through workgroup memory 32 points at a time and walked in the same order by every thread
// (broadcast reads of the data; x_b a vec4 array indexed by loops of constant length QUADS, override, ⌈dim / 4⌉).
// Dispatch (⌈tile_rows / SLICE⌉, ⌈rows / 8⌉, 1), as kde_point_moments.wgsl.
// Shared: THREADS, SLICE, STAGE, QUADS, `points`, stage_points, staged_logit and load_x (shared/kde_point.wgsl).

@group(0) @binding(0) var<storage, read> data: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> state: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> weights: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(8, 1, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = group.y * THREADS + lid;
    let in_range = b < params.rows;
    let start = group.x * SLICE;
    let end = min(start + SLICE, params.tile_rows);
    var xb: array<vec4<f32>, 16>;
    var s = vec4<f32>(0.0, 1.0, 0.0, 0.0);
    if (in_range) { s = state[b]; }
    let inv_s = 1.0 / s.y;
    for (var q = 0u; q < QUADS; q++) { xb[q] = load_x(b, in_range, 4u * q); }
    for (var i0 = start; i0 < end; i0 += STAGE) {
        let count = min(STAGE, end - i0);
        stage_points(lid, i0, count);
        for (var i = 0u; i < count; i++) {
            let row = i * QUADS;
            let logit = staged_logit(&xb, row);
            if (in_range) { weights[b * params.ld + i0 + i] = exp(logit - s.x) * inv_s; }
        }
        workgroupBarrier();
    }
}
