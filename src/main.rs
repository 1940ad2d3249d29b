use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    restore_default_sigpipe();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // Status 2: the user's input is at fault (a file, tensor, key, shape or value); 1: the environment.
            ExitCode::from(if e.is_user_error() { 2 } else { 1 })
        }
    }
}

/// Rust ignores SIGPIPE, so printing into a closed pipe (`scorelens info MODEL | head`) would panic; a command-line
/// tool should instead end quietly the way `cat` does.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid action for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
