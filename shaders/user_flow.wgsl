// user_flow.wgsl — Lyapunov flow of a user field: RK4 steps of dx/dt = field(x, t) with its variational equation
// dQ/dt = J(x) Q for K tangents, and the tangents' re-orthonormalisation (classical Gram–Schmidt, each column
// projected twice), one workgroup per trajectory.
//
// Assembled by src/derivative/user_flow.rs as: the user prelude (`const DIM`, `alias State`), the user's code
// (`fn field(x: State, t: f32) -> State`, `fn field_jvp(x: State, v: State, t: f32) -> State`), then
// `const SCORELENS_K: u32` (tangents) and `const SCORELENS_W: u32` (workgroup size), then this file.
//
// How the work is split. The user's contract evaluates a whole point per call (all D outputs of the field, or of
// one J·v), so the workgroup splits the K tangents: every invocation steps x itself (the same values, bit for bit,
// in private memory between steps, so x needs no sharing and a step no barrier), keeps x's four stage points, and
// then carries its tangents l, l + W, … one at a time through the step's stages (one J·v each). Tangents live in
// storage between steps (one read and one write of D floats per tangent and step). The stage loops and the loop
// over an invocation's tangents are bounded by uniforms, so the driver inlines `field` and `field_jvp` once each;
// the kernel's loops over the coordinates that index private arrays are marked `// unroll` and the host unrolls
// them (src/derivative/user_flow.rs), so that every private index is a constant: lavapipe indexes a private
// array with a run-time index lane by lane. The re-orthonormalisation shares the tangents through storage: the
// projections' dot products are split over invocations (one earlier column each), the subtraction and scaling
// over coordinates (invocation l owns l, l + W, …), with barriers between. Idle invocations (columns past K,
// coordinates past D) compute on clamped indices and write to a scratch row / slot, so every loop is uniform.
//
// Dispatch shape. llvmpipe (lavapipe) stops every loop of an invocation once 65,535 loop iterations in total have
// run in one dispatch (its "loop limiter"), silently. So the host cuts the work into dispatches of bounded loop
// counts: each runs `blocks` times { `steps` RK4 steps, then QR columns [col_begin, col_end) }, and the final
// "canary" loop (params.canary iterations, divergent) proves the limiter never fired: if it ran short, status
// reports the dispatch as truncated and the host re-runs it smaller from a copy of the state.
//
// Bindings (group 0): 0 x (read_write, [B, D]),
//                     1 q (read_write, [B, K + 1, D]: the K tangents as rows, then a scratch row),
//                     2 diag (read_write, [blocks of the call, B, K]: R_jj),
//                     3 r (read_write, [blocks of the call, B, K, K] row-major R when params.keep_r = 1; else
//                       unused),
//                     4 status (read_write atomic, [B, 2] u32: the first step (absolute index) after which x or a
//                       tangent was not finite, 0xffffffff = none; then 1 when the dispatch was truncated),
//                     5 params (uniform FlowParams).
// Layout: row-major; trajectory b = group.y · num_workgroups.x + group.x; R is upper triangular with R_jj ≥ 0
// (the tangents before the QR are Rᵀ Q, analysis::qr::qr_rows's convention); a column with nothing left
// (R_jj = 0) is set to zero, so its log growth is −inf and the host stops with an error.

struct FlowParams {
    trajectories: u32,
    steps: u32,
    blocks: u32,
    keep_r: u32,
    col_begin: u32,
    col_end: u32,
    // Index of this dispatch's first block among the call's (diag and r slots), and its first step's index.
    first_block: u32,
    first_step: u32,
    canary: u32,
    // Tangents per invocation (⌈K / W⌉) and RK4 stages (4): uniforms, so that the driver keeps these loops.
    rounds: u32,
    stages: u32,
    pad0: u32,
    pad1: u32,
    dt: f32,
    t: f32,
}

@group(0) @binding(0) var<storage, read_write> scorelens_x: array<f32>;
@group(0) @binding(1) var<storage, read_write> scorelens_q: array<f32>;
@group(0) @binding(2) var<storage, read_write> scorelens_diag: array<f32>;
@group(0) @binding(3) var<storage, read_write> scorelens_r: array<f32>;
@group(0) @binding(4) var<storage, read_write> scorelens_status: array<atomic<u32>>;
@group(0) @binding(5) var<uniform> scorelens_params: FlowParams;

// Rounds of W columns or coordinates in the QR.
const SCORELENS_R_ROUNDS: u32 = (SCORELENS_K + SCORELENS_W - 1u) / SCORELENS_W;
const SCORELENS_COORD_ROUNDS: u32 = (DIM + SCORELENS_W - 1u) / SCORELENS_W;

// Gram–Schmidt coefficients of the column being orthogonalised (this sweep's, the first sweep's), slot K scratch.
var<workgroup> scorelens_h: array<f32, SCORELENS_K + 1u>;
var<workgroup> scorelens_h_first: array<f32, SCORELENS_K + 1u>;

fn scorelens_row(b: u32, row: u32) -> u32 {
    return (b * (SCORELENS_K + 1u) + row) * DIM;
}

fn scorelens_is_bad(v: f32) -> bool {
    // All exponent bits set: ±inf or NaN (a bit test, which no fast-math folding removes).
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

// RK4 of dx/dt = field(x, t): weights 1/6, 1/3, 1/3, 1/6; stage s + 1 at x0 + c_s · k_s with c = 1/2, 1/2, 1 (none
// after the last stage).
fn scorelens_weight(stage: u32) -> f32 {
    return scorelens_params.dt * select(1.0 / 3.0, 1.0 / 6.0, stage == 0u || stage == 3u);
}

fn scorelens_offset(stage: u32) -> f32 {
    return scorelens_params.dt * select(0.5, 1.0, stage == 2u);
}

// One RK4 step of x (private, the same in every invocation) and of each tangent the invocation carries. x's stage
// points are computed once (four field evaluations) and kept for the tangents, which go one at a time through the
// four stages (one J·v each). Returns whether a value it wrote is not finite.
fn scorelens_rk4_step(b: u32, lid: u32, x: ptr<function, State>) -> bool {
    let t = scorelens_params.t;
    let x0 = *x;
    // The stage points after the first (x0 itself): selected element by element with uniform conditions, so
    // that the stage loops stay loops with one call of the user's function each and every index is a constant.
    var xs1: State;
    var xs2: State;
    var xs3: State;
    var xs = x0;
    var x_acc = x0;
    for (var stage = 0u; stage < scorelens_params.stages; stage++) {
        let w = scorelens_weight(stage);
        let c = scorelens_offset(stage);
        let kx = field(xs, t);
        for (var i = 0u; i < DIM; i++) { // unroll
            x_acc[i] = fma(w, kx[i], x_acc[i]);
            xs[i] = fma(c, kx[i], x0[i]);
            xs1[i] = select(xs1[i], xs[i], stage == 0u);
            xs2[i] = select(xs2[i], xs[i], stage == 1u);
            xs3[i] = select(xs3[i], xs[i], stage == 2u);
        }
    }
    var bad = false;
    for (var i = 0u; i < DIM; i++) { // unroll
        bad = bad | scorelens_is_bad(x_acc[i]);
    }
    for (var round = 0u; round < scorelens_params.rounds; round++) {
        let column = round * SCORELENS_W + lid;
        let carries = column < SCORELENS_K;
        let row = scorelens_row(b, select(SCORELENS_K, column, carries));
        var q0: State;
        for (var i = 0u; i < DIM; i++) { // unroll
            q0[i] = scorelens_q[row + i];
        }
        var qs = q0;
        var q_acc = q0;
        for (var stage = 0u; stage < scorelens_params.stages; stage++) {
            let w = scorelens_weight(stage);
            let c = scorelens_offset(stage);
            for (var i = 0u; i < DIM; i++) { // unroll
                xs[i] = select(select(select(x0[i], xs1[i], stage == 1u), xs2[i], stage == 2u), xs3[i], stage == 3u);
            }
            let kq = field_jvp(xs, qs, t);
            for (var i = 0u; i < DIM; i++) { // unroll
                q_acc[i] = fma(w, kq[i], q_acc[i]);
                qs[i] = fma(c, kq[i], q0[i]);
            }
        }
        for (var i = 0u; i < DIM; i++) { // unroll
            scorelens_q[row + i] = q_acc[i];
            bad = bad | (carries & scorelens_is_bad(q_acc[i]));
        }
    }
    *x = x_acc;
    return bad;
}

// Column j of the QR of the tangent rows (earlier columns already orthonormal), in place; writes R_jj to diag and
// column j of R to r when asked.
fn scorelens_qr_column(b: u32, lid: u32, j: u32, slot: u32) {
    let k = SCORELENS_K;
    let vj = scorelens_row(b, j);
    for (var sweep = 0u; sweep < 2u; sweep++) {
        // h_i = q_i · v_j, one i per invocation and round.
        let rounds = (j + SCORELENS_W - 1u) / SCORELENS_W;
        for (var round = 0u; round < rounds; round++) {
            let i = round * SCORELENS_W + lid;
            let qi = scorelens_row(b, min(i, j - 1u));
            var dot = 0.0;
            for (var e = 0u; e < DIM; e++) {
                dot = fma(scorelens_q[qi + e], scorelens_q[vj + e], dot);
            }
            let h_slot = select(k, i, i < j);
            if sweep == 0u {
                scorelens_h_first[h_slot] = dot;
            }
            scorelens_h[h_slot] = dot;
        }
        workgroupBarrier();
        storageBarrier();
        // v_j −= Σ_i h_i q_i, coordinates split over invocations.
        for (var round = 0u; round < SCORELENS_COORD_ROUNDS; round++) {
            let e = round * SCORELENS_W + lid;
            let ec = min(e, DIM - 1u);
            var v = scorelens_q[vj + ec];
            for (var i = 0u; i < j; i++) {
                v = fma(-scorelens_h[i], scorelens_q[scorelens_row(b, i) + ec], v);
            }
            if e < DIM {
                scorelens_q[vj + e] = v;
            }
        }
        workgroupBarrier();
        storageBarrier();
    }
    // Every invocation takes the norm itself (D products, no reduction tree and its barriers).
    var squares = 0.0;
    for (var e = 0u; e < DIM; e++) {
        let v = scorelens_q[vj + e];
        squares = fma(v, v, squares);
    }
    let norm = sqrt(squares);
    // Everyone has read v_j before it is scaled.
    storageBarrier();
    let scale = select(0.0, 1.0 / norm, norm > 0.0);
    for (var round = 0u; round < SCORELENS_COORD_ROUNDS; round++) {
        let e = round * SCORELENS_W + lid;
        if e < DIM {
            scorelens_q[vj + e] *= scale;
        }
    }
    if lid == 0u {
        scorelens_diag[slot * k + j] = norm;
    }
    if scorelens_params.keep_r == 1u {
        for (var round = 0u; round < SCORELENS_R_ROUNDS; round++) {
            let i = round * SCORELENS_W + lid;
            var value = 0.0;
            if i < j {
                value = scorelens_h_first[i] + scorelens_h[i];
            } else if i == j {
                value = norm;
            }
            if i < k {
                scorelens_r[(slot * k + i) * k + j] = value;
            }
        }
    }
    // q_j is whole before the next column projects on it, and h is free again.
    workgroupBarrier();
    storageBarrier();
}

@compute @workgroup_size(SCORELENS_W)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let b = group.y * groups.x + group.x;
    // The whole workgroup takes the same branch, so the barriers below stay uniform.
    if b >= scorelens_params.trajectories {
        return;
    }
    var x: State;
    for (var i = 0u; i < DIM; i++) { // unroll
        x[i] = scorelens_x[b * DIM + i];
    }
    var first_bad = 0xffffffffu;
    for (var block = 0u; block < scorelens_params.blocks; block++) {
        for (var s = 0u; s < scorelens_params.steps; s++) {
            if scorelens_rk4_step(b, lid, &x) {
                first_bad = min(first_bad, scorelens_params.first_step + block * scorelens_params.steps + s);
            }
        }
        // The tangents every invocation wrote are visible before the QR reads them.
        storageBarrier();
        let slot = (scorelens_params.first_block + block) * scorelens_params.trajectories + b;
        for (var j = scorelens_params.col_begin; j < scorelens_params.col_end; j++) {
            scorelens_qr_column(b, lid, j, slot);
        }
    }
    if lid == 0u {
        for (var i = 0u; i < DIM; i++) { // unroll
            scorelens_x[b * DIM + i] = x[i];
        }
    }
    if first_bad != 0xffffffffu {
        atomicMin(&scorelens_status[2u * b], first_bad);
    }
    // The canary: a divergent loop of params.canary iterations runs them all only if the limiter never fired.
    var count = 0u;
    for (var i = lid; i < lid + scorelens_params.canary; i++) {
        count++;
    }
    if count != scorelens_params.canary {
        atomicMax(&scorelens_status[2u * b + 1u], 1u);
    }
}
