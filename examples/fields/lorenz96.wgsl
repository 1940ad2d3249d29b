// Lorenz-96 with forcing F = 8: x_i' = (x_{i+1} − x_{i−2}) x_{i−1} − x_i + F, indices cyclic (any D ≥ 4).
// The Jacobian's trace is −D everywhere, so the D Lyapunov exponents sum to −D exactly.
const FORCING: f32 = 8.0;

fn field(x: State, t: f32) -> State {
    var out: State;
    for (var i = 0u; i < DIM; i++) {
        let next = x[(i + 1u) % DIM];
        let prev = x[(i + DIM - 1u) % DIM];
        let prev2 = x[(i + DIM - 2u) % DIM];
        out[i] = (next - prev2) * prev - x[i] + FORCING;
    }
    return out;
}

fn field_jvp(x: State, v: State, t: f32) -> State {
    var out: State;
    for (var i = 0u; i < DIM; i++) {
        let ip = (i + 1u) % DIM;
        let im = (i + DIM - 1u) % DIM;
        let im2 = (i + DIM - 2u) % DIM;
        out[i] = (v[ip] - v[im2]) * x[im] + (x[ip] - x[im2]) * v[im] - v[i];
    }
    return out;
}
