//! Re-executing this binary as a role (publisher, subscriber, intruder),
//! optionally as another user, and reading its report lines.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use shmbus_testkit::{Guard, KillOnDrop, unique_key};

/// A user to run a role as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

impl User {
    /// Look `name` up in /etc/passwd; `fallback` (uid = gid) if it is not there
    /// (host runs on a machine without the board's users).
    pub fn lookup(name: &str, fallback: u32) -> User {
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => User {
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            },
            _ => User {
                uid: fallback,
                gid: fallback,
            },
        }
    }
}

/// The board's writer user (`sensor`, 1000) and an unprivileged stranger
/// (`intruder`, 1001), as written by ci/board/mkinitramfs.sh.
pub fn sensor() -> User {
    User::lookup("sensor", 1000)
}

/// See [`sensor`].
pub fn intruder() -> User {
    User::lookup("intruder", 1001)
}

/// A topic owned by `sensor`: mode 0640, group sensor, lock required.
pub struct BoardTopic {
    pub key: i32,
    pub name: String,
    _guard: Guard,
}

impl BoardTopic {
    pub fn new(name: &str) -> BoardTopic {
        let key = unique_key(name);
        BoardTopic {
            key,
            name: format!("board/{name}"),
            _guard: Guard(key),
        }
    }

    /// The role arguments naming this topic.
    pub fn args(&self, extra: &[(&str, String)]) -> Vec<String> {
        let mut v = vec![
            ("key", format!("0x{:08x}", self.key as u32)),
            ("name", self.name.clone()),
            ("mode", "640".to_string()),
            ("group", sensor().gid.to_string()),
            ("lock", "required".to_string()),
        ];
        v.extend(extra.iter().cloned());
        args(&v)
    }

    pub fn stat(&self) -> Result<shmbus_core::sys::ShmStat, String> {
        let id = shmbus_core::sys::shmget(self.key, 0, 0).map_err(|e| format!("shmget: {e}"))?;
        shmbus_core::sys::shm_stat(id).map_err(|e| format!("IPC_STAT: {e}"))
    }
}

/// A running role: killed on drop; its stdout lines arrive on a channel.
pub struct Proc {
    child: KillOnDrop,
    lines: Receiver<String>,
    /// The role, for messages.
    pub role: String,
}

/// Start `role` with `args`, as `user` (or as the caller).
///
/// Runs `/proc/self/exe` again; with `SHMBUS_TEST_RUNNER` set (e.g.
/// `qemu-arm -L /usr/arm-linux-gnueabihf`), through that runner, because a
/// qemu-user process cannot exec an ARM binary itself.
pub fn start(role: &str, args: &[String], user: Option<User>) -> Result<Proc, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut cmd = shmbus_testkit::command(&exe);
    cmd.arg(role)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if let Some(u) = user {
        // std calls setgroups(0) first when the parent is root, then setgid, setuid.
        cmd.uid(u.uid).gid(u.gid);
    }
    let mut child = cmd.spawn().map_err(|e| format!("spawn {role}: {e}"))?;
    let out = child.stdout.take().ok_or("no stdout pipe")?;
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(Proc {
        child: KillOnDrop(child),
        lines: rx,
        role: role.to_string(),
    })
}

impl Proc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Wait up to `limit` for a line starting with `prefix`; return the rest
    /// of it. Other lines are skipped.
    pub fn expect(&mut self, prefix: &str, limit: Duration) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.trim().to_string());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "{}: no '{prefix}' line within {limit:?}",
                        self.role
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self
                        .child
                        .0
                        .wait()
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    return Err(format!(
                        "{}: exited ({status}) before printing '{prefix}'",
                        self.role
                    ));
                }
            }
        }
    }

    /// SIGKILL the process and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }

    /// Wait for the process to exit, up to `limit`; its exit code.
    pub fn wait(&mut self, limit: Duration) -> Result<i32, String> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.0.try_wait() {
                Ok(Some(s)) => return Ok(s.code().unwrap_or(-1)),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => return Err(format!("{}: still running after {limit:?}", self.role)),
                Err(e) => return Err(format!("{}: wait: {e}", self.role)),
            }
        }
    }
}

/// `--name value` pairs of a role's command line.
pub struct Args(HashMap<String, String>);

/// The options the roles read (`pub`, `sub` and `intrude` share the
/// topic's). Any other name is refused: a misspelt `--timout-ms` ran the
/// role with its default, and a `pub` with no `--count` publishes until
/// it is killed.
pub const OPTIONS: &[&str] = &[
    "count",
    "epoch",
    "group",
    "how",
    "key",
    "linger-ms",
    "lock",
    "memlock",
    "mode",
    "name",
    "notify",
    "rate",
    "slots",
    "timeout-ms",
    "wait-subs",
];

impl Args {
    /// Parse `--name value` pairs of the names in [`OPTIONS`], each once;
    /// anything else is an error.
    pub fn parse(args: &[String]) -> Result<Args, String> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let name = a
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument '{a}'"))?;
            if !OPTIONS.contains(&name) {
                return Err(format!(
                    "unknown option --{name}; the roles take --{}",
                    OPTIONS.join(" --")
                ));
            }
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            if map.insert(name.to_string(), value.clone()).is_some() {
                return Err(format!("--{name} given twice"));
            }
        }
        Ok(Args(map))
    }

    /// The value of `--name`, parsed, or `default`.
    pub fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name} {v}: not a valid value")),
        }
    }

    /// The value of `--name` as a string, or `default`.
    pub fn str(&self, name: &str, default: &str) -> String {
        self.0
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
}

/// Build a role's argument list from pairs.
pub fn args(pairs: &[(&str, String)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(k, v)| [format!("--{k}"), v.clone()])
        .collect()
}

/// `key=value` fields of a report line.
pub fn fields(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Field `name` of a report line as a number.
pub fn num(f: &HashMap<String, String>, name: &str) -> Result<u64, String> {
    f.get(name)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("report has no numeric '{name}': {f:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip_and_reject_strays() {
        let a = args(&[("key", "17".into()), ("mode", "next".into())]);
        let p = Args::parse(&a).unwrap();
        assert_eq!(p.get("key", 0i32).unwrap(), 17);
        assert_eq!(p.str("mode", "x"), "next");
        assert_eq!(p.get("rate", 5u32).unwrap(), 5);
        assert!(p.get::<u32>("mode", 0).is_err());
        assert!(Args::parse(&["stray".to_string()]).is_err());
        assert!(Args::parse(&["--key".to_string()]).is_err());
        let typo = Args::parse(&args(&[("timout-ms", "5".into())]))
            .err()
            .unwrap();
        assert!(typo.starts_with("unknown option --timout-ms;"), "{typo}");
        let twice = Args::parse(&args(&[("rate", "5".into()), ("rate", "6".into())]));
        assert_eq!(twice.err().unwrap(), "--rate given twice");
    }

    #[test]
    fn report_fields() {
        let f = fields("frames=10 torn=0 epochs=1,2");
        assert_eq!(num(&f, "frames").unwrap(), 10);
        assert_eq!(f["epochs"], "1,2");
        assert!(num(&f, "missing").is_err());
    }
}
