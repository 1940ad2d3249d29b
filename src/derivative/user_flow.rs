//! The fused flow propagator of user fields with `field_jvp`: one invocation per trajectory carries x and its K
//! tangent vectors through blocks of RK4 steps of dx/dt = field(x, t) and its variational equation, and
//! re-orthonormalises them (modified Gram–Schmidt, twice) after each block, writing R. Nothing returns to the host
//! inside a call but the R factors, so long runs (Lorenz-63: 10⁵ steps) cost a few hundred submits.

use crate::derivative::propagator::{Factors, Propagator};
use crate::error::{Error, Result};
use crate::field::user::user_prelude;
use crate::field::UserField;
use crate::gpu::{grid_2d, BufferRole, Kernel, Recorder};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FlowParams {
    trajectories: u32,
    steps: u32,
    blocks: u32,
    _pad: u32,
    dt: f32,
    t: f32,
    _pad2: [f32; 2],
}

pub(crate) struct UserFlow<'f> {
    field: &'f UserField,
    kernel: Kernel,
    k: usize,
    trajectories: usize,
    dt: f64,
    t: f64,
    x: wgpu::Buffer,
    q: wgpu::Buffer,
}

impl<'f> UserFlow<'f> {
    pub fn new(field: &'f UserField, x0: &[f32], q0: &[f64], k: usize, dt: f64, t: f64) -> Result<Self> {
        let source = flow_kernel_source(field.code(), field.dim(), k);
        let kernel = field.ctx().compile_source("user_flow", &source, &[], false).map_err(|e| match e {
            Error::Kernel { message, .. } => {
                Error::bad_input(field.name(), format!("the fused flow kernel (K = {k}) does not compile: {message}"))
            }
            other => other,
        })?;
        let ctx = field.ctx();
        let q32: Vec<f32> = q0.iter().map(|&v| v as f32).collect();
        Ok(UserFlow {
            field,
            kernel,
            k,
            trajectories: x0.len() / field.dim(),
            dt,
            t,
            x: ctx.upload("user_flow/x", x0),
            q: ctx.upload("user_flow/q", &q32),
        })
    }
}

impl Propagator for UserFlow<'_> {
    fn advance(&mut self, _first: usize, steps: usize, blocks: usize, keep_r: bool) -> Result<Vec<Factors>> {
        let ctx = self.field.ctx();
        let (b, k) = (self.trajectories, self.k);
        let per_block = b * k * k;
        let bytes = (blocks * per_block * 4) as u64;
        let r = ctx.buffer("user_flow/r", bytes, BufferRole::Storage);
        let readback = ctx.buffer("user_flow/r_readback", bytes, BufferRole::Readback);
        let params = FlowParams {
            trajectories: b as u32,
            steps: steps as u32,
            blocks: blocks as u32,
            _pad: 0,
            dt: self.dt as f32,
            t: self.t as f32,
            _pad2: [0.0; 2],
        };
        let uniform = ctx.uniform("user_flow/params", &params);
        let (gx, gy) = grid_2d((b as u32).div_ceil(64), ctx.caps.max_workgroups_per_dimension());
        let mut rec = Recorder::new(ctx, "user_flow");
        rec.dispatch(&self.kernel, &[&uniform, &self.x, &self.q, &r], [gx, gy, 1])?;
        rec.copy(&r, &readback, bytes);
        let index = rec.submit();
        let values: Vec<f32> = ctx.read_mapped(&readback, blocks * per_block, Some(index))?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::NotFinite {
                what: format!("{}: tangent growth (R factors) of the flow", self.field.name()),
                row: (i % per_block) / (k * k),
                value: values[i] as f64,
            });
        }
        Ok(values
            .chunks(per_block)
            .map(|c| Factors::from_r(c.iter().map(|&v| v as f64).collect(), k, keep_r))
            .collect())
    }

    fn state(&mut self) -> Result<(Vec<f32>, Vec<f64>)> {
        let ctx = self.field.ctx();
        let x: Vec<f32> = ctx.download(&self.x, self.trajectories * self.field.dim())?;
        let q: Vec<f32> = ctx.download(&self.q, self.trajectories * self.k * self.field.dim())?;
        Ok((x, q.iter().map(|&v| v as f64).collect()))
    }
}

/// The user's code followed by the fused RK4 + variational + Gram–Schmidt kernel for K tangents.
fn flow_kernel_source(code: &str, dim: usize, k: usize) -> String {
    let mut source = user_prelude(dim);
    source.push_str(code);
    if !code.ends_with('\n') {
        source.push('\n');
    }
    source.push_str(&format!("const SCORELENS_K: u32 = {k}u;\n"));
    source.push_str(FLOW_ENTRY);
    source
}

const FLOW_ENTRY: &str = r#"
alias ScorelensTangents = array<State, SCORELENS_K>;
struct ScorelensFlow { trajectories: u32, steps: u32, blocks: u32, pad: u32, dt: f32, t: f32, pad2: vec2<f32> }
@group(0) @binding(0) var<uniform> scorelens_flow: ScorelensFlow;
@group(0) @binding(1) var<storage, read_write> scorelens_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> scorelens_q: array<f32>;
@group(0) @binding(3) var<storage, read_write> scorelens_r: array<f32>;

fn scorelens_dot(a: State, b: State) -> f32 {
    var s = 0.0;
    for (var i = 0u; i < DIM; i++) {
        s += a[i] * b[i];
    }
    return s;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let b = gid.x + gid.y * groups.x * 64u;
    if b >= scorelens_flow.trajectories {
        return;
    }
    let dt = scorelens_flow.dt;
    let t = scorelens_flow.t;
    var x: State;
    for (var i = 0u; i < DIM; i++) {
        x[i] = scorelens_x[b * DIM + i];
    }
    var q: ScorelensTangents;
    for (var j = 0u; j < SCORELENS_K; j++) {
        for (var i = 0u; i < DIM; i++) {
            q[j][i] = scorelens_q[(b * SCORELENS_K + j) * DIM + i];
        }
    }
    let weights = array<f32, 4>(1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0);
    let next_offset = array<f32, 3>(0.5, 0.5, 1.0);
    for (var block = 0u; block < scorelens_flow.blocks; block++) {
        for (var s = 0u; s < scorelens_flow.steps; s++) {
            var xs = x;
            var qs = q;
            var x_acc = x;
            var q_acc = q;
            for (var stage = 0u; stage < 4u; stage++) {
                let kx = field(xs, t);
                var kq: ScorelensTangents;
                for (var j = 0u; j < SCORELENS_K; j++) {
                    kq[j] = field_jvp(xs, qs[j], t);
                }
                let w = dt * weights[stage];
                for (var i = 0u; i < DIM; i++) {
                    x_acc[i] += w * kx[i];
                }
                for (var j = 0u; j < SCORELENS_K; j++) {
                    for (var i = 0u; i < DIM; i++) {
                        q_acc[j][i] += w * kq[j][i];
                    }
                }
                if stage < 3u {
                    let c = dt * next_offset[stage];
                    for (var i = 0u; i < DIM; i++) {
                        xs[i] = x[i] + c * kx[i];
                    }
                    for (var j = 0u; j < SCORELENS_K; j++) {
                        for (var i = 0u; i < DIM; i++) {
                            qs[j][i] = q[j][i] + c * kq[j][i];
                        }
                    }
                }
            }
            x = x_acc;
            q = q_acc;
        }
        // Modified Gram–Schmidt, each projection done twice (float32 keeps orthogonality to rounding).
        let base = (block * scorelens_flow.trajectories + b) * SCORELENS_K * SCORELENS_K;
        for (var j = 0u; j < SCORELENS_K; j++) {
            for (var i = 0u; i < SCORELENS_K; i++) {
                scorelens_r[base + j * SCORELENS_K + i] = 0.0;
            }
        }
        for (var j = 0u; j < SCORELENS_K; j++) {
            for (var sweep = 0u; sweep < 2u; sweep++) {
                for (var i = 0u; i < j; i++) {
                    let r = scorelens_dot(q[i], q[j]);
                    scorelens_r[base + i * SCORELENS_K + j] += r;
                    for (var e = 0u; e < DIM; e++) {
                        q[j][e] -= r * q[i][e];
                    }
                }
            }
            let norm = sqrt(scorelens_dot(q[j], q[j]));
            scorelens_r[base + j * SCORELENS_K + j] = norm;
            for (var e = 0u; e < DIM; e++) {
                q[j][e] /= norm;
            }
        }
    }
    for (var i = 0u; i < DIM; i++) {
        scorelens_x[b * DIM + i] = x[i];
    }
    for (var j = 0u; j < SCORELENS_K; j++) {
        for (var i = 0u; i < DIM; i++) {
            scorelens_q[(b * SCORELENS_K + j) * DIM + i] = q[j][i];
        }
    }
}
"#;
