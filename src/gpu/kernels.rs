//! The WGSL kernels, their reflected bindings, and the pipeline cache.
//!
//! Bind-group layouts are reflected from each kernel's WGSL with naga (not typed twice, and not wgpu's
//! automatic layout, which drops bindings that a specialisation leaves unused). Pipelines are compiled lazily
//! and cached by (kernel, override constants).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::GpuContext;

const ACTIVATIONS: &str = include_str!("../../shaders/shared/activations.wgsl");
const MATMUL_COMMON: &str = include_str!("../../shaders/shared/matmul_common.wgsl");
const REGISTER_TILE: &str = include_str!("../../shaders/shared/register_tile.wgsl");
const WORKGROUP_SUM: &str = include_str!("../../shaders/shared/workgroup_sum.wgsl");
const QR_ROWS: &str = include_str!("../../shaders/qr_rows.wgsl");
const WORKGROUP_SUM_SUBGROUP: &str = include_str!("../../shaders/shared/workgroup_sum_subgroup.wgsl");
const COOP_MATRIX_ENABLE: &str = include_str!("../../shaders/shared/coop_matrix_enable.wgsl");
const REGISTER_TILE_128: &str = include_str!("../../shaders/shared/register_tile_128.wgsl");
const KDE_PARAMS: &str = include_str!("../../shaders/shared/kde_params.wgsl");
const KDE_BLOCK: &str = include_str!("../../shaders/shared/kde_block.wgsl");
const KDE_MOMENTS: &str = include_str!("../../shaders/shared/kde_moments.wgsl");
const KDE_WEIGHTS: &str = include_str!("../../shaders/shared/kde_weights.wgsl");
const KDE_SMALL: &str = include_str!("../../shaders/shared/kde_small.wgsl");
const KDE_POINT: &str = include_str!("../../shaders/shared/kde_point.wgsl");
const GRAPH_MATH: &str = include_str!("../../shaders/shared/graph_math.wgsl");
const SEGMENT_SUM: &str = include_str!("../../shaders/shared/segment_sum.wgsl");
const ATTENTION_COMMON: &str = include_str!("../../shaders/shared/attention_common.wgsl");

/// Every kernel: its name (also its file name under `shaders/`, but for variants that reuse another kernel's body
/// with other helpers, named `<kernel>_<variant>`), the shared helper files it is prefixed with (plain
/// concatenation, no preprocessor), and its own WGSL.
pub const KERNELS: &[(&str, &[&str], &str)] = &[
    ("matmul_tiled", &[ACTIVATIONS, MATMUL_COMMON, REGISTER_TILE], include_str!("../../shaders/matmul_tiled.wgsl")),
    ("matmul_small", &[ACTIVATIONS, MATMUL_COMMON], include_str!("../../shaders/matmul_small.wgsl")),
    (
        "matmul_tiled_128",
        &[ACTIVATIONS, MATMUL_COMMON, REGISTER_TILE_128],
        include_str!("../../shaders/matmul_tiled_128.wgsl"),
    ),
    // Compiled only on devices opened with cooperative matrices (GpuContext::coop_matrix_enabled).
    ("matmul_coop", &[COOP_MATRIX_ENABLE, ACTIVATIONS, MATMUL_COMMON], include_str!("../../shaders/matmul_coop.wgsl")),
    ("lincomb", &[], include_str!("../../shaders/lincomb.wgsl")),
    ("block_gram", &[], include_str!("../../shaders/block_gram.wgsl")),
    ("qr_rows", &[WORKGROUP_SUM], QR_ROWS),
    // The same body on subgroup operations (GpuContext::subgroup_reductions decides).
    ("qr_rows_subgroup", &[WORKGROUP_SUM_SUBGROUP], QR_ROWS),
    ("kde_distances", &[KDE_PARAMS, KDE_BLOCK], include_str!("../../shaders/kde_distances.wgsl")),
    ("kde_softmax_update", &[KDE_PARAMS], include_str!("../../shaders/kde_softmax_update.wgsl")),
    ("kde_mean_update", &[KDE_PARAMS, KDE_BLOCK], include_str!("../../shaders/kde_mean_update.wgsl")),
    (
        "kde_covariance",
        &[KDE_PARAMS, REGISTER_TILE, KDE_BLOCK, KDE_MOMENTS, KDE_WEIGHTS],
        include_str!("../../shaders/kde_covariance.wgsl"),
    ),
    (
        "kde_hvp_project",
        &[KDE_PARAMS, REGISTER_TILE, KDE_BLOCK, KDE_MOMENTS],
        include_str!("../../shaders/kde_hvp_project.wgsl"),
    ),
    (
        "kde_hvp_accumulate",
        &[KDE_PARAMS, REGISTER_TILE, KDE_BLOCK, KDE_MOMENTS, KDE_WEIGHTS],
        include_str!("../../shaders/kde_hvp_accumulate.wgsl"),
    ),
    ("kde_small_moments", &[KDE_PARAMS, KDE_SMALL], include_str!("../../shaders/kde_small_moments.wgsl")),
    (
        "kde_small_covariance",
        &[KDE_PARAMS, KDE_SMALL, KDE_MOMENTS],
        include_str!("../../shaders/kde_small_covariance.wgsl"),
    ),
    ("kde_point_moments", &[KDE_PARAMS, KDE_POINT], include_str!("../../shaders/kde_point_moments.wgsl")),
    ("kde_point_combine", &[KDE_PARAMS], include_str!("../../shaders/kde_point_combine.wgsl")),
    ("kde_point_weights", &[KDE_PARAMS, KDE_POINT], include_str!("../../shaders/kde_point_weights.wgsl")),
    (
        "kde_point_covariance_rows",
        &[KDE_PARAMS, KDE_POINT],
        include_str!("../../shaders/kde_point_covariance_rows.wgsl"),
    ),
    ("kde_point_covariance_combine", &[KDE_PARAMS], include_str!("../../shaders/kde_point_covariance_combine.wgsl")),
    // The graph engine's primitive kernels (ops::graph).
    ("graph_unary", &[ACTIVATIONS, GRAPH_MATH], include_str!("../../shaders/graph_unary.wgsl")),
    ("graph_binary", &[GRAPH_MATH], include_str!("../../shaders/graph_binary.wgsl")),
    ("graph_sparse_map", &[], include_str!("../../shaders/graph_sparse_map.wgsl")),
    ("graph_matmul", &[], include_str!("../../shaders/graph_matmul.wgsl")),
    ("graph_conv2d", &[], include_str!("../../shaders/graph_conv2d.wgsl")),
    ("graph_norm", &[SEGMENT_SUM], include_str!("../../shaders/graph_norm.wgsl")),
    ("graph_norm_tangent", &[SEGMENT_SUM], include_str!("../../shaders/graph_norm_tangent.wgsl")),
    ("graph_softmax", &[], include_str!("../../shaders/graph_softmax.wgsl")),
    ("graph_softmax_tangent", &[SEGMENT_SUM], include_str!("../../shaders/graph_softmax_tangent.wgsl")),
    // Fused attention (ops::attention).
    ("graph_attention", &[ATTENTION_COMMON], include_str!("../../shaders/graph_attention.wgsl")),
    ("graph_attention_tangent", &[ATTENTION_COMMON], include_str!("../../shaders/graph_attention_tangent.wgsl")),
    (
        "graph_attention_score_adjoint",
        &[ATTENTION_COMMON],
        include_str!("../../shaders/graph_attention_score_adjoint.wgsl"),
    ),
];

/// The complete WGSL of a kernel: its shared helpers followed by its own file.
pub fn kernel_source(name: &str) -> Option<String> {
    let (_, prelude, body) = KERNELS.iter().find(|(n, _, _)| *n == name)?;
    let mut source = prelude.concat();
    source.push_str(body);
    Some(source)
}

/// How a binding is used by a kernel, reflected from its WGSL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingKind {
    StorageRead,
    StorageReadWrite,
    Uniform,
}

#[derive(Debug, Clone)]
pub struct KernelReflection {
    pub bindings: Vec<(u32, BindingKind, String)>,
    pub workgroup_size: [u32; 3],
}

/// Parses and validates a kernel with naga and reads its group-0 bindings and workgroup size.
pub fn reflect(name: &str, source: &str) -> Result<KernelReflection> {
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| Error::Kernel { kernel: name.into(), message: e.emit_to_string(source) })?;
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .validate(&module)
        .map_err(|e| Error::Kernel { kernel: name.into(), message: format!("{e:?}") })?;
    let mut bindings = Vec::new();
    for (_, var) in module.global_variables.iter() {
        let Some(binding) = &var.binding else {
            continue;
        };
        if binding.group != 0 {
            return Err(Error::Kernel { kernel: name.into(), message: "only bind group 0 is used".into() });
        }
        let kind = match var.space {
            naga::AddressSpace::Uniform => BindingKind::Uniform,
            naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => {
                BindingKind::StorageReadWrite
            }
            naga::AddressSpace::Storage { .. } => BindingKind::StorageRead,
            other => {
                return Err(Error::Kernel {
                    kernel: name.into(),
                    message: format!("unsupported binding address space {other:?}"),
                })
            }
        };
        bindings.push((binding.binding, kind, var.name.clone().unwrap_or_default()));
    }
    bindings.sort_by_key(|b| b.0);
    let entry = module
        .entry_points
        .iter()
        .find(|e| e.stage == naga::ShaderStage::Compute)
        .ok_or_else(|| Error::Kernel { kernel: name.into(), message: "no compute entry point".into() })?;
    Ok(KernelReflection { bindings, workgroup_size: entry.workgroup_size })
}

/// A compiled kernel specialisation, ready to dispatch.
pub struct Kernel {
    pub name: &'static str,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub reflection: KernelReflection,
}

type CacheKey = (&'static str, Vec<(String, u64)>);

#[derive(Default)]
pub(crate) struct KernelCache {
    pipelines: Mutex<HashMap<CacheKey, Arc<Kernel>>>,
}

impl GpuContext {
    /// The pipeline for `name` specialised by the WGSL `override` constants given, compiled on first use.
    pub fn kernel(&self, name: &'static str, constants: &[(&str, f64)]) -> Result<Arc<Kernel>> {
        let key: CacheKey = (name, constants.iter().map(|(k, v)| (k.to_string(), v.to_bits())).collect());
        if let Some(k) = self.kernels.pipelines.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(k.clone());
        }
        let kernel = Arc::new(self.compile(name, constants)?);
        self.kernels.pipelines.lock().unwrap_or_else(|p| p.into_inner()).insert(key, kernel.clone());
        Ok(kernel)
    }

    fn compile(&self, name: &'static str, constants: &[(&str, f64)]) -> Result<Kernel> {
        let source = kernel_source(name)
            .ok_or_else(|| Error::Kernel { kernel: name.into(), message: "no such kernel".into() })?;
        self.compile_source(name, &source, constants, true)
    }

    /// Compiles WGSL made at run time (user fields), uncached: the caller keeps the kernel. The source must
    /// already have passed [`reflect`] with errors mapped to the user's file, so what fails here is the driver's.
    /// `trusted`: whether the source bounds-checks its own indices (ours do; a user's code keeps the driver's checks).
    pub fn compile_source(
        &self,
        name: &'static str,
        source: &str,
        constants: &[(&str, f64)],
        trusted: bool,
    ) -> Result<Kernel> {
        let reflection = reflect(name, source)?;
        let entries: Vec<wgpu::BindGroupLayoutEntry> = reflection
            .bindings
            .iter()
            .map(|(binding, kind, _)| wgpu::BindGroupLayoutEntry {
                binding: *binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match kind {
                        BindingKind::Uniform => wgpu::BufferBindingType::Uniform,
                        BindingKind::StorageRead => wgpu::BufferBindingType::Storage { read_only: true },
                        BindingKind::StorageReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();

        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let descriptor =
            wgpu::ShaderModuleDescriptor { label: Some(name), source: wgpu::ShaderSource::Wgsl(source.into()) };
        // Every kernel guards its own tails, so optimised builds skip the injected bounds checks.
        let module = if cfg!(debug_assertions) || !trusted {
            self.device.create_shader_module(descriptor)
        } else {
            // SAFETY: each kernel bounds-checks every index it computes from runtime sizes (see the tests).
            unsafe { self.device.create_shader_module_trusted(descriptor, wgpu::ShaderRuntimeChecks::unchecked()) }
        };
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(name), entries: &entries });
        let pipeline_layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            log::error!("kernel {name} failed to compile with constants {constants:?}; source:\n{source}");
            return Err(Error::Kernel { kernel: name.into(), message: err.to_string() });
        }
        Ok(Kernel { name, pipeline, layout, reflection })
    }
}
