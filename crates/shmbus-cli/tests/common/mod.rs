//! The `shmbus` binary as the CLI test files run it (one copy, shared by
//! `mod common;`).

use std::process::{Command, Stdio};

/// The shmbus binary, behind `SHMBUS_TEST_RUNNER` when emulated, with no
/// standard input, killed if the test dies.
pub fn shmbus(args: &[&str]) -> Command {
    let exe = env!("CARGO_BIN_EXE_shmbus");
    let mut cmd = shmbus_testkit::command(exe);
    cmd.args(args).stdin(Stdio::null());
    shmbus_testkit::dies_with_parent(&mut cmd);
    cmd
}

/// What a finished `shmbus` said.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Run `cmd` to its end ([`Run::of`]).
pub fn run_cmd(mut cmd: Command) -> Run {
    Run::of(cmd.output().expect("run shmbus"))
}

impl Run {
    /// What `o` says; a panic in it fails the test whatever the test
    /// expected of it.
    pub fn of(o: std::process::Output) -> Run {
        let r = Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        };
        assert!(
            !r.stderr.contains("panicked"),
            "shmbus panicked: {}",
            r.stderr
        );
        r
    }
}
