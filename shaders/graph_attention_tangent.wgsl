// graph_attention_tangent.wgsl — the tangent of an attention (graph_attention.wgsl) in one pass over the keys,
// storing neither dS nor dP: with P the primal probabilities and, for query i,
//   ds_j = scale · (Σ_c dQ[i, c] · K[c, j] + Σ_c Q[i, c] · dK[c, j]),  a = Σ_j P_ij ds_j,
//   out[r, l, i, c] = Σ_j P_ij (ds_j · V[j, c] + dV[j, c]) − a · Σ_j P_ij V[j, c]
// (= (dP · V + P · dV)[i, c] with dP = P ⊙ (dS − Σ_j P ⊙ dS)); terms of absent tangents (bit 0 dq, 1 dk, 2 dv of
// params.present) are left out. As reference::attention::record_attention_tangent.
//
// Bindings (group 0): 0 q, 1 k, 2 v (read, primal or constant), 3 p (read, primal [lead, lq, lk] contiguous per
//                     point row), 4 dq, 5 dk, 6 dv (read, tangent; a placeholder when absent), 7 out (read_write,
//                     tangent [rows, lead, lq, dv] contiguous; none of the inputs), 8 params (uniform Params of
//                     shared/attention_common.wgsl).
// Layout: one thread per (tangent row r, head l, query i, chunk of CHUNK = 16 columns), 64-thread workgroups on a
// 2-D grid; primal operands are read at row r / rep.

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> p: array<f32>;
@group(0) @binding(4) var<storage, read> dq: array<f32>;
@group(0) @binding(5) var<storage, read> dk: array<f32>;
@group(0) @binding(6) var<storage, read> dv: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let thread = thread_index(wid, lid, params.grid_width);
    if (thread >= params.threads) {
        return;
    }
    let lq = params.lq;
    let lk = params.lk;
    let n_k = params.dk;
    let n_v = params.dv;
    let has_dq = (params.present & 1u) != 0u;
    let has_dk = (params.present & 2u) != 0u;
    let has_dv = (params.present & 4u) != 0u;
    let item = work_item(thread, params);
    let r = item.r;
    let l = item.l;
    let i = item.i;
    let chunk = item.chunk;
    let qb = matrix_base(params.q, r, l);
    let kb = matrix_base(params.k, r, l);
    let vb = matrix_base(params.v, r, l);
    let pb = matrix_base(params.p, r, l) + i * lk;
    let dqb = matrix_base(params.dq, r, l);
    let dkb = matrix_base(params.dk_, r, l);
    let dvb = matrix_base(params.dv_, r, l);
    let c0 = chunk * CHUNK;
    // o: Σ_j P_ij V[j, ·]; t: Σ_j P_ij (ds_j V[j, ·] + dV[j, ·]).
    var o: array<f32, 16>;
    var t: array<f32, 16>;
    for (var c = 0u; c < CHUNK; c = c + 1u) {
        o[c] = 0.0;
        t[c] = 0.0;
    }
    var a = 0.0;
    for (var j = 0u; j < lk; j = j + 1u) {
        var ds = 0.0;
        if (has_dq) {
            for (var c = 0u; c < n_k; c = c + 1u) {
                ds = fma(dq[dqb + matrix_at(params.dq, i, c, lq, n_k)], k[kb + matrix_at(params.k, c, j, n_k, lk)], ds);
            }
        }
        if (has_dk) {
            for (var c = 0u; c < n_k; c = c + 1u) {
                ds = fma(q[qb + matrix_at(params.q, i, c, lq, n_k)], dk[dkb + matrix_at(params.dk_, c, j, n_k, lk)], ds);
            }
        }
        ds = ds * params.scale;
        let pij = p[pb + j];
        a = fma(pij, ds, a);
        for (var c = 0u; c < CHUNK; c = c + 1u) {
            let col = c0 + c;
            if (col < n_v) {
                let vj = v[vb + matrix_at(params.v, j, col, lk, n_v)];
                var term = ds * vj;
                if (has_dv) {
                    term = term + dv[dvb + matrix_at(params.dv_, j, col, lk, n_v)];
                }
                o[c] = fma(pij, vj, o[c]);
                t[c] = fma(pij, term, t[c]);
            }
        }
    }
    let ob = item.out_row * n_v;
    for (var c = 0u; c < CHUNK; c = c + 1u) {
        let col = c0 + c;
        if (col < n_v) {
            out[ob + col] = t[c] - a * o[c];
        }
    }
}
