// graph_norm_tangent.wgsl — the linearisation of graph_norm.wgsl (self-adjoint): out = rstd·(d − mean d − x̂·mean(x̂ ⊙ d)).
//
// For every tangent group t < params.groups (= rows · groups_per_row; row r = t / groups_per_row, g = t % gpr), with
// the primal group p = (r / rep) · groups_per_row + g of x: mean, var (biased, two passes) and rstd = 1/√(var + eps)
// of x's group p, x̂ = (x − mean)·rstd, and
//   out[t · size + e] = rstd · (d[t · size + e] − mean(d) − x̂_e · mean(x̂ ⊙ d)).
// As reference::graph_ops::record_norm_tangent.
//
// Bindings (group 0): 0 x (read, primal, [rows / rep, groups_per_row, size]), 1 d (read, tangent, [rows,
//                     groups_per_row, size]), 2 out (read_write, like d; neither x nor d),
//                     3 params (uniform Params: groups, size, eps, grid_width, rep, groups_per_row).
// Layout: groups contiguous. 256-thread workgroups on a 2-D grid, 256 / LANES groups each (LANES threads per group,
// shared/segment_sum.wgsl), group = (wid.y · grid_width + wid.x) · (256 / LANES) + lid / LANES.

struct Params { groups: u32, size: u32, eps: f32, grid_width: u32, rep: u32, groups_per_row: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> d: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let group = (wid.y * params.grid_width + wid.x) * (SEGMENT_THREADS / LANES) + lid / LANES;
    let lane = lid % LANES;
    let live = group < params.groups;
    let size = params.size;
    let n = f32(size);
    let r = group / params.groups_per_row;
    let g = group % params.groups_per_row;
    let x_base = ((r / params.rep) * params.groups_per_row + g) * size;
    let d_base = group * size;
    var s = vec2<f32>(0.0);
    if (live) {
        for (var e = lane; e < size; e = e + LANES) { s += vec2<f32>(x[x_base + e], d[d_base + e]); }
    }
    let sums = segment_sum2(lid, s);
    let mean = sums.x / n;
    let mean_d = sums.y / n;
    var q = vec2<f32>(0.0);
    if (live) {
        for (var e = lane; e < size; e = e + LANES) {
            let v = x[x_base + e] - mean;
            q += vec2<f32>(v * v, v * d[d_base + e]);
        }
    }
    let moments = segment_sum2(lid, q);
    let rstd = 1.0 / sqrt(moments.x / n + params.eps);
    let mean_xd = rstd * moments.y / n;
    if (live) {
        for (var e = lane; e < size; e = e + LANES) {
            let xhat = (x[x_base + e] - mean) * rstd;
            out[d_base + e] = rstd * (d[d_base + e] - mean_d - xhat * mean_xd);
        }
    }
}
