// shared/kde_params.wgsl — the parameters every kde_*.wgsl kernel takes, for the Gaussian-smoothed empirical
// density p(x) = (1/N) Σᵢ N(x; α·dataᵢ, σ² I) evaluated over one tile of data points at a time.
//
//   rows        query points in this chunk (b < rows)
//   dim         D, entries per point
//   tile_rows   data points in this tile (i < tile_rows)
//   ld          row stride of the logits buffer [rows, ld] (the tile capacity)
//   per_point   P, directions per query point (Hessian-vector products)
//   first       1 on the first data tile: outputs are overwritten, not accumulated
//   alpha       α, the mean scaling of the data (1 for a plain kernel density estimate)
//   inv_two_var 1 / (2σ²)
//
// The running log-sum-exp state of query b is state[b] = (M, S, M_prev, 0): the largest logit so far, the sum
// Σ exp(logit − M) so far, and M before the latest tile. acc[b, k] = Σᵢ exp(logitᵢ − M)(α·dataᵢₖ − x_bk), so the
// weighted mean is m_b = x_b + acc_b / S and the softmax weights are wᵢ = exp(logitᵢ − M) / S.

struct Params {
    rows: u32,
    dim: u32,
    tile_rows: u32,
    ld: u32,
    per_point: u32,
    first: u32,
    alpha: f32,
    inv_two_var: f32,
}

// Logits are clamped here so that a point absurdly far from every data point still has finite logits.
const LOWEST_LOGIT: f32 = -3.0e38;
