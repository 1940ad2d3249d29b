//! Lyapunov analysis of a generating process x_{n+1} = F_n(x_n), batched over trajectories, K tangent vectors each.
//!
//! The tangent vectors Q (orthonormal rows) are carried through the exact derivative of every step, dF_n · Q, by
//! Jacobian-vector products of the field, and re-orthonormalised by QR every `qr_every` steps; Σ log R_ii is the
//! log growth, and divided by the time spanned it gives the finite-time exponents (base e). The final Q holds the
//! (backward) Lyapunov vectors. Covariant vectors come from Ginelli et al.'s method: the R factors of the second
//! half of the run are kept, and C ← R⁻¹ C (columns normalised), run backward from C = I, gives the covariant
//! vectors Q_m C_m at the midpoint m.
//!
//! Dynamics:
//! - sampler steps on Song's grid (see [`crate::sampler`]): EM and ODE-Euler have the tangent map
//!   I + Δt (c(t_k) J(x_k, t_k) − f'(t_k)) with c = g² or ½ g² and f' the drift's (scalar) Jacobian; Heun and RK4 the
//!   exact derivative of their stages. EM's noise does not depend on x and drops out of the tangent map.
//! - a flow dx/dt = field(x, t) at fixed t, RK4 with its variational equation.

use crate::analysis::qr::qr_rows;
use crate::derivative::propagator::{Factors, Propagator, Stage, StepPlanner, StepSpec};
use crate::derivative::resident::{self, ResidentPropagator};
use crate::derivative::user_flow::UserFlow;
use crate::derivative::{self, has_exact_jvp, JvpMethod};
use crate::error::{Error, Result};
use crate::field::ScoreField;
use crate::sampler::{row_rng, stream, tableau, NoiseSource, SamplerKind, SeededNoise, StepCoefficients, TimeGrid};
use crate::scheduler::{JobOptions, Silent};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dynamics {
    /// The steps of a sampler of the reverse process.
    Sampler { kind: SamplerKind, steps: usize, eps: f64, seed: u64 },
    /// dx/dt = field(x, t) at the fixed time `t`, RK4 with step `dt`; `transient` steps run first and are not
    /// counted.
    Flow { dt: f64, steps: usize, transient: usize, t: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialTangents {
    /// The first K coordinate axes.
    Axes,
    /// K random orthonormal directions per trajectory.
    Random { seed: u64 },
}

#[derive(Debug, Clone, Copy)]
pub struct LyapunovSettings {
    pub k: usize,
    /// Steps between re-orthonormalisations.
    pub qr_every: usize,
    pub clv: bool,
    pub tangents: InitialTangents,
    /// Most points of the convergence history kept.
    pub history_points: usize,
}

impl LyapunovSettings {
    pub fn new(k: usize) -> Self {
        LyapunovSettings {
            k,
            qr_every: 1,
            clv: false,
            tangents: InitialTangents::Random { seed: 0 },
            history_points: 1000,
        }
    }
}

/// Covariant Lyapunov vectors at the run's midpoint.
#[derive(Debug, Clone)]
pub struct CovariantVectors {
    /// [B, K, D], unit rows.
    pub vectors: Vec<f32>,
    /// The points where they are given, [B, D].
    pub x: Vec<f32>,
    /// The time (or diffusion time) there.
    pub time: f64,
    /// |cᵢ · s| / ‖s‖ with s the field (flow) or the score (sampler) there, [B, K].
    pub alignment: Vec<f64>,
}

#[derive(Debug, Clone)]
pub struct LyapunovRun {
    pub trajectories: usize,
    pub k: usize,
    pub dim: usize,
    /// Σ log R_ii, [B, K].
    pub log_growth: Vec<f64>,
    /// The time spanned by the counted steps (Σ Δt).
    pub time_span: f64,
    /// log growth / time span, [B, K].
    pub exponents: Vec<f64>,
    /// The final orthonormal tangent vectors, [B, K, D].
    pub vectors: Vec<f32>,
    pub final_x: Vec<f32>,
    /// |vᵢ · s| / ‖s‖ at the final point, [B, K].
    pub alignment: Vec<f64>,
    pub clv: Option<CovariantVectors>,
    /// Running exponents, [H, B, K], at `history_time` [H].
    pub history: Vec<f64>,
    pub history_time: Vec<f64>,
    /// The propagator that carried the run.
    pub propagator: PropagatorKind,
    /// J·v products per trajectory and step (stages × K); the field itself is evaluated once per stage more.
    pub products_per_step: usize,
}

impl LyapunovRun {
    /// The runs of consecutive blocks of trajectories (the same dynamics and settings) as one run: per-trajectory
    /// arrays joined in order, the history's [H, B, K] along B.
    pub fn join(parts: Vec<LyapunovRun>) -> Result<LyapunovRun> {
        let mut parts = parts.into_iter();
        let mut run = parts.next().ok_or_else(|| Error::InvalidArgument("no Lyapunov runs to join".into()))?;
        for part in parts {
            if part.k != run.k || part.dim != run.dim || part.history_time != run.history_time {
                return Err(Error::Device("Lyapunov runs of different settings cannot be joined".into()));
            }
            let (h, k) = (run.history_time.len(), run.k);
            let (b1, b2) = (run.trajectories, part.trajectories);
            let mut history = Vec::with_capacity(h * (b1 + b2) * k);
            for level in 0..h {
                history.extend_from_slice(&run.history[level * b1 * k..(level + 1) * b1 * k]);
                history.extend_from_slice(&part.history[level * b2 * k..(level + 1) * b2 * k]);
            }
            run.history = history;
            run.trajectories += b2;
            run.log_growth.extend(part.log_growth);
            run.exponents.extend(part.exponents);
            run.vectors.extend(part.vectors);
            run.final_x.extend(part.final_x);
            run.alignment.extend(part.alignment);
            match (&mut run.clv, part.clv) {
                (Some(a), Some(b)) => {
                    a.vectors.extend(b.vectors);
                    a.x.extend(b.x);
                    a.alignment.extend(b.alignment);
                }
                (None, None) => {}
                _ => return Err(Error::Device("Lyapunov runs with and without covariant vectors".into())),
            }
        }
        Ok(run)
    }
}

/// Most blocks one propagator call runs (bounds a dispatch's length and its read-back).
const MAX_BLOCKS_PER_CALL: usize = 256;

/// The time each step spans and the time at its start.
struct Clock {
    times: Vec<f64>,
    dt: f64,
}

impl Clock {
    fn of(dynamics: &Dynamics) -> Result<Self> {
        match *dynamics {
            Dynamics::Sampler { kind, steps, eps, .. } => {
                let grid = TimeGrid::new(steps, eps)?;
                Ok(Clock { times: grid.step_times(kind).to_vec(), dt: grid.dt })
            }
            Dynamics::Flow { dt, steps, transient, t } => {
                if !(dt > 0.0 && dt.is_finite()) {
                    return Err(Error::InvalidArgument(format!("dt {dt}: expected a positive step")));
                }
                if steps == 0 {
                    return Err(Error::InvalidArgument("steps 0: need at least one step".into()));
                }
                Ok(Clock { times: vec![t; steps + transient], dt })
            }
        }
    }
}

/// The steps of the dynamics as Runge–Kutta specifications: stage times and velocity coefficients, and the EM
/// noise drawn in step order (the same draws whichever propagator consumes them).
fn step_planner<'f>(
    field: &'f ScoreField,
    dynamics: Dynamics,
    clock: &'f Clock,
    len: usize,
    first_row: usize,
) -> Result<StepPlanner<'f>> {
    let (kind, seed) = match dynamics {
        Dynamics::Sampler { kind, seed, .. } => (kind, seed),
        Dynamics::Flow { .. } => (SamplerKind::OdeRk4, 0),
    };
    let (offsets, a, b) = scheme(&dynamics)?;
    // Each trajectory draws from its own stream (keyed by its row in the whole run), so shards draw alike.
    let mut noise = SeededNoise::for_rows(seed, first_row);
    let d = field.dim();
    Ok(Box::new(move |index| {
        let (t, dt) = (clock.times[index], clock.dt);
        let stages = offsets
            .iter()
            .map(|&offset| match dynamics {
                Dynamics::Sampler { .. } => {
                    let tau = t - offset * dt;
                    let c = StepCoefficients::at(field, tau, kind != SamplerKind::Em);
                    Stage { time: tau, score: c.score, x_coef: c.x }
                }
                Dynamics::Flow { t, .. } => Stage { time: t, score: 1.0, x_coef: 0.0 },
            })
            .collect();
        let last = index + 1 == clock.times.len();
        let noise = (kind == SamplerKind::Em && matches!(dynamics, Dynamics::Sampler { .. }) && !last).then(|| {
            let mut z = vec![0.0; len];
            noise.fill(&mut z, d);
            (field.schedule().diffusion(t) * dt.sqrt(), z)
        });
        Ok(StepSpec { dt, stages, a, b, noise })
    }))
}

/// The most Runge–Kutta stages a step of the dynamics has.
fn stage_count(dynamics: &Dynamics) -> Result<usize> {
    Ok(scheme(dynamics)?.0.len())
}

/// The explicit Runge–Kutta scheme of a step: stage offsets (in Δt), the a_ij and the weights b_i. A flow steps by
/// RK4.
#[allow(clippy::type_complexity)]
fn scheme(dynamics: &Dynamics) -> Result<(&'static [f64], &'static [&'static [f64]], &'static [f64])> {
    let kind = match *dynamics {
        Dynamics::Sampler { kind, .. } => kind,
        Dynamics::Flow { .. } => SamplerKind::OdeRk4,
    };
    match kind {
        SamplerKind::Em | SamplerKind::OdeEuler => Ok((&[0.0], &[&[]], &[1.0])),
        SamplerKind::Pc => Err(Error::InvalidArgument("lyapunov: the pc sampler is not supported".into())),
        other => Ok(tableau(other)),
    }
}

/// The reference implementation: every stage's score and J·Q from the GPU field, the update and QR on the host.
struct HostPropagator<'f> {
    field: &'f ScoreField,
    planner: StepPlanner<'f>,
    x: Vec<f32>,
    q: Vec<f64>,
    k: usize,
    method: JvpMethod,
    options: JobOptions<'f>,
}

impl HostPropagator<'_> {
    fn step(&mut self, index: usize) -> Result<()> {
        let d = self.field.dim();
        let k = self.k;
        let spec = (self.planner)(index)?;
        let dt = spec.dt;
        let mut stage_v: Vec<Vec<f64>> = Vec::new();
        let mut stage_tangent: Vec<Vec<f64>> = Vec::new();
        for (i, stage) in spec.stages.iter().enumerate() {
            let a = spec.a[i];
            let xi: Vec<f32> = (0..self.x.len())
                .map(|e| (self.x[e] as f64 + dt * a.iter().zip(&stage_v).map(|(c, v)| c * v[e]).sum::<f64>()) as f32)
                .collect();
            let qi: Vec<f64> = (0..self.q.len())
                .map(|e| self.q[e] + dt * a.iter().zip(&stage_tangent).map(|(c, v)| c * v[e]).sum::<f64>())
                .collect();
            let time32 = [stage.time as f32];
            let s = self.field.score(&xi, &time32, self.options)?;
            let qi32: Vec<f32> = qi.iter().map(|&v| v as f32).collect();
            let jq = derivative::jvp(self.field, &xi, &time32, &qi32, self.method, false, self.options)?;
            stage_v
                .push(xi.iter().zip(&s).map(|(&xv, &sv)| stage.score * sv as f64 + stage.x_coef * xv as f64).collect());
            stage_tangent
                .push(qi.iter().zip(&jq).map(|(&qv, &jv)| stage.score * jv as f64 + stage.x_coef * qv).collect());
        }
        for e in 0..self.x.len() {
            let mut next = self.x[e] as f64 + dt * spec.b.iter().zip(&stage_v).map(|(w, v)| w * v[e]).sum::<f64>();
            if let Some((scale, z)) = &spec.noise {
                next += scale * z[e];
            }
            self.x[e] = next as f32;
        }
        for e in 0..self.q.len() {
            self.q[e] += dt * spec.b.iter().zip(&stage_tangent).map(|(w, v)| w * v[e]).sum::<f64>();
        }
        if let Some(i) = self.x.iter().position(|v| !v.is_finite()) {
            return Err(Error::NotFinite {
                what: format!("trajectory state at step {index}"),
                row: i / d,
                value: self.x[i] as f64,
            });
        }
        if let Some(i) = self.q.iter().position(|v| !v.is_finite()) {
            return Err(Error::NotFinite {
                what: format!("tangent vectors at step {index} (try qr_every 1)"),
                row: i / (k * d),
                value: self.q[i],
            });
        }
        Ok(())
    }
}

impl Propagator for HostPropagator<'_> {
    fn advance(&mut self, first: usize, steps: usize, blocks: usize, keep_r: bool) -> Result<Vec<Factors>> {
        let d = self.field.dim();
        let mut factors = Vec::with_capacity(blocks);
        for block in 0..blocks {
            let start = first + block * steps;
            for index in start..start + steps {
                self.step(index)?;
            }
            let (q, r) = qr_rows(&self.q, self.x.len() / d, self.k, d);
            self.q = q;
            factors.push(Factors::from_r(r, self.k, keep_r));
        }
        Ok(factors)
    }

    fn state(&mut self) -> Result<(Vec<f32>, Vec<f64>)> {
        Ok((self.x.clone(), self.q.clone()))
    }
}

/// Orthonormal starting tangents, [B, K, D]; random ones are drawn per trajectory from
/// [`row_rng`]`(seed, LYAPUNOV_TANGENTS, first_row + b, 0)`.
pub fn initial_tangents(
    trajectories: usize,
    k: usize,
    d: usize,
    tangents: InitialTangents,
    first_row: usize,
) -> Vec<f64> {
    match tangents {
        InitialTangents::Axes => (0..trajectories)
            .flat_map(|_| (0..k).flat_map(move |i| (0..d).map(move |j| if i == j { 1.0 } else { 0.0 })))
            .collect(),
        InitialTangents::Random { seed } => {
            use rand_distr::{Distribution, StandardNormal};
            let mut raw = Vec::with_capacity(trajectories * k * d);
            for b in 0..trajectories {
                let mut rng = row_rng(seed, stream::LYAPUNOV_TANGENTS, (first_row + b) as u64, 0);
                raw.extend((0..k * d).map(|_| -> f64 { StandardNormal.sample(&mut rng) }));
            }
            qr_rows(&raw, trajectories, k, d).0
        }
    }
}

/// Lyapunov exponents and vectors of the dynamics from the points `x0` ([B, D]). User fields with `field_jvp`
/// in flow mode run fused on the GPU, MLP and U-Net fields resident on the GPU (no host round trip inside a call);
/// everything else through the field's score and J·Q products per stage, updated and re-orthonormalised on the host.
/// The rows of `x0` are the whole run's (see [`lyapunov_rows`] for a block of them).
pub fn lyapunov(
    field: &ScoreField,
    x0: &[f32],
    dynamics: Dynamics,
    settings: LyapunovSettings,
    options: JobOptions,
) -> Result<LyapunovRun> {
    run_with(field, x0, 0, dynamics, settings, options, true)
}

/// [`lyapunov`] for a block of the whole run's trajectories whose first is row `first_row` (a shard's or a
/// device's block): random tangents and EM's noise are drawn per row from (seed, first_row + the row's index), so
/// a trajectory's draws do not depend on the batch it runs in.
pub fn lyapunov_rows(
    field: &ScoreField,
    x0: &[f32],
    first_row: usize,
    dynamics: Dynamics,
    settings: LyapunovSettings,
    options: JobOptions,
) -> Result<LyapunovRun> {
    run_with(field, x0, first_row, dynamics, settings, options, true)
}

/// [`lyapunov`] always through the host per-stage path (the reference for the fused and resident ones).
pub fn lyapunov_generic(
    field: &ScoreField,
    x0: &[f32],
    dynamics: Dynamics,
    settings: LyapunovSettings,
    options: JobOptions,
) -> Result<LyapunovRun> {
    run_with(field, x0, 0, dynamics, settings, options, false)
}

fn run_with(
    field: &ScoreField,
    x0: &[f32],
    first_row: usize,
    dynamics: Dynamics,
    settings: LyapunovSettings,
    options: JobOptions,
    fused: bool,
) -> Result<LyapunovRun> {
    let d = field.dim();
    let k = settings.k;
    if k == 0 || k > d {
        return Err(Error::InvalidArgument(format!("k {k} must be between 1 and D = {d}")));
    }
    if settings.qr_every == 0 {
        return Err(Error::InvalidArgument("qr_every 0: must be at least 1".into()));
    }
    if x0.is_empty() || x0.len() % d != 0 {
        return Err(Error::bad_input("initial points", format!("{} values do not form rows of {d}", x0.len())));
    }
    if let Some(i) = x0.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite { what: "initial points".into(), row: i / d, value: x0[i] as f64 });
    }
    let trajectories = x0.len() / d;
    let fused_flow = match (field, dynamics) {
        (ScoreField::User(user), Dynamics::Flow { .. }) => fused && user.has_jvp() && UserFlow::supports(user.ctx(), k),
        _ => false,
    };
    if fused_flow {
        // A batch whose columns do not fit one binding runs as consecutive blocks of trajectories.
        let most = UserFlow::max_trajectories(field.ctx(), d, k);
        if trajectories > most {
            let parts = (0..trajectories)
                .step_by(most)
                .map(|start| {
                    let end = (start + most).min(trajectories);
                    run_with(field, &x0[start * d..end * d], first_row + start, dynamics, settings, options, fused)
                })
                .collect::<Result<Vec<_>>>()?;
            return LyapunovRun::join(parts);
        }
    }
    let resident = fused && !fused_flow && resident::supports(field);
    if resident {
        // Trajectories are independent: a batch larger than the memory budget runs as consecutive blocks (each
        // drawing from its rows' streams) joined in order; if one trajectory's tangents do not fit, the host
        // path chunks its products instead.
        let stages = stage_count(&dynamics)?;
        match crate::derivative::blocks::point_chunks(field, trajectories, k * stages, options)? {
            Some(chunks) if chunks.len() > 1 => {
                let parts = chunks
                    .into_iter()
                    .map(|c| {
                        let x = &x0[c.start * d..c.end * d];
                        run_with(field, x, first_row + c.start, dynamics, settings, options, fused)
                    })
                    .collect::<Result<Vec<_>>>()?;
                return LyapunovRun::join(parts);
            }
            Some(_) => {}
            None => return run_with(field, x0, first_row, dynamics, settings, options, false),
        }
    }
    let clock = Clock::of(&dynamics)?;
    let q0 = initial_tangents(trajectories, k, d, settings.tangents, first_row);
    let inner = JobOptions { progress: &Silent, ..options };
    let method = if has_exact_jvp(field) { JvpMethod::Exact } else { JvpMethod::Fd4 };
    let (mut propagator, kind): (Box<dyn Propagator + '_>, PropagatorKind) = match (field, dynamics) {
        (ScoreField::User(user), Dynamics::Flow { dt, t, .. }) if fused_flow => {
            (Box::new(UserFlow::new(user, x0, &q0, k, dt, t)?), PropagatorKind::FusedFlow)
        }
        _ if resident => {
            let planner = step_planner(field, dynamics, &clock, x0.len(), first_row)?;
            let propagator = ResidentPropagator::new(field, planner, x0, &q0, k, stage_count(&dynamics)?)?;
            (Box::new(propagator), PropagatorKind::Resident)
        }
        _ => {
            let propagator = HostPropagator {
                field,
                planner: step_planner(field, dynamics, &clock, x0.len(), first_row)?,
                x: x0.to_vec(),
                q: q0,
                k,
                method,
                options: inner,
            };
            (Box::new(propagator), PropagatorKind::Host)
        }
    };
    let mut result = run(field, &mut *propagator, &clock, &dynamics, settings, trajectories, options)?;
    result.propagator = kind;
    result.products_per_step = stage_count(&dynamics)? * k;
    Ok(result)
}

/// Which propagator carried a run (summary.json's `propagator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropagatorKind {
    /// User fields with `field_jvp` in flow mode: one workgroup per trajectory, steps and QR in one kernel.
    FusedFlow,
    /// Networks: x and Q resident on the GPU, a batched QR kernel.
    Resident,
    /// Per-stage score and J·Q products on the GPU, the update and QR on the host.
    Host,
}

impl PropagatorKind {
    pub fn name(self) -> &'static str {
        match self {
            PropagatorKind::FusedFlow => "fused-flow",
            PropagatorKind::Resident => "resident",
            PropagatorKind::Host => "host",
        }
    }
}

/// The first non-finite log R_jj of a block ([B, K]): (trajectory, column, value).
fn first_non_finite(log_diag: &[f64], k: usize) -> Option<(usize, usize, f64)> {
    log_diag.iter().position(|v| !v.is_finite()).map(|i| (i / k, i % k, log_diag[i]))
}

/// Drives a propagator over the clock: transient, counted blocks, the midpoint kept for covariant vectors.
fn run(
    field: &ScoreField,
    propagator: &mut dyn Propagator,
    clock: &Clock,
    dynamics: &Dynamics,
    settings: LyapunovSettings,
    trajectories: usize,
    options: JobOptions,
) -> Result<LyapunovRun> {
    let (d, k) = (field.dim(), settings.k);
    let transient = match *dynamics {
        Dynamics::Flow { transient, .. } => transient,
        Dynamics::Sampler { .. } => 0,
    };
    let total = clock.times.len();
    options.progress.start("lyapunov", total);
    // Blocks of qr_every steps: the transient's, then the counted ones; calls group equal blocks.
    let counted = (total - transient.min(total)).div_ceil(settings.qr_every);
    let midpoint = counted / 2;
    let stride = counted.div_ceil(settings.history_points.max(1)).max(1);
    let mut log_growth = vec![0.0; trajectories * k];
    let mut elapsed = 0.0;
    let mut history = Vec::new();
    let mut history_time = Vec::new();
    let mut kept_factors: Vec<Vec<f64>> = Vec::new();
    let mut snapshot: Option<(Vec<f32>, Vec<f64>, f64)> = None;
    let mut step = 0;
    let mut block = 0; // counted blocks done
    while step < total {
        let in_transient = step < transient;
        let limit = if in_transient { transient } else { total };
        let n = settings.qr_every.min(limit - step);
        let mut group = ((limit - step) / n).clamp(1, MAX_BLOCKS_PER_CALL);
        if !in_transient && settings.clv && block < midpoint {
            group = group.min(midpoint - block);
        }
        if !in_transient && settings.clv && block == midpoint && snapshot.is_none() {
            let (x, q) = propagator.state()?;
            snapshot = Some((x, q, clock.times[step]));
        }
        let keep_r = !in_transient && settings.clv && block >= midpoint;
        let factors = propagator.advance(step, n, group, keep_r)?;
        // A growth that is not finite (a tangent that vanished or blew up) or a state that left the reals stops
        // the run: it would otherwise be averaged into the exponents.
        for (i, f) in factors.iter().enumerate() {
            if let Some((b, j, value)) = first_non_finite(&f.log_diag, k) {
                return Err(Error::NotFinite {
                    what: format!(
                        "tangent growth log R_jj (vector {j}) of trajectory {b} at the QR after step {}",
                        step + (i + 1) * n - 1
                    ),
                    row: b,
                    value,
                });
            }
        }
        step += n * group;
        options.progress.advance(n * group);
        let (x, _) = propagator.state()?;
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::NotFinite {
                what: format!("state of trajectory {} by step {}", i / d, step - 1),
                row: i / d,
                value: x[i] as f64,
            });
        }
        if in_transient {
            continue;
        }
        for f in factors {
            for (growth, log_r) in log_growth.iter_mut().zip(&f.log_diag) {
                *growth += log_r;
            }
            if let Some(r) = f.r {
                kept_factors.push(r);
            }
            elapsed += n as f64 * clock.dt;
            block += 1;
            if block % stride == 0 || block == counted {
                history.extend(log_growth.iter().map(|g| g / elapsed));
                history_time.push(elapsed);
            }
        }
    }
    options.progress.finish();
    let (final_x, q) = propagator.state()?;
    let end_time = match *dynamics {
        Dynamics::Sampler { .. } => *clock.times.last().unwrap_or(&1.0),
        Dynamics::Flow { t, .. } => t,
    };
    let inner = JobOptions { progress: &Silent, ..options };
    let alignment = alignment_with_field(field, &final_x, end_time, &q, k, inner)?;
    let clv = match snapshot {
        Some((x, q_mid, time)) => {
            let vectors = covariant_vectors(&q_mid, &kept_factors, trajectories, k, d);
            let at = match *dynamics {
                Dynamics::Sampler { .. } => time,
                Dynamics::Flow { t, .. } => t,
            };
            let alignment = alignment_with_field(field, &x, at, &vectors, k, inner)?;
            Some(CovariantVectors { vectors: vectors.iter().map(|&v| v as f32).collect(), x, time, alignment })
        }
        None => None,
    };
    let exponents = log_growth.iter().map(|g| g / elapsed).collect();
    Ok(LyapunovRun {
        trajectories,
        k,
        dim: d,
        log_growth,
        time_span: elapsed,
        exponents,
        vectors: q.iter().map(|&v| v as f32).collect(),
        final_x,
        alignment,
        clv,
        history,
        history_time,
        propagator: PropagatorKind::Host,
        products_per_step: 0,
    })
}

/// |vᵢ · s| / ‖s‖ per trajectory and vector, s = field(x, t).
fn alignment_with_field(
    field: &ScoreField,
    x: &[f32],
    t: f64,
    vectors: &[f64],
    k: usize,
    options: JobOptions,
) -> Result<Vec<f64>> {
    let d = field.dim();
    let s = field.score(x, &[t as f32], options)?;
    let mut out = Vec::with_capacity(x.len() / d * k);
    for (b, sb) in s.chunks(d).enumerate() {
        let norm = sb.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        for j in 0..k {
            let v = &vectors[(b * k + j) * d..(b * k + j + 1) * d];
            let vnorm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            let dot: f64 = v.iter().zip(sb).map(|(a, &c)| a * c as f64).sum();
            out.push(if norm > 0.0 && vnorm > 0.0 { dot.abs() / (norm * vnorm) } else { 0.0 });
        }
    }
    Ok(out)
}

/// Ginelli's backward pass: C ← R⁻¹ C from C = I over the kept factors (last first), columns normalised; the
/// covariant vectors are Q_m C ([B, K, D], unit rows).
pub(crate) fn covariant_vectors(
    q_mid: &[f64],
    factors: &[Vec<f64>],
    trajectories: usize,
    k: usize,
    d: usize,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(trajectories * k * d);
    for b in 0..trajectories {
        // C is upper triangular, [k, k] row-major.
        let mut c: Vec<f64> = (0..k * k).map(|e| if e / k == e % k { 1.0 } else { 0.0 }).collect();
        for r_all in factors.iter().rev() {
            let r = &r_all[b * k * k..(b + 1) * k * k];
            // Solve R X = C column by column (back substitution), X upper triangular.
            let mut next = vec![0.0; k * k];
            for col in 0..k {
                for row in (0..=col).rev() {
                    let sum: f64 = (row + 1..=col).map(|j| r[row * k + j] * next[j * k + col]).sum();
                    next[row * k + col] = (c[row * k + col] - sum) / r[row * k + row];
                }
                let norm = (0..=col).map(|row| next[row * k + col].powi(2)).sum::<f64>().sqrt();
                for row in 0..=col {
                    next[row * k + col] /= norm;
                }
            }
            c = next;
        }
        let q = &q_mid[b * k * d..(b + 1) * k * d];
        for col in 0..k {
            // vector = Σ_row C[row, col] q_row
            let mut v = vec![0.0; d];
            for row in 0..=col {
                for e in 0..d {
                    v[e] += c[row * k + col] * q[row * d + e];
                }
            }
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            out.extend(v.iter().map(|a| a / norm));
        }
    }
    out
}
