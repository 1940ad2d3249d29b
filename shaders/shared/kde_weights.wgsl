// shared/kde_weights.wgsl — the softmax weights of 16 data points of the tile for one query point, staged in
// workgroup memory by the second-pass tiled kernels (kde_covariance, kde_hvp_accumulate).
//
// Bindings: none of its own; reads the including kernel's `logits` ([rows, ld]) and `params`.
// Layout: weights[ii] = exp(logits[b·ld + i0 + ii] − M) / S for i0 + ii < tile_rows, 0 past the tile's end, with
// s = state[b] = (M, S, ·, ·) final and inv_s = 1 / S; written by the first 16 invocations, then a barrier.

var<workgroup> weights: array<f32, 16>;

fn stage_weights(lid: u32, b: u32, i0: u32, s: vec4<f32>, inv_s: f32) {
    if (lid < 16u) {
        var w = 0.0;
        if (i0 + lid < params.tile_rows) { w = exp(logits[b * params.ld + i0 + lid] - s.x) * inv_s; }
        weights[lid] = w;
    }
    workgroupBarrier();
}
