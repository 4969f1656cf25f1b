//! Finding topics: every System V segment from `/proc/sysvipc/shm`, each
//! attached read-only and recognised by its header's magic. Foreign
//! segments are skipped and never written; nothing here writes at all.
//!
//! A TOPIC on the command line is a name (looked up in the headers), a key
//! (`0x5312abcd`, or decimal), or a shmid (decimal, or `shmid:N` to be
//! explicit; `key:N` forces a key).

use shmbus_config::names::{self, NameError, NameRule};
use shmbus_core::OpenError;
use shmbus_core::Segment;
use shmbus_core::sys::{self, SHM_DEST, SHM_LOCKED};
use shmbus_core::sysvipc::{self, ProcEntry};

use crate::out::{Fail, key_hex, user};

/// One segment from `/proc/sysvipc/shm`, with the columns the tool uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// System V key (0 once removed).
    pub key: i32,
    /// shmid.
    pub shmid: i32,
    /// Size in bytes.
    pub size: u64,
    /// Mode with `SHM_DEST`/`SHM_LOCKED`.
    pub mode: u32,
    /// Owner uid and gid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Creator uid (nobody can change it).
    pub cuid: u32,
    /// Current attachments.
    pub nattch: u64,
    /// Creator pid.
    pub cpid: i32,
}

impl Entry {
    fn from_proc(e: &ProcEntry) -> Entry {
        let (uid, gid, _) = e.owner();
        Entry {
            key: e.key(),
            shmid: e.id(),
            size: e.get("size").unwrap_or(0).max(0) as u64,
            // With SHM_DEST and SHM_LOCKED: `removed()` and `locked()` read them.
            mode: e.mode(),
            uid,
            gid,
            cuid: e.creator_uid(),
            nattch: e.get("nattch").unwrap_or(0).max(0) as u64,
            cpid: e.get("cpid").unwrap_or(0) as i32,
        }
    }
    /// True once `IPC_RMID` was called; it lingers while attached.
    pub fn removed(&self) -> bool {
        self.mode & SHM_DEST != 0
    }
    /// True while locked in RAM.
    pub fn locked(&self) -> bool {
        self.mode & SHM_LOCKED != 0
    }
}

/// Every segment on the machine.
pub fn entries() -> Result<Vec<Entry>, Fail> {
    let v = sysvipc::segments().map_err(|e| {
        Fail::error(format!(
            "cannot read /proc/sysvipc/shm ({e}): the kernel needs CONFIG_SYSVIPC and /proc mounted; run `shmbus doctor`"
        ))
    })?;
    Ok(v.iter().map(Entry::from_proc).collect())
}

/// The keys of the config found by the search order (none if no config
/// loads): where a shmbus topic may belong besides the derived-key range
/// ([`derived_range`]). A non-shmbus segment or a lone semaphore at such a
/// key is shown (a possible squat); elsewhere it is another program's
/// business. Read once per command: a caller that has loaded a config
/// already passes its keys instead (`doctor`), and `top` reads it once,
/// not once per refresh.
pub fn config_keys() -> Vec<i32> {
    shmbus_config::Config::find(None)
        .map(|(c, _)| c.topics.iter().map(|t| t.key).collect())
        .unwrap_or_default()
}

/// True for a key in the derived-key range (`0x53......`,
/// [`shmbus_core::topic::is_derived_key`]).
pub fn derived_range(key: i32) -> bool {
    shmbus_core::topic::is_derived_key(key)
}

/// True for a key where a topic belongs: the derived-key range, or one of
/// `config_keys` ([`config_keys`]). What `rm` removes without `--force`
/// when the segment or lock there cannot tell a topic from another
/// program's objects.
pub fn topic_key(key: i32, config_keys: &[i32]) -> bool {
    derived_range(key) || config_keys.contains(&key)
}

/// A semaphore set at a topic key with no segment there: a publisher lock
/// left behind, or a squat that stops the real publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOnly {
    /// Its key.
    pub key: i32,
    /// Its semid.
    pub semid: i32,
    /// Owner uid.
    pub uid: u32,
    /// Creator uid.
    pub cuid: u32,
    /// Permission bits.
    pub mode: u32,
    /// Semaphores in the set (a shmbus lock has one).
    pub nsems: i64,
}

impl LockOnly {
    /// The lock's state (GETVAL/GETPID; `Unknown` if unreadable).
    pub fn status(&self) -> shmbus_core::PublisherStatus {
        shmbus_core::lock::status_of(self.semid)
    }
}

/// The semaphore sets on the machine (`/proc/sysvipc/sem`), read once for
/// a whole listing and looked up by key.
#[derive(Debug, Default)]
pub struct Locks {
    sets: Vec<ProcEntry>,
    by_key: std::collections::HashMap<i32, usize>,
}

impl Locks {
    /// Read the table (empty if it cannot be read).
    pub fn read() -> Locks {
        #[cfg(test)]
        tests::SEM_READS.with(|n| n.set(n.get() + 1));
        let sets = sysvipc::semaphores().unwrap_or_default();
        let by_key = sets
            .iter()
            .enumerate()
            .filter(|(_, s)| s.key() != 0)
            .map(|(i, s)| (s.key(), i))
            .collect();
        Locks { sets, by_key }
    }

    /// The creator uid of the semaphore set at `key`, if any.
    pub fn creator_at(&self, key: i32) -> Option<u32> {
        self.by_key.get(&key).map(|&i| self.sets[i].creator_uid())
    }
}

/// The semaphore sets at `keys` (or at derived-range keys) where no live
/// segment is: lone locks.
pub fn lock_only(
    keys: &std::collections::HashSet<i32>,
    segments: &[Entry],
    locks: &Locks,
) -> Vec<LockOnly> {
    locks
        .sets
        .iter()
        .filter(|s| s.key() != 0)
        .filter(|s| keys.contains(&s.key()) || derived_range(s.key()))
        .filter(|s| !segments.iter().any(|e| e.key == s.key() && !e.removed()))
        .map(|s| {
            let (uid, _, mode) = s.owner();
            LockOnly {
                key: s.key(),
                semid: s.id(),
                uid,
                cuid: s.creator_uid(),
                mode,
                nsems: s.get("nsems").unwrap_or(0),
            }
        })
        .collect()
}

/// The lone lock at `key`, if any.
pub fn lock_only_at(key: i32) -> Option<LockOnly> {
    let segments = entries().ok()?;
    let keys = std::collections::HashSet::from([key]);
    lock_only(&keys, &segments, &Locks::read())
        .into_iter()
        .find(|l| l.key == key)
}

/// What a segment turned out to be.
#[derive(Debug)]
pub enum Probe {
    /// A valid shmbus topic, attached read-only.
    Topic(Box<Segment>),
    /// Could not be attached: permission denied by its mode.
    Denied,
    /// Starts with the shmbus magic but is unusable (corrupt, being
    /// created, unknown layout, wrong size); the error says what.
    Broken(OpenError),
    /// Another program's segment.
    Foreign,
    /// Gone between the listing and the attach.
    Gone,
}

/// Attach `e` read-only and classify it.
pub fn probe(e: &Entry) -> Probe {
    match Segment::attach_shmid(e.shmid, e.key) {
        Ok(s) => Probe::Topic(Box::new(s)),
        Err(OpenError::NotShmbus { .. }) => Probe::Foreign,
        // Smaller than a topic's header: never a topic, readable or not.
        // Each topic's waiter segment (128 B, key 0, the topic's mode) was
        // a second "(permission denied)" row, and counted by doctor.
        Err(OpenError::PermissionDenied { .. })
            if e.size < shmbus_core::layout::HEADER_FIXED_SIZE as u64 =>
        {
            Probe::Foreign
        }
        Err(OpenError::PermissionDenied { .. }) => Probe::Denied,
        Err(OpenError::Removed { .. } | OpenError::NotFound { .. }) => Probe::Gone,
        Err(OpenError::Corrupt {
            what: shmbus_core::layout::SMALLER_THAN_HEADER,
            ..
        }) => Probe::Foreign,
        Err(other) => Probe::Broken(other),
    }
}

pub use shmbus_toolbox::topic::Selector;

/// Parse a TOPIC argument (`shmbus_toolbox::topic`, shared with `record`
/// and `foxglove`). One that can name no topic fails with exit 2.
pub fn parse_selector(s: &str) -> Result<Selector, Fail> {
    Selector::parse(s).map_err(Fail::error)
}

/// Find the segment a TOPIC argument names (`cmd` is the command, for the
/// fixes messages suggest). A name is looked up as
/// `shmbus_config::names` says: at the key it derives from (on `bus` if
/// given), else among the caller's own and root's segments; another user's
/// segment is never taken under a name, only by key or shmid.
///
/// Errors: not found (exit 1) with a hint; ambiguous (exit 2) listing the
/// candidates' keys.
pub fn resolve(cmd: &str, arg: &str, bus: Option<&str>) -> Result<Entry, Fail> {
    let all = entries()?;
    let live = || all.iter().filter(|e| !e.removed());
    let hint = "see `shmbus list` for the topics on this machine";
    match parse_selector(arg)? {
        Selector::Key(k) => live()
            .find(|e| e.key == k)
            .cloned()
            .ok_or_else(|| Fail::not_found(format!("no segment with key {}; {hint}", key_hex(k)))),
        Selector::Shmid(id) => all
            .iter()
            .find(|e| e.shmid == id)
            .cloned()
            .ok_or_else(|| Fail::not_found(format!("no segment with shmid {id}; {hint}"))),
        Selector::Number(n) => {
            let segs = all.iter().map(|e| (e.key, e.shmid, e.removed()));
            match shmbus_toolbox::topic::number(n, segs).map_err(Fail::error)? {
                Some(Selector::Key(k)) => live().find(|e| e.key == k).cloned(),
                Some(Selector::Shmid(id)) => all.iter().find(|e| e.shmid == id).cloned(),
                _ => None,
            }
            .ok_or_else(|| Fail::not_found(format!("no segment with key or shmid {n}; {hint}")))
        }
        Selector::Name(name) => resolve_name(cmd, &name, bus, &all),
    }
}

/// Attach the topic `arg` names, read-only. Core refuses a header whose
/// generation is garbage (`OpenError::Corrupt`, with the `shmbus rm` fix).
pub fn attach(cmd: &str, arg: &str, bus: Option<&str>) -> Result<(Entry, Segment), Fail> {
    let e = resolve(cmd, arg, bus)?;
    match Segment::attach_shmid(e.shmid, e.key) {
        Ok(s) => Ok((e, s)),
        Err(err @ OpenError::PermissionDenied { .. }) => Err(denied(&e, &err)),
        Err(err) => {
            let mut f = open_fail(&err);
            f.msg = rm_order(f.msg, &e);
            Err(f)
        }
    }
}

/// `msg` (an error whose fix is `shmbus rm`), with the order that fix
/// takes while the topic's publisher still holds its lock: `shmbus rm`
/// refuses such a topic, so the publisher is stopped first.
fn rm_order(msg: String, e: &Entry) -> String {
    if !msg.contains("shmbus rm") {
        return msg;
    }
    match crate::cmd::broken_live_publisher(e) {
        Some(fix) => format!("{msg}; but {fix}"),
        None => msg,
    }
}

/// A topic this user may not read, with the fix TROUBLESHOOTING.md gives
/// ("A reader is refused: permissions"): join the topic's group, or give
/// the topic a readers' group; never widen its mode. Core's own text
/// ("change the topic's mode/group") said the opposite and named owner and
/// group by number only. When the mode does let this process read, the
/// refusal is someone else's (an LSM): core's text stands.
fn denied(e: &Entry, err: &OpenError) -> Fail {
    use nix::unistd::{Gid, getegid, geteuid, getgroups};
    let mode = e.mode & 0o777;
    let me = geteuid().as_raw();
    let in_group =
        getegid().as_raw() == e.gid || getgroups().is_ok_and(|g| g.contains(&Gid::from_raw(e.gid)));
    let granted =
        (me == e.uid && mode & 0o400 != 0) || (in_group && mode & 0o040 != 0) || mode & 0o004 != 0;
    if granted || me == 0 {
        return open_fail(err);
    }
    let group = crate::out::group_name(e.gid);
    let name = crate::out::user_name(me);
    let fix = if mode & 0o040 != 0 {
        format!(
            "add {name} to group {group} (`usermod -aG {group} {name}`, then log in again: a session keeps the groups it started with)"
        )
    } else {
        format!(
            "its mode lets no group read it: give the topic a readers' group in its config (`group = \"shmbus\"`, `mode = 0o640`), restart its publisher, and add {name} to that group (`usermod -aG shmbus {name}`, then log in again)"
        )
    };
    Fail::error(format!(
        "permission denied: {} may not read the topic at key {} (shmid {}; owner {}, group {group}, mode {mode:04o}): {fix}; do not make it readable by others (see SECURITY.md)",
        user(me),
        key_hex(e.key),
        e.shmid,
        user(e.uid),
    ))
}

/// After a reader's topic `name` at `key` was removed (its segment
/// `removed_shmid`): wait until a topic is created again at that key and
/// attach it, as a sensor that recreates its topic does within half a
/// second. Looks every 200 ms, and at standard output every second.
/// `Ok(None)`: a stop signal came, `deadline` (monotonic ns) passed, or
/// the key cannot come back (`IPC_PRIVATE`). Another program's memory, or
/// another topic, at the key is an error that says so.
pub fn attach_again(
    name: &str,
    key: i32,
    removed_shmid: i32,
    deadline: Option<u64>,
) -> Result<Option<Segment>, Fail> {
    if key == 0 {
        return Ok(None);
    }
    let mut look = now_ns();
    loop {
        let now = now_ns();
        if shmbus_toolbox::stop::requested() || deadline.is_some_and(|d| now >= d) {
            return Ok(None);
        }
        if now >= look {
            look = now + 1_000_000_000;
            if crate::out::reader_gone() {
                return Err(Fail::pipe());
            }
        }
        if let Ok(id) = sys::shmget(key, 0, 0)
            .map_err(|_| ())
            .and_then(|id| if id == removed_shmid { Err(()) } else { Ok(id) })
        {
            match Segment::attach_shmid(id, key) {
                Ok(s) if s.info().name == name => return Ok(Some(s)),
                Ok(s) => {
                    return Err(Fail::error(format!(
                        "topic '{name}' was removed, and key {} now holds topic '{}': see `shmbus list`",
                        key_hex(key),
                        s.info().name
                    )));
                }
                // Being created (or gone again): look again.
                Err(
                    OpenError::NotReady { .. }
                    | OpenError::NotFound { .. }
                    | OpenError::Removed { .. },
                ) => {}
                Err(e) => return Err(open_fail(&e)),
            }
        }
        let left = deadline.map_or(u64::MAX, |d| d.saturating_sub(now_ns()));
        std::thread::sleep(std::time::Duration::from_nanos(left.min(200_000_000)));
    }
}

/// An [`OpenError`] as a command failure: "not there" exits 1, the rest 2.
pub fn open_fail(e: &OpenError) -> Fail {
    match e {
        OpenError::NotFound { .. } | OpenError::Removed { .. } => Fail::not_found(e.to_string()),
        _ => Fail::error(e.to_string()),
    }
}

/// The generation of segment `e` now, attaching it briefly; `None` if it
/// is no longer a readable topic.
pub fn generation_of(e: &Entry) -> Option<(u64, u64)> {
    let s = Segment::attach_shmid(e.shmid, e.key).ok()?;
    let last = s.header().last_publish_mono_ns().load();
    Some((s.generation(), last))
}

/// `CLOCK_MONOTONIC` now, ns.
pub fn now_ns() -> u64 {
    sys::monotonic_ns()
}

/// The name branch of [`resolve`].
fn resolve_name(cmd: &str, name: &str, bus: Option<&str>, all: &[Entry]) -> Result<Entry, Fail> {
    let (rule, config_note) = NameRule::for_name(name, bus);
    if let Some(n) = config_note {
        crate::out::notice(&n);
    }
    let me = nix::unistd::geteuid().as_raw();
    let keys: Vec<String> = rule.keys.iter().map(|k| key_hex(*k)).collect();
    let keys = keys.join(" or ");
    let who = user;
    match names::resolve(&rule, me) {
        Ok(f) => all
            .iter()
            .find(|e| e.shmid == f.shmid)
            .cloned()
            .ok_or_else(|| Fail::not_found(format!("topic '{name}' is gone; see `shmbus list`"))),
        Err(NameError::Squatted {
            key,
            uid,
            cuid,
            expected,
        }) => Err(Fail::error(names::squatted_text(
            &rule, key, uid, cuid, expected,
        ))),
        // `rm` is how a broken topic goes away (TROUBLESHOOTING.md, "After
        // an upgrade": `shmbus rm NAME`): the segment at the name's own key,
        // which rm by key removes, is removed by name too; rm's own probe
        // says what it was. Every other command cannot read it.
        Err(NameError::Unusable { shmid, .. }) if cmd == "rm" => all
            .iter()
            .find(|e| e.shmid == shmid)
            .cloned()
            .ok_or_else(|| Fail::not_found(format!("topic '{name}' is gone; see `shmbus list`"))),
        Err(NameError::Unusable { error, shmid, .. }) => {
            let msg = format!("no readable topic named '{name}': {error}");
            let msg = match all.iter().find(|e| e.shmid == shmid) {
                Some(e) => rm_order(msg, e),
                None => msg,
            };
            Err(if error.is_being_created() {
                Fail::not_found(msg)
            } else {
                Fail::error(msg)
            })
        }
        Err(NameError::NotFound { others, foreign }) => {
            let squat = foreign
                .as_ref()
                .map(|f| format!("; {}", shmbus_config::names::foreign_text(f)))
                .unwrap_or_default();
            if others.is_empty() {
                let on = bus.map(|b| format!(" on bus '{b}'")).unwrap_or_default();
                if foreign.is_some() {
                    // There, but not a topic: exit 2, as every "there but
                    // unusable" is; a publisher is not what is missing.
                    return Err(Fail::error(format!(
                        "no topic named '{name}'{on} (its key: {keys}){squat}"
                    )));
                }
                return Err(Fail::not_found(format!(
                    "no topic named '{name}'{on} (its key: {keys}): is its publisher running? see `shmbus list` for the topics on this machine"
                )));
            }
            let list: Vec<String> = others
                .iter()
                .map(|o| {
                    format!(
                        "key {} (created by {}, owner {})",
                        key_hex(o.key),
                        who(o.cuid),
                        who(o.uid)
                    )
                })
                .collect();
            Err(Fail::error(format!(
                "no topic '{name}' at its key {keys} ({}){squat}; {} segment{} named '{name}' belong{} to other users and {} not taken under the name: {}; if you trust it, give its key: `{}`",
                rule.source,
                others.len(),
                if others.len() == 1 { "" } else { "s" },
                if others.len() == 1 { "s" } else { "" },
                if others.len() == 1 { "is" } else { "are" },
                list.join(", "),
                retyped(cmd, name, &key_hex(others[0].key)),
            )))
        }
        Err(NameError::Ambiguous { keys }) => {
            let keys: Vec<String> = keys.iter().map(|k| key_hex(*k)).collect();
            Err(Fail::error(format!(
                "{} topics are named '{name}' (keys {}) and none is the only one with a live publisher; give the key instead of the name: `{}`",
                keys.len(),
                keys.join(", "),
                retyped(cmd, name, &keys[0])
            )))
        }
    }
}

/// The command line as typed, with the topic argument `name` replaced by
/// `key`, quoted for a POSIX shell: a fix that works when pasted, options
/// and the JSON of `pub` included (`shmbus {cmd} KEY` alone lacked them).
fn retyped(cmd: &str, name: &str, key: &str) -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    retyped_from(&args, cmd, name, key)
}

fn retyped_from(args: &[String], cmd: &str, name: &str, key: &str) -> String {
    let mut words = vec!["shmbus".to_string()];
    let mut replaced = false;
    let mut after_cmd = false;
    for a in args {
        if after_cmd && !replaced && a == name {
            words.push(key.to_string());
            replaced = true;
        } else {
            words.push(shell_word(a));
        }
        after_cmd |= a == cmd;
    }
    if !replaced {
        // Not found as typed (an alias, or called from a test): the short form.
        return format!("shmbus {cmd} {key}");
    }
    words.join(" ")
}

/// `w` quoted for a POSIX shell if it needs it.
fn shell_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=,@%+-".contains(&b));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    thread_local! {
        /// Reads of the semaphore table by this thread ([`Locks::read`]).
        pub(crate) static SEM_READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    #[test]
    fn fixes_repeat_the_command_line_with_the_key() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            retyped_from(
                &a(&["pub", "imu", r#"{"a": 1, "s": "it's"}"#]),
                "pub",
                "imu",
                "0x53000001"
            ),
            r#"shmbus pub 0x53000001 '{"a": 1, "s": "it'\''s"}'"#
        );
        assert_eq!(
            retyped_from(
                &a(&["echo", "--count", "1", "imu", "--json"]),
                "echo",
                "imu",
                "0x5300000a"
            ),
            "shmbus echo --count 1 0x5300000a --json"
        );
        // The command's own name is not the topic.
        assert_eq!(
            retyped_from(&a(&["echo", "echo"]), "echo", "echo", "0x1"),
            "shmbus echo 0x1"
        );
        assert_eq!(
            retyped_from(&a(&[]), "info", "imu", "0x1"),
            "shmbus info 0x1"
        );
    }
}
