// graph_unary.wgsl — an elementwise function of the graph engine, or its derivative: out[i] = f(x[i]) or f′(x[i]).
//
// For every i < params.len: out[i] = f(x[i]) (params.derivative = 0) or f′(x[i]) (1), f chosen by params.op:
//   0 identity, 1 relu, 2 leaky relu (α = params.p), 3 sigmoid, 4 tanh, 5 erf, 6 exp, 7 log, 8 sin, 9 cos,
//   10 sqrt, 11 reciprocal, 12 neg, 13 abs, 14 softplus, 15 gelu (exact, erf), 16 gelu (tanh form),
//   17 x^p (p = params.p), 18 c^x (params.p = ln c), 19 c·x (c = params.p), 20 silu x·σ(x).
// The formulas are those of reference::graph_ops::unary, written to stay accurate in the tails (sigmoid, tanh,
// softplus and the gelus through e^{−|x|} forms, Φ through erfc).
//
// Bindings (group 0): 0 x (read, [len]), 1 out (read_write, [len]; not x),
//                     2 params (uniform Params: len, grid_width, op, derivative, p).
// Layout: flat arrays (rows × per-row elements). A 2-D grid of 256-thread workgroups, i = gid.y · grid_width + gid.x.

struct Params { len: u32, grid_width: u32, op: u32, derivative: u32, p: f32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

const SQRT_HALF: f32 = 0.70710678118654752;
const INV_SQRT_2PI: f32 = 0.39894228040143268;
const TWO_OVER_SQRT_PI: f32 = 1.1283791670955126;
const GELU_C: f32 = 0.79788456080286536;
const GELU_A: f32 = 0.044715;

// Φ(x), the standard normal cdf, through erfc in the lower tail.
fn normal_cdf(v: f32) -> f32 {
    let half_tail = 0.5 * erfc_abs_f32(v * SQRT_HALF);
    return select(half_tail, 1.0 - half_tail, v >= 0.0);
}

fn value(op: u32, v: f32, p: f32) -> f32 {
    switch op {
        case 1u: { return max(v, 0.0); }
        case 2u: { return select(p * v, v, v >= 0.0); }
        case 3u: { return sigmoid_f32(v); }
        case 4u: { return tanh_f32(v); }
        case 5u: { return erf_f32(v); }
        case 6u: { return exp(v); }
        case 7u: { return log(v); }
        case 8u: { return sin(v); }
        case 9u: { return cos(v); }
        case 10u: { return sqrt(v); }
        case 11u: { return 1.0 / v; }
        case 12u: { return -v; }
        case 13u: { return abs(v); }
        case 14u: { return max(v, 0.0) + log1p_f32(exp(-abs(v))); }
        case 15u: { return v * normal_cdf(v); }
        case 16u: {
            // 0.5x(1 + tanh u) = x·σ(2u).
            let u = GELU_C * (v + GELU_A * v * v * v);
            return v * sigmoid_f32(2.0 * u);
        }
        case 17u: { return pow_f32(v, p); }
        case 18u: { return exp(p * v); }
        case 19u: { return p * v; }
        case 20u: { return v * sigmoid_f32(v); }
        default: { return v; }
    }
}

fn derivative(op: u32, v: f32, p: f32) -> f32 {
    switch op {
        case 1u: { return select(0.0, 1.0, v > 0.0); }
        case 2u: { return select(p, 1.0, v >= 0.0); }
        case 3u: { return sigmoid_derivative_f32(v); }
        case 4u: {
            // 1 − tanh² = 4e/(1 + e)², e = e^{−2|x|}.
            let e = exp(-2.0 * abs(v));
            return 4.0 * e / ((1.0 + e) * (1.0 + e));
        }
        case 5u: { return TWO_OVER_SQRT_PI * exp(-v * v); }
        case 6u: { return exp(v); }
        case 7u: { return 1.0 / v; }
        case 8u: { return cos(v); }
        case 9u: { return -sin(v); }
        case 10u: { return 0.5 / sqrt(v); }
        case 11u: { return -1.0 / (v * v); }
        case 12u: { return -1.0; }
        case 13u: { return sign(v); }
        case 14u: { return sigmoid_f32(v); }
        case 15u: { return normal_cdf(v) + v * INV_SQRT_2PI * exp(-0.5 * v * v); }
        case 16u: {
            // σ(2u) + 2x·σ′(2u)·u′ (the tanh form's derivative through 1 + tanh u = 2σ(2u)).
            let u = GELU_C * (v + GELU_A * v * v * v);
            let du = GELU_C * (1.0 + 3.0 * GELU_A * v * v);
            return sigmoid_f32(2.0 * u) + 2.0 * v * sigmoid_derivative_f32(2.0 * u) * du;
        }
        case 17u: {
            if (p == 0.0) { return 0.0; }
            return p * pow_f32(v, p - 1.0);
        }
        case 18u: { return p * exp(p * v); }
        case 19u: { return p; }
        case 20u: {
            // σ(x) + x·σ′(x), σ′ through e^{−|x|} (no 1 − σ cancellation in the tails).
            return sigmoid_f32(v) + v * sigmoid_derivative_f32(v);
        }
        default: { return 1.0; }
    }
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * params.grid_width + gid.x;
    if (i >= params.len) { return; }
    let v = x[i];
    if (params.derivative == 0u) {
        out[i] = value(params.op, v, params.p);
    } else {
        out[i] = derivative(params.op, v, params.p);
    }
}
