//! `shmbus bridge` (cargo feature `bridge`): the same command as the
//! standalone `shmbus-bridge`, reached through the tool.
#![cfg(feature = "bridge")]

use std::process::Stdio;

/// The demo config, named through `$SHMBUS_CONFIG`: without it the search
/// would take `/etc/shmbus/shmbus.toml` on a machine with the package
/// installed, and the test would check that machine's config. (The search
/// order itself, the built-in fallback included, is tested in
/// `shmbus-config` against a system path of its own.)
const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/demo.toml");

fn shmbus(args: &[&str]) -> (i32, String, String) {
    let o = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus"))
        .args(args)
        .env("SHMBUS_CONFIG", DEMO)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn bridge_is_a_command_with_examples() {
    let (code, out, _) = shmbus(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("bridge"), "{out}");
    let (code, out, _) = shmbus(&["bridge", "--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Examples:") && out.contains("shmbus bridge 127.0.0.1:1883"),
        "{out}"
    );
}

#[test]
fn bridge_check_reads_the_config_of_the_search_order() {
    let (code, out, err) = shmbus(&["bridge", "127.0.0.1:1883", "--board-id", "lab", "--check"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("config: {DEMO} ($SHMBUS_CONFIG)")),
        "{out}"
    );
    for t in ["imu", "accel", "system", "thermal", "power", "net"] {
        assert!(out.contains(&format!("-> shmbus/lab/{t} ")), "{t}: {out}");
    }
    let (code, _, err) = shmbus(&["bridge", "--board-id", "lab"]);
    assert_eq!(code, 2);
    assert!(err.contains("no broker"), "{err}");
}
