// kde_point_combine.wgsl — merges the slices of one data tile (kde_point_moments.wgsl) into each query point's
// running log-sum-exp state and weighted displacement: the same state as kde_softmax_update + kde_mean_update.
//
// For b < rows, with (M, S, acc_b) before the tile ((LOWEST_LOGIT, 0, 0) when `first`) and the tile's slices
// (mⱼ, sⱼ, aⱼ) = (partial_state[j·rows + b].xy, partial_acc[(j·rows + b)·dim ..]), j < ⌈tile_rows / SLICE⌉:
//     M' = max(M, maxⱼ mⱼ),   S' = S · exp(M − M') + Σⱼ sⱼ · exp(mⱼ − M'),   state[b] = (M', S', M, 0)
//     acc[b·dim + k] = acc[b·dim + k] · exp(M − M') + Σⱼ aⱼₖ · exp(mⱼ − M')
//
// Bindings (group 0): 0 partial_state (read, vec4 [slices, rows]), 1 partial_acc (read, [slices, rows, dim]),
//                     2 state (read_write, vec4 [rows]), 3 acc (read_write, [rows, dim]),
//                     4 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. One 64-thread workgroup per query point b = workgroup x; thread k < dim merges coordinate k,
// every thread merges (M, S) redundantly and thread 0 writes it after all have read the old state.
// Dispatch (rows, 1, 1). SLICE (512) matches kde_point_moments.wgsl.

@group(0) @binding(0) var<storage, read> partial_state: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> partial_acc: array<f32>;
@group(0) @binding(2) var<storage, read_write> state: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> acc: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

const SLICE: u32 = 512u;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = group.x;
    let slices = (params.tile_rows + SLICE - 1u) / SLICE;
    var old = vec4<f32>(LOWEST_LOGIT, 0.0, LOWEST_LOGIT, 0.0);
    if (params.first == 0u) { old = state[b]; }
    var m_new = old.x;
    for (var j = 0u; j < slices; j++) { m_new = max(m_new, partial_state[j * params.rows + b].x); }
    let rescale = exp(old.x - m_new);
    var s = old.y * rescale;
    for (var j = 0u; j < slices; j++) {
        let part = partial_state[j * params.rows + b];
        s = fma(part.y, exp(part.x - m_new), s);
    }
    if (lid < params.dim) {
        let index = b * params.dim + lid;
        var a = 0.0;
        if (params.first == 0u) { a = acc[index] * rescale; }
        for (var j = 0u; j < slices; j++) {
            let f = exp(partial_state[j * params.rows + b].x - m_new);
            a = fma(partial_acc[(j * params.rows + b) * params.dim + lid], f, a);
        }
        acc[index] = a;
    }
    // Every thread has read the old state before thread 0 replaces it.
    storageBarrier();
    if (lid == 0u) { state[b] = vec4<f32>(m_new, s, old.x, 0.0); }
}
