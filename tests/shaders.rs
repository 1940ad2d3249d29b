//! Every WGSL file parses and validates with naga, is registered as a kernel (or is a shared helper), and opens
//! with the header that says what it computes, its bindings and its layout. No GPU needed.

use std::path::Path;

use scorelens::gpu::kernels::{kernel_source, reflect, BindingKind, KERNELS};

fn wgsl_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            wgsl_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "wgsl") {
            out.push(path);
        }
    }
}

#[test]
fn every_kernel_validates_and_reflects() {
    for (name, _, _) in KERNELS {
        let source = kernel_source(name).unwrap();
        let reflection = reflect(name, &source).unwrap_or_else(|e| panic!("{e}"));
        assert!(!reflection.bindings.is_empty(), "{name} has no bindings");
        // Bindings come as inputs, outputs, then params: no read-only binding after a read_write one except the uniform.
        let kinds: Vec<BindingKind> = reflection.bindings.iter().map(|b| b.1).collect();
        let first_output = kinds.iter().position(|k| *k == BindingKind::StorageReadWrite).expect("an output binding");
        assert!(
            kinds[first_output..].iter().all(|k| *k != BindingKind::StorageRead),
            "{name}: inputs must precede outputs: {kinds:?}"
        );
        assert_eq!(kinds.last(), Some(&BindingKind::Uniform), "{name}: params (uniform) come last");
    }
}

/// Kernels completed by a user field's code at run time (src/derivative/user_flow.rs), so not in KERNELS: checked
/// by [`user_field_templates_validate_with_a_sample_field`].
const USER_TEMPLATES: &[&str] = &["user_flow"];

#[test]
fn user_field_templates_validate_with_a_sample_field() {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    let field = include_str!("../examples/fields/lorenz96.wgsl");
    let body = include_str!("../shaders/user_flow.wgsl");
    // (D, K, workgroup): a CPU driver's layout (8 lanes, several tangents each) and a GPU's. The host also unrolls
    // the marked loops (src/derivative/user_flow.rs, whose unit tests validate that form).
    for (d, k, w) in [(37, 13, 8), (5, 3, 8), (101, 101, 8), (40, 40, 40), (101, 101, 64)] {
        let source = format!(
            "const DIM: u32 = {d}u;\nalias State = array<f32, DIM>;\n{field}\nconst SCORELENS_K: u32 = {k}u;\n\
             const SCORELENS_W: u32 = {w}u;\n{body}"
        );
        let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| panic!("{}", e.emit_to_string(&source)));
        Validator::new(ValidationFlags::all(), Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("user_flow (D {d}, K {k}, W {w}): {}", e.emit_to_string(&source)));
    }
}

#[test]
fn every_wgsl_file_is_registered_and_has_a_header() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files = Vec::new();
    wgsl_files(&root, &mut files);
    assert!(!files.is_empty());
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let rel = path.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
        let first = text.lines().next().unwrap_or("");
        assert!(
            first.starts_with(&format!("// {rel} — ")),
            "{rel}: first line must be `// {rel} — <what it computes>`, got {first:?}"
        );
        let header: String = text.lines().take_while(|l| l.starts_with("//")).collect::<Vec<_>>().join("\n");
        if rel.starts_with("shared/") {
            // Shared helpers are validated inside every kernel that includes them (the test above).
            let used = KERNELS.iter().any(|(name, _, _)| kernel_source(name).unwrap().contains(&text));
            assert!(used, "{rel} is not included by any kernel");
            continue;
        }
        let name = rel.trim_end_matches(".wgsl");
        for word in ["Bindings", "Layout"] {
            assert!(header.contains(word), "{rel}: header must describe its {word}");
        }
        if USER_TEMPLATES.contains(&name) {
            continue;
        }
        assert!(KERNELS.iter().any(|(n, _, _)| *n == name), "{rel} is not registered in src/gpu/kernels.rs");
    }
}

/// The cooperative-matrix kernel cannot run on the CI adapter (lavapipe does not offer cooperative matrices), so
/// it is checked here: it validates with exactly the capabilities it asks of a device (cooperative matrices and
/// subgroups), fails without the cooperative-matrix one, and a specialisation translates to SPIR-V the way
/// wgpu's Vulkan backend would (naga's writer, Vulkan 1.3 SPIR-V).
#[test]
fn cooperative_matrix_kernel_validates_and_translates_to_spirv() {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    let source = kernel_source("matmul_coop").unwrap();
    let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| panic!("{}", e.emit_to_string(&source)));
    let needed = Capabilities::COOPERATIVE_MATRIX | Capabilities::SUBGROUP;
    let info = Validator::new(ValidationFlags::all(), needed)
        .validate(&module)
        .unwrap_or_else(|e| panic!("matmul_coop with {needed:?}: {}", e.emit_to_string(&source)));
    assert!(
        Validator::new(ValidationFlags::all(), Capabilities::SUBGROUP).validate(&module).is_err(),
        "matmul_coop must need the cooperative-matrix capability"
    );
    for (trans_a, trans_b, act, group_transposed) in [(0.0, 1.0, 2.0, 0.0), (1.0, 0.0, 0.0, 1.0)] {
        let mut constants = naga::back::PipelineConstants::default();
        for (name, value) in [
            ("TRANS_A", trans_a),
            ("TRANS_B", trans_b),
            ("ACT", act),
            ("HAS_BIAS", 1.0),
            ("SCALE_ROWS", 1.0),
            ("STORE_GROUP_TRANSPOSED", group_transposed),
        ] {
            constants.insert(name.to_string(), value);
        }
        let (module, info) = naga::back::pipeline_constants::process_overrides(
            &module,
            &info,
            Some((naga::ShaderStage::Compute, "main")),
            &constants,
        )
        .unwrap();
        let options = naga::back::spv::Options { lang_version: (1, 3), ..Default::default() };
        let words = naga::back::spv::write_vec(&module, &info, &options, None).unwrap();
        // The module declares OpCapability CooperativeMatrixKHR (opcode 17, capability 6022).
        assert!(
            words.windows(2).any(|w| w[0] == (2 << 16 | 17) && w[1] == 6022),
            "no CooperativeMatrixKHR capability in the SPIR-V"
        );
    }
}
