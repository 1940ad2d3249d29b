// matmul_small.wgsl — matrix product for short outputs (few rows), with the same fused prologue and epilogue as
// matmul_tiled.wgsl (act_a on A's loads; bias, act, act' factor, row scale, grouped transposed store on C's).
//
// For every batch index z and every (m, n) of the M×N output, g = m / group_rows:
//     C[z](m, n) = act( Σ_k act_a(A[z](m, k)) · B[z](k, n) + bias[n] ) · act'(pre[offset_pre + g·ld_pre + n]) · row_scale[g]
// One thread per output; a workgroup of 64 threads covers 64 consecutive columns of one row. Used where the
// 64×64 tiles of matmul_tiled would mostly compute padding (M of a few rows: single points, small batches).
//
// Bindings (group 0): 0 a (read), 1 b (read), 2 bias (read, [N]), 3 row_scale (read, [M / G]),
//                     4 pre (read, [M / G, ld_pre]), 5 c (read_write), 6 params (uniform Params).
// Layout: exactly as matmul_tiled.wgsl (row-major, leading dimensions and batch strides in f32 elements,
// TRANS_A / TRANS_B for transposed operands). Dispatch (⌈N/64⌉, M, batch).

struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    lda: u32, ldb: u32, ldc: u32, offset_a: u32,
    stride_a: u32, stride_b: u32, stride_c: u32, offset_b: u32,
    offset_c: u32, group_rows: u32, ld_pre: u32, offset_pre: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ACT: u32 = 0u;
override ACT_A: u32 = 0u;
override DERIV_ACT: u32 = 0u;
override HAS_BIAS: bool = false;
override SCALE_ROWS: bool = false;
override STORE_GROUP_TRANSPOSED: bool = false;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> row_scale: array<f32>;
@group(0) @binding(4) var<storage, read> pre: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) group: vec3<u32>) {
    let n = gid.x;
    let m = group.y;
    let z = group.z;
    if (n >= params.n || m >= params.m) { return; }
    let base_a = params.offset_a + z * params.stride_a;
    let base_b = params.offset_b + z * params.stride_b;
    var acc = 0.0;
    for (var k = 0u; k < params.k; k++) {
        var va: f32;
        if (TRANS_A) { va = a[base_a + k * params.lda + m]; } else { va = a[base_a + m * params.lda + k]; }
        if (ACT_A != 0u) { va = activate(ACT_A, va); }
        var vb: f32;
        if (TRANS_B) { vb = b[base_b + n * params.ldb + k]; } else { vb = b[base_b + k * params.ldb + n]; }
        acc = fma(va, vb, acc);
    }
    let g = m / params.group_rows;
    var v = acc;
    if (HAS_BIAS) { v += bias[n]; }
    v = activate(ACT, v);
    if (DERIV_ACT != 0u) { v *= activate_derivative(DERIV_ACT, pre[params.offset_pre + g * params.ld_pre + n]); }
    if (SCALE_ROWS) { v *= row_scale[g]; }
    let base_c = params.offset_c + z * params.stride_c;
    if (STORE_GROUP_TRANSPOSED) {
        c[base_c + g * params.group_rows * params.ldc + n * params.group_rows + (m - g * params.group_rows)] = v;
    } else {
        c[base_c + m * params.ldc + n] = v;
    }
}
