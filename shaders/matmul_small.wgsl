// matmul_small.wgsl — matrix product for short outputs (few rows), with the same fused prologue and epilogue as
// matmul_tiled.wgsl (act_a on A's loads; bias, act, act' factor, row scale, grouped transposed store on C's).
//
// For every batch index z and every (m, n) of the M×N output, g = m / group_rows:
//     C[z](m, n) = act( Σ_k act_a(A[z](m, k)) · B[z](k, n) + bias[n] [+ pre[offset_pre + g·ld_pre + n]] ) · act'(pre[..]) · row_scale[g]
// One thread per output; a workgroup of 64 threads covers 64 consecutive columns of one row. Used where the
// 64×64 tiles of matmul_tiled would mostly compute padding (M of a few rows: single points, small batches).
//
// Bindings (group 0): 0 a (read), 1 b (read), 2 bias (read, [N]), 3 row_scale (read, [M / G]),
//                     4 pre (read, [M / G, ld_pre]), 5 c (read_write), 6 params (uniform Params).
// Layout: exactly as matmul_tiled.wgsl (row-major, leading dimensions and batch strides in f32 elements,
// TRANS_A / TRANS_B for transposed operands). Dispatch (⌈N/64⌉, M, batch).

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
        acc = fma(load_a(base_a, m, k), load_b(base_b, k, n), acc);
    }
    c[store_index(params.offset_c + z * params.stride_c, m, n)] = epilogue(acc, m, n);
}
