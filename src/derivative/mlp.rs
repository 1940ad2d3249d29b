//! Exact derivatives of the MLP score field: forward mode (J·V) and reverse mode (Jᵀ·U) on the GPU.
//!
//! With pre-activations a_l = W_l h_l + b_l, h_{l+1} = act(a_l), h_0 = [x, e(t)] and s = c(t)·(W_L h_L + b_L):
//!   forward:  ȧ_0 = W_0[:, :D] v,  ȧ_l = W_l (act'(a_{l−1}) ⊙ ȧ_{l−1}),  J v = c(t) W_L (act'(a_{L−1}) ⊙ ȧ_{L−1})
//!   reverse:  ā_{L−1} = act'(a_{L−1}) ⊙ W_Lᵀ c(t) u,  ā_{l−1} = act'(a_{l−1}) ⊙ W_lᵀ ā_l,  Jᵀ u = W_0[:, :D]ᵀ ā_0
//! The primal pass stores the a_l once per point; each product is then a chain of matmuls whose epilogues apply
//! act'(a_l) of the row's point (rows come in groups of P tangents or cotangents per point).

use crate::activation::Activation;
use crate::error::Result;
use crate::field::chunked::TimeTable;
use crate::field::MlpField;
use crate::gpu::{BufferRole, GpuContext, Recorder, ScratchPool};
use crate::ops::matmul::{record_matmul, Epilogue, MatmulShape};
use crate::ops::mlp_input::record_mlp_input;

/// The MLP linearised at a batch of points: their pre-activations resident on the GPU.
pub struct MlpLinearization<'f> {
    field: &'f MlpField,
    points: usize,
    /// a_l [points, H_l] of every hidden layer.
    pre: Vec<wgpu::Buffer>,
    /// c(t) per point (1/std(t) for inv_std).
    point_scale: wgpu::Buffer,
    /// The input rows [x, e(t)], [points, D + E].
    h0: wgpu::Buffer,
    /// The products' intermediate rows, kept between calls (every element is written before it is read).
    scratch: ScratchPool,
}

/// How J·V is stored: as V is ([B, P, D], row p of point b holding J v_p), or each point's block transposed
/// ([B, D, P]: with V = I that is the Jacobian, row i holding ∂s_i/∂x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TangentLayout {
    LikeInput,
    Transposed,
}

impl<'f> MlpLinearization<'f> {
    /// Runs the primal pass for `x` ([points, D]) at `t` (one per point or one for all) and keeps what the
    /// derivatives need. One submit; nothing is read back.
    pub fn new(field: &'f MlpField, x: &[f32], t: &[f32]) -> Result<Self> {
        let ctx = field.ctx();
        let model = field.model();
        let points = x.len() / model.dim;
        let times = TimeTable::build(t, 0..points, |t| model.fourier_features(t), |t| model.output_factor(t));
        let xb = ctx.upload("mlp/linearize/x", x);
        let features = ctx.upload("mlp/linearize/features", &times.features);
        let index = ctx.upload("mlp/linearize/time_index", &times.index);
        let lin = Self::allocate(field, points);
        ctx.write(&lin.point_scale, &times.row_scale);
        let mut rec = Recorder::new(ctx, "mlp/linearize");
        lin.record_primal(&mut rec, &xb, &features, &index)?;
        rec.submit();
        Ok(lin)
    }

    /// Room for the primal pass of `points` points; [`Self::record_primal`] fills it (the output factors c(t)
    /// are written to [`Self::point_scale`] by the caller).
    pub(crate) fn allocate(field: &'f MlpField, points: usize) -> Self {
        let ctx = field.ctx();
        let model = field.model();
        let (d, e) = (model.dim, model.embed_dim());
        let words = |n: usize| (n.max(1) * 4) as u64;
        let pre = model.layers[..model.layers.len() - 1]
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                ctx.buffer(&format!("mlp/linearize/pre{l}"), words(points * layer.outputs), BufferRole::Storage)
            })
            .collect();
        MlpLinearization {
            field,
            points,
            pre,
            point_scale: ctx.buffer("mlp/linearize/point_scale", words(points), BufferRole::Storage),
            h0: ctx.buffer("mlp/linearize/h0", words(points * (d + e)), BufferRole::Storage),
            scratch: ScratchPool::default(),
        }
    }

    pub(crate) fn model(&self) -> &'f crate::model::MlpModel {
        self.field.model()
    }

    /// c(t) per point, the factor of the output layer.
    pub(crate) fn point_scale(&self) -> &wgpu::Buffer {
        &self.point_scale
    }

    /// Records the primal pass at device-resident points `x` ([points, D]) with time features `features`
    /// ([T, E]) indexed per point by `time_index`.
    pub(crate) fn record_primal(
        &self,
        rec: &mut Recorder,
        x: &wgpu::Buffer,
        features: &wgpu::Buffer,
        time_index: &wgpu::Buffer,
    ) -> Result<()> {
        let model = self.field.model();
        let (d, e) = (model.dim, model.embed_dim());
        let points = self.points;
        record_mlp_input(rec, points, d, e, x, features, time_index, &self.h0)?;
        for (l, out) in self.pre.iter().enumerate() {
            let layer = &model.layers[l];
            let (weight, bias) = self.field.layer_buffers(l);
            let shape = MatmulShape::new(points, layer.outputs, layer.inputs).with_trans_b();
            // Layer l reads act(a_{l−1}) by activating its input as it loads.
            let (input, act_a) = if l == 0 { (&self.h0, Activation::Identity) } else { (&self.pre[l - 1], model.act) };
            record_matmul(
                rec,
                &shape,
                input,
                weight,
                Epilogue::act(Activation::Identity).with_act_a(act_a).with_bias(bias),
                out,
            )?;
        }
        Ok(())
    }

    /// Records the score s = c(t) (W_L act(a_{L−1}) + b_L) of the linearised points into `out` ([points, D]).
    pub(crate) fn record_score(&self, rec: &mut Recorder, out: &wgpu::Buffer) -> Result<()> {
        let model = self.field.model();
        let last = model.layers.len() - 1;
        let layer = &model.layers[last];
        let (weight, bias) = self.field.layer_buffers(last);
        let (input, act_a) = match self.pre.last() {
            Some(pre) => (pre, model.act),
            None => (&self.h0, Activation::Identity),
        };
        let shape = MatmulShape::new(self.points, layer.outputs, layer.inputs).with_trans_b();
        let epilogue =
            Epilogue::act(Activation::Identity).with_act_a(act_a).with_bias(bias).with_row_scale(&self.point_scale);
        record_matmul(rec, &shape, input, weight, epilogue, out)
    }

    pub fn points(&self) -> usize {
        self.points
    }

    /// The hidden units' pre-activations a_l of every point, [points, ΣH] (layer by layer), read back.
    pub fn pre_activations(&self) -> Result<Vec<f32>> {
        let widths = self.field.model().hidden();
        let per_point: usize = widths.iter().sum();
        let mut out = vec![0f32; self.points * per_point];
        let mut column = 0;
        for (buffer, &width) in self.pre.iter().zip(&widths) {
            let values: Vec<f32> = self.ctx().download(buffer, self.points * width)?;
            for p in 0..self.points {
                out[p * per_point + column..p * per_point + column + width]
                    .copy_from_slice(&values[p * width..(p + 1) * width]);
            }
            column += width;
        }
        Ok(out)
    }

    pub fn dim(&self) -> usize {
        self.field.model().dim
    }

    fn ctx(&self) -> &GpuContext {
        self.field.ctx()
    }

    /// Records J·V for `per_point` tangents per point: `v` [points, P, D] → `out` (see [`TangentLayout`]).
    pub fn record_jvp(
        &self,
        rec: &mut Recorder,
        v: &wgpu::Buffer,
        per_point: usize,
        out: &wgpu::Buffer,
        layout: TangentLayout,
    ) -> Result<()> {
        let model = self.field.model();
        let (d, e) = (model.dim, model.embed_dim());
        let rows = self.points * per_point;
        let widest = model.hidden().into_iter().max().unwrap_or(1);
        let scratch = [
            self.scratch.get(self.ctx(), "mlp/jvp/scratch0", (rows * widest * 4) as u64),
            self.scratch.get(self.ctx(), "mlp/jvp/scratch1", (rows * widest * 4) as u64),
        ];
        let last = model.layers.len() - 1;
        for (l, layer) in model.layers.iter().enumerate() {
            let (weight, _) = self.field.layer_buffers(l);
            // Layer 0 sees only the x part of its input: the first D columns of W_0.
            let inputs = if l == 0 { d } else { layer.inputs };
            let mut shape = MatmulShape::new(rows, layer.outputs, inputs)
                .with_trans_b()
                .with_ldb(layer.inputs)
                .with_group_rows(per_point);
            if l == 0 {
                shape.ldb = (d + e) as u32;
            }
            let input = if l == 0 { v } else { &scratch[(l - 1) % 2] };
            if l == last {
                let mut epilogue = Epilogue::act(Activation::Identity).with_row_scale(&self.point_scale);
                if layout == TangentLayout::Transposed {
                    epilogue = epilogue.with_group_transposed_store();
                    shape.ldc = d as u32;
                }
                record_matmul(rec, &shape, input, weight, epilogue, out)?;
            } else {
                let shape = shape.with_pre_layout(layer.outputs, 0);
                record_matmul(
                    rec,
                    &shape,
                    input,
                    weight,
                    Epilogue::act(Activation::Identity).with_deriv(model.act, &self.pre[l]),
                    &scratch[l % 2],
                )?;
            }
        }
        Ok(())
    }

    /// Records Jᵀ·U for `per_point` cotangents per point: `u` [points, Q, D] → `out` [points, Q, D]. With U = I,
    /// `out` is the Jacobian, row i holding ∂s_i/∂x.
    pub fn record_vjp(&self, rec: &mut Recorder, u: &wgpu::Buffer, per_point: usize, out: &wgpu::Buffer) -> Result<()> {
        let model = self.field.model();
        let d = model.dim;
        let rows = self.points * per_point;
        let widest = model.hidden().into_iter().max().unwrap_or(1);
        let scratch = [
            self.scratch.get(self.ctx(), "mlp/vjp/scratch0", (rows * widest * 4) as u64),
            self.scratch.get(self.ctx(), "mlp/vjp/scratch1", (rows * widest * 4) as u64),
        ];
        let last = model.layers.len() - 1;
        // Walk the layers backwards: ā_{l−1} = act'(a_{l−1}) ⊙ W_lᵀ ā_l (W_l [out, in] read as a [K, N] matrix).
        let mut input = u;
        for l in (0..=last).rev() {
            let layer = &model.layers[l];
            let (weight, _) = self.field.layer_buffers(l);
            let outputs = if l == 0 { d } else { layer.inputs };
            let shape =
                MatmulShape::new(rows, outputs, layer.outputs).with_ldb(layer.inputs).with_group_rows(per_point);
            let mut epilogue = Epilogue::act(Activation::Identity);
            if l == last {
                epilogue = epilogue.with_row_scale(&self.point_scale);
            }
            let (target, shape) = if l == 0 {
                (out, shape)
            } else {
                epilogue = epilogue.with_deriv(model.act, &self.pre[l - 1]);
                (&scratch[l % 2], shape.with_pre_layout(layer.inputs, 0))
            };
            record_matmul(rec, &shape, input, weight, epilogue, target)?;
            input = target;
        }
        Ok(())
    }
}
