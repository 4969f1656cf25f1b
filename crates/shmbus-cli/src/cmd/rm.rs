//! `shmbus rm TOPIC...`: remove topics (segment and publisher lock).
//!
//! `IPC_RMID` frees the key at once; processes still attached keep their
//! mapping until they detach or exit, and subscribers see the topic as
//! removed. A live publisher would keep publishing into a segment nobody
//! new can find, so such topics are only removed with `--force`: one that
//! holds the lock, and one that publishes without it (its lock removed;
//! frames came within the last second and another comes within one).
//! Segments that are not shmbus topics are never removed.

use shmbus_core::lock::{self, RemovalHold};
use shmbus_core::sys;
use shmbus_core::{OpenError, PublisherStatus};

use crate::args::RmArgs;
use crate::discover::{self, LockOnly, Probe, Selector};
use crate::out::{self, CmdResult, Fail, key_hex};

/// Run `shmbus rm`.
///
/// Every topic named is removed (or refused) whatever happens to the
/// output: `shmbus rm a b c | head -1` used to stop at the first closed
/// pipe, leaving `b` and `c` in place and exiting 0.
pub fn run(a: &RmArgs, bus: Option<&str>) -> CmdResult {
    let mut worst = out::OK;
    let mut printing = true;
    for t in &a.topics {
        match remove_one(t, a.force, bus) {
            Ok(msg) if printing => {
                if let Err(f) = out::line(&msg) {
                    // A closed pipe is no error (its message is empty);
                    // any other write error is said once. Either way the
                    // rest is removed, unprinted.
                    printing = false;
                    if !f.msg.is_empty() {
                        out::notice(&format!(
                            "{}; the topics named after it are still removed, without a line each",
                            f.msg
                        ));
                        worst = worst.max(f.code);
                    }
                }
            }
            Ok(_) => {}
            Err(f) => {
                out::notice(&f.msg);
                worst = worst.max(f.code);
            }
        }
    }
    Ok(worst)
}

fn remove_one(arg: &str, force: bool, bus: Option<&str>) -> Result<String, Fail> {
    let e = match discover::resolve("rm", arg, bus) {
        Ok(e) => e,
        // No segment at that key: a lone lock there is removed too (a lock
        // left behind, or a squat that keeps the publisher from starting).
        Err(f) if f.code == out::NOTHING => {
            let key = match discover::parse_selector(arg) {
                Ok(Selector::Key(k)) => Some(k),
                Ok(Selector::Number(n)) => shmbus_toolbox::topic::number_as_key(n),
                _ => None,
            };
            return match key.and_then(discover::lock_only_at) {
                Some(l) => remove_lock_only(&l, force),
                None => Err(f),
            };
        }
        Err(f) => return Err(f),
    };
    let probe = discover::probe(&e);
    let seg = match &probe {
        Probe::Topic(s) => Some(s.as_ref()),
        _ => None,
    };
    let name = match &probe {
        Probe::Topic(s) => format!("'{}'", s.info().name),
        Probe::Foreign => {
            return Err(Fail::error(format!(
                "segment {} (shmid {}) is not a shmbus topic; refusing to remove another program's memory (use ipcrm -m {} if you are sure)",
                key_hex(e.key),
                e.shmid,
                e.shmid
            )));
        }
        Probe::Denied => {
            return Err(Fail::error(format!(
                "cannot read segment {} (shmid {}, owner {}): run as its owner or root",
                key_hex(e.key),
                e.shmid,
                shmbus_toolbox::units::user(e.uid)
            )));
        }
        Probe::Gone => return Err(Fail::not_found(format!("topic {arg} is already gone"))),
        // Broken shmbus segments are exactly what rm is for.
        Probe::Broken(e) if e.is_being_created() => "(being created)".to_string(),
        // Its creator died before the header: nothing is creating it. Or
        // it is another program's memory (still zeros) beside its mutex, a
        // set of one semaphore at the same key: only a topic key tells
        // them apart. Elsewhere --force decides, as for a lone lock.
        Probe::Broken(OpenError::NotReady { .. }) => {
            if !force && !discover::topic_key(e.key, &discover::config_keys()) {
                return Err(Fail::error(format!(
                    "segment {k} (shmid {}) is all zeros with one semaphore beside it, at a key outside those shmbus derives from names (0x53......) and those the config declares: a topic left half-created there, or another program's memory and its semaphore; refusing without --force (a topic with this explicit key that a crash left half-created: --force removes it)",
                    e.shmid,
                    k = key_hex(e.key)
                )));
            }
            "(left half-created)".to_string()
        }
        Probe::Broken(_) => "(broken)".to_string(),
    };
    if e.removed() {
        // Already removed (found by shmid): IPC_RMID again would change
        // nothing, and "removed topic" would claim a removal that did not
        // happen now.
        return Ok(format!(
            "topic {name} (shmid {}) was already removed; the {} process(es) still attached keep it until they detach or exit, and the memory is freed then",
            e.shmid, e.nattch
        ));
    }
    // Say "not allowed" before "stop it first, or use --force": --force
    // cannot help a user who may not remove the segment at all. (The kernel
    // lets its owner, its creator and CAP_SYS_ADMIN remove it; root stands
    // for the last, and the kernel has the final word below.)
    let euid = nix::unistd::geteuid().as_raw();
    if euid != 0 && euid != e.uid && euid != e.cuid {
        return Err(not_allowed(&name, &e));
    }
    // The publisher lock is taken for the removal, as a publisher takes
    // it: a publisher that started after a mere look at the lock would
    // have adopted the segment removed next, or created a new one whose
    // lock this removal then took from under it. A removed segment's key
    // is 0 (IPC_PRIVATE): no lock to take there.
    let hold = if e.key == 0 {
        RemovalHold::NoLock
    } else {
        lock::hold_for_removal(e.key)
    };
    if let RemovalHold::Alive { pid } = hold {
        if !force {
            return Err(Fail::error(format!(
                "topic {name} ({}) has a live publisher, pid {pid}: it would go on publishing into a removed segment that no new subscriber can find; stop it first, or use --force",
                key_hex(e.key)
            )));
        }
    }
    // No lock at all (`ipcrm -s`, systemd-logind's RemoveIPC): the lock
    // cannot say whether a publisher runs, the frames can. One that still
    // publishes was removed from under it without a word (`shmbus pub
    // --rate` and publishers that do not check went on into the removed
    // segment; the sensors made the topic again at once).
    let lockless = matches!(hold, RemovalHold::NoLock) && seg.is_some_and(publishing);
    if lockless && !force {
        return Err(Fail::error(format!(
            "topic {name} ({}) has no publisher lock, but frames still come: a publisher runs without its lock (removed by `ipcrm -s` or systemd-logind's RemoveIPC) and would go on publishing into a removed segment that no new subscriber can find; restart it (it takes a new lock) or stop it first, or use --force",
            key_hex(e.key)
        )));
    }
    sys::shm_remove(e.shmid).map_err(|err| {
        if err.errno == sys::Errno::EPERM {
            not_allowed(&name, &e)
        } else {
            Fail::error(format!(
                "cannot remove topic {name} ({}): {err}",
                key_hex(e.key)
            ))
        }
    })?;
    let hold_pid = match hold {
        RemovalHold::Alive { pid } => Some(pid),
        _ => None,
    };
    let removed_lock = match hold {
        // The lock this removal holds, by its semid.
        RemovalHold::Held(h) => h.remove().map(|()| true),
        RemovalHold::NoLock => Ok(false),
        // A live publisher's (--force), or one this user could not take.
        RemovalHold::Alive { .. } | RemovalHold::Unavailable(_) => lock::remove_lock(e.key),
    };
    let lock_note = match removed_lock {
        Ok(_) => String::new(),
        Err(_) => format!(
            " (its publisher lock could not be removed: remove it as its owner or root with `shmbus rm {}`)",
            key_hex(e.key)
        ),
    };
    let others = e.nattch;
    let attached = if others == 0 {
        "no process was attached; the memory is freed".to_string()
    } else {
        format!(
            "{others} process{} still attached keep{} reading the old frames until they detach or exit (subscribers see the topic as removed); the memory is freed then",
            if others == 1 { "" } else { "es" },
            if others == 1 { "s" } else { "" }
        )
    };
    let publisher = match hold_pid {
        Some(pid) => format!(
            "; publisher pid {pid} is still running and may create the topic again (shmbus's sensors do): stop it to keep the topic removed"
        ),
        None if lockless => "; a publisher was still publishing without its lock and may create the topic again (shmbus's sensors do): stop it to keep the topic removed".to_string(),
        None => String::new(),
    };
    Ok(format!(
        "removed topic {name} (key {}, shmid {}): {attached}{publisher}{lock_note}",
        key_hex(e.key),
        e.shmid
    ))
}

/// True if frames still come on `seg`: its newest frame is less than
/// [`LOOK_GAP`](shmbus_toolbox::liveness::LOOK_GAP) old and another one
/// comes within that long (the rule of `hz`, `top` and the library's waits
/// for a topic without a lock). Waits at most that long, and only for a
/// topic published to in the last second.
fn publishing(seg: &shmbus_core::Segment) -> bool {
    use shmbus_toolbox::liveness::LOOK_GAP;
    let gap = LOOK_GAP.as_nanos() as u64;
    let first = seg.generation();
    let last = seg.header().last_publish_mono_ns().load();
    let start = discover::now_ns();
    if first == 0 || start.saturating_sub(last) > gap {
        return false;
    }
    while discover::now_ns().saturating_sub(start) < gap {
        if seg.generation() != first {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// The kernel lets a segment's owner, its creator and root remove it.
fn not_allowed(name: &str, e: &discover::Entry) -> Fail {
    use shmbus_toolbox::units::user;
    let who = match (e.uid, e.cuid) {
        (0, 0) => "root may; run it as root".to_string(),
        (u, c) if u == c => format!("{} or root may; run it as one of them", user(u)),
        (u, c) => format!(
            "{} (owner), {} (creator) or root may; run it as one of them",
            user(u),
            user(c)
        ),
    };
    Fail::error(format!(
        "not allowed to remove topic {name} ({}): only {who}",
        key_hex(e.key)
    ))
}

/// Remove a lone publisher lock (a semaphore set of one at a key with no
/// segment).
/// True if `shmbus rm` removes the lone semaphore `l` (in state `status`)
/// only with `--force` (see [`remove_lock_only`]): a process holds it, or
/// its key is not a topic key (not in the derived range, not in
/// `topic_keys`, the config's keys), as `list` tells a lone lock from
/// another program's semaphore. What `doctor` suggests follows this.
pub fn needs_force(l: &LockOnly, status: &PublisherStatus, topic_keys: &[i32]) -> bool {
    matches!(status, PublisherStatus::Alive { .. }) || !discover::topic_key(l.key, topic_keys)
}

/// The command that removes the lone semaphore `l`, as `shmbus rm` takes
/// it: `shmbus rm KEY`, with `--force` where [`needs_force`] says so. Every
/// tool that tells how to remove a lone lock prints this one (`list`
/// printed `shmbus rm KEY` for a held one, which `rm` refuses).
pub fn lock_removal(l: &LockOnly, topic_keys: &[i32]) -> String {
    format!(
        "shmbus rm {}{}",
        if needs_force(l, &l.status(), topic_keys) {
            "--force "
        } else {
            ""
        },
        key_hex(l.key)
    )
}

/// A semaphore set with no segment at its key: a publisher lock left
/// behind, or one that squats a topic's key, or another program's
/// semaphore. Without `--force` it is removed only when it is nobody's
/// now (no live process holds it) and its key is a topic key (derived
/// from a name, `0x53......`, or the config's): a held semaphore belongs to a running process,
/// and one at another key may be another program's (`shmbus rm
/// 0x12345678` removed a semaphore a program held, and said so).
fn remove_lock_only(l: &LockOnly, force: bool) -> Result<String, Fail> {
    let k = key_hex(l.key);
    if l.nsems != 1 {
        return Err(Fail::error(format!(
            "key {k} holds a set of {} semaphores (semid {}) and no segment: not a shmbus publisher lock; refusing to remove another program's semaphores (use ipcrm -s {} if you are sure)",
            l.nsems, l.semid, l.semid
        )));
    }
    let before = l.status();
    if !force && needs_force(l, &before, &discover::config_keys()) {
        if let PublisherStatus::Alive { pid } = before {
            return Err(Fail::error(format!(
                "key {k} holds one semaphore (semid {}), held by pid {pid}, and no segment: a publisher lock squatting the key, a publisher creating its topic this moment, or another program's semaphore in use; refusing to take it from a running process (check `ps -p {pid}`), --force removes it",
                l.semid
            )));
        }
        return Err(Fail::error(format!(
            "key {k} holds one semaphore (semid {}) and no segment, at a key outside those shmbus derives from names (0x53......) and those the config declares: it may be another program's; refusing without --force (a lock a topic with this explicit key left behind: --force removes it)",
            l.semid
        )));
    }
    sys::sem_remove(l.semid).map_err(|err| {
        if err.errno == sys::Errno::EPERM {
            Fail::error(format!(
                "not allowed to remove the publisher lock at key {k} (semid {}): only its owner ({}), its creator ({}) or root may; run as one of them",
                l.semid,
                crate::out::user(l.uid),
                crate::out::user(l.cuid)
            ))
        } else {
            Fail::error(format!("cannot remove the publisher lock at key {k}: {err}"))
        }
    })?;
    let holder = match before {
        PublisherStatus::Alive { pid } => {
            format!("; pid {pid}, which held it, keeps running without it")
        }
        _ => String::new(),
    };
    Ok(format!(
        "removed the publisher lock at key {k} (semid {}, created by {}); there was no segment, so a publisher can create the topic again{holder}",
        l.semid,
        crate::out::user(l.cuid)
    ))
}
