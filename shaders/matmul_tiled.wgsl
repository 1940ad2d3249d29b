// matmul_tiled.wgsl — register-blocked tiled matrix product with fused prologue and epilogue: an activation of A
// as it loads, then bias, activation, activation-derivative factor and row scale as C is stored.
//
// For every batch index z and every (m, n) of the M×N output, with g = m / group_rows (the row's group, e.g.
// the point a tangent or cotangent row belongs to):
//     C[z](m, n) = act( Σ_k act_a(A[z](m, k)) · B[z](k, n) + bias[n] [+ pre[offset_pre + g·ld_pre + n]] ) · act'(pre[..]) · row_scale[g]
// act_a is the ACT_A code applied to A (0 = none), act the ACT code, act' the derivative of the DERIV_ACT code
// (0 = no factor; codes of shared/activations.wgsl); bias only when HAS_BIAS, row_scale only when SCALE_ROWS. With
// ADD_PRE, `pre` is instead an addend summed before the activation (the other summand of an Add: a second
// product, a residual; with group_rows = 1 and ld_pre = N it has C's layout) and no act' factor is applied.
// With STORE_GROUP_TRANSPOSED each group's G×N block of C is stored transposed (N×G), e.g. Jacobian columns
// computed as rows.
//
// Bindings (group 0): 0 a (read), 1 b (read), 2 bias (read, [N]), 3 row_scale (read, [M / G]),
//                     4 pre (read, [M / G, ld_pre]), 5 c (read_write), 6 params (uniform Params).
// Layout: row-major with leading dimensions, all in f32 elements:
//     A(m, k) = a[offset_a + z·stride_a + m·lda + k]     (TRANS_A: a[offset_a + z·stride_a + k·lda + m])
//     B(k, n) = b[offset_b + z·stride_b + k·ldb + n]     (TRANS_B: b[offset_b + z·stride_b + n·ldb + k], e.g. an nn.Linear weight [N, K])
//     C(m, n) = c[offset_c + z·stride_c + m·ldc + n]
//               (STORE_GROUP_TRANSPOSED: c[offset_c + z·stride_c + g·G·ldc + n·G + (m − g·G)], ldc = N)
// Tiling: a workgroup of 16×16 threads computes a 64×64 output tile, 4×4 outputs per thread, stepping K by 16
// through workgroup memory. Dispatch (⌈N/64⌉, ⌈M/64⌉, batch). Every global index is bounds-checked.

const THREADS: u32 = 256u;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let m0 = group.y * TILE_M;
    let n0 = group.x * TILE_N;
    let z = group.z;
    let base_a = params.offset_a + z * params.stride_a;
    let base_b = params.offset_b + z * params.stride_b;
    let base_c = params.offset_c + z * params.stride_c;
    let row0 = local.y * 4u;
    let col0 = local.x * 4u;

    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) { acc[i] = vec4<f32>(0.0); }

    for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
        for (var r = 0u; r < 4u; r++) {
            let i = lid + r * THREADS;
            // A tile, stored [kk][mm]; consecutive threads walk the contiguous axis of A.
            var kk: u32; var mm: u32;
            if (TRANS_A) { mm = i & 63u; kk = i >> 6u; } else { kk = i & 15u; mm = i >> 4u; }
            let va = load_a(base_a, m0 + mm, k0 + kk);
            tile_a[kk * TILE_M + mm] = va;

            // B tile, stored [kk][nn].
            var nn: u32;
            if (TRANS_B) { kk = i & 15u; nn = i >> 4u; } else { nn = i & 63u; kk = i >> 6u; }
            let vb = load_b(base_b, k0 + kk, n0 + nn);
            tile_b[kk * TILE_N + nn] = vb;
        }
        workgroupBarrier();
        multiply_tiles(row0, col0, &acc);
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let m = m0 + row0 + i;
        if (m >= params.m) { continue; }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + col0 + j;
            if (n >= params.n) { continue; }
            c[store_index(base_c, m, n)] = epilogue(acc[i][j], m, n);
        }
    }
}
