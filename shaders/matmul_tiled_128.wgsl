// matmul_tiled_128.wgsl — the large-shape variant of matmul_tiled.wgsl: a 128×128 output tile per workgroup, 8×8
// outputs per thread, with the same fused prologue and epilogue (act_a on A's loads; bias, act, act' factor, row
// scale and grouped transposed store on C's).
//
// For every batch index z and every (m, n) of the M×N output, g = m / group_rows:
//     C[z](m, n) = act( Σ_k act_a(A[z](m, k)) · B[z](k, n) + bias[n] [+ pre[offset_pre + g·ld_pre + n]] ) · act'(pre[..]) · row_scale[g]
// (meaning of every term and override constant: matmul_tiled.wgsl and shared/matmul_common.wgsl).
//
// Bindings (group 0): 0 a (read), 1 b (read), 2 bias (read, [N]), 3 row_scale (read, [M / G]),
//                     4 pre (read, [M / G, ld_pre]), 5 c (read_write), 6 params (uniform Params).
// Layout: exactly as matmul_tiled.wgsl (row-major, leading dimensions and batch strides in f32 elements, TRANS_A /
// TRANS_B for transposed operands, STORE_GROUP_TRANSPOSED for the grouped transposed store).
// Tiling: 16×16 threads; K steps by 8 through workgroup memory holding A [8][128] and B [8][128] as vec4 (8 KiB).
// Thread (tx, ty) owns rows {4ty..4ty+3, 64+4ty..64+4ty+3} and columns {4tx..4tx+3, 64+4tx..64+4tx+3} of the tile,
// so each step reads two vec4 of A and two of B per k (the split halves keep neighbouring threads on neighbouring
// words). Each thread loads 4 elements of each operand per step, consecutive threads along the operand's
// contiguous axis. Dispatch (⌈N/128⌉, ⌈M/128⌉, batch). Every global index is bounds-checked.

const BIG_THREADS: u32 = 256u;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let m0 = group.y * BIG_M;
    let n0 = group.x * BIG_N;
    let z = group.z;
    let base_a = params.offset_a + z * params.stride_a;
    let base_b = params.offset_b + z * params.stride_b;
    let base_c = params.offset_c + z * params.stride_c;
    let tx = local.x;
    let ty = local.y;

    // acc[2r + h]: row r of the thread's 8 (r < 4: 4ty + r; else 64 + 4ty + r − 4), column half h (4 columns).
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i++) { acc[i] = vec4<f32>(0.0); }

    for (var k0 = 0u; k0 < params.k; k0 += BIG_K) {
        for (var r = 0u; r < 4u; r++) {
            let i = lid + r * BIG_THREADS;
            var kk: u32; var mm: u32;
            if (TRANS_A) { mm = i & 127u; kk = i >> 7u; } else { kk = i & 7u; mm = i >> 3u; }
            let va = load_a(base_a, m0 + mm, k0 + kk);
            stage_a_128(kk, mm, va);

            var nn: u32;
            if (TRANS_B) { kk = i & 7u; nn = i >> 3u; } else { nn = i & 127u; kk = i >> 7u; }
            let vb = load_b(base_b, k0 + kk, n0 + nn);
            stage_b_128(kk, nn, vb);
        }
        workgroupBarrier();
        multiply_tiles_128(tx, ty, &acc);
        workgroupBarrier();
    }

    for (var r = 0u; r < 8u; r++) {
        let m = m0 + tile_row_128(r, ty);
        if (m >= params.m) { continue; }
        for (var h = 0u; h < 2u; h++) {
            let v = acc[2u * r + h];
            for (var j = 0u; j < 4u; j++) {
                let n = n0 + tile_col_128(h, j, tx);
                if (n >= params.n) { continue; }
                c[store_index(base_c, m, n)] = epilogue(v[j], m, n);
            }
        }
    }
}
