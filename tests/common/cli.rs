//! Running the `scorelens` binary from tests: exit codes, error lines, scratch folders, and the check that shards
//! and several devices give the whole run's files.

use std::path::{Path, PathBuf};
use std::process::Command;

use scorelens::io::npy;

pub fn scorelens(args: &[&str]) -> (i32, String, String) {
    scorelens_without(args, &[])
}

/// As [`scorelens`], with the environment variables `unset` removed from the child's environment.
pub fn scorelens_without(args: &[&str], unset: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scorelens"));
    command.args(args);
    for name in unset {
        command.env_remove(name);
    }
    let out = command.output().expect("run scorelens");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Runs and expects exit status 2 with an `error:` line naming every one of `needles`.
pub fn expect_user_error(args: &[&str], needles: &[&str]) {
    let (code, _, stderr) = scorelens(args);
    assert_eq!(code, 2, "args {args:?}: expected exit 2, got {code}; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "args {args:?} panicked:\n{stderr}");
    // The last one: Vulkan loaders may print their own `error:` lines first.
    let line = stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .last()
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    for needle in needles {
        assert!(line.contains(needle), "args {args:?}: error line {line:?} does not name {needle:?}");
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch { dir: tempfile::tempdir().unwrap() }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
    pub fn npy(&self, name: &str, shape: &[usize], data: &[f32]) -> PathBuf {
        let p = self.path(name);
        npy::write_f32(&p, shape, data).unwrap();
        p
    }
}

/// A valid model file as (tensors, metadata), to be corrupted one piece at a time.
/// Asserts that every named file of `got` has the bytes of `want`'s (the same .npy: dtype, shape and values).
pub fn assert_same_files(want: &Path, got: &Path, names: &[&str], what: &str) {
    for name in names {
        let (a, b) = (std::fs::read(want.join(name)), std::fs::read(got.join(name)));
        let a = a.unwrap_or_else(|e| panic!("{what}: {name} of the whole run: {e}"));
        let b = b.unwrap_or_else(|e| panic!("{what}: {name}: {e}"));
        assert!(a == b, "{what}: {name} differs from the whole run's");
    }
}

/// Runs `base` with `-o whole`, as `n` shards (merged), and with `--devices 0,0`; all must give `names` exactly.
pub fn sharded_and_two_devices(scratch: &Scratch, tag: &str, base: &[&str], n: usize, names: &[&str]) -> PathBuf {
    let run = |extra: &[&str], out: &Path| {
        let (code, _, stderr) = scorelens(&[base, extra, &["-o", s(out)]].concat());
        assert_eq!(code, 0, "{tag} {extra:?}: {stderr}");
    };
    let whole = scratch.path(&format!("{tag}_whole"));
    run(&[], &whole);
    let parts: Vec<PathBuf> = (0..n).map(|i| scratch.path(&format!("{tag}_{i}"))).collect();
    for (i, part) in parts.iter().enumerate() {
        run(&["--shard", &format!("{i}/{n}")], part);
    }
    let merged = scratch.path(&format!("{tag}_merged"));
    let mut args = vec!["merge", "-o", s(&merged)];
    args.extend(parts.iter().map(|p| s(p)));
    let (code, _, stderr) = scorelens(&args);
    assert_eq!(code, 0, "{tag} merge: {stderr}");
    assert_same_files(&whole, &merged, names, &format!("{tag}: {n} shards merged"));
    let two = scratch.path(&format!("{tag}_two"));
    run(&["--devices", "0,0"], &two);
    assert_same_files(&whole, &two, names, &format!("{tag}: --devices 0,0"));
    whole
}
