//! Joining the outputs of a run's shards (files or folders) in shard order, by the rules each shard's manifest
//! (shard.json) records — the [`super::Layout`] of its result type.
//!
//! Files: .npy arrays joined along their first axis. Folders, file by file (subfolders too), by the names in the
//! first part:
//! - .npy: joined along the first axis, or along the axis the shards' shard.json names for that file (e.g. axis 1
//!   of recorded.npy, [levels, rows, ...]); arrays shard.json lists as `same` (per-run values every shard writes
//!   whole, such as recorded_t.npy) must be identical in every part and are copied once;
//! - .jsonl: the lines, in shard order;
//! - .json (per-shard summaries): not recomputed over all rows; the merged file keeps every shard's summary whole,
//!   `{"merged_from": [...], "parts": [...]}`;
//! - anything else (figures): left out, with a warning; draw them from the merged arrays.
//!
//! When the parts carry shard.json (folder outputs of sharded runs), they must be shards 0/N … N−1/N of one run
//! (the same run signature), given in that order, their rows following on.

use std::path::{Path, PathBuf};

use super::write_json;
use crate::batch::Shard;
use crate::error::{Error, Result};
use crate::io::{npy, write_atomically};

/// The name of the manifest a sharded run writes into its output folder.
pub const MANIFEST: &str = "shard.json";

/// Writes shard.json into a sharded run's output folder: which shard it is, the run's signature, and how
/// [`merge`] joins each array (`axis`: arrays joined along an axis other than the first, by path relative to
/// `dir`; `same`: arrays every shard writes whole and identical, copied once). Nothing for a whole run.
pub fn write_manifest(dir: &Path, shard: &Shard, run: &str, axis: &[(&str, usize)], same: &[&str]) -> Result<()> {
    let Some(spec) = &shard.spec else { return Ok(()) };
    let manifest = serde_json::json!({
        "shard": spec,
        "index": shard.index,
        "count": shard.count,
        "rows": [shard.rows.start, shard.rows.end],
        "total_rows": shard.total,
        "run": run,
        "axis": axis.iter().map(|&(name, a)| (name.to_string(), serde_json::json!(a))).collect::<serde_json::Map<_, _>>(),
        "same": same,
    });
    write_json(&dir.join(MANIFEST), &manifest)
}

/// How the parts' arrays are joined, from their shard.json (the first part's; the others are checked against it).
#[derive(Default)]
struct Rules {
    axis: serde_json::Map<String, serde_json::Value>,
    same: Vec<String>,
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::bad_file(path, format!("not JSON: {e}")))
}

/// Reads and checks the parts' manifests: all or none, shards 0..N of one run in order, rows following on.
fn rules(parts: &[PathBuf]) -> Result<Rules> {
    let manifests: Vec<Option<serde_json::Value>> = parts
        .iter()
        .map(|p| {
            let path = p.join(MANIFEST);
            if path.exists() {
                read_json(&path).map(Some)
            } else {
                Ok(None)
            }
        })
        .collect::<Result<_>>()?;
    if manifests.iter().all(Option::is_none) {
        return Ok(Rules::default());
    }
    let mut next_row = 0;
    let mut total = None;
    for (position, (part, manifest)) in parts.iter().zip(&manifests).enumerate() {
        let Some(m) = manifest else {
            return Err(Error::bad_input(
                part.display().to_string(),
                format!("has no {MANIFEST} while other parts do: not an output of a sharded run"),
            ));
        };
        let what = part.join(MANIFEST).display().to_string();
        let spec = m["shard"].as_str().unwrap_or("?");
        let (index, count) = (m["index"].as_u64(), m["count"].as_u64());
        if index != Some(position as u64) || count != Some(parts.len() as u64) {
            return Err(Error::bad_input(
                what,
                format!(
                    "is shard {spec}, given as part {position} of {}: give every shard 0/N … N−1/N once, in order",
                    parts.len()
                ),
            ));
        }
        let rows = (m["rows"][0].as_u64(), m["rows"][1].as_u64());
        if rows.0 != Some(next_row) || total.is_some_and(|t| Some(t) != m["total_rows"].as_u64()) {
            return Err(Error::bad_input(
                what,
                format!("rows {}: they do not follow on from the previous part's (another run's shard?)", m["rows"]),
            ));
        }
        let first_run = &manifests[0].as_ref().expect("checked first")["run"];
        if &m["run"] != first_run {
            return Err(Error::bad_input(
                what,
                format!("is a shard of another run: `{}`, not `{}` (part 0's)", m["run"], first_run).replace('"', ""),
            ));
        }
        next_row = rows.1.unwrap_or(0);
        total = m["total_rows"].as_u64();
    }
    let first = manifests[0].as_ref().expect("checked above");
    Ok(Rules {
        axis: first["axis"].as_object().cloned().unwrap_or_default(),
        same: first["same"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default(),
    })
}

/// Every file under `dir`, as paths relative to it (sorted; the manifest left out).
fn files_under(dir: &Path, prefix: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = prefix.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            files_under(&path, &name, out)?;
        } else if name != Path::new(MANIFEST) {
            out.push(name);
        }
    }
    Ok(())
}

/// Joins the shards' outputs `parts` (in shard order) into `output`: a .npy file when the parts are files, a
/// folder when they are folders.
pub fn merge(parts: &[PathBuf], output: &Path) -> Result<()> {
    if parts.is_empty() {
        return Err(Error::InvalidArgument("parts: nothing to merge".into()));
    }
    for part in parts {
        if !part.exists() {
            return Err(Error::FileNotFound { path: part.clone() });
        }
    }
    if !parts[0].is_dir() {
        return npy::concatenate(parts, output);
    }
    let rules = rules(parts)?;
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    let mut names = Vec::new();
    files_under(&parts[0], Path::new(""), &mut names)?;
    for name in names {
        let key = name.to_string_lossy().replace('\\', "/");
        let files: Vec<PathBuf> = parts.iter().map(|p| p.join(&name)).collect();
        if let Some(missing) = files.iter().find(|f| !f.exists()) {
            return Err(Error::FileNotFound { path: missing.clone() });
        }
        let target = output.join(&name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        if key.ends_with(".npy") && rules.same.contains(&key) {
            let first = std::fs::read(&files[0]).map_err(|e| Error::io(&files[0], e))?;
            for f in &files[1..] {
                if std::fs::read(f).map_err(|e| Error::io(f, e))? != first {
                    return Err(Error::bad_file(
                        f,
                        format!("differs from {}: shards of different runs?", files[0].display()),
                    ));
                }
            }
            write_atomically(&target, &first)?;
        } else if key.ends_with(".npy") {
            let axis = rules.axis.get(&key).and_then(|a| a.as_u64()).unwrap_or(0) as usize;
            npy::concatenate_along(&files, axis, &target)?;
        } else if key.ends_with(".jsonl") {
            let mut joined = String::new();
            for f in &files {
                joined.push_str(&std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?);
            }
            write_atomically(&target, joined.as_bytes())?;
        } else if key.ends_with(".json") {
            // Each shard's summary is kept whole, in shard order.
            let summaries: Vec<serde_json::Value> = files.iter().map(|f| read_json(f)).collect::<Result<_>>()?;
            let merged = serde_json::json!({
                "merged_from": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
                "note": "per-shard summaries, each over its own rows (not recomputed over all rows)",
                "parts": summaries,
            });
            write_json(&target, &merged)?;
        } else {
            log::warn!("merge: left out {key} (drawn or written per shard; make it again from the merged arrays)");
        }
    }
    Ok(())
}
