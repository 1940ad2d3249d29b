//! Where the time of a block Krylov run goes: products (the operator's J·V / Jᵀ·U calls, transfers included)
//! against everything else (orthogonalisation, Rayleigh–Ritz, residuals), and what one block's round trip to the
//! host costs on its own.
//!
//!     cargo run --profile ci --example krylov_profile MODEL X.npy T K [POINTS] [host|resident|both]
//!
//! Runs the top-K singular triplets of the first POINTS points (default 1) at tol 1e-5 by the host path (bases in
//! f64 on the host, every product's block read back) and/or the resident path (bases on the GPU; products are
//! waited for, so that their time is theirs).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use scorelens::analysis::lowrank::JacobianBatch;
use scorelens::derivative::blocks::{BlockOperator, ResidentJacobians};
use scorelens::io::npy;
use scorelens::scheduler::JobOptions;
use scorelens::solver::block_krylov::Triplets;
use scorelens::solver::block_krylov::{block_krylov_svd, KrylovSettings};
use scorelens::solver::operator::{BatchOperator, DeviceBatchOperator};
use scorelens::solver::resident_krylov::block_krylov_svd_resident;
use scorelens::{GpuContext, ScoreField, ScoreModel};

/// An operator that times its products.
struct Timed<'a> {
    inner: &'a mut dyn BatchOperator,
    spent: Duration,
    calls: usize,
}

impl BatchOperator for Timed<'_> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn points(&self) -> usize {
        self.inner.points()
    }
    fn apply(&mut self, active: &[usize], block: &[f64], rows: usize) -> scorelens::Result<Vec<f64>> {
        let start = Instant::now();
        let out = self.inner.apply(active, block, rows);
        self.spent += start.elapsed();
        self.calls += 1;
        out
    }
    fn apply_transpose(&mut self, active: &[usize], block: &[f64], rows: usize) -> scorelens::Result<Vec<f64>> {
        let start = Instant::now();
        let out = self.inner.apply_transpose(active, block, rows);
        self.spent += start.elapsed();
        self.calls += 1;
        out
    }
}

/// A device operator that times its products (waiting for each).
struct TimedDevice<'a, 'f> {
    inner: ResidentJacobians<'f>,
    ctx: &'a GpuContext,
    spent: Duration,
    calls: usize,
}

impl DeviceBatchOperator for TimedDevice<'_, '_> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn points(&self) -> usize {
        self.inner.points()
    }
    fn apply_device(
        &mut self,
        active: &[usize],
        block: &wgpu::Buffer,
        rows: usize,
        transpose: bool,
    ) -> scorelens::Result<wgpu::Buffer> {
        let start = Instant::now();
        let out = self.inner.apply_device(active, block, rows, transpose)?;
        self.ctx.wait()?;
        self.spent += start.elapsed();
        self.calls += 1;
        Ok(out)
    }
}

fn report(found: &[Triplets], k: usize) {
    for (p, f) in found.iter().enumerate() {
        let r = f.residuals.iter().chain(&f.transpose_residuals).cloned().fold(0.0, f64::max);
        println!(
            "  point {p}: converged {} in {} steps, {} products, max residual {r:.2e}, s1 {:.7}, s{k} {:.7}",
            f.converged,
            f.iterations,
            f.products,
            f.singular_values[0],
            f.singular_values[k - 1]
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        return Err("usage: krylov_profile MODEL X.npy T K [POINTS]".into());
    }
    let model = ScoreModel::load(&PathBuf::from(&args[0]))?;
    let x_all = npy::read_f32(&PathBuf::from(&args[1]))?;
    let t: [f32; 1] = [args[2].parse()?];
    let k: usize = args[3].parse()?;
    let points: usize = args.get(4).map_or(Ok(1), |p| p.parse())?;
    let field = ScoreField::new(GpuContext::shared()?, &model)?;
    let d = field.dim();
    let x = x_all.data[..points * d].to_vec();
    let settings = KrylovSettings::new(k, 1e-5, 300, 0);
    let options = JobOptions::default();
    eprintln!("adapter: {}", field.ctx().adapter_description());

    let which = args.get(5).map_or("both", |w| w.as_str());
    let mut calls = 0;
    if which != "resident" {
        let start = Instant::now();
        let mut inner = JacobianBatch::new(&field, &x, &t, settings.block.min(d), options)?;
        let mut op = Timed { inner: &mut inner, spent: Duration::ZERO, calls: 0 };
        let found = block_krylov_svd(&mut op, settings, 0)?;
        let total = start.elapsed();
        println!(
            "host path: total {:.2} s, products {:.2} s in {} calls, the rest (orthogonalisation, Rayleigh–Ritz, residuals) {:.2} s",
            total.as_secs_f64(),
            op.spent.as_secs_f64(),
            op.calls,
            (total - op.spent).as_secs_f64()
        );
        report(&found, k);
        calls = op.calls;
    }
    if which != "host" {
        let start = Instant::now();
        let inner = ResidentJacobians::new(&field, &x, &t, settings.block.min(d))?;
        let mut op = TimedDevice { inner, ctx: field.ctx(), spent: Duration::ZERO, calls: 0 };
        let found = block_krylov_svd_resident(field.ctx(), &mut op, settings, 0)?;
        let total = start.elapsed();
        println!(
            "resident path: total {:.2} s, products {:.2} s in {} calls, the rest (device orthogonalisation, Rayleigh–Ritz, residuals, host SVDs) {:.2} s",
            total.as_secs_f64(),
            op.spent.as_secs_f64(),
            op.calls,
            (total - op.spent).as_secs_f64()
        );
        report(&found, k);
        calls = calls.max(op.calls);
    }

    // One block's round trip alone: upload [points, b, D] f32 and download it again, as each product does.
    let b = settings.block.min(d);
    let block = BlockOperator::new(&field, &x, &t, b)?;
    let values = vec![0.5f32; points * b * d];
    let reps = 50;
    let start = Instant::now();
    for _ in 0..reps {
        let up = block.upload(&values, b)?;
        let _ = block.download(&up)?;
    }
    let trip = start.elapsed().as_secs_f64() / reps as f64;
    println!(
        "one block round trip ({points}×{b}×{d} f32): {:.2} ms; × {} calls = {:.2} s",
        trip * 1e3,
        calls,
        trip * calls as f64
    );
    Ok(())
}
