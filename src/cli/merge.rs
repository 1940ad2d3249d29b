//! `scorelens merge -o OUT PART...`: joins shard outputs (files or folders) in shard order.

use std::path::PathBuf;

use clap::Args;
use scorelens::io::{npy, write_atomically};
use scorelens::{Error, Result};

#[derive(Args)]
pub struct MergeArgs {
    /// The joined output: a .npy file, or a folder when the parts are folders.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: PathBuf,
    /// The shards' outputs, in shard order (0/n first).
    #[arg(required = true, value_name = "PART")]
    pub parts: Vec<PathBuf>,
}

pub fn run(args: &MergeArgs) -> Result<()> {
    for part in &args.parts {
        if !part.exists() {
            return Err(Error::FileNotFound { path: part.clone() });
        }
    }
    if !args.parts[0].is_dir() {
        return npy::concatenate(&args.parts, &args.output);
    }
    std::fs::create_dir_all(&args.output).map_err(|e| Error::io(&args.output, e))?;
    let first = &args.parts[0];
    let mut names: Vec<String> = std::fs::read_dir(first)
        .map_err(|e| Error::io(first, e))?
        .filter_map(|entry| entry.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    for name in names {
        let files: Vec<PathBuf> = args.parts.iter().map(|p| p.join(&name)).collect();
        if let Some(missing) = files.iter().find(|f| !f.exists()) {
            return Err(Error::FileNotFound { path: missing.clone() });
        }
        let target = args.output.join(&name);
        if name.ends_with(".npy") {
            npy::concatenate(&files, &target)?;
        } else if name.ends_with(".jsonl") {
            let mut joined = String::new();
            for f in &files {
                joined.push_str(&std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?);
            }
            write_atomically(&target, joined.as_bytes())?;
        } else if name.ends_with(".json") {
            // Each shard's summary is kept whole, in shard order.
            let parts: Vec<serde_json::Value> = files
                .iter()
                .map(|f| {
                    let text = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
                    serde_json::from_str(&text).map_err(|e| Error::bad_file(f, format!("not JSON: {e}")))
                })
                .collect::<Result<_>>()?;
            let merged = serde_json::json!({ "merged_from": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(), "parts": parts });
            let text = serde_json::to_string_pretty(&merged).map_err(|e| Error::bad_input("merge", e.to_string()))?;
            write_atomically(&target, text.as_bytes())?;
        }
    }
    Ok(())
}
