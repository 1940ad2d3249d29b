//! The Gaussian-smoothed empirical density of a training set, on the GPU:
//! p(x) = (1/N) Σᵢ N(x; α xᵢ, σ² I), with its log, score, Hessian and Hessian-vector products.
//!
//! With logits ℓᵢ = −‖x − α xᵢ‖² / (2σ²), weights wᵢ = softmax(ℓ)ᵢ and m = Σ wᵢ α xᵢ:
//!   log p = logsumexp(ℓ) − log N − (D/2) log(2πσ²),   ∇log p = (m − x) / σ²,
//!   ∇²log p = −I/σ² + Cov_w(α xᵢ) / σ⁴,   Cov_w = Σ wᵢ (α xᵢ − m)(α xᵢ − m)ᵀ.
//! The data are streamed tile by tile (shaders/kde_*.wgsl): a first pass keeps an online log-sum-exp (running max
//! and sum) and the weighted displacement Σ wᵢ (α xᵢ − x) per query point; a second pass, with the final weights,
//! sums the covariance centred on m (or its product with directions). Memory is bounded by one tile of logits per
//! query point; query points are split into chunks by the memory budget. The data stay on the device when they
//! fit half the budget, and are uploaded tile by tile otherwise.
//!
//! Three kernel families ([`KdePath`]): 64-wide register tiles (kde_distances … kde_covariance, any D), one
//! thread per query point (kde_small_*, D ≤ 8) and, for D ≤ 64, one thread per query point over 512-point slices
//! of each tile in separate workgroups, merged per tile (kde_point_*): its data reads are broadcasts, and nothing
//! is padded beyond a multiple of 4 in D, where the tiles pad every block to 64.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};
use crate::gpu::{BufferRole, GpuContext, Recorder};
use crate::model::NoiseSchedule;
use crate::ops::kde::{self as op, KdeBuffers, KdeKernel, KdeParams, POINT_MAX_DIM, POINT_SLICE, SMALL_DIM};
use crate::scheduler::{plan_chunks, DeviceBounds, JobOptions, RowCost};

/// The mean scaling α and standard deviation σ of the smoothing kernel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KdeScale {
    pub alpha: f64,
    pub sigma: f64,
}

impl KdeScale {
    /// A plain kernel density estimate with bandwidth σ (α = 1).
    pub fn bandwidth(sigma: f64) -> Self {
        KdeScale { alpha: 1.0, sigma }
    }

    /// The exact marginal p_t of the empirical data distribution under a diffusion's forward process:
    /// α = α(t), σ = std(t).
    pub fn at_time(schedule: &NoiseSchedule, t: f64) -> Self {
        KdeScale { alpha: schedule.alpha(t), sigma: schedule.std(t) }
    }

    fn validate(&self) -> Result<()> {
        if !(self.sigma > 0.0 && self.sigma.is_finite()) {
            return Err(Error::InvalidArgument(format!("bandwidth σ = {} must be a positive number", self.sigma)));
        }
        if !self.alpha.is_finite() {
            return Err(Error::InvalidArgument(format!("scaling α = {} must be finite", self.alpha)));
        }
        Ok(())
    }
}

/// Which kernels evaluate the field: 64-wide register tiles (any dimension), one thread per query point
/// (dimension ≤ 8, where the tiles would compute mostly padding), or one thread per query point over 512-point
/// slices of each data tile in separate workgroups, merged per tile (`Point`, dimension ≤ 64, both passes).
/// `Auto` picks the kernels from the dimension ([`KdeField::kernels`]), by what measured fastest on
/// lavapipe (docs/BENCHMARKS.md, "The smoothed-data field at moderate D and few rows").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdePath {
    Auto,
    Tiled,
    Small,
    Point,
}

/// Log density [B], score [B, D] and, when asked for, Hessian [B, D, D] at a batch of points.
#[derive(Debug, Clone)]
pub struct KdeOutputs {
    pub log_density: Vec<f32>,
    pub score: Vec<f32>,
    pub hessian: Option<Vec<f32>>,
}

/// Data points in one tile of the tiled path: bounds the [rows, tile] logits buffer.
const TILE_ROWS: usize = 4096;
/// Data points in one tile of the small-dimension path, where each thread loops over the whole tile. Kept short:
/// on lavapipe (Mesa 22.3) these kernels returned wrong sums once one dispatch's threads looped over 4–8 thousand
/// points (3500 for a heavier loop body), while the same data in shorter tiles were exact.
const SMALL_TILE_ROWS: usize = 2048;

pub struct KdeField {
    ctx: Arc<GpuContext>,
    data: Vec<f32>,
    n: usize,
    dim: usize,
    scale: KdeScale,
    /// The path asked for (`Auto` is resolved by `kernels`).
    path: KdePath,
    tile_rows: usize,
    /// The data as device tiles, uploaded on first use when they fit half the memory budget.
    resident: OnceLock<Vec<wgpu::Buffer>>,
}

/// What the second pass over the data computes.
#[derive(Clone, Copy)]
enum Second<'a> {
    None,
    Covariance,
    Hvp { v: &'a [f32], per_point: usize },
}

/// Raw per-row results of the passes: state (M, S, M_prev, 0), acc = Σ e^{ℓ−M}(α xᵢ − x), and the second pass.
struct Moments {
    state: Vec<f32>,
    acc: Vec<f32>,
    second: Vec<f32>,
}

/// Device buffers of one chunk of query points.
struct Slot {
    x: wgpu::Buffer,
    state: wgpu::Buffer,
    acc: wgpu::Buffer,
    logits: wgpu::Buffer,
    second: wgpu::Buffer,
    v: wgpu::Buffer,
    proj: wgpu::Buffer,
    partial_state: wgpu::Buffer,
    partial_acc: wgpu::Buffer,
    partial_cov: wgpu::Buffer,
    readback: [wgpu::Buffer; 3],
}

impl Slot {
    /// What the kernels bind for one data tile.
    fn buffers<'a>(&'a self, data: &'a wgpu::Buffer) -> KdeBuffers<'a> {
        KdeBuffers {
            data,
            x: &self.x,
            logits: &self.logits,
            state: &self.state,
            acc: &self.acc,
            v: &self.v,
            proj: &self.proj,
            second: &self.second,
            partial_state: &self.partial_state,
            partial_acc: &self.partial_acc,
            partial_cov: &self.partial_cov,
        }
    }
}

impl KdeField {
    /// The field of `data` ([N, dim] row-major, N ≥ 1, finite) smoothed at `scale`.
    pub fn new(ctx: Arc<GpuContext>, data: Vec<f32>, dim: usize, scale: KdeScale) -> Result<Self> {
        if dim == 0 || data.is_empty() || data.len() % dim != 0 {
            return Err(Error::bad_input(
                "data",
                format!("{} values do not form one or more rows of {dim}", data.len()),
            ));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::NotFinite { what: "data".into(), row: i / dim, value: data[i] as f64 });
        }
        scale.validate()?;
        let n = data.len() / dim;
        let field = KdeField { ctx, data, n, dim, scale, path: KdePath::Auto, tile_rows: n, resident: OnceLock::new() };
        field.with_path(KdePath::Auto)
    }

    /// Chooses the kernels (tests run both paths on the same inputs).
    pub fn with_path(mut self, path: KdePath) -> Result<Self> {
        match path {
            KdePath::Small if self.dim > SMALL_DIM => {
                return Err(Error::InvalidArgument(format!(
                    "the small-dimension kernels take D ≤ {SMALL_DIM}, not {}",
                    self.dim
                )))
            }
            KdePath::Point if self.dim > POINT_MAX_DIM => {
                return Err(Error::InvalidArgument(format!(
                    "the per-point kernels take D ≤ {POINT_MAX_DIM}, not {}",
                    self.dim
                )))
            }
            _ => {}
        }
        self.path = path;
        // The small kernels loop over whole tiles per thread (see SMALL_TILE_ROWS); the others over 512-point
        // slices or 16-point steps.
        let rows = if path == KdePath::Small { SMALL_TILE_ROWS } else { TILE_ROWS };
        Ok(self.with_tile_rows(rows))
    }

    /// Streams the data `rows` points at a time (tests use tiles that are not multiples of the kernels' blocks).
    pub fn with_tile_rows(mut self, rows: usize) -> Self {
        // A tile must fit one storage binding.
        let most = (self.ctx.caps.max_binding_bytes() / (4 * self.dim as u64)).max(1) as usize;
        self.tile_rows = rows.min(most).clamp(1, self.n);
        self.resident = OnceLock::new();
        self
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// N, the number of data points.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn scale(&self) -> KdeScale {
        self.scale
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn ctx(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// True when the small-dimension kernels are used.
    pub fn is_small_path(&self) -> bool {
        self.kernels() == KdePath::Small
    }

    /// The kernels (`Tiled`, `Small` or `Point`, never `Auto`) of both passes (log-sum-exp and displacement, then
    /// the covariance). `Auto`: the per-point kernels up to D = 64, the tiles above. On lavapipe the per-point
    /// kernels measured faster than the small and tiled ones at every row count from 8 to 1000
    /// (docs/BENCHMARKS.md), so the choice does not depend on the number of query points.
    pub fn kernels(&self) -> KdePath {
        match self.path {
            KdePath::Auto if self.dim <= POINT_MAX_DIM => KdePath::Point,
            KdePath::Auto => KdePath::Tiled,
            path => path,
        }
    }

    /// FLOPs of one data pass for one query point, counted as 3·N·D (difference, multiply, add per coordinate
    /// of every distance); the displacement, covariance and products cost further multiples of N·D.
    pub fn flops_per_pass(&self) -> f64 {
        3.0 * self.n as f64 * self.dim as f64
    }

    /// log p [B], ∇log p [B, D] and, with `hessian`, ∇²log p [B, D, D] at every row of `x` ([B, D]).
    pub fn evaluate(&self, x: &[f32], hessian: bool, options: JobOptions) -> Result<KdeOutputs> {
        let rows = self.check_points(x)?;
        let second = if hessian { Second::Covariance } else { Second::None };
        let moments = self.moments(x, rows, second, options)?;
        let (d, var) = (self.dim, self.scale.sigma * self.scale.sigma);
        let constant = -(self.n as f64).ln() - 0.5 * d as f64 * (2.0 * std::f64::consts::PI * var).ln();
        let mut log_density = Vec::with_capacity(rows);
        let mut score = Vec::with_capacity(rows * d);
        for b in 0..rows {
            let (m, s) = (moments.state[4 * b] as f64, moments.state[4 * b + 1] as f64);
            log_density.push((m + s.ln() + constant) as f32);
            score.extend(moments.acc[b * d..(b + 1) * d].iter().map(|&a| (a as f64 / (s * var)) as f32));
        }
        let hessian = hessian.then(|| {
            let mut h: Vec<f32> = moments.second.iter().map(|&c| (c as f64 / (var * var)) as f32).collect();
            for b in 0..rows {
                for k in 0..d {
                    let i = (b * d + k) * d + k;
                    h[i] = (h[i] as f64 - 1.0 / var) as f32;
                }
            }
            h
        });
        Ok(KdeOutputs { log_density, score, hessian })
    }

    /// log p at every row of `x`.
    pub fn log_density(&self, x: &[f32], options: JobOptions) -> Result<Vec<f32>> {
        Ok(self.evaluate(x, false, options)?.log_density)
    }

    /// ∇log p = (m − x) / σ² at every row of `x`.
    pub fn score(&self, x: &[f32], options: JobOptions) -> Result<Vec<f32>> {
        Ok(self.evaluate(x, false, options)?.score)
    }

    /// ∇²log p [B, D, D] at every row of `x`.
    pub fn hessian(&self, x: &[f32], options: JobOptions) -> Result<Vec<f32>> {
        self.evaluate(x, true, options)?
            .hessian
            .ok_or_else(|| Error::Device("the Hessian pass returned nothing".into()))
    }

    /// Checks directions V: `per_point` ≥ 1 finite rows of D for each of `rows` points ([rows, per_point, D]).
    fn check_directions(&self, v: &[f32], rows: usize, per_point: usize) -> Result<()> {
        let d = self.dim;
        if per_point == 0 || v.len() != rows * per_point * d {
            return Err(Error::bad_input(
                "V",
                format!("{} values; expected [{rows}, {per_point}, {d}] ({} values)", v.len(), rows * per_point * d),
            ));
        }
        if let Some(i) = v.iter().position(|a| !a.is_finite()) {
            return Err(Error::NotFinite { what: "V".into(), row: i / (per_point * d), value: v[i] as f64 });
        }
        Ok(())
    }

    /// H·v for `per_point` directions per row of `x` (`v` is [B, P, D]), without forming H on the tiled path:
    /// −v/σ² + Σᵢ wᵢ ((α xᵢ − m)·v)(α xᵢ − m)/σ⁴. This is also the exact JVP of the score. On the small-dimension
    /// and per-point paths H (at most 64×64) is formed and applied on the host.
    pub fn hessian_vector(&self, x: &[f32], v: &[f32], per_point: usize, options: JobOptions) -> Result<Vec<f32>> {
        let rows = self.check_points(x)?;
        let d = self.dim;
        self.check_directions(v, rows, per_point)?;
        let var = self.scale.sigma * self.scale.sigma;
        if self.kernels() != KdePath::Tiled {
            let h = self.hessian(x, options)?;
            let mut out = Vec::with_capacity(v.len());
            for b in 0..rows {
                let hb = &h[b * d * d..(b + 1) * d * d];
                for p in 0..per_point {
                    let vp = &v[(b * per_point + p) * d..(b * per_point + p + 1) * d];
                    out.extend((0..d).map(|k| (0..d).map(|l| hb[k * d + l] as f64 * vp[l] as f64).sum::<f64>() as f32));
                }
            }
            return Ok(out);
        }
        let moments = self.moments(x, rows, Second::Hvp { v, per_point }, options)?;
        Ok(moments.second.iter().zip(v).map(|(&u, &vi)| (-(vi as f64) / var + u as f64 / (var * var)) as f32).collect())
    }

    /// ∇log p [B, D] and H·v [B, P, D] from the same passes over the data (the first pass gives the score anyway):
    /// what a matrix-free eigensolver needs at a new point.
    pub fn score_and_hessian_vector(
        &self,
        x: &[f32],
        v: &[f32],
        per_point: usize,
        options: JobOptions,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let rows = self.check_points(x)?;
        if self.kernels() != KdePath::Tiled {
            return Ok((self.score(x, options)?, self.hessian_vector(x, v, per_point, options)?));
        }
        let d = self.dim;
        self.check_directions(v, rows, per_point)?;
        let var = self.scale.sigma * self.scale.sigma;
        let moments = self.moments(x, rows, Second::Hvp { v, per_point }, options)?;
        let mut score = Vec::with_capacity(rows * d);
        for b in 0..rows {
            let s = moments.state[4 * b + 1] as f64;
            score.extend(moments.acc[b * d..(b + 1) * d].iter().map(|&a| (a as f64 / (s * var)) as f32));
        }
        let hv = moments
            .second
            .iter()
            .zip(v)
            .map(|(&u, &vi)| (-(vi as f64) / var + u as f64 / (var * var)) as f32)
            .collect();
        Ok((score, hv))
    }

    /// Device bytes of evaluating the Hessian at one query point, and the fixed bytes of the data, under `budget`.
    pub fn hessian_cost(&self, budget: u64) -> RowCost {
        self.row_cost(self.kernels(), Second::Covariance, self.data_bytes() <= budget / 2)
    }

    /// Device bytes of `per_point` Hessian-vector products at one query point, and the data's, under `budget`.
    pub fn hessian_vector_cost(&self, per_point: usize, budget: u64) -> RowCost {
        let path = self.kernels();
        // The small and per-point covariances form the Hessian and apply it on the host.
        let second = if path == KdePath::Tiled { Second::Hvp { v: &[], per_point } } else { Second::Covariance };
        self.row_cost(path, second, self.data_bytes() <= budget / 2)
    }

    /// The device's binding and dispatch limits with `budget`, for planning chunks of query points.
    pub fn device_bounds(&self, budget: u64) -> DeviceBounds {
        DeviceBounds {
            memory_budget: budget,
            max_binding_bytes: self.ctx.caps.max_binding_bytes(),
            max_rows_per_dispatch: self.ctx.caps.max_workgroups_per_dimension() as u64,
        }
    }

    fn check_points(&self, x: &[f32]) -> Result<usize> {
        let d = self.dim;
        if x.len() % d != 0 {
            return Err(Error::bad_input("X", format!("{} values do not form rows of D = {d}", x.len())));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::NotFinite { what: "X".into(), row: i / d, value: x[i] as f64 });
        }
        Ok(x.len() / d)
    }

    fn tiles(&self) -> Vec<Range<usize>> {
        (0..self.n).step_by(self.tile_rows).map(|s| s..(s + self.tile_rows).min(self.n)).collect()
    }

    /// Words per query point of the logits buffer: a tile of logits for the tiled kernels, of weights for the
    /// per-point covariance, none for the small kernels.
    fn logit_words(&self, path: KdePath) -> usize {
        if path == KdePath::Small {
            0
        } else {
            self.tile_rows
        }
    }

    /// Slices of the largest tile on the per-point path (kde_point_moments.wgsl).
    fn point_slices(&self) -> usize {
        self.tile_rows.div_ceil(POINT_SLICE)
    }

    fn data_bytes(&self) -> u64 {
        4 * self.data.len() as u64
    }

    fn row_cost(&self, path: KdePath, second: Second, resident: bool) -> RowCost {
        let (d, t) = (self.dim as u64, self.logit_words(path) as u64);
        // x, state, acc, logits, the per-point path's slices, and the read-backs of state and acc.
        let slices = if path == KdePath::Point { self.point_slices() as u64 } else { 0 };
        let mut words = d + 4 + d + t + slices * (4 + d) + 4 + d;
        let mut widest = t.max(d).max(4);
        if path == KdePath::Point && matches!(second, Second::Covariance) {
            // The per-slice covariances.
            words += self.point_slices() as u64 * d * d;
            widest = widest.max(self.point_slices() as u64 * d * d);
        }
        match second {
            Second::None => {}
            Second::Covariance => {
                words += 2 * d * d;
                widest = widest.max(d * d);
            }
            Second::Hvp { per_point, .. } => {
                let p = per_point as u64;
                words += p * d + p * t + 2 * p * d;
                widest = widest.max(p * t).max(p * d);
            }
        }
        let fixed = if resident { self.data_bytes() } else { 4 * (self.tile_rows * self.dim) as u64 };
        RowCost { bytes_per_row: 4 * words, widest_row_bytes: 4 * widest, fixed_bytes: fixed }
    }

    fn allocate(&self, path: KdePath, rows: usize, second: Second, label: &str) -> Slot {
        let (d, t) = (self.dim, self.logit_words(path));
        let buffer = |name: &str, words: usize| {
            self.ctx.buffer(&format!("{label}/{name}"), (words * 4) as u64, BufferRole::Storage)
        };
        let readback = |name: &str, words: usize| {
            self.ctx.buffer(&format!("{label}/{name}"), (words * 4) as u64, BufferRole::Readback)
        };
        let (second_words, v_words, proj_words) = match second {
            Second::None => (0, 0, 0),
            Second::Covariance => (rows * d * d, 0, 0),
            Second::Hvp { per_point, .. } => (rows * per_point * d, rows * per_point * d, rows * per_point * t),
        };
        let slices = if path == KdePath::Point { self.point_slices() } else { 0 };
        let cov_slices =
            if path == KdePath::Point && matches!(second, Second::Covariance) { self.point_slices() } else { 0 };
        Slot {
            partial_cov: buffer("partial_cov", cov_slices * rows * d * d),
            partial_state: buffer("partial_state", slices * rows * 4),
            partial_acc: buffer("partial_acc", slices * rows * d),
            x: buffer("x", rows * d),
            state: buffer("state", rows * 4),
            acc: buffer("acc", rows * d),
            logits: buffer("logits", rows * t),
            second: buffer("second", second_words),
            v: buffer("v", v_words),
            proj: buffer("proj", proj_words),
            readback: [
                readback("readback/state", rows * 4),
                readback("readback/acc", rows * d),
                readback("readback/second", second_words),
            ],
        }
    }

    /// Runs the passes over the data for every chunk of query points.
    fn moments(&self, x: &[f32], rows: usize, second: Second, options: JobOptions) -> Result<Moments> {
        let resident = self.data_bytes() <= options.memory_budget / 2;
        let bounds = self.device_bounds(options.memory_budget);
        let path = self.kernels();
        let chunks = plan_chunks(rows, self.row_cost(path, second, resident), bounds)?;
        let d = self.dim;
        let per_point = match second {
            Second::Hvp { per_point, .. } => per_point,
            _ => 0,
        };
        let second_per_row = match second {
            Second::None => 0,
            Second::Covariance => d * d,
            Second::Hvp { per_point, .. } => per_point * d,
        };
        let mut out =
            Moments { state: vec![0.0; rows * 4], acc: vec![0.0; rows * d], second: vec![0.0; rows * second_per_row] };
        if chunks.is_empty() {
            return Ok(out);
        }
        let tiles_on_device = if resident {
            Some(self.resident.get_or_init(|| {
                self.tiles()
                    .iter()
                    .enumerate()
                    .map(|(t, r)| self.ctx.upload(&format!("kde/data/tile{t}"), &self.data[r.start * d..r.end * d]))
                    .collect()
            }))
        } else {
            None
        };
        let staging = match tiles_on_device {
            Some(_) => None,
            None => Some(self.ctx.buffer("kde/data/staging", (self.tile_rows * d * 4) as u64, BufferRole::Storage)),
        };
        let slot = self.allocate(path, chunks[0].len(), second, "kde");
        options.progress.start("kde", rows);
        for chunk in &chunks {
            let b = chunk.len();
            self.ctx.write(&slot.x, &x[chunk.start * d..chunk.end * d]);
            if let Second::Hvp { v, per_point } = second {
                self.ctx.write(&slot.v, &v[chunk.start * per_point * d..chunk.end * per_point * d]);
            }
            let mut feeder =
                TileFeeder { field: self, resident: tiles_on_device, staging: staging.as_ref(), last: None };
            let tiles = self.tiles();
            for (t, range) in tiles.iter().enumerate() {
                let (data, mut rec) = feeder.begin(t, range, "kde/pass1")?;
                let p = self.params(b, range.len(), per_point, t == 0);
                let first_pass: &[KdeKernel] = match path {
                    KdePath::Small => &[KdeKernel::SmallMoments],
                    KdePath::Point => &[KdeKernel::PointMoments, KdeKernel::PointCombine],
                    _ => &[KdeKernel::Distances, KdeKernel::SoftmaxUpdate, KdeKernel::MeanUpdate],
                };
                op::record(&mut rec, first_pass, &p, &slot.buffers(data))?;
                feeder.submit(rec)?;
            }
            let second_pass: &[KdeKernel] = match second {
                Second::None => &[],
                Second::Covariance if path == KdePath::Small => &[KdeKernel::SmallCovariance],
                Second::Covariance if path == KdePath::Point => {
                    &[KdeKernel::PointWeights, KdeKernel::PointCovarianceRows, KdeKernel::PointCovarianceCombine]
                }
                Second::Covariance => &[KdeKernel::Covariance],
                Second::Hvp { .. } => &[KdeKernel::HvpProject, KdeKernel::HvpAccumulate],
            };
            if !second_pass.is_empty() {
                for (t, range) in tiles.iter().enumerate() {
                    let (data, mut rec) = feeder.begin(t, range, "kde/pass2")?;
                    let p = self.params(b, range.len(), per_point, t == 0);
                    let buffers = slot.buffers(data);
                    // With one tile the tiled first pass's logits are still in place (the small and per-point
                    // covariances compute their own weights).
                    if path == KdePath::Tiled && tiles.len() > 1 {
                        op::record(&mut rec, &[KdeKernel::Distances], &p, &buffers)?;
                    }
                    op::record(&mut rec, second_pass, &p, &buffers)?;
                    feeder.submit(rec)?;
                }
            }
            let mut rec = Recorder::new(&self.ctx, "kde/readback");
            rec.copy(&slot.state, &slot.readback[0], (b * 16) as u64);
            rec.copy(&slot.acc, &slot.readback[1], (b * d * 4) as u64);
            rec.copy(&slot.second, &slot.readback[2], (b * second_per_row * 4) as u64);
            let index = rec.submit();
            let state: Vec<f32> = self.ctx.read_mapped(&slot.readback[0], b * 4, Some(index.clone()))?;
            let acc: Vec<f32> = self.ctx.read_mapped(&slot.readback[1], b * d, Some(index.clone()))?;
            let sec: Vec<f32> = self.ctx.read_mapped(&slot.readback[2], b * second_per_row, Some(index))?;
            out.state[chunk.start * 4..chunk.end * 4].copy_from_slice(&state);
            out.acc[chunk.start * d..chunk.end * d].copy_from_slice(&acc);
            out.second[chunk.start * second_per_row..chunk.end * second_per_row].copy_from_slice(&sec);
            options.progress.advance(b);
        }
        options.progress.finish();
        Ok(out)
    }

    fn params(&self, rows: usize, tile_rows: usize, per_point: usize, first: bool) -> KdeParams {
        KdeParams {
            rows: rows as u32,
            dim: self.dim as u32,
            tile_rows: tile_rows as u32,
            ld: self.tile_rows as u32,
            per_point: per_point as u32,
            first: first as u32,
            alpha: self.scale.alpha as f32,
            inv_two_var: (0.5 / (self.scale.sigma * self.scale.sigma)) as f32,
        }
    }
}

/// Hands out each data tile's buffer: a resident tile, or the staging buffer refilled from the host. Every tile is
/// one submit; when streaming, at most two are in flight so the staged uploads stay bounded.
struct TileFeeder<'a> {
    field: &'a KdeField,
    resident: Option<&'a Vec<wgpu::Buffer>>,
    staging: Option<&'a wgpu::Buffer>,
    last: Option<wgpu::SubmissionIndex>,
}

impl<'a> TileFeeder<'a> {
    fn begin(&mut self, t: usize, range: &Range<usize>, label: &str) -> Result<(&'a wgpu::Buffer, Recorder<'a>)> {
        let ctx = &self.field.ctx;
        let rec = Recorder::new(ctx, &format!("{label}/tile{t}"));
        if let Some(tiles) = self.resident {
            return Ok((&tiles[t], rec));
        }
        let staging = self.staging.ok_or_else(|| Error::Device("no staging buffer for streamed data".into()))?;
        let d = self.field.dim;
        ctx.write(staging, &self.field.data[range.start * d..range.end * d]);
        Ok((staging, rec))
    }

    fn submit(&mut self, rec: Recorder) -> Result<()> {
        let index = rec.submit();
        if self.resident.is_none() {
            if let Some(previous) = self.last.replace(index) {
                self.field.ctx.wait_for(Some(previous))?;
            }
        }
        Ok(())
    }
}
