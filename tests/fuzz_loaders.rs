//! A stable-Rust fuzzer for the model loaders (ONNX import and lowering, safetensors): mutated files must load or
//! fail with an error, never panic or hang. Byte-level mutations (flips, truncations, splices) of real exports,
//! and structure-aware ones that decode an ONNX model, change attribute values, dimensions, op types, input names
//! and metadata, and encode it again, so the importer's lowering sees well-formed protobuf with hostile contents.
//!
//! CI runs a short, fixed-seed pass. The long run (ten minutes or more):
//!     SCORELENS_FUZZ_SECONDS=600 cargo test --profile ci --test fuzz_loaders -- --nocapture
//! Inputs that panicked are written to target/fuzz-crashes/ and become regression tests (tests/fixtures/fuzz/).

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use common::fixture;
use onnx_protobuf::{Message, ModelProto};
use rand::{Rng, SeedableRng};
use scorelens::model::ScoreModel;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut files = vec![];
    for dir in [
        "onnx21/dit_v",
        "onnx21/unet_attention_epsilon",
        "onnx_zoo/conv_zoo",
        "onnx_zoo/layout_zoo",
        "onnx_zoo/attention_zoo",
    ] {
        files.push(format!("{dir}/model.onnx"));
    }
    files.push("onnx_bad/ok.onnx".into());
    files.push("mlp_silu/model.safetensors".into());
    files.push("mlp_relu/model.safetensors".into());
    files
        .into_iter()
        .map(|f| {
            let b = std::fs::read(fixture(&f)).unwrap();
            (f, b)
        })
        .collect()
}

/// Loads bytes as the file they pretend to be; Ok(()) for any outcome but a panic.
fn load(name: &str, bytes: &[u8]) -> Result<(), String> {
    let path = Path::new(name);
    catch_unwind(AssertUnwindSafe(|| {
        let _ = ScoreModel::from_bytes(path, bytes);
    }))
    .map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

fn mutate_bytes(rng: &mut impl Rng, bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    match rng.random_range(0..4) {
        0 => {
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
        }
        1 => b.truncate(rng.random_range(0..b.len())),
        2 => {
            let (i, j) = (rng.random_range(0..b.len()), rng.random_range(0..b.len()));
            let chunk: Vec<u8> = b[i.min(j)..i.max(j)].iter().take(64).copied().collect();
            let at = rng.random_range(0..b.len());
            b.splice(at..at, chunk);
        }
        _ => {
            let i = rng.random_range(0..b.len());
            b[i] = rng.random();
        }
    }
    b
}

const OPS: &[&str] = &[
    "Conv",
    "ConvTranspose",
    "MatMul",
    "Gemm",
    "Reshape",
    "Transpose",
    "Slice",
    "Gather",
    "Concat",
    "Split",
    "Pad",
    "Resize",
    "Einsum",
    "Softmax",
    "GroupNormalization",
    "LayerNormalization",
    "ReduceMean",
    "Squeeze",
    "Unsqueeze",
    "Expand",
    "Tile",
    "AveragePool",
    "Where",
    "Pow",
    "Shape",
    "Cast",
    "Constant",
    "Flatten",
    "Sum",
    "Range",
    "ConstantOfShape",
];

fn mutate_model(rng: &mut impl Rng, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut m = ModelProto::parse_from_bytes(bytes).ok()?;
    let g = m.graph.as_mut()?;
    for _ in 0..rng.random_range(1..4) {
        let n = rng.random_range(0..g.node.len().max(1));
        let Some(node) = g.node.get_mut(n) else { break };
        match rng.random_range(0..7) {
            0 => node.op_type = OPS[rng.random_range(0..OPS.len())].to_string(),
            1 if !node.attribute.is_empty() => {
                let a = rng.random_range(0..node.attribute.len());
                let attr = &mut node.attribute[a];
                attr.i = [-3i64, -1, 0, 1, 2, 7, 1 << 40][rng.random_range(0..7)];
                attr.f = [0.0f32, -1.0, f32::NAN, 1e30][rng.random_range(0..4)];
                if !attr.ints.is_empty() {
                    let k = rng.random_range(0..attr.ints.len());
                    attr.ints[k] = [-5i64, -1, 0, 1, 3, 1 << 40][rng.random_range(0..6)];
                    if rng.random_bool(0.3) {
                        attr.ints.pop();
                    }
                }
                if rng.random_bool(0.2) {
                    attr.s = b"weird".to_vec();
                }
            }
            2 if !node.input.is_empty() => {
                let k = rng.random_range(0..node.input.len());
                node.input[k] = if rng.random_bool(0.5) { String::new() } else { "missing".into() };
            }
            3 => {
                node.input.push("x".into());
            }
            4 if !g.initializer.is_empty() => {
                let k = rng.random_range(0..g.initializer.len());
                let init = &mut g.initializer[k];
                if !init.dims.is_empty() {
                    let d = rng.random_range(0..init.dims.len());
                    init.dims[d] = [-1i64, 0, 1, 2, 1 << 33][rng.random_range(0..5)];
                } else {
                    init.dims.push(rng.random_range(0..4));
                }
                if rng.random_bool(0.2) {
                    init.data_type = rng.random_range(0..20);
                }
            }
            5 if !g.input.is_empty() => {
                // Change the per-row shape or rank of x or t.
                let k = rng.random_range(0..g.input.len());
                if let Some(shape) = g.input[k].type_.mut_or_insert_default().mut_tensor_type().shape.as_mut() {
                    if rng.random_bool(0.5) && !shape.dim.is_empty() {
                        shape.dim.pop();
                    } else if let Some(d) = shape.dim.last_mut() {
                        d.set_dim_value([0i64, 1, 3, 100000][rng.random_range(0..4)]);
                    }
                }
            }
            _ => {
                for p in &mut m.metadata_props {
                    if rng.random_bool(0.3) {
                        p.value = ["0", "-1", "nan", "v", "inf", "1e400"][rng.random_range(0..6)].into();
                    }
                }
                break;
            }
        }
    }
    m.write_to_bytes().ok()
}

#[test]
fn mutated_model_files_never_panic() {
    let seconds: u64 = std::env::var("SCORELENS_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let budget = if seconds > 0 { Duration::from_secs(seconds) } else { Duration::from_secs(25) };
    let max_cases = if seconds > 0 { usize::MAX } else { 10_000 };
    let seeds = seeds();
    let mut rng = rand::rngs::StdRng::seed_from_u64(if seconds > 0 { rand::random() } else { 2026 });
    let started = Instant::now();
    let crashes = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
    let mut failures = Vec::new();
    let mut cases = 0;
    // Panics are caught and counted; keep their messages off stderr.
    std::panic::set_hook(Box::new(|_| {}));
    while cases < max_cases && started.elapsed() < budget {
        let (name, bytes) = &seeds[rng.random_range(0..seeds.len())];
        let mutated = if name.ends_with(".onnx") && rng.random_bool(0.6) {
            match mutate_model(&mut rng, bytes) {
                Some(b) => b,
                None => continue,
            }
        } else {
            mutate_bytes(&mut rng, bytes)
        };
        let case_started = Instant::now();
        if let Err(message) = load(name, &mutated) {
            std::fs::create_dir_all(&crashes).unwrap();
            let file = crashes.join(format!("case{cases}-{}", name.replace('/', "_")));
            std::fs::write(&file, &mutated).unwrap();
            failures.push(format!("{}: {message}", file.display()));
        }
        if case_started.elapsed() > Duration::from_secs(30) {
            std::fs::create_dir_all(&crashes).unwrap();
            let file = crashes.join(format!("slow{cases}-{}", name.replace('/', "_")));
            std::fs::write(&file, &mutated).unwrap();
            failures.push(format!("{}: took {:.0} s to load", file.display(), case_started.elapsed().as_secs_f64()));
        }
        cases += 1;
    }
    let _ = std::panic::take_hook();
    println!("fuzzed {cases} mutated files in {:.0} s, {} panics", started.elapsed().as_secs_f64(), failures.len());
    assert!(failures.is_empty(), "loader panics:\n{}", failures.join("\n"));
}

/// Inputs the fuzzer once found to panic, kept as regressions.
#[test]
fn former_fuzz_crashes_load_or_fail_cleanly() {
    let dir = fixture("fuzz");
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    let mut failures = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let pretend = if name.contains("safetensors") { "case.safetensors" } else { "case.onnx" };
        if let Err(message) = load(pretend, &std::fs::read(&path).unwrap()) {
            failures.push(format!("{name}: {message}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
