// shared/matmul_common.wgsl — what the matmul kernels (matmul_tiled.wgsl, matmul_tiled_128.wgsl, matmul_small.wgsl,
// matmul_coop.wgsl) share: their parameters, override constants, bindings (see matmul_tiled.wgsl's header for their
// meaning and layout), and the fused epilogue:
//   epilogue(acc, m, n) = act(acc + bias[n]) · act'(pre[offset_pre + g·ld_pre + n]) · row_scale[g], g = m / group_rows
//   (with ADD_PRE: act(acc + bias[n] + pre[offset_pre + g·ld_pre + n]) · row_scale[g], pre an addend, no act' factor);
//   store_index(base_c, m, n) = where C(m, n) goes (grouped transposed with STORE_GROUP_TRANSPOSED);
//   load_a / load_b: one element of an operand as the kernels stage it (act_a on A, zero outside the matrices).
// Prefixed to the kernel after shared/activations.wgsl.

struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    lda: u32, ldb: u32, ldc: u32, offset_a: u32,
    stride_a: u32, stride_b: u32, stride_c: u32, offset_b: u32,
    offset_c: u32, group_rows: u32, ld_pre: u32, offset_pre: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ACT: u32 = 0u;
override ACT_A: u32 = 0u;
override DERIV_ACT: u32 = 0u;
override ADD_PRE: bool = false;
override HAS_BIAS: bool = false;
override SCALE_ROWS: bool = false;
override STORE_GROUP_TRANSPOSED: bool = false;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> row_scale: array<f32>;
@group(0) @binding(4) var<storage, read> pre: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;

// A(gm, gk) of the batch whose A starts at base_a, with act_a applied; 0 outside the matrix (tile padding).
fn load_a(base_a: u32, gm: u32, gk: u32) -> f32 {
    if (gm >= params.m || gk >= params.k) { return 0.0; }
    var va: f32;
    if (TRANS_A) { va = a[base_a + gk * params.lda + gm]; } else { va = a[base_a + gm * params.lda + gk]; }
    if (ACT_A != 0u) { va = activate(ACT_A, va); }
    return va;
}

// B(gk, gn) of the batch whose B starts at base_b; 0 outside the matrix.
fn load_b(base_b: u32, gk: u32, gn: u32) -> f32 {
    if (gn >= params.n || gk >= params.k) { return 0.0; }
    if (TRANS_B) { return b[base_b + gn * params.ldb + gk]; }
    return b[base_b + gk * params.ldb + gn];
}

fn epilogue(acc: f32, m: u32, n: u32) -> f32 {
    let g = m / params.group_rows;
    var v = acc;
    if (HAS_BIAS) { v += bias[n]; }
    if (ADD_PRE) { v += pre[params.offset_pre + g * params.ld_pre + n]; }
    v = activate(ACT, v);
    if (DERIV_ACT != 0u && !ADD_PRE) { v *= activate_derivative(DERIV_ACT, pre[params.offset_pre + g * params.ld_pre + n]); }
    if (SCALE_ROWS) { v *= row_scale[g]; }
    return v;
}

fn store_index(base_c: u32, m: u32, n: u32) -> u32 {
    if (STORE_GROUP_TRANSPOSED) {
        let g = m / params.group_rows;
        let r = m - g * params.group_rows;
        return base_c + g * params.group_rows * params.ldc + n * params.group_rows + r;
    }
    return base_c + m * params.ldc + n;
}
