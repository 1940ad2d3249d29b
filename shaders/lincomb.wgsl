// lincomb.wgsl — a linear combination of up to six equally long arrays: the stage and step updates of explicit
// Runge–Kutta schemes (x + Δt Σ a_j v_j, plus noise) carried out where the arrays live.
//
// For every i < params.len:   out[i] = Σ_{j < TERMS} coef_j · in_j[i]
// TERMS (override, 1…6) says how many inputs are read; the others may be bound to a placeholder.
//
// Bindings (group 0): 0…5 in0 … in5 (read, [len]), 6 out (read_write, [len]; never one of the inputs),
//                     7 params (uniform Params: len, grid_width and the six coefficients in two vec4s).
// Layout: flat arrays. Dispatch a 2-D grid of 256-thread workgroups, i = gid.y · grid_width + gid.x.

struct Params { len: u32, grid_width: u32, pad0: u32, pad1: u32, coef: array<vec4<f32>, 2> }

override TERMS: u32 = 1u;

@group(0) @binding(0) var<storage, read> in0: array<f32>;
@group(0) @binding(1) var<storage, read> in1: array<f32>;
@group(0) @binding(2) var<storage, read> in2: array<f32>;
@group(0) @binding(3) var<storage, read> in3: array<f32>;
@group(0) @binding(4) var<storage, read> in4: array<f32>;
@group(0) @binding(5) var<storage, read> in5: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<uniform> params: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * params.grid_width + gid.x;
    if (i >= params.len) { return; }
    let c0 = params.coef[0];
    let c1 = params.coef[1];
    var v = c0.x * in0[i];
    if (TERMS > 1u) { v = fma(c0.y, in1[i], v); }
    if (TERMS > 2u) { v = fma(c0.z, in2[i], v); }
    if (TERMS > 3u) { v = fma(c0.w, in3[i], v); }
    if (TERMS > 4u) { v = fma(c1.x, in4[i], v); }
    if (TERMS > 5u) { v = fma(c1.y, in5[i], v); }
    out[i] = v;
}
