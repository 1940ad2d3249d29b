//! `scorelens merge -o OUT PART...`: joins shard outputs (files or folders) in shard order, by the library's rules
//! ([`scorelens::results::merge`]: .npy along each array's batch axis from the shards' shard.json, .jsonl lines in
//! order, per-shard summaries kept whole, figures left out).

use std::path::PathBuf;

use clap::Args;
use scorelens::Result;

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
    scorelens::results::merge(&args.parts, &args.output)
}
