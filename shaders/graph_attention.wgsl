// graph_attention.wgsl — fused scaled dot-product attention: out[r, l] = softmax(scale · Q · K) · V per head,
// the scores never stored (one pass over the keys with a running maximum: online softmax).
//
// For every row r, head l, query i and output column c < dv:
//   s_j = scale · Σ_c' Q[i, c'] · K[c', j],  out[r, l, i, c] = Σ_j exp(s_j − max_j s) · V[j, c] / Σ_j exp(s_j − max_j s),
// with Q [lq, dk], K [dk, lk], V [lk, dv] addressed as shared/attention_common.wgsl says.
// As reference::attention::record_attention.
//
// Bindings (group 0): 0 q, 1 k, 2 v (read), 3 out (read_write, [rows, lead, lq, dv] contiguous; none of the
//                     inputs), 4 params (uniform Params of shared/attention_common.wgsl; p, dq, dk_, dv_ unused).
// Layout: one thread per (r, l, i, chunk of CHUNK = 16 columns), 64-thread workgroups on a 2-D grid; each thread
// keeps its running maximum, sum and CHUNK accumulators in registers.

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let thread = thread_index(wid, lid, params.grid_width);
    if (thread >= params.threads) {
        return;
    }
    let lq = params.lq;
    let lk = params.lk;
    let dk = params.dk;
    let dv = params.dv;
    let item = work_item(thread, params);
    let r = item.r;
    let l = item.l;
    let i = item.i;
    let chunk = item.chunk;
    let qb = matrix_base(params.q, r, l);
    let kb = matrix_base(params.k, r, l);
    let vb = matrix_base(params.v, r, l);
    let c0 = chunk * CHUNK;
    var acc: array<f32, 16>;
    for (var c = 0u; c < CHUNK; c = c + 1u) { acc[c] = 0.0; }
    var running_max = -3.0e38;
    var sum = 0.0;
    for (var j = 0u; j < lk; j = j + 1u) {
        var s = 0.0;
        for (var c = 0u; c < dk; c = c + 1u) {
            s = fma(q[qb + matrix_at(params.q, i, c, lq, dk)], k[kb + matrix_at(params.k, c, j, dk, lk)], s);
        }
        s = s * params.scale;
        if (s > running_max) {
            // A new maximum: rescale what was summed against the old one.
            let f = exp(running_max - s);
            sum = sum * f;
            for (var c = 0u; c < CHUNK; c = c + 1u) { acc[c] = acc[c] * f; }
            running_max = s;
        }
        let e = exp(s - running_max);
        sum = sum + e;
        for (var c = 0u; c < CHUNK; c = c + 1u) {
            let col = c0 + c;
            if (col < dv) {
                acc[c] = fma(e, v[vb + matrix_at(params.v, j, col, lk, dv)], acc[c]);
            }
        }
    }
    let ob = item.out_row * dv;
    for (var c = 0u; c < CHUNK; c = c + 1u) {
        let col = c0 + c;
        if (col < dv) {
            out[ob + col] = acc[c] / sum;
        }
    }
}
