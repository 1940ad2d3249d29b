// shared/kde_small.wgsl — the data staging and logits of the one-thread-per-point kde kernels for dim ≤ 8
// (kde_small_moments, kde_small_covariance).
//
// Bindings: none of its own; reads the including kernel's `data` (the tile [tile_rows, dim]), `x` ([rows, dim]) and
//           `params` (shared/kde_params.wgsl), and calls the kernel's `fn query(b, in_range, dim, lid)`.
// Layout: 32-thread workgroups, thread lid = one query point (small workgroups, so that a few dozen query points
// still spread over several cores); points = α·data for STAGE = 256 data points of the tile at a time, [256][dim]
// row-major; per-point vectors are array<f32, 8> with entries past dim zero.

const THREADS: u32 = 32u;
const STAGE: u32 = 256u;
const MAX_DIM: u32 = 8u;
var<workgroup> points: array<f32, 2048>; // [256][dim], α·data

// Query point b = one thread; in_range = b < rows (threads past the end still stage data and meet the barriers).
@compute @workgroup_size(32, 1, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = group.x * THREADS + lid;
    query(b, b < params.rows, min(params.dim, MAX_DIM), lid);
}

// Stages the tile's points i0.. (at most 256) into `points` and returns how many; all threads call it.
fn stage_points(lid: u32, i0: u32, dim: u32) -> u32 {
    let count = min(STAGE, params.tile_rows - i0);
    for (var e = lid; e < count * dim; e += THREADS) {
        points[e] = params.alpha * data[i0 * params.dim + e];
    }
    workgroupBarrier();
    return count;
}

// x_b, zero past dim.
fn load_x(b: u32, dim: u32) -> array<f32, 8> {
    var xb: array<f32, 8>;
    for (var k = 0u; k < MAX_DIM; k++) { xb[k] = 0.0; }
    for (var k = 0u; k < dim; k++) { xb[k] = x[b * params.dim + k]; }
    return xb;
}

// max(−‖x_b − α·dataᵢ‖² · inv_two_var, LOWEST_LOGIT) for staged point i.
fn point_logit(xb: array<f32, 8>, i: u32, dim: u32) -> f32 {
    var dist = 0.0;
    for (var k = 0u; k < dim; k++) {
        let d = xb[k] - points[i * dim + k];
        dist = fma(d, d, dist);
    }
    return max(-dist * params.inv_two_var, LOWEST_LOGIT);
}
