// graph_softmax.wgsl — the graph engine's softmax along the middle axis of rows viewed as [outer, n, inner].
//
// For every line (r, o, i) (line = (r · outer + o) · inner + i < params.lines) over j < n, element
// e_j = (r · outer + o) · n · inner + j · inner + i:  out[e_j] = exp(x[e_j] − max) / Σ_j exp(x[e_j] − max).
// One pass reduces (max, Σ exp(x − max)) per thread online, the threads of a line combine those pairs in a tree
// (rescaling the sums to the larger max), a second pass writes. As reference::graph_ops::record_softmax.
//
// Bindings (group 0): 0 x (read, [rows, outer, n, inner]), 1 out (read_write, same; not x),
//                     2 params (uniform Params: lines = rows · outer · inner, n, inner, grid_width).
// Layout: batch-major rows, [outer, n, inner] row-major within a row. 256-thread workgroups on a 2-D grid, each
// holding 256 / LANES lines (LANES: override, a power of two ≤ 256 chosen from n): line = (wid.y · grid_width +
// wid.x) · (256 / LANES) + lid / LANES; the LANES threads of a line stride through j.

struct Params { lines: u32, n: u32, inner: u32, grid_width: u32 }

override LANES: u32 = 256u;
const THREADS: u32 = 256u;
const LOWEST: f32 = -3.402823e38;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

var<workgroup> partials: array<vec2<f32>, 256>; // (max, Σ exp(x − max))

fn combine(p: vec2<f32>, q: vec2<f32>) -> vec2<f32> {
    let m = max(p.x, q.x);
    return vec2<f32>(m, p.y * exp(p.x - m) + q.y * exp(q.x - m));
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let line = (wid.y * params.grid_width + wid.x) * (THREADS / LANES) + lid / LANES;
    let lane = lid % LANES;
    let live = line < params.lines;
    let inner = params.inner;
    let base = (line / inner) * params.n * inner + line % inner;
    var acc = vec2<f32>(LOWEST, 0.0);
    if (live) {
        for (var j = lane; j < params.n; j = j + LANES) {
            let v = x[base + j * inner];
            if (v > acc.x) {
                acc = vec2<f32>(v, acc.y * exp(acc.x - v) + 1.0);
            } else {
                acc.y += exp(v - acc.x);
            }
        }
    }
    partials[lid] = acc;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride = stride / 2u) {
        if (lane < stride) { partials[lid] = combine(partials[lid], partials[lid + stride]); }
        workgroupBarrier();
    }
    let total = partials[lid - lane];
    if (live) {
        let scale = 1.0 / total.y;
        for (var j = lane; j < params.n; j = j + LANES) {
            let e = base + j * inner;
            out[e] = exp(x[e] - total.x) * scale;
        }
    }
}
