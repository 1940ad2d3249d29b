//! `scorelens info [MODEL]`.

use std::path::Path;

use scorelens::gpu::list_adapters;
use scorelens::{GpuContext, Result};

pub fn run(model: Option<&Path>, settings: &super::inputs::ModelSettings) -> Result<()> {
    if let Some(path) = model {
        let model = settings.load_model(path)?;
        println!("model {}", path.display());
        for (key, value) in model.describe() {
            println!("  {key:<20} {value}");
        }
        println!();
    }
    let adapters = list_adapters();
    if adapters.is_empty() {
        println!("no GPU adapters found (install a Vulkan driver; without a GPU: apt-get install mesa-vulkan-drivers)");
    }
    let chosen = GpuContext::shared().ok().map(|c| c.caps.info.clone());
    for a in &adapters {
        let mark = if chosen.as_ref().is_some_and(|c| c.name == a.info.name && c.backend == a.info.backend) {
            "*"
        } else {
            " "
        };
        println!("{mark} [{}] {} ({:?}, {:?})", a.index, a.info.name, a.info.backend, a.info.device_type);
        println!("      driver: {} {}", a.info.driver, a.info.driver_info);
        let l = &a.limits;
        println!(
            "      limits: storage binding {} B, buffer {} B, workgroup storage {} B, invocations/workgroup {}, workgroups/dim {}, storage buffers/stage {}",
            l.max_storage_buffer_binding_size,
            l.max_buffer_size,
            l.max_compute_workgroup_storage_size,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension,
            l.max_storage_buffers_per_shader_stage
        );
        let f = a.features;
        let named: Vec<&str> = [
            (wgpu::Features::SHADER_F16, "shader-f16"),
            (wgpu::Features::SUBGROUP, "subgroup"),
            (wgpu::Features::TIMESTAMP_QUERY, "timestamp-query"),
            (wgpu::Features::SHADER_F64, "shader-f64"),
            (wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX, "cooperative-matrix"),
        ]
        .iter()
        .filter(|(flag, _)| f.contains(*flag))
        .map(|(_, name)| *name)
        .collect();
        println!("      features: {}", if named.is_empty() { "(none of note)".to_string() } else { named.join(", ") });
    }
    if chosen.is_some() {
        println!("(* = chosen; set {} to an index or a name substring to pick another)", scorelens::gpu::ADAPTER_ENV);
    }
    Ok(())
}
