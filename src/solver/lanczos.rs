//! Leading eigenpairs of many symmetric operators at once by block Lanczos with full reorthogonalisation and
//! thick restarts, matrix-free: the caller supplies H·V for a block of vectors of every still-active point in one
//! call (one GPU pass for the whole batch), the small projected problems are solved in f64 on the host (faer).
//!
//! Per point: the basis Q (orthonormal columns) and its products W = H Q are kept, so the projected matrix
//! T = Qᵀ H Q = Qᵀ W is exact whatever rounding the products carry, and the Ritz residuals H y − θ y = W s − θ Q s
//! cost no extra products. Each step expands Q by the next block (the last products orthogonalised twice against
//! Q, classical Gram–Schmidt, then among themselves; a column that vanishes is dropped and, when a whole block
//! vanishes because the space is invariant, random directions refill it). When Q would pass `max_basis` columns
//! the leading Ritz vectors are kept (thick restart) and the next block is their residuals. A point stops when its
//! `wanted` leading Ritz pairs have ‖H y − θ y‖ ≤ tolerance · max|θ|, or when the basis spans the whole space, or
//! after `max_products` block products (then it is flagged not converged). Warm starts take given vectors.

use faer::{Mat, Side};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

/// Settings of a block Lanczos solve.
#[derive(Debug, Clone, Copy)]
pub struct LanczosSettings {
    /// k, the number of leading (largest) eigenpairs wanted.
    pub wanted: usize,
    /// How many of the k leading pairs must pass the residual test (1 ≤ tested ≤ k); the rest are reported as
    /// they stand (their Ritz values bound the eigenvalues from below).
    pub tested: usize,
    /// Vectors per product block.
    pub block: usize,
    /// Basis columns before a thick restart (at least `wanted + 2·block`; capped at the dimension).
    pub max_basis: usize,
    /// Converged when every wanted pair has ‖H y − θ y‖ ≤ tolerance · max|θ| (θ over the projected spectrum).
    pub tolerance: f64,
    /// Block products per point before giving up (the point is flagged not converged).
    pub max_products: usize,
    /// Seeds the random fill of start blocks and of vanished blocks (mixed with each point's start vectors).
    pub seed: u64,
}

impl LanczosSettings {
    /// Settings for `wanted` leading pairs: block max(wanted, 4), basis wanted + 4 blocks, tolerance 1e-5.
    pub fn leading(wanted: usize) -> Self {
        let block = wanted.max(4);
        LanczosSettings {
            wanted,
            tested: wanted,
            block,
            max_basis: wanted + 4 * block,
            tolerance: 1e-5,
            max_products: 60,
            seed: 17,
        }
    }

    fn validate(&self, dim: usize) -> Result<()> {
        if self.wanted == 0 || self.wanted > dim {
            return Err(Error::InvalidArgument(format!(
                "wanted eigenpairs k = {} must satisfy 0 < k ≤ D = {dim}",
                self.wanted
            )));
        }
        if self.tested == 0 || self.tested > self.wanted {
            return Err(Error::InvalidArgument(format!(
                "tested pairs {} must satisfy 0 < tested ≤ k = {}",
                self.tested, self.wanted
            )));
        }
        if self.block == 0 {
            return Err(Error::InvalidArgument("block size must be at least 1".into()));
        }
        if !(self.tolerance > 0.0 && self.tolerance.is_finite()) {
            return Err(Error::InvalidArgument(format!("tolerance {} must be a positive number", self.tolerance)));
        }
        if self.max_products == 0 {
            return Err(Error::InvalidArgument("max_products must be at least 1".into()));
        }
        Ok(())
    }
}

/// The leading eigenpairs of one point's operator.
#[derive(Debug, Clone)]
pub struct LeadingPairs {
    /// θ₁ ≥ … ≥ θ_k.
    pub values: Vec<f64>,
    /// [k, D]: vector i is `vectors[i·D..(i+1)·D]`, unit norm, mutually orthogonal.
    pub vectors: Vec<f64>,
    /// ‖H yᵢ − θᵢ yᵢ‖ per pair.
    pub residuals: Vec<f64>,
    /// max|θ| of the projected problem, the scale of the residual test.
    pub scale: f64,
    pub converged: bool,
    /// Block products (operator calls that included this point) and single vectors multiplied.
    pub block_products: usize,
    pub vector_products: usize,
    /// The leading min(block, basis) Ritz vectors, [j, D]: the warm start of a following solve.
    pub warm: Vec<f64>,
}

/// Solver state of one point.
struct PointSolve {
    dim: usize,
    q: Vec<Vec<f64>>,
    w: Vec<Vec<f64>>,
    /// The block sent to the operator, orthonormal and orthogonal to q.
    pending: Vec<Vec<f64>>,
    rng: StdRng,
    result: Option<LeadingPairs>,
    block_products: usize,
    vector_products: usize,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// FNV-1a over the bits of the start vectors: a per-point seed that does not depend on batch position.
fn seed_of(start: &[Vec<f64>], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for v in start {
        for x in v {
            h = (h ^ x.to_bits()).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

impl PointSolve {
    /// Orthonormalises `candidates` against the basis and each other (twice), dropping columns that vanish, and
    /// refills with random directions when none survive, up to `limit` columns.
    fn orthonormal_block(&mut self, candidates: Vec<Vec<f64>>, limit: usize) -> Vec<Vec<f64>> {
        let limit = limit.min(self.dim - self.q.len());
        let mut out: Vec<Vec<f64>> = Vec::with_capacity(limit);
        let accept = |v: Vec<f64>, q: &[Vec<f64>], out: &mut Vec<Vec<f64>>| {
            let mut v = v;
            let before = dot(&v, &v).sqrt();
            if before == 0.0 || !before.is_finite() {
                return;
            }
            for _ in 0..2 {
                for b in q.iter().chain(out.iter()) {
                    let c = dot(b, &v);
                    axpy(&mut v, -c, b);
                }
            }
            let after = dot(&v, &v).sqrt();
            // A column that lost all but rounding to the basis carries no new direction.
            if after > 1e-10 * before {
                v.iter_mut().for_each(|x| *x /= after);
                out.push(v);
            }
        };
        for v in candidates {
            if out.len() == limit {
                break;
            }
            accept(v, &self.q, &mut out);
        }
        let mut attempts = 0;
        while out.is_empty() && limit > 0 && attempts < 8 {
            let random: Vec<f64> = (0..self.dim).map(|_| self.rng.random::<f64>() - 0.5).collect();
            accept(random, &self.q, &mut out);
            attempts += 1;
        }
        out
    }

    /// Rayleigh–Ritz on the basis: (θ descending, S columns in that order).
    fn ritz(&self) -> Result<(Vec<f64>, Mat<f64>)> {
        let m = self.q.len();
        let t = Mat::<f64>::from_fn(m, m, |i, j| 0.5 * (dot(&self.q[i], &self.w[j]) + dot(&self.q[j], &self.w[i])));
        let eigen = t.self_adjoint_eigen(Side::Lower).map_err(|e| Error::Device(format!("Rayleigh–Ritz: {e:?}")))?;
        let (u, s) = (eigen.U(), eigen.S().column_vector());
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
        Ok((order.iter().map(|&i| s[i]).collect(), Mat::from_fn(m, m, |r, c| u[(r, order[c])])))
    }

    /// Σⱼ S[j, c] basis[j].
    fn combine(basis: &[Vec<f64>], s: &Mat<f64>, c: usize, dim: usize) -> Vec<f64> {
        let mut y = vec![0.0; dim];
        for (j, b) in basis.iter().enumerate() {
            axpy(&mut y, s[(j, c)], b);
        }
        y
    }

    /// Takes the products of the pending block, tests convergence, and prepares the next block or finishes.
    fn absorb(&mut self, products: Vec<Vec<f64>>, settings: &LanczosSettings) -> Result<()> {
        let dim = self.dim;
        if let Some(bad) = products.iter().flatten().find(|x| !x.is_finite()) {
            return Err(Error::Device(format!("the operator returned a non-finite product ({bad})")));
        }
        self.block_products += 1;
        self.vector_products += products.len();
        let pending = std::mem::take(&mut self.pending);
        self.q.extend(pending);
        self.w.extend(products.iter().cloned());
        let (theta, s) = self.ritz()?;
        let m = self.q.len();
        let k = settings.wanted.min(m);
        let scale = theta.iter().fold(0.0f64, |a, t| a.max(t.abs()));
        let mut ritz_vectors = Vec::with_capacity(k);
        let mut residual_vectors = Vec::with_capacity(k);
        let mut residuals = Vec::with_capacity(k);
        let leading = m.min(settings.block.max(k));
        for (c, &value) in theta.iter().enumerate().take(leading) {
            let y = Self::combine(&self.q, &s, c, dim);
            let mut r = Self::combine(&self.w, &s, c, dim);
            axpy(&mut r, -value, &y);
            if c < k {
                residuals.push(dot(&r, &r).sqrt());
            }
            ritz_vectors.push(y);
            residual_vectors.push(r);
        }
        let complete = m >= dim;
        let converged = complete
            || (k == settings.wanted
                && residuals.iter().take(settings.tested).all(|&r| r <= settings.tolerance * scale));
        if converged || self.block_products >= settings.max_products {
            self.result = Some(LeadingPairs {
                values: theta[..k].to_vec(),
                vectors: ritz_vectors[..k].concat(),
                residuals,
                scale,
                converged,
                block_products: self.block_products,
                vector_products: self.vector_products,
                warm: ritz_vectors.concat(),
            });
            return Ok(());
        }
        let candidates = if m + settings.block > settings.max_basis.min(dim) && m > settings.wanted {
            // Thick restart: keep the leading Ritz pairs (their products are W S, exact), expand by residuals.
            let keep = (settings.max_basis.min(dim).saturating_sub(settings.block)).max(settings.wanted).min(m);
            let q: Vec<Vec<f64>> = (0..keep).map(|c| Self::combine(&self.q, &s, c, dim)).collect();
            let w: Vec<Vec<f64>> = (0..keep).map(|c| Self::combine(&self.w, &s, c, dim)).collect();
            self.q = q;
            self.w = w;
            residual_vectors
        } else {
            products
        };
        self.pending = self.orthonormal_block(candidates, settings.block);
        if self.pending.is_empty() {
            // The basis spans an invariant subspace and no new direction could be found: it is exact.
            return self.finish_exact(settings);
        }
        Ok(())
    }

    fn finish_exact(&mut self, settings: &LanczosSettings) -> Result<()> {
        let (theta, s) = self.ritz()?;
        let m = self.q.len();
        let k = settings.wanted.min(m);
        let dim = self.dim;
        let vectors: Vec<Vec<f64>> =
            (0..m.min(settings.block.max(k))).map(|c| Self::combine(&self.q, &s, c, dim)).collect();
        self.result = Some(LeadingPairs {
            values: theta[..k].to_vec(),
            vectors: vectors[..k].concat(),
            residuals: vec![0.0; k],
            scale: theta.iter().fold(0.0f64, |a, t| a.max(t.abs())),
            converged: k == settings.wanted,
            block_products: self.block_products,
            vector_products: self.vector_products,
            warm: vectors.concat(),
        });
        Ok(())
    }
}

/// The `settings.wanted` leading eigenpairs of `points` symmetric D×D operators.
///
/// `start[b]` holds point b's warm-start vectors (any number, each of length D, need not be orthonormal; may be
/// empty): they open the first block, random directions fill the rest. `apply(active, v, block)` must return
/// H_b v for every listed point b: `v` is [active.len(), block, D] (row-major, vector-contiguous) and so is the
/// result. A point whose block has fewer than `block` columns gets zero columns (their products are ignored).
pub fn block_lanczos<F>(
    dim: usize,
    start: &[Vec<Vec<f64>>],
    settings: LanczosSettings,
    mut apply: F,
) -> Result<Vec<LeadingPairs>>
where
    F: FnMut(&[usize], &[f64], usize) -> Result<Vec<f64>>,
{
    settings.validate(dim)?;
    let settings =
        LanczosSettings { max_basis: settings.max_basis.max(settings.wanted + 2 * settings.block), ..settings };
    let mut solves: Vec<PointSolve> = Vec::with_capacity(start.len());
    for (b, vectors) in start.iter().enumerate() {
        if let Some(v) = vectors.iter().find(|v| v.len() != dim) {
            return Err(Error::bad_input(
                "start vectors",
                format!("point {b}: a vector of {} values, D = {dim}", v.len()),
            ));
        }
        let mut solve = PointSolve {
            dim,
            q: Vec::new(),
            w: Vec::new(),
            pending: Vec::new(),
            rng: StdRng::seed_from_u64(seed_of(vectors, settings.seed)),
            result: None,
            block_products: 0,
            vector_products: 0,
        };
        let mut candidates: Vec<Vec<f64>> =
            vectors.iter().filter(|v| v.iter().all(|x| x.is_finite())).cloned().collect();
        while candidates.len() < settings.block {
            candidates.push((0..dim).map(|_| solve.rng.random::<f64>() - 0.5).collect());
        }
        solve.pending = solve.orthonormal_block(candidates, settings.block);
        solves.push(solve);
    }
    let block = settings.block.min(dim);
    loop {
        let active: Vec<usize> = (0..solves.len()).filter(|&b| solves[b].result.is_none()).collect();
        if active.is_empty() {
            break;
        }
        let mut v = vec![0.0; active.len() * block * dim];
        for (j, &b) in active.iter().enumerate() {
            for (c, col) in solves[b].pending.iter().enumerate() {
                v[(j * block + c) * dim..(j * block + c + 1) * dim].copy_from_slice(col);
            }
        }
        let hv = apply(&active, &v, block)?;
        if hv.len() != v.len() {
            return Err(Error::Device(format!("the operator returned {} values for {} inputs", hv.len(), v.len())));
        }
        let work: Vec<(&mut PointSolve, Vec<Vec<f64>>)> = {
            let mut refs: Vec<Option<&mut PointSolve>> = solves.iter_mut().map(Some).collect();
            active
                .iter()
                .enumerate()
                .map(|(j, &b)| {
                    let solve = refs[b].take().expect("each point once");
                    let cols = solve.pending.len();
                    let products =
                        (0..cols).map(|c| hv[(j * block + c) * dim..(j * block + c + 1) * dim].to_vec()).collect();
                    (solve, products)
                })
                .collect()
        };
        parallel_each(work, |(solve, products)| solve.absorb(products, &settings))?;
    }
    Ok(solves.into_iter().map(|s| s.result.expect("every point finished")).collect())
}

/// Runs `f` on every item across the machine's threads.
fn parallel_each<T: Send>(items: Vec<T>, f: impl Fn(T) -> Result<()> + Sync) -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len().max(1));
    if threads <= 1 {
        return items.into_iter().try_for_each(&f);
    }
    let per = items.len().div_ceil(threads);
    let mut parts: Vec<Vec<T>> = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        parts.push(items.by_ref().take(per).collect());
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| {
                let f = &f;
                scope.spawn(move || part.into_iter().try_for_each(f))
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|_| Err(Error::Device("a worker panicked".into()))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Q diag(λ) Qᵀ with a random orthogonal Q (faer QR of a Gaussian-ish matrix), row-major.
    fn with_spectrum(values: &[f64], seed: u64) -> Vec<f64> {
        let n = values.len();
        let mut rng = StdRng::seed_from_u64(seed);
        let g = Mat::<f64>::from_fn(n, n, |_, _| rng.random::<f64>() - 0.5);
        let q = g.qr().compute_Q();
        let mut h = vec![0.0; n * n];
        for r in 0..n {
            for c in 0..n {
                h[r * n + c] = (0..n).map(|k| q[(r, k)] * values[k] * q[(c, k)]).sum();
            }
        }
        h
    }

    fn dense_leading(h: &[f64], n: usize) -> (Vec<f64>, Mat<f64>) {
        let m = Mat::<f64>::from_fn(n, n, |r, c| h[r * n + c]);
        let e = m.self_adjoint_eigen(Side::Lower).unwrap();
        let (u, s) = (e.U(), e.S().column_vector());
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
        (order.iter().map(|&i| s[i]).collect(), Mat::from_fn(n, n, |r, c| u[(r, order[c])]))
    }

    fn apply_dense<'a>(
        matrices: &'a [Vec<f64>],
        n: usize,
        calls: &'a mut usize,
    ) -> impl FnMut(&[usize], &[f64], usize) -> Result<Vec<f64>> + 'a {
        move |active, v, block| {
            *calls += 1;
            let mut out = vec![0.0; v.len()];
            for (j, &b) in active.iter().enumerate() {
                for c in 0..block {
                    let x = &v[(j * block + c) * n..(j * block + c + 1) * n];
                    for r in 0..n {
                        out[(j * block + c) * n + r] = dot(&matrices[b][r * n..(r + 1) * n], x);
                    }
                }
            }
            Ok(out)
        }
    }

    /// Largest principal angle's sine between the span of `vectors` ([k, n]) and dense columns `cols`.
    fn subspace_sine(vectors: &[f64], dense: &Mat<f64>, cols: std::ops::Range<usize>, n: usize) -> f64 {
        let k = vectors.len() / n;
        let mut worst = 0.0f64;
        for i in 0..k {
            let y = &vectors[i * n..(i + 1) * n];
            let mut rest = y.to_vec();
            for c in cols.clone() {
                let col: Vec<f64> = (0..n).map(|r| dense[(r, c)]).collect();
                axpy(&mut rest, -dot(&col, y), &col);
            }
            worst = worst.max(dot(&rest, &rest).sqrt());
        }
        worst
    }

    fn check(values: &[f64], settings: LanczosSettings, seed: u64, tol_values: f64, tol_angle: f64) -> usize {
        let n = values.len();
        let matrices: Vec<Vec<f64>> = (0..3).map(|p| with_spectrum(values, seed + p)).collect();
        let mut calls = 0;
        let start = vec![Vec::new(); matrices.len()];
        let out = block_lanczos(n, &start, settings, apply_dense(&matrices, n, &mut calls)).unwrap();
        let k = settings.wanted;
        for (h, pairs) in matrices.iter().zip(&out) {
            let (exact, vecs) = dense_leading(h, n);
            assert!(pairs.converged, "not converged: residuals {:?}", pairs.residuals);
            for (i, (&value, &want)) in pairs.values.iter().zip(&exact).enumerate().take(k) {
                assert!((value - want).abs() <= tol_values, "θ{i} {value} vs {want}");
                assert!(pairs.residuals[i] <= settings.tolerance * pairs.scale * 1.000001);
            }
            // Compare subspaces only where the spectrum has a gap after the k-th value.
            if k < n && exact[k - 1] - exact[k] > 1e-3 {
                let s = subspace_sine(&pairs.vectors, &vecs, 0..k, n);
                assert!(s <= tol_angle, "subspace angle {s}");
            }
            for i in 0..k {
                for j in 0..k {
                    let d = dot(&pairs.vectors[i * n..(i + 1) * n], &pairs.vectors[j * n..(j + 1) * n]);
                    assert!((d - if i == j { 1.0 } else { 0.0 }).abs() < 1e-10, "orthonormality {i},{j}: {d}");
                }
            }
        }
        calls
    }

    fn settings(wanted: usize, block: usize, tol: f64) -> LanczosSettings {
        LanczosSettings {
            wanted,
            tested: wanted,
            block,
            max_basis: wanted + 3 * block,
            tolerance: tol,
            max_products: 400,
            seed: 3,
        }
    }

    #[test]
    fn well_separated_spectrum() {
        let values: Vec<f64> = (0..53).map(|i| -(i as f64) * 0.7 + 3.0).collect();
        check(&values, settings(3, 5, 1e-10), 1, 1e-9, 1e-8);
    }

    #[test]
    fn clustered_leading_values_and_a_tiny_gap() {
        // Three leading values within 1e-6 of each other, then a gap of 1e-4, then a dense negative bulk.
        let mut values = vec![2.0, 2.0 + 1e-6, 2.0 - 1e-6, 2.0 - 1e-4];
        values.extend((0..43).map(|i| -1.0 - 0.01 * i as f64));
        check(&values, settings(4, 3, 1e-11), 2, 1e-9, 1e-5);
    }

    #[test]
    fn repeated_values_beyond_the_block() {
        // λ = 1 five times with a block of 2: block Lanczos alone cannot see the multiplicity; restarts must.
        let mut values = vec![1.0; 5];
        values.extend((0..38).map(|i| -0.5 - 0.05 * i as f64));
        check(&values, settings(5, 2, 1e-10), 3, 1e-9, 1e-7);
    }

    #[test]
    fn rank_deficient_operators() {
        // Rank 4 in 41 dimensions: the Krylov space becomes invariant and random refills must take over.
        let mut values = vec![3.0, 1.0, 0.5, -2.0];
        values.extend(std::iter::repeat_n(0.0, 37));
        check(&values, settings(3, 4, 1e-10), 4, 1e-9, 1e-8);
        // Wanting more than the rank: zeros among the leading values.
        check(&values, settings(5, 3, 1e-10), 5, 1e-9, 1e-8);
    }

    #[test]
    fn the_ridge_case_one_leading_value_above_a_cluster() {
        // The Hessian at a point near a 1-D ridge in D = 37: λ₁ near 0, the rest clustered near −1/σ².
        let mut values = vec![-0.3];
        values.extend((0..36).map(|i| -100.0 + 1e-3 * i as f64));
        check(&values, settings(2, 4, 1e-8), 6, 1e-6, 1e-7);
    }

    #[test]
    fn warm_start_from_the_answer_converges_at_once() {
        let n = 29;
        let values: Vec<f64> = (0..n).map(|i| 1.0 - 0.3 * i as f64).collect();
        let h = with_spectrum(&values, 9);
        let (_, vecs) = dense_leading(&h, n);
        let start = vec![(0..3).map(|c| (0..n).map(|r| vecs[(r, c)]).collect()).collect::<Vec<Vec<f64>>>()];
        let mut calls = 0;
        let out = block_lanczos(n, &start, settings(2, 3, 1e-10), apply_dense(std::slice::from_ref(&h), n, &mut calls))
            .unwrap();
        assert!(out[0].converged);
        assert_eq!(out[0].block_products, 1);
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_cap_short_of_the_tolerance_is_flagged() {
        let values: Vec<f64> = (0..60).map(|i| 1.0 - 1e-4 * i as f64).collect();
        let h = with_spectrum(&values, 10);
        let mut calls = 0;
        let s = LanczosSettings { max_products: 2, ..settings(2, 2, 1e-12) };
        let out = block_lanczos(60, &[Vec::new()], s, apply_dense(std::slice::from_ref(&h), 60, &mut calls)).unwrap();
        assert!(!out[0].converged);
        assert_eq!(out[0].block_products, 2);
    }

    #[test]
    fn bad_settings_are_errors() {
        let f = |_: &[usize], v: &[f64], _: usize| Ok(v.to_vec());
        assert!(block_lanczos(5, &[Vec::new()], settings(0, 2, 1e-8), f).is_err());
        assert!(block_lanczos(5, &[Vec::new()], settings(6, 2, 1e-8), f).is_err());
        assert!(block_lanczos(5, &[vec![vec![1.0; 4]]], settings(2, 2, 1e-8), f).is_err());
    }
}
