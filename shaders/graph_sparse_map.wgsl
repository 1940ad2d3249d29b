// graph_sparse_map.wgsl — a per-row sparse linear map of the graph engine: out[r, i] (+)= Σ_k weight[k] · x[r, column[k]].
//
// For every row r < rows and output i < params.outputs, over the compressed row k ∈ row_start[i] .. row_start[i+1]:
//   acc = Σ_k weight[k] · x[r · inputs + column[k]];  out[r · outputs + i] = acc, or out + acc when accumulate = 1.
// Transposes, slices, concatenations (accumulated one input at a time), padding, pooling and in-row reductions are
// all such maps.
//
// Bindings (group 0): 0 row_start (read, [outputs + 1] u32), 1 column (read, [nnz] u32), 2 weight (read, [nnz] f32),
//                     3 x (read, [rows, inputs]), 4 out (read_write, [rows, outputs]; not x),
//                     5 params (uniform Params: total = rows · outputs, outputs, inputs, grid_width, accumulate).
// Layout: batch-major rows. A 2-D grid of 256-thread workgroups, one thread per (row, output element):
// t = gid.y · grid_width + gid.x, r = t / outputs, i = t % outputs.

struct Params { total: u32, outputs: u32, inputs: u32, grid_width: u32, accumulate: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<storage, read> row_start: array<u32>;
@group(0) @binding(1) var<storage, read> column: array<u32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.y * params.grid_width + gid.x;
    if (t >= params.total) { return; }
    let r = t / params.outputs;
    let i = t % params.outputs;
    let base = r * params.inputs;
    var acc = 0.0;
    for (var k = row_start[i]; k < row_start[i + 1u]; k = k + 1u) {
        acc = fma(weight[k], x[base + column[k]], acc);
    }
    if (params.accumulate != 0u) {
        acc = out[t] + acc;
    }
    out[t] = acc;
}
