//! Exact products of user WGSL fields: the user's `field_jvp`, batched over (point, tangent) pairs.

use crate::derivative::TangentLayout;
use crate::error::{Error, Result};
use crate::field::UserField;
use crate::gpu::Recorder;

/// A user field at a batch of points, its x and t on the device.
pub struct UserLinearization<'f> {
    field: &'f UserField,
    x: wgpu::Buffer,
    t: wgpu::Buffer,
    t_per_row: bool,
    points: usize,
}

impl<'f> UserLinearization<'f> {
    pub fn new(field: &'f UserField, x: &[f32], t: &[f32]) -> Result<Self> {
        let ctx = field.ctx();
        Ok(UserLinearization {
            field,
            x: ctx.upload("user/linearization/x", x),
            t: ctx.upload("user/linearization/t", t),
            t_per_row: t.len() != 1,
            points: x.len() / field.dim(),
        })
    }

    pub fn record_jvp(
        &self,
        rec: &mut Recorder,
        v: &wgpu::Buffer,
        per_point: usize,
        out: &wgpu::Buffer,
        layout: TangentLayout,
    ) -> Result<()> {
        let transposed = layout == TangentLayout::Transposed;
        self.field.record_jvp(rec, &self.x, &self.t, self.t_per_row, self.points, v, per_point, transposed, out)
    }

    pub fn record_vjp(&self) -> Result<()> {
        Err(Error::InvalidArgument(format!(
            "{}: user fields have no exact reverse mode; use forward mode or finite differences",
            self.field.name()
        )))
    }
}
