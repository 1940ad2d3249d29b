//! The smoothed training data as a score field: its score at each row's t against the f64 KDE at (α(t), std(t)),
//! its exact J·v and Jacobian (the Hessian), and the sampler on it reaching the data.

mod common;

use common::{gpu, normal_vec, rel_err, rng};
use scorelens::derivative::{jacobian, jvp, vjp, JacobianMethod, JvpMethod};
use scorelens::field::{SmoothedData, Smoothing};
use scorelens::reference::kde::{kde_hessian_vector, kde_point, kde_points};
use scorelens::sampler::{initial_points, sample, SamplerConfig, SamplerKind, SeededNoise};
use scorelens::scheduler::JobOptions;
use scorelens::{NoiseSchedule, ScoreField};

fn cloud(seed: u64, n: usize, d: usize) -> Vec<f32> {
    normal_vec(&mut rng(seed), n * d, 1.0)
}

#[test]
fn score_jvp_and_jacobian_follow_the_schedule_per_row() {
    for (schedule, d, n) in
        [(NoiseSchedule::VeSong { sigma: 25.0 }, 3, 301), (NoiseSchedule::Vp { beta_min: 0.1, beta_max: 20.0 }, 11, 77)]
    {
        let data = cloud(d as u64, n, d);
        let field =
            ScoreField::Smoothed(SmoothedData::new(gpu(), data.clone(), d, schedule, Smoothing::Schedule).unwrap());
        let rows = 13;
        let x = cloud(100 + d as u64, rows, d);
        let t: Vec<f32> = (0..rows).map(|r| [0.05f32, 0.2, 0.6][r % 3]).collect();
        let want: Vec<f64> = (0..rows)
            .flat_map(|r| {
                let tr = t[r] as f64;
                let xr: Vec<f64> = x[r * d..(r + 1) * d].iter().map(|&v| v as f64).collect();
                kde_point(&data, d, schedule.alpha(tr), schedule.std(tr), &xr).score
            })
            .collect();
        let got = field.score(&x, &t, JobOptions::default()).unwrap();
        let err = rel_err(&got, &want);
        assert!(err < 1e-5, "{}: score rel err {err:e}", schedule.name());

        let per_point = 2;
        let v = cloud(200, rows * per_point, d);
        let got = jvp(&field, &x, &t, &v, JvpMethod::Exact, false, JobOptions::default()).unwrap();
        let mut want = Vec::new();
        for r in 0..rows {
            let tr = t[r] as f64;
            let p = kde_points(&data, d, schedule.alpha(tr), schedule.std(tr), &x[r * d..(r + 1) * d]);
            want.extend(kde_hessian_vector(&p, &v[r * per_point * d..(r + 1) * per_point * d], per_point, d));
        }
        let err = rel_err(&got, &want);
        assert!(err < 1e-5, "{}: J·v rel err {err:e}", schedule.name());
        let transposed = vjp(&field, &x, &t, &v, JobOptions::default()).unwrap();
        assert!(rel_err(&transposed, &want) < 1e-5, "Jᵀ·v = J·v (symmetric)");

        let mut jac = Vec::new();
        jacobian(&field, &x, &t, JacobianMethod::Forward, JobOptions::default(), |_, j| {
            jac.extend_from_slice(j);
            Ok(())
        })
        .unwrap();
        let want: Vec<f64> = (0..rows)
            .flat_map(|r| {
                let tr = t[r] as f64;
                let xr: Vec<f64> = x[r * d..(r + 1) * d].iter().map(|&v| v as f64).collect();
                kde_point(&data, d, schedule.alpha(tr), schedule.std(tr), &xr).hessian
            })
            .collect();
        let err = rel_err(&jac, &want);
        assert!(err < 1e-5, "{}: Jacobian rel err {err:e}", schedule.name());
    }
}

#[test]
fn bandwidth_smoothing_ignores_t_and_sampling_reaches_the_data() {
    let d = 2;
    let data: Vec<f32> = vec![-1.0, 0.0, 1.0, 0.0, 0.0, 1.5];
    let fixed = ScoreField::Smoothed(
        SmoothedData::new(gpu(), data.clone(), d, NoiseSchedule::VeSong { sigma: 25.0 }, Smoothing::Bandwidth(0.3))
            .unwrap(),
    );
    let x = cloud(5, 4, d);
    let a = fixed.score(&x, &[0.1], JobOptions::default()).unwrap();
    let b = fixed.score(&x, &[0.9], JobOptions::default()).unwrap();
    assert_eq!(a, b);

    // The exact score of the diffused data: EM ends at the three points (std(eps) ≈ 0.03). Song's grid needs
    // g²Δt ≲ std(eps)² = 1e-3 at the end to be stable there: 1,000 steps.
    let field = ScoreField::Smoothed(
        SmoothedData::new(gpu(), data.clone(), d, NoiseSchedule::VeSong { sigma: 25.0 }, Smoothing::Schedule).unwrap(),
    );
    let mut noise = SeededNoise::new(1);
    let x_init = initial_points(&field, 60, &mut noise);
    let run =
        sample(&field, &x_init, &SamplerConfig::new(SamplerKind::Em, 1000), &mut noise, JobOptions::default()).unwrap();
    let mut nearest: Vec<f32> = run
        .samples
        .chunks(d)
        .map(|p| {
            data.chunks(d).map(|q| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt()).fold(f32::INFINITY, f32::min)
        })
        .collect();
    nearest.sort_by(|a, b| a.total_cmp(b));
    // std(eps) ≈ 0.032: the samples end within a few of it of a data point.
    assert!(nearest[nearest.len() / 2] < 0.06 && nearest[nearest.len() - 1] < 0.25, "distances {nearest:?}");
}
