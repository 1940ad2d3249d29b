// shared/graph_math.wgsl — real powers with the conventions of f64's powf, and a stable log1p and sigmoid, for
// the graph engine's elementwise kernels (graph_unary.wgsl, graph_binary.wgsl). No bindings of its own.
// pow_f32(x, p): WGSL's pow is undefined for negative bases; here a negative base with an integer exponent gives
// the signed power (x² of a negative x is positive, x³ negative), a non-integer exponent NaN, and x⁰ = 1 for
// every x (0⁰ too). Integer exponents up to 64 in magnitude go by repeated squaring (a few ulp).

fn graph_nan() -> f32 { return bitcast<f32>(0x7fc00000u); }
fn graph_inf() -> f32 { return bitcast<f32>(0x7f800000u); }

fn pow_f32(x: f32, p: f32) -> f32 {
    if (p == 0.0) { return 1.0; }
    let integer = p == round(p);
    if (integer && abs(p) <= 64.0) {
        var n = u32(abs(p));
        var base = x;
        var acc = 1.0;
        loop {
            if ((n & 1u) == 1u) { acc = acc * base; }
            n = n >> 1u;
            if (n == 0u) { break; }
            base = base * base;
        }
        return select(acc, 1.0 / acc, p < 0.0);
    }
    if (x == 0.0) { return select(0.0, graph_inf(), p < 0.0); }
    if (x < 0.0) {
        if (!integer) { return graph_nan(); }
        let magnitude = pow(-x, p);
        let odd = 0.5 * p != round(0.5 * p);
        return select(magnitude, -magnitude, odd);
    }
    return pow(x, p);
}

// ln(1 + u) for u ≥ 0 without the cancellation of log(1 + u) at small u: a series below 0.1.
fn log1p_f32(u: f32) -> f32 {
    if (u < 0.1) {
        return u * (1.0 - u * (1.0 / 2.0 - u * (1.0 / 3.0 - u * (1.0 / 4.0 - u * (1.0 / 5.0 - u * (1.0 / 6.0
            - u * (1.0 / 7.0 - u * (1.0 / 8.0))))))));
    }
    return log(1.0 + u);
}

// 1 / (1 + e^{−x}) without overflow, and its derivative e/(1 + e)² (e = e^{−|x|}), accurate in both tails.
fn sigmoid_f32(x: f32) -> f32 {
    let e = exp(-abs(x));
    let s = 1.0 / (1.0 + e);
    return select(e * s, s, x >= 0.0);
}

fn sigmoid_derivative_f32(x: f32) -> f32 {
    let e = exp(-abs(x));
    return e / ((1.0 + e) * (1.0 + e));
}
