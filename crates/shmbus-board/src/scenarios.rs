//! The bus scenarios on the board: locked topics as an unprivileged user,
//! publishers killed and replaced, read permissions, and CPU use on one core.
//!
//! Each scenario returns a one-line summary with its figures, or the reason
//! it failed. They run on the emulated i.MX6ULL as root (PID 1) and drop to
//! the `sensor` (1000) and `intruder` (1001) users for the bus processes;
//! they also run on a developer machine as root: `shmbus-board scenarios`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use shmbus_core::{PublisherStatus, Topic};
use shmbus_sub::{Subscriber, WaitError};

use crate::cpu;
use crate::frame::Beat;
use crate::spawn::{self, BoardTopic, Proc, User, fields, num};
use shmbus_testkit::voluntary_switches;

/// A named scenario: returns a one-line result on success, the reason on failure.
pub type Scenario = (&'static str, fn() -> Result<String, String>);

/// The scenarios of this module, in order.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        ("locked-as-sensor", locked_as_sensor),
        ("kill-and-replace", kill_and_replace),
        ("permission", permission),
        ("one-core-cpu", one_core_cpu),
        ("stopped-topic-sleeps", stopped_topic_sleeps),
    ]
}

/// `RLIMIT_MEMLOCK` given to the bus processes (inherited from the runner):
/// 64 KiB, the order of what a distribution gives a service user. Each
/// board topic needs one or two pages.
pub const MEMLOCK_LIMIT: u64 = 64 * 1024;

/// A watchdog on a role's report lines: only a hang exceeds it (the board
/// is emulated, on a machine other jobs share).
const SPAWN: Duration = Duration::from_secs(60);

fn start(role: &str, args: Vec<String>, user: User) -> Result<Proc, String> {
    spawn::start(role, &args, Some(user))
}

fn result(p: &mut Proc, limit: Duration) -> Result<HashMap<String, String>, String> {
    let line = p.expect("RESULT", limit)?;
    Ok(fields(&line))
}

/// A subscriber that saw a torn, corrupt or reordered frame, or did not see
/// the final frame, fails the scenario.
fn check_clean(who: &str, f: &HashMap<String, String>) -> Result<(), String> {
    for bad in ["torn", "corrupt", "out_of_order"] {
        if num(f, bad)? != 0 {
            return Err(format!("{who}: {bad}={} ({f:?})", f[bad]));
        }
    }
    if f.get("done").map(String::as_str) != Some("true") {
        return Err(format!("{who}: never saw the final frame ({f:?})"));
    }
    Ok(())
}

/// Publisher and three subscribers as `sensor` within RLIMIT_MEMLOCK with
/// lock policy "required"; IPC_STAT shows SHM_LOCKED; every frame arrives.
/// Then the same publisher with RLIMIT_MEMLOCK 0 is refused with
/// LockDenied.
fn locked_as_sensor() -> Result<String, String> {
    let t = BoardTopic::new("locked");
    let sensor = spawn::sensor();
    let n = 200u64;
    let mut p = start(
        "pub",
        t.args(&[
            ("rate", "100".into()),
            ("count", n.to_string()),
            ("wait-subs", "3".into()),
        ]),
        sensor,
    )?;
    let open = fields(&p.expect("OPEN", SPAWN)?);
    let mut subs = Vec::new();
    for _ in 0..3 {
        subs.push(start("sub", t.args(&[("how", "next".into())]), sensor)?);
    }
    for s in &mut subs {
        s.expect("READY", SPAWN)?;
    }
    let st = t.stat()?;
    if !st.locked() {
        return Err(format!(
            "IPC_STAT mode {:o}: SHM_LOCKED not set (OPEN {open:?})",
            st.mode
        ));
    }
    if (st.uid, st.cuid, st.perms(), st.gid) != (sensor.uid, sensor.uid, 0o640, sensor.gid) {
        return Err(format!(
            "IPC_STAT owner uid {} cuid {} gid {} mode {:o}; expected uid {} mode 640 group {}",
            st.uid,
            st.cuid,
            st.gid,
            st.perms(),
            sensor.uid,
            sensor.gid
        ));
    }
    let nattch = st.nattch;
    let mut missed = 0;
    for (i, s) in subs.iter_mut().enumerate() {
        let f = result(s, SPAWN)?;
        check_clean(&format!("subscriber {i}"), &f)?;
        // Frames read plus frames reported missed add up to frames published.
        if num(&f, "frames")? + num(&f, "missed")? != n {
            return Err(format!(
                "subscriber {i}: frames + missed != {n} published: {f:?}"
            ));
        }
        missed += num(&f, "missed")?;
    }
    p.expect("DONE", SPAWN)?;
    // Same user, RLIMIT_MEMLOCK lowered to 0 in the child: the kernel refuses SHM_LOCK.
    let t2 = BoardTopic::new("nolock");
    let mut q = start(
        "pub",
        t2.args(&[("memlock", "0".into()), ("count", "1".into())]),
        sensor,
    )?;
    let err = q.expect("ERROR", SPAWN)?;
    if !err.contains("RLIMIT_MEMLOCK") {
        return Err(format!(
            "publisher with RLIMIT_MEMLOCK 0: expected LockDenied, got '{err}'"
        ));
    }
    Ok(format!(
        "uid {} mode {:o} SHM_LOCKED size {} B nattch {nattch}, RLIMIT_MEMLOCK {} KiB; 3 subscribers x {n} frames at 100 Hz ({missed} missed), 0 torn; memlock 0 refused: {}",
        st.uid,
        st.perms(),
        st.size,
        MEMLOCK_LIMIT / 1024,
        short(err.trim_start_matches("open: "))
    ))
}

/// A publisher killed with SIGKILL mid-stream (unthrottled, so mid-write is
/// likely) and replaced, three times; subscribers carry on without a torn
/// frame and see every publisher's frames.
fn kill_and_replace() -> Result<String, String> {
    let t = BoardTopic::new("kill");
    let sensor = spawn::sensor();
    let kills = 3u32;
    let mut p = start(
        "pub",
        t.args(&[("epoch", "1".into()), ("wait-subs", "3".into())]),
        sensor,
    )?;
    p.expect("OPEN", SPAWN)?;
    let mut subs = Vec::new();
    for how in ["next", "next", "latest"] {
        subs.push(start(
            "sub",
            t.args(&[("how", how.into()), ("timeout-ms", "60000".into())]),
            sensor,
        )?);
    }
    for s in &mut subs {
        s.expect("READY", SPAWN)?;
    }
    p.expect("START", SPAWN)?;
    // Each publisher is killed once both in-order subscribers have read a
    // frame of it (their `EPOCH n` line), not at a fixed time: a subscriber
    // that did not run for one publisher's whole life (600 ms after its
    // first frame, before this pass) rightly saw one epoch less. The
    // publisher runs unthrottled until then, and 600 ms more (as before:
    // many laps of the ring), so the kill is mid-stream.
    let mut repaired = Vec::new();
    for epoch in 2..=kills + 1 {
        for (i, s) in subs.iter_mut().take(2).enumerate() {
            let seen = s
                .expect("EPOCH", Duration::from_secs(60))
                .map_err(|e| format!("in-order subscriber {i}: {e}"))?;
            if seen != (epoch - 1).to_string() {
                return Err(format!(
                    "in-order subscriber {i} read a frame of publisher {seen} first, expected {}",
                    epoch - 1
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(600));
        p.kill();
        let mut extra = vec![("epoch", epoch.to_string())];
        if epoch == kills + 1 {
            extra.push(("count", "200".into()));
            extra.push(("rate", "1000".into()));
        }
        p = start("pub", t.args(&extra), sensor)?;
        let open = fields(&p.expect("OPEN", SPAWN)?);
        if open.get("created").map(String::as_str) != Some("false") {
            return Err(format!(
                "replacement publisher {epoch} did not reopen the segment: {open:?}"
            ));
        }
        repaired.push(num(&open, "repaired")?);
    }
    p.expect("DONE", SPAWN)?;
    let mut figures = Vec::new();
    for (i, s) in subs.iter_mut().enumerate() {
        let f = result(s, SPAWN)?;
        check_clean(&format!("subscriber {i}"), &f)?;
        let epochs = f.get("epochs").cloned().unwrap_or_default();
        if i < 2 && epochs.split(',').count() != (kills + 1) as usize {
            return Err(format!(
                "in-order subscriber {i} saw epochs {epochs}, expected 1..{}",
                kills + 1
            ));
        }
        figures.push(format!(
            "{}+{}missed/{}died/{}gone",
            num(&f, "frames")?,
            num(&f, "missed")?,
            num(&f, "died")?,
            num(&f, "gone")?
        ));
    }
    let repaired: Vec<String> = repaired.iter().map(u64::to_string).collect();
    Ok(format!(
        "{kills} SIGKILLs mid-stream, slots repaired by the replacements: [{}]; subscribers (frames+missed/died reads/gone): {}; 0 torn",
        repaired.join(","),
        figures.join(" ")
    ))
}

/// Topic mode 0640, group sensor: `intruder` (1001, not in the group) is
/// refused with PermissionDenied as subscriber and as publisher; a process
/// in group sensor reads it.
fn permission() -> Result<String, String> {
    let t = BoardTopic::new("perm");
    let sensor = spawn::sensor();
    let intruder = spawn::intruder();
    let mut p = start(
        "pub",
        t.args(&[("rate", "100".into()), ("count", "100000".into())]),
        sensor,
    )?;
    p.expect("START", SPAWN)?;
    let mut i = start("intrude", t.args(&[]), intruder)?;
    let sub = i.expect("SUB", SPAWN)?;
    let publ = i.expect("PUB", SPAWN)?;
    if !sub.starts_with("refused") {
        return Err(format!(
            "intruder as subscriber: expected PermissionDenied, got '{sub}'"
        ));
    }
    if publ.starts_with("attached") {
        return Err("intruder opened the topic as a publisher".into());
    }
    // Same stranger uid, but with group sensor: the mode's group bits let it read.
    let member = User {
        uid: intruder.uid,
        gid: sensor.gid,
    };
    let mut m = start("intrude", t.args(&[]), member)?;
    let msub = m.expect("SUB", SPAWN)?;
    if msub != "attached" {
        return Err(format!(
            "group member as subscriber: expected to attach, got '{msub}'"
        ));
    }
    let mpub = m.expect("PUB", SPAWN)?;
    if mpub.starts_with("attached") {
        return Err("a group member (read-only) opened the topic as a publisher".into());
    }
    Ok(format!(
        "intruder sub: {}; intruder pub: {}; group member: attached read-only",
        short(&sub),
        short(&publ)
    ))
}

fn short(s: &str) -> String {
    s.split(';').next().unwrap_or(s).to_string()
}

/// One phase of the one-core comparison.
struct Phase {
    pub_ms: u64,
    subs_ms: Vec<u64>,
    window_ms: u64,
    late: u64,
    results: Vec<HashMap<String, String>>,
}

/// Publisher at `rate` Hz for `secs`, with subscribers `hows`; CPU of every
/// process over the same window (from `/proc/<pid>/stat`).
fn phase(t: &BoardTopic, rate: u32, secs: f64, hows: &[&str]) -> Result<Phase, String> {
    let sensor = spawn::sensor();
    let count = (f64::from(rate) * (secs + 1.0)) as u32;
    // A ring that holds every frame of the phase: the wait_next subscribers
    // must read all of them, and with 16 slots (320 ms at 50 Hz) one that
    // did not run for 320 ms missed some (the whole board shares one core).
    let slots = count.next_power_of_two().max(16);
    let mut p = start(
        "pub",
        t.args(&[
            ("rate", rate.to_string()),
            ("count", count.to_string()),
            ("wait-subs", hows.len().to_string()),
            ("epoch", "1".into()),
            ("slots", slots.to_string()),
        ]),
        sensor,
    )?;
    p.expect("OPEN", SPAWN)?;
    let mut subs = Vec::new();
    for how in hows {
        subs.push(start(
            "sub",
            t.args(&[
                ("how", how.to_string()),
                ("timeout-ms", "60000".into()),
                ("slots", slots.to_string()),
            ]),
            sensor,
        )?);
    }
    for s in &mut subs {
        s.expect("READY", SPAWN)?;
    }
    p.expect("START", SPAWN)?;
    std::thread::sleep(Duration::from_millis(300));
    let pids: Vec<u32> = std::iter::once(p.pid())
        .chain(subs.iter().map(Proc::pid))
        .collect();
    let before: Vec<u64> = pids
        .iter()
        .map(|&pid| cpu::cpu_ms(pid))
        .collect::<Result<_, _>>()?;
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs - 0.3));
    let after: Vec<u64> = pids
        .iter()
        .map(|&pid| cpu::cpu_ms(pid))
        .collect::<Result<_, _>>()?;
    let window_ms = w0.elapsed().as_millis() as u64;
    let used: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let done = fields(&p.expect("DONE", SPAWN)?);
    let mut results = Vec::new();
    for s in &mut subs {
        results.push(result(s, SPAWN)?);
    }
    p.wait(SPAWN)?;
    Ok(Phase {
        pub_ms: used[0],
        subs_ms: used[1..].to_vec(),
        window_ms,
        late: num(&done, "late")?,
        results,
    })
}

/// On one core: a publisher at a fixed rate with four subscribers blocked
/// in wait_next/wait_latest, against the same publisher alone and with one
/// busy-polling subscriber (the baseline from this very boot). Every figure
/// is CPU time over the same window, from `/proc/<pid>/stat`. Under emulation
/// a wake-up costs far more than on silicon, so the rate is modest (50 Hz),
/// and an idle phase (5 Hz) shows what waiting costs when little happens.
fn one_core_cpu() -> Result<String, String> {
    let rate = 50u32;
    let secs = 3.0;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let waiters4 = ["next", "next", "latest", "latest"];
    let run = |name: &str, rate: u32, hows: &[&str]| {
        let t = BoardTopic::new(name);
        phase(&t, rate, secs, hows)
    };
    let alone = run("cpu-alone", rate, &[])?;
    let wait = run("cpu-wait", rate, &waiters4)?;
    let busy = run("cpu-busy", rate, &["busy"])?;
    let idle = run("cpu-idle", 5, &waiters4)?;
    let frames = (f64::from(rate) * (secs + 1.0)) as u64;
    for (i, f) in wait.results.iter().enumerate() {
        check_clean(&format!("waiting subscriber {i}"), f)?;
        if i < 2 && (num(f, "frames")? != frames || num(f, "missed")? != 0) {
            return Err(format!(
                "wait_next subscriber {i}: expected all {frames} frames, 0 missed: {f:?}"
            ));
        }
    }
    for (i, f) in idle.results.iter().enumerate() {
        check_clean(&format!("idle waiting subscriber {i}"), f)?;
    }
    check_clean("busy subscriber", &busy.results[0])?;
    let waiters: u64 = wait.subs_ms.iter().sum();
    let idlers: u64 = idle.subs_ms.iter().sum();
    let spinner = busy.subs_ms[0];
    console!(
        "SHMBUS-BOARD: one-core-cpu: {cores} core(s); CPU ms over a {} ms window; publisher at {rate} Hz: alone {} (late frames {}), with 4 waiting subscribers {} (late {}) + waiters {:?}, with 1 busy-polling subscriber {} (late {}) + spinner {}; publisher at 5 Hz with 4 waiters: {} + waiters {:?}",
        wait.window_ms,
        alone.pub_ms,
        alone.late,
        wait.pub_ms,
        wait.late,
        wait.subs_ms,
        busy.pub_ms,
        busy.late,
        spinner,
        idle.pub_ms,
        idle.subs_ms
    );
    // Against the spinner of this boot, not a fixed threshold: four waiters
    // together must use well under half of what one spinner burns, and
    // almost nothing when frames are rare.
    if waiters * 2 >= spinner {
        return Err(format!(
            "4 waiting subscribers used {waiters} ms CPU, not well below one busy-polling subscriber's {spinner} ms"
        ));
    }
    if idlers * 10 >= spinner {
        return Err(format!(
            "4 subscribers waiting on a 5 Hz topic used {idlers} ms CPU, not near zero next to a spinner's {spinner} ms"
        ));
    }
    Ok(format!(
        "{rate} Hz publisher CPU alone {} ms, with 4 waiters {} ms, with 1 spinner {} ms; 4 waiters {waiters} ms ({:.2} ms per frame each), at 5 Hz {idlers} ms, vs 1 spinner {spinner} ms in {} ms; all {frames} frames delivered in order",
        alone.pub_ms,
        wait.pub_ms,
        busy.pub_ms,
        waiters as f64 / 4.0 / wait.window_ms as f64 * 1000.0 / f64::from(rate),
        wait.window_ms
    ))
}

/// The most sleeps a second of waiting on a stopped topic may take: whole
/// liveness slices (100 ms) make about 10, the 10 ms polls of a reader that
/// cannot register made about 100.
const STOPPED_SLEEPS_PER_S: u64 = 30;

/// A reader of a topic whose publisher exited sleeps on the futex in whole
/// liveness slices, on the board's kernel and one core: until f6904f1 a
/// reader that had not attached the publisher's waiter segment before the
/// exit polled every 10 ms, with three System V calls each time, for as long
/// as the topic stayed stopped. Then a new publisher ends the wait.
fn stopped_topic_sleeps() -> Result<String, String> {
    let t = BoardTopic::new("stopped");
    let sensor = spawn::sensor();
    let mut first = start("pub", t.args(&[("count", "5".into())]), sensor)?;
    first.expect("DONE", SPAWN)?;
    let code = first.wait(SPAWN)?;
    if code != 0 {
        return Err(format!("the first publisher exited with {code}"));
    }
    let topic = Topic::new(&t.name).key(t.key);
    let mut sub = Subscriber::<Beat>::attach(&topic).map_err(|e| format!("attach: {e}"))?;
    let last = sub
        .latest()
        .map_err(|e| format!("latest: {e}"))?
        .ok_or("no frame in the topic after its publisher's 5")?;
    let window = Duration::from_secs(2);
    let before = voluntary_switches()?;
    let r = sub.wait_for_publisher(window);
    let sleeps = voluntary_switches()? - before;
    if r != Err(WaitError::Timeout) {
        return Err(format!(
            "waiting {window:?} for the publisher of a stopped topic: {r:?}, expected a timeout"
        ));
    }
    let most = STOPPED_SLEEPS_PER_S * window.as_secs();
    if sleeps > most {
        return Err(format!(
            "{sleeps} sleeps in {window:?} of waiting for a stopped topic's publisher (at most {most}): it polls"
        ));
    }
    // A new publisher, as the same user: the wait ends.
    let mut second = start("pub", t.args(&[("rate", "10".into())]), sensor)?;
    let t0 = Instant::now();
    let r = sub.wait_for_publisher(SPAWN);
    let took = t0.elapsed();
    second.kill();
    match r {
        Ok(PublisherStatus::Alive { pid }) if pid as u32 == second.pid() => {}
        other => {
            return Err(format!(
                "waiting for a new publisher (pid {}): {other:?}",
                second.pid()
            ));
        }
    }
    Ok(format!(
        "{sleeps} sleeps in {window:?} of wait_for_publisher after the publisher exited (at most {most}; 10 ms polls made about 200), last frame seq {}; a new publisher ended the wait after {:.0} ms",
        last.value.seq,
        took.as_secs_f64() * 1e3
    ))
}
