//! The tool runs end to end: `--quick` with tiny iteration counts prints
//! JSON that parses, with every mechanism measured or explained, and leaves
//! no System V object behind. No timing is asserted (numbers are for the
//! bench itself, not for tests).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shmbus_bench::Keys;
use shmbus_bench::handoff::Mech;

fn bench(args: &[&str]) -> Command {
    let mut cmd = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus-bench"));
    cmd.args(args);
    shmbus_testkit::dies_with_parent(&mut cmd);
    cmd
}

/// Run to completion, killing the process if it takes longer than `limit`.
fn run(mut cmd: Command, limit: Duration) -> (u32, std::process::Output) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shmbus-bench");
    let pid = child.id();
    let start = Instant::now();
    let out = std::thread::scope(|s| {
        let h = s.spawn(move || child.wait_with_output().expect("wait"));
        while !h.is_finished() {
            if start.elapsed() > limit {
                // SIGKILL by pid: the child is still ours (not yet reaped).
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                panic!("shmbus-bench still running after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        h.join().expect("join")
    });
    (pid, out)
}

fn leftovers(pid: u32) -> Vec<String> {
    let keys = Keys::for_pid(pid).range();
    let mut left = Vec::new();
    for e in shmbus_core::sysvipc::segments().unwrap_or_default() {
        // A segment already removed (SHM_DEST: the waiter segments are
        // removed at creation) is freed with its last attachment, which may
        // be a child process that is still exiting: not a leak.
        let removed = e.get("perms").unwrap_or(0) & i64::from(shmbus_core::sys::SHM_DEST) != 0;
        if !removed && (keys.contains(&e.key()) || e.get("cpid") == Some(i64::from(pid))) {
            left.push(format!("segment key {:#x} id {}", e.key(), e.id()));
        }
    }
    for e in shmbus_core::sysvipc::semaphores().unwrap_or_default() {
        if keys.contains(&e.key()) {
            left.push(format!("semaphore key {:#x} id {}", e.key(), e.id()));
        }
    }
    left
}

#[test]
fn quick_json_run_measures_everything_and_cleans_up() {
    let args = [
        "--quick", "--json", "--rounds", "1", "--iters", "20", "--fanout", "1,2",
    ];
    let (pid, out) = run(bench(&args), Duration::from_secs(600));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");

    let handoff = v["handoff"].as_array().expect("handoff rows");
    let skipped: Vec<String> = v["skipped"]
        .as_array()
        .expect("skipped list")
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect();
    for m in Mech::ALL {
        let measured = handoff
            .iter()
            .any(|r| r["key"] == m.key() && r["one_way"]["samples"].as_u64() > Some(0));
        let explained = skipped
            .iter()
            .any(|s| s.starts_with(m.label()) || s.starts_with(m.key()));
        assert!(
            measured || explained,
            "{} neither measured nor skipped with a reason",
            m.key()
        );
    }
    // The shmbus mechanisms and the floors must really have run.
    for key in [
        "atomic",
        "seqlock",
        "futex",
        "shmbus_poll",
        "shmbus_poll_raw",
        "shmbus_wait",
        "unix_dgram",
    ] {
        assert!(
            handoff.iter().any(|r| r["key"] == key),
            "{key} missing; skipped: {skipped:?}"
        );
    }
    let micro = v["micro"].as_array().expect("micro rows");
    for key in [
        "bare_acquire_load",
        "poll_nothing_new",
        "seqlock_publish_64",
        "publish_64",
        "publish_1k",
        "read_next_64",
        "read_latest_64",
        "publish_64_notify",
        "clock_read",
        "decode_64",
        "encode_imu",
        "layout_hop_64",
        "raw_hop_64",
        "layout_publish_64",
        "layout_v2_publish_64",
        "seqlock_copy_publish_64",
    ] {
        let row = micro
            .iter()
            .find(|r| r["key"] == key)
            .unwrap_or_else(|| panic!("{key} missing"));
        assert!(
            row["cost"]["median_ns"].as_f64().is_some(),
            "{key} has no median"
        );
    }
    let fanout = v["fanout"].as_array().expect("fan-out points");
    let pinned = |p: &serde_json::Value| p["pinned"].as_bool().expect("pinned flag");
    assert_eq!(
        fanout.iter().filter(|p| !pinned(p)).count(),
        8,
        "1 and 2 subscribers: notify on asleep, on polling, off polling, on control"
    );
    let control = |p: &serde_json::Value| p["control"].as_bool().expect("control flag");
    // The polling ways again, pinned, exactly when the handoff ran pinned
    // (two CPUs available).
    let handoff_pinned = v["handoff"]
        .as_array()
        .expect("handoff rows")
        .iter()
        .any(|h| h["pinned"].as_bool() == Some(true));
    assert_eq!(
        fanout.iter().filter(|p| pinned(p)).count(),
        if handoff_pinned { 6 } else { 0 },
        "1 and 2 subscribers, pinned: on polling, off polling, on control"
    );
    // The control times publishes to a topic nobody reads between those
    // to the subscribers' topic, and each is reported against the other.
    assert_eq!(
        fanout.iter().filter(|p| control(p)).count(),
        if handoff_pinned { 4 } else { 2 }
    );
    for p in fanout {
        let unread = p["unread"]["samples"].as_u64();
        match control(p) {
            true => assert!(unread > Some(0), "a control without unread samples: {p}"),
            false => assert!(p["unread"].is_null(), "{p}"),
        }
    }
    let ratios = v["ratios"].as_array().expect("ratios");
    assert!(
        ratios.iter().any(|r| r["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("publish, 2 subscribers / a topic nobody reads"))),
        "no control ratio in {ratios:?}"
    );
    for p in fanout {
        assert!(
            p["read"]["samples"].as_u64() > Some(0),
            "a subscriber read nothing: {p}"
        );
    }
    assert!(v["ratios"].as_array().is_some_and(|r| !r.is_empty()));
    assert!(v["machine"]["cpu_model"].is_string());
    // One round: every row has its one median per round, and every ratio
    // of two rows (not the fan-out's) its one ratio of that round.
    for row in v["handoff"]
        .as_array()
        .unwrap()
        .iter()
        .chain(v["micro"].as_array().unwrap())
    {
        let r = row["rounds_ns"].as_array().expect("rounds_ns");
        assert!(r.len() == 1 && r[0].as_f64().is_some(), "{row}");
    }
    let per_round = |name: &str| {
        let r = ratios.iter().find(|r| r["name"] == name).expect(name);
        (
            r["rounds"].as_array().map(Vec::len),
            r["rounds_met"].as_u64(),
        )
    };
    let (n, met) = per_round("poll nothing new / bare acquire load");
    assert!(n == Some(1) && met <= Some(1), "{n:?} {met:?}");
    let (n, met) = per_round("blocking wake-up / raw futex floor (unpinned)");
    assert!(n == Some(1) && met <= Some(1), "{n:?} {met:?}");
    let (n, met) = per_round("publish cost 2 / 1 subscribers (on, polling)");
    assert_eq!((n, met), (Some(0), None), "fan-out points have no rounds");

    assert_eq!(
        leftovers(pid),
        Vec::<String>::new(),
        "System V objects left behind"
    );
}

#[test]
fn table_and_plot_are_written_and_bad_arguments_are_refused() {
    let tmp_dir = shmbus_testkit::TempDir::new("bench-smoke");
    let dir = tmp_dir.path().to_path_buf();
    let args = [
        "--quick", "--rounds", "1", "--iters", "10", "--fanout", "1", "--no-pin", "--out",
    ];
    let mut cmd = bench(&args);
    cmd.arg(&dir);
    let (pid, out) = run(cmd, Duration::from_secs(600));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("Handoff, one way"), "{table}");
    assert!(
        table.contains("skipped: pinned variants: --no-pin"),
        "{table}"
    );
    let svg = std::fs::read_to_string(dir.join("bench.svg")).expect("bench.svg");
    assert!(svg.contains("<svg") && svg.contains("shmbus busy-poll"));
    let json = std::fs::read_to_string(dir.join("bench.json")).expect("bench.json");
    assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok());
    assert_eq!(leftovers(pid), Vec::<String>::new());

    let (_, out) = run(bench(&["--rounds", "zero"]), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rounds wants a whole number"));
}

/// Ctrl-C (SIGINT) and `kill` (SIGTERM) in the middle of a measurement:
/// the bench exits 130 and leaves no segment or semaphore set behind (it
/// used to die at once and leak six of each per interrupted run).
#[test]
fn an_interrupted_bench_leaves_nothing_behind() {
    shmbus_testkit::watchdog("interrupted_bench", Duration::from_secs(300));
    use nix::sys::signal::Signal::{SIGINT, SIGTERM};
    // At different points of the run: as its first topic appears, and
    // later, in the middle of measurements with peers starting and ending.
    for (sig, delay_ms) in [(SIGINT, 0), (SIGTERM, 0), (SIGINT, 300), (SIGTERM, 700)] {
        let child = bench(&["--rounds", "50", "--iters", "200000"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shmbus-bench");
        let pid = child.id();
        // Whatever happens, the run's keys are removed at the end.
        let _guards: Vec<shmbus_testkit::Guard> = Keys::for_pid(pid)
            .range()
            .map(shmbus_testkit::Guard)
            .collect();
        // Wait until the run has topics (a measurement is under way).
        let start = Instant::now();
        while leftovers(pid).is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "the bench made no topic"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{sig}: {err}");
        // Children exit by PDEATHSIG; their last detach frees the memory.
        let start = Instant::now();
        loop {
            let left = leftovers(pid);
            if left.is_empty() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "after {sig}: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Every `shmbus-bench` command line in the docs exists with the options
/// it gives (`shmbus_testkit::docs`, as `shmbus`'s in `shmbus-cli`).
/// `--peer ROLE` is the bench re-executing itself for a peer process.
#[test]
fn every_bench_command_the_docs_show_has_the_options_they_give() {
    shmbus_testkit::docs::assert_programs(
        env!("CARGO_MANIFEST_DIR"),
        "shmbus-bench",
        &[("shmbus-bench", env!("CARGO_BIN_EXE_shmbus-bench"), true)],
        &[("", "--peer")],
        1,
    );
}
