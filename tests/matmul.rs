//! The matmul kernels against the f64 reference, on shapes that are not multiples of the 64×64×16 and 128×128×8
//! tiles, with every fused prologue and epilogue; and the chooser's shape buckets.

mod common;

use common::{gpu, normal_vec, rel_err, rng};
use rand::Rng;
use scorelens::gpu::{BufferRole, Recorder};
use scorelens::ops::matmul::{
    kernel_for, record_matmul, record_matmul_with, Epilogue, MatmulShape, MatmulTarget, TilePlan,
};
use scorelens::reference::matmul::EpilogueRef;
use scorelens::{reference, Activation, DeviceOptions, GpuContext};

/// Which fusions a check turns on.
#[derive(Clone, Copy, Default)]
struct Fusions {
    act_a: Option<Activation>,
    bias: bool,
    act: Option<Activation>,
    deriv: Option<Activation>,
    /// An addend laid out as `pre`, summed before the activation.
    addend: bool,
    scale: bool,
    group_transposed: bool,
}

/// The variants every layout and fusion is checked on (the cooperative-matrix one needs an adapter that has them).
const VARIANTS: [&str; 3] = ["matmul_tiled", "matmul_tiled_128", "matmul_small"];

/// Runs `kernel` (or the chooser, for `None`) and returns ‖gpu − ref‖ / ‖ref‖, failing above 1e-5.
fn check(shape: MatmulShape, kernel: &'static str, f: Fusions, seed: u64) -> f64 {
    check_on(shape, Some(kernel), f, seed)
}

fn check_on(shape: MatmulShape, kernel: Option<&'static str>, f: Fusions, seed: u64) -> f64 {
    check_in(&gpu(), shape, kernel, f, seed)
}

fn check_in(ctx: &GpuContext, shape: MatmulShape, kernel: Option<&'static str>, f: Fusions, seed: u64) -> f64 {
    let mut r = rng(seed);
    let (ea, eb, ec) = shape.extents();
    let groups = (shape.m as usize).div_ceil(shape.group_rows.max(1) as usize);
    let a = normal_vec(&mut r, ea as usize, 1.0);
    let b = normal_vec(&mut r, eb as usize, 1.0);
    let bias = normal_vec(&mut r, shape.n as usize, 1.0);
    let scale: Vec<f32> = (0..groups).map(|_| r.random_range(0.5..2.0)).collect();
    let pre = normal_vec(&mut r, shape.offset_pre as usize + groups * shape.ld_pre as usize, 1.5);

    let (ga, gb) = (ctx.upload("a", &a), ctx.upload("b", &b));
    let (gbias, gscale, gpre) = (ctx.upload("bias", &bias), ctx.upload("scale", &scale), ctx.upload("pre", &pre));
    let gc = ctx.buffer("c", ec * 4, BufferRole::Storage);
    let mut epilogue =
        Epilogue::act(f.act.unwrap_or(Activation::Identity)).with_act_a(f.act_a.unwrap_or(Activation::Identity));
    if f.bias {
        epilogue = epilogue.with_bias(&gbias);
    }
    if f.scale {
        epilogue = epilogue.with_row_scale(&gscale);
    }
    if let Some(d) = f.deriv {
        epilogue = epilogue.with_deriv(d, &gpre);
    }
    if f.addend {
        epilogue = epilogue.with_addend(&gpre);
    }
    if f.group_transposed {
        epilogue = epilogue.with_group_transposed_store();
    }
    let mut rec = Recorder::new(ctx, "test/matmul");
    match kernel {
        Some(kernel) => record_matmul_with(&mut rec, kernel, &shape, &ga, &gb, epilogue, &gc).unwrap(),
        None => record_matmul(&mut rec, &shape, &ga, &gb, epilogue, &gc).unwrap(),
    }
    rec.submit();
    let got: Vec<f32> = ctx.download(&gc, ec as usize).unwrap();

    let mut want = vec![0.0f64; ec as usize];
    let reference_epilogue = EpilogueRef {
        act_a: f.act_a.unwrap_or(Activation::Identity),
        bias: f.bias.then_some(&bias[..]),
        act: f.act.unwrap_or(Activation::Identity),
        deriv: f.deriv.map(|d| (d, &pre[..])),
        addend: f.addend.then_some(&pre[..]),
        row_scale: f.scale.then_some(&scale[..]),
        store_group_transposed: f.group_transposed,
    };
    reference::matmul::matmul(&shape, &a, &b, reference_epilogue, &mut want);
    let err = rel_err(&got, &want);
    assert!(err <= 1e-5, "{kernel:?} {shape:?}: rel err {err:e}");
    err
}

fn layouts(m: usize, n: usize, k: usize) -> Vec<MatmulShape> {
    let base = MatmulShape::new(m, n, k);
    vec![base, base.with_trans_b(), base.with_trans_a(), base.with_trans_a().with_trans_b()]
}

#[test]
fn tiled_matches_reference_on_awkward_shapes_and_layouts() {
    let mut seed = 0;
    for (m, n, k) in [(1, 1, 1), (3, 5, 7), (17, 65, 15), (65, 63, 17), (130, 257, 33), (77, 1, 300), (200, 129, 1)] {
        for shape in layouts(m, n, k) {
            seed += 1;
            check(shape, "matmul_tiled", Fusions::default(), seed);
        }
    }
}

#[test]
fn small_matches_reference_on_awkward_shapes_and_layouts() {
    for (m, n, k) in [(1, 1, 1), (1, 300, 37), (5, 65, 129), (16, 3, 600)] {
        for shape in layouts(m, n, k) {
            check(shape, "matmul_small", Fusions::default(), (m * 1000 + n + k) as u64);
        }
    }
}

#[test]
fn fused_epilogues_match_reference_for_every_activation() {
    let mut seed = 100;
    for act in [Activation::Identity, Activation::Relu, Activation::Silu, Activation::Gelu, Activation::Tanh] {
        for kernel in VARIANTS {
            for (bias, scale) in [(true, false), (true, true), (false, true)] {
                seed += 1;
                let shape = MatmulShape::new(13, 70, 45).with_trans_b();
                check(shape, kernel, Fusions { bias, scale, act: Some(act), ..Fusions::default() }, seed);
            }
        }
    }
}

#[test]
fn activation_on_load_and_derivative_factors_for_every_activation() {
    let mut seed = 200;
    for act in Activation::ALL {
        for kernel in VARIANTS {
            seed += 1;
            // Tangent rows in groups of 7 per point: act'(pre of the point) per element, scale per point.
            let shape = MatmulShape::new(if kernel == "matmul_small" { 14 } else { 70 }, 33, 40)
                .with_trans_b()
                .with_group_rows(7)
                .with_pre_layout(45, 3);
            check(shape, kernel, Fusions { deriv: Some(act), scale: true, ..Fusions::default() }, seed);
            let shape = MatmulShape::new(if kernel == "matmul_small" { 9 } else { 67 }, 21, 50).with_trans_b();
            check(shape, kernel, Fusions { act_a: Some(act), bias: true, ..Fusions::default() }, seed + 1000);
        }
    }
}

/// C = act(A·B + bias + addend): the addend in C's own layout (one group per row, ld_pre = N) and per group of
/// rows at an offset with a wider stride, on every variant and awkward sizes.
#[test]
fn addend_before_the_activation() {
    let mut seed = 400;
    for act in [Activation::Identity, Activation::Silu, Activation::Relu] {
        for kernel in VARIANTS {
            seed += 1;
            let m = if kernel == "matmul_small" { 11 } else { 131 };
            let shape = MatmulShape::new(m, 67, 45).with_trans_b();
            check(shape, kernel, Fusions { addend: true, bias: true, act: Some(act), ..Fusions::default() }, seed);
            let shape = MatmulShape::new(m, 29, 70).with_group_rows(5).with_pre_layout(33, 4);
            check(
                shape,
                kernel,
                Fusions { addend: true, act: Some(act), scale: true, ..Fusions::default() },
                seed + 50,
            );
        }
    }
    // The addend and a derivative factor share a binding: asking for both is refused, naming both.
    let ctx = gpu();
    let buffer = ctx.buffer("x", 4 * 64, BufferRole::Storage);
    let epilogue = Epilogue::act(Activation::Identity).with_deriv(Activation::Silu, &buffer).with_addend(&buffer);
    let mut rec = Recorder::new(&ctx, "test/matmul");
    let out = ctx.buffer("c", 4 * 64, BufferRole::Storage);
    let err = record_matmul(&mut rec, &MatmulShape::new(8, 8, 8), &buffer, &buffer, epilogue, &out).unwrap_err();
    assert!(err.to_string().contains("addend"), "{err}");
}

#[test]
fn grouped_transposed_store() {
    for kernel in VARIANTS {
        // 5 groups of 13 rows (tangents) × 13 columns: each group's 13×13 block stored transposed.
        let m = if kernel == "matmul_small" { 13 } else { 65 };
        let shape = MatmulShape::new(m, 13, 20).with_trans_b().with_group_rows(13);
        check(shape, kernel, Fusions { group_transposed: true, scale: true, ..Fusions::default() }, 300);
    }
}

#[test]
fn batched_products_with_strides() {
    for kernel in VARIANTS {
        let shape = MatmulShape::new(9, 31, 66).with_batch(5).with_trans_b();
        check(shape, kernel, Fusions { bias: true, ..Fusions::default() }, 7);
        let shape = MatmulShape::new(70, 3, 20).with_batch(3).with_trans_a();
        check(shape, kernel, Fusions { act: Some(Activation::Silu), ..Fusions::default() }, 8);
    }
}

#[test]
fn operands_at_offsets_and_output_column_blocks() {
    for kernel in VARIANTS {
        // C is a 20-column block (starting at column 7) of a 40-column matrix; A and B start mid-buffer.
        let shape = MatmulShape::new(37, 20, 19).with_trans_b().with_offsets(5, 11, 7).with_ldc(40);
        check(
            shape,
            kernel,
            Fusions { act: Some(Activation::Relu), bias: true, scale: true, ..Fusions::default() },
            21,
        );
    }
}

#[test]
fn tiled_128_matches_reference_on_awkward_shapes_and_layouts() {
    let mut seed = 400;
    for (m, n, k) in [(1, 1, 1), (3, 5, 7), (131, 197, 45), (129, 257, 9), (200, 129, 1), (17, 300, 20)] {
        for shape in layouts(m, n, k) {
            seed += 1;
            check(shape, "matmul_tiled_128", Fusions::default(), seed);
        }
    }
}

/// 131×197×45, batch 3, every transpose, the whole prologue and epilogue, on every variant: the relative errors
/// are printed (`--nocapture`) for docs/BENCHMARKS.md.
#[test]
fn every_variant_batched_transposed_with_full_epilogue() {
    let (m, n, k) = (131, 197, 45);
    let fused = Fusions {
        act_a: Some(Activation::Silu),
        bias: true,
        act: Some(Activation::Gelu),
        deriv: Some(Activation::Tanh),
        addend: false,
        scale: true,
        group_transposed: false,
    };
    for (i, shape) in layouts(m, n, k).into_iter().enumerate() {
        // Rows in groups of 7 with their own pre-activations and scale, as tangent rows per point.
        let shape = MatmulShape { batch: 3, ..shape }.with_group_rows(7).with_pre_layout(n + 4, 2);
        let shape = MatmulShape {
            stride_a: m as u32 * k as u32,
            stride_b: k as u32 * n as u32,
            stride_c: m as u32 * n as u32,
            ..shape
        };
        for kernel in VARIANTS {
            let err = check(shape, kernel, fused, 500 + i as u64);
            eprintln!(
                "{kernel} {m}x{n}x{k} batch 3 trans_a={} trans_b={}: rel err {err:.2e}",
                shape.trans_a, shape.trans_b
            );
        }
    }
    // The grouped transposed store (groups of 13 rows), with the rest of the epilogue.
    let shape = MatmulShape::new(130, 13, 45).with_trans_b().with_group_rows(13).with_batch(3);
    let shape = MatmulShape { stride_a: 130 * 45, stride_b: 13 * 45, stride_c: 130 * 13, ..shape };
    for kernel in VARIANTS {
        let err = check(shape, kernel, Fusions { group_transposed: true, bias: true, scale: true, ..fused }, 600);
        eprintln!("{kernel} 130x13x45 batch 3 grouped transposed store: rel err {err:.2e}");
    }
}

#[test]
fn chooser_buckets() {
    let plan = |m, n, k, batch| TilePlan::choose(&MatmulShape::new(m, n, k).with_batch(batch), MatmulTarget::GPU);
    assert_eq!(plan(1, 512, 512, 1), TilePlan::Small);
    assert_eq!(plan(16, 4096, 4096, 1), TilePlan::Small);
    assert_eq!(plan(17, 64, 64, 1), TilePlan::Tile64);
    assert_eq!(plan(256, 256, 256, 1), TilePlan::Tile64);
    // 64 tiles of 128×128 would leave most of a 132-SM GPU idle: 64×64 tiles there.
    assert_eq!(plan(1024, 1024, 1024, 1), TilePlan::Tile64);
    assert_eq!(plan(2048, 2048, 64, 1), TilePlan::Tile128);
    assert_eq!(plan(4096, 4096, 4096, 1), TilePlan::Tile128);
    assert_eq!(plan(65536, 64, 512, 1), TilePlan::Tile64);
    assert_eq!(plan(512, 512, 512, 16), TilePlan::Tile128);
    assert_eq!(plan(512, 512, 512, 4), TilePlan::Tile64);
    // With cooperative matrices every non-small shape goes to them.
    let coop = MatmulTarget { cooperative_matrices: true, software_driver: false };
    assert_eq!(TilePlan::choose(&MatmulShape::new(100, 100, 100), coop), TilePlan::Coop);
    assert_eq!(TilePlan::choose(&MatmulShape::new(4, 100, 100), coop), TilePlan::Small);
    // A software driver runs every non-small shape on the 128 tile.
    let cpu = MatmulTarget { cooperative_matrices: false, software_driver: true };
    assert_eq!(TilePlan::choose(&MatmulShape::new(17, 64, 64), cpu), TilePlan::Tile128);
    assert_eq!(TilePlan::choose(&MatmulShape::new(1024, 1024, 1024), cpu), TilePlan::Tile128);
    assert_eq!(TilePlan::choose(&MatmulShape::new(16, 1024, 1024), cpu), TilePlan::Small);
    assert_eq!(kernel_for(&MatmulShape::new(4096, 4096, 4096)), "matmul_tiled_128");
    for (text, plan) in [("small", TilePlan::Small), ("64", TilePlan::Tile64), ("128", TilePlan::Tile128)] {
        assert_eq!(TilePlan::parse(text).unwrap(), Some(plan));
    }
    assert_eq!(TilePlan::parse("auto").unwrap(), None);
    assert!(TilePlan::parse("96").is_err());
}

/// A shape the chooser sends to the large bucket (385×391, batch 29: 4·4·29 = 464 tiles of 128×128), through
/// `record_matmul` itself, with a bias and an activation.
#[test]
fn chooser_large_bucket_matches_reference() {
    let shape = MatmulShape::new(385, 391, 6).with_batch(29).with_trans_b();
    if std::env::var_os("SCORELENS_MATMUL_TILE").is_none() {
        assert_eq!(kernel_for(&shape), "matmul_tiled_128");
    }
    let err = check_on(shape, None, Fusions { bias: true, act: Some(Activation::Relu), ..Fusions::default() }, 700);
    eprintln!("chooser ({}) 385x391x6 batch 29: rel err {err:.2e}", kernel_for(&shape));
}

/// Options given in code, not the environment: the context keeps them, `record_matmul` runs the forced variant
/// on a shape the chooser would send elsewhere, and a forced cooperative-matrix plan without cooperative matrices
/// is refused when the context is opened, naming the option.
#[test]
fn device_options_given_in_code_force_the_variants() {
    let options =
        DeviceOptions { matmul_tile: Some(TilePlan::Small), subgroups: Some(false), ..DeviceOptions::default() };
    let ctx = GpuContext::with_options(options.clone()).unwrap();
    assert_eq!(ctx.options(), &options);
    assert_eq!(ctx.forced_matmul_tile(), Some(TilePlan::Small));
    assert!(!ctx.subgroup_reductions());
    let shape = MatmulShape::new(70, 45, 33);
    let err = check_in(&ctx, shape, None, Fusions { bias: true, ..Fusions::default() }, 900);
    eprintln!("forced small 70x45x33: rel err {err:.2e}");

    let coop_without_matrices = DeviceOptions { matmul_tile: Some(TilePlan::Coop), ..DeviceOptions::default() };
    let message = GpuContext::with_options(coop_without_matrices).err().expect("coop plan without coop matrices");
    assert!(message.to_string().contains("matmul_tile"), "{message}");
}

/// Cooperative matrices are opt-in and lavapipe does not offer them: asking for them there ends with one clear
/// error (exit status 2) that names the adapter and what it lacks. On an adapter that has them, the
/// cooperative-matrix kernel is checked against the f64 reference instead (layouts, batch, full epilogue).
#[test]
fn cooperative_matrices_where_offered_else_a_clear_error() {
    let ctx = gpu();
    let offered = ctx.caps.features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
    if !offered {
        let run = |args: &[&str], env: Option<&str>| {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_scorelens"));
            command.args(args).env_remove("SCORELENS_COOP_MATRIX");
            if let Some(value) = env {
                command.env("SCORELENS_COOP_MATRIX", value);
            }
            let out = command.output().expect("run scorelens");
            (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
        };
        for (args, env) in [
            (&["bench", "--coop-matrix", "--only", "no-such-item"][..], None),
            (&["bench", "--only", "no-such-item"][..], Some("1")),
        ] {
            let (code, stderr) = run(args, env);
            assert_eq!(code, Some(2), "{args:?} env {env:?}: expected exit 2; stderr:\n{stderr}");
            let line = stderr.lines().filter(|l| l.starts_with("error:")).last().unwrap_or_default();
            for needle in [ctx.caps.info.name.as_str(), "EXPERIMENTAL_COOPERATIVE_MATRIX", "SCORELENS_COOP_MATRIX"] {
                assert!(line.contains(needle), "error line {line:?} does not name {needle:?}");
            }
        }
        // Without the request, the same adapter opens and runs normally.
        let (code, stderr) = run(&["bench", "--only", "no-such-item"], Some("0"));
        assert_eq!(code, Some(0), "stderr:\n{stderr}");
        return;
    }
    scorelens::gpu::request_coop_matrix();
    let coop = match GpuContext::new() {
        Ok(coop) => coop,
        Err(e) => {
            // The feature without an 8×8 f32 configuration: the error must say so.
            assert!(e.to_string().contains("8×8×8 f32"), "{e}");
            return;
        }
    };
    assert!(coop.coop_matrix_enabled());
    let fused =
        Fusions { act_a: Some(Activation::Silu), bias: true, act: Some(Activation::Gelu), ..Fusions::default() };
    for (i, shape) in layouts(131, 197, 45).into_iter().enumerate() {
        let err = check_in(&coop, shape, Some("matmul_coop"), fused, 800 + i as u64);
        eprintln!("matmul_coop 131x197x45 {shape:?}: rel err {err:.2e}");
    }
    let shape = MatmulShape::new(130, 13, 45).with_trans_b().with_group_rows(13);
    let err =
        check_in(&coop, shape, Some("matmul_coop"), Fusions { group_transposed: true, scale: true, ..fused }, 900);
    eprintln!("matmul_coop grouped transposed store: rel err {err:.2e}");
}
