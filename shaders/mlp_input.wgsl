// mlp_input.wgsl — assembles the MLP's input rows h0 = [x, e(t)] from the points and their time features.
//
// For every row r < rows and column j < dim + embed:
//     h0[r, j] = x[r, j]                              for j < dim
//     h0[r, j] = features[time_index[r], j − dim]     for j ≥ dim
// The Fourier features e(t) = [sin(2π W t), cos(2π W t)] are computed once per distinct t on the host in f64
// (exact to f32 rounding, whatever the driver's sin), so rows only carry an index into that table.
//
// Bindings (group 0): 0 x (read, [rows, dim]), 1 features (read, [T, embed]), 2 time_index (read, u32 [rows]),
//                     3 h0 (read_write, [rows, dim + embed]), 4 params (uniform Params).
// Layout: row-major. Dispatch a 2-D grid of 256-thread workgroups covering rows·(dim + embed) elements,
// linearised as (gid.y · grid_width + gid.x); grid_width = 256 · workgroups in x.

struct Params { rows: u32, dim: u32, embed: u32, grid_width: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> features: array<f32>;
@group(0) @binding(2) var<storage, read> time_index: array<u32>;
@group(0) @binding(3) var<storage, read_write> h0: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let width = params.dim + params.embed;
    let i = gid.y * params.grid_width + gid.x;
    if (i >= params.rows * width) { return; }
    let r = i / width;
    let j = i - r * width;
    if (j < params.dim) {
        h0[i] = x[r * params.dim + j];
    } else {
        h0[i] = features[time_index[r] * params.embed + (j - params.dim)];
    }
}
