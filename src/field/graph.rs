//! Any network as a score field: the graph executor (crate::graph::exec) with its weights resident.

use std::sync::Arc;

use crate::error::Result;
use crate::field::validate_batch;
use crate::gpu::GpuContext;
use crate::graph::exec::{GraphExecutor, Pass};
use crate::graph::ScoreNetwork;
use crate::scheduler::JobOptions;

pub struct GraphField {
    exec: GraphExecutor,
}

impl GraphField {
    pub fn new(ctx: Arc<GpuContext>, net: Arc<ScoreNetwork>) -> Result<Self> {
        Ok(GraphField { exec: GraphExecutor::new(ctx, net)? })
    }

    pub fn network(&self) -> &ScoreNetwork {
        self.exec.network()
    }

    pub fn executor(&self) -> &GraphExecutor {
        &self.exec
    }

    pub fn ctx(&self) -> &GpuContext {
        self.exec.ctx()
    }

    /// s(x, t) for every row of `x` ([rows, D] row-major); `t` has one entry per row or one for all rows.
    pub fn score(&self, x: &[f32], t: &[f32], options: JobOptions) -> Result<Vec<f32>> {
        validate_batch(x, self.network().dim(), t, "X", "T")?;
        self.exec.run(Pass::Score, x, t, None, options)
    }
}
