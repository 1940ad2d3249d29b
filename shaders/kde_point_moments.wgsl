// kde_point_moments.wgsl — for few query points at moderate dimension (dim ≤ 64), the online log-sum-exp and
// weighted displacement of each query point over one data tile, fused in one kernel with one workgroup per query
// point and its threads over the data points (the 64-wide blocks of kde_distances / kde_mean_update would compute
// mostly padding there, and one-thread-per-point kernels would leave all but one core idle).
//
// Same results as kde_distances → kde_softmax_update → kde_mean_update: for query b, with
// ℓᵢ = max(−‖x_b − α·dataᵢ‖² · inv_two_var, LOWEST_LOGIT) over the tile's points i < tile_rows,
//     logits[b·ld + i] = ℓᵢ
//     state[b] = (M', S', M, 0),   M' = max(M, maxᵢ ℓᵢ),   S' = S · exp(M − M') + Σᵢ exp(ℓᵢ − M')
//     acc[b·dim + k] = acc[b·dim + k] · exp(M − M') + Σᵢ exp(ℓᵢ − M') · (α·dataᵢₖ − x_bk)
// with (M, S, acc) = (LOWEST_LOGIT, 0, 0) when `first`, else the previous tile's.
//
// Bindings (group 0): 0 data (read, the tile [tile_rows, dim]), 1 x (read, [rows, dim]),
//                     2 logits (read_write, [rows, ld]), 3 state (read_write, vec4 [rows]),
//                     4 acc (read_write, [rows, dim]), 5 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. One 256-thread workgroup per query point b = workgroup x. Phase 1: thread t computes the
// logits of points t, t + 256, … (written to `logits`, which the same thread reads back) and the tile max is a
// workgroup reduction. Phase 2, 256 points at a time: thread t stages the weight of point i0 + t in workgroup
// memory, then thread t = g·dim + k (g < ⌊256/dim⌋) sums coordinate k over the points g, g + ⌊256/dim⌋, … of the
// chunk (consecutive threads read consecutive words of data); the groups g are summed at the end. Every
// accumulator is a scalar per thread (no run-time-indexed private arrays).
// Dispatch (rows, 1, 1).

@group(0) @binding(0) var<storage, read> data: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> state: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> acc: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

const THREADS: u32 = 256u;
const MAX_DIM: u32 = 64u;
var<workgroup> x_b: array<f32, 64>;
var<workgroup> weights: array<f32, 256>;
var<workgroup> partial: array<f32, 256>;

// The workgroup's sum (is_max false) or max (is_max true) of one value per thread; all threads call it.
fn reduce(lid: u32, value: f32, is_max: bool) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var stride = THREADS / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            if (is_max) {
                partial[lid] = max(partial[lid], partial[lid + stride]);
            } else {
                partial[lid] += partial[lid + stride];
            }
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = group.x;
    let dim = min(params.dim, MAX_DIM);
    let base = b * params.ld;
    if (lid < dim) { x_b[lid] = x[b * params.dim + lid]; }
    workgroupBarrier();

    // Phase 1: the tile's logits and their max.
    var local_max = LOWEST_LOGIT;
    for (var i = lid; i < params.tile_rows; i += THREADS) {
        var dist = 0.0;
        for (var k = 0u; k < dim; k++) {
            let d = x_b[k] - params.alpha * data[i * params.dim + k];
            dist = fma(d, d, dist);
        }
        let logit = max(-dist * params.inv_two_var, LOWEST_LOGIT);
        logits[base + i] = logit;
        local_max = max(local_max, logit);
    }
    let tile_max = reduce(lid, local_max, true);
    var old = vec4<f32>(LOWEST_LOGIT, 0.0, LOWEST_LOGIT, 0.0);
    if (params.first == 0u) { old = state[b]; }
    let m_new = max(old.x, tile_max);

    // Phase 2: the weights and the weighted displacement, 256 points at a time.
    let groups = THREADS / dim;
    let k = lid % dim;
    let g = lid / dim;
    let xk = x_b[k];
    var sum_w = 0.0;
    var sum_d = 0.0;
    for (var i0 = 0u; i0 < params.tile_rows; i0 += THREADS) {
        var w = 0.0;
        if (i0 + lid < params.tile_rows) { w = exp(logits[base + i0 + lid] - m_new); }
        weights[lid] = w;
        sum_w += w;
        workgroupBarrier();
        if (g < groups) {
            let count = min(THREADS, params.tile_rows - i0);
            var chunk = 0.0;
            for (var j = g; j < count; j += groups) {
                chunk = fma(weights[j], params.alpha * data[(i0 + j) * params.dim + k] - xk, chunk);
            }
            sum_d += chunk;
        }
        workgroupBarrier();
    }
    let tile_sum = reduce(lid, sum_w, false);

    var mine = 0.0;
    if (g < groups) { mine = sum_d; }
    partial[lid] = mine;
    workgroupBarrier();
    let rescale = exp(old.x - m_new);
    if (lid < dim) {
        var total = 0.0;
        for (var gg = 0u; gg < groups; gg++) { total += partial[gg * dim + lid]; }
        var previous = 0.0;
        if (params.first == 0u) { previous = acc[b * params.dim + lid] * rescale; }
        acc[b * params.dim + lid] = previous + total;
    }
    if (lid == 0u) {
        state[b] = vec4<f32>(m_new, old.y * rescale + tile_sum, old.x, 0.0);
    }
}
