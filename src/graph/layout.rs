//! Layout ops as per-row sparse linear maps: transposes, slices, padding, gathers, tiling, resizing, pooling and
//! reductions over a row's (per-row) shape. Each builder returns the map from the input's elements to the
//! output's; the engine transposes a map for the adjoint.

use crate::reference::graph_ops::SparseMap;

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for a in (0..shape.len().saturating_sub(1)).rev() {
        s[a] = s[a + 1] * shape[a + 1];
    }
    s
}

/// Calls `f(index, coords)` for every element of `shape` in row-major order.
pub fn for_each_coord(shape: &[usize], mut f: impl FnMut(usize, &[usize])) {
    let n: usize = shape.iter().product();
    let mut coord = vec![0usize; shape.len()];
    for i in 0..n {
        f(i, &coord);
        for a in (0..shape.len()).rev() {
            coord[a] += 1;
            if coord[a] < shape[a] {
                break;
            }
            coord[a] = 0;
        }
    }
}

fn offset(coord: &[usize], strides: &[usize]) -> usize {
    coord.iter().zip(strides).map(|(c, s)| c * s).sum()
}

/// out = in permuted: output axis a is input axis perm[a].
pub fn transpose(shape: &[usize], perm: &[usize]) -> (Vec<usize>, SparseMap) {
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let s = strides(shape);
    let mut source = Vec::with_capacity(out_shape.iter().product());
    for_each_coord(&out_shape, |_, c| {
        source.push(Some(perm.iter().zip(c).map(|(&p, &ci)| ci * s[p]).sum()));
    });
    (out_shape, SparseMap::gather(shape.iter().product(), &source))
}

/// One axis of a strided selection: output coordinate j reads input coordinate start + j·step.
#[derive(Debug, Clone, Copy)]
pub struct AxisSlice {
    pub start: i64,
    pub step: i64,
    pub len: usize,
}

/// Selects per axis (a slice, or a split part).
pub fn slice(shape: &[usize], axes: &[AxisSlice]) -> (Vec<usize>, SparseMap) {
    let out_shape: Vec<usize> = axes.iter().map(|a| a.len).collect();
    let s = strides(shape);
    let mut source = Vec::new();
    for_each_coord(&out_shape, |_, c| {
        let o = c.iter().zip(axes).zip(&s).map(|((&ci, a), st)| (a.start + ci as i64 * a.step) as usize * st).sum();
        source.push(Some(o));
    });
    (out_shape, SparseMap::gather(shape.iter().product(), &source))
}

/// Constant zero padding: `before[a]` and `after[a]` elements per axis (negative values crop).
pub fn pad(shape: &[usize], before: &[i64], after: &[i64]) -> (Vec<usize>, SparseMap) {
    let out_shape: Vec<usize> =
        shape.iter().zip(before.iter().zip(after)).map(|(&d, (&b, &a))| (d as i64 + b + a).max(0) as usize).collect();
    let s = strides(shape);
    let mut source = Vec::new();
    for_each_coord(&out_shape, |_, c| {
        let mut o = 0usize;
        for (a, &ci) in c.iter().enumerate() {
            let src = ci as i64 - before[a];
            if src < 0 || src >= shape[a] as i64 {
                source.push(None);
                return;
            }
            o += src as usize * s[a];
        }
        source.push(Some(o));
    });
    (out_shape, SparseMap::gather(shape.iter().product(), &source))
}

/// Gather along `axis` with constant indices (already made non-negative): output shape
/// shape[..axis] + index_shape + shape[axis + 1..].
pub fn gather(shape: &[usize], axis: usize, indices: &[usize], index_shape: &[usize]) -> (Vec<usize>, SparseMap) {
    let mut out_shape = shape[..axis].to_vec();
    out_shape.extend_from_slice(index_shape);
    out_shape.extend_from_slice(&shape[axis + 1..]);
    let s = strides(shape);
    let k = index_shape.len();
    let mut source = Vec::new();
    let idx_strides = strides(index_shape);
    for_each_coord(&out_shape, |_, c| {
        let pos = offset(&c[axis..axis + k], &idx_strides);
        let mut o = indices[pos] * s[axis];
        o += offset(&c[..axis], &s[..axis]);
        o += offset(&c[axis + k..], &s[axis + 1..]);
        source.push(Some(o));
    });
    (out_shape, SparseMap::gather(shape.iter().product(), &source))
}

/// Tiling: each axis repeated `repeats[a]` times.
pub fn tile(shape: &[usize], repeats: &[usize]) -> (Vec<usize>, SparseMap) {
    let out_shape: Vec<usize> = shape.iter().zip(repeats).map(|(d, r)| d * r).collect();
    let s = strides(shape);
    let mut source = Vec::new();
    for_each_coord(&out_shape, |_, c| {
        source.push(Some(c.iter().enumerate().map(|(a, &ci)| (ci % shape[a]) * s[a]).sum()));
    });
    (out_shape, SparseMap::gather(shape.iter().product(), &source))
}

/// Separable per-axis interpolation: `weights[a]` lists, for each output coordinate along axis a, the
/// (input coordinate, weight) pairs it combines (resize, pooling, reductions are all of this form).
pub fn separable(shape: &[usize], weights: &[Vec<Vec<(usize, f64)>>]) -> (Vec<usize>, SparseMap) {
    let out_shape: Vec<usize> = weights.iter().map(Vec::len).collect();
    let s = strides(shape);
    let mut triples = Vec::new();
    for_each_coord(&out_shape, |i, c| {
        // The tensor product of the axes' weight lists.
        let mut terms: Vec<(usize, f64)> = vec![(0, 1.0)];
        for (a, &ci) in c.iter().enumerate() {
            let mut next = Vec::with_capacity(terms.len() * weights[a][ci].len());
            for &(o, w) in &terms {
                for &(src, wa) in &weights[a][ci] {
                    next.push((o + src * s[a], w * wa));
                }
            }
            terms = next;
        }
        triples.extend(terms.into_iter().filter(|t| t.1 != 0.0).map(|(o, w)| (i, o, w)));
    });
    (out_shape.clone(), SparseMap::from_triples(out_shape.iter().product(), shape.iter().product(), triples))
}

/// Weights of the identity along an axis of length n.
pub fn identity_axis(n: usize) -> Vec<Vec<(usize, f64)>> {
    (0..n).map(|i| vec![(i, 1.0)]).collect()
}

/// Weights of a sum (or mean) over an axis of length n, kept as one element.
pub fn reduce_axis(n: usize, mean: bool) -> Vec<Vec<(usize, f64)>> {
    let w = if mean { 1.0 / n as f64 } else { 1.0 };
    vec![(0..n).map(|i| (i, w)).collect()]
}

/// Average pooling weights along one axis: windows of `kernel` taps `stride` apart over the input padded by
/// `pad_before` / `pad_after`; `count_pad` divides by the whole window (taps in the padding included).
pub fn pool_axis(
    n: usize,
    kernel: usize,
    stride: usize,
    pad_before: usize,
    out_len: usize,
    count_pad: bool,
    pad_after: usize,
) -> Vec<Vec<(usize, f64)>> {
    (0..out_len)
        .map(|o| {
            let start = (o * stride) as i64 - pad_before as i64;
            let taps: Vec<usize> =
                (0..kernel as i64).map(|k| start + k).filter(|&p| p >= 0 && p < n as i64).map(|p| p as usize).collect();
            let window_end = (start + kernel as i64).min(n as i64 + pad_after as i64);
            let count =
                if count_pad { (window_end - start.max(-(pad_before as i64))) as f64 } else { taps.len() as f64 };
            taps.into_iter().map(|p| (p, 1.0 / count.max(1.0))).collect()
        })
        .collect()
}

/// How output coordinates map back to input coordinates in a resize (ONNX coordinate_transformation_mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeCoordinates {
    HalfPixel,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
}

/// Rounding of a nearest-neighbour resize (ONNX nearest_mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// Resize weights along one axis, input length n, output length m, scale = m / n unless given.
pub fn resize_axis(
    n: usize,
    m: usize,
    scale: f64,
    coordinates: ResizeCoordinates,
    nearest: Option<NearestMode>,
) -> Vec<Vec<(usize, f64)>> {
    (0..m)
        .map(|o| {
            let x = match coordinates {
                ResizeCoordinates::HalfPixel => (o as f64 + 0.5) / scale - 0.5,
                ResizeCoordinates::PytorchHalfPixel => {
                    if m > 1 {
                        (o as f64 + 0.5) / scale - 0.5
                    } else {
                        0.0
                    }
                }
                ResizeCoordinates::AlignCorners => {
                    if m > 1 {
                        o as f64 * (n as f64 - 1.0) / (m as f64 - 1.0)
                    } else {
                        0.0
                    }
                }
                ResizeCoordinates::Asymmetric => o as f64 / scale,
            };
            let clamp = |v: i64| v.clamp(0, n as i64 - 1) as usize;
            match nearest {
                Some(mode) => {
                    let i = match mode {
                        NearestMode::Floor => x.floor(),
                        NearestMode::Ceil => x.ceil(),
                        NearestMode::RoundPreferFloor => {
                            if x.fract() == 0.5 {
                                x.floor()
                            } else {
                                x.round()
                            }
                        }
                        NearestMode::RoundPreferCeil => x.round(),
                    };
                    vec![(clamp(i as i64), 1.0)]
                }
                None => {
                    let x = x.clamp(0.0, n as f64 - 1.0);
                    let lo = x.floor();
                    let frac = x - lo;
                    let (i0, i1) = (clamp(lo as i64), clamp(lo as i64 + 1));
                    if frac == 0.0 || i0 == i1 {
                        vec![(i0, 1.0)]
                    } else {
                        vec![(i0, 1.0 - frac), (i1, frac)]
                    }
                }
            }
        })
        .collect()
}

/// The patches of a convolution (groups = 1) as a map from one NCHW row [C, H, W] to [Ho·Wo, C·kh·kw]: row p of
/// the result holds the taps output pixel p reads (zero in the padding), in the weight's [C, kh, kw] order, so that
/// patches · Wᵀ (W as [C_out, C·kh·kw]) is the convolution with the output pixel-major.
pub fn im2col(spec: &crate::ops::graph::Conv2d) -> SparseMap {
    let s = spec;
    let (kh, kw) = (s.kernel[0], s.kernel[1]);
    let taps = s.c_in * kh * kw;
    let mut source = Vec::with_capacity(s.h_out * s.w_out * taps);
    for y in 0..s.h_out {
        for x in 0..s.w_out {
            for c in 0..s.c_in {
                for i in 0..kh {
                    for j in 0..kw {
                        let iy = (y * s.stride[0] + i * s.dilation[0]) as isize - s.pad[0] as isize;
                        let ix = (x * s.stride[1] + j * s.dilation[1]) as isize - s.pad[1] as isize;
                        let inside = iy >= 0 && ix >= 0 && (iy as usize) < s.h_in && (ix as usize) < s.w_in;
                        source.push(inside.then(|| (c * s.h_in + iy as usize) * s.w_in + ix as usize));
                    }
                }
            }
        }
    }
    SparseMap::gather(s.c_in * s.h_in * s.w_in, &source)
}

/// The scatter of a transposed convolution (groups = 1): from [Hi·Wi, C_out·kh·kw] (the products x[:, p]ᵀ · W, W as
/// [C_in, C_out·kh·kw]) to the output row [C_out, Ho, Wo], each tap adding where ONNX's ConvTranspose puts it:
/// output (y, x) = (iy·sy − py + i·dy, ix·sx − px + j·dx).
pub fn col2im(spec: &crate::ops::graph::Conv2d) -> SparseMap {
    let s = spec;
    let (kh, kw) = (s.kernel[0], s.kernel[1]);
    let width = s.c_out * kh * kw;
    let mut triples = Vec::new();
    for iy in 0..s.h_in {
        for ix in 0..s.w_in {
            for o in 0..s.c_out {
                for i in 0..kh {
                    for j in 0..kw {
                        let y = (iy * s.stride[0] + i * s.dilation[0]) as isize - s.pad[0] as isize;
                        let x = (ix * s.stride[1] + j * s.dilation[1]) as isize - s.pad[1] as isize;
                        if y < 0 || x < 0 || y as usize >= s.h_out || x as usize >= s.w_out {
                            continue;
                        }
                        let out = (o * s.h_out + y as usize) * s.w_out + x as usize;
                        let col = (iy * s.w_in + ix) * width + (o * kh + i) * kw + j;
                        triples.push((out, col, 1.0));
                    }
                }
            }
        }
    }
    SparseMap::from_triples(s.c_out * s.h_out * s.w_out, s.h_in * s.w_in * width, triples)
}
