//! What a device is opened with: the adapter, forced kernel variants, subgroups and cooperative matrices.
//!
//! Resolved once, when the context is built, and read by the kernels from the context: a dispatch never looks at
//! the environment. The `SCORELENS_*` environment variables are one way to fill them ([`DeviceOptions::from_env`]);
//! embedders may build the struct themselves and open a context with [`crate::GpuContext::with_options`].

use super::context::{ADAPTER_ENV, COOP_MATRIX_ENV, SUBGROUPS_ENV};
use crate::error::{Error, Result};
use crate::ops::matmul::{TilePlan, TILE_ENV};

/// Which adapter to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterChoice {
    /// An index into [`crate::gpu::list_adapters`]' order (the one `scorelens info` prints).
    Index(usize),
    /// The first adapter whose name contains this text, ignoring case.
    NameContains(String),
}

impl AdapterChoice {
    /// An index when `text` is a number, else a name substring; `None` when empty.
    pub fn parse(text: &str) -> Option<AdapterChoice> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        Some(match text.parse::<usize>() {
            Ok(index) => AdapterChoice::Index(index),
            Err(_) => AdapterChoice::NameContains(text.to_string()),
        })
    }
}

/// The options a [`crate::GpuContext`] is opened with. The default is what an empty environment gives: the most
/// capable adapter, the kernel choosers' own picks, subgroups where [`crate::gpu::Capabilities::subgroups_by_default`]
/// allows them, no cooperative matrices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceOptions {
    /// The adapter to open; `None`: the most capable (discrete > integrated > virtual > CPU, then the largest
    /// storage binding). Environment: `SCORELENS_ADAPTER` (an index or a name substring).
    pub adapter: Option<AdapterChoice>,
    /// The matmul variant every product runs; `None`: [`TilePlan::choose`] picks per shape. [`TilePlan::Coop`]
    /// needs `coop_matrix`. Environment: `SCORELENS_MATMUL_TILE` (`auto`, `small`, `64`, `128`, `coop`).
    pub matmul_tile: Option<TilePlan>,
    /// Subgroup reductions forced on (an error where the adapter lacks subgroups) or off; `None`:
    /// [`crate::gpu::Capabilities::subgroups_by_default`]. Environment: `SCORELENS_SUBGROUPS` (`0`, `1`).
    pub subgroups: Option<bool>,
    /// Run matmuls on cooperative matrices; opening an adapter without them is then an error. Environment:
    /// `SCORELENS_COOP_MATRIX` (`0`, `1`).
    pub coop_matrix: bool,
}

impl DeviceOptions {
    /// The options the `SCORELENS_*` environment variables give; unset or empty ones keep the default. A value
    /// that does not parse is an error naming the variable.
    pub fn from_env() -> Result<Self> {
        Ok(DeviceOptions {
            adapter: std::env::var(ADAPTER_ENV).ok().and_then(|text| AdapterChoice::parse(&text)),
            matmul_tile: TilePlan::forced()?,
            subgroups: switch_from_env(SUBGROUPS_ENV)?,
            coop_matrix: switch_from_env(COOP_MATRIX_ENV)?.unwrap_or(false),
        })
    }

    /// Contradictions that need no adapter to see: a forced cooperative-matrix matmul without cooperative matrices.
    pub(crate) fn check(&self) -> Result<()> {
        if self.matmul_tile == Some(TilePlan::Coop) && !self.coop_matrix {
            return Err(Error::InvalidArgument(format!(
                "{TILE_ENV}=coop (matmul_tile) needs cooperative matrices: set {COOP_MATRIX_ENV}=1 (coop_matrix) on \
                 an adapter that offers them"
            )));
        }
        Ok(())
    }
}

/// A `0` / `1` variable: unset or empty is `None`.
fn switch_from_env(name: &str) -> Result<Option<bool>> {
    match std::env::var(name).ok().as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some("0") => Ok(Some(false)),
        Some("1") => Ok(Some(true)),
        Some(other) => Err(Error::InvalidArgument(format!("{name}={other:?}: expected 0 or 1"))),
    }
}
