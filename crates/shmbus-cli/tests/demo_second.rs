//! `shmbus demo`, second adversarial pass: what reaches the sensors it
//! starts through `shmbus __sensor`.
#![cfg(feature = "demo")]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::process::{Command, Stdio};

use shmbus_testkit::{Guard, unique_key};

/// The shmbus binary, behind `SHMBUS_TEST_RUNNER` when emulated.
fn shmbus() -> Command {
    let mut cmd = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus"));
    cmd.stdin(Stdio::null());
    shmbus_testkit::dies_with_parent(&mut cmd);
    cmd
}

struct TempFile(std::path::PathBuf);
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `shmbus demo --config caf\xe9.toml`: the demo read the file, then
/// started every sensor with a lossy copy of its path (another, missing
/// file), and reported one failure per sensor, exit 1. `shmbus __sensor`
/// takes UTF-8 arguments only, so the demo now refuses such a path in one
/// line, before it starts anything (exit 2).
#[test]
fn a_config_path_that_is_not_utf8_is_one_clear_error() {
    let key = unique_key("demo-second-latin1");
    let _guard = Guard(key);
    let mut name = format!("shmbus-demo-second-caf-{}-", std::process::id()).into_bytes();
    name.extend_from_slice(b"\xe9.toml");
    let path = std::env::temp_dir().join(OsString::from_vec(name));
    std::fs::write(
        &path,
        format!(
            "bus = \"test\"\n[[topic]]\nname = \"imu\"\nkey = 0x{:08x}\npublisher = \"shmbus-sensor-imu\"\n",
            key as u32
        ),
    )
    .unwrap();
    let _file = TempFile(path.clone());
    let out = shmbus()
        .arg("demo")
        .arg("--config")
        .arg(&path)
        .args(["--duration", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        out.stdout.is_empty(),
        "nothing started, nothing to summarize"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("\\xE9.toml\" is not UTF-8"), "{err}");
    assert!(err.contains("rename the file"), "{err}");
}
