//! Hardening scenarios for the emulated board: the real kernel's System V
//! limits (`kernel.shmmax`, `kernel.shmmni`, `kernel.shmall`) and
//! `RLIMIT_MEMLOCK` provoked for real, each error checked for the limit's
//! name and its fix; a squatter at a topic's key (uid 1001) refused by the
//! publisher (uid 1000) and by a subscriber that names its publisher; and
//! wall-clock steps that must not change ages or timeouts.
//!
//! The limit and clock scenarios change the machine (sysctls, the clock)
//! and restore what they changed, also when they fail. They run only as
//! the board's `/init` (pid 1) or with `SHMBUS_BOARD_ALLOW_SYSTEM_CHANGES=1`;
//! elsewhere they report `SKIPPED` in their result line rather than touch a
//! developer's machine.

use std::time::{Duration, Instant};

use shmbus_core::sys::{self, Attachment, WriteAttachment};
use shmbus_core::{LockPolicy, OpenError, Topic, WaitError};
use shmbus_pub::Publisher;
use shmbus_sub::Subscriber;
use shmbus_testkit::{Check, Guard, unique_key};

use crate::spawn::{self, User};

/// A named scenario: returns a one-line result on success, the reason on failure.
pub type Scenario = (&'static str, fn() -> Result<String, String>);

/// The hardening scenarios, in the order to run them.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        ("limit-shmmax", limit_shmmax),
        ("limit-shmmni", limit_shmmni),
        ("limit-shmall", limit_shmall),
        ("limit-memlock", limit_memlock),
        ("squatter", squatter),
        ("clock-jump", clock_jump),
    ]
}

const SPAWN: Duration = Duration::from_secs(30);

/// A fresh topic for frames of [`Check`], with its cleanup guard.
fn topic(name: &str) -> (Topic, Guard) {
    let key = unique_key(name);
    (
        Topic::new(&format!("hardening/{name}"))
            .key(key)
            .lock(LockPolicy::Off),
        Guard(key),
    )
}

/// `None` if this run may change sysctls and the clock; otherwise the
/// result line that says it did not.
fn may_change_system() -> Option<String> {
    let allowed = std::process::id() == 1
        || std::env::var("SHMBUS_BOARD_ALLOW_SYSTEM_CHANGES").is_ok_and(|v| v == "1");
    if allowed {
        None
    } else {
        Some("SKIPPED: changes kernel sysctls or the clock; runs as the board's /init or with SHMBUS_BOARD_ALLOW_SYSTEM_CHANGES=1".into())
    }
}

/// A `/proc/sys/kernel/<name>` value, restored when dropped.
struct Sysctl {
    name: &'static str,
    old: String,
}

impl Sysctl {
    fn set(name: &'static str, value: u64) -> Result<Sysctl, String> {
        let path = format!("/proc/sys/kernel/{name}");
        let old = std::fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
        std::fs::write(&path, value.to_string()).map_err(|e| format!("write {path}: {e}"))?;
        Ok(Sysctl {
            name,
            old: old.trim().to_string(),
        })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let path = format!("/proc/sys/kernel/{}", self.name);
        if let Err(e) = std::fs::write(&path, &self.old) {
            console!(
                "hardening: could not restore kernel.{} = {}: {e}",
                self.name,
                self.old
            );
        }
    }
}

fn segment_size(t: &Topic) -> Result<u64, String> {
    let schema = shmbus_core::schema::schema_bytes::<Check>().map_err(|e| e.to_string())?;
    let cap = <Check as postcard::experimental::max_size::MaxSize>::POSTCARD_MAX_SIZE;
    let g = shmbus_core::layout::Geometry::new(schema.len(), t.slots, cap)
        .ok_or("geometry out of range")?;
    Ok(g.segment_size as u64)
}

/// Open must fail while the limit is set, with `want` in its message, and
/// succeed again once it is restored.
fn refused_then_restored(
    t: &Topic,
    limit: Sysctl,
    matches: fn(&OpenError) -> bool,
    want: &[&str],
) -> Result<String, String> {
    let msg = match Publisher::<Check>::open(t) {
        Err(e) if matches(&e) => e.to_string(),
        Err(e) => return Err(format!("unexpected error: {e:?}")),
        Ok(_) => return Err(format!("open succeeded with kernel.{} lowered", limit.name)),
    };
    for w in want {
        if !msg.contains(w) {
            return Err(format!("message lacks '{w}': {msg}"));
        }
    }
    if sys::shmget(t.key, 0, 0).is_ok() {
        return Err("a refused open left a segment".into());
    }
    let name = limit.name;
    drop(limit);
    let mut p = Publisher::<Check>::open(t).map_err(|e| format!("after restoring {name}: {e}"))?;
    p.publish(&Check::new(1)).map_err(|e| e.to_string())?;
    Ok(format!("\"{msg}\"; restored, open ok"))
}

/// `kernel.shmmax` one byte below the topic's segment: `TooLarge`.
fn limit_shmmax() -> Result<String, String> {
    if let Some(s) = may_change_system() {
        return Ok(s);
    }
    let (t, _g) = topic("shmmax");
    let size = segment_size(&t)?;
    let limit = Sysctl::set("shmmax", size - 1)?;
    refused_then_restored(
        &t,
        limit,
        |e| matches!(e, OpenError::TooLarge { .. }),
        &["kernel.shmmax", "sysctl -w kernel.shmmax"],
    )
}

/// `kernel.shmmni` = the number of segments that exist: `SystemLimit`.
fn limit_shmmni() -> Result<String, String> {
    if let Some(s) = may_change_system() {
        return Ok(s);
    }
    let (t, _g) = topic("shmmni");
    let count = shmbus_core::sysvipc::segments()
        .map_err(|e| e.to_string())?
        .len() as u64;
    let limit = Sysctl::set("shmmni", count)?;
    refused_then_restored(
        &t,
        limit,
        |e| matches!(e, OpenError::SystemLimit { .. }),
        &["kernel.shmmni", "sysctl"],
    )
    .map(|r| format!("shmmni={count}: {r}"))
}

/// `kernel.shmall` = the pages already in use: `SystemLimit`.
fn limit_shmall() -> Result<String, String> {
    if let Some(s) = may_change_system() {
        return Ok(s);
    }
    let (t, _g) = topic("shmall");
    let page = 4096u64;
    let pages: u64 = shmbus_core::sysvipc::segments()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|e| (e.get("size").unwrap_or(0) as u64).div_ceil(page))
        .sum();
    let limit = Sysctl::set("shmall", pages)?;
    refused_then_restored(
        &t,
        limit,
        |e| matches!(e, OpenError::SystemLimit { .. }),
        &["kernel.shmall", "sysctl"],
    )
    .map(|r| format!("shmall={pages} pages: {r}"))
}

/// The `sensor` user (uid 1000) with `RLIMIT_MEMLOCK` 0: lock "required"
/// fails with `LockDenied` naming the limit and its fixes; "try" opens and
/// reports the refusal.
fn limit_memlock() -> Result<String, String> {
    let (t, _g) = topic("memlock");
    let sensor = spawn::sensor();
    let base = |lock: &str| {
        spawn::args(&[
            ("key", t.key.to_string()),
            ("name", t.name.clone()),
            ("lock", lock.into()),
            ("memlock", "0".into()),
            ("count", "1".into()),
            ("linger-ms", "0".into()),
        ])
    };
    let mut p = spawn::start("pub", &base("required"), Some(sensor))?;
    let err = p.expect("ERROR", SPAWN)?;
    for w in [
        "RLIMIT_MEMLOCK is 0 bytes",
        "LimitMEMLOCK=",
        "ulimit -l",
        "CAP_IPC_LOCK",
    ] {
        if !err.contains(w) {
            return Err(format!("lock=required: message lacks '{w}': {err}"));
        }
    }
    p.wait(SPAWN)?;
    if sys::shmget(t.key, 0, 0).is_ok() {
        return Err("lock=required left a segment after refusing".into());
    }
    let mut p = spawn::start("pub", &base("try"), Some(sensor))?;
    let open = p.expect("OPEN", SPAWN)?;
    let f = spawn::fields(&open);
    let outcome = f
        .get("lock_outcome")
        .map_or("", |o| o.trim_matches('"'))
        .to_string();
    if f.get("locked").map(String::as_str) != Some("false")
        || !outcome.starts_with("Refused(LockDenied")
    {
        return Err(format!(
            "lock=try: expected an unlocked open that reports LockDenied, got '{open}'"
        ));
    }
    p.wait(SPAWN)?;
    Ok(format!(
        "uid {}: required -> \"{err}\"; try -> opened unlocked, refusal reported",
        sensor.uid
    ))
}

/// Fork a child that becomes `user` and creates a segment at `key` holding
/// `bytes` (mode 0644). Only system calls run in the child.
fn squat_as(user: User, key: i32, bytes: &[u8]) -> Result<(), String> {
    let words: Vec<u32> = bytes
        .chunks(4)
        .map(|c| {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(b)
        })
        .collect();
    // SAFETY: the child runs only system calls and stores into the mapping,
    // no allocation and no lock, then `_exit`s; safe after fork even with
    // other threads in the parent.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            let ok = nix::unistd::setgroups(&[]).is_ok()
                && nix::unistd::setgid(user.gid.into()).is_ok()
                && nix::unistd::setuid(user.uid.into()).is_ok();
            let flags = libc::IPC_CREAT | libc::IPC_EXCL | 0o644;
            let code = match (ok, sys::shmget(key, bytes.len(), flags)) {
                (true, Ok(id)) => match WriteAttachment::read_write(id) {
                    Ok(att) => match att.atomic_words(0, words.len()) {
                        Some(ws) => {
                            for (w, v) in ws.iter().zip(&words) {
                                w.store(*v, core::sync::atomic::Ordering::Relaxed);
                            }
                            0
                        }
                        None => 4,
                    },
                    Err(_) => 3,
                },
                (true, Err(_)) => 2,
                (false, _) => 1,
            };
            // SAFETY: `_exit` ends the child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => match nix::sys::wait::waitpid(child, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
            other => Err(format!("squatter child failed: {other:?}")),
        },
    }
}

/// uid 1001 pre-creates the topic's segment with a perfect forgery of it.
/// The real publisher (uid 1000) refuses it with `NotOwner` naming uid
/// 1001 and changes no byte; a subscriber with `publisher_uid(1000)`
/// refuses it; one without is fooled.
fn squatter() -> Result<String, String> {
    let sensor = spawn::sensor();
    let intruder = spawn::intruder();
    let (t, _g) = topic("squatter");
    // A real segment for the same topic name at a scratch key, copied.
    let (scratch, _sg) = topic("squatter-scratch");
    let scratch = Topic::new(&t.name).key(scratch.key).lock(LockPolicy::Off);
    let image = {
        let mut p = Publisher::<Check>::open(&scratch).map_err(|e| e.to_string())?;
        p.publish(&Check::new(666)).map_err(|e| e.to_string())?;
        bytes_at(scratch.key)?
    };
    squat_as(intruder, t.key, &image)?;
    let before = bytes_at(t.key)?;
    let mut p = spawn::start(
        "pub",
        &spawn::args(&[
            ("key", t.key.to_string()),
            ("name", t.name.clone()),
            ("lock", "off".into()),
            ("count", "1".into()),
        ]),
        Some(sensor),
    )?;
    let err = p.expect("ERROR", SPAWN)?;
    p.wait(SPAWN)?;
    let who = format!("created by uid {}", intruder.uid);
    if !err.contains(&who) || !err.contains(&format!("expected uid {}", sensor.uid)) {
        return Err(format!(
            "publisher as uid {}: expected NotOwner naming uid {}, got '{err}'",
            sensor.uid, intruder.uid
        ));
    }
    if bytes_at(t.key)? != before {
        return Err("the publisher wrote into the squatted segment".into());
    }
    let strict = t.clone().publisher_uid(sensor.uid);
    match Subscriber::<Check>::attach(&strict) {
        Err(OpenError::NotOwner { creator_uid, .. }) if creator_uid == intruder.uid => {}
        Err(e) => {
            return Err(format!(
                "subscriber with publisher_uid: expected NotOwner, got {e:?}"
            ));
        }
        Ok(_) => return Err("subscriber with publisher_uid accepted the squatted segment".into()),
    }
    let mut naive = Subscriber::<Check>::attach(&t).map_err(|e| e.to_string())?;
    let forged = naive
        .latest()
        .map_err(|e| e.to_string())?
        .map(|s| s.value.seq);
    if forged != Some(666) {
        return Err(format!(
            "expected the naive subscriber to read the forgery, got {forged:?}"
        ));
    }
    Ok(format!(
        "uid {} squatted; publisher uid {}: \"{err}\"; strict subscriber refused; bytes unchanged",
        intruder.uid, sensor.uid
    ))
}

fn bytes_at(key: i32) -> Result<Vec<u8>, String> {
    let id = sys::shmget(key, 0, 0).map_err(|e| e.to_string())?;
    let att = Attachment::read_only(id).map_err(|e| e.to_string())?;
    let words = att.words(0, att.len() / 4).ok_or("segment words")?;
    let mut out = Vec::new();
    shmbus_core::layout::copy_from_words(words, att.len(), &mut out);
    Ok(out)
}

/// `CLOCK_REALTIME`, restored on drop to where it would have been.
struct ClockStep {
    real0: u64,
    mono0: u64,
}

fn set_realtime(ns: u64) -> Result<(), String> {
    let ts = nix::sys::time::TimeSpec::new((ns / 1_000_000_000) as _, (ns % 1_000_000_000) as _);
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts)
        .map_err(|e| format!("clock_settime: {e}"))
}

impl ClockStep {
    fn by(delta_ns: i64) -> Result<ClockStep, String> {
        let step = ClockStep {
            real0: sys::realtime_ns(),
            mono0: sys::monotonic_ns(),
        };
        set_realtime(step.real0.wrapping_add_signed(delta_ns))?;
        Ok(step)
    }
}

impl Drop for ClockStep {
    fn drop(&mut self) {
        let now = self.real0 + (sys::monotonic_ns() - self.mono0);
        if let Err(e) = set_realtime(now) {
            console!("hardening: could not restore the clock: {e}");
        }
    }
}

/// Step the wall clock back an hour and forward a day around a publisher
/// and a subscriber: ages stay true, and a wait that has a wall-clock step
/// in the middle still times out on time.
fn clock_jump() -> Result<String, String> {
    if let Some(s) = may_change_system() {
        return Ok(s);
    }
    let (t, _g) = topic("clock");
    let mut p = Publisher::<Check>::open(&t).map_err(|e| e.to_string())?;
    let mut s = Subscriber::<Check>::attach(&t).map_err(|e| e.to_string())?;
    let hour = 3_600_000_000_000i64;
    let mut worst = Duration::ZERO;
    for (i, delta) in [-hour, 24 * hour].into_iter().enumerate() {
        let before = Instant::now();
        p.publish(&Check::new(i as u64 + 1))
            .map_err(|e| e.to_string())?;
        let step = ClockStep::by(delta)?;
        let sample = s.latest().map_err(|e| e.to_string())?.ok_or("no frame")?;
        let age = sample.age().max(s.age().unwrap_or_default());
        // At most the monotonic time since the publish, read after the age:
        // exact whatever the scheduling (a fixed 5 s was a bound on how soon
        // this thread ran again), and an age that followed the step (an
        // hour, a day) still fails.
        let bound = before.elapsed();
        worst = worst.max(age);
        if age > bound {
            return Err(format!(
                "after a {}s wall-clock step the age is {age:?}, more than the {bound:?} since the publish",
                delta / 1_000_000_000
            ));
        }
        drop(step);
    }
    // A step back by an hour in the middle of a 300 ms wait.
    let stepper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        ClockStep::by(-hour).map(|s| {
            std::thread::sleep(Duration::from_millis(500));
            drop(s);
        })
    });
    let t0 = Instant::now();
    let r = s.wait_latest(Duration::from_millis(300));
    let waited = t0.elapsed();
    stepper.join().map_err(|_| "clock thread panicked")??;
    // A watchdog, not a timing: only a wait that hung exceeds it.
    if r != Err(WaitError::Timeout) || waited > Duration::from_secs(60) {
        return Err(format!("wait across a clock step: {r:?} after {waited:?}"));
    }
    Ok(format!(
        "steps -1 h and +24 h: ages stayed <= {worst:?}; a 300 ms wait across a -1 h step timed out after {waited:?}"
    ))
}
