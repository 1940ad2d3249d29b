//! The fused flow propagator of user fields with `field_jvp`: one workgroup per trajectory carries x and its K
//! tangent vectors through blocks of RK4 steps of dx/dt = field(x, t) and its variational equation, and
//! re-orthonormalises them (classical Gram–Schmidt, each column twice) after each block, writing R_jj (and R when
//! asked). Each invocation steps x itself and carries its share of the tangents one at a time; the QR's
//! projections are split over tangents and coordinates (shaders/user_flow.wgsl says how). Up to
//! D = 512 (`MOST_UNROLLED_DIM`) the loops over the coordinates are unrolled here, before the driver sees them. Nothing
//! returns to the host inside a call but the R factors and a per-trajectory status word, so long runs (10⁵ steps)
//! cost a few hundred submits.

use crate::derivative::propagator::{Factors, Propagator};
use crate::error::{Error, Result};
use crate::field::user::user_prelude;
use crate::field::UserField;
use crate::gpu::{grid_2d, BufferRole, GpuContext, Kernel, Recorder};

const FLOW_SHADER: &str = include_str!("../../shaders/user_flow.wgsl");
/// Most invocations per trajectory: more columns than this take turns.
const MAX_WORKGROUP: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FlowParams {
    trajectories: u32,
    steps: u32,
    blocks: u32,
    keep_r: u32,
    col_begin: u32,
    col_end: u32,
    first_block: u32,
    first_step: u32,
    canary: u32,
    rounds: u32,
    stages: u32,
    _pad: [u32; 2],
    dt: f32,
    t: f32,
    _pad2: [f32; 2],
}

/// Loop iterations one dispatch may run per invocation: llvmpipe ends every loop of a dispatch silently after
/// 65,535 in total (its loop limiter); the kernel's canary detects it, this keeps clear of it.
const LOOP_BUDGET: usize = 60_000;
/// Dispatches recorded into one submit (one retry unit: a truncated submit is re-run from a copy of the state).
const MOST_DISPATCHES_PER_SUBMIT: usize = 512;
/// Most times a submit is re-run with a smaller loop estimate.
const MOST_RETRIES: usize = 8;
/// Iterations of the kernel's final canary loop.
const CANARY: u32 = 2;
/// RK4.
const STAGES: usize = 4;

/// One dispatch: `blocks` × { `steps` RK4 steps, then QR columns `columns` }.
#[derive(Debug, Clone)]
struct Piece {
    blocks: usize,
    steps: usize,
    columns: std::ops::Range<usize>,
    /// Within the call: the first block (diag and R slots) and the first step.
    first_block: usize,
    first_step: usize,
}

pub(crate) struct UserFlow<'f> {
    field: &'f UserField,
    kernel: Kernel,
    k: usize,
    layout: Layout,
    trajectories: usize,
    dt: f64,
    t: f64,
    /// [B, D].
    x: wgpu::Buffer,
    /// [B, K + 1, D]: the K tangents, then a scratch row.
    q: wgpu::Buffer,
    /// Copies of x and q at the start of a submit, to re-run it when the driver cut it short.
    x_backup: wgpu::Buffer,
    q_backup: wgpu::Buffer,
    /// Loop iterations assumed per call of the user's `field` or `field_jvp`: D at first (one loop over the
    /// coordinates), doubled after a dispatch ran short.
    user_loops: usize,
}

/// How the K tangents are spread: W invocations per trajectory, each carrying ⌈K / W⌉ tangents in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    workgroup: usize,
    rounds: usize,
}

impl Layout {
    /// On a CPU driver (lavapipe) one SIMD vector of 8 lanes (idle lanes cost as much as busy ones); on a GPU one
    /// invocation per tangent, up to [`MAX_WORKGROUP`], in whole groups of 8.
    fn for_device(ctx: &GpuContext, k: usize) -> Self {
        let workgroup = if ctx.caps.is_cpu() { 8 } else { k.next_multiple_of(8).min(MAX_WORKGROUP) };
        Layout { workgroup, rounds: k.div_ceil(workgroup) }
    }
}

impl<'f> UserFlow<'f> {
    /// Whether the fused kernel can take K tangents on this device (its workgroup memory holds 2K + 2 words).
    pub fn supports(ctx: &GpuContext, k: usize) -> bool {
        let limits = &ctx.caps.limits;
        (2 * k + 2) * 4 <= limits.max_compute_workgroup_storage_size as usize
            && MAX_WORKGROUP <= limits.max_compute_invocations_per_workgroup as usize
            && MAX_WORKGROUP <= limits.max_compute_workgroup_size_x as usize
    }

    /// Most trajectories one propagator holds: its [B, K + 1, D] tangents within one binding.
    pub fn max_trajectories(ctx: &GpuContext, dim: usize, k: usize) -> usize {
        let per_trajectory = ((k + 1) * dim * 4) as u64;
        ((ctx.caps.max_binding_bytes() / per_trajectory) as usize).max(1)
    }

    pub fn new(field: &'f UserField, x0: &[f32], q0: &[f64], k: usize, dt: f64, t: f64) -> Result<Self> {
        let d = field.dim();
        let layout = Layout::for_device(field.ctx(), k);
        let source = flow_kernel_source(field.code(), d, k, layout);
        let kernel = field.ctx().compile_source("user_flow", &source, &[], false).map_err(|e| match e {
            Error::Kernel { message, .. } => {
                Error::bad_input(field.name(), format!("the fused flow kernel (K = {k}) does not compile: {message}"))
            }
            other => other,
        })?;
        let ctx = field.ctx();
        let trajectories = x0.len() / d;
        let mut q = Vec::with_capacity(trajectories * (k + 1) * d);
        for b in 0..trajectories {
            q.extend(q0[b * k * d..(b + 1) * k * d].iter().map(|&v| v as f32));
            q.extend(std::iter::repeat_n(0.0f32, d));
        }
        Ok(UserFlow {
            field,
            kernel,
            k,
            layout,
            trajectories,
            dt,
            t,
            x: ctx.upload("user_flow/x", x0),
            q: ctx.upload("user_flow/q", &q),
            x_backup: ctx.buffer("user_flow/x_backup", (x0.len() * 4) as u64, BufferRole::Storage),
            q_backup: ctx.buffer("user_flow/q_backup", (q.len() * 4) as u64, BufferRole::Storage),
            user_loops: d,
        })
    }

    /// Loop iterations of one RK4 step in one invocation: the stage loops (x's, then each tangent's),
    /// `user_loops` in each call of the user's functions and, when they are not unrolled, the kernel's loops over
    /// D.
    fn step_loops(&self) -> usize {
        let d = self.field.dim();
        let kd = if d <= MOST_UNROLLED_DIM { 0 } else { d };
        let u = self.user_loops;
        STAGES * (u + 1 + kd) + kd + self.layout.rounds * (1 + 2 * kd + STAGES * (u + 1 + 2 * kd)) + 1
    }

    /// Loop iterations of QR column j in one invocation.
    fn column_loops(&self, j: usize) -> usize {
        let d = self.field.dim();
        let w = self.layout.workgroup;
        let rounds = self.k.div_ceil(w);
        let coordinate_rounds = d.div_ceil(w);
        2 * (j.div_ceil(w) * (d + 1) + coordinate_rounds * (j + 1) + 2) + d + coordinate_rounds + rounds + 1
    }

    /// The dispatches of `blocks` blocks of `steps` steps, each within [`LOOP_BUDGET`].
    fn plan(&self, steps: usize, blocks: usize) -> Vec<Piece> {
        let d = self.field.dim();
        let budget = LOOP_BUDGET.saturating_sub(2 * d + CANARY as usize + 4).max(1);
        let step = self.step_loops();
        let qr: usize = (0..self.k).map(|j| self.column_loops(j)).sum::<usize>() + self.k;
        let block = steps * step + qr + steps + 1;
        let mut pieces = Vec::new();
        if block <= budget {
            let group = budget / block;
            for first in (0..blocks).step_by(group) {
                let n = group.min(blocks - first);
                pieces.push(Piece {
                    blocks: n,
                    steps,
                    columns: 0..self.k,
                    first_block: first,
                    first_step: first * steps,
                });
            }
            return pieces;
        }
        // One block is more than a dispatch: its steps in chunks, then its QR in column ranges.
        let per = (budget / (step + 1)).max(1);
        for b in 0..blocks {
            let mut done = 0;
            while done < steps {
                let n = per.min(steps - done);
                pieces.push(Piece { blocks: 1, steps: n, columns: 0..0, first_block: b, first_step: b * steps + done });
                done += n;
            }
            let mut begin = 0;
            while begin < self.k {
                let mut end = begin;
                let mut loops = 0;
                while end < self.k && (end == begin || loops + self.column_loops(end) < budget) {
                    loops += self.column_loops(end) + 1;
                    end += 1;
                }
                pieces.push(Piece { blocks: 1, steps: 0, columns: begin..end, first_block: b, first_step: 0 });
                begin = end;
            }
        }
        pieces
    }

    /// Runs `pieces` in one submit from the state saved at its start: R_jj [blocks, B, K] and R (when `keep_r`) of
    /// the call's blocks `blocks`, and the status words [B, 2]; None when the driver cut a dispatch short (the state
    /// is then restored).
    #[allow(clippy::type_complexity)]
    fn submit(
        &self,
        pieces: &[Piece],
        first_step: usize,
        blocks: std::ops::Range<usize>,
        keep_r: bool,
    ) -> Result<Option<(Vec<f32>, Option<Vec<f32>>, Vec<u32>)>> {
        let ctx = self.field.ctx();
        let (b, k, d) = (self.trajectories, self.k, self.field.dim());
        let n = blocks.len();
        let diag_len = n * b * k;
        let r_len = if keep_r { n * b * k * k } else { 1 };
        let diag = ctx.buffer("user_flow/diag", (diag_len * 4) as u64, BufferRole::Storage);
        let r = ctx.buffer("user_flow/r", (r_len * 4) as u64, BufferRole::Storage);
        let status_init: Vec<u32> = (0..b).flat_map(|_| [u32::MAX, 0]).collect();
        let status = ctx.upload("user_flow/status", &status_init);
        let (gx, gy) = grid_2d(b as u32, ctx.caps.max_workgroups_per_dimension());
        let x_bytes = (b * d * 4) as u64;
        let q_bytes = (b * (k + 1) * d * 4) as u64;
        let mut rec = Recorder::new(ctx, "user_flow");
        rec.copy(&self.x, &self.x_backup, x_bytes);
        rec.copy(&self.q, &self.q_backup, q_bytes);
        for piece in pieces {
            let params = FlowParams {
                trajectories: b as u32,
                steps: piece.steps as u32,
                blocks: piece.blocks as u32,
                keep_r: keep_r as u32,
                col_begin: piece.columns.start as u32,
                col_end: piece.columns.end as u32,
                first_block: (piece.first_block - blocks.start) as u32,
                first_step: (first_step + piece.first_step) as u32,
                canary: CANARY,
                rounds: self.layout.rounds as u32,
                stages: STAGES as u32,
                _pad: [0; 2],
                _pad2: [0.0; 2],
                dt: self.dt as f32,
                t: self.t as f32,
            };
            let uniform = ctx.uniform("user_flow/params", &params);
            rec.dispatch(&self.kernel, &[&self.x, &self.q, &diag, &r, &status, &uniform], [gx, gy, 1])?;
        }
        rec.submit();
        let status: Vec<u32> = ctx.download(&status, 2 * b)?;
        if status.chunks(2).any(|s| s[1] != 0) {
            let mut rec = Recorder::new(ctx, "user_flow/restore");
            rec.copy(&self.x_backup, &self.x, x_bytes);
            rec.copy(&self.q_backup, &self.q, q_bytes);
            rec.submit();
            return Ok(None);
        }
        let diag: Vec<f32> = ctx.download(&diag, diag_len)?;
        let r = if keep_r { Some(ctx.download(&r, r_len)?) } else { None };
        Ok(Some((diag, r, status)))
    }
}

impl Propagator for UserFlow<'_> {
    fn advance(&mut self, first: usize, steps: usize, blocks: usize, keep_r: bool) -> Result<Vec<Factors>> {
        let (b, k) = (self.trajectories, self.k);
        // One submit's R (or R_jj) within one binding.
        let per_block = (b * k * if keep_r { k } else { 1 } * 4) as u64;
        let binding_blocks = ((self.field.ctx().caps.max_binding_bytes() / per_block) as usize).max(1);
        let mut factors = Vec::with_capacity(blocks);
        let mut done = 0;
        let mut retries = 0;
        while done < blocks {
            // The blocks of this submit: whole blocks, as many as MOST_DISPATCHES_PER_SUBMIT dispatches and one
            // binding of R hold (at least one block).
            let all = self.plan(steps, blocks - done);
            let mut end = 0;
            for (count, piece) in all.iter().enumerate() {
                let piece_end = piece.first_block + piece.blocks;
                if count == MOST_DISPATCHES_PER_SUBMIT || (piece_end > binding_blocks && end > 0) {
                    break;
                }
                if piece.columns.end == k {
                    end = piece_end;
                }
            }
            let end = end.max(1);
            let pieces: Vec<Piece> = all.into_iter().filter(|p| p.first_block < end).collect();
            let Some((diag, r, status)) = self.submit(&pieces, first + done * steps, 0..end, keep_r)? else {
                retries += 1;
                if retries > MOST_RETRIES {
                    return Err(Error::bad_input(
                        self.field.name(),
                        format!(
                            "one RK4 step of the field runs more loop iterations than this driver allows in one \
                             dispatch ({LOOP_BUDGET}); the fused flow path cannot run it (K = {k})"
                        ),
                    ));
                }
                self.user_loops *= 2;
                continue;
            };
            if let Some((row, step)) =
                status.chunks(2).map(|s| s[0]).enumerate().filter(|(_, s)| *s != u32::MAX).min_by_key(|(_, s)| *s)
            {
                let (x, _) = self.state()?;
                let d = self.field.dim();
                let value = x[row * d..(row + 1) * d].iter().find(|v| !v.is_finite()).copied().unwrap_or(f32::NAN);
                return Err(Error::NotFinite {
                    what: format!(
                        "{}: the flow's state or tangents of trajectory {row} after step {step}",
                        self.field.name()
                    ),
                    row,
                    value: value as f64,
                });
            }
            for block in 0..end {
                let log_diag = diag[block * b * k..(block + 1) * b * k].iter().map(|&v| (v as f64).ln()).collect();
                let r = r
                    .as_ref()
                    .map(|r| r[block * b * k * k..(block + 1) * b * k * k].iter().map(|&v| v as f64).collect());
                factors.push(Factors { log_diag, r });
            }
            done += end;
        }
        Ok(factors)
    }

    fn state(&mut self) -> Result<(Vec<f32>, Vec<f64>)> {
        let d = self.field.dim();
        let (b, k) = (self.trajectories, self.k);
        let x: Vec<f32> = self.field.ctx().download(&self.x, b * d)?;
        let all: Vec<f32> = self.field.ctx().download(&self.q, b * (k + 1) * d)?;
        let q = all.chunks((k + 1) * d).flat_map(|rows| rows[..k * d].iter().map(|&v| v as f64)).collect();
        Ok((x, q))
    }
}

/// The user's code followed by the flow kernel (shaders/user_flow.wgsl) for K tangents. Up to
/// [`MOST_UNROLLED_DIM`], the kernel's loops marked [`UNROLLED_LOOP`] are unrolled, and so are the user's loops
/// `for (var i = 0u; i < DIM; i++) { … }` (any name for i) when the result is the same program: it still
/// validates (a `break`, `continue` or assignment to i in the body would not) — otherwise the user's code goes in
/// as written.
fn flow_kernel_source(code: &str, dim: usize, k: usize, layout: Layout) -> String {
    let assemble = |user: &str, kernel: &str| {
        let mut source = user_prelude(dim);
        source.push_str(user);
        if !user.ends_with('\n') {
            source.push('\n');
        }
        source.push_str(&format!("const SCORELENS_K: u32 = {k}u;\nconst SCORELENS_W: u32 = {}u;\n", layout.workgroup));
        source.push_str(kernel);
        source
    };
    if dim > MOST_UNROLLED_DIM {
        return assemble(code, FLOW_SHADER);
    }
    let kernel = unroll_loops(FLOW_SHADER, dim, |line| (line == UNROLLED_LOOP).then(|| "i".to_string()));
    let user = unroll_loops(code, dim, user_dim_loop);
    if user != code {
        let source = assemble(&user, &kernel);
        if validates(&source) {
            return source;
        }
    }
    assemble(code, &kernel)
}

/// Most D whose loops the kernel unrolls (its source grows as D).
const MOST_UNROLLED_DIM: usize = 512;
/// How the kernel marks a loop over the coordinates that [`unroll_loops`] unrolls.
const UNROLLED_LOOP: &str = "for (var i = 0u; i < DIM; i++) { // unroll";

/// The counter's name when `line` (trimmed) is `for (var NAME = 0u; NAME < DIM; NAME++) {`.
fn user_dim_loop(line: &str) -> Option<String> {
    let rest = line.strip_prefix("for (var ")?;
    let (name, rest) = rest.split_once(" = 0u; ")?;
    let simple = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (simple && rest == format!("{name} < DIM; {name}++) {{")).then(|| name.to_string())
}

/// Repeats the body of every loop whose header line `header` recognises (giving its counter's name) for
/// counter = 0, …, D − 1, each copy a block that binds `let <counter> = <n>u;`, so every index by the counter is
/// a constant. Why: lavapipe indexes a private array with a run-time index lane by lane (a gather or scatter per
/// element), and leaves loops over D as loops; unrolled, the Lorenz-96 step at D = 40 runs about 4× faster. The
/// body ends at the first line after the header that closes a brace at the header's indentation; a body whose
/// braces do not balance is left as a loop.
fn unroll_loops(text: &str, dim: usize, header: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(counter) = header(line.trim()) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let indent = &line[..line.len() - line.trim_start().len()];
        let close = format!("{indent}}}");
        let mut body = Vec::new();
        let mut closed = false;
        for l in lines.by_ref() {
            if l.trim_end() == close {
                closed = true;
                break;
            }
            body.push(l);
        }
        let braces = |c: char| body.iter().map(|l| l.matches(c).count()).sum::<usize>();
        if !closed || braces('{') != braces('}') {
            // Left as written.
            for l in std::iter::once(line).chain(body.iter().copied()) {
                out.push_str(l);
                out.push('\n');
            }
            if closed {
                out.push_str(&close);
                out.push('\n');
            }
            continue;
        }
        for n in 0..dim {
            out.push_str(&format!("{indent}{{\n{indent}    let {counter} = {n}u;\n"));
            for l in &body {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str(&close);
            out.push('\n');
        }
    }
    out
}

/// Whether a whole kernel source parses and validates.
fn validates(source: &str) -> bool {
    naga::front::wgsl::parse_str(source).is_ok_and(|module| {
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_loops_over_dim_are_recognised_by_their_exact_form() {
        assert_eq!(user_dim_loop("for (var i = 0u; i < DIM; i++) {").as_deref(), Some("i"));
        assert_eq!(user_dim_loop("for (var row_2 = 0u; row_2 < DIM; row_2++) {").as_deref(), Some("row_2"));
        assert_eq!(user_dim_loop("for (var i = 1u; i < DIM; i++) {"), None);
        assert_eq!(user_dim_loop("for (var i = 0u; i < DIM - 1u; i++) {"), None);
        assert_eq!(user_dim_loop("for (var i = 0u; j < DIM; i++) {"), None);
        assert_eq!(user_dim_loop("for (var i = 0u; i < DIM; i++) { out[i] = 0.0; }"), None);
    }

    const SUM: &str = "fn total(x: State) -> f32 {\n    var s = 0.0;\n    for (var i = 0u; i < DIM; i++) {\n        s += x[i];\n    }\n    return s;\n}\n";

    #[test]
    fn an_unrolled_loop_binds_its_counter_in_one_block_per_coordinate() {
        let unrolled = unroll_loops(SUM, 3, user_dim_loop);
        let want = "fn total(x: State) -> f32 {\n    var s = 0.0;\n    {\n        let i = 0u;\n        s += x[i];\n    }\n    {\n        let i = 1u;\n        s += x[i];\n    }\n    {\n        let i = 2u;\n        s += x[i];\n    }\n    return s;\n}\n";
        assert_eq!(unrolled, want);
        assert!(validates(&format!("{}{unrolled}", user_prelude(3))));
    }

    #[test]
    fn loops_that_cannot_be_unrolled_as_the_same_program_stay_loops() {
        // Unbalanced braces in the body (the closing line found is not the loop's): left as written.
        let odd = "fn f(x: State) -> f32 {\n    var s = 0.0;\n    for (var i = 0u; i < DIM; i++) {\n        if x[i] > 0.0 {\n    }\n        s += x[i];\n    }\n    return s;\n}\n";
        assert_eq!(unroll_loops(odd, 4, user_dim_loop), odd);
        // A `break` in the body unrolls to code that does not validate, so the kernel keeps the user's loop.
        let early = SUM.replace("s += x[i];", "if x[i] < 0.0 {\n            break;\n        }\n        s += x[i];");
        let layout = Layout { workgroup: 8, rounds: 1 };
        let field = format!("{early}fn field(x: State, t: f32) -> State {{\n    var y = x;\n    y[0] = total(x);\n    return y;\n}}\nfn field_jvp(x: State, v: State, t: f32) -> State {{\n    return v;\n}}\n");
        let source = flow_kernel_source(&field, 4, 3, layout);
        assert!(
            source.contains("for (var i = 0u; i < DIM; i++) {\n        if x[i] < 0.0"),
            "the user's loop was unrolled"
        );
        assert!(!source.contains(UNROLLED_LOOP), "the kernel's own loops stay unrolled");
        assert!(validates(&source));
        // Without the break, the same field's loop is unrolled.
        let plain = field.replace("if x[i] < 0.0 {\n            break;\n        }\n        ", "");
        let source = flow_kernel_source(&plain, 4, 3, layout);
        assert!(!source.contains("for (var i = 0u; i < DIM; i++)") && validates(&source));
    }

    #[test]
    fn large_dimensions_keep_every_loop() {
        let field = include_str!("../../examples/fields/lorenz96.wgsl");
        let source = flow_kernel_source(field, MOST_UNROLLED_DIM + 1, 3, Layout { workgroup: 8, rounds: 1 });
        assert!(source.contains(UNROLLED_LOOP) && source.contains("for (var i = 0u; i < DIM; i++) {\n"));
        assert!(validates(&source));
    }
}
