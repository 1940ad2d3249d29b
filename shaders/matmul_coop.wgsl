// matmul_coop.wgsl — the matrix product of matmul_tiled.wgsl on cooperative matrices (tensor cores through
// wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX): 8×8 f32 blocks, f32 inputs and f32 accumulation, with the same
// fused prologue and epilogue (act_a on A's loads; bias, act, act' factor, row scale and grouped transposed store
// on C's).
//
// For every batch index z and every (m, n) of the M×N output, g = m / group_rows:
//     C[z](m, n) = act( Σ_k act_a(A[z](m, k)) · B[z](k, n) + bias[n] [+ pre[offset_pre + g·ld_pre + n]] ) · act'(pre[..]) · row_scale[g]
// (meaning of every term and override constant: matmul_tiled.wgsl and shared/matmul_common.wgsl).
//
// Bindings (group 0): 0 a (read), 1 b (read), 2 bias (read, [N]), 3 row_scale (read, [M / G]),
//                     4 pre (read, [M / G, ld_pre]), 5 c (read_write), 6 params (uniform Params).
// Layout: exactly as matmul_tiled.wgsl (row-major, leading dimensions and batch strides in f32 elements, TRANS_A /
// TRANS_B for transposed operands, STORE_GROUP_TRANSPOSED for the grouped transposed store).
// Tiling: a workgroup of 64 threads computes a 32×32 output tile, stepping K by 32. Per step all threads stage
// A [32][32] and B [32][32] in workgroup memory (zero outside the matrices, so tails need no special case); the
// tile's sixteen 8×8 blocks are dealt to the subgroups (block subgroup_id, + num_subgroups, …: any subgroup size),
// each loading its accumulator block from workgroup memory, adding four 8×8×8 products and storing it back. The
// epilogue reads the finished 32×32 accumulator tile per element, so bias, activations, scale and the transposed
// store are those of the other variants. Workgroup memory 12 KiB. Dispatch (⌈N/32⌉, ⌈M/32⌉, batch).
// Every global index is bounds-checked.

const CT: u32 = 32u;
const CK: u32 = 32u;
const COOP_THREADS: u32 = 64u;

var<workgroup> coop_a: array<f32, 1024>; // [CT][CK]
var<workgroup> coop_b: array<f32, 1024>; // [CK][CT]
var<workgroup> coop_c: array<f32, 1024>; // [CT][CT]

@compute @workgroup_size(64, 1, 1)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
) {
    let m0 = group.y * CT;
    let n0 = group.x * CT;
    let z = group.z;
    let base_a = params.offset_a + z * params.stride_a;
    let base_b = params.offset_b + z * params.stride_b;
    let base_c = params.offset_c + z * params.stride_c;

    for (var r = 0u; r < 16u; r++) { coop_c[lid + r * COOP_THREADS] = 0.0; }

    for (var k0 = 0u; k0 < params.k; k0 += CK) {
        for (var r = 0u; r < 16u; r++) {
            let i = lid + r * COOP_THREADS;
            // Consecutive threads walk the contiguous axis of each operand.
            var kk: u32; var mm: u32;
            if (TRANS_A) { mm = i & 31u; kk = i >> 5u; } else { kk = i & 31u; mm = i >> 5u; }
            let va = load_a(base_a, m0 + mm, k0 + kk);
            coop_a[mm * CK + kk] = va;

            var nn: u32;
            if (TRANS_B) { kk = i & 31u; nn = i >> 5u; } else { nn = i & 31u; kk = i >> 5u; }
            let vb = load_b(base_b, k0 + kk, n0 + nn);
            coop_b[kk * CT + nn] = vb;
        }
        workgroupBarrier();
        for (var blk = subgroup; blk < 16u; blk += subgroups) {
            let bm = (blk >> 2u) * 8u;
            let bn = (blk & 3u) * 8u;
            var acc = coopLoadT<coop_mat8x8<f32, C>>(&coop_c[bm * CT + bn], CT);
            for (var kk = 0u; kk < CK; kk += 8u) {
                let am = coopLoadT<coop_mat8x8<f32, A>>(&coop_a[bm * CK + kk], CK);
                let bmat = coopLoadT<coop_mat8x8<f32, B>>(&coop_b[kk * CT + bn], CT);
                acc = coopMultiplyAdd(am, bmat, acc);
            }
            coopStoreT(acc, &coop_c[bm * CT + bn], CT);
        }
        workgroupBarrier();
    }

    for (var r = 0u; r < 16u; r++) {
        let i = lid + r * COOP_THREADS;
        let m = m0 + (i >> 5u);
        let n = n0 + (i & 31u);
        if (m < params.m && n < params.n) {
            c[store_index(base_c, m, n)] = epilogue(coop_c[i], m, n);
        }
    }
}
