//! A progress bar on stderr that appears only for jobs that run longer than about a second, and never when
//! stderr is not a terminal.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use scorelens::scheduler::Progress;

pub struct Bar {
    bar: ProgressBar,
    started: Mutex<Option<Instant>>,
    interactive: bool,
}

const SHOW_AFTER: Duration = Duration::from_secs(1);

impl Bar {
    pub fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} rows [{elapsed_precise} < {eta_precise}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Bar { bar, started: Mutex::new(None), interactive: std::io::stderr().is_terminal() }
    }
}

impl Progress for Bar {
    fn start(&self, what: &str, total_rows: usize) {
        self.bar.set_length(total_rows as u64);
        self.bar.set_position(0);
        self.bar.set_message(what.to_string());
        *self.started.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    fn advance(&self, rows: usize) {
        self.bar.inc(rows as u64);
        let started = *self.started.lock().unwrap_or_else(|p| p.into_inner());
        if self.interactive && self.bar.is_hidden() && started.is_some_and(|s| s.elapsed() > SHOW_AFTER) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    fn finish(&self) {
        if !self.bar.is_hidden() {
            self.bar.finish_and_clear();
        }
    }
}
