// kde_covariance.wgsl — the softmax-weighted covariance of the (scaled) data around each query point's weighted
// mean, folded over one data tile; the Hessian of log p is then −I/σ² + cov/σ⁴.
//
// For b < rows and k, l < dim, with state[b] = (M, S, ·, ·) final (after every tile's kde_softmax_update),
// wᵢ = exp(logits[b·ld + i] − M) / S and m_b = x_b + acc_b / S (kde_mean_update.wgsl):
//     cov[(b·dim + k)·dim + l] (+)= Σᵢ wᵢ (α·dataᵢₖ − m_bk)(α·dataᵢₗ − m_bl)      (i < tile_rows)
// overwritten when `first`, accumulated otherwise. Centred on m_b (the second pass over the data), never as
// E[yyᵀ] − mmᵀ, which cancels when the spread is small next to ‖m‖.
//
// Bindings (group 0): 0 data (read, the tile [tile_rows, dim]), 1 x (read, [rows, dim]), 2 logits (read,
//                     [rows, ld]), 3 state (read, vec4 [rows]), 4 acc (read, [rows, dim]),
//                     5 cov (read_write, [rows, dim, dim]), 6 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. Per query point (workgroup z), a 16×16-thread workgroup computes a 64×64 block of its
// dim×dim covariance (shared/register_tile.wgsl), stepping over the tile's data points 16 at a time.
// Dispatch (⌈dim/64⌉, ⌈dim/64⌉, rows).

@group(0) @binding(0) var<storage, read> data: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> state: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> acc: array<f32>;
@group(0) @binding(5) var<storage, read_write> cov: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;

const THREADS: u32 = 256u;
var<workgroup> mean_rows: array<f32, 64>; // m_bk for this block's rows k
var<workgroup> mean_cols: array<f32, 64>; // m_bl for this block's columns l
var<workgroup> weights: array<f32, 16>;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let b = group.z;
    if (b >= params.rows) { return; }
    let k0 = group.y * TILE_M;
    let l0 = group.x * TILE_N;
    let row0 = local.y * 4u;
    let col0 = local.x * 4u;
    let s = state[b];
    let inv_s = 1.0 / s.y;
    if (lid < 64u) {
        let k = k0 + lid;
        if (k < params.dim) { mean_rows[lid] = x[b * params.dim + k] + acc[b * params.dim + k] * inv_s; }
    } else if (lid < 128u) {
        let l = l0 + lid - 64u;
        if (l < params.dim) { mean_cols[lid - 64u] = x[b * params.dim + l] + acc[b * params.dim + l] * inv_s; }
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
            // Consecutive threads walk the coordinate, the contiguous axis of data.
            let e = lid + r * THREADS;
            let c = e & 63u;
            let ii = e >> 6u;
            let i = i0 + ii;
            var a = 0.0;
            var bv = 0.0;
            if (i < params.tile_rows) {
                if (k0 + c < params.dim) {
                    a = weights[ii] * (params.alpha * data[i * params.dim + k0 + c] - mean_rows[c]);
                }
                if (l0 + c < params.dim) { bv = params.alpha * data[i * params.dim + l0 + c] - mean_cols[c]; }
            }
            tile_a[ii * TILE_M + c] = a;
            tile_b[ii * TILE_N + c] = bv;
        }
        workgroupBarrier();
        multiply_tiles(row0, col0, &out);
        workgroupBarrier();
    }

    for (var j = 0u; j < 4u; j++) {
        let k = k0 + row0 + j;
        if (k >= params.dim) { continue; }
        for (var c = 0u; c < 4u; c++) {
            let l = l0 + col0 + c;
            if (l >= params.dim) { continue; }
            let index = (b * params.dim + k) * params.dim + l;
            var previous = 0.0;
            if (params.first == 0u) { previous = cov[index]; }
            cov[index] = previous + out[j][c];
        }
    }
}
