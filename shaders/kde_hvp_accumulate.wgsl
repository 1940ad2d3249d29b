// kde_hvp_accumulate.wgsl — the second half of a Hessian-vector product of log p: the softmax-weighted sum of the
// centred data points, each scaled by its projection (kde_hvp_project.wgsl), folded over one data tile.
//
// For b < rows, p < per_point, k < dim, with wᵢ = exp(logits[b·ld + i] − M) / S and m_b = x_b + acc_b / S
// (state[b] = (M, S, ·, ·), final):
//     u[(b·per_point + p)·dim + k] (+)= Σᵢ wᵢ · proj[(b·per_point + p)·ld + i] · (α·dataᵢₖ − m_bk)   (i < tile_rows)
// overwritten when `first`. Then H·v = −v/σ² + u/σ⁴ = −v/σ² + Cov_w (v)/σ⁴ without forming Cov_w.
//
// Bindings (group 0): 0 data (read, the tile [tile_rows, dim]), 1 x (read, [rows, dim]), 2 logits (read,
//                     [rows, ld]), 3 state (read, vec4 [rows]), 4 acc (read, [rows, dim]),
//                     5 proj (read, [rows, per_point, ld]), 6 u (read_write, [rows, per_point, dim]),
//                     7 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. Per query point (workgroup z), a 16×16-thread workgroup computes a 64×64 block (64
// directions × 64 coordinates, shared/register_tile.wgsl), stepping over the tile's data points 16 at a time.
// Dispatch (⌈dim/64⌉, ⌈per_point/64⌉, rows).

@group(0) @binding(0) var<storage, read> data: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> state: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> acc: array<f32>;
@group(0) @binding(5) var<storage, read> proj: array<f32>;
@group(0) @binding(6) var<storage, read_write> u: array<f32>;
@group(0) @binding(7) var<uniform> params: Params;

const THREADS: u32 = 256u;
var<workgroup> mean_cols: array<f32, 64>;
var<workgroup> weights: array<f32, 16>;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let b = group.z;
    if (b >= params.rows) { return; }
    let p0 = group.y * TILE_M;
    let k0 = group.x * TILE_N;
    let row0 = local.y * 4u;
    let col0 = local.x * 4u;
    let s = state[b];
    let inv_s = 1.0 / s.y;
    if (lid < 64u && k0 + lid < params.dim) {
        let k = b * params.dim + k0 + lid;
        mean_cols[lid] = x[k] + acc[k] * inv_s;
    }

    var out: array<vec4<f32>, 4>;
    for (var j = 0u; j < 4u; j++) { out[j] = vec4<f32>(0.0); }

    for (var i0 = 0u; i0 < params.tile_rows; i0 += TILE_K) {
        if (lid < TILE_K) {
            var w = 0.0;
            if (i0 + lid < params.tile_rows) { w = exp(logits[b * params.ld + i0 + lid] - s.x) * inv_s; }
            weights[lid] = w;
        }
        workgroupBarrier();
        for (var r = 0u; r < 4u; r++) {
            let e = lid + r * THREADS;
            // Weighted projections: consecutive threads walk i (contiguous in proj).
            let ii = e & 15u;
            let pp = e >> 4u;
            var a = 0.0;
            if (p0 + pp < params.per_point && i0 + ii < params.tile_rows) {
                a = weights[ii] * proj[(b * params.per_point + p0 + pp) * params.ld + i0 + ii];
            }
            tile_a[ii * TILE_M + pp] = a;
            // Centred data: consecutive threads walk k (contiguous in data).
            let kk = e & 63u;
            let iy = e >> 6u;
            var bv = 0.0;
            if (i0 + iy < params.tile_rows && k0 + kk < params.dim) {
                bv = params.alpha * data[(i0 + iy) * params.dim + k0 + kk] - mean_cols[kk];
            }
            tile_b[iy * TILE_N + kk] = bv;
        }
        workgroupBarrier();
        multiply_tiles(row0, col0, &out);
        workgroupBarrier();
    }

    for (var j = 0u; j < 4u; j++) {
        let p = p0 + row0 + j;
        if (p >= params.per_point) { continue; }
        for (var c = 0u; c < 4u; c++) {
            let k = k0 + col0 + c;
            if (k >= params.dim) { continue; }
            let index = (b * params.per_point + p) * params.dim + k;
            var previous = 0.0;
            if (params.first == 0u) { previous = u[index]; }
            u[index] = previous + out[j][c];
        }
    }
}
