//! The library's rows, shards and joining rules: shards of a run joined through the library (in memory by each
//! result type's batch axes, or as saved folders through `results::merge`) equal the whole run bit for bit.

mod common;

use std::path::Path;

use common::{fixture, gpu};
use scorelens::analysis::lyapunov::{Dynamics, InitialTangents, LyapunovSettings};
use scorelens::batch::{block, Points, Shard};
use scorelens::derivative::{self, DivergenceMethod, JvpMethod};
use scorelens::field::{KdeField, KdeScale};
use scorelens::io::npy;
use scorelens::results::{self, concatenate, derivatives, kde, lyapunov, sample, spectrum};
use scorelens::sampler::{SamplerConfig, SamplerKind};
use scorelens::scheduler::JobOptions;
use scorelens::{ScoreField, ScoreModel};

fn mlp() -> ScoreField {
    let model = ScoreModel::load(&fixture("mlp_silu/model.safetensors")).unwrap();
    ScoreField::new(gpu(), &model).unwrap()
}

/// The fixture's 8 rows [8, 16] with their own times.
fn points(field: &ScoreField) -> Points {
    let x = npy::read_f32(&fixture("mlp_silu/x.npy")).unwrap();
    let t = npy::read_f32(&fixture("mlp_silu/t.npy")).unwrap();
    Points::checked(x.shape, x.data, t.data.clone(), &t.shape, field, "x", "t").unwrap()
}

fn same_files(a: &Path, b: &Path, names: &[&str]) {
    for name in names {
        let (x, y) = (std::fs::read(a.join(name)).unwrap(), std::fs::read(b.join(name)).unwrap());
        assert!(x == y, "{name}: the joined shards differ from the whole run");
    }
}

#[test]
fn shards_are_contiguous_blocks_covering_every_row_once() {
    for total in [1usize, 7, 8, 100] {
        for n in 1..=total.min(9) {
            let mut next = 0;
            for i in 0..n {
                let shard = Shard::new(i, n, total).unwrap();
                assert_eq!(shard.rows, block(i, n, total));
                assert_eq!(shard.rows.start, next, "{i}/{n} of {total}");
                assert!(shard.len() >= total / n && shard.len() <= total / n + 1);
                next = shard.rows.end;
            }
            assert_eq!(next, total);
        }
    }
    assert_eq!(Shard::parse(None, 5).unwrap(), Shard::whole(5));
    assert_eq!(Shard::parse(Some("1/3"), 7).unwrap().rows, 2..4);
    for (spec, needle) in [("3/3", "0 ≤ I < N"), ("a/2", "I/N"), ("1", "I/N"), ("0/0", "I/N")] {
        let e = Shard::parse(Some(spec), 7).unwrap_err().to_string();
        assert!(e.contains("shard") && e.contains(needle), "{spec}: {e}");
    }
    let e = Shard::new(0, 8, 7).unwrap_err().to_string();
    assert!(e.contains("takes none of the 7 rows"), "{e}");
}

#[test]
fn points_take_the_shards_rows_and_times() {
    let field = mlp();
    let all = points(&field);
    let shard = Shard::new(1, 3, 8).unwrap(); // rows 2..5
    let part = all.clone().take(&shard);
    assert_eq!(part.shape, vec![3, 16]);
    assert_eq!(part.x, all.x[2 * 16..5 * 16].to_vec());
    assert_eq!(part.t, all.t[2..5].to_vec());
    let one_t = Points { t: vec![0.5], ..all }.take(&shard);
    assert_eq!(one_t.t, vec![0.5]);
}

#[test]
fn spectrum_in_three_shards_joins_to_the_whole_run() {
    let field = mlp();
    let fields = [&field];
    let all = points(&field);
    let options = JobOptions::default();
    for method in [spectrum::SpectrumMethod::Dense, spectrum::SpectrumMethod::Rsvd] {
        let request = spectrum::SpectrumRequest { method, vectors: true, ..spectrum::SpectrumRequest::new(5) };
        let run = |shard: &Shard| {
            spectrum::spectrum(&fields, &all.clone().take(shard), shard, &request, options, "mlp", "run", |_, _| Ok(()))
                .unwrap()
        };
        let whole = run(&Shard::whole(8));
        let parts: Vec<_> = (0..3).map(|i| run(&Shard::new(i, 3, 8).unwrap())).collect();
        // In memory, each array along its batch axis.
        let axis = spectrum::LAYOUT.axis_of("singular_values.npy");
        let join = |pick: &dyn Fn(&spectrum::SpectrumResult) -> ndarray::ArrayD<f64>| {
            concatenate(&parts.iter().map(pick).collect::<Vec<_>>(), axis).unwrap()
        };
        assert_eq!(join(&|r| r.singular_values.clone()), whole.singular_values, "{method:?}");
        assert_eq!(join(&|r| r.nonconservativeness.clone()), whole.nonconservativeness, "{method:?}");
        assert_eq!(join(&|r| r.overlap.clone()), whole.overlap, "{method:?}");
        // As saved folders, through merge.
        let scratch = tempfile::tempdir().unwrap();
        let whole_dir = scratch.path().join("whole");
        whole.save(&whole_dir).unwrap();
        let dirs: Vec<_> = (0..3).map(|i| scratch.path().join(format!("part{i}"))).collect();
        for (part, dir) in parts.iter().zip(&dirs) {
            part.save(dir).unwrap();
        }
        let merged = scratch.path().join("merged");
        results::merge(&dirs, &merged).unwrap();
        same_files(
            &whole_dir,
            &merged,
            &[
                "singular_values.npy",
                "residuals.npy",
                "alignment.npy",
                "overlap.npy",
                "local_dimension_threshold.npy",
                "local_dimension_gap.npy",
                "nonconservativeness.npy",
                "left_vectors.npy",
                "right_vectors.npy",
                "rows.jsonl",
            ],
        );
    }
}

#[test]
fn sampler_and_lyapunov_shards_and_device_blocks_join_to_the_whole_run() {
    let field = mlp();
    let options = JobOptions::default();
    let config = SamplerConfig { record_sigmas: vec![5.0, 1.0], ..SamplerConfig::new(SamplerKind::Em, 12) };
    let run = |fields: &[&ScoreField], shard: Option<&str>| {
        sample::sample(fields, sample::Start::Prior { n: 7 }, &config, 3, shard, options, "mlp", "run").unwrap()
    };
    let whole = run(&[&field], None);
    assert_eq!(whole.samples.shape(), &[7, 16]);
    assert_eq!(whole.recorded.as_ref().unwrap().shape(), &[2, 7, 16]);
    // The same field twice stands for two devices: rows split in two blocks, joined by the layout.
    let two = run(&[&field, &field], None);
    assert_eq!(two.samples, whole.samples);
    assert_eq!(two.recorded, whole.recorded);
    let scratch = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = (0..3).map(|i| scratch.path().join(format!("s{i}"))).collect();
    for (i, dir) in dirs.iter().enumerate() {
        run(&[&field], Some(&format!("{i}/3"))).save(dir).unwrap();
    }
    let (whole_dir, merged) = (scratch.path().join("whole"), scratch.path().join("merged"));
    whole.save(&whole_dir).unwrap();
    results::merge(&dirs, &merged).unwrap();
    same_files(&whole_dir, &merged, &["samples.npy", "recorded.npy", "recorded_t.npy"]);

    let x0 = whole.samples.iter().copied().collect::<Vec<f32>>();
    let dynamics = Dynamics::Sampler { kind: SamplerKind::Em, steps: 10, eps: 1e-3, seed: 5 };
    let settings = LyapunovSettings {
        k: 3,
        qr_every: 2,
        clv: true,
        tangents: InitialTangents::Random { seed: 5 },
        history_points: 1000,
    };
    let run = |fields: &[&ScoreField], shard: Option<&str>| {
        lyapunov::lyapunov(fields, &x0, dynamics, settings, shard, options, "mlp", "run").unwrap()
    };
    let whole = run(&[&field], None);
    let two = run(&[&field, &field], None);
    assert_eq!(two.exponents, whole.exponents);
    assert_eq!(two.history, whole.history);
    assert_eq!(two.covariant.as_ref().unwrap().clv, whole.covariant.as_ref().unwrap().clv);
    let dirs: Vec<_> = (0..3).map(|i| scratch.path().join(format!("l{i}"))).collect();
    for (i, dir) in dirs.iter().enumerate() {
        run(&[&field], Some(&format!("{i}/3"))).save(dir).unwrap();
    }
    let (whole_dir, merged) = (scratch.path().join("lwhole"), scratch.path().join("lmerged"));
    whole.save(&whole_dir).unwrap();
    results::merge(&dirs, &merged).unwrap();
    same_files(
        &whole_dir,
        &merged,
        &[
            "log_growth.npy",
            "exponents.npy",
            "vectors.npy",
            "final_x.npy",
            "alignment.npy",
            "history.npy",
            "history_time.npy",
            "clv.npy",
            "clv_x.npy",
            "clv_alignment.npy",
        ],
    );
}

#[test]
fn merge_refuses_shards_out_of_order_or_of_another_run() {
    let field = mlp();
    let config = SamplerConfig::new(SamplerKind::OdeEuler, 4);
    let scratch = tempfile::tempdir().unwrap();
    let save = |shard: &str, run: &str, name: &str| {
        let r = sample::sample(
            &[&field],
            sample::Start::Prior { n: 4 },
            &config,
            0,
            Some(shard),
            JobOptions::default(),
            "m",
            run,
        )
        .unwrap();
        let dir = scratch.path().join(name);
        r.save(&dir).unwrap();
        dir
    };
    let (a, b) = (save("0/2", "run", "a"), save("1/2", "run", "b"));
    let e = results::merge(&[b.clone(), a.clone()], &scratch.path().join("o")).unwrap_err().to_string();
    assert!(e.contains("shard 1/2") && e.contains("in order"), "{e}");
    let other = save("1/2", "another", "c");
    let e = results::merge(&[a, other], &scratch.path().join("o2")).unwrap_err().to_string();
    assert!(e.contains("another run"), "{e}");
}

/// The fixture's rows, each a little moved: directions V (or U) of X's shape.
fn directions(all: &Points, field: &ScoreField) -> derivatives::Directions {
    let v: Vec<f32> = all.x.iter().enumerate().map(|(i, x)| 0.5 * x + 0.1 * ((i % 7) as f32 - 3.0)).collect();
    derivatives::Directions::checked(all.shape.clone(), v, &all.shape, field, "v").unwrap()
}

#[test]
fn pointwise_results_on_two_devices_and_in_shards_equal_the_whole_run() {
    let (field, other) = (mlp(), mlp());
    let all = points(&field);
    let v = directions(&all, &field);
    let options = JobOptions::default();
    let hutchinson = DivergenceMethod::Hutchinson { probes: 3, seed: 2 };
    // Each result against the library's kernels called once on the whole batch.
    let score = derivatives::score(&[&field], &all, options).unwrap();
    assert_eq!(score.score.shape(), &[8, 16]);
    assert_eq!(score.score.iter().copied().collect::<Vec<_>>(), field.score(&all.x, &all.t, options).unwrap());
    let jvp = derivatives::jvp(&[&field], &all, &v, None, false, options).unwrap();
    let want = derivative::jvp(&field, &all.x, &all.t, &v.values, JvpMethod::Exact, false, options).unwrap();
    assert_eq!(jvp.jvp.iter().copied().collect::<Vec<_>>(), want);
    let vjp = derivatives::vjp(&[&field], &all, &v, options).unwrap();
    assert_eq!(
        vjp.vjp.iter().copied().collect::<Vec<_>>(),
        derivative::vjp(&field, &all.x, &all.t, &v.values, options).unwrap()
    );
    let jacobian = derivatives::jacobian(&[&field], &all, None, options).unwrap();
    assert_eq!(jacobian.jacobian.shape(), &[8, 16, 16]);
    let divergence = derivatives::divergence(&[&field], &all, 0, hutchinson, options).unwrap();
    let want = derivative::divergence(&field, &all.x, &all.t, hutchinson, options).unwrap();
    assert_eq!(
        divergence.divergence.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        want.iter().map(|&v| v as f32 as f64).collect::<Vec<_>>()
    );

    // Two devices (rows 0..4 and 4..8) give the same bits.
    let two = [&field, &other];
    assert_eq!(derivatives::score(&two, &all, options).unwrap().score, score.score);
    assert_eq!(derivatives::jvp(&two, &all, &v, None, false, options).unwrap().jvp, jvp.jvp);
    assert_eq!(derivatives::vjp(&two, &all, &v, options).unwrap().vjp, vjp.vjp);
    assert_eq!(derivatives::jacobian(&two, &all, None, options).unwrap().jacobian, jacobian.jacobian);
    assert_eq!(derivatives::divergence(&two, &all, 0, hutchinson, options).unwrap().divergence, divergence.divergence);

    // Three shards, each with its rows' global offset, joined along the rows.
    let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3, 8).unwrap()).collect();
    let joined = |part: &dyn Fn(&Points, &derivatives::Directions, &Shard) -> ndarray::ArrayD<f32>| {
        let parts: Vec<_> = shards.iter().map(|s| part(&all.clone().take(s), &v.clone().take(s), s)).collect();
        concatenate(&parts, 0).unwrap()
    };
    let f = [&field];
    assert_eq!(joined(&|p, _, _| derivatives::score(&f, p, options).unwrap().score), score.score);
    assert_eq!(joined(&|p, v, _| derivatives::jvp(&f, p, v, None, false, options).unwrap().jvp), jvp.jvp);
    assert_eq!(joined(&|p, v, _| derivatives::vjp(&f, p, v, options).unwrap().vjp), vjp.vjp);
    assert_eq!(joined(&|p, _, _| derivatives::jacobian(&f, p, None, options).unwrap().jacobian), jacobian.jacobian);
    let by_shard =
        joined(&|p, _, s| derivatives::divergence(&f, p, s.rows.start, hutchinson, options).unwrap().divergence);
    assert_eq!(by_shard, divergence.divergence);

    // save writes the array as its .npy; the streamed Jacobian writes the same file.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("j.npy"), dir.path().join("j_streamed.npy"));
    jacobian.save(&a).unwrap();
    derivatives::save_jacobian(&b, &f, &all, None, options).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let back = npy::read_f32(&a).unwrap();
    assert_eq!((back.shape, back.data), (vec![8, 16, 16], jacobian.jacobian.iter().copied().collect::<Vec<_>>()));
    assert_eq!(jvp.arrays()[0].0, "jvp");
}

#[test]
fn an_exact_method_the_field_lacks_is_refused_by_name_and_directions_are_checked() {
    let field = mlp();
    let all = points(&field);
    let e = derivatives::Directions::checked(vec![7, 16], vec![0.0; 7 * 16], &all.shape, &field, "v").unwrap_err();
    assert!(e.to_string().contains("v: shape [7, 16]"), "{e}");
    let e = scorelens::batch::check_rows(&[4, 3], &[0.0; 12], "x", Some((5, "data"))).unwrap_err().to_string();
    assert!(e.contains("x: shape [4, 3] has D = 3 but data has D = 5"), "{e}");
    let e = scorelens::batch::check_rows(&[1, 2], &[0.0, f32::NAN], "x", None).unwrap_err().to_string();
    assert!(e.contains("x") && e.contains("row 0"), "{e}");
    let e = DivergenceMethod::Hutchinson { probes: 0, seed: 0 };
    let e = derivatives::divergence(&[&field], &all, 0, e, JobOptions::default()).unwrap_err().to_string();
    assert!(e.contains("probes must be at least 1") && !e.contains("--"), "{e}");
}

#[test]
fn kde_on_two_devices_and_in_shards_equals_the_whole_run_and_saves_its_files() {
    let data = npy::read_f32(&fixture("mlp_silu/x.npy")).unwrap();
    let query: Vec<f32> = data.data.iter().map(|v| 0.8 * v + 0.05).collect();
    let kde_field = || KdeField::new(gpu(), data.data.clone(), 16, KdeScale::bandwidth(0.7)).unwrap();
    let (a, b) = (kde_field(), kde_field());
    let options = JobOptions::default();
    let whole = kde::kde(&[&a], &query, &Shard::whole(8), true, options, "run").unwrap();
    let direct = a.evaluate(&query, true, options).unwrap();
    assert_eq!(whole.log_density.iter().copied().collect::<Vec<_>>(), direct.log_density);
    assert_eq!(whole.score.iter().copied().collect::<Vec<_>>(), direct.score);
    assert_eq!(whole.hessian.as_ref().unwrap().shape(), &[8, 16, 16]);
    let two = kde::kde(&[&a, &b], &query, &Shard::whole(8), true, options, "run").unwrap();
    assert_eq!((&two.log_density, &two.score, &two.hessian), (&whole.log_density, &whole.score, &whole.hessian));

    let dir = tempfile::tempdir().unwrap();
    let parts: Vec<_> = (0..3).map(|i| dir.path().join(format!("part{i}"))).collect();
    for (i, part) in parts.iter().enumerate() {
        kde::kde(&[&a], &query, &Shard::new(i, 3, 8).unwrap(), true, options, "run").unwrap().save(part).unwrap();
    }
    let (whole_dir, merged) = (dir.path().join("whole"), dir.path().join("merged"));
    whole.save(&whole_dir).unwrap();
    results::merge(&parts, &merged).unwrap();
    same_files(&whole_dir, &merged, &["log_density.npy", "score.npy", "hessian.npy"]);
    let names: Vec<_> = whole.arrays().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["log_density", "score", "hessian"]);
}
