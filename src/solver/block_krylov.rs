//! Block Krylov methods with full reorthogonalisation and thick restarts, for every point of a batch at once, on
//! products alone ([`BatchOperator`]):
//!
//! - [`block_krylov_svd`]: the top-k singular triplets of each A_b by block Golub–Kahan–Lanczos (Golub, Luk &
//!   Overton 1981; thick restart as Baglama & Reichel 2005). Per step, with P a pending block of b orthonormal
//!   right directions: V ← [V, P], AV ← [AV, A P]; U's new block = orth(A P against U), AᵀU ← [AᵀU, Aᵀ U_new];
//!   the next P = orth(Aᵀ U_new against V). Rayleigh–Ritz on B = Uᵀ (AV) = X Σ Yᵀ (f64, small) gives
//!   sᵢ, uᵢ = U xᵢ, vᵢ = V yᵢ, and both residuals from the stored products without another product:
//!   A vᵢ − sᵢ uᵢ = (AV) yᵢ − sᵢ U xᵢ and Aᵀ uᵢ − sᵢ vᵢ = (AᵀU) xᵢ − sᵢ V yᵢ. Krylov methods converge at a rate
//!   set by the square root of the relative gap, where subspace iteration needs the gap itself (Musco & Musco,
//!   NeurIPS 2015), so far fewer products reach a given residual when the spectrum decays slowly.
//! - [`block_lanczos_symmetric_part`]: the k eigenpairs of S_b = (A_b + A_bᵀ)/2 largest in |λ|, by block
//!   Lanczos the same way (X ← [X, P], SX ← [SX, S P], next P = orth(S P against X), Rayleigh–Ritz on Xᵀ SX).
//!
//! Loss of orthogonality: products may come from the GPU in f32; every new column is orthogonalised against the
//! whole basis in f64 twice (classical Gram–Schmidt, a third pass when the second still removed more than half
//! the norm), so the basis stays orthonormal to f64 rounding and a 1e-5 residual is limited only by the products'
//! own accuracy. A column that vanishes (an invariant subspace found, a rank-deficient operator) is replaced by
//! a random one drawn for its row, orthogonalised the same way.
//!
//! Restart: when the basis would pass `basis` columns, it is compressed to the top k + b Ritz vectors (V Y, AV Y,
//! U X, AᵀU X) and the pending block continues it (it is already orthogonal to them), so memory per point stays
//! at four D × `basis` blocks. Locking: triplets converge from the top; once the leading ones pass both residual
//! tests they are locked, their values and vectors fixed as they passed, and they stay in the basis so that the
//! others stay orthogonal to them; a point whose k triplets are locked leaves the batch (no more products).
//! A point still short of the tolerance at the iteration cap is returned with `converged: false`.
//!
//! [`super::resident_krylov::block_krylov_svd_resident`] is the same Golub–Kahan–Lanczos with the bases in f32 on
//! the GPU (products on a [`super::operator::DeviceBatchOperator`]); this host path is its f64 reference and the
//! fallback where it does not apply (small D, fields without device blocks, software drivers).
//!
//! Per point, results depend only on the operator, the settings and the point's global row (its starting block
//! and any replacement columns are drawn from (seed, first_row + b), `first_row` the global row of the batch's
//! first point, given with the batch), never on the batch it ran in.

use faer::{Mat, Side};
use rand_distr::{Distribution, StandardNormal};

use super::operator::BatchOperator;
use crate::draws::{normal_rows, row_rng, stream};
use crate::error::{Error, Result};

/// Settings of the block Krylov solvers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KrylovSettings {
    /// Triplets (eigenpairs) wanted per point, 1 ≤ k ≤ D.
    pub k: usize,
    /// Directions added per step (b); a singular value repeated more than b times is found only slowly.
    pub block: usize,
    /// Most basis columns kept before a thick restart (at least k + 2b; all of D when D is smaller).
    pub basis: usize,
    /// Stop a point when every wanted triplet's residuals, over s₁ (|λ₁|), are at most this.
    pub tolerance: f64,
    /// Block steps at most (never fewer than the ⌈k / b⌉ that first fill the basis).
    pub max_iterations: usize,
    pub seed: u64,
}

impl KrylovSettings {
    /// The default block and basis for k: b = min(k, 8) directions per step and a basis of 3k + 2b columns.
    pub fn new(k: usize, tolerance: f64, max_iterations: usize, seed: u64) -> Self {
        let block = k.clamp(1, 8);
        KrylovSettings { k, block, basis: 3 * k + 2 * block, tolerance, max_iterations, seed }
    }

    pub(super) fn check(&self, d: usize) -> Result<()> {
        if self.k == 0 || self.k > d {
            return Err(Error::InvalidArgument(format!("k = {} must be between 1 and D = {d}", self.k)));
        }
        if self.block == 0 {
            return Err(Error::InvalidArgument("block = 0: a block Krylov step needs at least one direction".into()));
        }
        if !(self.tolerance >= 0.0 && self.tolerance.is_finite()) {
            return Err(Error::InvalidArgument(format!("tolerance {} must be a number ≥ 0", self.tolerance)));
        }
        Ok(())
    }

    /// (b, the basis capacity) for dimension D.
    pub(crate) fn sizes(&self, d: usize) -> (usize, usize) {
        let b = self.block.min(d);
        (b, self.basis.max(self.k + 2 * b).min(d))
    }

    /// The last block step: the cap, but never before the basis first holds k columns.
    pub(super) fn last_iteration(&self, b: usize) -> usize {
        self.max_iterations.max(self.k.div_ceil(b)).max(1)
    }
}

/// The top-k singular triplets of one point's operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Triplets {
    /// s₁ ≥ … ≥ s_k.
    pub singular_values: Vec<f64>,
    /// [k, D], row i = uᵢ.
    pub left: Vec<f64>,
    /// [k, D], row i = vᵢ.
    pub right: Vec<f64>,
    /// ‖A vᵢ − sᵢ uᵢ‖ / s₁ (from the products, as the solver judged them).
    pub residuals: Vec<f64>,
    /// ‖Aᵀ uᵢ − sᵢ vᵢ‖ / s₁.
    pub transpose_residuals: Vec<f64>,
    /// Every residual ≤ the tolerance; false when the point stopped at the iteration cap short of it.
    pub converged: bool,
    /// Block steps taken.
    pub iterations: usize,
    /// Rows multiplied by A or Aᵀ for this point.
    pub products: usize,
}

/// The k eigenpairs of one point's symmetric part largest in |λ|.
#[derive(Debug, Clone, PartialEq)]
pub struct Eigenpairs {
    /// Ordered by |λ| descending.
    pub values: Vec<f64>,
    /// [k, D], row i = xᵢ.
    pub vectors: Vec<f64>,
    /// ‖S xᵢ − λᵢ xᵢ‖ / |λ₁|.
    pub residuals: Vec<f64>,
    pub converged: bool,
    pub iterations: usize,
    /// Rows multiplied by A or Aᵀ for this point (each S·x takes one of each).
    pub products: usize,
}

/// D × 0.
fn empty(d: usize) -> Mat<f64> {
    Mat::zeros(d, 0)
}

/// [a, b] side by side.
fn append(a: &Mat<f64>, b: &Mat<f64>) -> Mat<f64> {
    let m = a.ncols();
    Mat::from_fn(a.nrows(), m + b.ncols(), |r, c| if c < m { a[(r, c)] } else { b[(r, c - m)] })
}

/// The first `cols` columns.
fn leading(a: &Mat<f64>, cols: usize) -> Mat<f64> {
    Mat::from_fn(a.nrows(), cols, |r, c| a[(r, c)])
}

/// `cols` rows of slot `slot` of a [slots, rows, D] block, as the columns of a D × cols matrix.
fn block_columns(block: &[f64], slot: usize, rows: usize, cols: usize, d: usize) -> Mat<f64> {
    Mat::from_fn(d, cols, |r, c| block[(slot * rows + c) * d + r])
}

/// The columns of each slot's matrix as rows of one [slots, rows, D] block (zero rows pad short slots).
pub(super) fn stack<'a>(matrices: impl Iterator<Item = &'a Mat<f64>>, rows: usize, d: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for m in matrices {
        for c in 0..rows {
            if c < m.ncols() {
                out.extend((0..d).map(|r| m[(r, c)]));
            } else {
                out.extend(std::iter::repeat_n(0.0, d));
            }
        }
    }
    out
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Removes from `c` its components along the columns of `basis` and `fresh` (one classical Gram–Schmidt pass).
fn project_out(c: &mut [f64], basis: &Mat<f64>, fresh: &[Vec<f64>]) {
    let d = c.len();
    for j in 0..basis.ncols() {
        let dot: f64 = (0..d).map(|r| basis[(r, j)] * c[r]).sum();
        for (r, value) in c.iter_mut().enumerate() {
            *value -= dot * basis[(r, j)];
        }
    }
    for q in fresh {
        let dot: f64 = q.iter().zip(c.iter()).map(|(a, b)| a * b).sum();
        for (value, qr) in c.iter_mut().zip(q) {
            *value -= dot * qr;
        }
    }
}

/// The columns of `w` orthonormalised against `basis` (orthonormal columns) and each other: Gram–Schmidt twice
/// (three times when the second pass still removed more than half), a vanished column replaced by `refill()`.
fn orthonormalize_against(basis: &Mat<f64>, w: &Mat<f64>, refill: &mut dyn FnMut() -> Vec<f64>) -> Mat<f64> {
    let d = w.nrows();
    let mut fresh: Vec<Vec<f64>> = Vec::with_capacity(w.ncols());
    for j in 0..w.ncols() {
        if basis.ncols() + fresh.len() >= d {
            break;
        }
        let mut c: Vec<f64> = (0..d).map(|r| w[(r, j)]).collect();
        for attempt in 0..4 {
            let before = norm(&c);
            let mut after = before;
            for _ in 0..3 {
                let last = after;
                project_out(&mut c, basis, &fresh);
                after = norm(&c);
                if after > 0.5 * last {
                    break;
                }
            }
            // The column is kept when a meaningful part of it survived; else it lay in the basis (to rounding).
            if after > 1e-10 * before && after > 0.0 {
                c.iter_mut().for_each(|v| *v /= after);
                fresh.push(c);
                break;
            }
            if attempt == 3 {
                return Mat::from_fn(d, fresh.len(), |r, c| fresh[c][r]);
            }
            c = refill();
        }
    }
    Mat::from_fn(d, fresh.len(), |r, c| fresh[c][r])
}

/// Random replacement columns of one point: row `row`'s own draws, a new event each time.
pub(super) struct Refill {
    seed: u64,
    stream: u64,
    row: u64,
    event: u64,
    d: usize,
}

impl Refill {
    pub(super) fn next(&mut self) -> Vec<f64> {
        self.event += 1;
        let mut rng = row_rng(self.seed, self.stream, self.row, self.event);
        (0..self.d).map(|_| StandardNormal.sample(&mut rng)).collect()
    }
}

/// A locked triplet or eigenpair: value, two D-vectors (the second empty for eigenpairs), residuals.
#[derive(Clone)]
pub(super) struct Locked {
    pub(super) value: f64,
    pub(super) first: Vec<f64>,
    pub(super) second: Vec<f64>,
    pub(super) residual: f64,
    pub(super) transpose_residual: f64,
}

/// One point's Golub–Kahan–Lanczos state.
struct SvdState {
    v: Mat<f64>,
    av: Mat<f64>,
    u: Mat<f64>,
    atu: Mat<f64>,
    pending: Mat<f64>,
    fresh_u: Mat<f64>,
    locked: Vec<Locked>,
    products: usize,
    refill: Refill,
}

/// `basis` · `coef`[:, i] as a vector.
fn combine(basis: &Mat<f64>, coef: faer::MatRef<'_, f64>, i: usize) -> Vec<f64> {
    let (d, m) = (basis.nrows(), basis.ncols());
    let mut out = vec![0.0; d];
    for j in 0..m {
        let w = coef[(j, i)];
        if w != 0.0 {
            for (r, value) in out.iter_mut().enumerate() {
                *value += w * basis[(r, j)];
            }
        }
    }
    out
}

fn difference_norm(a: &[f64], scale: f64, b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - scale * y).powi(2)).sum::<f64>().sqrt()
}

/// Locked entries first, then the current ones, k in all, sorted by `key` descending.
pub(super) fn assemble(mut locked: Vec<Locked>, current: Vec<Locked>, key: impl Fn(f64) -> f64) -> Vec<Locked> {
    locked.extend(current);
    locked.sort_by(|a, b| key(b.value).total_cmp(&key(a.value)));
    locked
}

/// Each point's orthonormal starting block of b directions, drawn from (seed, `stream`, the point's global row),
/// with the refill that replaces directions lost to rank deficiency from the same stream.
pub(super) fn starting_blocks(
    settings: &KrylovSettings,
    first_row: usize,
    stream: u64,
    n: usize,
    d: usize,
    b: usize,
) -> Vec<(Mat<f64>, Refill)> {
    let start = normal_rows(settings.seed, stream, first_row, n, b * d);
    (0..n)
        .map(|p| {
            let mut refill = Refill { seed: settings.seed, stream, row: (first_row + p) as u64, event: 0, d };
            let omega = Mat::from_fn(d, b, |r, c| start[(p * b + c) * d + r] as f64);
            let pending = orthonormalize_against(&empty(d), &omega, &mut || refill.next());
            (pending, refill)
        })
        .collect()
}

/// The top-k singular triplets of every point's operator (see the module documentation); `first_row` is the
/// global row of the operator's first point (0 for a whole run), which keys its points' draws.
pub fn block_krylov_svd(
    op: &mut dyn BatchOperator,
    settings: KrylovSettings,
    first_row: usize,
) -> Result<Vec<Triplets>> {
    let (d, n) = (op.dim(), op.points());
    settings.check(d)?;
    let k = settings.k;
    let (b, capacity) = settings.sizes(d);
    let last = settings.last_iteration(b);
    let mut states: Vec<SvdState> = starting_blocks(&settings, first_row, stream::LOWRANK_DIRECTIONS, n, d, b)
        .into_iter()
        .map(|(pending, refill)| SvdState {
            v: empty(d),
            av: empty(d),
            u: empty(d),
            atu: empty(d),
            pending,
            fresh_u: empty(d),
            locked: Vec::new(),
            products: 0,
            refill,
        })
        .collect();
    let mut results: Vec<Option<Triplets>> = vec![None; n];
    for iteration in 1..=last {
        let active: Vec<usize> = (0..n).filter(|&p| results[p].is_none()).collect();
        if active.is_empty() {
            break;
        }
        // A P for every active point.
        let rows = active.iter().map(|&p| states[p].pending.ncols()).max().unwrap_or(0).max(1);
        let images = op.apply(&active, &stack(active.iter().map(|&p| &states[p].pending), rows, d), rows)?;
        for (slot, &p) in active.iter().enumerate() {
            let st = &mut states[p];
            let cols = st.pending.ncols();
            let image = block_columns(&images, slot, rows, cols, d);
            st.products += cols;
            st.v = append(&st.v, &st.pending);
            st.av = append(&st.av, &image);
            let refill = &mut st.refill;
            st.fresh_u = orthonormalize_against(&st.u, &image, &mut || refill.next());
            // U keeps as many columns as V (its new block may only fall short when U already spans R^D).
            if st.fresh_u.ncols() < cols {
                return Err(Error::Device(format!(
                    "block Krylov: the left basis of row {} could not be extended",
                    first_row + p
                )));
            }
        }
        // Aᵀ U_new, and the next pending block.
        let images = op.apply_transpose(&active, &stack(active.iter().map(|&p| &states[p].fresh_u), rows, d), rows)?;
        for (slot, &p) in active.iter().enumerate() {
            let st = &mut states[p];
            let cols = st.fresh_u.ncols();
            let image = block_columns(&images, slot, rows, cols, d);
            st.products += cols;
            st.u = append(&st.u, &st.fresh_u);
            st.atu = append(&st.atu, &image);
            let room = d - st.v.ncols();
            let refill = &mut st.refill;
            st.pending = if room == 0 {
                empty(d)
            } else {
                orthonormalize_against(&st.v, &leading(&image, cols.min(room).min(b)), &mut || refill.next())
            };
        }
        // Rayleigh–Ritz, locking, restarts.
        for &p in &active {
            let st = &mut states[p];
            let m = st.v.ncols();
            if m < k {
                continue;
            }
            let projected = st.u.transpose() * &st.av;
            let svd = projected.thin_svd().map_err(|e| Error::Device(format!("SVD did not converge: {e:?}")))?;
            let (x, y, s) = (svd.U(), svd.V(), svd.S().column_vector());
            let s1 = s[0].max(f64::MIN_POSITIVE);
            let triplet = |i: usize| -> Locked {
                let (u, v) = (combine(&st.u, x, i), combine(&st.v, y, i));
                let residual = difference_norm(&combine(&st.av, y, i), s[i], &u) / s1;
                let transpose_residual = difference_norm(&combine(&st.atu, x, i), s[i], &v) / s1;
                Locked { value: s[i], first: u, second: v, residual, transpose_residual }
            };
            let passes = |t: &Locked| t.residual <= settings.tolerance && t.transpose_residual <= settings.tolerance;
            let candidates: Vec<Locked> = (st.locked.len()..k).map(triplet).collect();
            let mut current: Vec<Locked> = Vec::new();
            for t in candidates {
                if current.is_empty() && passes(&t) {
                    st.locked.push(t);
                } else {
                    current.push(t);
                }
            }
            let exhausted = st.pending.ncols() == 0;
            if current.is_empty() || iteration == last || exhausted {
                let converged = current.iter().all(passes);
                let all = assemble(st.locked.clone(), current, |v| v);
                results[p] = Some(Triplets {
                    singular_values: all.iter().map(|t| t.value).collect(),
                    left: all.iter().flat_map(|t| t.first.iter().copied()).collect(),
                    right: all.iter().flat_map(|t| t.second.iter().copied()).collect(),
                    residuals: all.iter().map(|t| t.residual).collect(),
                    transpose_residuals: all.iter().map(|t| t.transpose_residual).collect(),
                    converged,
                    iterations: iteration,
                    products: st.products,
                });
                continue;
            }
            if m + st.pending.ncols() > capacity {
                // Thick restart on the top k + b Ritz vectors; the pending block is orthogonal to them already.
                let keep = (k + b).min(m);
                let (xk, yk) = (x.subcols(0, keep), y.subcols(0, keep));
                st.v = &st.v * yk;
                st.av = &st.av * yk;
                st.u = &st.u * xk;
                st.atu = &st.atu * xk;
            }
        }
    }
    results.into_iter().map(|r| r.ok_or_else(|| Error::Device("block Krylov: no iteration ran".into()))).collect()
}

/// One point's block Lanczos state on S = (A + Aᵀ)/2.
struct SymmetricState {
    x: Mat<f64>,
    sx: Mat<f64>,
    pending: Mat<f64>,
    locked: Vec<Locked>,
    products: usize,
    refill: Refill,
}

/// The k eigenpairs of every point's symmetric part (A + Aᵀ)/2 largest in |λ| (see the module documentation);
/// `first_row` as for [`block_krylov_svd`].
pub fn block_lanczos_symmetric_part(
    op: &mut dyn BatchOperator,
    settings: KrylovSettings,
    first_row: usize,
) -> Result<Vec<Eigenpairs>> {
    let (d, n) = (op.dim(), op.points());
    settings.check(d)?;
    let k = settings.k;
    let (b, capacity) = settings.sizes(d);
    let last = settings.last_iteration(b);
    let mut states: Vec<SymmetricState> = starting_blocks(&settings, first_row, stream::SYMMETRIC_DIRECTIONS, n, d, b)
        .into_iter()
        .map(|(pending, refill)| SymmetricState {
            x: empty(d),
            sx: empty(d),
            pending,
            locked: Vec::new(),
            products: 0,
            refill,
        })
        .collect();
    let mut results: Vec<Option<Eigenpairs>> = vec![None; n];
    for iteration in 1..=last {
        let active: Vec<usize> = (0..n).filter(|&p| results[p].is_none()).collect();
        if active.is_empty() {
            break;
        }
        let rows = active.iter().map(|&p| states[p].pending.ncols()).max().unwrap_or(0).max(1);
        let block = stack(active.iter().map(|&p| &states[p].pending), rows, d);
        let forward = op.apply(&active, &block, rows)?;
        let backward = op.apply_transpose(&active, &block, rows)?;
        let images: Vec<f64> = forward.iter().zip(&backward).map(|(a, c)| 0.5 * (a + c)).collect();
        for (slot, &p) in active.iter().enumerate() {
            let st = &mut states[p];
            let cols = st.pending.ncols();
            let image = block_columns(&images, slot, rows, cols, d);
            st.products += 2 * cols;
            st.x = append(&st.x, &st.pending);
            st.sx = append(&st.sx, &image);
            let room = d - st.x.ncols();
            let refill = &mut st.refill;
            st.pending = if room == 0 {
                empty(d)
            } else {
                orthonormalize_against(&st.x, &leading(&image, cols.min(room).min(b)), &mut || refill.next())
            };
            let m = st.x.ncols();
            if m < k {
                continue;
            }
            // Rayleigh–Ritz on T = Xᵀ S X (symmetrised: the products carry f32 rounding).
            let t = st.x.transpose() * &st.sx;
            let sym = Mat::<f64>::from_fn(m, m, |i, j| 0.5 * (t[(i, j)] + t[(j, i)]));
            let eig = sym.self_adjoint_eigen(Side::Lower).map_err(|e| Error::Device(format!("eigensolver: {e:?}")))?;
            let (w, lambda) = (eig.U(), eig.S().column_vector());
            let mut order: Vec<usize> = (0..m).collect();
            order.sort_by(|&a, &c| lambda[c].abs().total_cmp(&lambda[a].abs()));
            let scale = lambda[order[0]].abs().max(f64::MIN_POSITIVE);
            let pair = |i: usize| -> Locked {
                let j = order[i];
                let vector = combine(&st.x, w, j);
                let residual = difference_norm(&combine(&st.sx, w, j), lambda[j], &vector) / scale;
                Locked { value: lambda[j], first: vector, second: Vec::new(), residual, transpose_residual: 0.0 }
            };
            let passes = |e: &Locked| e.residual <= settings.tolerance;
            let candidates: Vec<Locked> = (st.locked.len()..k).map(pair).collect();
            let mut current: Vec<Locked> = Vec::new();
            for e in candidates {
                if current.is_empty() && passes(&e) {
                    st.locked.push(e);
                } else {
                    current.push(e);
                }
            }
            if current.is_empty() || iteration == last || st.pending.ncols() == 0 {
                let converged = current.iter().all(passes);
                let all = assemble(st.locked.clone(), current, f64::abs);
                results[p] = Some(Eigenpairs {
                    values: all.iter().map(|e| e.value).collect(),
                    vectors: all.iter().flat_map(|e| e.first.iter().copied()).collect(),
                    residuals: all.iter().map(|e| e.residual).collect(),
                    converged,
                    iterations: iteration,
                    products: st.products,
                });
                continue;
            }
            if m + st.pending.ncols() > capacity {
                let keep = (k + b).min(m);
                let kept = Mat::<f64>::from_fn(m, keep, |r, c| w[(r, order[c])]);
                st.x = &st.x * &kept;
                st.sx = &st.sx * &kept;
            }
        }
    }
    results.into_iter().map(|r| r.ok_or_else(|| Error::Device("block Lanczos: no iteration ran".into()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthonormalize_against_replaces_a_column_inside_the_basis() {
        let d = 5;
        let basis = Mat::<f64>::from_fn(d, 2, |r, c| if r == c { 1.0 } else { 0.0 });
        // The first column lies in the basis, the second does not.
        let w = Mat::<f64>::from_fn(d, 2, |r, c| if c == 0 { [2.0, -1.0, 0.0, 0.0, 0.0][r] } else { 1.0 });
        let mut refill = Refill { seed: 1, stream: 9, row: 0, event: 0, d };
        let q = orthonormalize_against(&basis, &w, &mut || refill.next());
        assert_eq!(q.ncols(), 2);
        let all = append(&basis, &q);
        let gram = all.transpose() * &all;
        for i in 0..4 {
            for j in 0..4 {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((gram[(i, j)] - want).abs() < 1e-14, "gram[{i},{j}] = {}", gram[(i, j)]);
            }
        }
        assert_eq!(refill.event, 1, "one replacement column drawn");
    }
}
