//! Matrix products C = act(A·B + bias) · row_scale on the GPU (shaders/matmul_tiled.wgsl, matmul_tiled_128.wgsl,
//! matmul_small.wgsl, matmul_coop.wgsl), one variant per shape bucket ([`TilePlan`]).

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
/// addend (before the activation), an activation, a factor act'(pre) per element of the row's group, and a scale
/// per row group (see the WGSL header). The addend and the factor share the kernels' `pre` binding: one or the other.
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    pub act_a: Activation,
    pub bias: Option<&'a wgpu::Buffer>,
    pub act: Activation,
    pub deriv: Option<(Activation, &'a wgpu::Buffer)>,
    /// Added to A·B + bias before the activation, laid out as `pre` ([M / group_rows, ld_pre] from offset_pre).
    pub addend: Option<&'a wgpu::Buffer>,
    pub row_scale: Option<&'a wgpu::Buffer>,
    pub store_group_transposed: bool,
}

impl<'a> Epilogue<'a> {
    pub const NONE: Epilogue<'static> = Epilogue {
        act_a: Activation::Identity,
        bias: None,
        act: Activation::Identity,
        deriv: None,
        addend: None,
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

    /// Add `addend` (laid out as the factor's pre-activations, see [`MatmulShape::with_pre_layout`]) before the
    /// activation: C = act(A·B + bias + addend), e.g. the other summand of a sum of two products.
    pub fn with_addend(mut self, addend: &'a wgpu::Buffer) -> Self {
        self.addend = Some(addend);
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

/// Below this many output rows the 64-row tiles would mostly compute padding.
const SMALL_ROWS: u32 = 16;
/// The 128×128 tiles need M and N at least this large (below, over a quarter of a tile could be padding).
const LARGE_SIDE: u32 = 384;
/// ... and at least this many 128×128 tiles over the batch: two per streaming multiprocessor of a 132-SM GPU
/// (H100). With fewer, the 64×64 tiles (four times as many workgroups) keep more of a big GPU busy.
const LARGE_MIN_TILES: u64 = 256;

/// Environment variable that forces a matmul variant: `small`, `64`, `128`, `coop` (or `auto`, the default).
pub const TILE_ENV: &str = "SCORELENS_MATMUL_TILE";

/// The matmul variants and the shape buckets they serve (see [`TilePlan::choose`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TilePlan {
    /// `matmul_small`: one thread per output, for a few rows (M ≤ 16).
    Small,
    /// `matmul_tiled`: 64×64 tiles, 4×4 outputs per thread; the medium bucket.
    Tile64,
    /// `matmul_tiled_128`: 128×128 tiles, 8×8 outputs per thread; the large bucket.
    Tile128,
    /// `matmul_coop`: 8×8 cooperative matrices (tensor cores) with f32 accumulation, only where the device was
    /// opened with them (`SCORELENS_COOP_MATRIX=1` on an adapter that offers them).
    Coop,
}

impl TilePlan {
    pub const ALL: [TilePlan; 4] = [TilePlan::Small, TilePlan::Tile64, TilePlan::Tile128, TilePlan::Coop];

    /// The kernel (entry of `gpu::kernels::KERNELS`) this plan runs.
    pub fn kernel(self) -> &'static str {
        match self {
            TilePlan::Small => "matmul_small",
            TilePlan::Tile64 => "matmul_tiled",
            TilePlan::Tile128 => "matmul_tiled_128",
            TilePlan::Coop => "matmul_coop",
        }
    }

    /// The short name used by `SCORELENS_MATMUL_TILE` and the bench items.
    pub fn label(self) -> &'static str {
        match self {
            TilePlan::Small => "small",
            TilePlan::Tile64 => "tile64",
            TilePlan::Tile128 => "tile128",
            TilePlan::Coop => "coop",
        }
    }

    /// Parses `small`, `64` / `tile64`, `128` / `tile128`, `coop`; `auto` (or empty) is `None`.
    pub fn parse(text: &str) -> Result<Option<TilePlan>> {
        match text.trim().to_lowercase().as_str() {
            "" | "auto" => Ok(None),
            "small" => Ok(Some(TilePlan::Small)),
            "64" | "tile64" => Ok(Some(TilePlan::Tile64)),
            "128" | "tile128" => Ok(Some(TilePlan::Tile128)),
            "coop" => Ok(Some(TilePlan::Coop)),
            other => {
                Err(Error::InvalidArgument(format!("{TILE_ENV}={other:?}: expected auto, small, 64, 128 or coop")))
            }
        }
    }

    /// The variant `SCORELENS_MATMUL_TILE` forces, if any: [`crate::DeviceOptions::from_env`] reads it once, and
    /// the kernels take the context's [`crate::DeviceOptions::matmul_tile`].
    pub fn forced() -> Result<Option<TilePlan>> {
        match std::env::var(TILE_ENV) {
            Ok(text) => TilePlan::parse(&text),
            Err(_) => Ok(None),
        }
    }

    /// The bucket rule: M ≤ 16 → small; with cooperative matrices, every other shape → coop; on a software
    /// driver every other shape → 128 (measured on lavapipe: 3× the 64 tile's speed from 256³ to 4096³ and at
    /// 65536×64×512, where the CPU vectorises the longer per-thread loops and has few cores to fill); on a GPU,
    /// M, N ≥ 384 with at least 256 tiles of 128×128 over the batch → 128, otherwise 64.
    pub fn choose(shape: &MatmulShape, target: MatmulTarget) -> TilePlan {
        if shape.m <= SMALL_ROWS {
            return TilePlan::Small;
        }
        if target.cooperative_matrices {
            return TilePlan::Coop;
        }
        if target.software_driver {
            return TilePlan::Tile128;
        }
        let tiles = shape.m.div_ceil(128) as u64 * shape.n.div_ceil(128) as u64 * shape.batch as u64;
        if shape.m >= LARGE_SIDE && shape.n >= LARGE_SIDE && tiles >= LARGE_MIN_TILES {
            TilePlan::Tile128
        } else {
            TilePlan::Tile64
        }
    }

    /// Output rows and columns one workgroup covers: the dispatch is (⌈N/cols⌉, ⌈M/rows⌉, batch).
    fn workgroup_tile(self) -> (u32, u32) {
        match self {
            TilePlan::Small => (1, 64),
            TilePlan::Tile64 => (64, 64),
            TilePlan::Tile128 => (128, 128),
            TilePlan::Coop => (COOP_TILE, COOP_TILE),
        }
    }

    fn from_kernel(name: &str) -> Option<TilePlan> {
        TilePlan::ALL.into_iter().find(|p| p.kernel() == name)
    }
}

/// Output tile of `matmul_coop` (see its header).
const COOP_TILE: u32 = 32;

/// What the chooser knows of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MatmulTarget {
    /// Cooperative matrices were enabled on the device (`SCORELENS_COOP_MATRIX=1`).
    pub cooperative_matrices: bool,
    /// A CPU adapter (lavapipe, WARP, SwiftShader).
    pub software_driver: bool,
}

impl MatmulTarget {
    /// A GPU without cooperative matrices.
    pub const GPU: MatmulTarget = MatmulTarget { cooperative_matrices: false, software_driver: false };

    pub fn of(ctx: &crate::gpu::GpuContext) -> Self {
        MatmulTarget { cooperative_matrices: ctx.coop_matrix_enabled(), software_driver: ctx.caps.is_cpu() }
    }
}

/// Which kernel a shape runs on, on a GPU without a forced variant or cooperative matrices ([`TilePlan::choose`]).
pub fn kernel_for(shape: &MatmulShape) -> &'static str {
    TilePlan::choose(shape, MatmulTarget::GPU).kernel()
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
    // A forced coop plan without cooperative matrices was refused when the context was opened.
    let plan = match rec.ctx().forced_matmul_tile() {
        Some(plan) => plan,
        None => TilePlan::choose(shape, MatmulTarget::of(rec.ctx())),
    };
    record_matmul_with(rec, plan.kernel(), shape, a, b, epilogue, c)
}

/// As [`record_matmul`], on a named kernel variant (`TilePlan::kernel`: `matmul_small`, `matmul_tiled`,
/// `matmul_tiled_128`, `matmul_coop`); tests and benches use it.
pub fn record_matmul_with(
    rec: &mut Recorder,
    kernel_name: &'static str,
    shape: &MatmulShape,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    epilogue: Epilogue,
    c: &wgpu::Buffer,
) -> Result<()> {
    let plan = TilePlan::from_kernel(kernel_name)
        .ok_or_else(|| Error::Kernel { kernel: kernel_name.into(), message: "not a matmul kernel".into() })?;
    if plan == TilePlan::Coop && !rec.ctx().coop_matrix_enabled() {
        return Err(Error::Kernel {
            kernel: kernel_name.into(),
            message: format!("the device was not opened with cooperative matrices ({}=1)", crate::gpu::COOP_MATRIX_ENV),
        });
    }
    if epilogue.deriv.is_some() && epilogue.addend.is_some() {
        return Err(Error::Kernel {
            kernel: kernel_name.into(),
            message: "a derivative factor and an addend share the `pre` binding: give one or the other".into(),
        });
    }
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
            ("ADD_PRE", epilogue.addend.is_some() as u32 as f64),
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
    let (rows, cols) = plan.workgroup_tile();
    let groups = [shape.n.div_ceil(cols), shape.m.div_ceil(rows), shape.batch];
    rec.dispatch(
        &kernel,
        &[
            a,
            b,
            epilogue.bias.unwrap_or(dummy),
            epilogue.row_scale.unwrap_or(dummy),
            epilogue.deriv.map(|(_, p)| p).or(epilogue.addend).unwrap_or(dummy),
            c,
            &uniform,
        ],
        groups,
    )
}
