use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
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
