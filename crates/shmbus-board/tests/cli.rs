//! `shmbus-board` as a developer types it on the host (it is the emulated
//! board's `/init` too; ci/board/). None of these tests runs a scenario:
//! before their fixes, the first would have run all of them, as root.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn board() -> Command {
    // Behind SHMBUS_TEST_RUNNER (qemu-arm in CI's armv7 suite): a
    // qemu-user process cannot exec a foreign binary by itself.
    let mut c = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus-board"));
    // Whatever happens, no scenario: a name that is none.
    c.env("SHMBUS_BOARD_ONLY", "no-such-scenario");
    c
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `shmbus-board scenarios --help` ran every scenario (the word after
/// `scenarios` was never read): now it prints the help and runs nothing,
/// and any other argument after `scenarios` is a usage error.
#[test]
fn scenarios_help_prints_help_and_runs_nothing() {
    shmbus_testkit::watchdog("board-help", Duration::from_secs(120));
    for flag in ["--help", "-h"] {
        let o = board().args(["scenarios", flag]).output().unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{err}");
        assert!(out.contains("usage: shmbus-board scenarios"), "{out}");
        assert!(out.contains("SHMBUS_BOARD_ONLY"), "{out}");
        assert!(!out.contains("runner pid"), "it ran the runner: {out}");
    }
    let o = board().args(["scenarios", "extra"]).output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("takes no arguments") && err.contains("\"extra\""),
        "{err}"
    );
    assert!(!out.contains("runner pid"), "it ran the runner: {out}");
}

/// A name in SHMBUS_BOARD_ONLY that is no scenario ran nothing and ended
/// "0 scenarios, 0 failed", FAIL, with no word on why: now the run fails
/// at once, naming it and listing the scenarios there are.
#[test]
fn an_unknown_scenario_name_is_named_with_the_list() {
    shmbus_testkit::watchdog("board-unknown", Duration::from_secs(120));
    let o = board().arg("scenarios").output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        out.contains("names no scenario [\"no-such-scenario\"]")
            && out.contains("permission")
            && out.contains("SHMBUS-BOARD: FAIL"),
        "{out}"
    );
}

/// With its output gone (`shmbus-board scenarios | head`, the reader
/// closed), the runner panicked at its next line, in the middle of a
/// scenario and before its cleanup. Now it runs on to its end.
#[test]
fn a_closed_output_is_no_panic() {
    shmbus_testkit::watchdog("board-epipe", Duration::from_secs(120));
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let o = board()
        .arg("scenarios")
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!err.contains("panicked"), "{err}");
    // The run failed (an unknown scenario), and says so by its exit code.
    assert_eq!(o.status.code(), Some(1), "{err}");
}

/// Every `shmbus-board` command line the docs show names options its
/// `--help` names (the other programs have the same test).
#[test]
fn every_board_command_the_docs_show_exists() {
    shmbus_testkit::docs::assert_programs(
        env!("CARGO_MANIFEST_DIR"),
        "shmbus-board",
        &[("shmbus-board", env!("CARGO_BIN_EXE_shmbus-board"), true)],
        &[],
        1,
    );
}

/// A role given an option it does not take (`--bogus`, or a misspelt
/// `--timout-ms`) ignored it and ran with its defaults: `pub` created the
/// topic and published until it was killed. Now it says which option and
/// which there are, exits 1 and creates nothing; a role without `--key`
/// says that `--key` is required.
#[test]
fn a_role_refuses_an_option_it_does_not_take() {
    shmbus_testkit::watchdog("board-role-options", Duration::from_secs(180));
    let key = shmbus_testkit::unique_key("board-role-options");
    let _guard = shmbus_testkit::Guard(key);
    let key_arg = format!("0x{key:08x}");
    for (args, says) in [
        (
            vec!["pub", "--key", &key_arg, "--bogus", "1"],
            "ERROR unknown option --bogus; the roles take --count",
        ),
        (
            vec!["sub", "--key", &key_arg, "--timout-ms", "10"],
            "ERROR unknown option --timout-ms;",
        ),
        (vec!["pub", "--rate", "5"], "ERROR --key is required"),
    ] {
        let mut child = board()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = shmbus_testkit::exit_within(
            &mut child,
            Duration::from_secs(60),
            &format!("shmbus-board {args:?}"),
        );
        let o = child.wait_with_output().unwrap();
        let (out, err) = text(&o);
        assert_eq!(status.code(), Some(1), "{args:?}: {out}{err}");
        assert!(out.contains(says), "{args:?}: {out}{err}");
        assert!(
            shmbus_core::sys::shmget(key, 0, 0).is_err(),
            "{args:?} created the topic at {key_arg}"
        );
    }
}
