//! User fields: a WGSL file with `fn field(x: State, t: f32) -> State` (and optionally
//! `fn field_jvp(x: State, v: State, t: f32) -> State`), compiled into the engine's own kernels.
//!
//! The engine writes `const DIM: u32 = D;` and `alias State = array<f32, DIM>;` on the first two lines, then the
//! user's code unchanged, then its entry points; names starting with `scorelens_` and `main` are reserved. Each
//! invocation evaluates one row, so a field is any per-point function the user can write in WGSL.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::field::chunked::{run_chunked, ChunkedJob};
use crate::field::validate_batch;
use crate::gpu::{grid_2d, BufferRole, GpuContext, Kernel, Recorder};
use crate::model::NoiseSchedule;
use crate::scheduler::{JobOptions, RowCost};

/// Lines the engine puts before the user's code.
const PRELUDE_LINES: usize = 2;
const WORKGROUP: u32 = 64;

/// What a user kernel evaluates per invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Score,
    Jvp,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct UserParams {
    /// Invocations with work: points (score) or (point, tangent) pairs (JVP).
    pub rows: u32,
    /// 1 when each point has its own t, 0 when one t serves all.
    pub t_stride: u32,
    /// Tangents per point (JVP).
    pub per_point: u32,
    /// 1: store J·V of each point as [D, P] (columns of the Jacobian), 0: as [P, D].
    pub transposed: u32,
}

pub struct UserField {
    ctx: Arc<GpuContext>,
    name: String,
    code: String,
    dim: usize,
    schedule: NoiseSchedule,
    score_kernel: Kernel,
    jvp_kernel: Option<Kernel>,
}

impl UserField {
    /// Reads and compiles `path`; errors name the file and the line in it.
    pub fn from_file(ctx: Arc<GpuContext>, path: &Path, dim: usize, schedule: NoiseSchedule) -> Result<Self> {
        let code = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_source(ctx, &path.display().to_string(), &code, dim, schedule)
    }

    /// Compiles a field from WGSL text; `name` stands for the file in error messages.
    pub fn from_source(
        ctx: Arc<GpuContext>,
        name: &str,
        code: &str,
        dim: usize,
        schedule: NoiseSchedule,
    ) -> Result<Self> {
        if dim == 0 || dim > 1 << 16 {
            return Err(Error::InvalidArgument(format!("dim {dim}: expected 1 ≤ D ≤ 65536")));
        }
        let functions = check_user_code(name, code, dim)?;
        let has_jvp = functions.contains(&"field_jvp".to_string());
        let score_source = user_kernel_source(code, dim, Entry::Score);
        check_compiles(name, code, &score_source)?;
        let score_kernel = ctx.compile_source("user_field", &score_source, &[], false)?;
        let jvp_kernel = if has_jvp {
            let source = user_kernel_source(code, dim, Entry::Jvp);
            check_compiles(name, code, &source)?;
            Some(ctx.compile_source("user_field_jvp", &source, &[], false)?)
        } else {
            None
        };
        Ok(UserField { ctx, name: name.into(), code: code.into(), dim, schedule, score_kernel, jvp_kernel })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user's WGSL, as given.
    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn schedule(&self) -> NoiseSchedule {
        self.schedule
    }

    pub fn ctx(&self) -> &GpuContext {
        &self.ctx
    }

    /// Whether the file defines `field_jvp` (exact forward-mode products).
    pub fn has_jvp(&self) -> bool {
        self.jvp_kernel.is_some()
    }

    /// s(x, t) for every row of `x`; `t` has one entry per row or one for all.
    pub fn score(&self, x: &[f32], t: &[f32], options: JobOptions) -> Result<Vec<f32>> {
        let rows = validate_batch(x, self.dim, t, "X", "T")?;
        run_chunked(&self.ctx, &UserScoreJob { field: self, x, t }, rows, "user/score", options)
    }

    /// Records field(x, t) for `rows` points already on the device.
    pub(crate) fn record_score(
        &self,
        rec: &mut Recorder,
        x: &wgpu::Buffer,
        t: &wgpu::Buffer,
        t_per_row: bool,
        rows: usize,
        out: &wgpu::Buffer,
    ) -> Result<()> {
        let params = UserParams { rows: rows as u32, t_stride: t_per_row as u32, per_point: 1, transposed: 0 };
        let uniform = self.ctx.uniform("user/params", &params);
        rec.dispatch(&self.score_kernel, &[&uniform, x, t, out], self.groups(rows))
    }

    /// Records field_jvp for `per_point` tangents of each of `points` points (`v` [points, P, D]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record_jvp(
        &self,
        rec: &mut Recorder,
        x: &wgpu::Buffer,
        t: &wgpu::Buffer,
        t_per_row: bool,
        points: usize,
        v: &wgpu::Buffer,
        per_point: usize,
        transposed: bool,
        out: &wgpu::Buffer,
    ) -> Result<()> {
        let kernel = self.jvp_kernel.as_ref().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{}: defines no `fn field_jvp(x: State, v: State, t: f32) -> State`",
                self.name
            ))
        })?;
        let rows = points * per_point;
        let params = UserParams {
            rows: rows as u32,
            t_stride: t_per_row as u32,
            per_point: per_point as u32,
            transposed: transposed as u32,
        };
        let uniform = self.ctx.uniform("user/params", &params);
        rec.dispatch(kernel, &[&uniform, x, t, v, out], self.groups(rows))
    }

    fn groups(&self, rows: usize) -> [u32; 3] {
        let (gx, gy) = grid_2d((rows as u32).div_ceil(WORKGROUP), self.ctx.caps.max_workgroups_per_dimension());
        [gx, gy, 1]
    }
}

/// The two lines the engine writes before the user's code.
pub(crate) fn user_prelude(dim: usize) -> String {
    format!("const DIM: u32 = {dim}u;\nalias State = array<f32, DIM>;\n")
}

/// The whole WGSL of a user kernel: prelude, the user's code, the engine's entry point.
fn user_kernel_source(code: &str, dim: usize, entry: Entry) -> String {
    let mut source = user_prelude(dim);
    source.push_str(code);
    if !code.ends_with('\n') {
        source.push('\n');
    }
    source.push_str(USER_COMMON);
    source.push_str(match entry {
        Entry::Score => USER_SCORE_ENTRY,
        Entry::Jvp => USER_JVP_ENTRY,
    });
    source
}

const USER_COMMON: &str = r#"
struct ScorelensParams { rows: u32, t_stride: u32, per_point: u32, transposed: u32 }
@group(0) @binding(0) var<uniform> scorelens_params: ScorelensParams;
@group(0) @binding(1) var<storage, read> scorelens_x: array<f32>;
@group(0) @binding(2) var<storage, read> scorelens_t: array<f32>;

fn scorelens_row(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 64u;
}

fn scorelens_load_x(point: u32) -> State {
    var s: State;
    for (var i = 0u; i < DIM; i++) {
        s[i] = scorelens_x[point * DIM + i];
    }
    return s;
}
"#;

const USER_SCORE_ENTRY: &str = r#"
@group(0) @binding(3) var<storage, read_write> scorelens_out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let row = scorelens_row(gid, groups);
    if row >= scorelens_params.rows {
        return;
    }
    let y = field(scorelens_load_x(row), scorelens_t[row * scorelens_params.t_stride]);
    for (var i = 0u; i < DIM; i++) {
        scorelens_out[row * DIM + i] = y[i];
    }
}
"#;

const USER_JVP_ENTRY: &str = r#"
@group(0) @binding(3) var<storage, read> scorelens_v: array<f32>;
@group(0) @binding(4) var<storage, read_write> scorelens_out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let row = scorelens_row(gid, groups);
    if row >= scorelens_params.rows {
        return;
    }
    let p = scorelens_params.per_point;
    let point = row / p;
    let j = row % p;
    var v: State;
    for (var i = 0u; i < DIM; i++) {
        v[i] = scorelens_v[row * DIM + i];
    }
    let y = field_jvp(scorelens_load_x(point), v, scorelens_t[point * scorelens_params.t_stride]);
    for (var i = 0u; i < DIM; i++) {
        if scorelens_params.transposed == 1u {
            scorelens_out[(point * DIM + i) * p + j] = y[i];
        } else {
            scorelens_out[row * DIM + i] = y[i];
        }
    }
}
"#;

/// Parses the user's code alone (with the prelude) and checks the functions the engine calls: returns the names
/// of the functions it defines. Errors carry the user's file name and line.
pub(crate) fn check_user_code(name: &str, code: &str, dim: usize) -> Result<Vec<String>> {
    let source = format!("{}{code}", user_prelude(dim));
    let module = parse_and_validate(name, &source, code.lines().count())?;
    let functions: Vec<String> = module.functions.iter().filter_map(|(_, f)| f.name.clone()).collect();
    let signature = |fname: &str, args: usize| -> Result<bool> {
        let Some((_, f)) = module.functions.iter().find(|(_, f)| f.name.as_deref() == Some(fname)) else {
            return Ok(false);
        };
        let state_ok = |ty: naga::Handle<naga::Type>| match &module.types[ty].inner {
            naga::TypeInner::Array { base, size: naga::ArraySize::Constant(n), .. } => {
                n.get() as usize == dim
                    && matches!(module.types[*base].inner, naga::TypeInner::Scalar(s) if s == naga::Scalar::F32)
            }
            _ => false,
        };
        let ok = f.arguments.len() == args
            && f.arguments[..args - 1].iter().all(|a| state_ok(a.ty))
            && matches!(module.types[f.arguments[args - 1].ty].inner, naga::TypeInner::Scalar(s) if s == naga::Scalar::F32)
            && f.result.as_ref().is_some_and(|r| state_ok(r.ty));
        if !ok {
            let wanted = if args == 2 {
                "fn field(x: State, t: f32) -> State"
            } else {
                "fn field_jvp(x: State, v: State, t: f32) -> State"
            };
            return Err(Error::bad_input(name, format!("`{fname}` must be declared as `{wanted}`")));
        }
        Ok(true)
    };
    if !signature("field", 2)? {
        return Err(Error::bad_input(name, "defines no `fn field(x: State, t: f32) -> State`"));
    }
    signature("field_jvp", 3)?;
    if functions.iter().any(|f| f == "main" || f.starts_with("scorelens_")) {
        return Err(Error::bad_input(name, "the names `main` and `scorelens_*` are reserved for the engine"));
    }
    Ok(functions)
}

/// Checks that a generated kernel (user's code + engine entry) is valid, with errors in the user's terms.
fn check_compiles(name: &str, code: &str, source: &str) -> Result<()> {
    parse_and_validate(name, source, code.lines().count()).map(|_| ())
}

/// Parses and validates `source` (prelude, `user_lines` lines of the user's code, maybe the engine's entry);
/// an error's line is counted in the user's file.
fn parse_and_validate(name: &str, source: &str, user_lines: usize) -> Result<naga::Module> {
    let located = |location: Option<naga::SourceLocation>, message: String| {
        let at = match location.map(|l| l.line_number as usize) {
            Some(line) if line <= PRELUDE_LINES => "in the engine's prelude (DIM, State): ".to_string(),
            Some(line) if line <= PRELUDE_LINES + user_lines => {
                let column = location.map_or(0, |l| l.line_position);
                format!("line {}, column {column}: ", line - PRELUDE_LINES)
            }
            Some(_) => "where the engine calls `field`/`field_jvp` (check their declarations): ".to_string(),
            None => String::new(),
        };
        Error::bad_input(name, format!("{at}{message}"))
    };
    let module = naga::front::wgsl::parse_str(source).map_err(|e| located(e.location(source), e.message().into()))?;
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .validate(&module)
        .map_err(|e| located(e.location(source), validation_message(&e)))?;
    Ok(module)
}

fn validation_message(e: &naga::WithSpan<naga::valid::ValidationError>) -> String {
    use std::error::Error as _;
    let mut message = e.as_inner().to_string();
    let mut source = e.as_inner().source();
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    message
}

/// One evaluation of a user field over a batch, chunked by the memory budget.
struct UserScoreJob<'a> {
    field: &'a UserField,
    x: &'a [f32],
    t: &'a [f32],
}

pub(crate) struct UserSlot {
    x: wgpu::Buffer,
    t: wgpu::Buffer,
    out: wgpu::Buffer,
    readback: wgpu::Buffer,
}

impl ChunkedJob for UserScoreJob<'_> {
    type Slot = UserSlot;

    fn outputs_per_row(&self) -> usize {
        self.field.dim
    }

    fn row_cost(&self) -> RowCost {
        let d = self.field.dim as u64;
        RowCost { bytes_per_row: 4 * (3 * d + 1), widest_row_bytes: 4 * d, fixed_bytes: 0 }
    }

    fn max_rows_per_dispatch(&self, ctx: &GpuContext) -> u64 {
        ctx.caps.max_workgroups_per_dimension() as u64
            * ctx.caps.max_workgroups_per_dimension() as u64
            * WORKGROUP as u64
    }

    fn allocate(&self, ctx: &GpuContext, rows: usize, label: &str) -> UserSlot {
        let d = self.field.dim;
        let buffer =
            |n: &str, words: usize| ctx.buffer(&format!("{label}/{n}"), (words * 4) as u64, BufferRole::Storage);
        UserSlot {
            x: buffer("x", rows * d),
            t: buffer("t", rows),
            out: buffer("out", rows * d),
            readback: ctx.buffer(&format!("{label}/readback"), (rows * d * 4) as u64, BufferRole::Readback),
        }
    }

    fn record(&self, ctx: &GpuContext, slot: &UserSlot, rows: Range<usize>, rec: &mut Recorder) -> Result<()> {
        let d = self.field.dim;
        ctx.write(&slot.x, &self.x[rows.start * d..rows.end * d]);
        let per_row = self.t.len() != 1;
        if per_row {
            ctx.write(&slot.t, &self.t[rows.clone()]);
        } else {
            ctx.write(&slot.t, self.t);
        }
        self.field.record_score(rec, &slot.x, &slot.t, per_row, rows.len(), &slot.out)?;
        rec.copy(&slot.out, &slot.readback, (rows.len() * d * 4) as u64);
        Ok(())
    }

    fn readback<'s>(&self, slot: &'s UserSlot) -> &'s wgpu::Buffer {
        &slot.readback
    }
}
