//! # shmbus-config: topic configuration files
//!
//! A TOML file declares a bus and its topics (name, key, slots, mode, group,
//! lock policy, notification, expected publisher, rate and staleness), and
//! optionally what `shmbus bridge` sends to a broker and takes back (the
//! `[bridge]` table, module [`bridge`]). Loading checks everything and reports **every** problem (the first [`MAX_ERRORS`] in full), one
//! `path:line:col: message` per line, each message saying the fix; of a
//! file over [`RECOVER_BYTES`] whose TOML syntax is broken, the first
//! syntax error.
//! The format and the search order are documented in `configs/README.md`.
//! Module [`names`] says which segment a topic name means to the tools.
//!
//! ```
//! use shmbus_config::Config;
//!
//! let cfg = Config::parse("bus = \"lab\"\n[[topic]]\nname = \"imu\"\nslots = 64\n", "lab.toml")?;
//! let imu = cfg.topic("imu").unwrap();
//! assert_eq!(imu.key, shmbus_core::topic::derive_key("lab", "imu"));
//! let topic = imu.to_topic()?; // a shmbus_core::Topic for Publisher::open
//! assert_eq!(topic.slots, 64);
//!
//! let err = Config::parse("[[topic]]\nname = \"imu\"\nslots = 3\n", "bad.toml").unwrap_err();
//! assert_eq!(err.to_string(), "bad.toml:3:9: slots = 3 must be a power of two from 1 to 65536: use slots = 4");
//! # Ok::<(), shmbus_config::ConfigErrors>(())
//! ```
#![warn(missing_docs)]
// Not `eprintln!`: it panics when stderr cannot be written (`shmbus_toolbox::say!`).
#![warn(clippy::print_stderr)]

pub mod bridge;
mod error;
mod find;
pub mod names;
mod parse;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bridge;
#[cfg(test)]
mod tests_names;

use shmbus_core::topic::{derive_key, shown};
use shmbus_core::{LockPolicy, Topic};

pub use error::{ConfigError, ConfigErrors, Location, MAX_ERRORS};
pub use find::{BUILTIN_DEMO, BUILTIN_PATH, ConfigSource, ENV_VAR, SYSTEM_PATH};

/// A loaded, validated configuration: a bus and its topics.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The bus name; derived keys are `derive_key(bus, topic name)`.
    pub bus: String,
    /// The topics, in file order.
    pub topics: Vec<TopicConfig>,
    /// The `[bridge]` table, if the file has one (`shmbus bridge`).
    pub bridge: Option<bridge::BridgeConfig>,
    /// Where the config came from, as used in messages.
    pub path: String,
}

/// One topic of a config, as written (user and group still names).
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    /// Topic name.
    pub name: String,
    /// System V key (never 0).
    pub key: i32,
    /// True if the key was derived from the bus and topic names (no `key =`).
    pub key_derived: bool,
    /// Ring size, a power of two (default 16).
    pub slots: u32,
    /// Permission bits (default 0o644).
    pub mode: u32,
    /// Group of the segment: a name or a numeric gid (default: the publisher's).
    pub group: Option<String>,
    /// `SHM_LOCK` policy (default "try").
    pub lock: LockPolicy,
    /// Futex wake-ups for blocking subscribers (default true).
    pub notify: bool,
    /// The user expected to publish: subscribers refuse a segment owned by
    /// anyone else. A name or a numeric uid (default: not checked).
    pub publisher_user: Option<String>,
    /// Expected publish rate, frames per second.
    pub rate_hz: Option<f64>,
    /// A frame older than this is stale.
    pub max_age_ms: Option<u64>,
    /// The program that publishes this topic (e.g. `shmbus-sensor-imu`).
    pub publisher: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Where the topic's `name` is written.
    pub at: Location,
    /// Where `group` is written (in the topic or in `[defaults]`).
    pub group_at: Option<Location>,
    /// Where `publisher_user` is written.
    pub user_at: Option<Location>,
    /// Where `max_age_ms` is written (in the topic or in `[defaults]`).
    pub max_age_at: Option<Location>,
}

/// The largest config file [`Config::load`] reads: 1 MiB (the demo
/// config is about 3 KiB; a hundred topics fit in 30 KiB).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The largest text whose TOML syntax errors are all collected (and the
/// first [`MAX_ERRORS`] listed); of a larger text only the first one is.
/// The TOML parser keeps every error it recovers from, and a file that is
/// not a config at all (a log, a script, a line of garbage repeated) has
/// one or more on every line: 1 MiB of `=` lines, the largest file
/// [`Config::load`] takes, cost 426 MB of heap, enough to get `doctor`
/// killed on a 256 MiB board. Stopping at the first error leaves the
/// parser's own tokens and events, as for a valid file of the same lines:
/// 108 MB for that file on x86_64 and 54 MB on ARMv7, 25 and 13 MB for a
/// 1 MiB kernel log (`tests/memory.rs`). A hand-written config is a few
/// KiB.
pub const RECOVER_BYTES: usize = 64 * 1024;

/// "cannot read the config: ...": for permission denied, who this process
/// runs as, whose the file is, and the fix (`shmbus_toolbox::files`).
pub(crate) fn cannot_read(path: &std::path::Path, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        let why = shmbus_toolbox::files::permission_denied("this program", path);
        return format!("cannot read the config: {why}");
    }
    format!("cannot read the config: {e}")
}

fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| cannot_read(path, &e))?;
    let kind = file
        .metadata()
        .map_err(|e| format!("cannot read the config: {e}"))?
        .file_type();
    if kind.is_dir() {
        return Err("cannot read the config: it is a directory; give a .toml file".into());
    }
    if kind.is_char_device() || kind.is_block_device() || kind.is_socket() {
        return Err(
            "cannot read the config: it is a device or socket, not a file; give a .toml file"
                .into(),
        );
    }
    if kind.is_fifo() {
        // A pipe can be read once: what this process read of it first is
        // what every later load of it gets (see `PIPES`).
        use std::os::unix::fs::MetadataExt;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read the config: {e}"))?;
        let id = (meta.dev(), meta.ino());
        let Some(reads) = pipe_reads(PIPES_WAIT) else {
            return read_pipe(file);
        };
        if let Some((_, first)) = reads.iter().find(|(key, _)| *key == id) {
            return first.clone();
        }
        drop(reads);
        let got = read_pipe(file);
        if !matches!(&got, Ok(b) if b.is_empty()) {
            if let Some(mut reads) = pipe_reads(PIPES_WAIT) {
                reads.push((id, got.clone()));
            }
        }
        return got;
    }
    read_to_limit(file)
}

/// What this process read of each pipe it loaded a config from (by device
/// and inode), and of each that was too long. A pipe (`--config <(...)`,
/// `SHMBUS_CONFIG=/dev/fd/N`, a FIFO) gives its text once: a tool that
/// loads the config twice (`doctor --sysctl` checks it, then computes the
/// limits; a name is resolved by loading it again) got "no topics" the
/// second time, or the rest of an over-long input, and went on with the
/// built-in bus or no topics at all. Nothing is kept of an empty read
/// (no writer yet): a later load may still find one.
///
/// Not a `OnceLock`, and never waited on without bound: the child of a
/// `fork()` made while a parent thread held it (for the microseconds of a
/// look-up) would have blocked on it for ever in its next load (a C or
/// Python program that forks from one thread while another opens a topic
/// by its config). [`pipe_reads`] gives up after [`PIPES_WAIT`], and the
/// load then reads the pipe without the record.
type PipeReads = Vec<((u64, u64), Result<Vec<u8>, String>)>;
static PIPES: std::sync::Mutex<PipeReads> = std::sync::Mutex::new(Vec::new());

/// How long a load waits for [`PIPES`]: a live holder keeps it for a
/// look-up or an insert; a holder that never lets go is a parent thread
/// of a `fork()` child.
const PIPES_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// [`PIPES`], if it can be had within `wait`.
fn pipe_reads(wait: std::time::Duration) -> Option<std::sync::MutexGuard<'static, PipeReads>> {
    let start = std::time::Instant::now();
    loop {
        match PIPES.try_lock() {
            Ok(reads) => return Some(reads),
            Err(std::sync::TryLockError::Poisoned(e)) => return Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if start.elapsed() < wait => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            Err(std::sync::TryLockError::WouldBlock) => return None,
        }
    }
}

fn read_pipe(file: std::fs::File) -> Result<Vec<u8>, String> {
    read_pipe_within(file, PIPE_IDLE)
}

/// How long a config pipe's writer may send nothing without closing it
/// before [`Config::load`] gives up: a writer that holds the pipe open and
/// stalls (a stuck `<(...)` command, a FIFO a process opened and forgot)
/// blocked the load, and every tool and the C library with it, for as long
/// as the writer lived.
pub const PIPE_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// Read a pipe (opened with `O_NONBLOCK`) to its end, up to
/// [`MAX_CONFIG_BYTES`], waiting at most `idle` for each next byte.
fn read_pipe_within(file: std::fs::File, idle: std::time::Duration) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut file = file;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut since = std::time::Instant::now();
    loop {
        match file.read(&mut chunk) {
            Ok(0) => return Ok(bytes),
            Ok(n) => {
                bytes.extend_from_slice(&chunk[..n]);
                if bytes.len() as u64 > MAX_CONFIG_BYTES {
                    return Err(format!(
                        "the config is larger than {} KiB; a config file is a few KiB: is this the right file?",
                        MAX_CONFIG_BYTES / 1024
                    ));
                }
                since = std::time::Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = idle.saturating_sub(since.elapsed());
                if left.is_zero() {
                    return Err(format!(
                        "cannot read the config: its pipe's writer sent nothing for {} s and did not close it (is the command writing it stuck?)",
                        idle.as_secs_f64()
                    ));
                }
                let mut pfd = libc::pollfd {
                    fd: file.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
                // SAFETY: one valid pollfd for an open descriptor; the
                // result is checked below only as "ready or not".
                unsafe { libc::poll(&mut pfd, 1, ms) };
            }
            Err(e) => return Err(format!("cannot read the config: {e}")),
        }
    }
}

/// Read `file` up to [`MAX_CONFIG_BYTES`]; more is an error.
fn read_to_limit(file: std::fs::File) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the config: {e}"))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "the config is larger than {} KiB; a config file is a few KiB: is this the right file?",
            MAX_CONFIG_BYTES / 1024
        ));
    }
    Ok(bytes)
}

/// Where the first byte that is not UTF-8 is, and the one line that says
/// what to do: a config is edited by line, and a Latin-1 `é` in a
/// description was otherwise a hunt by byte offset.
fn not_utf8(bytes: &[u8]) -> (Option<(usize, usize)>, String) {
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return (
            None,
            "cannot read the config: it is UTF-16 text (it starts with a UTF-16 byte order mark): save it as UTF-8".into(),
        );
    }
    let bad = match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) => e.valid_up_to(),
    };
    // The text before the bad byte is UTF-8 by definition.
    let before = std::str::from_utf8(&bytes[..bad]).unwrap_or("");
    let at = Location::of_offset("", before, bad);
    (
        Some((at.line, at.col)),
        format!(
            "cannot read the config: it is not UTF-8 text: byte {bad} is 0x{:02x}, which UTF-8 does not allow here (Latin-1 or another 8-bit encoding?): save the file as UTF-8",
            bytes.get(bad).copied().unwrap_or(0)
        ),
    )
}

impl Config {
    /// Parse and validate `text`. `path` is only used in messages.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigErrors> {
        parse::parse(text, path)
    }

    /// Read and parse the file at `path`: a regular file or a pipe
    /// (`--config <(...)`) of at most [`MAX_CONFIG_BYTES`].
    ///
    /// Never blocks on a FIFO that nobody writes (it is opened with
    /// `O_NONBLOCK`: no writer reads as empty), waits at most
    /// [`PIPE_IDLE`] for a pipe's writer that sends nothing and does not
    /// close it (an error then), and never reads without
    /// bound (`/dev/zero`, a growing file): a device is refused, a longer
    /// input is an error naming the limit. A pipe is read once per
    /// process: every later load of it gets what the first one got, the
    /// text or the error. A file that is not UTF-8 is refused at the
    /// `line:col` of its first byte that is not.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigErrors> {
        let shown = path.display().to_string();
        let bytes =
            read_bounded(path).map_err(|msg| ConfigErrors::one(Location::file(&shown), msg))?;
        match String::from_utf8(bytes) {
            Ok(text) => Config::parse(&text, &shown),
            Err(e) => {
                let (at, msg) = not_utf8(e.as_bytes());
                let at = match at {
                    Some((line, col)) => Location {
                        path: shown,
                        line,
                        col,
                    },
                    None => Location::file(&shown),
                };
                Err(ConfigErrors::one(at, msg))
            }
        }
    }

    /// The demo config compiled into the program (`configs/demo.toml`).
    pub fn builtin_demo() -> Config {
        Config::parse(BUILTIN_DEMO, BUILTIN_PATH)
            .expect("the built-in demo config is valid (tested)")
    }

    /// The topic called `name`.
    pub fn topic(&self, name: &str) -> Option<&TopicConfig> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// Where the config came from, as a message shows it: whole, with
    /// control characters escaped (`\u001b`), so a path from a command line
    /// or `$SHMBUS_CONFIG` cannot drive the terminal.
    pub fn path_shown(&self) -> std::borrow::Cow<'_, str> {
        error::path_shown(&self.path)
    }

    /// The topic called `name`, or an error listing the topics there are.
    pub fn require_topic(&self, name: &str) -> Result<&TopicConfig, String> {
        self.topic(name).ok_or_else(|| {
            // The name comes from a command line (`--topic`) and the path
            // from `--config` or `$SHMBUS_CONFIG`: both escaped and cut,
            // as every message quotes outside text.
            let names: Vec<&str> = self.topics.iter().map(|t| t.name.as_str()).collect();
            format!(
                "{}: no topic `{}`; the topics are: {}",
                error::path_shown(&self.path),
                error::arg_shown(name),
                names.join(", ")
            )
        })
    }

    /// Move the config to another bus: derived keys are derived again from
    /// `bus` (explicit keys stay). Fails if the new keys collide.
    pub fn rebus(&mut self, bus: &str) -> Result<(), ConfigErrors> {
        shmbus_core::topic::validate_bus(bus)
            .map_err(|e| ConfigErrors::one(Location::file(&self.path), format!("bus: {e}")))?;
        self.bus = bus.to_string();
        for t in &mut self.topics {
            if t.key_derived {
                t.key = derive_key(bus, &t.name);
            }
        }
        let mut errs = ConfigErrors::default();
        parse::check_unique(self, &mut errs);
        errs.into_result(())
    }

    /// What in the config works but is most likely not meant, one
    /// `path:line:col: message` each (`shmbus doctor --config` prints them
    /// as warnings; loading never fails for them): a `max_age_ms` of at
    /// most one period of the topic's `rate_hz`, which makes the topic
    /// stale between every two frames of a publisher that keeps its rate;
    /// two topic names that differ only in case (`IMU`, `imu`: two topics
    /// with two keys, that a user types one for the other).
    pub fn warnings(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        for (i, t) in self.topics.iter().enumerate() {
            if let Some(first) = self.topics[..i]
                .iter()
                .find(|f| f.name != t.name && f.name.eq_ignore_ascii_case(&t.name))
            {
                out.push(ConfigError {
                    at: t.at.clone(),
                    message: format!(
                        "topic `{}` differs from topic `{}` (line {}) only in case: they are two topics with two keys; rename one if they are meant to be one",
                        shown(&t.name),
                        shown(&first.name),
                        first.at.line
                    ),
                });
            }
        }
        for t in &self.topics {
            let (Some(ms), Some(hz)) = (t.max_age_ms, t.rate_hz) else {
                continue;
            };
            let period_ms = 1000.0 / hz;
            if ms as f64 > period_ms {
                continue;
            }
            let three = (3.0 * period_ms).ceil() as u64;
            out.push(ConfigError {
                at: t.max_age_at.clone().unwrap_or_else(|| t.at.clone()),
                message: format!(
                    "topic `{}`: max_age_ms = {ms} is not more than one period of its rate_hz = {hz} ({} ms): a frame is stale before the next one is due, so the topic is reported stale between frames while its publisher keeps its rate; use max_age_ms = {three} (three periods, the staleness without max_age_ms) or more",
                    shown(&t.name),
                    shown_ms(period_ms),
                ),
            });
        }
        out
    }

    /// The same config, named `path` in messages.
    pub fn with_path(mut self, path: &str) -> Config {
        self.path = path.to_string();
        for t in &mut self.topics {
            for at in [
                Some(&mut t.at),
                t.group_at.as_mut(),
                t.user_at.as_mut(),
                t.max_age_at.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                at.path = path.to_string();
            }
        }
        if let Some(b) = self.bridge.as_mut() {
            for at in b.locations_mut() {
                at.path = path.to_string();
            }
        }
        self
    }

    pub(crate) fn empty(path: &str) -> Config {
        Config {
            bus: shmbus_core::topic::DEFAULT_BUS.to_string(),
            topics: Vec::new(),
            bridge: None,
            path: path.to_string(),
        }
    }
}

impl TopicConfig {
    /// The [`Topic`] to open or attach, with the group and publisher user
    /// resolved to ids on this machine (`getgrnam`/`getpwnam`).
    pub fn to_topic(&self) -> Result<Topic, ConfigErrors> {
        let mut errs = ConfigErrors::default();
        let mut topic = Topic::on_bus("x", &self.name)
            .key(self.key)
            .slots(self.slots)
            .mode(self.mode)
            .lock(self.lock)
            .notify(self.notify);
        if let Some(g) = &self.group {
            let at = self.group_at.clone().unwrap_or_else(|| self.at.clone());
            match resolve_group(g) {
                Ok(gid) => topic = topic.group(gid),
                Err(e) => errs.push(at, e),
            }
        }
        if let Some(u) = &self.publisher_user {
            let at = self.user_at.clone().unwrap_or_else(|| self.at.clone());
            match resolve_user(u) {
                Ok(uid) => topic = topic.publisher_uid(uid),
                Err(e) => errs.push(at, e),
            }
        }
        if let Err(e) = topic.validate() {
            errs.push(self.at.clone(), e.to_string());
        }
        errs.into_result(topic)
    }

    /// True if a frame of this age is stale (`max_age_ms`, or else three
    /// periods of `rate_hz`; never stale if neither is set).
    pub fn is_stale(&self, age: std::time::Duration) -> bool {
        match (self.max_age_ms, self.rate_hz) {
            (Some(ms), _) => age.as_millis() > u128::from(ms),
            (None, Some(hz)) => age.as_secs_f64() > 3.0 / hz,
            (None, None) => false,
        }
    }
}

/// Milliseconds as a message shows them: `10`, `333.3`, `0.001`.
fn shown_ms(ms: f64) -> String {
    let s = format!("{ms:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Why `s`, the `field` (`group` or `publisher_user`) of a topic, can
/// name no id, if it is a number: a negative one, one over 32 bits, or
/// 4294967295, which is `(gid_t)-1` / `(uid_t)-1`, the kernel's "no id"
/// (`shmctl(IPC_SET)` refuses it with EINVAL, so no publisher could give
/// the segment that group, and no segment can belong to that user).
pub(crate) fn id_problem(s: &str, field: &str) -> Option<String> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let what = if field == "group" { "gid" } else { "uid" };
    match s.parse::<u32>() {
        Ok(u32::MAX) => Some(format!(
            "`{field}` = {s} is ({what}_t)-1, which the kernel reserves for \"no {what}\" (a publisher would fail with EINVAL): give the real {what} or a name"
        )),
        Ok(_) => None,
        Err(_) => Some(format!(
            "`{field}` = {} is not a valid {what}: ids are from 0 to 4294967294; give the real {what} or a name",
            shown(s)
        )),
    }
}

fn resolve_group(g: &str) -> Result<u32, String> {
    if let Some(p) = id_problem(g, "group") {
        return Err(p);
    }
    if let Ok(gid) = g.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(g) {
        Ok(Some(grp)) => Ok(grp.gid.as_raw()),
        Ok(None) => Err(format!(
            "group `{}` does not exist on this machine: create it (groupadd --system {}) or change `group`",
            shown(g),
            shown(g)
        )),
        Err(e) => Err(format!("cannot look up group `{}`: {e}", shown(g))),
    }
}

fn resolve_user(u: &str) -> Result<u32, String> {
    if let Some(p) = id_problem(u, "publisher_user") {
        return Err(p);
    }
    if let Ok(uid) = u.parse::<u32>() {
        return Ok(uid);
    }
    match nix::unistd::User::from_name(u) {
        Ok(Some(user)) => Ok(user.uid.as_raw()),
        Ok(None) => Err(format!(
            "user `{}` does not exist on this machine: create it (useradd --system {}) or change `publisher_user`",
            shown(u),
            shown(u)
        )),
        Err(e) => Err(format!("cannot look up user `{}`: {e}", shown(u))),
    }
}
