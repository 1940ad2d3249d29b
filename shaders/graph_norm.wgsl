// graph_norm.wgsl — the graph engine's normalisation over contiguous groups: out = (x − mean) / √(var + eps).
//
// For every group g < params.groups of params.size elements: mean = Σ x / size, var = Σ (x − mean)² / size (biased,
// two passes), out[g · size + e] = (x[g · size + e] − mean) / √(var + eps). As reference::graph_ops::record_norm.
//
// Bindings (group 0): 0 x (read, [groups, size]), 1 out (read_write, [groups, size]; not x),
//                     2 params (uniform Params: groups, size, eps, grid_width (workgroups along x)).
// Layout: groups contiguous, one after another. 256-thread workgroups on a 2-D grid, each holding 256 / LANES
// groups (LANES threads per group, shared/segment_sum.wgsl): group = (wid.y · grid_width + wid.x) · (256 / LANES)
// + lid / LANES; each thread strides through its group LANES elements at a time (any size).

struct Params { groups: u32, size: u32, eps: f32, grid_width: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let group = (wid.y * params.grid_width + wid.x) * (SEGMENT_THREADS / LANES) + lid / LANES;
    let lane = lid % LANES;
    let live = group < params.groups;
    let size = params.size;
    let base = group * size;
    var s = 0.0;
    if (live) {
        for (var e = lane; e < size; e = e + LANES) { s += x[base + e]; }
    }
    let mean = segment_sum2(lid, vec2<f32>(s, 0.0)).x / f32(size);
    var q = 0.0;
    if (live) {
        for (var e = lane; e < size; e = e + LANES) {
            let v = x[base + e] - mean;
            q = fma(v, v, q);
        }
    }
    let variance = segment_sum2(lid, vec2<f32>(q, 0.0)).x / f32(size);
    let rstd = 1.0 / sqrt(variance + params.eps);
    if (live) {
        for (var e = lane; e < size; e = e + LANES) { out[base + e] = (x[base + e] - mean) * rstd; }
    }
}
