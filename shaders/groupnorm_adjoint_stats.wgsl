// groupnorm_adjoint_stats.wgsl — the group means a GroupNorm + SiLU adjoint needs, per cotangent row and group.
//
// For cotangent row r of point b = r / P (P = group_rows) and group g, over its n = H·W·Cg values, with the
// gradient h̄ of h = silu(y), y = γ x̂ + β (h̄ = g1 + g2 with TWO_SOURCES, read as conv2d_adjoint.wgsl does),
// ȳ = h̄·silu'(y), x̂ = (z − μ)·rstd and γ = scale / rstd:
//   n1 = Σ γȳ / n,   n2 = Σ γȳx̂ / n,   coef[astats_offset + (r·G + g)·2] = n1, [… + 1] = n2
// so that z̄ = γ·rstd·ȳ − rstd·(n1 + x̂·n2).
//
// Bindings (group 0): 0 grad1 (read), 1 grad2 (read), 2 primal (read), 3 coef (read_write), 4 params (uniform).
// Layout: grad1/grad2 [R, H, W, grad_stride] with the channels at grad_offset, primal [B, H, W, C] (NHWC);
//         coef: (scale, shift) at norm_offset [B, C, 2], (μ, rstd) at stats_offset [B, G, 2].
// Reduction: shared/workgroup_sum.wgsl (a tree), or shared/workgroup_sum_subgroup.wgsl in the `…_subgroup` kernel
// (same body, where the adapter has subgroups). One 256-thread workgroup per (group, cotangent row): dispatch (G, R, 1).

struct Params {
    rows: u32, pixels: u32, channels: u32, groups: u32,
    group_rows: u32, norm_offset: u32, stats_offset: u32, astats_offset: u32,
    grad_stride1: u32, grad_offset1: u32, grad_stride2: u32, grad_offset2: u32,
}

override TWO_SOURCES: bool = false;

@group(0) @binding(0) var<storage, read> grad1: array<f32>;
@group(0) @binding(1) var<storage, read> grad2: array<f32>;
@group(0) @binding(2) var<storage, read> primal: array<f32>;
@group(0) @binding(3) var<storage, read_write> coef: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

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

    var sums = vec2<f32>(0.0);
    for (var i = lid; i < n; i += THREADS) {
        let p = i / cg;
        let c = g * cg + (i - p * cg);
        let pixel = r * params.pixels + p;
        var h_bar = grad1[pixel * params.grad_stride1 + params.grad_offset1 + c];
        if (TWO_SOURCES) { h_bar += grad2[pixel * params.grad_stride2 + params.grad_offset2 + c]; }
        let z = primal[(b * params.pixels + p) * params.channels + c];
        let k = params.norm_offset + (b * params.channels + c) * 2u;
        let scale = coef[k];
        let gamma_y_bar = h_bar * activate_derivative(ACT_SILU, z * scale + coef[k + 1u]) * scale / rstd;
        sums += vec2<f32>(gamma_y_bar, gamma_y_bar * (z - mean) * rstd);
    }
    let total = workgroup_sum2(lanes, sums);
    if (lid == 0u) {
        let a = params.astats_offset + (r * params.groups + g) * 2u;
        coef[a] = total.x / f32(n);
        coef[a + 1u] = total.y / f32(n);
    }
}
