//! The smoothed empirical density on the GPU against the PyTorch float64 fixture and the f64 reference, on both
//! kernel paths, over awkward sizes, several tiles, streamed data and tiny bandwidths.

mod common;

use common::{fixture, gpu, normal_vec, rel_err, rng};
use rand::Rng;
use scorelens::field::{KdeField, KdePath, KdeScale};
use scorelens::io::npy;
use scorelens::model::NoiseSchedule;
use scorelens::reference::kde::{kde_hessian_vector, kde_points, KdePoint};
use scorelens::scheduler::{JobOptions, Silent};

fn flat(points: &[KdePoint], pick: impl Fn(&KdePoint) -> Vec<f64>) -> Vec<f64> {
    points.iter().flat_map(pick).collect()
}

/// Relative errors (log density, score, Hessian) of the GPU against the f64 reference.
fn errors(field: &KdeField, x: &[f32], options: JobOptions) -> (f64, f64, f64) {
    let s = field.scale();
    let want = kde_points(field.data(), field.dim(), s.alpha, s.sigma, x);
    let got = field.evaluate(x, true, options).unwrap();
    (
        rel_err(&got.log_density, &flat(&want, |p| vec![p.log_density])),
        rel_err(&got.score, &flat(&want, |p| p.score.clone())),
        rel_err(got.hessian.as_ref().unwrap(), &flat(&want, |p| p.hessian.clone())),
    )
}

#[test]
fn reproduces_the_pytorch_fixture_on_every_path() {
    let data = npy::read_f32(&fixture("kde/data.npy")).unwrap();
    let x = npy::read_f32(&fixture("kde/x.npy")).unwrap();
    let sigma = npy::read_f64(&fixture("kde/sigma.npy")).unwrap().data[0];
    let want_log = npy::read_f64(&fixture("kde/log_density.npy")).unwrap();
    let want_score = npy::read_f64(&fixture("kde/score.npy")).unwrap();
    let want_hessian = npy::read_f64(&fixture("kde/hessian.npy")).unwrap();
    let want_eigen = npy::read_f64(&fixture("kde/hessian_eigenvalues.npy")).unwrap();
    let d = data.shape[1];
    for path in [KdePath::Small, KdePath::Tiled, KdePath::Point, KdePath::Auto] {
        for tile in [200, 37] {
            let field = KdeField::new(gpu(), data.data.clone(), d, KdeScale::bandwidth(sigma))
                .unwrap()
                .with_path(path)
                .unwrap()
                .with_tile_rows(tile);
            let out = field.evaluate(&x.data, true, JobOptions::default()).unwrap();
            let hessian = out.hessian.unwrap();
            let errs = [
                rel_err(&out.log_density, &want_log.data),
                rel_err(&out.score, &want_score.data),
                rel_err(&hessian, &want_hessian.data),
            ];
            println!(
                "fixture {path:?} tile {tile}: log p {:.1e}, score {:.1e}, Hessian {:.1e}",
                errs[0], errs[1], errs[2]
            );
            assert!(errs.iter().all(|&e| e <= 1e-5), "{path:?} tile {tile}: {errs:?}");
            // Eigenvalues (ascending, as stored) of the GPU Hessians, in f64 on the host.
            let mut eigen = Vec::new();
            for b in 0..x.shape[0] {
                let h = faer::Mat::<f64>::from_fn(d, d, |r, c| hessian[(b * d + r) * d + c] as f64);
                let mut values: Vec<f64> = h.self_adjoint_eigenvalues(faer::Side::Lower).unwrap().into_iter().collect();
                values.sort_by(f64::total_cmp);
                eigen.extend(values.into_iter().map(|v| v as f32));
            }
            let e = rel_err(&eigen, &want_eigen.data);
            assert!(e <= 1e-5, "{path:?}: eigenvalues {e:e}");
        }
    }
}

/// Query points: some near data points (within a few σ), some anywhere in the cloud.
fn queries(r: &mut impl Rng, data: &[f32], d: usize, sigma: f64, count: usize) -> Vec<f32> {
    let n = data.len() / d;
    let mut x = Vec::with_capacity(count * d);
    for q in 0..count {
        let i = r.random_range(0..n);
        let spread = if q % 2 == 0 { sigma as f32 } else { 1.0 };
        x.extend((0..d).map(|k| data[i * d + k] + spread * normal_vec(r, 1, 1.0)[0]));
    }
    x
}

#[test]
fn random_clouds_match_the_f64_reference() {
    let mut r = rng(11);
    let mut worst = [0.0f64; 3];
    for (n, d, sigma) in [
        (1, 1, 0.3),
        (7, 1, 0.05),
        (7, 2, 3.0),
        (1000, 2, 0.05),
        (1000, 3, 0.5),
        (5000, 3, 1.0),
        (20000, 2, 0.3),
        (9000, 8, 1.0),
        (7, 37, 0.5),
        (1000, 37, 3.0),
        (1000, 37, 0.05),
        (5000, 37, 1.0),
        (1, 130, 0.5),
        (1000, 130, 2.0),
    ] {
        let data = normal_vec(&mut r, n * d, 1.0);
        let x = queries(&mut r, &data, d, sigma, 9);
        let paths: &[KdePath] = if d <= 8 {
            &[KdePath::Small, KdePath::Tiled, KdePath::Point]
        } else if d <= 64 {
            &[KdePath::Tiled, KdePath::Point]
        } else {
            &[KdePath::Tiled]
        };
        for &path in paths {
            let field =
                KdeField::new(gpu(), data.clone(), d, KdeScale::bandwidth(sigma)).unwrap().with_path(path).unwrap();
            let e = errors(&field, &x, JobOptions::default());
            println!("N {n} D {d} σ {sigma} {path:?}: log p {:.1e}, score {:.1e}, Hessian {:.1e}", e.0, e.1, e.2);
            assert!(e.0 <= 1e-6 && e.1 <= 1e-4 && e.2 <= 1e-4, "N {n} D {d} σ {sigma} {path:?}: {e:?}");
            for (w, v) in worst.iter_mut().zip([e.0, e.1, e.2]) {
                *w = w.max(v);
            }
        }
    }
    println!("worst: log p {:.1e}, score {:.1e}, Hessian {:.1e}", worst[0], worst[1], worst[2]);
}

/// The per-query-point kernels (kde_point_*.wgsl) against the f64 reference and against the forced tiles, and
/// `Auto` (which picks them for few rows) against both, at dimensions and row counts that fill no block: one tile
/// and several, N and tiles not multiples of the 256-point chunks or 64-point stages.
#[test]
fn per_point_kernels_match_the_reference_and_the_tiles() {
    let mut r = rng(16);
    for (n, d, rows, tile) in [
        (1000, 9, 1, 1000),
        (1000, 13, 3, 333),
        (777, 16, 7, 777),
        (777, 16, 25, 250),
        (601, 23, 70, 601),
        (601, 37, 25, 200),
        (500, 37, 7, 500),
        (300, 64, 3, 130),
        (500, 2, 70, 123),
        (300, 5, 3, 300),
    ] {
        let sigma = 0.6;
        let data = normal_vec(&mut r, n * d, 1.0);
        let x = queries(&mut r, &data, d, sigma, rows);
        let field = |path| {
            KdeField::new(gpu(), data.clone(), d, KdeScale::bandwidth(sigma))
                .unwrap()
                .with_path(path)
                .unwrap()
                .with_tile_rows(tile)
        };
        let point = field(KdePath::Point);
        assert_eq!(point.kernels(), KdePath::Point);
        let e = errors(&point, &x, JobOptions::default());
        println!(
            "per-point N {n} D {d} rows {rows} tile {tile}: log p {:.1e}, score {:.1e}, Hessian {:.1e}",
            e.0, e.1, e.2
        );
        assert!(e.0 <= 1e-6 && e.1 <= 1e-4 && e.2 <= 1e-4, "N {n} D {d} rows {rows}: {e:?}");
        let got = point.evaluate(&x, true, JobOptions::default()).unwrap();
        for other in [KdePath::Tiled, KdePath::Auto] {
            let want = field(other).evaluate(&x, true, JobOptions::default()).unwrap();
            let diffs = [
                rel_err(&got.log_density, &want.log_density.iter().map(|&v| v as f64).collect::<Vec<_>>()),
                rel_err(&got.score, &want.score.iter().map(|&v| v as f64).collect::<Vec<_>>()),
                rel_err(
                    got.hessian.as_ref().unwrap(),
                    &want.hessian.unwrap().iter().map(|&v| v as f64).collect::<Vec<_>>(),
                ),
            ];
            assert!(diffs[0] <= 1e-6 && diffs[1] <= 1e-4 && diffs[2] <= 1e-4, "{other:?} N {n} D {d}: {diffs:?}");
        }
    }
}

#[test]
fn several_tiles_chunks_and_streamed_data_agree_with_one_tile() {
    let mut r = rng(12);
    for (n, d) in [(1000, 3), (1000, 37)] {
        let data = normal_vec(&mut r, n * d, 1.0);
        let x = queries(&mut r, &data, d, 0.4, 70);
        let field = KdeField::new(gpu(), data.clone(), d, KdeScale::bandwidth(0.4)).unwrap();
        let tiled = KdeField::new(gpu(), data, d, KdeScale::bandwidth(0.4)).unwrap().with_tile_rows(333);
        // A budget below twice the data: tiles are uploaded one at a time; and small enough to cut the queries.
        let small_budget = JobOptions { memory_budget: (n * d * 4) as u64 + 200_000, progress: &Silent };
        let want = errors(&field, &x, JobOptions::default());
        let got = errors(&tiled, &x, small_budget);
        println!("N {n} D {d}: one tile {want:?}, streamed tiles of 333 {got:?}");
        assert!(got.0 <= 1e-6 && got.1 <= 1e-4 && got.2 <= 1e-4, "{got:?}");
    }
}

#[test]
fn hessian_vector_products_match_hessian_times_v() {
    let mut r = rng(13);
    for (n, d, p, tile, path) in [
        (500, 5, 3, 500, KdePath::Small),
        (500, 5, 2, 123, KdePath::Tiled),
        (777, 37, 3, 300, KdePath::Tiled),
        // Narrow blocks (≤ 32 directions: BLOCK_ROWS = 16): one and two 16-direction workgroups, tiles not
        // multiples of 64.
        (601, 75, 13, 250, KdePath::Tiled),
        (601, 75, 29, 601, KdePath::Tiled),
        // Wide blocks (BLOCK_ROWS = 64): just past the narrow limit, and two 64-direction workgroups.
        (400, 67, 33, 150, KdePath::Tiled),
        (300, 130, 70, 300, KdePath::Tiled),
        // The per-point path forms H (16×16, 37×37) and applies it on the host.
        (500, 16, 3, 123, KdePath::Point),
        (400, 37, 2, 400, KdePath::Point),
    ] {
        let data = normal_vec(&mut r, n * d, 1.0);
        let x = queries(&mut r, &data, d, 0.7, 5);
        let v = normal_vec(&mut r, 5 * p * d, 1.0);
        let field = KdeField::new(gpu(), data.clone(), d, KdeScale::bandwidth(0.7))
            .unwrap()
            .with_path(path)
            .unwrap()
            .with_tile_rows(tile);
        let got = field.hessian_vector(&x, &v, p, JobOptions::default()).unwrap();
        let reference = kde_points(&data, d, 1.0, 0.7, &x);
        let want = kde_hessian_vector(&reference, &v, p, d);
        let e = rel_err(&got, &want);
        println!("HVP N {n} D {d} P {p} tile {tile} {path:?}: {e:.1e}");
        assert!(e <= 1e-4, "N {n} D {d} P {p}: {e:e}");
        // The score from the same passes (what the Lanczos route uses at each new point), and the same products.
        let (score, both) = field.score_and_hessian_vector(&x, &v, p, JobOptions::default()).unwrap();
        let (es, eb) = (rel_err(&score, &flat(&reference, |q| q.score.clone())), rel_err(&both, &want));
        println!("score + HVP N {n} D {d} P {p}: score {es:.1e}, H·v {eb:.1e}");
        assert!(es <= 1e-5 && eb <= 1e-4, "N {n} D {d} P {p}: score {es:e}, H·v {eb:e}");
    }
}

#[test]
fn tiny_bandwidth_far_from_the_data_stays_finite() {
    let mut r = rng(14);
    for d in [2, 37] {
        let data = normal_vec(&mut r, 100 * d, 1.0);
        let x: Vec<f32> = (0..3 * d).map(|i| 50.0 + i as f32).collect();
        for path in [KdePath::Auto, KdePath::Tiled] {
            let field =
                KdeField::new(gpu(), data.clone(), d, KdeScale::bandwidth(1e-3)).unwrap().with_path(path).unwrap();
            let e = errors(&field, &x, JobOptions::default());
            println!("σ = 1e-3, far, D {d} {path:?}: {e:?}");
            assert!(e.0 <= 1e-6 && e.1 <= 1e-4 && e.2 <= 1e-4, "{e:?}");
        }
    }
}

#[test]
fn diffusion_marginals_scale_the_data() {
    let mut r = rng(15);
    let schedule = NoiseSchedule::Vp { beta_min: 0.1, beta_max: 20.0 };
    let scale = KdeScale::at_time(&schedule, 0.3);
    assert!(scale.alpha < 1.0 && (scale.alpha.powi(2) + scale.sigma.powi(2) - 1.0).abs() < 1e-12);
    for d in [3, 37] {
        let data = normal_vec(&mut r, 400 * d, 1.0);
        let x = normal_vec(&mut r, 6 * d, 1.0);
        let field = KdeField::new(gpu(), data, d, scale).unwrap();
        let e = errors(&field, &x, JobOptions::default());
        assert!(e.0 <= 1e-6 && e.1 <= 1e-4 && e.2 <= 1e-4, "{e:?}");
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let ctx = gpu();
    let bad = |r: scorelens::Result<KdeField>| r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(bad(KdeField::new(ctx.clone(), vec![1.0; 7], 2, KdeScale::bandwidth(1.0))).contains("rows of 2"));
    assert!(bad(KdeField::new(ctx.clone(), vec![], 2, KdeScale::bandwidth(1.0))).contains("rows of 2"));
    assert!(bad(KdeField::new(ctx.clone(), vec![1.0, f32::NAN], 2, KdeScale::bandwidth(1.0))).contains("not finite"));
    for sigma in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(bad(KdeField::new(ctx.clone(), vec![1.0; 4], 2, KdeScale::bandwidth(sigma))).contains("bandwidth"));
    }
    assert!(bad(KdeField::new(ctx.clone(), vec![1.0; 18], 9, KdeScale::bandwidth(1.0))
        .and_then(|f| f.with_path(KdePath::Small)))
    .contains("D ≤ 8"));
    assert!(bad(KdeField::new(ctx.clone(), vec![1.0; 130], 65, KdeScale::bandwidth(1.0))
        .and_then(|f| f.with_path(KdePath::Point)))
    .contains("D ≤ 64"));
    let field = KdeField::new(ctx, vec![1.0; 4], 2, KdeScale::bandwidth(1.0)).unwrap();
    assert!(field.score(&[1.0; 3], JobOptions::default()).is_err());
    assert!(field.score(&[1.0, f32::INFINITY], JobOptions::default()).is_err());
    assert!(field.hessian_vector(&[1.0; 2], &[1.0; 3], 1, JobOptions::default()).is_err());
    assert!(field.score(&[], JobOptions::default()).unwrap().is_empty());
}
