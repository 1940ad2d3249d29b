// graph_matmul.wgsl — the graph engine's batched matrix product: C[i] = A[i] · B[i] for i < rows · lead.
//
// For every product i = r · lead + l, output row m < M and column n < N: C[i, m, n] = Σ_p A[i](m, p) · B[i](p, n),
// A[i](m, p) = a[a_start + m·K + p] (or a[a_start + p·M + m] when TRANS_A), B[i](p, n) = b[b_start + p·N + n] (or
// b[b_start + n·K + p] when TRANS_B), a_start = (r / a_rep) · a_row_stride + l · a_lead_stride, likewise b_start.
// TRANS_A, TRANS_B: override constants (0/1). Any M, N, K ≥ 1 (tails bounds-checked; out-of-range reads are 0).
//
// Bindings (group 0): 0 a (read), 1 b (read), 2 c (read_write, [rows, lead, M, N], contiguous; neither a nor b),
//                     3 params (uniform Params: m, n, k, lead, batch = rows · lead, tiles_m, batch_grid, the row
//                     maps and lead strides of a and b).
// Layout: 16×16-thread workgroups, each one 16×16 tile of one product, stepping through K in 16-wide slices staged
// in workgroup memory (one element per thread per operand). Dispatch [⌈N/16⌉, ⌈M/16⌉ · by, bz] with the batch
// split as i = (wid.y / tiles_m) · batch_grid + wid.z (batch_grid = bz) so that every dimension stays within the
// device's workgroup limit.

struct Params {
    m: u32, n: u32, k: u32, lead: u32,
    batch: u32, tiles_m: u32, batch_grid: u32, pad0: u32,
    a_rep: u32, a_row_stride: u32, a_lead_stride: u32, pad1: u32,
    b_rep: u32, b_row_stride: u32, b_lead_stride: u32, pad2: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;

const TILE: u32 = 16u;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> tile_a: array<array<f32, 16>, 16>; // [m][p]
var<workgroup> tile_b: array<array<f32, 16>, 16>; // [p][n]

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m = params.m;
    let n = params.n;
    let k = params.k;
    // Uniform per workgroup, so the early return keeps the barriers uniform.
    let i = (wid.y / params.tiles_m) * params.batch_grid + wid.z;
    if (i >= params.batch) { return; }
    let row0 = (wid.y % params.tiles_m) * TILE;
    let col0 = wid.x * TILE;
    let r = i / params.lead;
    let l = i % params.lead;
    let a_start = (r / params.a_rep) * params.a_row_stride + l * params.a_lead_stride;
    let b_start = (r / params.b_rep) * params.b_row_stride + l * params.b_lead_stride;
    let tx = lid.x;
    let ty = lid.y;
    var acc = 0.0;
    for (var p0 = 0u; p0 < k; p0 = p0 + TILE) {
        // Each thread stages one element of each operand, with the thread index running along the operand's
        // contiguous axis.
        if (TRANS_A) {
            let am = row0 + tx;
            let ap = p0 + ty;
            var v = 0.0;
            if (am < m && ap < k) { v = a[a_start + ap * m + am]; }
            tile_a[tx][ty] = v;
        } else {
            let am = row0 + ty;
            let ap = p0 + tx;
            var v = 0.0;
            if (am < m && ap < k) { v = a[a_start + am * k + ap]; }
            tile_a[ty][tx] = v;
        }
        if (TRANS_B) {
            let bn = col0 + ty;
            let bp = p0 + tx;
            var v = 0.0;
            if (bn < n && bp < k) { v = b[b_start + bn * k + bp]; }
            tile_b[tx][ty] = v;
        } else {
            let bp = p0 + ty;
            let bn = col0 + tx;
            var v = 0.0;
            if (bn < n && bp < k) { v = b[b_start + bp * n + bn]; }
            tile_b[ty][tx] = v;
        }
        workgroupBarrier();
        for (var p = 0u; p < TILE; p = p + 1u) {
            acc = fma(tile_a[ty][p], tile_b[p][tx], acc);
        }
        workgroupBarrier();
    }
    let row = row0 + ty;
    let col = col0 + tx;
    if (row < m && col < n) {
        c[(i * m + row) * n + col] = acc;
    }
}
