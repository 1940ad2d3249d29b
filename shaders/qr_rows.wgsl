// qr_rows.wgsl — batched thin QR of row blocks on the GPU: modified Gram–Schmidt, each row orthogonalised twice
// (MGS², the "twice is enough" rule), in place, with R and log R_jj kept for the caller.
//
// For every block b < blocks of K rows v_0 … v_{K−1} of length D:
//     for j in 0..K: twice { for i < j (two at a time): r_i = q_i · v_j; v_j −= r_i q_i; R[i, j] += r_i }
//                    R[j, j] = ‖v_j‖;  q_j = v_j / R[j, j]
// so the block's rows are Rᵀ Q: Q's rows orthonormal, R upper triangular with R_jj ≥ 0 (analysis::qr::qr_rows's
// convention). A row with nothing left (R_jj = 0) is set to zero. Pairs of projections share one reduction;
// within a pair they are classical Gram–Schmidt (q_i ⊥ q_{i+1} already, and the second sweep removes the rest).
//
// Bindings (group 0): 0 q (read_write, [blocks, K, D]), 1 r (read_write, [slots, blocks, K, K]),
//                     2 log_diag (read_write, [slots, blocks, K]), 3 params (uniform Params).
// Layout: row-major. params.slot picks the [blocks, K, K] slice of r and [blocks, K] slice of log_diag this call
// writes (a recording keeps the factors of many re-orthonormalisations); with params.keep_r = 0 only log_diag is
// written (r may then be a placeholder). One 256-thread workgroup per block; dispatch (gx, gy, 1) with
// block = group.y · params.grid_width + group.x. Thread l owns the elements l, l + 256, … of every row of its
// block, so rows are only shared through the reductions (shared/workgroup_sum.wgsl, or its subgroup variant as
// `qr_rows_subgroup`).

const QR_THREADS: u32 = 256u;

struct Params { blocks: u32, k: u32, d: u32, slot: u32, keep_r: u32, grid_width: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> r: array<f32>;
@group(0) @binding(2) var<storage, read_write> log_diag: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

fn row_start(block: u32, row: u32) -> u32 {
    return (block * params.k + row) * params.d;
}

fn r_index(block: u32, i: u32, j: u32) -> u32 {
    return ((params.slot * params.blocks + block) * params.k + i) * params.k + j;
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, lanes: Lanes) {
    let lid = lanes.lid;
    let block = group.y * params.grid_width + group.x;
    // The whole workgroup takes the same branch, so the barriers below stay uniform.
    if (block >= params.blocks) { return; }
    let k = params.k;
    let d = params.d;
    for (var j = 0u; j < k; j++) {
        let vj = row_start(block, j);
        // Thread 0 writes every entry of R, so no storage barrier is needed between its updates.
        if (params.keep_r != 0u && lid == 0u) {
            for (var i = 0u; i < k; i++) { r[r_index(block, i, j)] = 0.0; }
        }
        for (var sweep = 0u; sweep < 2u; sweep++) {
            for (var i = 0u; i < j; i += 2u) {
                let pair = i + 1u < j;
                let qa = row_start(block, i);
                let qb = row_start(block, min(i + 1u, j - 1u));
                var dots = vec2<f32>(0.0);
                for (var e = lid; e < d; e += QR_THREADS) {
                    let v = q[vj + e];
                    dots.x = fma(q[qa + e], v, dots.x);
                    if (pair) { dots.y = fma(q[qb + e], v, dots.y); }
                }
                let total = workgroup_sum2(lanes, dots);
                for (var e = lid; e < d; e += QR_THREADS) {
                    var v = q[vj + e] - total.x * q[qa + e];
                    if (pair) { v -= total.y * q[qb + e]; }
                    q[vj + e] = v;
                }
                if (params.keep_r != 0u && lid == 0u) {
                    r[r_index(block, i, j)] += total.x;
                    if (pair) { r[r_index(block, i + 1u, j)] += total.y; }
                }
            }
        }
        var square = 0.0;
        for (var e = lid; e < d; e += QR_THREADS) {
            let v = q[vj + e];
            square = fma(v, v, square);
        }
        let norm = sqrt(workgroup_sum2(lanes, vec2<f32>(square, 0.0)).x);
        let inverse = select(0.0, 1.0 / norm, norm > 0.0);
        for (var e = lid; e < d; e += QR_THREADS) {
            q[vj + e] *= inverse;
        }
        if (lid == 0u) {
            if (params.keep_r != 0u) { r[r_index(block, j, j)] = norm; }
            // log 0 = −∞ (a direction that collapsed), spelled as its bit pattern.
            log_diag[(params.slot * params.blocks + block) * k + j] = select(bitcast<f32>(0xff800000u), log(norm), norm > 0.0);
        }
    }
}
