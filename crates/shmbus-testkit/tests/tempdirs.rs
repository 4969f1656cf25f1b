//! Every temporary path a test makes lives in a `shmbus_testkit::TempDir`.
//!
//! `shmbus_testkit::watchdog` aborts a test that runs too long, and an
//! abort runs no destructor: the watchdog removes every live `TempDir`
//! first, but a path a helper made itself with `std::env::temp_dir()` and
//! cleaned in its own `Drop` stays behind in /tmp (on a board, often a
//! small tmpfs in RAM). A dozen helpers did that until 2026-12-04. This
//! check finds a new one on the host, at once, naming file and line.
//!
//! It reads the integration tests (`crates/*/tests/**`), where the watchdog
//! is armed; the testkit's own `TempDir` is in its `src/`, not read here.

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
        hits.extend(own_temp_paths(&shown, &text));
    }
    assert!(
        hits.is_empty(),
        "make these inside a shmbus_testkit::TempDir (its watchdog removes it before an abort, which runs no Drop):\n{}",
        hits.join("\n")
    );
}
