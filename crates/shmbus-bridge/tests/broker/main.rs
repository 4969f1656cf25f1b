//! The bridge against a real Mosquitto broker, with boards as private IPC
//! namespaces on this machine (run by ci/bridge-test.sh, as root, with
//! `--features broker-tests`). Everything stays on 127.0.0.1.
//!
//! `SHMBUS_BRIDGE_UNDER_TEST` replaces the bridge binary with another
//! command line (ci/bridge-test.sh runs the two-board and last-will tests
//! again with the armv7 bridge under qemu-arm).

#[path = "../harness/mod.rs"]
mod harness;

mod faults;
mod inbound;
mod liveness;
mod security;
mod two_boards;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use harness::{Dir, retained};

/// The key of the test topic on every board (each board is its own IPC
/// namespace, so boards never share it; 0x7b: the bridge tests' range).
pub const KEY: &str = "0x7b000001";

/// The probe's frame type, as the bridge of board A describes it.
pub const TICK_TEXT: &str =
    "struct Tick {\n    seq: u32,\n    t_ns: u64,\n    value: f32,\n    epoch: u16,\n}";

/// Board A: sends topic `tick` (QoS 1), plus `bridge` lines.
pub fn config_a(dir: &Dir, name: &str, bridge: &str) -> PathBuf {
    dir.write(
        name,
        &format!(
            "[[topic]]\nname = \"tick\"\nkey = {KEY}\nslots = 1024\nmax_age_ms = 500\n\n[bridge]\nboard_id = \"a\"\nstats_interval_s = 1\nreconnect_min_ms = 100\nreconnect_max_ms = 1000\n{bridge}\n[[bridge.out]]\ntopic = \"tick\"\nqos = 1\n"
        ),
        0o644,
    )
}

/// Board B: takes `shmbus/a/tick` into its own topic `tick`, declared with
/// `schema` (what board A's `$schematext` says).
pub fn config_b(dir: &Dir, name: &str, schema: &str, bridge: &str) -> PathBuf {
    dir.write(
        name,
        &format!(
            "[[topic]]\nname = \"tick\"\nkey = {KEY}\nslots = 1024\n\n[bridge]\nboard_id = \"b\"\nstats_interval_s = 1\nreconnect_min_ms = 100\nreconnect_max_ms = 1000\n{bridge}\n[[bridge.in]]\nfrom = \"shmbus/a/tick\"\ntopic = \"tick\"\nformat = \"envelope\"\nqos = 1\nschema = '''\n{schema}'''\n"
        ),
        0o644,
    )
}

/// Wait (bounded) for a retained message of `topic` that satisfies `ok`.
pub fn wait_retained(
    port: u16,
    topic: &str,
    ok: impl Fn(&str) -> bool,
    timeout: Duration,
) -> String {
    let end = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < end {
        last = retained(port, topic);
        if let Some(v) = &last {
            if ok(v) {
                return v.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no fitting retained message on {topic} within {timeout:?}; last: {last:?}");
}

/// A number from the environment (test sizes), or `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
