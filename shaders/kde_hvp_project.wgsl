// kde_hvp_project.wgsl — the first half of a Hessian-vector product of log p without forming the Hessian: each
// direction's inner product with every data point of the tile, centred on the query point's weighted mean.
//
// For b < rows, p < per_point, i < tile_rows, with m_b = x_b + acc_b / S (state[b] = (M, S, ·, ·), final):
//     proj[(b·per_point + p)·ld + i] = Σₖ v[(b·per_point + p)·dim + k] · (α·dataᵢₖ − m_bk)
// kde_hvp_accumulate.wgsl then forms Σᵢ wᵢ projᵢ (α·dataᵢ − m_b), and H·v = −v/σ² + that/σ⁴.
//
// Bindings (group 0): 0 data (read, the tile [tile_rows, dim]), 1 x (read, [rows, dim]), 2 state (read, vec4
//                     [rows]), 3 acc (read, [rows, dim]), 4 v (read, [rows, per_point, dim]),
//                     5 proj (read_write, [rows, per_point, ld]), 6 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. Per query point (workgroup z), a 16 × (BLOCK_ROWS/4)-thread workgroup computes a
// BLOCK_ROWS × 64 block (BLOCK_ROWS directions × 64 data points, 4×4 per thread, shared/register_tile.wgsl),
// stepping over dim 16 at a time; BLOCK_ROWS (override, shared/kde_block.wgsl) is 64, or 16 for narrow blocks.
// Dispatch (⌈tile_rows/64⌉, ⌈per_point/BLOCK_ROWS⌉, rows).
// Shared: `main` and centred_data (shared/kde_block.wgsl), weighted_mean (shared/kde_moments.wgsl), multiply_tiles
// (shared/register_tile.wgsl); this file defines `block`.

@group(0) @binding(0) var<storage, read> data: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> state: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> acc: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> proj: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;

var<workgroup> mean_k: array<f32, 16>;

// Called by main (shared/kde_block.wgsl).
fn block(group: vec3<u32>, row0: u32, col0: u32, lid: u32) {
    let b = group.z;
    if (b >= params.rows) { return; }
    let p0 = group.y * BLOCK_ROWS;
    let i0 = group.x * TILE_N;
    let inv_s = 1.0 / state[b].y;
    let vbase = b * params.per_point * params.dim;

    var out = array<vec4<f32>, 4>();

    for (var k0 = 0u; k0 < params.dim; k0 += TILE_K) {
        if (lid < TILE_K && k0 + lid < params.dim) { mean_k[lid] = weighted_mean(b, k0 + lid, inv_s); }
        workgroupBarrier();
        // Directions: 16 × BLOCK_ROWS values, 4 per thread; consecutive threads walk k, the contiguous axis of v.
        for (var r = 0u; r < 4u; r++) {
            let e = lid + r * THREADS;
            let kk = e & 15u;
            let mm = e >> 4u;
            var a = 0.0;
            if (p0 + mm < params.per_point && k0 + kk < params.dim) { a = v[vbase + (p0 + mm) * params.dim + k0 + kk]; }
            tile_a[kk * TILE_M + mm] = a;
        }
        // Centred data: 16×64 values, 1024 / THREADS per thread; consecutive threads walk k, the contiguous axis.
        for (var e = lid; e < TILE_K * TILE_N; e += THREADS) {
            let kk = e & 15u;
            let nn = e >> 4u;
            tile_b[kk * TILE_N + nn] = centred_data(i0 + nn, k0 + kk, mean_k[kk]);
        }
        workgroupBarrier();
        multiply_tiles(row0, col0, &out);
        workgroupBarrier();
    }

    for (var j = 0u; j < 4u; j++) {
        let p = p0 + row0 + j;
        if (p >= params.per_point) { continue; }
        for (var c = 0u; c < 4u; c++) {
            let i = i0 + col0 + c;
            if (i >= params.tile_rows) { continue; }
            proj[(b * params.per_point + p) * params.ld + i] = out[j][c];
        }
    }
}
