// shared/kde_moments.wgsl — the weighted mean of a query point from the first pass's results, for the second-pass
// kernels (kde_covariance, kde_hvp_project, kde_hvp_accumulate, kde_small_covariance).
//
// Bindings: none of its own; reads the including kernel's `x` ([rows, dim]) and `acc` ([rows, dim]) and `params`.
// Layout: row-major. m_bk = x[b·dim + k] + acc[b·dim + k] / S, with inv_s = 1 / S from the final state[b].

fn weighted_mean(b: u32, k: u32, inv_s: f32) -> f32 {
    let index = b * params.dim + k;
    return x[index] + acc[index] * inv_s;
}
