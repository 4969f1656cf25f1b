//! Rules the integration tests (`crates/*/tests/**`) keep, checked on the
//! host by reading their source, so a test that breaks one fails at once
//! instead of only in CI's armv7 stage or only after a watchdog abort.

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

/// What `check(file, text)` finds in every integration test file of the
/// workspace but this one (which names the patterns it looks for).
fn offences(check: fn(&str, &str) -> Vec<String>) -> Vec<String> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for c in std::fs::read_dir(&crates).unwrap().flatten() {
        rust_files(&c.path().join("tests"), &mut files);
    }
    let me = Path::new(file!()).file_name().unwrap();
    files.retain(|f| !(f.ends_with(me) && f.to_string_lossy().contains("shmbus-testkit")));
    assert!(files.len() > 30, "only {} test files found", files.len());
    let mut hits = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let shown = f.strip_prefix(&crates).unwrap_or(f).display().to_string();
        hits.extend(check(&shown, &text));
    }
    hits
}

// Every test runs the workspace's programs behind `SHMBUS_TEST_RUNNER`.
//
// CI's armv7 suite runs each test binary under `qemu-arm`, and a qemu-user
// process cannot exec another armv7 program by itself: it must go through
// `shmbus_testkit::command`, which puts the runner in front. Two tests
// written on x86_64 (2026-12-04) spawned `env!("CARGO_BIN_EXE_...")` with
// `Command::new`: they passed every local gate and failed only in CI's
// armv7 stage (exit 127). This check finds that on the host, at once.

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
    let hits = offences(direct_spawns);
    assert!(
        hits.is_empty(),
        "spawn these with shmbus_testkit::command (it puts SHMBUS_TEST_RUNNER, qemu-arm in CI, in front):\n{}",
        hits.join("\n")
    );
}

// Every temporary path a test makes lives in a `shmbus_testkit::TempDir`.
//
// `shmbus_testkit::watchdog` aborts a test that runs too long, and an
// abort runs no destructor: the watchdog removes every live `TempDir`
// first, but a path a helper made itself with `std::env::temp_dir()` and
// cleaned in its own `Drop` stays behind in /tmp (on a board, often a
// small tmpfs in RAM). A dozen helpers did that until 2026-12-04. This
// check finds a new one on the host, at once, naming file and line.
//
// It reads the integration tests (`crates/*/tests/**`), where the watchdog
// is armed; the testkit's own `TempDir` is in its `src/`, not read here.

/// `file:line` of each line of code in `text` that calls `temp_dir()`
/// (any path to it, spaces allowed; comments are not code).
fn own_temp_paths(file: &str, text: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.starts_with("//") {
            continue;
        }
        if compact.contains("temp_dir()") {
            hits.push(format!("{file}:{}: {}", i + 1, line.trim()));
        }
    }
    hits
}

#[test]
fn the_check_finds_a_temp_path_of_a_tests_own() {
    let bad = "let p = std::env::temp_dir().join(\"shmbus-x\");";
    assert_eq!(own_temp_paths("x.rs", bad), ["x.rs:1: ".to_string() + bad]);
    let spaced = "let p = \n  std :: env :: temp_dir ( )\n  .join(\"x\");";
    assert_eq!(
        own_temp_paths("x.rs", spaced),
        ["x.rs:2: std :: env :: temp_dir ( )"]
    );
    let good = "let d = shmbus_testkit::TempDir::new(\"x\");\n// not std::env::temp_dir()";
    assert!(own_temp_paths("x.rs", good).is_empty());
}

#[test]
fn no_test_makes_a_temp_path_outside_a_testkit_temp_dir() {
    let hits = offences(own_temp_paths);
    assert!(
        hits.is_empty(),
        "make these inside a shmbus_testkit::TempDir (its watchdog removes it before an abort, which runs no Drop):\n{}",
        hits.join("\n")
    );
}
