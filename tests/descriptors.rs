//! Local scaling ψ, rank ν and complexity δ against an independent f64 computation, for MLPs of each activation.

mod common;

use common::{gpu, normal_vec, random_mlp, random_times, rng};
use faer::Mat;
use scorelens::analysis::descriptors::polytope_directions;
use scorelens::analysis::{
    self, DescribedMap, DescriptorMethod, DescriptorSettings, Directions, PointDescriptors, SingularValueSolver,
};
use scorelens::model::{MlpModel, NoiseSchedule};
use scorelens::reference::mlp::mlp_jacobian;
use scorelens::scheduler::JobOptions;
use scorelens::{Activation, ScoreField, ScoreModel};

/// A point's descriptors against the f64 reference's: ψ within 1e-4 (relative, absolute below 1), ν within 1e-5
/// relative, δ exactly.
fn assert_descriptors_match(what: &str, got: &PointDescriptors, want: &PointDescriptors) {
    assert!(
        (got.local_scaling - want.local_scaling).abs() <= 1e-4 * want.local_scaling.abs().max(1.0),
        "{what}: ψ {} vs {}",
        got.local_scaling,
        want.local_scaling
    );
    assert!(
        (got.local_rank / want.local_rank - 1.0).abs() <= 1e-5,
        "{what}: ν {} vs {}",
        got.local_rank,
        want.local_rank
    );
    assert_eq!(got.local_complexity, want.local_complexity, "{what}: δ");
}

/// Pre-activations of every hidden unit in f64, layer by layer.
fn pre_activations(model: &MlpModel, x: &[f64], t: f32) -> Vec<f64> {
    let mut h: Vec<f64> = x.to_vec();
    h.extend(model.fourier_features(t));
    let mut out = Vec::new();
    for layer in &model.layers[..model.layers.len() - 1] {
        let a: Vec<f64> = (0..layer.outputs)
            .map(|o| {
                layer.bias[o] as f64
                    + (0..layer.inputs).map(|i| layer.weight[o * layer.inputs + i] as f64 * h[i]).sum::<f64>()
            })
            .collect();
        h = a.iter().map(|&v| model.act.apply_f64(v)).collect();
        out.extend(a);
    }
    out
}

fn reference(model: &MlpModel, x: &[f32], t: &[f32], settings: &DescriptorSettings) -> Vec<PointDescriptors> {
    let d = model.dim;
    let jacobians = mlp_jacobian(model, x, t);
    let directions = polytope_directions(d, &settings.directions).unwrap();
    (0..x.len() / d)
        .map(|p| {
            let tp = if t.len() == 1 { t[0] } else { t[p] };
            let variance = model.schedule.std(tp as f64).powi(2);
            let alpha = model.schedule.alpha(tp as f64);
            let (a, b) = match settings.map {
                DescribedMap::Score => (0.0, 1.0),
                DescribedMap::Denoiser => (1.0 / alpha, variance / alpha),
            };
            let m =
                Mat::<f64>::from_fn(d, d, |r, c| b * jacobians[p * d * d + r * d + c] + if r == c { a } else { 0.0 });
            let s = m.singular_values().unwrap();
            let s = &s[..settings.k];
            let psi: f64 = s.iter().map(|v| v.ln()).sum();
            let total: f64 = s.iter().sum();
            let nu = s.iter().map(|v| v / total).map(|q| -q * q.ln()).sum::<f64>().exp();
            // x ± r·bⱼ, rounded to f32 as the GPU sees them.
            let xp: Vec<f64> = x[p * d..(p + 1) * d].iter().map(|&v| v as f64).collect();
            let center = pre_activations(model, &xp, tp);
            let mut changed = vec![false; center.len()];
            for j in 0..directions.len() / d {
                for r in [settings.radius, -settings.radius] {
                    let vertex: Vec<f64> = (0..d).map(|i| (xp[i] + r * directions[j * d + i]) as f32 as f64).collect();
                    for ((flag, &c), v) in changed.iter_mut().zip(&center).zip(pre_activations(model, &vertex, tp)) {
                        *flag |= (c > 0.0) != (v > 0.0);
                    }
                }
            }
            PointDescriptors {
                local_scaling: psi,
                local_rank: nu,
                local_complexity: changed.iter().filter(|&&c| c).count(),
                converged: true,
                products: d,
            }
        })
        .collect()
}

#[test]
fn descriptors_match_an_independent_f64_computation() {
    let mut seed = 900;
    for act in Activation::ALL {
        for (map, directions) in [
            (DescribedMap::Denoiser, Directions::Axes),
            (DescribedMap::Score, Directions::Random { count: 5, seed: 3 }),
        ] {
            seed += 1;
            let model = random_mlp(seed, 8, &[40, 40], 6, act, NoiseSchedule::Vp { beta_min: 0.1, beta_max: 20.0 });
            let x = normal_vec(&mut rng(seed + 1), 4 * 8, 1.0);
            let t = random_times(seed + 2, 4);
            let settings = DescriptorSettings { map, k: 8, radius: 0.3, directions };
            let field = ScoreField::new(gpu(), &ScoreModel::Mlp(model.clone())).unwrap();
            let mut got = Vec::new();
            analysis::descriptors(&field, &x, &t, &settings, JobOptions::default(), |_, r| {
                got.push(r);
                Ok(())
            })
            .unwrap();
            for (p, (g, w)) in got.iter().zip(reference(&model, &x, &t, &settings)).enumerate() {
                assert_descriptors_match(&format!("{act} {map:?} point {p}"), g, &w);
            }
        }
    }
}

/// The descriptors of every point of x by `method`.
fn by_method(
    field: &ScoreField,
    x: &[f32],
    t: &[f32],
    settings: &DescriptorSettings,
    method: DescriptorMethod,
) -> Vec<PointDescriptors> {
    let solver = SingularValueSolver { method, tolerance: 1e-6, max_iterations: 200, seed: 5 };
    let mut got = Vec::new();
    analysis::descriptors_with(field, x, t, 0, settings, &solver, JobOptions::default(), |_, r| {
        got.push(r);
        Ok(())
    })
    .unwrap();
    got
}

#[test]
fn the_krylov_route_agrees_with_the_dense_route_and_the_f64_reference() {
    // D = 19 and k = 5 and 11: neither a multiple of the Krylov block (min(k, 8)); both maps (the denoiser's
    // Jacobian a·I + b·J is applied as a·v + b·J v), time per point.
    let d = 19;
    for (seed, act, map, k) in [
        (990, Activation::Silu, DescribedMap::Denoiser, 5),
        (991, Activation::Tanh, DescribedMap::Score, 11),
        (992, Activation::Relu, DescribedMap::Denoiser, 11),
    ] {
        let model = random_mlp(seed, d, &[48, 48], 6, act, NoiseSchedule::Vp { beta_min: 0.1, beta_max: 20.0 });
        let field = ScoreField::new(gpu(), &ScoreModel::Mlp(model.clone())).unwrap();
        let x = normal_vec(&mut rng(seed + 1), 5 * d, 1.0);
        let t = random_times(seed + 2, 5);
        let settings = DescriptorSettings { map, k, radius: 0.2, directions: Directions::Random { count: 3, seed: 1 } };
        let dense = by_method(&field, &x, &t, &settings, DescriptorMethod::Dense);
        let krylov = by_method(&field, &x, &t, &settings, DescriptorMethod::Krylov);
        let reference = reference(&model, &x, &t, &settings);
        for (p, ((k_, d_), r)) in krylov.iter().zip(&dense).zip(&reference).enumerate() {
            let what = format!("{act} {map:?} k = {k} point {p}");
            assert!(k_.converged && d_.converged, "{what}: converged {} / {}", k_.converged, d_.converged);
            assert_eq!(d_.products, d, "{what}: the dense route takes D products");
            assert!(k_.products > 0 && k_.products % 2 == 0, "{what}: krylov products {}", k_.products);
            for (route, got) in [("krylov", k_), ("dense", d_)] {
                assert_descriptors_match(&format!("{what} {route}"), got, r);
            }
        }
    }
}

#[test]
fn a_krylov_route_stopped_at_its_cap_says_not_converged() {
    let d = 13;
    let model = random_mlp(995, d, &[40], 4, Activation::Silu, NoiseSchedule::VeSong { sigma: 25.0 });
    let field = ScoreField::new(gpu(), &ScoreModel::Mlp(model)).unwrap();
    let x = normal_vec(&mut rng(996), 2 * d, 1.0);
    let settings = DescriptorSettings {
        map: DescribedMap::Score,
        k: 6,
        radius: 0.1,
        directions: Directions::Random { count: 2, seed: 0 },
    };
    let solver = SingularValueSolver { method: DescriptorMethod::Krylov, tolerance: 1e-14, max_iterations: 1, seed: 0 };
    let mut got = Vec::new();
    analysis::descriptors_with(&field, &x, &[0.4], 0, &settings, &solver, JobOptions::default(), |_, r| {
        got.push(r);
        Ok(())
    })
    .unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| !r.converged && r.local_scaling.is_finite()), "{got:?}");
}

#[test]
fn local_complexity_grows_with_the_radius() {
    let model = random_mlp(950, 6, &[64, 64], 4, Activation::Relu, NoiseSchedule::VeSong { sigma: 25.0 });
    let field = ScoreField::new(gpu(), &ScoreModel::Mlp(model)).unwrap();
    let x = normal_vec(&mut rng(951), 6, 1.0);
    let count = |radius: f64| {
        let settings = DescriptorSettings { map: DescribedMap::Denoiser, k: 6, radius, directions: Directions::Axes };
        let mut delta = 0;
        analysis::descriptors(&field, &x, &[0.5], &settings, JobOptions::default(), |_, r| {
            delta = r.local_complexity;
            Ok(())
        })
        .unwrap();
        delta
    };
    let (small, large) = (count(1e-3), count(2.0));
    assert!(small < large && large <= 128, "δ(1e-3) = {small}, δ(2) = {large}");
}

/// A one-hidden-layer ReLU network on R² whose hidden units' hyperplanes are set by hand: unit u is
/// relu(w_u · x + b_u) (its time-embedding weights zeroed, so t moves no boundary).
fn relu_net_with_hyperplanes(normals: &[[f32; 2]], offsets: &[f32]) -> MlpModel {
    let mut model = random_mlp(970, 2, &[normals.len()], 4, Activation::Relu, NoiseSchedule::VeSong { sigma: 25.0 });
    let first = &mut model.layers[0];
    for (u, (w, &b)) in normals.iter().zip(offsets).enumerate() {
        let inputs = first.inputs;
        for (i, weight) in first.weight[u * inputs..(u + 1) * inputs].iter_mut().enumerate() {
            *weight = if i < 2 { w[i] } else { 0.0 };
        }
        first.bias[u] = b;
    }
    model
}

fn complexity(model: &MlpModel, x: &[f32], radius: f64) -> Vec<usize> {
    let field = ScoreField::new(gpu(), &ScoreModel::Mlp(model.clone())).unwrap();
    let settings = DescriptorSettings { map: DescribedMap::Denoiser, k: 2, radius, directions: Directions::Axes };
    let mut got = Vec::new();
    analysis::descriptors(&field, x, &[0.3], &settings, JobOptions::default(), |_, r| {
        got.push(r.local_complexity);
        Ok(())
    })
    .unwrap();
    got
}

#[test]
fn local_complexity_counts_the_region_boundaries_crossing_the_cross_polytope() {
    // Parallel lines x₁ = c for c = −1, −0.9, …, 1 (21 units): around the origin, the ℓ1 ball of radius 0.35
    // meets the 7 lines |c| ≤ 0.3, which cut it into 8 linear regions; around (0.95, 0) radius 0.12 meets
    // c = 0.9 and 1.0 (3 regions); around (5, 5) none (one region).
    let offsets: Vec<f32> = (0..21).map(|i| -(-1.0 + 0.1 * i as f32)).collect();
    let normals = vec![[1.0f32, 0.0]; 21];
    let model = relu_net_with_hyperplanes(&normals, &offsets);
    assert_eq!(complexity(&model, &[0.0, 0.0], 0.35), vec![7]);
    assert_eq!(complexity(&model, &[0.95, 0.0], 0.12), vec![2]);
    assert_eq!(complexity(&model, &[5.0, 5.0], 0.5), vec![0]);

    // Hyperplanes in general position: unit u's hyperplane meets the ℓ1 ball of radius r around z iff
    // |w_u·z + b_u| ≤ r ‖w_u‖_∞ (the ball's support function), and the cross-polytope's 2D vertices see every
    // such crossing of a first-layer unit, so δ is that count exactly (f64, away from ties).
    let mut r = rng(971);
    let units = 60;
    let normals: Vec<[f32; 2]> =
        (0..units).map(|_| [normal_vec(&mut r, 1, 1.0)[0], normal_vec(&mut r, 1, 1.0)[0]]).collect();
    let offsets = normal_vec(&mut r, units, 0.5);
    let model = relu_net_with_hyperplanes(&normals, &offsets);
    let points = normal_vec(&mut r, 2 * 12, 0.6);
    for radius in [0.05, 0.2, 0.6] {
        let got = complexity(&model, &points, radius);
        for (p, z) in points.chunks(2).enumerate() {
            let margins: Vec<f64> = normals
                .iter()
                .zip(&offsets)
                .map(|(w, &b)| {
                    let value = w[0] as f64 * z[0] as f64 + w[1] as f64 * z[1] as f64 + b as f64;
                    value.abs() - radius * (w[0].abs().max(w[1].abs()) as f64)
                })
                .collect();
            if margins.iter().any(|m| m.abs() < 1e-4) {
                continue; // a hyperplane through a vertex: f32 rounding decides
            }
            let want = margins.iter().filter(|&&m| m < 0.0).count();
            assert_eq!(got[p], want, "point {p}, r = {radius}: δ {} vs the exact count {want}", got[p]);
        }
    }
}
