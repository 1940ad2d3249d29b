// kde_point_covariance.wgsl — for few query points at moderate dimension (dim ≤ 64), the softmax-weighted
// covariance of the (scaled) data around each query point's weighted mean, folded over one data tile, in output
// blocks of at most 16×16 (kde_covariance.wgsl's 64×64 blocks would compute mostly padding there).
//
// For b < rows and k, l < dim, with state[b] = (M, S, ·, ·) final (after every tile's first pass),
// ℓᵢ = max(−‖x_b − α·dataᵢ‖² · inv_two_var, LOWEST_LOGIT) recomputed here, wᵢ = exp(ℓᵢ − M) / S and
// m_b = x_b + acc_b / S (shared/kde_moments.wgsl):
//     cov[(b·dim + k)·dim + l] (+)= Σᵢ wᵢ (α·dataᵢₖ − m_bk)(α·dataᵢₗ − m_bl)      (i < tile_rows)
// overwritten when `first`, accumulated otherwise; centred on m_b, never as E[yyᵀ] − mmᵀ.
//
// Bindings (group 0): 0 data (read, the tile [tile_rows, dim]), 1 x (read, [rows, dim]), 2 state (read, vec4
//                     [rows]), 3 acc (read, [rows, dim]), 4 cov (read_write, [rows, dim, dim]),
//                     5 params (uniform, shared/kde_params.wgsl).
// Layout: row-major. Workgroup (x, y, z) computes the block of rows k0 = 16y.., columns l0 = 16x.. of query point
// b = z's covariance, of edge E = min(dim, 16). Its 256 threads: thread t = g·E² + a·E + c (g < ⌊256/E²⌋ groups)
// owns entry (k0 + a, l0 + c) over the points g, g + groups, … of each chunk; the groups are summed at the end.
// The data go through workgroup memory 64 points at a time: the weights (one thread per point), then the
// weighted centred rows za[j][a] = wⱼ (α·dataⱼ,k0+a − m_b,k0+a) and centred columns zb[j][c] of the block.
// Dispatch (⌈dim/16⌉, ⌈dim/16⌉, rows).
// Shared: weighted_mean (shared/kde_moments.wgsl).

@group(0) @binding(0) var<storage, read> data: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> state: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> acc: array<f32>;
@group(0) @binding(4) var<storage, read_write> cov: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

const THREADS: u32 = 256u;
const MAX_DIM: u32 = 64u;
const EDGE: u32 = 16u;
const CHUNK: u32 = 64u;
var<workgroup> x_b: array<f32, 64>;
var<workgroup> mean_rows: array<f32, 16>;
var<workgroup> mean_cols: array<f32, 16>;
var<workgroup> weights: array<f32, 64>;
var<workgroup> za: array<f32, 1024>; // [CHUNK][EDGE]
var<workgroup> zb: array<f32, 1024>; // [CHUNK][EDGE]
var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = group.z;
    let dim = min(params.dim, MAX_DIM);
    let edge = min(dim, EDGE);
    let k0 = group.y * EDGE;
    let l0 = group.x * EDGE;
    let s = state[b];
    let inv_s = 1.0 / s.y;
    if (lid < dim) { x_b[lid] = x[b * params.dim + lid]; }
    if (lid < EDGE) {
        var mk = 0.0;
        if (k0 + lid < dim) { mk = weighted_mean(b, k0 + lid, inv_s); }
        mean_rows[lid] = mk;
        var ml = 0.0;
        if (l0 + lid < dim) { ml = weighted_mean(b, l0 + lid, inv_s); }
        mean_cols[lid] = ml;
    }
    workgroupBarrier();

    let pairs = edge * edge;
    let groups = THREADS / pairs;
    let g = lid / pairs;
    let a = (lid % pairs) / edge;
    let c = lid % edge;
    var out = 0.0;
    for (var i0 = 0u; i0 < params.tile_rows; i0 += CHUNK) {
        let count = min(CHUNK, params.tile_rows - i0);
        if (lid < count) {
            let i = i0 + lid;
            var dist = 0.0;
            for (var k = 0u; k < dim; k++) {
                let d = x_b[k] - params.alpha * data[i * params.dim + k];
                dist = fma(d, d, dist);
            }
            weights[lid] = exp(max(-dist * params.inv_two_var, LOWEST_LOGIT) - s.x) * inv_s;
        }
        workgroupBarrier();
        // Consecutive threads walk the coordinate, the contiguous axis of data.
        for (var e = lid; e < count * EDGE; e += THREADS) {
            let j = e / EDGE;
            let q = e % EDGE;
            let row = (i0 + j) * params.dim;
            var va = 0.0;
            if (k0 + q < dim) { va = weights[j] * (params.alpha * data[row + k0 + q] - mean_rows[q]); }
            za[e] = va;
            var vb = 0.0;
            if (l0 + q < dim) { vb = params.alpha * data[row + l0 + q] - mean_cols[q]; }
            zb[e] = vb;
        }
        workgroupBarrier();
        if (g < groups) {
            for (var j = g; j < count; j += groups) { out = fma(za[j * EDGE + a], zb[j * EDGE + c], out); }
        }
        workgroupBarrier();
    }

    var mine = 0.0;
    if (g < groups) { mine = out; }
    partial[lid] = mine;
    workgroupBarrier();
    if (lid < pairs) {
        let k = k0 + lid / edge;
        let l = l0 + lid % edge;
        if (k < dim && l < dim) {
            var total = 0.0;
            for (var gg = 0u; gg < groups; gg++) { total += partial[gg * pairs + lid]; }
            let index = (b * params.dim + k) * params.dim + l;
            if (params.first == 0u) { total += cov[index]; }
            cov[index] = total;
        }
    }
}
