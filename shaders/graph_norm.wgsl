// graph_norm.wgsl — the graph engine's normalisation over contiguous groups, with an optional per-channel affine
// map and activation fused into its store: out = act(((x − mean) / √(var + eps)) · scale[c] + shift[c]).
//
// For every group g < params.groups of params.size elements: mean = Σ x / size, var = Σ (x − mean)² / size (biased,
// two passes), x̂ = (x[g · size + e] − mean) / √(var + eps). The element's index within its row is
// i = (g · size + e) % row_len and its channel c = (i / inner) % channels; then v = x̂ · scale[c] when flags bit 0,
// v += shift[c] when flags bit 1, and the activation params.act (0 none, 1 relu, 2 silu x·σ(x)).
// As reference::graph_ops::record_norm_affine (record_norm without the affine map and activation).
//
// Bindings (group 0): 0 x (read, [groups, size]), 1 scale (read, [channels]), 2 shift (read, [channels]) (any
//                     buffer when its flag is off), 3 out (read_write, [groups, size]; not x),
//                     4 params (uniform Params: groups, size, eps, grid_width (workgroups along x), row_len,
//                     channels, inner, flags, act).
// Layout: groups contiguous, one after another. 256-thread workgroups on a 2-D grid, each holding 256 / LANES
// groups (LANES threads per group, shared/segment_sum.wgsl): group = (wid.y · grid_width + wid.x) · (256 / LANES)
// + lid / LANES; each thread strides through its group LANES elements at a time (any size).

struct Params {
    groups: u32, size: u32, eps: f32, grid_width: u32,
    row_len: u32, channels: u32, inner: u32, flags: u32,
    act: u32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> scale: array<f32>;
@group(0) @binding(2) var<storage, read> shift: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

// The affine map and activation of element `index` (its position in the whole buffer).
fn store_value(index: u32, normalised: f32) -> f32 {
    var v = normalised;
    if (params.flags != 0u) {
        let c = ((index % params.row_len) / params.inner) % params.channels;
        if ((params.flags & 1u) != 0u) { v = v * scale[c]; }
        if ((params.flags & 2u) != 0u) { v = v + shift[c]; }
    }
    switch params.act {
        case 1u: { v = max(v, 0.0); }
        case 2u: {
            // x·σ(x) through e^{−|x|} (no overflow for large |x|).
            let e = exp(-abs(v));
            let s = 1.0 / (1.0 + e);
            v = v * select(e * s, s, v >= 0.0);
        }
        default: {}
    }
    return v;
}

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
        for (var e = lane; e < size; e = e + LANES) {
            out[base + e] = store_value(base + e, (x[base + e] - mean) * rstd);
        }
    }
}
