//! Analyses of a score field's local geometry, built on the derivative operators.

pub mod descriptors;
pub mod lowrank;
pub mod lyapunov;
pub mod qr;
pub mod ridge;
pub mod route;
pub mod spectrum;

use std::ops::Range;

pub use descriptors::{
    descriptors, descriptors_with, DescribedMap, DescriptorMethod, DescriptorSettings, Directions, PointDescriptors,
    SingularValueSolver,
};
pub use route::{choose_route, RouteChoice, RouteCost, RouteInputs, SpectrumRoute};
pub use spectrum::{dense_spectrum, PointSpectrum, SpectrumSettings};

use crate::derivative::{self, has_exact_jvp, JacobianMethod};
use crate::error::Result;
use crate::field::{validate_batch, ScoreField};
use crate::scheduler::JobOptions;

/// Spectra of the Jacobians at every point (dense path), handed to `sink` in point order as chunks finish.
pub fn spectra(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    settings: SpectrumSettings,
    options: JobOptions,
    mut sink: impl FnMut(usize, PointSpectrum) -> Result<()>,
) -> Result<()> {
    let d = field.dim();
    validate_batch(x, d, t, "X", "T")?;
    let schedule = field.schedule();
    let method = if has_exact_jvp(field) { JacobianMethod::Forward } else { JacobianMethod::Fd };
    derivative::jacobian(field, x, t, method, options, |points: Range<usize>, values| {
        for (local, p) in points.enumerate() {
            let tp = if t.len() == 1 { t[0] } else { t[p] };
            let spectrum =
                dense_spectrum(&values[local * d * d..(local + 1) * d * d], d, schedule.std(tp as f64), settings)?;
            sink(p, spectrum)?;
        }
        Ok(())
    })
}

/// The matrix-free solvers of [`matrix_free_spectra`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatrixFreeSolver {
    /// Subspace iteration / randomized SVD ([`lowrank::top_singular_triplets`]; oversampling 0 is plain subspace
    /// iteration) and block power iteration for the symmetric part.
    Power,
    /// Block Golub–Kahan–Lanczos and block Lanczos with thick restarts ([`crate::solver::block_krylov`]).
    Krylov,
}

/// Spectra of every point from the matrix-free top-k triplets (`lowrank`) by subspace iteration / randomized SVD:
/// [`matrix_free_spectra`] with [`MatrixFreeSolver::Power`].
#[allow(clippy::too_many_arguments)]
pub fn lowrank_spectra(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    first_row: usize,
    settings: lowrank::LowRankSettings,
    threshold_c: f64,
    probes: usize,
    options: JobOptions,
) -> Result<Vec<PointSpectrum>> {
    matrix_free_spectra(field, x, t, first_row, MatrixFreeSolver::Power, settings, threshold_c, probes, options)
}

/// Spectra of every point from the matrix-free top-k triplets and the symmetric part's top-k eigenpairs: the
/// same outputs as the dense path, with the local-dimension threshold rule counted over the K kept values (exact
/// when s_K is already below the threshold) and the non-conservativeness estimated with `probes` Rademacher
/// probes. A point is `converged` when both its triplets and its eigenpairs reached the tolerance. `first_row` is
/// the index of x's first point in the whole run (0 for a whole run): starting blocks and probes are drawn per
/// point from (seed, its global row), so a point's spectrum does not depend on its batch, shard or device.
#[allow(clippy::too_many_arguments)]
pub fn matrix_free_spectra(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    first_row: usize,
    solver: MatrixFreeSolver,
    settings: lowrank::LowRankSettings,
    threshold_c: f64,
    probes: usize,
    options: JobOptions,
) -> Result<Vec<PointSpectrum>> {
    let d = field.dim();
    validate_batch(x, d, t, "X", "T")?;
    let k = settings.k;
    let (triplets, eigen) = match solver {
        MatrixFreeSolver::Power => {
            let triplets = lowrank::top_singular_triplets(field, x, t, first_row, settings, options)?
                .into_iter()
                .map(|r| crate::solver::block_krylov::Triplets {
                    singular_values: r.singular_values,
                    left: r.left,
                    right: r.right,
                    residuals: r.residuals,
                    transpose_residuals: Vec::new(),
                    converged: r.converged,
                    iterations: r.iterations,
                    products: r.products,
                })
                .collect::<Vec<_>>();
            (triplets, lowrank::symmetric_part_top_eigenpairs(field, x, t, first_row, settings, options)?)
        }
        MatrixFreeSolver::Krylov => {
            let krylov = lowrank::krylov_settings(settings);
            (
                lowrank::krylov_triplets(field, x, t, first_row, krylov, options)?,
                lowrank::krylov_symmetric_eigenpairs(field, x, t, first_row, krylov, options)?,
            )
        }
    };
    let nonconservativeness =
        lowrank::nonconservativeness_by_probes(field, x, t, probes, settings.seed, first_row, options)?;
    let schedule = field.schedule();
    Ok(triplets
        .into_iter()
        .zip(eigen)
        .enumerate()
        .map(|(p, (tri, eig))| {
            let tp = if t.len() == 1 { t[0] } else { t[p] };
            let variance = schedule.std(tp as f64).powi(2);
            let s = &tri.singular_values;
            let above = s.iter().filter(|&&si| si > 0.0 && 1.0 / si <= threshold_c * variance).count();

            let alignment = (0..k).map(|i| (0..d).map(|r| tri.left[i * d + r] * tri.right[i * d + r]).sum()).collect();
            let vectors = &eig.vectors;
            let overlap =
                spectrum::overlap_curve(k, |a, b| (0..d).map(|r| tri.right[a * d + r] * vectors[b * d + r]).sum());
            PointSpectrum {
                singular_values: tri.singular_values.clone(),
                residuals: tri.residuals,
                transpose_residuals: tri.transpose_residuals,
                converged: tri.converged && eig.converged,
                products: tri.products + eig.products + 2 * probes,
                alignment,
                overlap,
                local_dimension_threshold: d - above,
                local_dimension_gap: spectrum::gap_rule(s, d),
                nonconservativeness: nonconservativeness[p],
                symmetric_eigenvalues: eig.values,
                left: Some(tri.left),
                right: Some(tri.right),
            }
        })
        .collect())
}
