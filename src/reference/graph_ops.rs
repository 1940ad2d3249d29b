//! f64 twins of the graph engine's primitive kernels (crate::ops::graph), same names, same loop shapes.
//! Buffers are flat slices, batch-major; see crate::ops::graph for the row streams and [`RowMap`].

use crate::ops::graph::{BatchedMatmul, BinaryOp, Conv2d, MatrixMap, RowMap, UnaryFn};

/// f(x), or f′(x) when `derivative`.
pub fn unary(f: UnaryFn, derivative: bool, x: f64) -> f64 {
    use std::f64::consts::{FRAC_2_SQRT_PI, SQRT_2};
    // The tails are written so that they keep their relative accuracy (no 1 − (≈1) cancellation): Φ through erfc,
    // σ′ and tanh′ through e^{−|x|}, and the tanh gelu through 1 + tanh u = 2σ(2u).
    let phi = |x: f64| 0.5 * libm::erfc(-x / SQRT_2);
    let density = |x: f64| (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let sigmoid_derivative = |x: f64| {
        let e = (-x.abs()).exp();
        e / ((1.0 + e) * (1.0 + e))
    };
    let tanh_derivative = |x: f64| 4.0 * sigmoid_derivative(2.0 * x);
    if !derivative {
        return match f {
            UnaryFn::Identity => x,
            UnaryFn::Relu => x.max(0.0),
            UnaryFn::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a as f64 * x
                }
            }
            UnaryFn::Sigmoid => sigmoid(x),
            UnaryFn::Tanh => x.tanh(),
            UnaryFn::Erf => libm::erf(x),
            UnaryFn::Exp => x.exp(),
            UnaryFn::Log => x.ln(),
            UnaryFn::Sin => x.sin(),
            UnaryFn::Cos => x.cos(),
            UnaryFn::Sqrt => x.sqrt(),
            UnaryFn::Reciprocal => 1.0 / x,
            UnaryFn::Neg => -x,
            UnaryFn::Abs => x.abs(),
            UnaryFn::Softplus => {
                if x > 0.0 {
                    x + (-x).exp().ln_1p()
                } else {
                    x.exp().ln_1p()
                }
            }
            UnaryFn::Gelu => x * phi(x),
            UnaryFn::GeluTanh => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                x * sigmoid(2.0 * c * (x + 0.044715 * x * x * x))
            }
            UnaryFn::PowConst(p) => x.powf(p as f64),
            UnaryFn::ExpBase(ln_c) => (ln_c as f64 * x).exp(),
            UnaryFn::Scale(c) => c as f64 * x,
            UnaryFn::Silu => x * sigmoid(x),
        };
    }
    match f {
        UnaryFn::Identity => 1.0,
        UnaryFn::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        UnaryFn::LeakyRelu(a) => {
            if x >= 0.0 {
                1.0
            } else {
                a as f64
            }
        }
        UnaryFn::Sigmoid => sigmoid_derivative(x),
        UnaryFn::Tanh => tanh_derivative(x),
        UnaryFn::Erf => FRAC_2_SQRT_PI * (-x * x).exp(),
        UnaryFn::Exp => x.exp(),
        UnaryFn::Log => 1.0 / x,
        UnaryFn::Sin => x.cos(),
        UnaryFn::Cos => -x.sin(),
        UnaryFn::Sqrt => 0.5 / x.sqrt(),
        UnaryFn::Reciprocal => -1.0 / (x * x),
        UnaryFn::Neg => -1.0,
        UnaryFn::Abs => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        UnaryFn::Softplus => sigmoid(x),
        UnaryFn::Gelu => phi(x) + x * density(x),
        UnaryFn::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let inner = c * (x + 0.044715 * x * x * x);
            sigmoid(2.0 * inner) + 0.5 * x * tanh_derivative(inner) * c * (1.0 + 3.0 * 0.044715 * x * x)
        }
        UnaryFn::PowConst(p) => {
            let p = p as f64;
            if p == 0.0 {
                0.0
            } else {
                p * x.powf(p - 1.0)
            }
        }
        UnaryFn::ExpBase(ln_c) => ln_c as f64 * (ln_c as f64 * x).exp(),
        UnaryFn::Scale(c) => c as f64,
        UnaryFn::Silu => sigmoid(x) + x * sigmoid_derivative(x),
    }
}

/// Twin of `record_unary`.
pub fn record_unary(f: UnaryFn, derivative: bool, x: &[f64], out: &mut [f64]) {
    for i in 0..out.len() {
        out[i] = unary(f, derivative, x[i]);
    }
}

/// a ∘ b.
pub fn binary(op: BinaryOp, a: f64, b: f64) -> f64 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Pow => a.powf(b),
    }
}

/// Element offset, inside one operand row, of output element `i` (per-row output shape `out_shape`), under numpy
/// broadcasting of the operand's per-row shape `shape` (right-aligned).
pub fn broadcast_offset(out_shape: &[usize], shape: &[usize], mut i: usize) -> usize {
    let rank = out_shape.len();
    let lead = rank - shape.len();
    let (mut offset, mut stride) = (0, 1);
    for axis in (0..rank).rev() {
        let coord = i % out_shape[axis];
        i /= out_shape[axis];
        if axis >= lead {
            let dim = shape[axis - lead];
            if dim != 1 {
                offset += coord * stride;
            }
            stride *= dim;
        }
    }
    offset
}

fn row_start(map: RowMap, r: usize) -> usize {
    (r / map.rep as usize) * map.stride as usize
}

/// Twin of `record_binary`: `a` and `b` are (data, per-row shape, rows).
pub fn record_binary(
    op: BinaryOp,
    rows: usize,
    out_shape: &[usize],
    a: (&[f64], &[usize], RowMap),
    b: (&[f64], &[usize], RowMap),
    out: &mut [f64],
) {
    let len: usize = out_shape.iter().product();
    for r in 0..rows {
        for i in 0..len {
            let va = a.0[row_start(a.2, r) + broadcast_offset(out_shape, a.1, i)];
            let vb = b.0[row_start(b.2, r) + broadcast_offset(out_shape, b.1, i)];
            out[r * len + i] = binary(op, va, vb);
        }
    }
}

/// A per-row sparse linear map on the host: output i = Σ weight[k] · x[column[k]] for k in row_start[i]..row_start[i+1].
#[derive(Debug, Clone, PartialEq)]
pub struct SparseMap {
    pub outputs: usize,
    pub inputs: usize,
    pub row_start: Vec<u32>,
    pub column: Vec<u32>,
    pub weight: Vec<f64>,
}

impl SparseMap {
    /// Builds the map from (output, input, weight) triples in any order; repeated pairs add.
    pub fn from_triples(outputs: usize, inputs: usize, mut triples: Vec<(usize, usize, f64)>) -> Self {
        triples.sort_by_key(|&(o, i, _)| (o, i));
        let mut row_start = vec![0u32; outputs + 1];
        let (mut column, mut weight): (Vec<u32>, Vec<f64>) = (Vec::new(), Vec::new());
        let mut last: Option<(usize, usize)> = None;
        for (o, i, w) in triples {
            debug_assert!(o < outputs && i < inputs);
            if last == Some((o, i)) {
                *weight.last_mut().unwrap() += w;
                continue;
            }
            last = Some((o, i));
            row_start[o + 1] += 1;
            column.push(i as u32);
            weight.push(w);
        }
        for o in 0..outputs {
            row_start[o + 1] += row_start[o];
        }
        SparseMap { outputs, inputs, row_start, column, weight }
    }

    /// Selection map: output i reads input source[i] with weight 1 (None: zero).
    pub fn gather(inputs: usize, source: &[Option<usize>]) -> Self {
        let triples = source.iter().enumerate().filter_map(|(o, s)| s.map(|i| (o, i, 1.0))).collect();
        Self::from_triples(source.len(), inputs, triples)
    }

    /// Mᵀ (the adjoint of the map).
    pub fn transpose(&self) -> Self {
        let mut triples = Vec::with_capacity(self.column.len());
        for o in 0..self.outputs {
            for k in self.row_start[o] as usize..self.row_start[o + 1] as usize {
                triples.push((self.column[k] as usize, o, self.weight[k]));
            }
        }
        Self::from_triples(self.inputs, self.outputs, triples)
    }

    pub fn nnz(&self) -> usize {
        self.column.len()
    }
}

/// Twin of `record_sparse_map`.
pub fn record_sparse_map(rows: usize, map: &SparseMap, x: &[f64], out: &mut [f64], accumulate: bool) {
    for r in 0..rows {
        for i in 0..map.outputs {
            let mut acc = 0.0;
            for k in map.row_start[i] as usize..map.row_start[i + 1] as usize {
                acc += map.weight[k] * x[r * map.inputs + map.column[k] as usize];
            }
            let o = &mut out[r * map.outputs + i];
            *o = if accumulate { *o + acc } else { acc };
        }
    }
}

fn matrix_start(map: &MatrixMap, lead: usize, i: usize) -> usize {
    let (r, l) = (i / lead, i % lead);
    row_start(map.rows, r) + l * map.lead_stride as usize
}

/// Twin of `record_batched_matmul`.
pub fn record_batched_matmul(spec: &BatchedMatmul, a: &[f64], b: &[f64], out: &mut [f64]) {
    let (m, n, k) = (spec.m, spec.n, spec.k);
    for i in 0..spec.rows * spec.lead {
        let (sa, sb) = (matrix_start(&spec.a, spec.lead, i), matrix_start(&spec.b, spec.lead, i));
        for row in 0..m {
            for col in 0..n {
                let mut acc = 0.0;
                for p in 0..k {
                    let va = if spec.a.transposed { a[sa + p * m + row] } else { a[sa + row * k + p] };
                    let vb = if spec.b.transposed { b[sb + col * k + p] } else { b[sb + p * n + col] };
                    acc += va * vb;
                }
                out[i * m * n + row * n + col] = acc;
            }
        }
    }
}

/// Twin of `record_conv2d`.
pub fn record_conv2d(spec: &Conv2d, x: &[f64], w: &[f64], out: &mut [f64]) {
    let s = spec;
    let (cin_g, cout_g) = (s.c_in / s.groups, s.c_out / s.groups);
    let (kh, kw) = (s.kernel[0], s.kernel[1]);
    let in_len = s.c_in * s.h_in * s.w_in;
    let out_len = s.c_out * s.h_out * s.w_out;
    for r in 0..s.rows {
        for o in 0..s.c_out {
            let g = o / cout_g;
            for y in 0..s.h_out {
                for xo in 0..s.w_out {
                    let mut acc = 0.0;
                    for c in g * cin_g..(g + 1) * cin_g {
                        for i in 0..kh {
                            for j in 0..kw {
                                let (iy, ix, weight) = if s.transposed {
                                    let ny = (y + s.pad[0]) as isize - (i * s.dilation[0]) as isize;
                                    let nx = (xo + s.pad[1]) as isize - (j * s.dilation[1]) as isize;
                                    if ny < 0
                                        || nx < 0
                                        || !(ny as usize).is_multiple_of(s.stride[0])
                                        || !(nx as usize).is_multiple_of(s.stride[1])
                                    {
                                        continue;
                                    }
                                    let wi = ((c * cout_g + (o - g * cout_g)) * kh + i) * kw + j;
                                    (ny / s.stride[0] as isize, nx / s.stride[1] as isize, w[wi])
                                } else {
                                    let iy = (y * s.stride[0] + i * s.dilation[0]) as isize - s.pad[0] as isize;
                                    let ix = (xo * s.stride[1] + j * s.dilation[1]) as isize - s.pad[1] as isize;
                                    let wi = ((o * cin_g + (c - g * cin_g)) * kh + i) * kw + j;
                                    (iy, ix, w[wi])
                                };
                                if iy < 0 || ix < 0 || iy as usize >= s.h_in || ix as usize >= s.w_in {
                                    continue;
                                }
                                acc += weight * x[r * in_len + (c * s.h_in + iy as usize) * s.w_in + ix as usize];
                            }
                        }
                    }
                    out[r * out_len + (o * s.h_out + y) * s.w_out + xo] = acc;
                }
            }
        }
    }
}

/// Mean and 1/√(var + eps) of one group.
pub fn group_stats(x: &[f64], eps: f64) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// Twin of `record_norm`.
pub fn record_norm(groups: usize, size: usize, eps: f64, x: &[f64], out: &mut [f64]) {
    for g in 0..groups {
        let xs = &x[g * size..(g + 1) * size];
        let (mean, rstd) = group_stats(xs, eps);
        for i in 0..size {
            out[g * size + i] = (xs[i] - mean) * rstd;
        }
    }
}

/// Twin of `record_norm_affine`: `store` = (row_len, channels, inner, scale, shift, act).
#[allow(clippy::type_complexity)]
pub fn record_norm_affine(
    groups: usize,
    size: usize,
    eps: f64,
    x: &[f64],
    store: (usize, usize, usize, Option<&[f64]>, Option<&[f64]>, Option<UnaryFn>),
    out: &mut [f64],
) {
    let (row_len, channels, inner, scale, shift, act) = store;
    record_norm(groups, size, eps, x, out);
    for (index, v) in out.iter_mut().enumerate().take(groups * size) {
        let c = ((index % row_len) / inner) % channels;
        if let Some(scale) = scale {
            *v *= scale[c];
        }
        if let Some(shift) = shift {
            *v += shift[c];
        }
        if let Some(f) = act {
            *v = unary(f, false, *v);
        }
    }
}

/// Twin of `record_norm_tangent`.
#[allow(clippy::too_many_arguments)]
pub fn record_norm_tangent(
    rows: usize,
    rep: usize,
    groups_per_row: usize,
    size: usize,
    eps: f64,
    x: &[f64],
    d: &[f64],
    out: &mut [f64],
) {
    for r in 0..rows {
        for g in 0..groups_per_row {
            let xs = &x[((r / rep) * groups_per_row + g) * size..][..size];
            let ds = &d[(r * groups_per_row + g) * size..][..size];
            let (mean, rstd) = group_stats(xs, eps);
            let n = size as f64;
            let mean_d = ds.iter().sum::<f64>() / n;
            let mean_xd = (0..size).map(|i| (xs[i] - mean) * rstd * ds[i]).sum::<f64>() / n;
            for i in 0..size {
                let xhat = (xs[i] - mean) * rstd;
                out[(r * groups_per_row + g) * size + i] = rstd * (ds[i] - mean_d - xhat * mean_xd);
            }
        }
    }
}

/// Twin of `record_softmax`.
pub fn record_softmax(rows: usize, outer: usize, n: usize, inner: usize, x: &[f64], out: &mut [f64]) {
    for r in 0..rows {
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| r * outer * n * inner + (o * n + j) * inner + i;
                let max = (0..n).map(|j| x[at(j)]).fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = (0..n).map(|j| (x[at(j)] - max).exp()).sum();
                for j in 0..n {
                    out[at(j)] = (x[at(j)] - max).exp() / sum;
                }
            }
        }
    }
}

/// Twin of `record_softmax_tangent`.
#[allow(clippy::too_many_arguments)]
pub fn record_softmax_tangent(
    rows: usize,
    rep: usize,
    outer: usize,
    n: usize,
    inner: usize,
    y: &[f64],
    d: &[f64],
    out: &mut [f64],
) {
    let len = outer * n * inner;
    for r in 0..rows {
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| (o * n + j) * inner + i;
                let ys = |j: usize| y[(r / rep) * len + at(j)];
                let dot: f64 = (0..n).map(|j| ys(j) * d[r * len + at(j)]).sum();
                for j in 0..n {
                    out[r * len + at(j)] = ys(j) * (d[r * len + at(j)] - dot);
                }
            }
        }
    }
}

/// What [`record_store_epilogue`] applies (crate::graph::ir::StoreEpilogue with its operands): a bias per column,
/// an addend in the output's layout, an activation, a derivative factor f′(pre) and a scale per row (each a primal
/// operand with its row map).
pub struct StoreEpilogue<'a> {
    pub bias: Option<&'a [f64]>,
    pub addend: Option<&'a [f64]>,
    pub act: Option<UnaryFn>,
    pub deriv: Option<(UnaryFn, &'a [f64], RowMap)>,
    pub scale: Option<(&'a [f64], RowMap)>,
}

/// Twin of a fused product's store (crate::graph::ir::StoreEpilogue, the tuned matmul kernels' epilogue) applied
/// to `out` holding A·B: `rows` rows of `per_row` elements, element i of a row in column `column(i)`:
/// out = act(out + bias[column] + addend[r · per_row + i]) · f′(pre[(r / pre.rep) · pre.stride + i])
///       · scale[(r / scale.rep) · scale.stride].
pub fn record_store_epilogue(
    rows: usize,
    per_row: usize,
    column: &dyn Fn(usize) -> usize,
    store: &StoreEpilogue,
    out: &mut [f64],
) {
    for r in 0..rows {
        let scale = store.scale.map(|(scale, map)| scale[row_start(map, r)]);
        for i in 0..per_row {
            let mut v = out[r * per_row + i];
            if let Some(bias) = store.bias {
                v += bias[column(i)];
            }
            if let Some(addend) = store.addend {
                v += addend[r * per_row + i];
            }
            if let Some(f) = store.act {
                v = unary(f, false, v);
            }
            if let Some((f, pre, map)) = store.deriv {
                v *= unary(f, true, pre[row_start(map, r) + i]);
            }
            if let Some(scale) = scale {
                v *= scale;
            }
            out[r * per_row + i] = v;
        }
    }
}
