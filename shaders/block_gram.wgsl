// block_gram.wgsl — the Gram matrices between two blocks of rows of every point: the small projected matrices
// of the resident block Krylov solvers (Uᵀ·AV, the Gram–Schmidt coefficients Qᵀ·W, the residual blocks' squared
// norms), which the host then reads in f64.
//
// For every point p < points, i < rows_a and j < rows_c (with params.diagonal = 1 only j = i, one column):
//     G[p, i, j] = Σ_{r < d} a[a_offset + p·a_stride + i·d + r] · c[c_offset + p·c_stride + j·d + r]
// accumulated in f32: each thread sums its ⌈d / 64⌉ products by fma, then a pairwise tree over the 64 partial
// sums, so the rounding error grows as d / 64 + log₂ 64 rather than d.
//
// Bindings (group 0): 0 a (read, rows of length d), 1 c (read, rows of length d; may be the same buffer as a),
//                     2 out (read_write, [points, rows_a, cols] with cols = rows_c, or 1 when diagonal),
//                     3 params (uniform Params).
// Layout: row-major rows of length d; a point's rows start a_stride (c_stride) elements apart, at a_offset
// (c_offset). One 64-thread workgroup per (i, j) pair and point: dispatch (rows_a · cols, points, 1); thread l
// takes the elements l, l + 64, … of the pair's rows.

const GRAM_THREADS: u32 = 64u;

struct Params {
    points: u32, rows_a: u32, rows_c: u32, d: u32,
    a_stride: u32, a_offset: u32, c_stride: u32, c_offset: u32,
    diagonal: u32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> c: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_id) local: vec3<u32>) {
    let lid = local.x;
    let p = group.y;
    var cols = params.rows_c;
    if (params.diagonal != 0u) { cols = 1u; }
    let pair = group.x;
    // The whole workgroup takes the same branch, so the barriers below stay uniform.
    if (p >= params.points || pair >= params.rows_a * cols) { return; }
    let i = pair / cols;
    var j = pair % cols;
    if (params.diagonal != 0u) { j = i; }
    let row_a = params.a_offset + p * params.a_stride + i * params.d;
    let row_c = params.c_offset + p * params.c_stride + j * params.d;
    var acc = 0.0;
    for (var r = lid; r < params.d; r += GRAM_THREADS) {
        acc = fma(a[row_a + r], c[row_c + r], acc);
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var half = GRAM_THREADS / 2u; half > 0u; half = half / 2u) {
        if (lid < half) {
            partial[lid] = partial[lid] + partial[lid + half];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[(p * params.rows_a + i) * cols + (pair % cols)] = partial[0];
    }
}
