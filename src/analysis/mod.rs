//! Analyses of a score field's local geometry, built on the derivative operators.

pub mod descriptors;
pub mod spectrum;

use std::ops::Range;

pub use descriptors::{descriptors, DescribedMap, DescriptorSettings, Directions, PointDescriptors};
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
