//! The graph engine's row-scale and activation-on-load fusions on `scorelens bench`'s MLP (D = 64, three hidden
//! layers of 512, SiLU, ε-parameterised): the same passes through four executors built side by side — all fusions,
//! all but the activation on load (SCORELENS_GRAPH_ACT_LOAD=0), all but the row scale (SCORELENS_GRAPH_ROW_SCALE=0),
//! neither — timed in interleaved rounds (so that the load of a shared machine falls on all alike), best and
//! median, with the process's CPU time per variant.
//!
//!     cargo run --profile ci --example graph_fusions -- [ROUNDS]
//!
//! Default: 15 rounds.

use std::sync::Arc;
use std::time::Instant;

use scorelens::graph::exec::{GraphExecutor, GraphOptions, Pass};
use scorelens::model::{MlpModel, NoiseSchedule};
use scorelens::scheduler::JobOptions;
use scorelens::{Activation, GpuContext, ScoreModel};

/// CPU seconds (user + system) of this process so far, from /proc/self/stat (clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> scorelens::Result<()> {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(15);
    let ctx = GpuContext::shared()?;
    println!("adapter: {}", ctx.adapter_description());
    let mlp = MlpModel::random(1, 64, &[512, 512, 512], 64, Activation::Silu, NoiseSchedule::VeSong { sigma: 25.0 });
    let net = scorelens::graph::builtin::network(&ScoreModel::Mlp(mlp))?;
    let d = net.dim();
    let variants =
        [("all", true, true), ("no act-load", false, true), ("no row-scale", true, false), ("neither", false, false)];
    let mut execs = Vec::new();
    for (label, act_load, row_scale) in variants {
        std::env::set_var("SCORELENS_GRAPH_ACT_LOAD", if act_load { "1" } else { "0" });
        std::env::set_var("SCORELENS_GRAPH_ROW_SCALE", if row_scale { "1" } else { "0" });
        let options = GraphOptions { fusion: true, memory_plan: true };
        execs.push((label, GraphExecutor::with_options(ctx.clone(), Arc::clone(&net), options)?));
    }
    std::env::remove_var("SCORELENS_GRAPH_ACT_LOAD");
    std::env::remove_var("SCORELENS_GRAPH_ROW_SCALE");
    // (item, pass, points, tangents per point)
    let items = [
        ("forward b1", Pass::Score, 1, 1),
        ("forward b16", Pass::Score, 16, 1),
        ("jvp k1 b1", Pass::Jvp, 1, 1),
        ("jvp k8 b4", Pass::Jvp, 4, 8),
        ("jacobian forward b1 (J·I)", Pass::Jvp, 1, 64),
        ("jacobian forward b16 (J·I)", Pass::Jvp, 16, 64),
        ("vjp k1 b1", Pass::Vjp, 1, 1),
        ("jacobian reverse b16 (Jᵀ·I)", Pass::Vjp, 16, 64),
    ];
    for (item, pass, points, rep) in items {
        let x: Vec<f32> = (0..points * d).map(|i| ((i % 89) as f32 - 44.0) / 44.0).collect();
        let v: Vec<f32> = (0..points * rep * d).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect();
        let t = vec![0.5; points];
        let tangents = (pass != Pass::Score).then_some((&v[..], rep));
        for (_, exec) in &execs {
            exec.run(pass, &x, &t, tangents, JobOptions::default())?; // warm-up, compiles
        }
        let mut times = vec![Vec::new(); execs.len()];
        let mut cpu = vec![0.0; execs.len()];
        for _ in 0..rounds {
            for (e, (_, exec)) in execs.iter().enumerate() {
                let (t0, c0) = (Instant::now(), cpu_seconds());
                exec.run(pass, &x, &t, tangents, JobOptions::default())?;
                times[e].push(t0.elapsed().as_secs_f64() * 1e3);
                cpu[e] += cpu_seconds() - c0;
            }
        }
        for (((label, exec), t), cpu) in execs.iter().zip(&mut times).zip(&cpu) {
            t.sort_by(f64::total_cmp);
            let p = exec.program();
            let nodes = match pass {
                Pass::Score => p.score.len(),
                Pass::Jvp => p.linearisation.len() + p.jvp.len(),
                Pass::Vjp => p.linearisation.len() + p.vjp.len(),
            };
            println!(
                "{item} [{label}]: best {:.2} ms, median {:.2} ms, CPU {:.2} ms per run; {nodes} nodes, {:.1} kB per point",
                t[0],
                t[t.len() / 2],
                cpu * 1e3 / rounds as f64,
                exec.bytes_per_point(pass, rep) as f64 / 1e3
            );
        }
    }
    Ok(())
}
