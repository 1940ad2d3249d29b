//! Attention fusion on the fixture networks that have attention: the same passes through three executors built
//! side by side — all fusions, all but attention (SCORELENS_GRAPH_ATTENTION=0), none (SCORELENS_GRAPH_FUSION=0) —
//! timed in interleaved rounds (so that the load of a shared machine falls on all three alike), best and median.
//!
//!     cargo run --profile ci --example attention_fusion -- [ROUNDS] [MODEL.onnx ...]
//!
//! Defaults: 7 rounds over tests/fixtures/onnx21/{unet_attention_epsilon,dit_v}.

use std::sync::Arc;
use std::time::Instant;

use scorelens::graph::exec::{GraphExecutor, GraphOptions, Pass};
use scorelens::graph::ScoreNetwork;
use scorelens::scheduler::JobOptions;
use scorelens::GpuContext;

fn main() -> scorelens::Result<()> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let mut paths: Vec<String> = args.collect();
    if paths.is_empty() {
        paths = ["unet_attention_epsilon", "dit_v"]
            .iter()
            .map(|n| format!("tests/fixtures/onnx21/{n}/model.onnx"))
            .collect();
    }
    let ctx = GpuContext::shared()?;
    println!("adapter: {}", ctx.adapter_description());
    for path in paths {
        let net = Arc::new(ScoreNetwork::load_onnx(std::path::Path::new(&path), &Default::default())?);
        let d = net.dim();
        let variants = [("fused", true, true), ("fused, attention unfused", true, false), ("unfused", false, false)];
        let mut execs = Vec::new();
        for (label, fusion, attention) in variants {
            std::env::set_var("SCORELENS_GRAPH_ATTENTION", if attention { "1" } else { "0" });
            let options = GraphOptions { fusion, memory_plan: true };
            execs.push((label, GraphExecutor::with_options(ctx.clone(), net.clone(), options)?));
        }
        std::env::remove_var("SCORELENS_GRAPH_ATTENTION");
        // (item, pass, points, tangents per point)
        let items = [
            ("forward b64", Pass::Score, 64, 1),
            ("jvp k8 b4", Pass::Jvp, 4, 8),
            (if d == 64 { "jacobian forward b1 (J·I)" } else { "jvp k64 b1" }, Pass::Jvp, 1, 64),
            ("vjp k8 b4", Pass::Vjp, 4, 8),
        ];
        for (item, pass, points, rep) in items {
            let x: Vec<f32> = (0..points * d).map(|i| ((i % 255) as f32) / 127.0 - 1.0).collect();
            let v: Vec<f32> = (0..points * rep * d).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect();
            let tangents = (pass != Pass::Score).then_some((&v[..], rep));
            let mut times = vec![Vec::new(); execs.len()];
            for (e, (_, exec)) in execs.iter().enumerate() {
                exec.run(pass, &x, &[0.5], tangents, JobOptions::default())?; // warm-up, compiles
                let _ = e;
            }
            for _ in 0..rounds {
                for (e, (_, exec)) in execs.iter().enumerate() {
                    let t0 = Instant::now();
                    exec.run(pass, &x, &[0.5], tangents, JobOptions::default())?;
                    times[e].push(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
            let name = path.rsplit('/').nth(1).unwrap_or(&path);
            for ((label, exec), t) in execs.iter().zip(&mut times) {
                t.sort_by(f64::total_cmp);
                let p = exec.program();
                let nodes = match pass {
                    Pass::Score => p.score.len(),
                    Pass::Jvp => p.jvp.len(),
                    Pass::Vjp => p.vjp.len(),
                };
                println!(
                    "{name} {item} [{label}]: best {:.1} ms, median {:.1} ms; {nodes} nodes, {:.1} kB per point",
                    t[0],
                    t[t.len() / 2],
                    exec.bytes_per_point(pass, rep) as f64 / 1e3
                );
            }
        }
    }
    Ok(())
}
