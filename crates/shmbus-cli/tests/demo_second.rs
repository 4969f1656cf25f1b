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

/// `shmbus demo --config caf\xe9.toml`: the demo read the file, then
/// started every sensor with a lossy copy of its path (another, missing
/// file), and reported one failure per sensor, exit 1; then it refused such
/// a path, as `shmbus __sensor` took UTF-8 arguments only. `__sensor` now
/// takes its arguments as the system gives them: the demo runs, and its
/// sensor publishes on the topic the file configures.
#[test]
fn a_config_path_that_is_not_utf8_reaches_the_demos_sensors() {
    let key = unique_key("demo-second-latin1");
    let _guard = Guard(key);
    let dir = shmbus_testkit::TempDir::new("demo-second");
    let path = dir
        .path()
        .join(OsString::from_vec(b"caf\xe9.toml".to_vec()));
    std::fs::write(
        &path,
        format!(
            "bus = \"test\"\n[[topic]]\nname = \"imu\"\nkey = 0x{:08x}\npublisher = \"shmbus-sensor-imu\"\n",
            key as u32
        ),
    )
    .unwrap();
    let out = shmbus()
        .arg("demo")
        .arg("--config")
        .arg(&path)
        .args(["--duration", "2"])
        .output()
        .unwrap();
    let (stdout, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{err}");
    assert!(!err.contains("not UTF-8"), "{err}");
    // The summary's row of the configured topic, at the configured key,
    // with frames received.
    let row = stdout
        .lines()
        .find(|l| {
            l.trim_start().starts_with("imu ") && l.contains(&format!("0x{:08x}", key as u32))
        })
        .unwrap_or_else(|| panic!("no imu row at the configured key:\n{stdout}\n{err}"));
    let frames: u64 = row
        .split_whitespace()
        .zip(row.split_whitespace().skip(1))
        .find(|(_, w)| *w == "frames")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no frame count in {row}"));
    assert!(frames > 0, "{row}");
}
