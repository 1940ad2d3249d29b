// groupnorm_tangent_stats.wgsl — the group means a GroupNorm's tangent needs, per tangent row and group.
//
// For tangent row r of point b = r / P (P = group_rows) and group g (channels g·Cg … g·Cg + Cg − 1), over its
// n = H·W·Cg values, with x̂ = (z − μ)·rstd from the primal z of point b and (μ, rstd) of (b, g):
//   m1 = Σ ż / n,   m2 = Σ ż·x̂ / n,   coef[tstats_offset + (r·G + g)·2] = m1, [… + 1] = m2
// so that d GroupNorm(z)[ż] = gamma·rstd·(ż − m1 − x̂·m2) (conv2d_tangent.wgsl applies it).
//
// Bindings (group 0): 0 tangent (read), 1 primal (read), 2 coef (read_write), 3 params (uniform).
// Layout: tangent [R, H, W, C], primal [B, H, W, C] (NHWC); (μ, rstd) of (b, g) at coef[stats_offset + (b·G + g)·2].
// Reduction: shared/workgroup_sum.wgsl (a tree), or shared/workgroup_sum_subgroup.wgsl in the `…_subgroup` kernel
// (same body, where the adapter has subgroups). One 256-thread workgroup per (group, tangent row): dispatch (G, R, 1).

struct Params { rows: u32, pixels: u32, channels: u32, groups: u32, group_rows: u32, stats_offset: u32, tstats_offset: u32, pad0: u32 }

@group(0) @binding(0) var<storage, read> tangent: array<f32>;
@group(0) @binding(1) var<storage, read> primal: array<f32>;
@group(0) @binding(2) var<storage, read_write> coef: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const THREADS: u32 = 256u;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, lanes: Lanes) {
    let lid = lanes.lid;
    let g = group.x;
    let r = group.y;
    if (g >= params.groups || r >= params.rows) { return; }
    let b = r / params.group_rows;
    let cg = params.channels / params.groups;
    let n = params.pixels * cg;
    let s = params.stats_offset + (b * params.groups + g) * 2u;
    let mean = coef[s];
    let rstd = coef[s + 1u];
    let tangent_base = r * params.pixels * params.channels + g * cg;
    let primal_base = b * params.pixels * params.channels + g * cg;

    var sums = vec2<f32>(0.0);
    for (var i = lid; i < n; i += THREADS) {
        let p = i / cg;
        let offset = p * params.channels + (i - p * cg);
        let dz = tangent[tangent_base + offset];
        let x_hat = (primal[primal_base + offset] - mean) * rstd;
        sums += vec2<f32>(dz, dz * x_hat);
    }
    let total = workgroup_sum2(lanes, sums);
    if (lid == 0u) {
        let t = params.tstats_offset + (r * params.groups + g) * 2u;
        coef[t] = total.x / f32(n);
        coef[t + 1u] = total.y / f32(n);
    }
}
