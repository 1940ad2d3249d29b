//! The GPU context: instance → adapter → device, built once per process and shared.
//!
//! The device is requested with the adapter's own limits (not WebGPU's defaults), because the batch planner
//! sizes chunks from them: a 2 GiB binding on a datacentre GPU should not be cut to 128 MiB.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::kernels::KernelCache;
use crate::gpu::options::{AdapterChoice, DeviceOptions};
use crate::ops::matmul::TilePlan;

/// What the chosen adapter can do, read once.
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
}

impl Capabilities {
    /// Software rasterisers (lavapipe, llvmpipe, WARP, SwiftShader): subgroup paths stay off there unless tested
    /// (see [`Capabilities::subgroups_by_default`]).
    pub fn is_cpu(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Whether the subgroup reductions run unless [`DeviceOptions::subgroups`] says otherwise: the adapter has
    /// `wgpu::Features::SUBGROUP`, and it is a GPU, or the one CPU driver whose subgroups CI tests (lavapipe, whose
    /// adapter is named llvmpipe; tests/subgroups.rs runs both paths there). Other CPU drivers (WARP,
    /// SwiftShader) are untested and keep the workgroup trees.
    pub fn subgroups_by_default(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
            && (!self.is_cpu() || self.info.name.to_lowercase().contains("llvmpipe"))
    }

    /// The largest storage-buffer binding the device accepts, in bytes (never above `max_buffer_size`).
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    pub fn max_workgroups_per_dimension(&self) -> u32 {
        self.limits.max_compute_workgroups_per_dimension
    }
}

/// One adapter as listed by `scorelens info`.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub index: usize,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
}

pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub caps: Capabilities,
    pub(crate) kernels: KernelCache,
    /// Bound where a kernel's optional input is unused.
    dummy: wgpu::Buffer,
    /// What the context was opened with, resolved once; the kernels read their variants here.
    options: DeviceOptions,
    /// Whether reductions use the subgroup variants of their kernels.
    subgroups: AtomicBool,
}

/// Environment variable that picks an adapter: an index into `scorelens info`'s list, or a substring of its name.
pub const ADAPTER_ENV: &str = "SCORELENS_ADAPTER";

/// Environment variable that forces the subgroup reductions on (`1`, an error where the adapter lacks subgroups) or
/// off (`0`); unset, [`Capabilities::subgroups_by_default`] decides.
pub const SUBGROUPS_ENV: &str = "SCORELENS_SUBGROUPS";

/// Environment variable that asks for the cooperative-matrix matmul (`1`); see [`GpuContext::coop_matrix_enabled`].
pub const COOP_MATRIX_ENV: &str = "SCORELENS_COOP_MATRIX";

static COOP_MATRIX_REQUESTED: AtomicBool = AtomicBool::new(false);

/// Asks every device opened from the process's options from now on ([`GpuContext::new`], [`GpuContext::shared`],
/// [`contexts_for`]) for the cooperative-matrix matmul, as `SCORELENS_COOP_MATRIX=1` does (`scorelens bench
/// --coop-matrix`). Opening a device on an adapter without them then fails. [`GpuContext::with_options`] takes
/// [`DeviceOptions::coop_matrix`] instead.
pub fn request_coop_matrix() {
    COOP_MATRIX_REQUESTED.store(true, Ordering::Relaxed);
}

/// The options of contexts opened without explicit ones: the environment, plus [`request_coop_matrix`].
fn process_options() -> Result<DeviceOptions> {
    let mut options = DeviceOptions::from_env()?;
    options.coop_matrix |= COOP_MATRIX_REQUESTED.load(Ordering::Relaxed);
    Ok(options)
}

/// Whether the adapter offers what `matmul_coop.wgsl` needs: the experimental cooperative-matrix feature with an
/// 8×8×8 f32 × f32 → f32 configuration (wgpu sets the feature when any configuration exists; many Vulkan drivers
/// list only f16 inputs), and subgroups (the kernel deals blocks by subgroup id). Err: what is missing, in words.
fn coop_matrix_support(adapter: &wgpu::Adapter) -> std::result::Result<(), String> {
    let features = adapter.features();
    if !features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        return Err("it does not offer wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX".into());
    }
    let configurations = adapter.cooperative_matrix_properties();
    let f32_8x8 = configurations.iter().any(|p| {
        (p.m_size, p.n_size, p.k_size) == (8, 8, 8)
            && p.ab_type == wgpu::CooperativeScalarType::F32
            && p.cr_type == wgpu::CooperativeScalarType::F32
    });
    if !f32_8x8 {
        return Err(format!(
            "it offers cooperative matrices but no 8×8×8 f32 configuration (it lists {configurations:?})"
        ));
    }
    if !features.contains(wgpu::Features::SUBGROUP) {
        return Err(
            "it offers cooperative matrices but not wgpu::Features::SUBGROUP, which the kernel also needs".into()
        );
    }
    Ok(())
}

/// Vulkan, Metal and DX12; the GL backend (compute-limited, and noisy when no display exists) only when
/// `SCORELENS_ALLOW_GL` is set. `WGPU_BACKEND` still overrides.
fn backends() -> wgpu::Backends {
    if std::env::var_os("SCORELENS_ALLOW_GL").is_some() {
        wgpu::Backends::all()
    } else {
        wgpu::Backends::PRIMARY
    }
}

fn instance() -> wgpu::Instance {
    quiet_headless_window_probe();
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends();
    wgpu::Instance::new(desc.with_env())
}

/// Gives the process a private `XDG_RUNTIME_DIR` when it has none (headless machines, CI, cron), so that creating
/// the instance prints nothing.
///
/// wgpu-hal enables every window-system extension the loader offers (`VK_KHR_wayland_surface` among them) even on
/// an instance without a display handle, and Mesa's implicit device-select layer, seeing the Wayland extension,
/// connects to the compositor to learn its default GPU. libwayland then prints `error: XDG_RUNTIME_DIR is invalid
/// or not set in the environment.` on stderr for every instance. With the variable pointing at a directory that
/// holds no compositor socket, the connection fails silently and adapter selection is unchanged. The directory is
/// this user's and mode 0700: a socket another user planted in a shared one would otherwise be connected to.
///
/// Setting a variable races with C code reading the environment on other threads; this runs before the first
/// instance exists (before wgpu or the driver start threads) and only when the variable is unset or relative.
fn quiet_headless_window_probe() {
    #[cfg(all(unix, not(target_os = "macos"), not(target_os = "android")))]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};

        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            const VAR: &str = "XDG_RUNTIME_DIR";
            if std::env::var_os(VAR).is_some_and(|dir| std::path::Path::new(&dir).is_absolute()) {
                return;
            }
            // The effective user id, without libc: /proc/self belongs to it. Elsewhere, leave the message be.
            let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else { return };
            let dir = std::env::temp_dir().join(format!("scorelens-runtime-{uid}"));
            let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
            let private =
                std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0);
            if private {
                std::env::set_var(VAR, &dir);
            }
        });
    }
}

fn device_rank(info: &wgpu::AdapterInfo) -> u32 {
    match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 1,
        wgpu::DeviceType::Other => 0,
    }
}

/// Every adapter that can run compute work, in a stable order (the order [`AdapterChoice::Index`] and
/// `SCORELENS_ADAPTER` refer to).
pub fn list_adapters() -> Vec<AdapterSummary> {
    let adapters = pollster::block_on(instance().enumerate_adapters(backends()));
    adapters
        .into_iter()
        .enumerate()
        .map(|(index, a)| AdapterSummary { index, info: a.get_info(), limits: a.limits(), features: a.features() })
        .collect()
}

/// Picks the adapter `choice` names when given, else the most capable: discrete > integrated > virtual > CPU,
/// then the largest storage binding.
fn choose_adapter(adapters: Vec<wgpu::Adapter>, choice: Option<&AdapterChoice>) -> Result<wgpu::Adapter> {
    if adapters.is_empty() {
        return Err(Error::NoAdapter {
            hint: " (install a Vulkan driver; on Debian without a GPU: apt-get install mesa-vulkan-drivers)".into(),
        });
    }
    match choice {
        Some(AdapterChoice::Index(index)) => {
            let count = adapters.len();
            return adapters.into_iter().nth(*index).ok_or_else(|| Error::NoAdapter {
                hint: format!(": {ADAPTER_ENV}={index} but only {count} adapter(s) exist (see `scorelens info`)"),
            });
        }
        Some(AdapterChoice::NameContains(wanted)) => {
            let lower = wanted.to_lowercase();
            return adapters.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&lower)).ok_or_else(|| {
                Error::NoAdapter {
                    hint: format!(": no adapter name contains {ADAPTER_ENV}={wanted:?} (see `scorelens info`)"),
                }
            });
        }
        None => {}
    }
    adapters
        .into_iter()
        .max_by_key(|a| (device_rank(&a.get_info()), a.limits().max_storage_buffer_binding_size))
        .ok_or_else(|| Error::NoAdapter { hint: String::new() })
}

/// Contexts for `--devices`: `all` (every adapter), or adapter indices `0,1,...` from `scorelens info`. Each entry
/// opens its own device, so an index given twice gives two independent devices on one adapter.
pub fn contexts_for(spec: &str) -> Result<Vec<Arc<GpuContext>>> {
    let options = process_options()?;
    let adapters = pollster::block_on(instance().enumerate_adapters(backends()));
    let count = adapters.len();
    if count == 0 {
        return choose_adapter(adapters, None).map(|_| Vec::new());
    }
    let indices: Vec<usize> = if spec.trim() == "all" {
        (0..count).collect()
    } else {
        spec.split(',')
            .map(|part| {
                let index: usize = part.trim().parse().map_err(|_| {
                    Error::InvalidArgument(format!("devices {spec:?}: expected all or adapter indices like 0,1"))
                })?;
                if index >= count {
                    return Err(Error::InvalidArgument(format!(
                        "devices {spec:?}: adapter {index} does not exist ({count} found; see `scorelens info`)"
                    )));
                }
                Ok(index)
            })
            .collect::<Result<_>>()?
    };
    if indices.is_empty() {
        return Err(Error::InvalidArgument(format!("devices {spec:?}: no adapter named")));
    }
    indices
        .into_iter()
        .map(|i| GpuContext::from_adapter_with_options(adapters[i].clone(), options.clone()).map(Arc::new))
        .collect()
}

impl GpuContext {
    /// Builds a context with the options of the environment ([`DeviceOptions::from_env`], plus
    /// [`request_coop_matrix`]): on the adapter `SCORELENS_ADAPTER` names, or the most capable one.
    pub fn new() -> Result<Self> {
        Self::with_options(process_options()?)
    }

    /// Builds a context on the adapter `options.adapter` names (or the most capable one), with the kernel variants
    /// the options force; the environment is not read.
    pub fn with_options(options: DeviceOptions) -> Result<Self> {
        options.check()?;
        let instance = instance();
        let adapters = pollster::block_on(instance.enumerate_adapters(backends()));
        let adapter = choose_adapter(adapters, options.adapter.as_ref())?;
        Self::from_adapter_with_options(adapter, options)
    }

    /// The process-wide shared context (tests, the CLI and embedders that do not manage their own).
    pub fn shared() -> Result<Arc<GpuContext>> {
        static SHARED: std::sync::Mutex<Option<Arc<GpuContext>>> = std::sync::Mutex::new(None);
        let mut slot = SHARED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(ctx) = slot.as_ref() {
            return Ok(ctx.clone());
        }
        let ctx = Arc::new(GpuContext::new()?);
        *slot = Some(ctx.clone());
        Ok(ctx)
    }

    /// Opens `adapter` with the options of the environment (as [`GpuContext::new`]).
    pub fn from_adapter(adapter: wgpu::Adapter) -> Result<Self> {
        Self::from_adapter_with_options(adapter, process_options()?)
    }

    /// Opens `adapter` with `options` (whose `adapter` field is not consulted: the adapter is given).
    pub fn from_adapter_with_options(adapter: wgpu::Adapter, options: DeviceOptions) -> Result<Self> {
        options.check()?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let wanted = wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
            | wgpu::Features::SUBGROUP;
        let mut features = adapter.features() & wanted;
        // Cooperative matrices only when asked for (they are experimental in wgpu); asked for on an adapter
        // without them is the user's error, named with the adapter.
        let experimental = if options.coop_matrix {
            coop_matrix_support(&adapter).map_err(|missing| {
                Error::InvalidArgument(format!(
                    "cooperative matrices were asked for ({COOP_MATRIX_ENV}=1 or coop_matrix) but adapter {} ({:?}, \
                     {:?}) cannot run them: {missing}",
                    info.name, info.backend, info.device_type
                ))
            })?;
            features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
            // SAFETY: wgpu's experimental cooperative matrices may have implementation bugs; the path is opt-in
            // (above) and its results are checked against the tiled kernels by tests/matmul.rs where it can run.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("scorelens"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: experimental,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Device(format!("{} ({:?}): {e}", info.name, info.backend)))?;
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            log::error!("uncaptured GPU error: {e}");
        }));
        let caps = Capabilities { info, limits, features };
        let subgroups = match options.subgroups {
            None => caps.subgroups_by_default(),
            Some(false) => false,
            Some(true) => {
                if !caps.features.contains(wgpu::Features::SUBGROUP) {
                    return Err(Error::InvalidArgument(format!(
                        "{SUBGROUPS_ENV}=1 (subgroups) but adapter {} ({:?}) does not offer subgroup operations \
                         (wgpu::Features::SUBGROUP)",
                        caps.info.name, caps.info.backend
                    )));
                }
                true
            }
        };
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused-binding"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Ok(GpuContext {
            device,
            queue,
            caps,
            kernels: KernelCache::default(),
            dummy,
            options,
            subgroups: AtomicBool::new(subgroups),
        })
    }

    /// Whether the matmul chooser sends products to the cooperative-matrix kernel (`matmul_coop`): asked for
    /// ([`DeviceOptions::coop_matrix`]) and the device was opened with them.
    pub fn coop_matrix_enabled(&self) -> bool {
        self.options.coop_matrix
    }

    /// The options the context was opened with. `subgroups` is as asked for; [`GpuContext::subgroup_reductions`]
    /// says what reductions run now.
    pub fn options(&self) -> &DeviceOptions {
        &self.options
    }

    /// The matmul variant every product is forced onto, if any ([`DeviceOptions::matmul_tile`]).
    pub fn forced_matmul_tile(&self) -> Option<TilePlan> {
        self.options.matmul_tile
    }

    /// Whether reductions (the row QR of resident blocks) run their subgroup variants: set at
    /// creation from [`DeviceOptions::subgroups`] or [`Capabilities::subgroups_by_default`].
    pub fn subgroup_reductions(&self) -> bool {
        self.subgroups.load(Ordering::Relaxed)
    }

    /// Switches the subgroup reductions on or off for kernels recorded from now on (tests compare both paths);
    /// on is an error where the device has no subgroups.
    pub fn set_subgroup_reductions(&self, on: bool) -> Result<()> {
        if on && !self.caps.features.contains(wgpu::Features::SUBGROUP) {
            return Err(Error::InvalidArgument(format!(
                "adapter {} does not offer subgroup operations (wgpu::Features::SUBGROUP)",
                self.caps.info.name
            )));
        }
        self.subgroups.store(on, Ordering::Relaxed);
        Ok(())
    }

    /// `name`, or its `_subgroup` variant when subgroup reductions are on.
    pub fn reduction_kernel(&self, name: &'static str, subgroup_variant: &'static str) -> &'static str {
        if self.subgroup_reductions() {
            subgroup_variant
        } else {
            name
        }
    }

    /// A small buffer bound where a kernel's optional input is unused.
    pub fn dummy(&self) -> &wgpu::Buffer {
        &self.dummy
    }

    /// "name (backend, driver driver_info)", for summaries and benchmark records.
    pub fn adapter_description(&self) -> String {
        let i = &self.caps.info;
        format!("{} ({:?}, {:?}, driver {} {})", i.name, i.backend, i.device_type, i.driver, i.driver_info)
    }
}
