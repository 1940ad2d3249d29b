// Lorenz-63 (sigma 10, rho 28, beta 8/3) as a time-independent field.
fn field(x: State, t: f32) -> State {
    return State(10.0 * (x[1] - x[0]), x[0] * (28.0 - x[2]) - x[1], x[0] * x[1] - 8.0 / 3.0 * x[2]);
}

fn field_jvp(x: State, v: State, t: f32) -> State {
    return State(
        10.0 * (v[1] - v[0]),
        (28.0 - x[2]) * v[0] - v[1] - x[0] * v[2],
        x[1] * v[0] + x[0] * v[1] - 8.0 / 3.0 * v[2],
    );
}
