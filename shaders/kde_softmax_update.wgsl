// kde_softmax_update.wgsl — the online log-sum-exp over data tiles: folds one tile's logits into each query
// point's running (max, sum).
//
// For b < rows, with (M, S) = state[b] before the tile ((LOWEST_LOGIT, 0) when `first`):
//     M' = max(M, maxᵢ logits[b·ld + i])
//     S' = S · exp(M − M') + Σᵢ exp(logits[b·ld + i] − M')        (i < tile_rows)
//     state[b] = (M', S', M, 0)
// Subtracting the running max before exponentiating keeps every term ≤ 1: no overflow, and no underflow to an
// all-zero sum however far the point is from the data.
//
// Bindings (group 0): 0 logits (read, [rows, ld]), 1 state (read_write, vec4 [rows]),
//                     2 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. One 256-thread workgroup per query point, tree reductions in workgroup memory.
// Dispatch (rows, 1, 1).

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> state: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> params: Params;

const THREADS: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

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
    if (b >= params.rows) { return; }
    let base = b * params.ld;
    var local_max = LOWEST_LOGIT;
    for (var i = lid; i < params.tile_rows; i += THREADS) { local_max = max(local_max, logits[base + i]); }
    let tile_max = reduce(lid, local_max, true);

    var old = vec4<f32>(LOWEST_LOGIT, 0.0, LOWEST_LOGIT, 0.0);
    if (params.first == 0u) { old = state[b]; }
    let m_new = max(old.x, tile_max);
    var sum = 0.0;
    for (var i = lid; i < params.tile_rows; i += THREADS) { sum += exp(logits[base + i] - m_new); }
    let tile_sum = reduce(lid, sum, false);
    if (lid == 0u) {
        state[b] = vec4<f32>(m_new, old.y * exp(old.x - m_new) + tile_sum, old.x, 0.0);
    }
}
