// graph_softmax_tangent.wgsl — the linearisation of graph_softmax.wgsl (self-adjoint): out = y ⊙ (d − Σ_n y ⊙ d).
//
// For every tangent line (r, o, i) (line = (r · outer + o) · inner + i < params.lines) over j < n, with
// at(j) = (o · n + j) · inner + i and len = outer · n · inner:
//   dot = Σ_j y[(r / rep) · len + at(j)] · d[r · len + at(j)],  out[r · len + at(j)] = y[…] · (d[…] − dot).
// As reference::graph_ops::record_softmax_tangent.
//
// Bindings (group 0): 0 y (read, primal softmax, [rows / rep, outer, n, inner]), 1 d (read, tangent, [rows, outer,
//                     n, inner]), 2 out (read_write, like d; neither y nor d),
//                     3 params (uniform Params: lines = rows · outer · inner, n, inner, grid_width, outer, rep).
// Layout: batch-major rows, [outer, n, inner] row-major within a row. 256-thread workgroups on a 2-D grid, 256 /
// LANES lines each (LANES threads per line, shared/segment_sum.wgsl): line = (wid.y · grid_width + wid.x) ·
// (256 / LANES) + lid / LANES.

struct Params { lines: u32, n: u32, inner: u32, grid_width: u32, outer: u32, rep: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read> d: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let line = (wid.y * params.grid_width + wid.x) * (SEGMENT_THREADS / LANES) + lid / LANES;
    let lane = lid % LANES;
    let live = line < params.lines;
    let inner = params.inner;
    let n = params.n;
    let per_row = params.outer * inner;
    let r = line / per_row;
    let o = (line % per_row) / inner;
    let i = line % inner;
    let len = per_row * n;
    let at0 = o * n * inner + i;
    let d_base = r * len + at0;
    let y_base = (r / params.rep) * len + at0;
    var s = 0.0;
    if (live) {
        for (var j = lane; j < n; j = j + LANES) { s = fma(y[y_base + j * inner], d[d_base + j * inner], s); }
    }
    let yd = segment_sum2(lid, vec2<f32>(s, 0.0)).x;
    if (live) {
        for (var j = lane; j < n; j = j + LANES) {
            out[d_base + j * inner] = y[y_base + j * inner] * (d[d_base + j * inner] - yd);
        }
    }
}
