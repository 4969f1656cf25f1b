//! `shmbus doctor`: check what the bus needs from this machine and say how
//! to fix each problem. Every finding is OK, WARN or FAIL with a fix.
//!
//! Checks: System V IPC in the kernel, `kernel.shmmax/shmall/shmmni`
//! against the configured and existing topics, `RLIMIT_MEMLOCK` and
//! `CAP_IPC_LOCK` against the lock policies, what this user may read,
//! systemd-logind's `RemoveIPC=`, stale, orphaned, half-created or broken
//! topics, and
//! segments at a configured key that are not that topic as configured.

use std::path::Path;

use shmbus_config::{Config, ConfigSource};
use shmbus_core::layout::Geometry;
use shmbus_core::plural::count;
use shmbus_core::sysvipc;
use shmbus_core::{LockPolicy, PublisherStatus};

use super::list::{Row, rows};
use crate::args::DoctorArgs;
use crate::discover::{self, now_ns};
use crate::out::{self, CmdResult, Fail, human_bytes, human_ns, key_hex, user, user_name};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but something may bite later.
    Warn,
    /// Something the bus needs is missing.
    Fail,
}

/// One finding.
#[derive(Debug)]
pub struct Finding {
    /// OK, WARN or FAIL.
    pub level: Level,
    /// Short name of the check.
    pub check: &'static str,
    /// What was found.
    pub what: String,
    /// How to fix it (WARN and FAIL).
    pub fix: Option<String>,
    /// For a kernel limit that FAILs: the sysctl and the value that fixes it.
    pub sysctl: Option<(&'static str, String)>,
}

impl Finding {
    fn with_sysctl(mut self, name: &'static str, value: impl ToString) -> Finding {
        self.sysctl = Some((name, value.to_string()));
        self
    }
}

fn ok(check: &'static str, what: String) -> Finding {
    Finding {
        level: Level::Ok,
        check,
        what,
        fix: None,
        sysctl: None,
    }
}
fn warn(check: &'static str, what: String, fix: String) -> Finding {
    Finding {
        level: Level::Warn,
        check,
        what,
        fix: Some(fix),
        sysctl: None,
    }
}
fn fail(check: &'static str, what: String, fix: String) -> Finding {
    Finding {
        level: Level::Fail,
        check,
        what,
        fix: Some(fix),
        sysctl: None,
    }
}

/// Parse `CapEff` from `/proc/self/status` text: true if bit 14
/// (`CAP_IPC_LOCK`) is set.
pub fn cap_ipc_lock(status: &str) -> Option<bool> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    let bits = u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()?;
    Some(bits & (1 << 14) != 0)
}

/// The effective `RemoveIPC=` from logind config texts in override order
/// (main file first, then drop-ins sorted by name). `None`: not set.
pub fn remove_ipc(texts: &[String]) -> Option<bool> {
    let mut v = None;
    for t in texts {
        let mut in_login = true;
        for l in t.lines() {
            let l = l.trim();
            if l.starts_with('[') {
                in_login = l == "[Login]";
                continue;
            }
            if l.starts_with('#') || l.starts_with(';') || !in_login {
                continue;
            }
            if let Some(val) = l
                .strip_prefix("RemoveIPC")
                .and_then(|r| r.trim_start().strip_prefix('='))
            {
                match val.trim().to_ascii_lowercase().as_str() {
                    "yes" | "true" | "1" | "on" => v = Some(true),
                    "no" | "false" | "0" | "off" => v = Some(false),
                    _ => {}
                }
            }
        }
    }
    v
}

fn logind_texts() -> Vec<String> {
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/systemd/logind.conf") {
        texts.push(t);
    }
    // Drop-ins from every directory, ordered by file name (a later
    // directory's file of the same name replaces an earlier one).
    let mut dropins: std::collections::BTreeMap<String, std::path::PathBuf> = Default::default();
    for dir in [
        "/usr/lib/systemd/logind.conf.d",
        "/run/systemd/logind.conf.d",
        "/etc/systemd/logind.conf.d",
    ] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".conf") {
                    dropins.insert(name, e.path());
                }
            }
        }
    }
    for p in dropins.values() {
        if let Ok(t) = std::fs::read_to_string(p) {
            texts.push(t);
        }
    }
    texts
}

fn sys_uid_max() -> u32 {
    std::fs::read_to_string("/etc/login.defs")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("SYS_UID_MAX")
                        .map(|v| v.trim().parse().ok())
                })
                .flatten()
        })
        .unwrap_or(999)
}

fn page_size() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(n)) if n > 0 => n as u64,
        _ => 4096,
    }
}

/// Soft and hard `RLIMIT_MEMLOCK` in bytes, `u64::MAX` for unlimited
/// (`rlim_t` is 32-bit on armv7).
fn memlock() -> (u64, u64) {
    use nix::sys::resource::{Resource, getrlimit};
    #[allow(
        clippy::useless_conversion,
        reason = "rlim_t is u32 on armv7, u64 elsewhere"
    )]
    let conv = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            u64::from(v)
        }
    };
    match getrlimit(Resource::RLIMIT_MEMLOCK) {
        Ok((s, h)) => (conv(s), conv(h)),
        Err(_) => (0, 0),
    }
}

/// `kernel.sem`: SEMMSL, SEMMNS, SEMOPM, SEMMNI; or why they cannot be
/// read.
fn kernel_sem() -> Result<[u64; 4], String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/sem").map_err(|e| e.to_string())?;
    let v: Option<Vec<u64>> = text.split_whitespace().map(|w| w.parse().ok()).collect();
    v.and_then(|v| <[u64; 4]>::try_from(v).ok()).ok_or_else(|| {
        format!(
            "not four numbers: {:?}",
            shmbus_toolbox::printable::clipped(text.trim())
        )
    })
}

/// `kernel.NAME` from /proc/sys; `None`, with a warning in `f`, if it
/// cannot be read.
fn kernel_limit(f: &mut Vec<Finding>, name: &'static str) -> Option<u64> {
    let path = format!("/proc/sys/kernel/{name}");
    let why = match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse() {
            Ok(n) => return Some(n),
            Err(_) => format!(
                "not a number: {:?}",
                shmbus_toolbox::printable::clipped(text.trim())
            ),
        },
        Err(e) => e.to_string(),
    };
    f.push(warn(
        name,
        format!("cannot read {path} ({why}): kernel.{name} is not checked"),
        format!("see it with `sysctl kernel.{name}`; run `shmbus doctor` where /proc/sys is readable (a container may mask it)"),
    ));
    None
}

fn limit_text(n: u64) -> String {
    // Linux's default shmmax/shmall are near 2^64: effectively no limit.
    if n >= 1 << 50 {
        "unlimited".into()
    } else {
        human_bytes(n)
    }
}

/// Whether the kernel answers System V shared memory calls: a look-up of
/// a key (nothing is created) that finds it, does not (`ENOENT`) or may
/// not see it (`EACCES`). Anything else (`ENOSYS` without System V IPC,
/// `EPERM` from a seccomp filter) is the error.
fn sysvipc_answer() -> Result<(), shmbus_core::sys::Errno> {
    use shmbus_core::sys::Errno;
    // Key 1: where no topic lives; found or not, the kernel answered.
    match shmbus_core::sys::shmget(1, 0, 0) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.errno, Errno::ENOENT | Errno::EACCES) => Ok(()),
        Err(e) => Err(e.errno),
    }
}

/// The config as doctor loads it: once per run (`--sysctl` loaded it a
/// second time for the limits, and a file edited in between, or a pipe,
/// could give the two answers from two texts).
type Loaded = Result<(Config, ConfigSource), shmbus_config::ConfigErrors>;

/// Run every check, on the config found by the search order.
pub fn findings(a: &DoctorArgs) -> Vec<Finding> {
    findings_of(a, Config::find(a.config.as_deref()))
}

/// Run every check on `loaded`, the config found by the search order.
fn findings_of(a: &DoctorArgs, loaded: Loaded) -> Vec<Finding> {
    let mut f = Vec::new();

    // 1. System V IPC.
    if !Path::new("/proc/sysvipc/shm").exists() {
        f.push(if let Err(errno) = sysvipc_answer() {
            fail(
                "sysvipc",
                format!("/proc/sysvipc/shm is missing and shmget fails ({errno}): the kernel has no System V IPC, or a sandbox (seccomp) forbids it"),
                "build the kernel with CONFIG_SYSVIPC=y (Yocto: it is in the default kernel config; check your defconfig), mount /proc, and allow the System V IPC calls in the sandbox or container".into(),
            )
        } else {
            // A container or sandbox that hides /proc/sysvipc, or no /proc:
            // "build the kernel with CONFIG_SYSVIPC" sent the one on call
            // to rebuild a kernel that had it.
            fail(
                "sysvipc",
                "System V shared memory works, but /proc/sysvipc/shm is missing: /proc is not mounted, or a container or sandbox hides it; `shmbus list`, `info`, `echo` and `rm` find topics there, and cannot without it".into(),
                "mount /proc (`mount -t proc proc /proc`), or run the shmbus tools where /proc/sysvipc is visible (on the host, or in a container that does not mask it); the publishers work without it".into(),
            )
        });
        return f;
    }
    f.push(ok(
        "sysvipc",
        "System V shared memory and semaphores are available".into(),
    ));

    // 2. The config.
    let config = match loaded {
        Ok((c, src)) => {
            let what = format!("{} topics on bus '{}' from {src}", c.topics.len(), c.bus);
            if src == ConfigSource::Builtin {
                f.push(warn(
                    "config",
                    what,
                    "no config found; pass --config FILE, set $SHMBUS_CONFIG, or install /etc/shmbus/shmbus.toml to check your own topics".into(),
                ));
            } else {
                f.push(ok("config", what));
            }
            // Works, but most likely not what was meant.
            for w in c.warnings() {
                f.push(warn(
                    "config",
                    format!("{}: {}", w.at, w.message),
                    format!("edit {} as the line above says (the config loads as it is: this is a warning, not a failure)", w.at),
                ));
            }
            // A `publisher` named like a sensor program but none of them (a
            // typo: `shmbus-sensor-imuu`): `shmbus demo` starts no sensor
            // for it, and nothing sized its topic. It loaded as OK.
            for t in &c.topics {
                let Some(p) = t.publisher.as_deref() else {
                    continue;
                };
                if p.starts_with("shmbus-sensor")
                    && shmbus_sensors::SensorKind::from_name(p).is_none()
                {
                    let known: Vec<&str> = shmbus_sensors::SensorKind::ALL
                        .iter()
                        .map(|k| k.program())
                        .collect();
                    f.push(warn(
                        "config",
                        format!(
                            "{}: topic '{}' names publisher `{}`, which is no shmbus sensor program: `shmbus demo` starts nothing for it",
                            t.at,
                            t.name,
                            out::printable(p)
                        ),
                        format!(
                            "set `publisher` to one of {} (or to your own program's name, without the shmbus-sensor prefix)",
                            known.join(", ")
                        ),
                    ));
                }
            }
            // One finding per cause: a group or user in [defaults] that this
            // machine lacks was the same two lines once per topic (twelve
            // lines for the board config's six topics).
            let mut causes: Vec<(String, Vec<&str>)> = Vec::new();
            for t in &c.topics {
                if let Err(e) = t.to_topic() {
                    let e = e.to_string();
                    match causes.iter_mut().find(|(c, _)| *c == e) {
                        Some((_, names)) => names.push(&t.name),
                        None => causes.push((e, vec![&t.name])),
                    }
                }
            }
            for (e, names) in causes {
                let what = match names.as_slice() {
                    [one] => format!("topic '{one}' cannot be opened on this machine"),
                    many => format!(
                        "{} topics cannot be opened on this machine, for the same reason: '{}'",
                        many.len(),
                        many.join("', '")
                    ),
                };
                f.push(fail("config", what, e));
            }
            // A `[[bridge.in]]` type is declared as text, which the config's
            // parser keeps as a string: the codec judges it, with the words
            // and the position `shmbus bridge` gives when it starts.
            for i in c.bridge.iter().flat_map(|b| &b.inbound) {
                let verdict = shmbus_codec::Codec::parse(&i.schema)
                    .map_err(|e| e.to_string())
                    .and_then(|codec| codec.frame_capacity());
                if let Err(why) = verdict {
                    f.push(fail(
                        "config",
                        format!(
                            "topic '{}' cannot be taken in from the broker: its [[bridge.in]] schema",
                            i.topic
                        ),
                        format!("{}: schema: {why}", i.schema_at),
                    ));
                }
            }
            Some(c)
        }
        Err(e) => {
            f.push(fail(
                "config",
                "the config has errors".into(),
                e.to_string(),
            ));
            None
        }
    };
    let configured = config
        .as_ref()
        .map(|c| c.topics.clone())
        .unwrap_or_default();

    // What exists now.
    let configured_keys: Vec<i32> = configured.iter().map(|t| t.key).collect();
    let existing = match rows(&a.keys, &configured_keys) {
        Ok(r) => r,
        Err(e) => {
            f.push(fail("topics", e.msg, "see above".into()));
            Vec::new()
        }
    };
    // The size of the segment at `key`, in whatever state: a half-created,
    // unreadable, damaged or foreign one is not "still to be created" (it
    // was counted twice against kernel.shmmni and shmall); the checks
    // below say what is wrong with it.
    let size_at = |key: i32| {
        existing
            .iter()
            .filter_map(Row::segment)
            .find(|e| e.key == key)
            .map(|e| e.size)
    };
    // A live topic, whose waiter segment exists if it has notify on.
    let live_at = |key: i32| {
        existing
            .iter()
            .any(|r| matches!(r, Row::Topic(s, _, _) if s.entry.key == key))
    };

    // 3. Kernel limits.
    // A limit that cannot be read is not checked, and says so: it used
    // to be taken as unlimited, and the check said OK.
    let shmmax = kernel_limit(&mut f, "shmmax");
    let shmmni = kernel_limit(&mut f, "shmmni");
    let shmall = kernel_limit(&mut f, "shmall");
    let segments = match sysvipc::segments() {
        Ok(s) => s,
        Err(e) => {
            f.push(warn(
                "sysvipc",
                format!(
                    "cannot read /proc/sysvipc/shm ({e}): the segments that exist are not counted against kernel.shmmni and kernel.shmall below"
                ),
                "run `shmbus doctor` where /proc is mounted and readable (a container may mask it)".into(),
            ));
            Vec::new()
        }
    };
    let page = page_size();
    // Configured topics not created yet: exact for the sensor programs this
    // build knows (their message types are compiled in), else a lower
    // bound of one 64-byte slot each.
    // (name, bytes, size exact, segment exists)
    let mut need: Vec<(String, u64, bool, bool)> = configured
        .iter()
        .map(|t| match size_at(t.key) {
            Some(s) => (t.name.clone(), s, true, true),
            None => match t
                .publisher
                .as_deref()
                .and_then(shmbus_sensors::SensorKind::from_name)
                .and_then(|k| k.segment_size(t.slots))
            {
                Some(s) => (t.name.clone(), s, true, false),
                None => (
                    t.name.clone(),
                    Geometry::new(0, t.slots, 1).map_or(0, |g| g.segment_size as u64),
                    false,
                    false,
                ),
            },
        })
        .collect();
    need.sort_by_key(|n| std::cmp::Reverse(n.1));
    if let (Some((name, biggest, exact, _)), Some(shmmax)) = (need.first(), shmmax) {
        let q = if *exact { "" } else { "at least " };
        if *biggest > shmmax {
            f.push(fail(
                "shmmax",
                format!("topic '{name}' needs {q}{} ({biggest} bytes) but kernel.shmmax is {} ({shmmax})", human_bytes(*biggest), human_bytes(shmmax)),
                format!("`sysctl -w kernel.shmmax={biggest}` (to keep it: `kernel.shmmax = {biggest}` in /etc/sysctl.d/60-shmbus.conf), or give the topic fewer slots"),
            ).with_sysctl("kernel.shmmax", *biggest));
        } else {
            f.push(ok(
                "shmmax",
                format!(
                    "largest configured topic '{name}' needs {q}{}; kernel.shmmax is {}",
                    human_bytes(*biggest),
                    limit_text(shmmax)
                ),
            ));
            let unknown: Vec<&str> = need.iter().filter(|n| !n.2).map(|n| n.0.as_str()).collect();
            if !unknown.is_empty() && shmmax < 1 << 50 {
                f.push(warn(
                    "shmmax",
                    format!(
                        "the frame size of {} is known only once its publisher runs (this build knows the shmbus-sensor-* programs only): the lower bound above may be too low for kernel.shmmax {}",
                        unknown.join(", "),
                        human_bytes(shmmax)
                    ),
                    "start the publishers, then run `shmbus doctor` again: it checks the real segment sizes".into(),
                ));
            }
        }
    }
    // A topic with notify on also has a one-page waiter segment per
    // publisher (docs/LAYOUT.md 7.4). Without room for it the topic still
    // works, but every publish then calls FUTEX_WAKE.
    let waiters_to_create = configured
        .iter()
        .filter(|t| t.notify && !live_at(t.key))
        .count() as u64;
    let missing = need.iter().filter(|n| !n.3).count() as u64 + waiters_to_create;
    let in_use = segments.len() as u64;
    if let Some(shmmni) = shmmni {
        if in_use + missing > shmmni {
            f.push(fail(
            "shmmni",
            format!("{in_use} segments exist and {missing} are still to be created for the configured topics (a topic with notify on has 2), but kernel.shmmni is {shmmni}"),
            format!("`sysctl -w kernel.shmmni={n}` (to keep it: `kernel.shmmni = {n}` in /etc/sysctl.d/60-shmbus.conf), or remove stale segments (`shmbus list`, `shmbus rm`)", n = in_use + missing + 16),
        ).with_sysctl("kernel.shmmni", in_use + missing + 16));
        } else {
            f.push(ok(
                "shmmni",
                format!("{in_use} segments in use + {missing} to create, limit {shmmni}"),
            ));
        }
    }
    let used_pages: u64 = segments
        .iter()
        .map(|e| (e.get("size").unwrap_or(0).max(0) as u64).div_ceil(page))
        .sum::<u64>()
        + need
            .iter()
            .filter(|n| !n.3)
            .map(|n| n.1.div_ceil(page))
            .sum::<u64>()
        + waiters_to_create;
    if let Some(shmall) = shmall {
        if used_pages > shmall {
            f.push(
            fail(
                "shmall",
                format!("segments need {used_pages} pages but kernel.shmall is {shmall} pages"),
                format!(
                    "`sysctl -w kernel.shmall={}` (to keep it: `kernel.shmall = {}` in /etc/sysctl.d/60-shmbus.conf)",
                    used_pages * 2,
                    used_pages * 2
                ),
            )
            .with_sysctl("kernel.shmall", used_pages * 2),
        );
        } else {
            f.push(ok(
                "shmall",
                format!(
                    "{used_pages} pages of {page} B used or needed, limit {}",
                    if shmall > 1 << 50 {
                        "unlimited".into()
                    } else {
                        shmall.to_string()
                    }
                ),
            ));
        }
    }

    // Semaphores: each topic's publisher holds a lock, one set of one
    // semaphore at the topic's key. kernel.sem is "SEMMSL SEMMNS SEMOPM
    // SEMMNI"; a fix rewrites all four fields.
    match kernel_sem() {
        Err(why) => f.push(warn(
            "sem",
            format!("cannot read /proc/sys/kernel/sem ({why}): the semaphore limits are not checked"),
            "see them with `sysctl kernel.sem` (SEMMSL SEMMNS SEMOPM SEMMNI): each publisher's lock is one set of 1 semaphore, taken with 2 operations in one semop".into(),
        )),
        Ok([msl, mns, opm, mni]) => {
        let sems = sysvipc::semaphores().unwrap_or_default();
        let sets = sems.len() as u64;
        let in_sets: u64 = sems
            .iter()
            .map(|s| s.get("nsems").unwrap_or(0).max(0) as u64)
            .sum();
        let to_lock = configured
            .iter()
            .filter(|t| !sems.iter().any(|s| s.key() == t.key))
            .count() as u64;
        let mut what = format!(
            "{} in use + {} to create, SEMMNI (kernel.sem field 4) {mni}; {} + {to_lock}, SEMMNS (field 2) {mns}",
            count(sets, "semaphore set"),
            count(to_lock, "publisher lock"),
            count(in_sets, "semaphore"),
        );
        // A lock is a set of one semaphore (SEMMSL at least 1), taken with
        // two operations in one semop (SEMOPM at least 2: with 1, every
        // publisher's open fails with E2BIG, "Argument list too long").
        if msl < 1 || opm < 2 {
            what += &format!(
                "; SEMMSL (field 1) {msl} and SEMOPM (field 3) {opm}, but a lock is a set of 1 semaphore taken with 2 operations at once"
            );
        }
        if sets + to_lock > mni || in_sets + to_lock > mns || msl < 1 || opm < 2 {
            let value = format!(
                "{} {} {} {}",
                msl.max(1),
                mns.max(in_sets + to_lock + 32),
                opm.max(2),
                mni.max(sets + to_lock + 16)
            );
            f.push(
                fail(
                    "sem",
                    format!("{what}: publishers will fail to create or take their locks"),
                    format!(
                        "`sysctl -w kernel.sem=\"{value}\"` (to keep it: `kernel.sem = {value}` in /etc/sysctl.d/60-shmbus.conf), or remove stale topics (`shmbus list`, `shmbus rm`)"
                    ),
                )
                .with_sysctl("kernel.sem", value),
            );
        } else {
            f.push(ok("sem", what));
        }
        }
    }

    // 4. Locking in RAM.
    let cap = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| cap_ipc_lock(&s))
        .unwrap_or(false);
    let (soft, hard) = memlock();
    let locked_need: u64 = configured
        .iter()
        .filter(|t| t.lock != LockPolicy::Off)
        .map(|t| need.iter().find(|n| n.0 == t.name).map_or(0, |n| n.1))
        .sum();
    let required: Vec<&str> = configured
        .iter()
        .filter(|t| t.lock == LockPolicy::Required)
        .map(|t| t.name.as_str())
        .collect();
    let memlock_what = format!(
        "RLIMIT_MEMLOCK {} (hard {}), CAP_IPC_LOCK {}; topics to lock need about {}",
        limit_text(soft),
        limit_text(hard),
        if cap { "yes" } else { "no" },
        human_bytes(locked_need)
    );
    let memlock_fix = "raise the limit for the publishers: LimitMEMLOCK=infinity (or a size) in their systemd unit, `ulimit -l` in their shell, or /etc/security/limits.conf; or grant CAP_IPC_LOCK (AmbientCapabilities=CAP_IPC_LOCK). The limit of the user that runs each publisher counts, not yours.".to_string();
    if cap || soft >= locked_need {
        f.push(ok("memlock", memlock_what));
    } else if !required.is_empty() {
        f.push(fail(
            "memlock",
            format!(
                "{memlock_what}; lock = \"required\" topics ({}) will fail to open",
                required.join(", ")
            ),
            memlock_fix,
        ));
    } else if locked_need > 0 {
        f.push(warn(
            "memlock",
            format!(
                "{memlock_what}; lock = \"try\" topics will run unlocked (page faults possible)"
            ),
            memlock_fix,
        ));
    } else {
        f.push(ok("memlock", memlock_what));
    }

    // 5. Permissions for this user.
    let me = nix::unistd::geteuid().as_raw();
    let denied: Vec<String> = existing
        .iter()
        .filter_map(|r| match r {
            Row::Denied(e) => Some(format!(
                "{} (owner {}, group {}, mode {:03o})",
                key_hex(e.key),
                user_name(e.uid),
                out::group_name(e.gid),
                e.mode & 0o777
            )),
            _ => None,
        })
        .collect();
    if denied.is_empty() {
        f.push(ok(
            "permissions",
            format!("{} may read every segment it can see", user(me)),
        ));
    } else {
        f.push(warn(
            "permissions",
            format!(
                "{} cannot read {} segment{}: {} (they may be other programs' or topics you are not granted)",
                user(me),
                denied.len(),
                if denied.len() == 1 { "" } else { "s" },
                denied.join(", ")
            ),
            format!(
                "for a topic: add {name} to its group (`usermod -aG GROUP {name}`, then log in again), or give a topic whose mode no group may read a readers' `group` (and mode = 0o640) in its config; do not make topics readable by others (SECURITY.md)",
                name = user_name(me)
            ),
        ));
    }

    // 6. systemd-logind RemoveIPC.
    let systemd = Path::new("/run/systemd/system").exists();
    let uid_max = sys_uid_max();
    if !systemd {
        f.push(ok(
            "RemoveIPC",
            "systemd is not running here: logind does not remove IPC objects".into(),
        ));
    } else {
        let set = remove_ipc(&logind_texts());
        let on = set.unwrap_or(true);
        let how = match set {
            Some(_) => "set in logind.conf",
            None => "systemd's default",
        };
        let exposed: Vec<String> = existing
            .iter()
            .filter_map(|r| match r {
                Row::Topic(s, _, _) if s.entry.uid > uid_max => {
                    Some(format!("'{}' (owner {})", s.name, user_name(s.entry.uid)))
                }
                _ => None,
            })
            .collect();
        if !on {
            f.push(ok(
                "RemoveIPC",
                "RemoveIPC=no: logind leaves topics alone".into(),
            ));
        } else if exposed.is_empty() && me <= uid_max {
            f.push(ok("RemoveIPC", format!("RemoveIPC=yes ({how}), but no topic belongs to a regular user (uid > {uid_max})")));
        } else {
            let who = if exposed.is_empty() {
                format!(
                    "you, {}, are a regular user",
                    shmbus_toolbox::units::user(me)
                )
            } else {
                format!("topics owned by regular users: {}", exposed.join(", "))
            };
            f.push(warn(
                "RemoveIPC",
                format!("RemoveIPC=yes ({how}): systemd-logind removes every System V segment and semaphore of a regular user (uid > {uid_max}) when that user's last login session ends; {who}"),
                "run publishers as a system user (useradd --system shmbus; User=shmbus in the unit), or set RemoveIPC=no in /etc/systemd/logind.conf.d/shmbus.conf and restart systemd-logind".into(),
            ));
        }
    }

    // 7. Stale, orphaned and broken topics.
    let now = now_ns();
    let mut healthy = 0;
    let mut removed = Vec::new();
    for r in &existing {
        match r {
            Row::Topic(s, _, _) => {
                let k = key_hex(s.entry.key);
                let alive = s.publisher.is_alive();
                if s.entry.removed() {
                    // Gone from every name and key; only the processes still
                    // attached keep it. Neither stale nor orphaned.
                    removed.push(format!(
                        "'{}' (shmid {}, {} attached)",
                        s.name, s.entry.shmid, s.entry.nattch
                    ));
                    continue;
                }
                // A configured publisher user must have created and own the
                // segment at its topic's key.
                let expected = configured
                    .iter()
                    .find(|t| t.key == s.entry.key)
                    .and_then(|t| t.to_topic().ok()?.publisher_uid);
                if let Some(uid) = expected {
                    if s.entry.uid != uid || s.entry.cuid != uid {
                        f.push(fail(
                            "squat",
                            format!(
                                "'{}' ({k}) was created by {} and belongs to {}, not its configured publisher {}: its publisher cannot open it, and subscribers that name the publisher refuse it",
                                s.name,
                                user(s.entry.cuid),
                                user(s.entry.uid),
                                user(uid)
                            ),
                            format!(
                                "find out who created it; root removes it with `shmbus rm {}{k}`",
                                if alive { "--force " } else { "" }
                            ),
                        ));
                        continue;
                    }
                }
                if let Some(uid) = s.lock_squatter {
                    let (what, fix) = super::lock_squat_text(&s.entry, uid);
                    f.push(fail("squat", format!("'{}': {what}", s.name), fix));
                    continue;
                }
                // The segment at a configured topic's key must be that
                // topic, in the config's shape: a publisher started with
                // this config opens it only then.
                if let Some(t) = configured.iter().find(|t| t.key == s.entry.key) {
                    let force = if alive { "--force " } else { "" };
                    let differs = if s.name != t.name {
                        Some((
                            format!("it holds topic '{}', not '{}'", s.name, t.name),
                            format!(
                                "two topics share key {k}: give '{}' its own `key` in the config; if '{}' is left over, remove it: `shmbus rm {force}{k}`",
                                t.name, s.name
                            ),
                        ))
                    } else if let Some((field, made, wanted)) = [
                        ("slots", s.slots.to_string(), t.slots.to_string()),
                        ("notify", s.notify.to_string(), t.notify.to_string()),
                    ]
                    .into_iter()
                    .find(|(_, made, wanted)| made != wanted)
                    {
                        Some((
                            format!("it has {field} = {made}, the config says {field} = {wanted}"),
                            format!(
                                "the config changed after the segment was made: remove it (`shmbus rm {force}{k}`) and start the publisher again, or set {field} = {made} again"
                            ),
                        ))
                    } else if let Some((program, made, wanted)) = t
                        .publisher
                        .as_deref()
                        .and_then(|p| Some((p, shmbus_sensors::SensorKind::from_name(p)?)))
                        .and_then(|(p, kind)| Some((p, s.entry.size, kind.segment_size(t.slots)?)))
                        .filter(|(_, made, wanted)| made != wanted)
                    {
                        // Same slots: another message type (the config's
                        // `publisher` changed to another sensor).
                        Some((
                            format!(
                                "it is {made} bytes, and a topic of {program} with {} slots is {wanted}: it was made for another message type",
                                t.slots
                            ),
                            format!(
                                "the config changed after the segment was made: remove it (`shmbus rm {force}{k}`) and start the publisher again, or set `publisher` back to the program that made it"
                            ),
                        ))
                    } else {
                        None
                    };
                    if let Some((what, fix)) = differs {
                        f.push(fail(
                            "config",
                            format!(
                                "the segment at the key of topic '{}' ({k}) does not match the config: {what}; a publisher started with this config cannot open it",
                                t.name
                            ),
                            fix,
                        ));
                        continue;
                    }
                    // Mode and group: a publisher sets the config's when it
                    // opens the topic, so a segment made before the config
                    // narrowed them keeps granting readers what it no
                    // longer does until its publisher restarts. Said OK.
                    if let Ok(want) = t.to_topic() {
                        let mode = s.entry.mode & 0o777;
                        let group_differs = want.group.is_some_and(|g| g != s.entry.gid);
                        if mode != want.mode || group_differs {
                            let group_of = |gid: u32| out::group_name(gid);
                            let wanted_group = want
                                .group
                                .map(|g| format!(", group {}", group_of(g)))
                                .unwrap_or_default();
                            f.push(warn(
                                "config",
                                format!(
                                    "'{}' ({k}) has mode {mode:04o}, group {}; the config says mode {:04o}{wanted_group}: readers get the segment's until its publisher opens the topic again (it was made before the config changed)",
                                    t.name,
                                    group_of(s.entry.gid),
                                    want.mode
                                ),
                                if alive {
                                    "restart its publisher: it sets the config's mode and group when it opens the topic".to_string()
                                } else {
                                    "start its publisher: it sets the config's mode and group when it opens the topic".to_string()
                                },
                            ));
                        }
                    }
                }
                if !alive && s.entry.nattch == 0 {
                    f.push(warn(
                        "topics",
                        format!(
                            "'{}' ({k}) is orphaned: no publisher ({}) and nobody attached",
                            s.name,
                            pub_word(&s.publisher)
                        ),
                        format!("start its publisher, or remove it: shmbus rm {k}"),
                    ));
                } else if s.publisher == PublisherStatus::NoLock {
                    // Its lock removed (`ipcrm -s`, logind's `RemoveIPC`)
                    // while processes are attached: a publisher among them
                    // may still publish without it. One look cannot tell;
                    // the newest frame's age does. It said "no running
                    // publisher ... see only old frames" of a live topic.
                    f.push(warn(
                        "topics",
                        format!(
                            "'{}' ({k}) has {}, {} attached: its lock was removed (`ipcrm -s`, systemd-logind's RemoveIPC); a publisher that still publishes runs without it, and a second publisher could start on the topic",
                            s.name,
                            super::publisher_text_aged(&s.publisher, s.age_ns(now)),
                            count(s.entry.nattch, "process")
                        ),
                        format!("restart its publisher (it takes a new lock); if it is gone, remove the topic: shmbus rm {k}"),
                    ));
                } else if !alive {
                    f.push(warn(
                        "topics",
                        format!(
                            "'{}' ({k}) has no running publisher; {} attached and {} only old frames",
                            s.name,
                            if s.entry.nattch == 1 { "1 process is".to_string() } else { format!("{} processes are", s.entry.nattch) },
                            if s.entry.nattch == 1 { "sees" } else { "see" }
                        ),
                        "start its publisher (it reopens the same topic)".into(),
                    ));
                } else if let (Some(why), PublisherStatus::Alive { pid }) =
                    (super::held_up(&s.publisher, s.age_ns(now)), s.publisher)
                {
                    // Alive, and its process says why it sends nothing:
                    // "OK ... live publisher" of a SIGSTOPped sensor.
                    f.push(warn(
                        "topics",
                        format!(
                            "'{}' ({k}): its publisher (pid {pid}) is alive but {why}; {}",
                            s.name,
                            s.age_ns(now).map_or("no frame yet".into(), |a| format!(
                                "newest frame {} old",
                                human_ns(a)
                            ))
                        ),
                        format!(
                            "a stopped one resumes with `kill -CONT {pid}`; one blocked in the kernel waits on its device: see `dmesg` and `cat /proc/{pid}/wchan`"
                        ),
                    ));
                } else if let Some(t) = configured.iter().find(|t| t.key == s.entry.key) {
                    let age = s.age_ns(now);
                    if age.is_some_and(|a| t.is_stale(std::time::Duration::from_nanos(a))) {
                        f.push(warn(
                            "topics",
                            format!("'{}' ({k}) is stale: newest frame {} old, over its max age", s.name, human_ns(age.unwrap_or(0))),
                            format!("its publisher is alive but not publishing: check it (pid in `shmbus info {k}`)"),
                        ));
                    } else {
                        healthy += 1;
                    }
                } else {
                    healthy += 1;
                }
            }
            Row::Broken(e, err) => {
                f.push(fail(
                    "topics",
                    format!("segment {} is a broken shmbus topic: {err}", key_hex(e.key)),
                    super::broken_fix(e),
                ));
            }
            Row::HalfMade(e, lock) => {
                let topic = configured.iter().find(|t| t.key == e.key);
                match super::list::half_made_text(e, lock) {
                    // Its creator holds the lock: being created right now.
                    None => f.push(ok(
                        "topics",
                        format!(
                            "segment {} (shmid {}) is being created by pid {}{}",
                            key_hex(e.key),
                            e.shmid,
                            match lock {
                                PublisherStatus::Alive { pid } => *pid,
                                _ => 0,
                            },
                            topic
                                .map(|t| format!(" (topic '{}')", t.name))
                                .unwrap_or_default()
                        ),
                    )),
                    Some((what, fix)) => {
                        // A configured topic whose publisher cannot finish
                        // it (this build knows the segment size of its
                        // sensor program, and it differs): only removal.
                        let wanted = topic.and_then(|t| {
                            t.publisher
                                .as_deref()
                                .and_then(shmbus_sensors::SensorKind::from_name)?
                                .segment_size(t.slots)
                        });
                        let fix = match wanted {
                            Some(w) if w != e.size && *lock == PublisherStatus::NotRunning => {
                                format!(
                                    "its publisher cannot finish it (the topic needs {w} bytes, the segment has {}): remove it, then start the publisher: `shmbus rm {}{}`",
                                    e.size,
                                    if discover::topic_key(e.key, &discover::config_keys()) {
                                        ""
                                    } else {
                                        "--force "
                                    },
                                    key_hex(e.key)
                                )
                            }
                            _ => fix,
                        };
                        match topic {
                            Some(t) => f.push(fail(
                                "topics",
                                format!("{what}; topic '{}' cannot be read", t.name),
                                fix,
                            )),
                            None => f.push(warn("topics", what, fix)),
                        }
                    }
                }
            }
            Row::Foreign(e) => {
                let what = format!(
                    "key {} holds a segment that is not a shmbus topic (shmid {}, created by {}, pid {})",
                    key_hex(e.key),
                    e.shmid,
                    user(e.cuid),
                    e.cpid
                );
                let fix = format!(
                    "if it is a squat, root removes it with `ipcrm -m {}` (`ipcs -m -p` shows who created it)",
                    e.shmid
                );
                match configured.iter().find(|t| t.key == e.key) {
                    Some(t) => f.push(fail(
                        "squat",
                        format!("{what}: topic '{}' cannot be created", t.name),
                        fix,
                    )),
                    None => f.push(warn("squat", what, fix)),
                }
            }
            Row::LockOnly(l) => {
                let held = l.status().is_alive();
                let state = super::list::lock_state(l);
                let topic = configured.iter().find(|t| t.key == l.key);
                let expected = topic.and_then(|t| t.to_topic().ok()?.publisher_uid);
                let what = format!(
                    "key {} holds a semaphore set with no segment (semid {}, {state}, created by {})",
                    key_hex(l.key),
                    l.semid,
                    user(l.cuid),
                );
                let fix = format!(
                    "remove it (as its owner or root): `{}`",
                    super::rm::lock_removal(l, &configured_keys)
                );
                match topic {
                    Some(t) if held || expected.is_some_and(|u| u != l.cuid) => f.push(fail(
                        "squat",
                        format!("{what}: the publisher of '{}' cannot take its lock", t.name),
                        fix,
                    )),
                    _ => f.push(warn(
                        "topics",
                        format!("{what}: a publisher lock left behind, or a squat"),
                        fix,
                    )),
                }
            }
            Row::Denied(_) => {}
        }
    }
    if !removed.is_empty() {
        f.push(ok(
            "topics",
            format!(
                "{} removed topic{} still attached: {}; the memory is freed when the last process detaches",
                removed.len(),
                if removed.len() == 1 { "" } else { "s" },
                removed.join(", ")
            ),
        ));
    }
    f.push(ok(
        "topics",
        format!("{} with a live publisher", count(healthy, "topic")),
    ));
    f
}

fn pub_word(p: &PublisherStatus) -> &'static str {
    match p {
        PublisherStatus::NotRunning => "its lock is free",
        PublisherStatus::NoLock => "no lock",
        _ => "unknown",
    }
}

/// The `sysctl.d` text that raises every kernel limit that FAILs: for each,
/// a comment saying what was found, then `name = value`. Empty when the
/// limits suffice.
pub fn sysctl_dropin(findings: &[Finding]) -> String {
    let mut s = String::new();
    for x in findings.iter().filter(|x| x.level == Level::Fail) {
        if let Some((name, value)) = &x.sysctl {
            s.push_str(&format!("# {}\n{name} = {value}\n", x.what));
        }
    }
    s
}

/// `shmbus doctor --sysctl`: print [`sysctl_dropin`] for the config. A
/// config that does not load, or a kernel without System V IPC, is an error
/// (exit 2): then no limit can be judged.
fn run_sysctl(a: &DoctorArgs) -> CmdResult {
    let loaded = Config::find(a.config.as_deref()).map_err(|e| Fail::error(e.to_string()))?;
    let all = findings_of(a, Ok(loaded));
    if let Some(x) = all
        .iter()
        .find(|x| x.check == "sysvipc" && x.level == Level::Fail)
    {
        return Err(Fail::error(format!(
            "{}; {}",
            x.what,
            x.fix.as_deref().unwrap_or_default()
        )));
    }
    let text = sysctl_dropin(&all);
    if !text.is_empty() {
        out::line(text.trim_end())?;
    }
    Ok(out::OK)
}

/// Run `shmbus doctor`.
pub fn run(a: &DoctorArgs) -> CmdResult {
    if a.sysctl {
        return run_sysctl(a);
    }
    let all = findings(a);
    // The verdict is the exit code whatever becomes of the output:
    // `shmbus doctor | head -3` with a FAIL further down exited 0 when
    // the pipe closed.
    let worst = all.iter().map(|x| x.level).max().unwrap_or(Level::Ok);
    let verdict = if worst == Level::Fail {
        out::NOTHING
    } else {
        out::OK
    };
    match print(&all) {
        Err(f) if f.msg.is_empty() => Ok(verdict),
        Err(f) => Err(f),
        Ok(()) => Ok(verdict),
    }
}

/// The most findings of one check at one level that are printed; the
/// rest are counted in one line. A squat or stale topic is a finding per
/// segment, and 4,000 foreign segments in the derived key range printed
/// 8,000 lines (on a serial console, minutes).
const MAX_SAME: usize = 20;

/// Print the findings, each with its fix, at most [`MAX_SAME`] of one
/// check and level, and for each such group cut a line with how many more
/// there are.
fn print(all: &[Finding]) -> Result<(), out::Fail> {
    let mut counts: Vec<(&str, Level, usize)> = Vec::new();
    for x in all {
        let n = match counts
            .iter_mut()
            .find(|(c, l, _)| *c == x.check && *l == x.level)
        {
            Some((_, _, n)) => {
                *n += 1;
                *n
            }
            None => {
                counts.push((x.check, x.level, 1));
                1
            }
        };
        if n <= MAX_SAME {
            print_one(x.level, x.check, &x.what, x.fix.as_deref())?;
        }
    }
    for (check, level, n) in counts {
        if n > MAX_SAME {
            print_one(
                level,
                check,
                &format!(
                    "and {} more {check} findings like those above, not shown ({n} in all)",
                    n - MAX_SAME
                ),
                Some(
                    "`shmbus list` shows every topic and squat, `ipcs -m -s -p` every segment and semaphore set with its creator; `shmbus doctor --key KEY` checks one key",
                ),
            )?;
        }
    }
    Ok(())
}

fn print_one(level: Level, check: &str, what: &str, fix: Option<&str>) -> Result<(), out::Fail> {
    let tag = match level {
        Level::Ok => "OK  ",
        Level::Warn => "WARN",
        Level::Fail => "FAIL",
    };
    out::line(&format!("{tag}  {check:<12} {what}"))?;
    if let Some(fix) = fix {
        for (i, l) in fix.lines().enumerate() {
            out::line(&format!(
                "      {:<12} {}{l}",
                "",
                if i == 0 { "fix: " } else { "     " }
            ))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_capabilities() {
        assert_eq!(
            cap_ipc_lock("Name:\tx\nCapEff:\t0000000000004000\n"),
            Some(true)
        );
        assert_eq!(cap_ipc_lock("CapEff:\t0000000000000000\n"), Some(false));
        assert_eq!(cap_ipc_lock("CapEff:\t000001ffffffffff\n"), Some(true));
        assert_eq!(cap_ipc_lock("nothing"), None);
    }

    #[test]
    fn sysctl_dropin_lists_only_failed_limits() {
        let all = vec![
            ok("shmmax", "fine".into()),
            fail("shmmni", "6 to create, limit 4".into(), "raise it".into())
                .with_sysctl("kernel.shmmni", 22),
            fail("memlock", "too small".into(), "LimitMEMLOCK=".into()),
            fail("shmall", "9 pages, limit 2".into(), "raise it".into())
                .with_sysctl("kernel.shmall", 18),
        ];
        assert_eq!(
            sysctl_dropin(&all),
            "# 6 to create, limit 4\nkernel.shmmni = 22\n# 9 pages, limit 2\nkernel.shmall = 18\n"
        );
        assert_eq!(sysctl_dropin(&all[..1]), "");
    }

    #[test]
    fn remove_ipc_follows_override_order_and_sections() {
        assert_eq!(remove_ipc(&["[Login]\n#RemoveIPC=no\n".into()]), None);
        assert_eq!(remove_ipc(&["[Login]\nRemoveIPC=no\n".into()]), Some(false));
        assert_eq!(
            remove_ipc(&[
                "[Login]\nRemoveIPC=no\n".into(),
                "[Login]\nRemoveIPC = yes\n".into()
            ]),
            Some(true)
        );
        assert_eq!(remove_ipc(&["[Other]\nRemoveIPC=no\n".into()]), None);
    }
}
