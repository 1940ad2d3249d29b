//! Matrix-free top-k singular triplets of the score Jacobian: block subspace iteration and randomized SVD
//! (Halko, Martinsson & Tropp, SIAM Review 2011) on the exact J·V and Jᵀ·U products, never forming J.
//!
//! For a block of P directions per point: Y = J Ω; repeat { Q = qr(Y); Y = J qr(Jᵀ Q) } until the top-k
//! triplets' residuals ‖J vᵢ − sᵢ uᵢ‖ / s₁ fall below the tolerance; then Bᵀ = Jᵀ Q, B = Ũ Σ Wᵀ (small, f64),
//! U = Q Ũ, V = W. Randomized SVD starts from k + oversampling Gaussian directions; subspace iteration from k.
//! The products run on the GPU for all points at once; the thin QRs and small SVDs run in f64 on the host.

use std::ops::Range;

use faer::Mat;

use crate::derivative::blocks::{self, BlockOperator, ResidentJacobians};
use crate::derivative::{self, JvpMethod};
use crate::draws::{normal_rows, rademacher_rows, stream};
use crate::error::{Error, Result};
use crate::field::ScoreField;
use crate::scheduler::JobOptions;
use crate::solver::block_krylov::{
    block_krylov_svd, block_lanczos_symmetric_part, Eigenpairs, KrylovSettings, Triplets,
};
use crate::solver::operator::BatchOperator;
use crate::solver::resident_krylov::{block_krylov_svd_resident, resident_fits};

#[derive(Debug, Clone, Copy)]
pub struct LowRankSettings {
    pub k: usize,
    /// Extra random directions beyond k (0 for plain subspace iteration).
    pub oversampling: usize,
    /// Stop when every kept triplet's residual ‖J vᵢ − sᵢ uᵢ‖ / s₁ is below this.
    pub tolerance: f64,
    pub max_iterations: usize,
    pub seed: u64,
}

/// The top-k singular triplets of one point's Jacobian.
#[derive(Debug, Clone)]
pub struct LowRank {
    pub singular_values: Vec<f64>,
    /// [k, D], row i = uᵢ.
    pub left: Vec<f64>,
    /// [k, D], row i = vᵢ.
    pub right: Vec<f64>,
    pub residuals: Vec<f64>,
    pub iterations: usize,
    /// Every residual passed the tolerance (false: the point stopped at the iteration cap short of it).
    pub converged: bool,
    /// Rows multiplied by J or Jᵀ for this point.
    pub products: usize,
}

/// Orthonormalises the P rows of each point's [P, D] block (thin QR in f64; positive diagonal of R).
fn orthonormalize(blocks: &[f32], points: usize, p: usize, d: usize) -> Result<Vec<f32>> {
    let wide: Vec<f64> = blocks.iter().map(|&v| v as f64).collect();
    let (q, _) = super::qr::qr_rows(&wide, points, p, d);
    Ok(q.into_iter().map(|v| v as f32).collect())
}

/// The sizes of a matrix-free run: D, the points, K kept and P = K + oversampling directions per point.
struct BlockSizes {
    d: usize,
    points: usize,
    k: usize,
    p: usize,
}

impl BlockSizes {
    fn of(field: &ScoreField, x: &[f32], settings: LowRankSettings) -> Result<Self> {
        let d = field.dim();
        let k = settings.k;
        if k == 0 || k > d {
            return Err(Error::InvalidArgument(format!("k {k} must be between 1 and D = {d}")));
        }
        if !derivative::has_exact_vjp(field) {
            return Err(Error::InvalidArgument("matrix-free spectra need exact J·v and Jᵀ·u products".into()));
        }
        Ok(BlockSizes { d, points: x.len() / d, k, p: (k + settings.oversampling).min(d) })
    }
}

/// Top-k singular triplets of J(x_b, t_b) for every point, matrix-free. Networks run resident on the GPU
/// ([`resident_triplets`]): blocks stay on the device, the host sees only P×P factors and residual norms. Each
/// point's result is taken at the first iteration where its residuals pass, so it does not depend on the batch.
///
/// `first_row` is the index of x's first point in the whole run (0 for a whole run): starting directions are drawn
/// per point from (seed, first_row + the point's index), so a point's triplets do not depend on its batch, shard
/// or chunk.
pub fn top_singular_triplets(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    first_row: usize,
    settings: LowRankSettings,
    options: JobOptions,
) -> Result<Vec<LowRank>> {
    match resident_in_chunks(field, x, t, first_row, settings, options, resident_triplets)? {
        Some(out) => Ok(out),
        None => host_triplets(field, x, t, first_row, settings, options),
    }
}

/// Runs a resident method over chunks of points that fit the budget (each chunk's rows keep their index in the
/// whole run); `None` where the field has no resident path or one point's blocks do not fit.
fn resident_in_chunks<T>(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    first_row: usize,
    settings: LowRankSettings,
    options: JobOptions,
    method: impl Fn(&ScoreField, &[f32], &[f32], usize, LowRankSettings) -> Result<Vec<T>>,
) -> Result<Option<Vec<T>>> {
    let BlockSizes { d, points, p, .. } = BlockSizes::of(field, x, settings)?;
    if !blocks::supports(field) {
        return Ok(None);
    }
    let Some(chunks) = blocks::point_chunks(field, points, p, options)? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(points);
    for chunk in chunks {
        let tc: Vec<f32> = if t.len() == 1 { t.to_vec() } else { t[chunk.clone()].to_vec() };
        out.extend(method(field, &x[chunk.start * d..chunk.end * d], &tc, first_row + chunk.start, settings)?);
    }
    Ok(Some(out))
}

/// Rows multiplied per point by `iterations` of subspace iteration / randomized SVD with P directions: the first
/// Y = J Ω (P), then per iteration Jᵀ Q (P) and the residuals' J V (K), and between iterations Y = J Q₂ (P).
fn power_products(iterations: usize, p: usize, k: usize) -> usize {
    p + iterations * (p + k) + (iterations - 1) * p
}

/// P starting directions per point, [points, P, D], drawn per point (see [`top_singular_triplets`]).
fn starting_directions(settings: LowRankSettings, first_row: usize, points: usize, p: usize, d: usize) -> Vec<f32> {
    normal_rows(settings.seed, stream::LOWRANK_DIRECTIONS, first_row, points, p * d)
}

/// Randomized SVD / subspace iteration with every block on the GPU. Per iteration: Q = qr(Y); Bᵀ = Jᵀ Q;
/// Bᵀ = Rᵀ Q₂ (GPU QR); R ᵀ = Ũ Σ Ṽᵀ on the host (P×P, f64); U = Ũᵀ Q, V = Ṽᵀ Q₂; residuals ‖J vᵢ − σᵢ uᵢ‖ on
/// the GPU; next Y = J Q₂ (Q₂ = qr(Jᵀ Q), as the host path's power step).
pub fn resident_triplets(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    first_row: usize,
    settings: LowRankSettings,
) -> Result<Vec<LowRank>> {
    let BlockSizes { d, points, k, p } = BlockSizes::of(field, x, settings)?;
    let op = BlockOperator::new(field, x, t, p)?;
    let mut start = op.upload(&starting_directions(settings, first_row, points, p, d), p)?;
    op.orthonormalize(&mut start)?;
    let mut y = op.jvp(&start)?;
    let mut found: Vec<Option<LowRank>> = vec![None; points];
    let last = settings.max_iterations.max(1);
    for iteration in 1..=last {
        op.orthonormalize(&mut y)?;
        let mut bt = op.vjp(&y)?;
        let r = op.orthonormalize(&mut bt)?;
        let (mut coef_u, mut coef_v) = (Vec::with_capacity(points * k * p), Vec::with_capacity(points * k * p));
        let mut singular = Vec::with_capacity(points * k);
        for b in 0..points {
            // Rows of Bᵀ are Rᵀ Q₂: B's singular values are those of Rᵀ.
            let rt = Mat::<f64>::from_fn(p, p, |i, j| r[b * p * p + j * p + i]);
            let svd = rt.thin_svd().map_err(|e| Error::Device(format!("SVD did not converge: {e:?}")))?;
            let (ut, w, s) = (svd.U(), svd.V(), svd.S().column_vector());
            for i in 0..k {
                singular.push(s[i]);
                coef_u.extend((0..p).map(|c| ut[(c, i)] as f32));
                coef_v.extend((0..p).map(|c| w[(c, i)] as f32));
            }
        }
        let u = op.combine(&coef_u, k, &y)?;
        let v = op.combine(&coef_v, k, &bt)?;
        let jv = op.jvp(&v)?;
        let scale: Vec<f32> = singular.iter().map(|&s| s as f32).collect();
        let norms = op.residual_norms(&jv, &u, &scale)?;
        let open: Vec<usize> = (0..points).filter(|&b| found[b].is_none()).collect();
        let passed = |b: usize| {
            let s1 = singular[b * k].max(f64::MIN_POSITIVE);
            norms[b * k..(b + 1) * k].iter().all(|&r| r / s1 <= settings.tolerance)
        };
        let take: Vec<usize> = open.iter().copied().filter(|&b| iteration == last || passed(b)).collect();
        if !take.is_empty() {
            let (left, right) = (op.download(&u)?, op.download(&v)?);
            for &b in &take {
                let s1 = singular[b * k].max(f64::MIN_POSITIVE);
                let rows = |block: &[f32]| block[b * k * d..(b + 1) * k * d].iter().map(|&v| v as f64).collect();
                let residuals: Vec<f64> = norms[b * k..(b + 1) * k].iter().map(|r| r / s1).collect();
                found[b] = Some(LowRank {
                    singular_values: singular[b * k..(b + 1) * k].to_vec(),
                    left: rows(&left),
                    right: rows(&right),
                    converged: residuals.iter().all(|&r| r <= settings.tolerance),
                    residuals,
                    iterations: iteration,
                    products: power_products(iteration, p, k),
                });
            }
        }
        if found.iter().all(Option::is_some) {
            break;
        }
        y = op.jvp(&bt)?;
    }
    found.into_iter().map(|r| r.ok_or_else(|| Error::Device("no iteration ran".into()))).collect()
}

/// The host path (fields without a network linearisation, e.g. the smoothed data): products on the GPU, the thin
/// QRs and small SVDs in f64 on the host.
pub fn host_triplets(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    first_row: usize,
    settings: LowRankSettings,
    options: JobOptions,
) -> Result<Vec<LowRank>> {
    let BlockSizes { d, points, k, p } = BlockSizes::of(field, x, settings)?;
    let jvp = |v: &[f32]| derivative::jvp(field, x, t, v, JvpMethod::Exact, false, options);
    let vjp = |u: &[f32]| derivative::vjp(field, x, t, u, options);
    let omega = starting_directions(settings, first_row, points, p, d);
    let mut y = jvp(&orthonormalize(&omega, points, p, d)?)?;
    let mut results: Vec<Option<LowRank>> = vec![None; points];
    let mut done = vec![false; points];
    for iteration in 1..=settings.max_iterations.max(1) {
        let q = orthonormalize(&y, points, p, d)?;
        let bt = vjp(&q)?; // row i of each block: Jᵀ qᵢ, i.e. row i of B = Qᵀ J
                           // Small SVDs: B = Ũ Σ Wᵀ per point; U = Q Ũ, V = W.
        let mut candidates = Vec::with_capacity(points);
        let mut v_block = Vec::with_capacity(points * k * d);
        for b in 0..points {
            let bmat = Mat::<f64>::from_fn(p, d, |r, c| bt[(b * p + r) * d + c] as f64);
            let svd = bmat.thin_svd().map_err(|e| Error::Device(format!("SVD did not converge: {e:?}")))?;
            let (ut, w, s) = (svd.U(), svd.V(), svd.S().column_vector());
            let singular: Vec<f64> = (0..k).map(|i| s[i]).collect();
            let q = &q;
            let left: Vec<f64> = (0..k)
                .flat_map(|i| {
                    (0..d).map(move |r| (0..p).map(|c| q[(b * p + c) * d + r] as f64 * ut[(c, i)]).sum::<f64>())
                })
                .collect();
            let right: Vec<f64> = (0..k).flat_map(|i| (0..d).map(move |r| w[(r, i)])).collect();
            v_block.extend(right.iter().map(|&v| v as f32));
            candidates.push((singular, left, right));
        }
        // Residuals from one more J·V over the kept right vectors.
        let jv = jvp(&v_block)?;
        let mut converged = true;
        for (b, (singular, left, right)) in candidates.into_iter().enumerate() {
            // A point keeps the result of the iteration where it first passed (independent of its batch).
            if done[b] {
                continue;
            }
            let s1 = singular[0].max(f64::MIN_POSITIVE);
            let residuals: Vec<f64> = (0..k)
                .map(|i| {
                    (0..d)
                        .map(|r| (jv[(b * k + i) * d + r] as f64 - singular[i] * left[i * d + r]).powi(2))
                        .sum::<f64>()
                        .sqrt()
                        / s1
                })
                .collect();
            done[b] = residuals.iter().all(|&r| r <= settings.tolerance);
            converged &= done[b];
            results[b] = Some(LowRank {
                singular_values: singular,
                left,
                right,
                residuals,
                iterations: iteration,
                converged: done[b],
                products: power_products(iteration, p, k),
            });
        }
        if converged || iteration == settings.max_iterations {
            break;
        }
        // One power step: Y = J qr(Jᵀ Q).
        y = jvp(&orthonormalize(&bt, points, p, d)?)?;
    }
    results.into_iter().map(|r| r.ok_or_else(|| Error::Device("no iteration ran".into()))).collect()
}

/// Top-k eigenpairs by |eigenvalue| of the symmetric part (J + Jᵀ)/2, by block power iteration with Rayleigh–Ritz,
/// matrix-free. Returns per point the eigenvalues and [k, D] eigenvectors (with residuals, convergence, products).
/// Networks run resident on the GPU ([`resident_symmetric_eigenpairs`]), other fields on the host path.
pub fn symmetric_part_top_eigenpairs(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    first_row: usize,
    settings: LowRankSettings,
    options: JobOptions,
) -> Result<Vec<Eigenpairs>> {
    match resident_in_chunks(field, x, t, first_row, settings, options, resident_symmetric_eigenpairs)? {
        Some(out) => Ok(out),
        None => host_symmetric_eigenpairs(field, x, t, first_row, settings, options),
    }
}

/// Block power iteration on S = (J + Jᵀ)/2 with every block on the GPU: S X from one J·X and one Jᵀ·X, the
/// Rayleigh quotient T = Xᵀ S X (P×P) to the host for its f64 eigendecomposition, the Ritz vectors X W and S X W
/// and their residuals ‖S x − λ x‖ on the GPU; each point keeps the iteration where it first passed.
pub fn resident_symmetric_eigenpairs(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    first_row: usize,
    settings: LowRankSettings,
) -> Result<Vec<Eigenpairs>> {
    let BlockSizes { d, points, k, p } = BlockSizes::of(field, x, settings)?;
    let op = BlockOperator::new(field, x, t, p)?;
    let start = normal_rows(settings.seed, stream::SYMMETRIC_DIRECTIONS, first_row, points, p * d);
    let mut xq = op.upload(&start, p)?;
    op.orthonormalize(&mut xq)?;
    let mut found: Vec<Option<Eigenpairs>> = vec![None; points];
    let last = settings.max_iterations.max(1);
    for iteration in 1..=last {
        let sx = op.add(&[(0.5, &op.jvp(&xq)?), (0.5, &op.vjp(&xq)?)])?;
        let gram = op.gram(&xq, &sx)?;
        let (mut coef, mut values) = (Vec::with_capacity(points * k * p), Vec::with_capacity(points * k));
        for b in 0..points {
            let g = |i: usize, j: usize| gram[b * p * p + i * p + j];
            let sym = Mat::<f64>::from_fn(p, p, |i, j| 0.5 * (g(i, j) + g(j, i)));
            let eig =
                sym.self_adjoint_eigen(faer::Side::Lower).map_err(|e| Error::Device(format!("eigensolver: {e:?}")))?;
            let (w, lambda) = (eig.U(), eig.S().column_vector());
            let mut order: Vec<usize> = (0..p).collect();
            order.sort_by(|&a, &c| lambda[c].abs().total_cmp(&lambda[a].abs()));
            for &i in &order[..k] {
                values.push(lambda[i]);
                coef.extend((0..p).map(|c| w[(c, i)] as f32));
            }
        }
        let vectors = op.combine(&coef, k, &xq)?;
        let images = op.combine(&coef, k, &sx)?;
        let scale: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        let norms = op.residual_norms(&images, &vectors, &scale)?;
        let passed = |b: usize| {
            let largest = values[b * k].abs().max(f64::MIN_POSITIVE);
            norms[b * k..(b + 1) * k].iter().all(|&r| r / largest <= settings.tolerance)
        };
        let take: Vec<usize> =
            (0..points).filter(|&b| found[b].is_none() && (iteration == last || passed(b))).collect();
        if !take.is_empty() {
            let v = op.download(&vectors)?;
            for &b in &take {
                let rows = v[b * k * d..(b + 1) * k * d].iter().map(|&e| e as f64).collect();
                let largest = values[b * k].abs().max(f64::MIN_POSITIVE);
                found[b] = Some(Eigenpairs {
                    values: values[b * k..(b + 1) * k].to_vec(),
                    vectors: rows,
                    residuals: norms[b * k..(b + 1) * k].iter().map(|r| r / largest).collect(),
                    converged: passed(b),
                    iterations: iteration,
                    products: 2 * p * iteration,
                });
            }
        }
        if found.iter().all(Option::is_some) {
            break;
        }
        xq = sx;
        op.orthonormalize(&mut xq)?;
    }
    found.into_iter().map(|r| r.ok_or_else(|| Error::Device("no iteration ran".into()))).collect()
}

/// The host path of [`symmetric_part_top_eigenpairs`]: products on the GPU, Rayleigh–Ritz and QR in f64.
pub fn host_symmetric_eigenpairs(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    first_row: usize,
    settings: LowRankSettings,
    options: JobOptions,
) -> Result<Vec<Eigenpairs>> {
    let BlockSizes { d, points, k, p } = BlockSizes::of(field, x, settings)?;
    let apply = |v: &[f32]| -> Result<Vec<f32>> {
        let (a, b) = (
            derivative::jvp(field, x, t, v, JvpMethod::Exact, false, options)?,
            derivative::vjp(field, x, t, v, options)?,
        );
        Ok(a.iter().zip(&b).map(|(p, q)| 0.5 * (p + q)).collect())
    };
    let start = normal_rows(settings.seed, stream::SYMMETRIC_DIRECTIONS, first_row, points, p * d);
    let mut xq = orthonormalize(&start, points, p, d)?;
    let mut result: Vec<Option<Eigenpairs>> = vec![None; points];
    let mut done = vec![false; points];
    for iteration in 1..=settings.max_iterations.max(1) {
        let sx = apply(&xq)?;
        // Rayleigh–Ritz: T = Xᵀ S X, eigenvectors X W ordered by |λ|; residual ‖S xᵢ − λᵢ xᵢ‖ / |λ₁|. A point
        // keeps the iteration where it first passed (independent of its batch).
        let mut converged = true;
        for b in 0..points {
            if done[b] {
                continue;
            }
            let block = |buf: &[f32], r: usize, c: usize| buf[(b * p + c) * d + r] as f64;
            let tmat =
                Mat::<f64>::from_fn(p, p, |i, j| (0..d).map(|r| block(&xq, r, i) * block(&sx, r, j)).sum::<f64>());
            let sym = Mat::<f64>::from_fn(p, p, |i, j| 0.5 * (tmat[(i, j)] + tmat[(j, i)]));
            let eig =
                sym.self_adjoint_eigen(faer::Side::Lower).map_err(|e| Error::Device(format!("eigensolver: {e:?}")))?;
            let (w, lambda) = (eig.U(), eig.S().column_vector());
            let mut order: Vec<usize> = (0..p).collect();
            order.sort_by(|&a, &c| lambda[c].abs().total_cmp(&lambda[a].abs()));
            let values: Vec<f64> = order[..k].iter().map(|&i| lambda[i]).collect();
            let basis = &xq;
            let vectors: Vec<f64> = order[..k]
                .iter()
                .flat_map(|&i| (0..d).map(move |r| (0..p).map(|c| block(basis, r, c) * w[(c, i)]).sum::<f64>()))
                .collect();
            let scale = values[0].abs().max(f64::MIN_POSITIVE);
            let residuals: Vec<f64> = order[..k]
                .iter()
                .enumerate()
                .map(|(n, &i)| {
                    (0..d)
                        .map(|r| {
                            ((0..p).map(|c| block(&sx, r, c) * w[(c, i)]).sum::<f64>() - values[n] * vectors[n * d + r])
                                .powi(2)
                        })
                        .sum::<f64>()
                        .sqrt()
                        / scale
                })
                .collect();
            done[b] = residuals.iter().all(|&r| r <= settings.tolerance);
            converged &= done[b];
            result[b] = Some(Eigenpairs {
                values,
                vectors,
                residuals,
                converged: done[b],
                iterations: iteration,
                products: 2 * p * iteration,
            });
        }
        if converged || iteration == settings.max_iterations {
            break;
        }
        xq = orthonormalize(&sx, points, p, d)?;
    }
    result.into_iter().map(|r| r.ok_or_else(|| Error::Device("no iteration ran".into()))).collect()
}

/// ‖J − Jᵀ‖_F / ‖J + Jᵀ‖_F per point, estimated with `probes` Rademacher vectors z: E‖(J ∓ Jᵀ)z‖² = ‖J ∓ Jᵀ‖²_F.
/// The probes of point b are drawn per row from (seed, first_row + b).
pub fn nonconservativeness_by_probes(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    probes: usize,
    seed: u64,
    first_row: usize,
    options: JobOptions,
) -> Result<Vec<f64>> {
    let d = field.dim();
    let points = x.len() / d;
    let z = rademacher_rows(seed, stream::PROBES, first_row, points, probes * d);
    let jz = derivative::jvp(field, x, t, &z, JvpMethod::Exact, false, options)?;
    let jtz = derivative::vjp(field, x, t, &z, options)?;
    Ok((0..points)
        .map(|b| {
            let range = b * probes * d..(b + 1) * probes * d;
            let (mut minus, mut plus) = (0.0, 0.0);
            for (a, c) in jz[range.clone()].iter().zip(&jtz[range]) {
                minus += (*a as f64 - *c as f64).powi(2);
                plus += (*a as f64 + *c as f64).powi(2);
            }
            if plus > 0.0 {
                (minus / plus).sqrt()
            } else {
                0.0
            }
        })
        .collect())
}

/// The score Jacobians of a batch of points as a [`BatchOperator`] for the solvers: products on the GPU, blocks
/// in f64 on the host. Networks linearise once per set of active points ([`BlockOperator`]: J·V and Jᵀ·U without
/// redoing the forward pass); other fields take [`derivative::jvp`] / [`derivative::vjp`] on the active rows.
pub struct JacobianBatch<'f> {
    field: &'f ScoreField,
    x: &'f [f32],
    t: &'f [f32],
    rows_per_point: usize,
    options: JobOptions<'f>,
    /// The networks' per-active-set linearisation, where the chunk of points is linearised once.
    resident: Option<ResidentJacobians<'f>>,
}

impl<'f> JacobianBatch<'f> {
    /// `rows_per_point`: the most rows per point one product will carry (the solver's block).
    pub fn new(
        field: &'f ScoreField,
        x: &'f [f32],
        t: &'f [f32],
        rows_per_point: usize,
        options: JobOptions<'f>,
    ) -> Result<Self> {
        if !derivative::has_exact_vjp(field) {
            return Err(Error::InvalidArgument("matrix-free spectra need exact J·v and Jᵀ·u products".into()));
        }
        let points = x.len() / field.dim();
        let resident = if blocks::supports(field)
            && blocks::point_chunks(field, points, rows_per_point, options)?.is_some_and(|c| c.len() == 1)
        {
            Some(ResidentJacobians::new(field, x, t, rows_per_point)?)
        } else {
            None
        };
        Ok(JacobianBatch { field, x, t, rows_per_point, options, resident })
    }

    fn product(&mut self, active: &[usize], block: &[f64], rows: usize, transpose: bool) -> Result<Vec<f64>> {
        let narrow: Vec<f32> = block.iter().map(|&v| v as f32).collect();
        let fits = rows <= self.rows_per_point;
        let out = if let Some(resident) = self.resident.as_mut().filter(|_| fits) {
            let op = resident.linearized_for(active)?;
            let input = op.upload(&narrow, rows)?;
            op.download(&if transpose { op.vjp(&input)? } else { op.jvp(&input)? })?
        } else {
            let (x, t) = blocks::rows_of(self.x, self.t, self.field.dim(), active);
            if transpose {
                derivative::vjp(self.field, &x, &t, &narrow, self.options)?
            } else {
                derivative::jvp(self.field, &x, &t, &narrow, JvpMethod::Exact, false, self.options)?
            }
        };
        Ok(out.into_iter().map(f64::from).collect())
    }
}

impl BatchOperator for JacobianBatch<'_> {
    fn dim(&self) -> usize {
        self.field.dim()
    }
    fn points(&self) -> usize {
        self.x.len() / self.field.dim()
    }
    fn apply(&mut self, active: &[usize], block: &[f64], rows: usize) -> Result<Vec<f64>> {
        self.product(active, block, rows, false)
    }
    fn apply_transpose(&mut self, active: &[usize], block: &[f64], rows: usize) -> Result<Vec<f64>> {
        self.product(active, block, rows, true)
    }
}

/// The Krylov settings of a matrix-free run: k, tolerance, cap and seed from `settings`, the default block and
/// basis for k.
pub fn krylov_settings(settings: LowRankSettings) -> KrylovSettings {
    KrylovSettings::new(settings.k, settings.tolerance, settings.max_iterations, settings.seed)
}

/// Chunks of points for a Krylov run: those whose blocks of `rows` fit the budget together (networks), else
/// all points at once (the host path chunks its own products).
pub(super) fn krylov_chunks(
    field: &ScoreField,
    points: usize,
    rows: usize,
    options: JobOptions,
) -> Result<Vec<Range<usize>>> {
    if blocks::supports(field) {
        if let Some(chunks) = blocks::point_chunks(field, points, rows, options)? {
            return Ok(chunks);
        }
    }
    Ok(vec![0..points])
}

/// The points `range` of a batch of D-long rows `x` and their times (`t` one time for all points or one per point).
pub(super) fn point_range<'a>(x: &'a [f32], t: &'a [f32], d: usize, range: &Range<usize>) -> (&'a [f32], &'a [f32]) {
    (&x[range.start * d..range.end * d], if t.len() == 1 { t } else { &t[range.clone()] })
}

/// Runs a solver over [`krylov_chunks`], each chunk's rows keeping their global index.
fn krylov_in_chunks<T>(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    first_row: usize,
    settings: KrylovSettings,
    options: JobOptions,
    solve: impl Fn(&mut dyn BatchOperator, KrylovSettings, usize) -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    let d = field.dim();
    if settings.k == 0 || settings.k > d {
        return Err(Error::InvalidArgument(format!("k = {} must be between 1 and D = {d}", settings.k)));
    }
    let points = x.len() / d;
    let rows = settings.block.min(d);
    let mut out = Vec::with_capacity(points);
    for chunk in krylov_chunks(field, points, rows, options)? {
        let (xc, tc) = point_range(x, t, d, &chunk);
        let mut op = JacobianBatch::new(field, xc, tc, rows, options)?;
        out.extend(solve(&mut op, settings, first_row + chunk.start)?);
    }
    Ok(out)
}

/// Top-k singular triplets of J(x_b, t_b) for every point by block Golub–Kahan–Lanczos on the exact products:
/// with the bases resident on the GPU ([`block_krylov_svd_resident`]) where that applies, else on the host
/// ([`block_krylov_svd`]).
pub fn krylov_triplets(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    first_row: usize,
    settings: KrylovSettings,
    options: JobOptions,
) -> Result<Vec<Triplets>> {
    if let Some(out) = resident_krylov_triplets(field, x, t, first_row, settings, options)? {
        return Ok(out);
    }
    krylov_in_chunks(field, x, t, first_row, settings, options, block_krylov_svd)
}

/// Bytes of a resident run's device bases per point: [U; AV] and [V; AᵀU], `capacity` rows each half, plus the
/// pending block and the scratch blocks of one step (generously: four blocks of b rows).
fn resident_bytes_per_point(settings: &KrylovSettings, d: usize) -> u64 {
    let (b, capacity) = settings.sizes(d);
    ((4 * capacity + 4 * b + 2 * settings.k) * d * 4) as u64
}

/// The resident block Krylov path ([`block_krylov_svd_resident`]: the bases on the GPU, only the projected
/// problem on the host) where it applies and pays: networks whose chunk of points is linearised once, D ≥ the
/// basis + 2 blocks, on a hardware GPU. On a software driver (lavapipe) a block's round trip to the host costs
/// about 2 ms against 0.5 s for its product, and the host path was the faster (docs/BENCHMARKS.md, "Block
/// Krylov spectra"), so it runs there. Chunks are split further so the bases take at most a quarter of the
/// memory budget. `None` where the host path runs.
fn resident_krylov_triplets(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    first_row: usize,
    settings: KrylovSettings,
    options: JobOptions,
) -> Result<Option<Vec<Triplets>>> {
    let d = field.dim();
    if settings.k == 0 || settings.k > d || settings.block == 0 || !blocks::supports(field) {
        return Ok(None);
    }
    if !resident_fits(&settings, d) || field.ctx().caps.is_cpu() {
        return Ok(None);
    }
    let points = x.len() / d;
    let rows = settings.block.min(d);
    let Some(chunks) = blocks::point_chunks(field, points, rows, options)? else {
        return Ok(None);
    };
    let per_chunk = ((options.memory_budget / 4) / resident_bytes_per_point(&settings, d)).max(1) as usize;
    let mut out = Vec::with_capacity(points);
    for chunk in chunks {
        for start in chunk.clone().step_by(per_chunk) {
            let part = start..(start + per_chunk).min(chunk.end);
            let (xc, tc) = point_range(x, t, d, &part);
            let mut op = ResidentJacobians::new(field, xc, tc, rows)?;
            out.extend(block_krylov_svd_resident(field.ctx(), &mut op, settings, first_row + part.start)?);
        }
    }
    Ok(Some(out))
}

/// Top-k eigenpairs by |λ| of (J + Jᵀ)/2 for every point by block Lanczos ([`block_lanczos_symmetric_part`]).
pub fn krylov_symmetric_eigenpairs(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    first_row: usize,
    settings: KrylovSettings,
    options: JobOptions,
) -> Result<Vec<Eigenpairs>> {
    krylov_in_chunks(field, x, t, first_row, settings, options, block_lanczos_symmetric_part)
}
