// shared/kde_point.wgsl — the data staging and query loads of the per-point kde kernels for dim ≤ 64
// (kde_point_moments, kde_point_weights, kde_point_covariance_rows).
//
// Bindings: none of its own; reads the including kernel's `data` (the tile [tile_rows, dim]), `x` ([rows, dim]) and
//           `params` (shared/kde_params.wgsl).
// Layout: 8-thread workgroups, one query point a thread (the lanes of one SIMD vector on lavapipe), each workgroup
// one slice of SLICE (512) points of the tile (SLICE is POINT_SLICE in src/ops/kde.rs). `points` holds α·data for
// STAGE = 32 points of the slice at a time as [STAGE][QUADS] vec4 quads, zero past dim; every thread walks them in
// the same order, so each data word is read at one address by all lanes (a broadcast, not a gather). QUADS
// (override, host-set to ⌈dim / 4⌉, at most 16): every coordinate loop runs a constant QUADS times, so that the
// compiler unrolls it and the kernels' private vec4 arrays become registers (lavapipe reads run-time-indexed
// private arrays lane by lane).

const THREADS: u32 = 8u;
const SLICE: u32 = 512u;
const STAGE: u32 = 32u;
override QUADS: u32 = 16u;
var<workgroup> points: array<vec4<f32>, 512>; // [STAGE][QUADS], α·data, zero past dim

// α·data[i, k..k + 3], zero past dim.
fn stage_quad(i: u32, k: u32) -> vec4<f32> {
    var quad = vec4<f32>(0.0);
    let base = i * params.dim;
    if (k < params.dim) { quad.x = params.alpha * data[base + k]; }
    if (k + 1u < params.dim) { quad.y = params.alpha * data[base + k + 1u]; }
    if (k + 2u < params.dim) { quad.z = params.alpha * data[base + k + 2u]; }
    if (k + 3u < params.dim) { quad.w = params.alpha * data[base + k + 3u]; }
    return quad;
}

// Stages the tile's points i0..i0 + count (count ≤ STAGE) into `points`; every thread calls it (it ends with a
// barrier).
fn stage_points(lid: u32, i0: u32, count: u32) {
    for (var e = lid; e < count * QUADS; e += THREADS) { points[e] = stage_quad(i0 + e / QUADS, 4u * (e % QUADS)); }
    workgroupBarrier();
}

// The logit max(−‖x_b − α·dataᵢ‖² · inv_two_var, LOWEST_LOGIT) of the staged point at `row` (= i · QUADS), x_b
// given as its QUADS vec4 quads.
fn staged_logit(xb: ptr<function, array<vec4<f32>, 16>>, row: u32) -> f32 {
    var dist = 0.0;
    for (var q = 0u; q < QUADS; q++) {
        let d = (*xb)[q] - points[row + q];
        dist += dot(d, d);
    }
    return max(-dist * params.inv_two_var, LOWEST_LOGIT);
}

// x[b, k..k + 3], zero past dim or past the last query point.
fn load_x(b: u32, in_range: bool, k: u32) -> vec4<f32> {
    var quad = vec4<f32>(0.0);
    if (!in_range) { return quad; }
    let base = b * params.dim;
    if (k < params.dim) { quad.x = x[base + k]; }
    if (k + 1u < params.dim) { quad.y = x[base + k + 1u]; }
    if (k + 2u < params.dim) { quad.z = x[base + k + 2u]; }
    if (k + 3u < params.dim) { quad.w = x[base + k + 3u]; }
    return quad;
}
