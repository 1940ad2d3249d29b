//! Tangent propagation that stays on the GPU: points, tangents, every Runge–Kutta stage, J·Q, the updates and the
//! QR re-orthonormalisations are recorded step after step without waiting for the device; only log R_jj (and R
//! when asked for) come back, once per call. The network's primal pass and derivative factors are re-recorded at
//! each stage's device-resident points
//! ([`GraphExecutor::record_linearization`](crate::graph::exec::GraphExecutor::record_linearization)).
//!
//! Each step is one submit: its stage times and noise are queued writes, which wgpu orders after the previous
//! step's reads, so the queue stays fed and the host never blocks inside a call.

use crate::derivative::propagator::{Factors, Propagator, StepPlanner};
use crate::error::{Error, Result};
use crate::field::ScoreField;
use crate::gpu::{BufferRole, GpuContext, Recorder};
use crate::graph::exec::GraphExecutor;
use crate::ops::lincomb::record_lincomb;
use crate::ops::qr::{record_qr_rows, QrFactors};

/// One Runge–Kutta stage's buffers: its point, tangents, score, velocity, J·Q and tangent
/// velocity.
struct StageBuffers {
    x: wgpu::Buffer,
    q: wgpu::Buffer,
    score: wgpu::Buffer,
    velocity: wgpu::Buffer,
    jq: wgpu::Buffer,
    tangent_velocity: wgpu::Buffer,
}

/// The GPU-resident propagator of a network score field through sampler steps or a flow.
pub struct ResidentPropagator<'f> {
    field: &'f ScoreField,
    planner: StepPlanner<'f>,
    trajectories: usize,
    k: usize,
    /// Ping-pong pairs: the current state is `x[current]`, `q[current]`.
    x: [wgpu::Buffer; 2],
    q: [wgpu::Buffer; 2],
    current: usize,
    exec: &'f GraphExecutor,
    stages: Vec<StageBuffers>,
    noise: wgpu::Buffer,
}

/// Whether a field can be propagated resident on the GPU.
pub fn supports(field: &ScoreField) -> bool {
    matches!(field, ScoreField::Graph(_))
}

impl<'f> ResidentPropagator<'f> {
    /// Starts from points `x0` ([B, D]) and orthonormal tangents `q0` ([B, K, D]); `stages` is the most stages a
    /// step has (1 for EM and Euler, 2 for Heun, 4 for RK4).
    pub fn new(
        field: &'f ScoreField,
        planner: StepPlanner<'f>,
        x0: &[f32],
        q0: &[f64],
        k: usize,
        stages: usize,
    ) -> Result<Self> {
        let ctx = field.ctx();
        let d = field.dim();
        let b = x0.len() / d;
        let q32: Vec<f32> = q0.iter().map(|&v| v as f32).collect();
        let words = |n: usize| (n.max(1) * 4) as u64;
        let storage = |label: &str, n: usize| ctx.buffer(label, words(n), BufferRole::Storage);
        let ScoreField::Graph(graph) = field else {
            return Err(Error::InvalidArgument("resident propagation needs a network field".into()));
        };
        let x = [ctx.upload("resident/x0", x0), storage("resident/x1", b * d)];
        let q = [ctx.upload("resident/q0", &q32), storage("resident/q1", b * k * d)];
        let stages = (0..stages.max(1))
            .map(|_| {
                Ok(StageBuffers {
                    x: storage("resident/stage_x", b * d),
                    q: storage("resident/stage_q", b * k * d),
                    score: storage("resident/score", b * d),
                    velocity: storage("resident/velocity", b * d),
                    jq: storage("resident/jq", b * k * d),
                    tangent_velocity: storage("resident/tangent_velocity", b * k * d),
                })
            })
            .collect::<Result<_>>()?;
        let noise = storage("resident/noise", b * d);
        let exec = graph.executor();
        Ok(ResidentPropagator { field, planner, trajectories: b, k, x, q, current: 0, exec, stages, noise })
    }

    fn ctx(&self) -> &'f GpuContext {
        self.field.ctx()
    }

    /// The terms of x + dt Σ_j w_j v_j and of Q + dt Σ_j w_j K_j over the stages' velocities and tangent
    /// velocities (a stage point with w = a_i·, the update with w = b).
    #[allow(clippy::type_complexity)]
    fn combination<'a>(
        &'a self,
        x: &'a wgpu::Buffer,
        q: &'a wgpu::Buffer,
        dt: f64,
        weights: &[f64],
    ) -> (Vec<(f64, &'a wgpu::Buffer)>, Vec<(f64, &'a wgpu::Buffer)>) {
        let (mut x_terms, mut q_terms) = (vec![(1.0, x)], vec![(1.0, q)]);
        for (stage, &w) in self.stages.iter().zip(weights).filter(|(_, &w)| w != 0.0) {
            x_terms.push((dt * w, &stage.velocity));
            q_terms.push((dt * w, &stage.tangent_velocity));
        }
        (x_terms, q_terms)
    }

    /// Records step `index` (stages, updates) and submits it.
    fn step(&mut self, index: usize, qr: Option<QrFactors>) -> Result<()> {
        let ctx = self.ctx();
        let d = self.field.dim();
        let (b, k) = (self.trajectories, self.k);
        let spec = (self.planner)(index)?;
        if spec.stages.len() > self.stages.len() {
            return Err(Error::InvalidArgument(format!(
                "a step of {} stages on a propagator built for {}",
                spec.stages.len(),
                self.stages.len()
            )));
        }
        let dt = spec.dt;
        let (x, q) = (&self.x[self.current], &self.q[self.current]);
        let mut rec = Recorder::new(ctx, "resident/step");
        for (i, stage) in spec.stages.iter().enumerate() {
            let buffers = &self.stages[i];
            // The stage point x + dt Σ_j a_ij v_j and its tangents (stage 0 is the state itself).
            let (xi, qi) = if i == 0 {
                (x, q)
            } else {
                let (x_terms, q_terms) = self.combination(x, q, dt, spec.a[i]);
                record_lincomb(&mut rec, b * d, &x_terms, &buffers.x)?;
                record_lincomb(&mut rec, b * k * d, &q_terms, &buffers.q)?;
                (&buffers.x, &buffers.q)
            };
            let lin = self.exec.record_linearization(&mut rec, xi, stage.time as f32, b)?;
            rec.copy(lin.score()?, &buffers.score, (b * d * 4) as u64);
            lin.record_jvp(&mut rec, qi, k, &buffers.jq, false)?;
            record_lincomb(&mut rec, b * d, &[(stage.score, &buffers.score), (stage.x_coef, xi)], &buffers.velocity)?;
            record_lincomb(
                &mut rec,
                b * k * d,
                &[(stage.score, &buffers.jq), (stage.x_coef, qi)],
                &buffers.tangent_velocity,
            )?;
        }
        let next = 1 - self.current;
        let (mut x_terms, q_terms) = self.combination(x, q, dt, spec.b);
        if let Some((scale, z)) = &spec.noise {
            let z32: Vec<f32> = z.iter().map(|&v| v as f32).collect();
            ctx.write(&self.noise, &z32);
            x_terms.push((*scale, &self.noise));
        }
        record_lincomb(&mut rec, b * d, &x_terms, &self.x[next])?;
        record_lincomb(&mut rec, b * k * d, &q_terms, &self.q[next])?;
        if let Some(factors) = qr {
            record_qr_rows(&mut rec, &self.q[next], b, k, d, factors)?;
        }
        rec.submit();
        self.current = next;
        Ok(())
    }
}

impl Propagator for ResidentPropagator<'_> {
    fn advance(&mut self, first: usize, steps: usize, blocks: usize, keep_r: bool) -> Result<Vec<Factors>> {
        let ctx = self.ctx();
        let (b, k) = (self.trajectories, self.k);
        let log_diag = ctx.buffer("resident/log_diag", (blocks * b * k * 4) as u64, BufferRole::Storage);
        let r = keep_r.then(|| ctx.buffer("resident/r", (blocks * b * k * k * 4) as u64, BufferRole::Storage));
        for block in 0..blocks {
            for s in 0..steps {
                let qr = (s + 1 == steps).then_some(QrFactors { r: r.as_ref(), log_diag: &log_diag, slot: block });
                self.step(first + block * steps + s, qr)?;
            }
        }
        let logs: Vec<f32> = ctx.download(&log_diag, blocks * b * k)?;
        // A non-finite state makes every later R_jj NaN; −∞ alone is a collapsed direction (as on the host).
        if let Some(i) = logs.iter().position(|v| v.is_nan() || *v == f32::INFINITY) {
            return Err(Error::NotFinite {
                what: format!("tangent growth at step {} (try --qr-every 1)", first + (i / (b * k) + 1) * steps - 1),
                row: (i % (b * k)) / k,
                value: logs[i] as f64,
            });
        }
        let rs: Option<Vec<f32>> = r.as_ref().map(|r| ctx.download(r, blocks * b * k * k)).transpose()?;
        Ok((0..blocks)
            .map(|blk| Factors {
                log_diag: logs[blk * b * k..(blk + 1) * b * k].iter().map(|&v| v as f64).collect(),
                r: rs.as_ref().map(|r| r[blk * b * k * k..(blk + 1) * b * k * k].iter().map(|&v| v as f64).collect()),
            })
            .collect())
    }

    fn state(&mut self) -> Result<(Vec<f32>, Vec<f64>)> {
        let ctx = self.ctx();
        let d = self.field.dim();
        let x: Vec<f32> = ctx.download(&self.x[self.current], self.trajectories * d)?;
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::NotFinite { what: "trajectory state".into(), row: i / d, value: x[i] as f64 });
        }
        let q: Vec<f32> = ctx.download(&self.q[self.current], self.trajectories * self.k * d)?;
        Ok((x, q.iter().map(|&v| v as f64).collect()))
    }
}
