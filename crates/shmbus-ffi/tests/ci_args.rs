//! The CI scripts that install or build things refuse a bad argument before
//! they make anything: no directory is left behind by a call that failed,
//! and no stage is skipped silently by a misspelt one.
//! (Only the refusals run here: a good argument builds for minutes.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use shmbus_testkit::{TempDir, exit_within};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Run `bash ci/SCRIPT ARGS…` from the repository, at most two minutes,
/// with a `cargo` first in PATH that builds nothing: it leaves `cargo-ran`
/// in `dir` and fails. A refused call must never get that far.
fn script(dir: &TempDir, name: &str, args: &[&str]) -> Output {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("make the fake cargo's directory");
    let fake = bin.join("cargo");
    let marker = dir.join("cargo-ran");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\ntouch '{}'\nexit 97\n", marker.display()),
    )
    .expect("write the fake cargo");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the fake cargo");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .arg(repo().join("ci").join(name))
        .args(args)
        .current_dir(repo())
        .env("PATH", path)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run bash");
    exit_within(&mut child, Duration::from_secs(120), name);
    let out = child.wait_with_output().expect("script output");
    assert!(
        !marker.exists(),
        "ci/{name} {args:?} started cargo before refusing: {}",
        stderr(&out)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn ffi_install_refuses_an_unknown_target_before_making_the_prefix() {
    let dir = TempDir::new("ffi-install-args");
    let prefix = dir.join("prefix");
    let p = prefix.to_str().expect("utf-8 temp path");
    let out = script(&dir, "ffi-install.sh", &[p, "bogus"]);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown target 'bogus' (host or armv7)"),
        "stderr: {}",
        stderr(&out)
    );
    assert!(!prefix.exists(), "a refused call made {}", prefix.display());

    let out = script(&dir, "ffi-install.sh", &[p, "host", "extra"]);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("too many arguments"),
        "stderr: {}",
        stderr(&out)
    );
    assert!(!prefix.exists(), "a refused call made {}", prefix.display());
}

#[test]
fn ffi_test_refuses_an_unknown_stage_instead_of_passing_with_nothing_run() {
    // It re-executes itself in a private IPC namespace (unshare) first:
    // the refusal comes either way, before any stage.
    let dir = TempDir::new("ffi-test-args");
    let out = script(&dir, "ffi-test.sh", &["hots"]);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown stage 'hots' (host, armv7 or all)"),
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn deb_refuses_an_unknown_architecture_before_making_the_output_directory() {
    let dir = TempDir::new("deb-args");
    let outdir = dir.join("out");
    let o = outdir.to_str().expect("utf-8 temp path");
    for arches in ["amd64,bogus", ""] {
        let out = script(&dir, "deb.sh", &["--arch", arches, "--out", o]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "--arch '{arches}': stderr: {}",
            stderr(&out)
        );
        assert!(
            !outdir.exists(),
            "--arch '{arches}': a refused call made {}",
            outdir.display()
        );
    }
    let out = script(&dir, "deb.sh", &["--arch", "amd64,bogus", "--out", o]);
    assert!(
        stderr(&out).contains("unknown architecture 'bogus'"),
        "stderr: {}",
        stderr(&out)
    );
}
