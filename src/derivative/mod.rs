//! Derivatives of score fields with respect to x: Jacobian-vector products J·v, vector-Jacobian products Jᵀ·u,
//! whole Jacobians and divergences, exact where the field has an exact derivative and by finite differences for
//! any field. Jobs are split over points and tangents to fit the memory budget.
//!
//! Finite differences ([`fd`]): central, s(x + hv) − s(x − hv) over 2h, or the fourth-order stencil, with the step
//! h = κ · max(rms(x), 1) / rms(v) per point and tangent, κ = ε^{1/3} (central) or ε^{1/5} (fourth order),
//! ε = 2^{−23} the float32 rounding unit: the step that balances truncation error (h² |s'''| / 6, or h⁴ |s⁽⁵⁾| / 30)
//! against the rounding of s in float32 (about ε |s| / h); each product is estimated at h, h/4 and h/16 and the
//! largest step that agrees with the next is kept, so a stencil that straddles a ReLU kink does not spoil it (see
//! [`fd`]). Measured: about 1e-4 relative error (central) and 1e-5 (fourth order) on smooth networks, 1e-4 on the
//! ReLU fixture; `richardson` (steps h, h/2 combined) suits smooth fields only.

pub mod blocks;
pub mod fd;
pub mod propagator;
pub mod resident;
pub mod user;
pub(crate) mod user_flow;

use std::ops::Range;

pub use user::UserLinearization;

use crate::error::{Error, Result};
use crate::field::{validate_batch, ScoreField};
use crate::gpu::{BufferRole, GpuContext, Recorder};
use crate::scheduler::{plan_chunks, DeviceBounds, JobOptions, RowCost};

/// How a Jacobian-vector product is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JvpMethod {
    /// Forward mode through the network: exact to float32 rounding.
    Exact,
    /// Central differences.
    Fd,
    /// The fourth-order central stencil.
    Fd4,
}

/// How a whole Jacobian is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JacobianMethod {
    /// D forward-mode products per point (columns).
    Forward,
    /// D reverse-mode products per point (rows).
    Reverse,
    /// D central-difference products per point.
    Fd,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DivergenceMethod {
    /// The trace of the exact Jacobian (finite differences where the field has no exact derivative).
    Exact,
    /// Hutchinson's estimator E[zᵀ J z] with `probes` Rademacher vectors per point, drawn per row from `seed` and
    /// the point's index in the whole run (see [`divergence_rows`]), so shards draw as the whole run does.
    Hutchinson { probes: usize, seed: u64 },
}

/// How J·V is stored: as V is ([B, P, D], row p of point b holding J v_p), or each point's block transposed
/// ([B, D, P]: with V = I that is the Jacobian, row i holding ∂s_i/∂x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TangentLayout {
    LikeInput,
    Transposed,
}

/// A field linearised at a batch of points, with its primal state on the GPU.
pub enum Linearization<'f> {
    /// A network graph (ONNX imports and the built-in architectures).
    Graph(crate::graph::exec::GraphLinearization<'f>),
    User(UserLinearization<'f>),
}

impl Linearization<'_> {
    /// J·V for `per_point` tangents per point (`v` [points, P, D]).
    pub fn record_jvp(
        &self,
        rec: &mut Recorder,
        v: &wgpu::Buffer,
        per_point: usize,
        out: &wgpu::Buffer,
        layout: TangentLayout,
    ) -> Result<()> {
        match self {
            Linearization::Graph(l) => l.record_jvp(rec, v, per_point, out, layout == TangentLayout::Transposed),
            Linearization::User(l) => l.record_jvp(rec, v, per_point, out, layout),
        }
    }

    /// Jᵀ·U for `per_point` cotangents per point (`u` [points, Q, D]).
    pub fn record_vjp(&self, rec: &mut Recorder, u: &wgpu::Buffer, per_point: usize, out: &wgpu::Buffer) -> Result<()> {
        match self {
            Linearization::Graph(l) => l.record_vjp(rec, u, per_point, out),
            Linearization::User(l) => l.record_vjp(),
        }
    }

    /// The pre-activations of every hidden unit (ReLU/SiLU inputs) at every point, [points, units].
    pub fn pre_activations(&self) -> Result<Vec<f32>> {
        match self {
            Linearization::Graph(l) => l.pre_activations(),
            Linearization::User(_) => Err(Error::InvalidArgument(
                "a user field has no hidden units to count (local complexity needs a network)".into(),
            )),
        }
    }
}

/// Linearises the field at `x` for exact products (`_max_tangent_rows`, the most points × directions rows a product
/// will have, is kept for callers; the graph allocates per product).
pub fn linearize<'f>(
    field: &'f ScoreField,
    x: &[f32],
    t: &[f32],
    _max_tangent_rows: usize,
) -> Result<Linearization<'f>> {
    match field {
        ScoreField::Graph(f) => Ok(Linearization::Graph(f.executor().linearize(x, t)?)),
        ScoreField::User(f) => Ok(Linearization::User(UserLinearization::new(f, x, t)?)),
        ScoreField::Smoothed(_) => Err(Error::InvalidArgument(
            "the smoothed data field has no network to linearise (its products are Hessian-vector products)".into(),
        )),
    }
}

/// Whether the field has exact forward-mode products (J·v, forward-mode Jacobians).
pub fn has_exact_jvp(field: &ScoreField) -> bool {
    match field {
        ScoreField::Graph(_) => true,
        ScoreField::User(f) => f.has_jvp(),
        ScoreField::Smoothed(_) => true,
    }
}

/// Whether the field has exact reverse-mode products (Jᵀ·u, reverse-mode Jacobians).
pub fn has_exact_vjp(field: &ScoreField) -> bool {
    // The smoothed field's Jacobian is a Hessian: symmetric, Jᵀ·u = J·u.
    matches!(field, ScoreField::Graph(_) | ScoreField::Smoothed(_))
}

fn ctx_of(field: &ScoreField) -> &GpuContext {
    field.ctx()
}

/// Device bytes of the exact products: per point (the linearisation) and per (point, tangent) pair.
fn exact_costs(field: &ScoreField) -> (u64, u64, u64) {
    match field {
        ScoreField::Graph(f) => f.executor().product_costs(),
        ScoreField::User(f) => {
            let d = f.dim() as u64;
            (4 * (d + 1), 4 * 3 * d, 4 * d)
        }
        ScoreField::Smoothed(f) => {
            let d = f.dim() as u64;
            (4 * (d + 4), 4 * 3 * d, 4 * d)
        }
    }
}

/// A plan of point chunks × tangent chunks that fits the budget.
fn plan_products(
    field: &ScoreField,
    points: usize,
    tangents: usize,
    options: JobOptions,
) -> Result<(Vec<Range<usize>>, Vec<Range<usize>>)> {
    let ctx = ctx_of(field);
    let (per_point, per_tangent, widest) = exact_costs(field);
    let fixed = 4 * field.parameter_count() as u64;
    let bounds = DeviceBounds {
        memory_budget: options.memory_budget,
        max_binding_bytes: ctx.caps.max_binding_bytes(),
        max_rows_per_dispatch: ctx.caps.max_workgroups_per_dimension() as u64 * 64,
    };
    let whole = RowCost {
        bytes_per_row: per_point + tangents as u64 * per_tangent,
        widest_row_bytes: widest * tangents as u64,
        fixed_bytes: fixed,
    };
    let rows_bound =
        DeviceBounds { max_rows_per_dispatch: bounds.max_rows_per_dispatch / tangents.max(1) as u64, ..bounds };
    if rows_bound.max_rows_per_dispatch > 0 {
        if let Ok(point_chunks) = plan_chunks(points, whole, rows_bound) {
            return Ok((point_chunks, vec![0..tangents]));
        }
    }
    // One point at a time, its tangents split.
    let per_tangent_cost =
        RowCost { bytes_per_row: per_tangent, widest_row_bytes: widest, fixed_bytes: fixed + per_point };
    let tangent_chunks = plan_chunks(tangents, per_tangent_cost, bounds)?;
    Ok(((0..points).map(|p| p..p + 1).collect(), tangent_chunks))
}

/// Runs exact products chunk by chunk. `fill(points, tangents, block)` writes the [c, P_c, D] inputs of a chunk;
/// `take(points, tangents, values)` receives its [c, P_c, D] outputs (transposed per point when `layout` says so).
#[allow(clippy::too_many_arguments)]
fn run_exact(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    tangents: usize,
    reverse: bool,
    layout: TangentLayout,
    options: JobOptions,
    mut fill: impl FnMut(Range<usize>, Range<usize>, &mut Vec<f32>),
    mut take: impl FnMut(Range<usize>, Range<usize>, &[f32]),
) -> Result<()> {
    let d = field.dim();
    let points = x.len() / d;
    let (point_chunks, tangent_chunks) = plan_products(field, points, tangents, options)?;
    let ctx = ctx_of(field);
    options.progress.start(if reverse { "vjp" } else { "jvp" }, points);
    let mut block = Vec::new();
    for pc in &point_chunks {
        let t_chunk: Vec<f32> = if t.len() == 1 { t.to_vec() } else { t[pc.clone()].to_vec() };
        let widest_chunk = tangent_chunks.iter().map(|c| c.len()).max().unwrap_or(0);
        let lin = linearize(field, &x[pc.start * d..pc.end * d], &t_chunk, pc.len() * widest_chunk)?;
        for tc in &tangent_chunks {
            block.clear();
            fill(pc.clone(), tc.clone(), &mut block);
            let len = pc.len() * tc.len() * d;
            let input = ctx.upload("derivative/input", &block);
            let out = ctx.buffer("derivative/output", (len * 4) as u64, BufferRole::Storage);
            let readback = ctx.buffer("derivative/readback", (len * 4) as u64, BufferRole::Readback);
            let mut rec = Recorder::new(ctx, if reverse { "derivative/vjp" } else { "derivative/jvp" });
            if reverse {
                lin.record_vjp(&mut rec, &input, tc.len(), &out)?;
            } else {
                lin.record_jvp(&mut rec, &input, tc.len(), &out, layout)?;
            }
            rec.copy(&out, &readback, (len * 4) as u64);
            let index = rec.submit();
            let values: Vec<f32> = ctx.read_mapped(&readback, len, Some(index))?;
            take(pc.clone(), tc.clone(), &values);
        }
        options.progress.advance(pc.len());
    }
    options.progress.finish();
    Ok(())
}

/// Copies rows [points, tangents] of a [B, P, D] array into a chunk block [c, P_c, D].
fn gather_block(
    source: &[f32],
    per_point: usize,
    d: usize,
    points: Range<usize>,
    tangents: Range<usize>,
    block: &mut Vec<f32>,
) {
    for p in points {
        let start = (p * per_point + tangents.start) * d;
        block.extend_from_slice(&source[start..start + tangents.len() * d]);
    }
}

fn scatter_block(
    target: &mut [f32],
    per_point: usize,
    d: usize,
    points: Range<usize>,
    tangents: Range<usize>,
    block: &[f32],
) {
    let chunk = tangents.len() * d;
    for (i, p) in points.enumerate() {
        let start = (p * per_point + tangents.start) * d;
        target[start..start + chunk].copy_from_slice(&block[i * chunk..(i + 1) * chunk]);
    }
}

fn check_directions(name: &str, values: &[f32], points: usize, d: usize) -> Result<usize> {
    if points == 0 || values.len() % (points * d) != 0 || values.is_empty() {
        return Err(Error::bad_input(
            name,
            format!("{} values do not form [{points}, P, {d}] (P directions per point)", values.len()),
        ));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::NotFinite { what: name.into(), row: i / (values.len() / points), value: values[i] as f64 });
    }
    Ok(values.len() / (points * d))
}

/// J(x_b, t_b)·v for every point b and each of its P directions: `v` is [B, P, D] (or [B, D]); so is the result.
/// `richardson` applies to the finite-difference methods: two steps combined to cancel the leading error term.
pub fn jvp(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    v: &[f32],
    method: JvpMethod,
    richardson: bool,
    options: JobOptions,
) -> Result<Vec<f32>> {
    let d = field.dim();
    let points = validate_batch(x, d, t, "X", "T")?;
    let per_point = check_directions("V", v, points, d)?;
    match method {
        JvpMethod::Exact if matches!(field, ScoreField::Smoothed(_)) => {
            let ScoreField::Smoothed(f) = field else { unreachable!() };
            f.hessian_vector(x, t, v, per_point, options)
        }
        JvpMethod::Exact => {
            let mut out = vec![0f32; v.len()];
            run_exact(
                field,
                x,
                t,
                per_point,
                false,
                TangentLayout::LikeInput,
                options,
                |pc, tc, block| gather_block(v, per_point, d, pc, tc, block),
                |pc, tc, values| scatter_block(&mut out, per_point, d, pc, tc, values),
            )?;
            Ok(out)
        }
        JvpMethod::Fd => fd::jvp(field, x, t, v, per_point, fd::Stencil::Central, richardson, options),
        JvpMethod::Fd4 => fd::jvp(field, x, t, v, per_point, fd::Stencil::FourthOrder, richardson, options),
    }
}

/// J(x_b, t_b)ᵀ·u for every point b and each of its Q cotangents: `u` is [B, Q, D] (or [B, D]); so is the result.
pub fn vjp(field: &ScoreField, x: &[f32], t: &[f32], u: &[f32], options: JobOptions) -> Result<Vec<f32>> {
    let d = field.dim();
    let points = validate_batch(x, d, t, "X", "T")?;
    let per_point = check_directions("U", u, points, d)?;
    if let ScoreField::Smoothed(f) = field {
        return f.hessian_vector(x, t, u, per_point, options);
    }
    let mut out = vec![0f32; u.len()];
    run_exact(
        field,
        x,
        t,
        per_point,
        true,
        TangentLayout::LikeInput,
        options,
        |pc, tc, block| gather_block(u, per_point, d, pc, tc, block),
        |pc, tc, values| scatter_block(&mut out, per_point, d, pc, tc, values),
    )?;
    Ok(out)
}

/// Identity rows e_i for i in `rows`, for each point of a chunk: [c, |rows|, D].
fn identity_block(points: usize, rows: Range<usize>, d: usize, block: &mut Vec<f32>) {
    for _ in 0..points {
        for i in rows.clone() {
            let start = block.len();
            block.resize(start + d, 0.0);
            block[start + i] = 1.0;
        }
    }
}

/// The Jacobian ∂s/∂x of every point, [B, D, D] with row i = ∂s_i/∂x (torch.func.jacrev's layout, flattened).
/// `sink(points, values)` receives the Jacobians of consecutive chunks of points, so a large job can stream them.
pub fn jacobian(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    method: JacobianMethod,
    options: JobOptions,
    mut sink: impl FnMut(Range<usize>, &[f32]) -> Result<()>,
) -> Result<()> {
    let d = field.dim();
    let points = validate_batch(x, d, t, "X", "T")?;
    if let (ScoreField::Smoothed(f), JacobianMethod::Forward | JacobianMethod::Reverse) = (field, method) {
        // The Hessian, a chunk of points at a time.
        let chunk = ((options.memory_budget / 8) / (4 * (d * d + 4 * d) as u64).max(1)).clamp(1, 4096) as usize;
        for start in (0..points).step_by(chunk) {
            let end = (start + chunk).min(points);
            let tc: Vec<f32> = if t.len() == 1 { t.to_vec() } else { t[start..end].to_vec() };
            sink(start..end, &f.hessian(&x[start * d..end * d], &tc, options)?)?;
        }
        return Ok(());
    }
    match method {
        JacobianMethod::Forward | JacobianMethod::Reverse => {
            let reverse = method == JacobianMethod::Reverse;
            // Chunks of points arrive whole (all tangents) before they are handed on.
            let mut pending: Option<(Range<usize>, Vec<f32>)> = None;
            let mut error = None;
            run_exact(
                field,
                x,
                t,
                d,
                reverse,
                TangentLayout::Transposed,
                options,
                |pc, tc, block| identity_block(pc.len(), tc, d, block),
                |pc, tc, values| {
                    if pending.as_ref().is_some_and(|(p, _)| *p != pc) {
                        let (p, j) = pending.take().unwrap_or_default();
                        if let Err(e) = sink(p, &j) {
                            error.get_or_insert(e);
                        }
                    }
                    let (_, j) = pending.get_or_insert_with(|| (pc.clone(), vec![0f32; pc.len() * d * d]));
                    // Reverse mode gives rows i ∈ tc; forward mode (transposed store) gives columns j ∈ tc as [c, D, |tc|].
                    for (local, _) in pc.clone().enumerate() {
                        let block = &values[local * tc.len() * d..(local + 1) * tc.len() * d];
                        let target = &mut j[local * d * d..(local + 1) * d * d];
                        if reverse {
                            target[tc.start * d..tc.end * d].copy_from_slice(block);
                        } else {
                            for i in 0..d {
                                target[i * d + tc.start..i * d + tc.end]
                                    .copy_from_slice(&block[i * tc.len()..(i + 1) * tc.len()]);
                            }
                        }
                    }
                },
            )?;
            if let Some(e) = error {
                return Err(e);
            }
            if let Some((p, j)) = pending {
                sink(p, &j)?;
            }
            Ok(())
        }
        JacobianMethod::Fd => fd::jacobian(field, x, t, points, options, sink),
    }
}

/// div s = tr J per point; the rows of x are the whole run's (see [`divergence_rows`] for a block of them).
pub fn divergence(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    method: DivergenceMethod,
    options: JobOptions,
) -> Result<Vec<f64>> {
    divergence_rows(field, x, t, 0, method, options)
}

/// [`divergence`] of a block of the whole run's rows whose first is row `first_row` (a shard's or a device's):
/// Hutchinson's probes for a point are drawn from (seed, first_row + its index here).
pub fn divergence_rows(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    first_row: usize,
    method: DivergenceMethod,
    options: JobOptions,
) -> Result<Vec<f64>> {
    let d = field.dim();
    let points = validate_batch(x, d, t, "X", "T")?;
    match method {
        DivergenceMethod::Exact => {
            let mut out = vec![0f64; points];
            let jac_method = if has_exact_jvp(field) { JacobianMethod::Forward } else { JacobianMethod::Fd };
            jacobian(field, x, t, jac_method, options, |pc, j| {
                for (local, p) in pc.enumerate() {
                    out[p] = (0..d).map(|i| j[local * d * d + i * d + i] as f64).sum();
                }
                Ok(())
            })?;
            Ok(out)
        }
        DivergenceMethod::Hutchinson { probes, seed } => {
            if probes == 0 {
                return Err(Error::InvalidArgument("probes must be at least 1".into()));
            }
            let z = crate::draws::rademacher_rows(seed, crate::draws::stream::PROBES, first_row, points, probes * d);
            let method = if has_exact_jvp(field) { JvpMethod::Exact } else { JvpMethod::Fd4 };
            let jz = jvp(field, x, t, &z, method, false, options)?;
            Ok((0..points)
                .map(|p| {
                    let block = p * probes * d..(p + 1) * probes * d;
                    z[block.clone()].iter().zip(&jz[block]).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>()
                        / probes as f64
                })
                .collect())
        }
    }
}
