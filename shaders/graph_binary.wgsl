// graph_binary.wgsl — a broadcasting binary operation of the graph engine: out[r, i] = a[r, i] ∘ b[r, i].
//
// For every output row r < rows and element i < params.len of its per-row shape (params.shape, rank ≤ 6):
//   out[r · len + i] = a[(r / a_rep) · a_row_stride + Σ_axis coord_axis(i) · a_strides[axis]]
//                    ∘ b[(r / b_rep) · b_row_stride + Σ_axis coord_axis(i) · b_strides[axis]]
// with ∘ by params.op: 0 add, 1 sub, 2 mul, 3 div, 4 pow (powf conventions, shared/graph_math.wgsl). The host
// computes each operand's element stride per output axis (0 where the operand broadcasts: a missing leading axis
// or a dimension of 1), so numpy broadcasting is a dot product of the output coordinates with those strides.
//
// Bindings (group 0): 0 a (read), 1 b (read), 2 out (read_write, [rows, len]; neither a nor b),
//                     3 params (uniform Params: total = rows · len, len, grid_width, op, rank, the row maps of a
//                     and b, then shape, a_strides, b_strides as two vec4<u32> each, axes 0…rank−1 used).
// Layout: batch-major rows, row-major within a row. A 2-D grid of 256-thread workgroups, one thread per output
// element: t = gid.y · grid_width + gid.x, r = t / len, i = t % len.

struct Params {
    total: u32, len: u32, grid_width: u32, op: u32,
    rank: u32, a_rep: u32, a_row_stride: u32, b_rep: u32,
    b_row_stride: u32, pad0: u32, pad1: u32, pad2: u32,
    shape: array<vec4<u32>, 2>,
    a_strides: array<vec4<u32>, 2>,
    b_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.y * params.grid_width + gid.x;
    if (t >= params.total) { return; }
    let r = t / params.len;
    var rest = t % params.len;
    var ia = (r / params.a_rep) * params.a_row_stride;
    var ib = (r / params.b_rep) * params.b_row_stride;
    for (var axis = params.rank; axis > 0u; axis = axis - 1u) {
        let q = (axis - 1u) / 4u;
        let c = (axis - 1u) % 4u;
        let dim = params.shape[q][c];
        let coord = rest % dim;
        rest = rest / dim;
        ia = ia + coord * params.a_strides[q][c];
        ib = ib + coord * params.b_strides[q][c];
    }
    let va = a[ia];
    let vb = b[ib];
    var v: f32;
    switch params.op {
        case 0u: { v = va + vb; }
        case 1u: { v = va - vb; }
        case 2u: { v = va * vb; }
        case 3u: { v = va / vb; }
        default: { v = pow_f32(va, vb); }
    }
    out[t] = v;
}
