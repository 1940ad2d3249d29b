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
        assert!(KERNELS.iter().any(|(n, _, _)| *n == name), "{rel} is not registered in src/gpu/kernels.rs");
        for word in ["Bindings", "Layout"] {
            assert!(header.contains(word), "{rel}: header must describe its {word}");
        }
    }
}
