//! The samplers against an independent f64 implementation of the same updates (Song's tutorial), fed the same
//! x_T and the same noise draws, with the score from the f64 reference network.

mod common;

use common::{gpu, random_mlp, rel_err};
use scorelens::model::{MlpModel, NoiseSchedule};
use scorelens::reference::mlp::mlp_score;
use scorelens::sampler::{initial_points, sample, NoiseSource, SamplerConfig, SamplerKind, SeededNoise};
use scorelens::scheduler::JobOptions;
use scorelens::{Activation, ScoreField, ScoreModel};

/// Passes draws through and keeps them, so the reference can replay them in order.
struct Recording {
    inner: SeededNoise,
    draws: Vec<f64>,
}

impl NoiseSource for Recording {
    fn fill(&mut self, out: &mut [f64], row_len: usize) {
        self.inner.fill(out, row_len);
        self.draws.extend_from_slice(out);
    }
}

/// The reference: plain loops in f64 over Song's tutorial's updates; the score from the f64 network (its input
/// rounded to f32, as any float32 model sees it).
fn reference_sampler(
    model: &MlpModel,
    x_init: &[f32],
    kind: &str,
    steps: usize,
    eps: f64,
    snr: f64,
    draws: &[f64],
    record_sigma: Option<f64>,
) -> (Vec<f64>, Option<(Vec<f64>, f64)>) {
    let sched = model.schedule;
    let d = model.dim;
    let n = x_init.len() / d;
    let score = |x: &[f64], t: f64| -> Vec<f64> {
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        mlp_score(model, &x32, &[t as f32])
    };
    // b(x, t) = g² s − f for the SDE, v = ½ g² s − f for the ODE; f = −½ β(t) x for VP.
    let velocity = |x: &[f64], t: f64, ode: bool| -> Vec<f64> {
        let s = score(x, t);
        let g2 = sched.diffusion(t).powi(2) * if ode { 0.5 } else { 1.0 };
        x.iter().zip(&s).map(|(&xi, &si)| g2 * si - sched.drift_scale(t) * xi).collect()
    };
    let times: Vec<f64> = (0..steps).map(|k| 1.0 - (1.0 - eps) * k as f64 / (steps - 1) as f64).collect();
    let dt = times[0] - times[1];
    let mut x: Vec<f64> = x_init.iter().map(|&v| v as f64).collect();
    let mut next = 0;
    let mut take = |len: usize| -> Vec<f64> {
        next += len;
        draws[next - len..next].to_vec()
    };
    let mut recorded = None;
    let count = if kind == "ode-heun" || kind == "ode-rk4" { steps - 1 } else { steps };
    for k in 0..count {
        let t = times[k];
        if let Some(sigma) = record_sigma {
            if recorded.is_none() && sched.std(t) <= sigma {
                recorded = Some((x.clone(), t));
            }
        }
        let last = k + 1 == count;
        match kind {
            "em" | "pc" => {
                if kind == "pc" {
                    let s = score(&x, t);
                    let z = take(n * d);
                    for r in 0..n {
                        let norm: f64 = s[r * d..(r + 1) * d].iter().map(|v| v * v).sum::<f64>().sqrt();
                        let eps_l = 2.0 * (snr * (d as f64).sqrt() / norm).powi(2);
                        for i in r * d..(r + 1) * d {
                            x[i] += eps_l * s[i] + (2.0 * eps_l).sqrt() * z[i];
                        }
                    }
                }
                let b = velocity(&x, t, false);
                let g = sched.diffusion(t);
                let z = if last { vec![0.0; n * d] } else { take(n * d) };
                for i in 0..x.len() {
                    x[i] += b[i] * dt + g * dt.sqrt() * z[i];
                }
            }
            "ode-euler" => {
                let v = velocity(&x, t, true);
                x.iter_mut().zip(&v).for_each(|(xi, vi)| *xi += vi * dt);
            }
            "ode-heun" => {
                let k1 = velocity(&x, t, true);
                let x1: Vec<f64> = x.iter().zip(&k1).map(|(a, b)| a + dt * b).collect();
                let k2 = velocity(&x1, t - dt, true);
                for i in 0..x.len() {
                    x[i] += 0.5 * dt * (k1[i] + k2[i]);
                }
            }
            "ode-rk4" => {
                let k1 = velocity(&x, t, true);
                let x2: Vec<f64> = x.iter().zip(&k1).map(|(a, b)| a + 0.5 * dt * b).collect();
                let k2 = velocity(&x2, t - 0.5 * dt, true);
                let x3: Vec<f64> = x.iter().zip(&k2).map(|(a, b)| a + 0.5 * dt * b).collect();
                let k3 = velocity(&x3, t - 0.5 * dt, true);
                let x4: Vec<f64> = x.iter().zip(&k3).map(|(a, b)| a + dt * b).collect();
                let k4 = velocity(&x4, t - dt, true);
                for i in 0..x.len() {
                    x[i] += dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
                }
            }
            _ => unreachable!(),
        }
    }
    assert_eq!(next, draws.len(), "{kind}: the reference used a different number of draws");
    (x, recorded)
}

fn check(kind: SamplerKind, schedule: NoiseSchedule, n: usize, steps: usize, tolerance: f64) {
    let model = random_mlp(11, 5, &[32, 32], 8, Activation::Silu, schedule);
    let field = ScoreField::new(gpu(), &ScoreModel::Mlp(model.clone())).unwrap();
    let mut noise = Recording { inner: SeededNoise::new(3), draws: Vec::new() };
    let x_init = initial_points(&field, n, &mut noise);
    let prior_draws = noise.draws.len();
    let sigma = schedule.std(0.5);
    let config = SamplerConfig { kind, steps, eps: 1e-3, snr: 0.16, record_sigmas: vec![sigma] };
    let run = sample(&field, &x_init, &config, &mut noise, JobOptions::default()).unwrap();
    let (want, recorded) =
        reference_sampler(&model, &x_init, kind.name(), steps, 1e-3, 0.16, &noise.draws[prior_draws..], Some(sigma));
    let err = rel_err(&run.samples, &want);
    assert!(err < tolerance, "{} {}: samples rel err {err:e}", kind.name(), schedule.name());
    let (want_recorded, want_t) = recorded.unwrap();
    assert_eq!(run.recorded_t[0], want_t);
    let err = rel_err(&run.recorded[0], &want_recorded);
    assert!(err < tolerance, "{} {}: recorded rel err {err:e}", kind.name(), schedule.name());
    eprintln!("{} {}: rel err {:e}", kind.name(), schedule.name(), rel_err(&run.samples, &want));
}

#[test]
fn every_sampler_matches_the_independent_reference_ve() {
    for kind in [SamplerKind::Em, SamplerKind::Pc, SamplerKind::OdeEuler, SamplerKind::OdeHeun, SamplerKind::OdeRk4] {
        check(kind, NoiseSchedule::VeSong { sigma: 25.0 }, 37, 40, 1e-5);
    }
}

#[test]
fn every_sampler_matches_the_independent_reference_vp() {
    for kind in [SamplerKind::Em, SamplerKind::OdeEuler, SamplerKind::OdeRk4] {
        check(kind, NoiseSchedule::Vp { beta_min: 0.1, beta_max: 20.0 }, 19, 30, 1e-5);
    }
}

#[test]
fn prior_draws_and_seeds_are_reproducible() {
    let model = random_mlp(5, 3, &[16], 4, Activation::Tanh, NoiseSchedule::VeSong { sigma: 25.0 });
    let field = ScoreField::new(gpu(), &ScoreModel::Mlp(model)).unwrap();
    let config = SamplerConfig::new(SamplerKind::Em, 20);
    let run = |seed| {
        let mut noise = SeededNoise::new(seed);
        let x = initial_points(&field, 8, &mut noise);
        sample(&field, &x, &config, &mut noise, JobOptions::default()).unwrap().samples
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
    // x_T = std(1) z for VE: its spread is std(1) ≈ 7.
    let mut noise = SeededNoise::new(9);
    let x = initial_points(&field, 2000, &mut noise);
    let spread = (x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
    let want = NoiseSchedule::VeSong { sigma: 25.0 }.std(1.0);
    assert!((spread / want - 1.0).abs() < 0.05, "{spread} vs {want}");
}

#[test]
fn a_rows_draws_do_not_depend_on_its_batch() {
    // Rows 3..7 drawn as a block (a shard, a device's rows) get the draws of the whole batch, event by event.
    let (d, n) = (5, 7);
    let mut whole = SeededNoise::new(11);
    let mut block = SeededNoise::for_rows(11, 3);
    for _event in 0..3 {
        let mut all = vec![0.0; n * d];
        whole.fill(&mut all, d);
        let mut part = vec![0.0; 4 * d];
        block.fill(&mut part, d);
        assert_eq!(part, all[3 * d..]);
    }
    // After shared events (x_T drawn whole), offset_rows continues a block at the same event.
    let mut shared = SeededNoise::for_rows(11, 0);
    shared.fill(&mut vec![0.0; n * d], d);
    let (mut first, mut tail) = (shared.offset_rows(0), shared.offset_rows(3));
    let (mut a, mut b) = (vec![0.0; 3 * d], vec![0.0; 4 * d]);
    first.fill(&mut a, d);
    tail.fill(&mut b, d);
    let mut all = vec![0.0; n * d];
    let mut again = SeededNoise::new(11);
    again.fill(&mut all, d);
    again.fill(&mut all, d);
    assert_eq!([a, b].concat(), all);
    // Different rows, events and seeds draw differently.
    assert_ne!(all[..d], all[d..2 * d]);
}

#[test]
fn bad_settings_are_refused() {
    let model = random_mlp(5, 3, &[16], 4, Activation::Tanh, NoiseSchedule::VeSong { sigma: 25.0 });
    let field = ScoreField::new(gpu(), &ScoreModel::Mlp(model)).unwrap();
    let x = vec![0.0f32; 6];
    let mut noise = SeededNoise::new(0);
    let mut config = SamplerConfig::new(SamplerKind::Em, 1);
    assert!(sample(&field, &x, &config, &mut noise, JobOptions::default()).is_err());
    config.steps = 10;
    config.record_sigmas = vec![1e-9];
    let e = sample(&field, &x, &config, &mut noise, JobOptions::default()).unwrap_err();
    assert!(e.is_user_error() && e.to_string().contains("record_sigmas"), "{e}");
}

/// The library names its parameters (the command line maps them to its flags, tests/cli.rs checks those).
#[test]
fn grid_errors_name_the_parameter_not_a_flag() {
    let steps = scorelens::sampler::TimeGrid::new(1, 1e-3).unwrap_err().to_string();
    assert!(steps.contains("steps 1") && !steps.contains("--"), "{steps}");
    let eps = scorelens::sampler::TimeGrid::new(10, 1.5).unwrap_err().to_string();
    assert!(eps.contains("eps 1.5") && !eps.contains("--"), "{eps}");
    assert!(scorelens::sampler::SamplerKind::parse("euler").unwrap_err().to_string().contains("sampler \"euler\""));
}
