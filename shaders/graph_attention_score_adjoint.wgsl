// graph_attention_score_adjoint.wgsl — the cotangent of an attention's scores from the cotangent of its output, in
// one dispatch (the adjoint's Ō·Vᵀ product, softmax linearisation and scale fused): with P the primal probabilities,
//   G_ij = Σ_c Ō[i, c] · V[j, c],  out[r, l, i, j] = scale · P_ij · (G_ij − Σ_j' P_ij' · G_ij').
// As reference::attention::record_attention_score_adjoint.
//
// Bindings (group 0): 0 v (read, primal or constant, addressed by params.v as shared/attention_common.wgsl says),
//                     1 p (read, primal [lead, lq, lk] per point row, params.p), 2 ct (read, tangent Ō
//                     [rows, lead, lq, dv] contiguous, params.dq), 3 out (read_write, tangent [rows, lead, lq, lk]
//                     contiguous; none of the inputs), 4 params (uniform Params of shared/attention_common.wgsl).
// Layout: one thread per (tangent row r, head l, query i) (params.chunks = 1), 64-thread workgroups on a 2-D grid;
// the thread writes G into its own output row, then rescales it in place.

@group(0) @binding(0) var<storage, read> v: array<f32>;
@group(0) @binding(1) var<storage, read> p: array<f32>;
@group(0) @binding(2) var<storage, read> ct: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let thread = thread_index(wid, lid, params.grid_width);
    if (thread >= params.threads) {
        return;
    }
    let lk = params.lk;
    let n_v = params.dv;
    let item = work_item(thread, params);
    let r = item.r;
    let l = item.l;
    let i = item.i;
    let vb = matrix_base(params.v, r, l);
    let pb = matrix_base(params.p, r, l) + i * lk;
    let cb = matrix_base(params.dq, r, l) + i * n_v;
    let ob = item.out_row * lk;
    var dot = 0.0;
    for (var j = 0u; j < lk; j = j + 1u) {
        var g = 0.0;
        for (var c = 0u; c < n_v; c = c + 1u) {
            g = fma(ct[cb + c], v[vb + matrix_at(params.v, j, c, lk, n_v)], g);
        }
        out[ob + j] = g;
        dot = fma(p[pb + j], g, dot);
    }
    for (var j = 0u; j < lk; j = j + 1u) {
        out[ob + j] = params.scale * p[pb + j] * (out[ob + j] - dot);
    }
}
