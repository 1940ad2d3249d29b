//! Matrix products C = act(A·B + bias) · row_scale on the GPU (shaders/matmul_tiled.wgsl, shaders/matmul_small.wgsl).

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::gpu::Recorder;

/// Shape and memory layout of a (batched) product; all strides in f32 elements. See matmul_tiled.wgsl's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulShape {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub batch: u32,
    /// A is stored [K, M] (row-major) instead of [M, K].
    pub trans_a: bool,
    /// B is stored [N, K] instead of [K, N], as an `nn.Linear` weight.
    pub trans_b: bool,
    pub lda: u32,
    pub ldb: u32,
    pub ldc: u32,
    pub stride_a: u32,
    pub stride_b: u32,
    pub stride_c: u32,
    /// Where each operand starts inside its buffer (elements), so products can work on parts of larger buffers.
    pub offset_a: u32,
    pub offset_b: u32,
    pub offset_c: u32,
    /// Rows per group: row m belongs to group m / group_rows, which indexes `row_scale` and `pre` (e.g. the point
    /// that a block of tangent rows belongs to). 1 by default.
    pub group_rows: u32,
    /// Leading dimension and offset of the epilogue's pre-activations `pre` [M / group_rows, ld_pre].
    pub ld_pre: u32,
    pub offset_pre: u32,
}

impl MatmulShape {
    /// Contiguous row-major A [M, K], B [K, N], C [M, N], one batch.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        let (m, n, k) = (m as u32, n as u32, k as u32);
        MatmulShape {
            m,
            n,
            k,
            batch: 1,
            trans_a: false,
            trans_b: false,
            lda: k,
            ldb: n,
            ldc: n,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
            offset_a: 0,
            offset_b: 0,
            offset_c: 0,
            group_rows: 1,
            ld_pre: n,
            offset_pre: 0,
        }
    }

    /// Rows come in groups of `rows` (row m is in group m / rows) for the row scale, the pre-activations of the
    /// derivative factor, and the grouped transposed store.
    pub fn with_group_rows(mut self, rows: usize) -> Self {
        self.group_rows = rows as u32;
        self
    }

    /// The derivative factor's pre-activations start at `offset` with rows `ld` apart.
    pub fn with_pre_layout(mut self, ld: usize, offset: usize) -> Self {
        (self.ld_pre, self.offset_pre) = (ld as u32, offset as u32);
        self
    }

    /// B is stored [K, N] with rows `ldb` apart (e.g. the first columns of a wider weight).
    pub fn with_ldb(mut self, ldb: usize) -> Self {
        self.ldb = ldb as u32;
        self
    }

    /// Operands start at these element offsets inside their buffers.
    pub fn with_offsets(mut self, a: usize, b: usize, c: usize) -> Self {
        (self.offset_a, self.offset_b, self.offset_c) = (a as u32, b as u32, c as u32);
        self
    }

    /// C rows are `ldc` elements apart (C is a column block of a wider matrix).
    pub fn with_ldc(mut self, ldc: usize) -> Self {
        self.ldc = ldc as u32;
        self
    }

    /// A stored transposed ([K, M], contiguous).
    pub fn with_trans_a(mut self) -> Self {
        self.trans_a = true;
        self.lda = self.m;
        self
    }

    /// B stored transposed ([N, K], contiguous), as the weight of `nn.Linear`.
    pub fn with_trans_b(mut self) -> Self {
        self.trans_b = true;
        self.ldb = self.k;
        self
    }

    /// `batch` products whose operands follow each other contiguously (strides are the matrix sizes).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch as u32;
        self
    }

    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64 * self.batch as f64
    }

    /// Elements of A, B and C that the layout reaches (the buffers must hold at least these).
    pub fn extents(&self) -> (u64, u64, u64) {
        let span = |rows: u32, cols: u32, ld: u32, stride: u32| -> u64 {
            if rows == 0 || cols == 0 || self.batch == 0 {
                return 0;
            }
            (self.batch as u64 - 1) * stride as u64 + (rows as u64 - 1) * ld as u64 + cols as u64
        };
        let a = self.offset_a as u64
            + if self.trans_a {
                span(self.k, self.m, self.lda, self.stride_a)
            } else {
                span(self.m, self.k, self.lda, self.stride_a)
            };
        let b = self.offset_b as u64
            + if self.trans_b {
                span(self.n, self.k, self.ldb, self.stride_b)
            } else {
                span(self.k, self.n, self.ldb, self.stride_b)
            };
        let c = self.offset_c as u64 + span(self.m, self.n, self.ldc, self.stride_c);
        (a, b, c)
    }
}

/// What is fused around the product: an activation of A as it loads, and at the store a bias per column, an
/// activation, a factor act'(pre) per element of the row's group, and a scale per row group (see the WGSL header).
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    pub act_a: Activation,
    pub bias: Option<&'a wgpu::Buffer>,
    pub act: Activation,
    pub deriv: Option<(Activation, &'a wgpu::Buffer)>,
    pub row_scale: Option<&'a wgpu::Buffer>,
    pub store_group_transposed: bool,
}

impl<'a> Epilogue<'a> {
    pub const NONE: Epilogue<'static> = Epilogue {
        act_a: Activation::Identity,
        bias: None,
        act: Activation::Identity,
        deriv: None,
        row_scale: None,
        store_group_transposed: false,
    };

    pub fn act(act: Activation) -> Self {
        Epilogue { act, ..Epilogue::NONE }
    }

    pub fn with_bias(mut self, bias: &'a wgpu::Buffer) -> Self {
        self.bias = Some(bias);
        self
    }

    pub fn with_row_scale(mut self, scale: &'a wgpu::Buffer) -> Self {
        self.row_scale = Some(scale);
        self
    }

    pub fn with_act_a(mut self, act: Activation) -> Self {
        self.act_a = act;
        self
    }

    /// Multiply by act'(pre) at the store (the chain rule through an activation).
    pub fn with_deriv(mut self, act: Activation, pre: &'a wgpu::Buffer) -> Self {
        self.deriv = Some((act, pre));
        self
    }

    pub fn with_group_transposed_store(mut self) -> Self {
        self.store_group_transposed = true;
        self
    }
}

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    offset_a: u32,
    stride_a: u32,
    stride_b: u32,
    stride_c: u32,
    offset_b: u32,
    offset_c: u32,
    group_rows: u32,
    ld_pre: u32,
    offset_pre: u32,
}

const TILE: u32 = 64;
/// Below this many output rows the 64-row tiles would mostly compute padding.
const SMALL_ROWS: u32 = 16;

/// Which kernel a shape runs on.
pub fn kernel_for(shape: &MatmulShape) -> &'static str {
    if shape.m <= SMALL_ROWS {
        "matmul_small"
    } else {
        "matmul_tiled"
    }
}

/// Records C = act(A·B + bias)·row_scale into `rec`.
pub fn record_matmul(
    rec: &mut Recorder,
    shape: &MatmulShape,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    epilogue: Epilogue,
    c: &wgpu::Buffer,
) -> Result<()> {
    record_matmul_with(rec, kernel_for(shape), shape, a, b, epilogue, c)
}

/// As [`record_matmul`], on a named kernel variant (`matmul_tiled` or `matmul_small`); tests and benches use it.
pub fn record_matmul_with(
    rec: &mut Recorder,
    kernel_name: &'static str,
    shape: &MatmulShape,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    epilogue: Epilogue,
    c: &wgpu::Buffer,
) -> Result<()> {
    let (ea, eb, ec) = shape.extents();
    for (name, need, buf) in [("A", ea, a), ("B", eb, b), ("C", ec, c)] {
        if need * 4 > buf.size() {
            return Err(Error::Kernel {
                kernel: kernel_name.into(),
                message: format!("operand {name} needs {need} elements but its buffer holds {}", buf.size() / 4),
            });
        }
    }
    let ctx = rec.ctx();
    let kernel = ctx.kernel(
        kernel_name,
        &[
            ("TRANS_A", shape.trans_a as u32 as f64),
            ("TRANS_B", shape.trans_b as u32 as f64),
            ("ACT", epilogue.act.code() as f64),
            ("ACT_A", epilogue.act_a.code() as f64),
            ("DERIV_ACT", epilogue.deriv.map_or(0, |(a, _)| a.code()) as f64),
            ("HAS_BIAS", epilogue.bias.is_some() as u32 as f64),
            ("SCALE_ROWS", epilogue.row_scale.is_some() as u32 as f64),
            ("STORE_GROUP_TRANSPOSED", epilogue.store_group_transposed as u32 as f64),
        ],
    )?;
    let params = Params {
        m: shape.m,
        n: shape.n,
        k: shape.k,
        batch: shape.batch,
        lda: shape.lda,
        ldb: shape.ldb,
        ldc: shape.ldc,
        offset_a: shape.offset_a,
        stride_a: shape.stride_a,
        stride_b: shape.stride_b,
        stride_c: shape.stride_c,
        offset_b: shape.offset_b,
        offset_c: shape.offset_c,
        group_rows: shape.group_rows.max(1),
        ld_pre: shape.ld_pre,
        offset_pre: shape.offset_pre,
    };
    let uniform = ctx.uniform("matmul/params", &params);
    let dummy = ctx.dummy();
    let groups = if kernel_name == "matmul_small" {
        [shape.n.div_ceil(TILE), shape.m, shape.batch]
    } else {
        [shape.n.div_ceil(TILE), shape.m.div_ceil(TILE), shape.batch]
    };
    rec.dispatch(
        &kernel,
        &[
            a,
            b,
            epilogue.bias.unwrap_or(dummy),
            epilogue.row_scale.unwrap_or(dummy),
            epilogue.deriv.map_or(dummy, |(_, p)| p),
            c,
            &uniform,
        ],
        groups,
    )
}
