//! Lyapunov analysis: Lorenz-63 as a user field (known exponents, the flow-parallel covariant vector), and linear
//! fields whose every sampler step has a closed-form growth.

mod common;

use std::time::Instant;

use common::gpu;
use scorelens::analysis::lyapunov::{lyapunov, Dynamics, InitialTangents, LyapunovSettings};
use scorelens::field::UserField;
use scorelens::sampler::SamplerKind;
use scorelens::scheduler::JobOptions;
use scorelens::{NoiseSchedule, ScoreField};

const LORENZ: &str = include_str!("../examples/fields/lorenz63.wgsl");

fn lorenz(with_jvp: bool) -> ScoreField {
    let code = if with_jvp { LORENZ.to_string() } else { LORENZ[..LORENZ.find("fn field_jvp").unwrap()].to_string() };
    ScoreField::User(
        UserField::from_source(gpu(), "lorenz63.wgsl", &code, 3, NoiseSchedule::VeSong { sigma: 25.0 }).unwrap(),
    )
}

/// Starting points spread over the attractor's basin.
fn lorenz_starts(n: usize) -> Vec<f32> {
    (0..n)
        .flat_map(|i| {
            let a = i as f32 * 0.7;
            [a.sin() * 8.0, a.cos() * 8.0 + 1.0, 20.0 + (i % 5) as f32]
        })
        .collect()
}

#[test]
fn lorenz63_exponents_sum_and_covariant_vectors() {
    let field = lorenz(true);
    let trajectories = 64;
    let mut settings = LyapunovSettings::new(3);
    settings.clv = true;
    let dynamics = Dynamics::Flow { dt: 0.005, steps: 100_000, transient: 2_000, t: 1.0 };
    let started = Instant::now();
    let run = lyapunov(&field, &lorenz_starts(trajectories), dynamics, settings, JobOptions::default()).unwrap();
    eprintln!("Lorenz: {:.2} s for {trajectories} × 102,000 steps", started.elapsed().as_secs_f64());
    let mean = |j: usize| run.exponents.iter().skip(j).step_by(3).sum::<f64>() / trajectories as f64;
    let (l1, l2, l3) = (mean(0), mean(1), mean(2));
    eprintln!("exponents {l1:.4} {l2:.4} {l3:.4}, sum {:.5}, time {}", l1 + l2 + l3, run.time_span);
    assert!((l1 - 0.9056).abs() < 0.01, "λ1 = {l1}");
    assert!(l2.abs() < 0.01, "λ2 = {l2}");
    assert!((l3 + 14.5723).abs() < 0.01, "λ3 = {l3}");
    // The trace of the Jacobian is −(σ + 1 + β) everywhere.
    assert!((l1 + l2 + l3 + 13.6667).abs() < 1e-3, "sum {}", l1 + l2 + l3);
    let clv = run.clv.as_ref().unwrap();
    let mean_cos = clv.alignment.iter().skip(1).step_by(3).sum::<f64>() / trajectories as f64;
    eprintln!("second covariant vector · flow: mean |cos| {mean_cos:.5}");
    assert!(mean_cos > 0.99, "mean |cos| {mean_cos}");
}

#[test]
fn host_and_fused_propagators_agree() {
    // The same short run through the generic path (GPU score and J·Q per stage, host QR) and the fused kernel.
    let starts = lorenz_starts(5);
    let dynamics = Dynamics::Flow { dt: 0.005, steps: 400, transient: 0, t: 1.0 };
    let mut settings = LyapunovSettings::new(3);
    settings.qr_every = 3;
    settings.clv = true;
    let fused = lyapunov(&lorenz(true), &starts, dynamics, settings, JobOptions::default()).unwrap();
    // Without field_jvp the generic path takes finite differences; with it, compare the exact generic path too.
    let host = {
        let field = lorenz(true);
        let ScoreField::User(user) = &field else { unreachable!() };
        assert!(user.has_jvp());
        scorelens::analysis::lyapunov::lyapunov_generic(&field, &starts, dynamics, settings, JobOptions::default())
            .unwrap()
    };
    let fd = lyapunov(&lorenz(false), &starts, dynamics, settings, JobOptions::default()).unwrap();
    let diff = |a: &[f64], b: &[f64]| {
        a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt() / b.iter().map(|y| y * y).sum::<f64>().sqrt()
    };
    let exact_err = diff(&fused.log_growth, &host.log_growth);
    let fd_err = diff(&fd.log_growth, &host.log_growth);
    eprintln!("log growth: fused vs host {exact_err:e}, finite differences vs host {fd_err:e}");
    assert!(exact_err < 1e-4, "{exact_err:e}");
    assert!(fd_err < 1e-3, "{fd_err:e}");
    let x_err = common::rel_err(&fused.final_x, &host.final_x.iter().map(|&v| v as f64).collect::<Vec<_>>());
    assert!(x_err < 1e-4, "final points {x_err:e}");
    let clv_err = common::rel_err(
        &fused.clv.as_ref().unwrap().vectors,
        &host.clv.as_ref().unwrap().vectors.iter().map(|&v| v as f64).collect::<Vec<_>>(),
    );
    assert!(clv_err < 1e-3, "covariant vectors {clv_err:e}");
}

/// s_i = −x_i / (λ_i + std(t)²): Gaussian data with variances λ, with std(t)² given by `STD2`.
const GAUSSIAN: &str = r#"
fn variance(i: u32) -> f32 {
    return 0.05 + 0.4 * f32(i * i);
}

fn field(x: State, t: f32) -> State {
    var s: State;
    for (var i = 0u; i < DIM; i++) {
        s[i] = -x[i] / (variance(i) + std2(t));
    }
    return s;
}

fn field_jvp(x: State, v: State, t: f32) -> State {
    return field(v, t);
}
"#;

/// std(t)² of Song's VE schedule (sigma 25) and of VP (β from 0.1 to 20: 1 − exp(−∫β)).
const STD2_VE: &str = "fn std2(t: f32) -> f32 { return (pow(25.0, 2.0 * t) - 1.0) / (2.0 * log(25.0)); }\n";
const STD2_VP: &str = "fn std2(t: f32) -> f32 { return 1.0 - exp(-(0.1 * t + 0.5 * t * t * 19.9)); }\n";

/// Σ_k log |m_k,i|: the growth of coordinate i through every step of the sampler, from the scalar tangent
/// equation q' = A_i(τ) q with A_i = c(τ) (−1 / (λ_i + std(τ)²)) − f'(τ), c = g² (EM) or ½ g² (ODE).
fn closed_form_growth(schedule: NoiseSchedule, kind: SamplerKind, steps: usize, eps: f64, i: usize) -> f64 {
    let lambda = 0.05 + 0.4 * (i * i) as f64;
    let ode = kind != SamplerKind::Em;
    let a = |tau: f64| {
        let c = schedule.diffusion(tau).powi(2) * if ode { 0.5 } else { 1.0 };
        -c / (lambda + schedule.std(tau).powi(2)) - schedule.drift_scale(tau)
    };
    let times: Vec<f64> = (0..steps).map(|k| 1.0 - (1.0 - eps) * k as f64 / (steps - 1) as f64).collect();
    let dt = times[0] - times[1];
    let count = if matches!(kind, SamplerKind::OdeHeun | SamplerKind::OdeRk4) { steps - 1 } else { steps };
    times[..count]
        .iter()
        .map(|&t| {
            let m = match kind {
                SamplerKind::Em | SamplerKind::OdeEuler => 1.0 + dt * a(t),
                SamplerKind::OdeHeun => {
                    let k1 = a(t);
                    let k2 = a(t - dt) * (1.0 + dt * k1);
                    1.0 + 0.5 * dt * (k1 + k2)
                }
                _ => {
                    let k1 = a(t);
                    let k2 = a(t - 0.5 * dt) * (1.0 + 0.5 * dt * k1);
                    let k3 = a(t - 0.5 * dt) * (1.0 + 0.5 * dt * k2);
                    let k4 = a(t - dt) * (1.0 + dt * k3);
                    1.0 + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
                }
            };
            m.abs().ln()
        })
        .sum()
}

#[test]
fn linear_gaussian_fields_have_the_closed_form_growth_for_every_sampler() {
    let d = 5;
    let cases = [
        (STD2_VE, NoiseSchedule::VeSong { sigma: 25.0 }, SamplerKind::Em),
        (STD2_VE, NoiseSchedule::VeSong { sigma: 25.0 }, SamplerKind::OdeEuler),
        (STD2_VE, NoiseSchedule::VeSong { sigma: 25.0 }, SamplerKind::OdeHeun),
        (STD2_VE, NoiseSchedule::VeSong { sigma: 25.0 }, SamplerKind::OdeRk4),
        (STD2_VP, NoiseSchedule::Vp { beta_min: 0.1, beta_max: 20.0 }, SamplerKind::Em),
        (STD2_VP, NoiseSchedule::Vp { beta_min: 0.1, beta_max: 20.0 }, SamplerKind::OdeRk4),
    ];
    for (std2, schedule, kind) in cases {
        let code = format!("{std2}{GAUSSIAN}");
        let field = ScoreField::User(UserField::from_source(gpu(), "gaussian.wgsl", &code, d, schedule).unwrap());
        let x0: Vec<f32> = (0..3 * d).map(|e| (e as f32 * 0.37).sin() * 5.0).collect();
        let mut settings = LyapunovSettings::new(d);
        settings.tangents = InitialTangents::Axes;
        settings.qr_every = 7;
        let (steps, eps) = (200, 1e-3);
        let dynamics = Dynamics::Sampler { kind, steps, eps, seed: 4 };
        let run = lyapunov(&field, &x0, dynamics, settings, JobOptions::default()).unwrap();
        for b in 0..3 {
            for i in 0..d {
                let want = closed_form_growth(schedule, kind, steps, eps, i);
                let got = run.log_growth[b * d + i];
                let err = ((got - want) / want).abs();
                assert!(
                    err < 1e-5,
                    "{} {}: coordinate {i}: {got} vs {want} (rel {err:e})",
                    schedule.name(),
                    kind.name()
                );
            }
        }
    }
}

#[test]
fn resident_and_host_propagators_agree_on_mlp_and_unet() {
    // MLP and U-Net fields run resident on the GPU (stages, updates and MGS² QR recorded without waiting); the host path
    // carries tangents in f64 with faer's QR. Same planner, same EM noise draws.
    let cases = [
        (NoiseSchedule::VeSong { sigma: 25.0 }, SamplerKind::Em, 40),
        (NoiseSchedule::VeSong { sigma: 25.0 }, SamplerKind::OdeHeun, 40),
        (NoiseSchedule::Vp { beta_min: 0.1, beta_max: 20.0 }, SamplerKind::OdeRk4, 40),
        // A small U-Net (28×28 images), EM with noise: few steps, lavapipe runs convolutions slowly.
        (NoiseSchedule::VeSong { sigma: 25.0 }, SamplerKind::Em, 0),
    ];
    for (schedule, kind, steps) in cases {
        let (model, steps) = if steps > 0 {
            (
                scorelens::ScoreModel::Mlp(common::random_mlp(
                    21,
                    37,
                    &[70, 45],
                    16,
                    scorelens::Activation::Silu,
                    schedule,
                )),
                steps,
            )
        } else {
            (scorelens::ScoreModel::Unet(scorelens::model::UnetModel::random(23, [32, 32, 32, 32], 32, schedule)), 6)
        };
        let field = ScoreField::new(gpu(), &model).unwrap();
        let d = field.dim();
        let x0 = common::normal_vec(&mut common::rng(22), 2 * d, 3.0);
        let mut settings = LyapunovSettings::new(5);
        settings.qr_every = 3;
        settings.clv = true;
        let dynamics = Dynamics::Sampler { kind, steps, eps: 1e-3, seed: 5 };
        let resident = lyapunov(&field, &x0, dynamics, settings, JobOptions::default()).unwrap();
        let host =
            scorelens::analysis::lyapunov::lyapunov_generic(&field, &x0, dynamics, settings, JobOptions::default())
                .unwrap();
        let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        let growth =
            common::rel_err(&resident.log_growth.iter().map(|&v| v as f32).collect::<Vec<_>>(), &host.log_growth);
        let x = common::rel_err(&resident.final_x, &wide(&host.final_x));
        let vectors = common::rel_err(&resident.vectors, &wide(&host.vectors));
        let clv = common::rel_err(&resident.clv.as_ref().unwrap().vectors, &wide(&host.clv.as_ref().unwrap().vectors));
        eprintln!(
            "D {d} {} {}: log growth {growth:.2e}, final x {x:.2e}, vectors {vectors:.2e}, covariant {clv:.2e}",
            schedule.name(),
            kind.name()
        );
        assert!(growth < 1e-5 && x < 1e-5, "{} {}: growth {growth:e}, x {x:e}", schedule.name(), kind.name());
        assert!(
            vectors < 1e-4 && clv < 1e-3,
            "{} {}: vectors {vectors:e}, covariant {clv:e}",
            schedule.name(),
            kind.name()
        );
    }
}

#[test]
fn resident_runs_beyond_the_memory_budget_in_blocks_of_trajectories() {
    // A budget that holds only a few trajectories' tangents: the run goes in consecutive blocks (each drawing
    // from its own rows' streams) and gives the arrays of the whole batch in one block.
    let model =
        common::random_mlp(31, 37, &[300, 300], 16, scorelens::Activation::Tanh, NoiseSchedule::VeSong { sigma: 25.0 });
    let field = ScoreField::new(gpu(), &scorelens::ScoreModel::Mlp(model)).unwrap();
    let trajectories = 9;
    let x0 = common::normal_vec(&mut common::rng(32), trajectories * 37, 3.0);
    let mut settings = LyapunovSettings::new(6);
    settings.clv = true;
    settings.qr_every = 2;
    let dynamics = Dynamics::Sampler { kind: SamplerKind::Em, steps: 12, eps: 1e-3, seed: 8 };
    let whole = lyapunov(&field, &x0, dynamics, settings, JobOptions::default()).unwrap();
    let budget = 560_000;
    let small = JobOptions { memory_budget: budget, ..JobOptions::default() };
    let chunks = scorelens::derivative::blocks::point_chunks(&field, trajectories, 6, small).unwrap().unwrap();
    assert!(chunks.len() > 1, "the budget must split the batch: {chunks:?}");
    let split = lyapunov(&field, &x0, dynamics, settings, small).unwrap();
    assert_eq!(split.log_growth, whole.log_growth);
    assert_eq!(split.vectors, whole.vectors);
    assert_eq!(split.clv.unwrap().vectors, whole.clv.unwrap().vectors);
    assert_eq!(split.history, whole.history);
}

const LORENZ96: &str = include_str!("../examples/fields/lorenz96.wgsl");

fn lorenz96(d: usize) -> ScoreField {
    ScoreField::User(
        UserField::from_source(gpu(), "lorenz96.wgsl", LORENZ96, d, NoiseSchedule::VeSong { sigma: 25.0 }).unwrap(),
    )
}

/// x_i' = (x_{i+1} − x_{i−2}) x_{i−1} − x_i + 8 and its J·v, in f64.
fn lorenz96_f64(x: &[f64]) -> Vec<f64> {
    let d = x.len();
    (0..d).map(|i| (x[(i + 1) % d] - x[(i + d - 2) % d]) * x[(i + d - 1) % d] - x[i] + 8.0).collect()
}

fn lorenz96_jvp_f64(x: &[f64], v: &[f64]) -> Vec<f64> {
    let d = x.len();
    (0..d)
        .map(|i| {
            let (ip, im, im2) = ((i + 1) % d, (i + d - 1) % d, (i + d - 2) % d);
            (v[ip] - v[im2]) * x[im] + (x[ip] - x[im2]) * v[im] - v[i]
        })
        .collect()
}

/// Points near the attractor's scale: 8 plus a different wiggle per trajectory.
fn lorenz96_starts(trajectories: usize, d: usize) -> Vec<f32> {
    (0..trajectories).flat_map(|b| (0..d).map(move |i| 8.0 + (1.3 * i as f32 + b as f32).sin())).collect()
}

/// The fused flow kernel against its f64 twin (scorelens::reference::flow) on sizes that are not multiples of
/// the workgroup (8 lanes on lavapipe) or of the tangents a lane carries per pass.
fn check_fused_flow_against_reference(trajectories: usize, d: usize, k: usize, steps: usize, qr_every: usize) {
    use scorelens::analysis::lyapunov::initial_tangents;
    let field = lorenz96(d);
    let x0 = lorenz96_starts(trajectories, d);
    let tangents = InitialTangents::Random { seed: 3 };
    let mut settings = LyapunovSettings::new(k);
    settings.qr_every = qr_every;
    settings.tangents = tangents;
    let dt = 0.01;
    let dynamics = Dynamics::Flow { dt, steps, transient: 0, t: 1.0 };
    let run = lyapunov(&field, &x0, dynamics, settings, JobOptions::default()).unwrap();
    assert_eq!(run.propagator, scorelens::analysis::lyapunov::PropagatorKind::FusedFlow);
    assert_eq!(run.products_per_step, 4 * k);
    // The same starting tangents, as the GPU got them (float32).
    let q0: Vec<f64> = initial_tangents(trajectories, k, d, tangents, 0).iter().map(|&v| v as f32 as f64).collect();
    let x0_64: Vec<f64> = x0.iter().map(|&v| v as f64).collect();
    let reference = scorelens::reference::flow::flow_lyapunov(
        &lorenz96_f64,
        &lorenz96_jvp_f64,
        &x0_64,
        &q0,
        d,
        k,
        dt,
        steps,
        qr_every,
    );
    let growth: Vec<f32> = run.log_growth.iter().map(|&v| v as f32).collect();
    let errors = [
        common::rel_err(&growth, &reference.log_growth),
        common::rel_err(&run.final_x, &reference.x),
        common::rel_err(&run.vectors, &reference.q),
    ];
    eprintln!("D = {d}, K = {k}, {steps} steps: log growth, points, vectors: {errors:?}");
    assert!(errors[0] < 1e-4, "log growth {:e}", errors[0]);
    assert!(errors[1] < 1e-4, "final points {:e}", errors[1]);
    assert!(errors[2] < 1e-3, "vectors {:e}", errors[2]);
    if k == d {
        // The Jacobian's trace is −D everywhere: Σ_j log growth = −D · time, to RK4's error.
        for b in 0..trajectories {
            let sum: f64 = run.log_growth[b * k..(b + 1) * k].iter().sum();
            let want = -(d as f64) * dt * steps as f64;
            assert!((sum - want).abs() < 1e-4 * want.abs(), "trajectory {b}: Σ log growth {sum}, want {want}");
        }
    }
}

#[test]
fn fused_flow_matches_the_f64_reference() {
    check_fused_flow_against_reference(3, 37, 13, 60, 1);
    check_fused_flow_against_reference(2, 37, 13, 60, 7);
}

#[test]
#[ignore = "≈ 18 s of CPU on lavapipe, nearly all compiling the D = 101 kernel (docs/lyapunov.md); run by hand"]
fn fused_flow_runs_hundreds_of_tangents() {
    // One QR of 101 tangents is more than lavapipe runs in one dispatch: it is cut into column ranges.
    check_fused_flow_against_reference(2, 101, 101, 12, 1);
}

#[test]
fn lorenz96_exponents_sum_to_minus_d() {
    // Σ of all D exponents is the time-average of the Jacobian's trace, −D exactly (at any time, on any orbit).
    let d = 20;
    let trajectories = 3;
    let field = lorenz96(d);
    let dynamics = Dynamics::Flow { dt: 0.01, steps: 800, transient: 200, t: 1.0 };
    let run =
        lyapunov(&field, &lorenz96_starts(trajectories, d), dynamics, LyapunovSettings::new(d), JobOptions::default())
            .unwrap();
    for b in 0..trajectories {
        let exponents = &run.exponents[b * d..(b + 1) * d];
        let sum: f64 = exponents.iter().sum();
        eprintln!(
            "trajectory {b}: λ1 {:.3}, {} positive, sum {sum:.6}",
            exponents[0],
            exponents.iter().filter(|&&l| l > 0.0).count()
        );
        assert!((sum + d as f64).abs() < 1e-3, "trajectory {b}: sum {sum}");
        assert!(exponents[0] > 0.5, "trajectory {b}: λ1 {}", exponents[0]);
        // Finite-time exponents (time 8) come out ordered up to their fluctuations, a few tenths at this length
        // (which trajectory shows the largest swap depends on the kernel's rounding: the orbit is chaotic).
        assert!(exponents.windows(2).all(|w| w[0] >= w[1] - 0.5), "not ordered: {exponents:?}");
    }
}

#[test]
fn a_state_that_blows_up_is_an_error_naming_the_trajectory_and_the_step() {
    // x' = x² leaves the reals at t = 1/x0: trajectory 1 (x0 = 4) near step 25, trajectory 0 (x0 = 0.1) never here.
    let code = "fn field(x: State, t: f32) -> State {\n    var s: State;\n    for (var i = 0u; i < DIM; i++) {\n        s[i] = x[i] * x[i];\n    }\n    return s;\n}\n\nfn field_jvp(x: State, v: State, t: f32) -> State {\n    var s: State;\n    for (var i = 0u; i < DIM; i++) {\n        s[i] = 2.0 * x[i] * v[i];\n    }\n    return s;\n}\n";
    let field = ScoreField::User(
        UserField::from_source(gpu(), "square.wgsl", code, 2, NoiseSchedule::VeSong { sigma: 25.0 }).unwrap(),
    );
    let dynamics = Dynamics::Flow { dt: 0.01, steps: 200, transient: 0, t: 1.0 };
    let err =
        lyapunov(&field, &[0.1, 0.1, 4.0, 4.0], dynamics, LyapunovSettings::new(2), JobOptions::default()).unwrap_err();
    let message = err.to_string();
    eprintln!("{message}");
    assert!(matches!(err, scorelens::Error::NotFinite { row: 1, .. }), "{message}");
    assert!(message.contains("trajectory 1") && message.contains("step"), "{message}");
    let step: usize =
        message.split("step ").nth(1).unwrap().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
    assert!((20..60).contains(&step), "step {step}");
}
