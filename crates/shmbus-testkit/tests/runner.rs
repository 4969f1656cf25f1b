//! Every test runs the workspace's programs behind `SHMBUS_TEST_RUNNER`.
//!
//! CI's armv7 suite runs each test binary under `qemu-arm`, and a qemu-user
//! process cannot exec another armv7 program by itself: it must go through
//! `shmbus_testkit::command`, which puts the runner in front. Two tests
//! written on x86_64 (2026-12-04) spawned `env!("CARGO_BIN_EXE_...")` with
//! `Command::new`: they passed every local gate and failed only in CI's
//! armv7 stage (exit 127). This check finds that on the host, at once.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `file:line` of each place in `text` that spawns a workspace program
/// with `Command::new` (spaces and a `std::process::` path allowed).
fn direct_spawns(file: &str, text: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.contains("Command::new(env!(\"CARGO_BIN_EXE_") {
            hits.push(format!("{file}:{}: {}", i + 1, line.trim()));
        }
    }
    hits
}

#[test]
fn the_check_finds_a_direct_spawn() {
    let bad = "let c = std::process::Command::new( env!(\"CARGO_BIN_EXE_shmbus\") );";
    assert_eq!(direct_spawns("x.rs", bad).len(), 1);
    let good = "let c = shmbus_testkit::command(env!(\"CARGO_BIN_EXE_shmbus\"));";
    assert!(direct_spawns("x.rs", good).is_empty());
}

#[test]
fn no_test_spawns_a_workspace_program_past_the_runner() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for c in std::fs::read_dir(&crates).unwrap().flatten() {
        rust_files(&c.path().join("tests"), &mut files);
    }
    // This file names the pattern it looks for.
    let me = Path::new(file!()).file_name().unwrap();
    files.retain(|f| !(f.ends_with(me) && f.to_string_lossy().contains("shmbus-testkit")));
    assert!(files.len() > 30, "only {} test files found", files.len());
    let mut hits = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let shown = f.strip_prefix(&crates).unwrap_or(f).display().to_string();
        hits.extend(direct_spawns(&shown, &text));
    }
    assert!(
        hits.is_empty(),
        "spawn these with shmbus_testkit::command (it puts SHMBUS_TEST_RUNNER, qemu-arm in CI, in front):\n{}",
        hits.join("\n")
    );
}
