// kde_point_covariance.wgsl — for few query points at moderate dimension (dim ≤ 64), the softmax-weighted
// covariance of the (scaled) data around each query point's weighted mean, folded over one data tile, in output
// blocks of 16×16 (kde_covariance.wgsl's 64×64 blocks would compute mostly padding there).
//
// For b < rows and k, l < dim, with state[b] = (M, S, ·, ·) final (after every tile's first pass), the tile's
// weights wᵢ = weights[b·ld + i] (kde_point_weights.wgsl) and m_b = x_b + acc_b / S (shared/kde_moments.wgsl):
//     cov[(b·dim + k)·dim + l] (+)= Σᵢ wᵢ (α·dataᵢₖ − m_bk)(α·dataᵢₗ − m_bl)      (i < tile_rows)
// overwritten when `first`, accumulated otherwise; centred on m_b, never as E[yyᵀ] − mmᵀ.
//
// Bindings (group 0): 0 data (read, the tile [tile_rows, dim]), 1 x (read, [rows, dim]), 2 weights (read,
//                     [rows, ld]), 3 state (read, vec4 [rows]), 4 acc (read, [rows, dim]),
//                     5 cov (read_write, [rows, dim, dim]), 6 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. Workgroup (x, y, z) computes the 16×16 block of rows k0 = 16y.., columns l0 = 16x.. of
// query point b = z's covariance (entries past dim are computed on zero padding and not written). Its 64 threads:
// thread t = 16g + 4p + q owns the 4×4 entries (k0 + 4p.., l0 + 4q..) over the points j ≡ g (mod 4) of each
// 64-point chunk, in four vec4 accumulators; the four groups g are summed through workgroup memory at the end.
// Each chunk goes through workgroup memory: the weights, then the weighted centred rows
// za[j] = wⱼ (α·dataⱼ,k0.. − m_b,k0..) and centred columns zb[j] = α·dataⱼ,l0.. − m_b,l0.. as 4 vec4 each.
// Dispatch (⌈dim/16⌉, ⌈dim/16⌉, rows).
// Shared: weighted_mean (shared/kde_moments.wgsl).

@group(0) @binding(0) var<storage, read> data: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read> state: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> acc: array<f32>;
@group(0) @binding(5) var<storage, read_write> cov: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;

const THREADS: u32 = 64u;
const MAX_DIM: u32 = 64u;
const EDGE: u32 = 16u;
const CHUNK: u32 = 64u;
const GROUPS: u32 = 4u;
var<workgroup> mean_rows: array<f32, 16>;
var<workgroup> mean_cols: array<f32, 16>;
var<workgroup> chunk_weights: array<f32, 64>;
var<workgroup> za: array<vec4<f32>, 256>; // [CHUNK][EDGE / 4]
var<workgroup> zb: array<vec4<f32>, 256>; // [CHUNK][EDGE / 4]
var<workgroup> partial: array<vec4<f32>, 256>; // [GROUPS][EDGE][EDGE / 4]

// α·data[row + k] − centre for coordinate k < dim of the point whose row starts at `row`; 0 past dim.
fn centred(row: u32, k: u32, dim: u32, centre: f32) -> f32 {
    if (k < dim) { return params.alpha * data[row + k] - centre; }
    return 0.0;
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = group.z;
    let dim = min(params.dim, MAX_DIM);
    let k0 = group.y * EDGE;
    let l0 = group.x * EDGE;
    let s = state[b];
    let inv_s = 1.0 / s.y;
    if (lid < EDGE) {
        var mk = 0.0;
        if (k0 + lid < dim) { mk = weighted_mean(b, k0 + lid, inv_s); }
        mean_rows[lid] = mk;
        var ml = 0.0;
        if (l0 + lid < dim) { ml = weighted_mean(b, l0 + lid, inv_s); }
        mean_cols[lid] = ml;
    }
    workgroupBarrier();

    let g = lid / 16u;
    let p = (lid / 4u) % 4u;
    let q = lid % 4u;
    var out = array<vec4<f32>, 4>();
    for (var i0 = 0u; i0 < params.tile_rows; i0 += CHUNK) {
        let count = min(CHUNK, params.tile_rows - i0);
        if (lid < count) { chunk_weights[lid] = weights[b * params.ld + i0 + lid]; }
        workgroupBarrier();
        // Thread t stages quarter-rows e = t, t + 64, …: point j = e / 4, coordinates 4(e % 4)...
        for (var e = lid; e < count * 4u; e += THREADS) {
            let j = e / 4u;
            let c = 4u * (e % 4u);
            let row = (i0 + j) * params.dim;
            let ka = k0 + c;
            let va = vec4<f32>(
                centred(row, ka, dim, mean_rows[c]),
                centred(row, ka + 1u, dim, mean_rows[c + 1u]),
                centred(row, ka + 2u, dim, mean_rows[c + 2u]),
                centred(row, ka + 3u, dim, mean_rows[c + 3u]),
            );
            za[e] = chunk_weights[j] * va;
            let lb = l0 + c;
            zb[e] = vec4<f32>(
                centred(row, lb, dim, mean_cols[c]),
                centred(row, lb + 1u, dim, mean_cols[c + 1u]),
                centred(row, lb + 2u, dim, mean_cols[c + 2u]),
                centred(row, lb + 3u, dim, mean_cols[c + 3u]),
            );
        }
        workgroupBarrier();
        for (var j = g; j < count; j += GROUPS) {
            let a = za[j * 4u + p];
            let bv = zb[j * 4u + q];
            out[0] = fma(vec4<f32>(a.x), bv, out[0]);
            out[1] = fma(vec4<f32>(a.y), bv, out[1]);
            out[2] = fma(vec4<f32>(a.z), bv, out[2]);
            out[3] = fma(vec4<f32>(a.w), bv, out[3]);
        }
        workgroupBarrier();
    }

    // partial[g][row][column quarter]: row 4p + r, quarter q.
    for (var r = 0u; r < 4u; r++) { partial[(g * EDGE + 4u * p + r) * 4u + q] = out[r]; }
    workgroupBarrier();
    // Thread t sums entries (row t / 4, quarter t % 4) of the four groups and writes the 4 in range.
    let row = lid / 4u;
    let quarter = lid % 4u;
    let total = partial[lid] + partial[64u + lid] + partial[128u + lid] + partial[192u + lid];
    let k = k0 + row;
    if (k < dim) {
        for (var r = 0u; r < 4u; r++) {
            let l = l0 + 4u * quarter + r;
            if (l < dim) {
                let index = (b * params.dim + k) * params.dim + l;
                var value = total[r];
                if (params.first == 0u) { value += cov[index]; }
                cov[index] = value;
            }
        }
    }
}
