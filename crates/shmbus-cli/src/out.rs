//! Exit codes, errors and output that survives a closed pipe.
//!
//! Exit codes: 0 success, 1 not found or nothing to show, 2 error.
//! A closed standard output (`shmbus echo imu | head -3`) ends the command
//! quietly with 0.

use std::io::{self, Write};

/// Success.
pub const OK: u8 = 0;
/// The topic was not found, or there was nothing to show.
pub const NOTHING: u8 = 1;
/// An error (bad arguments, permission, corrupt segment, refused).
pub const ERROR: u8 = 2;

/// A command's failure: exit code and a message (printed after `shmbus: `).
/// An empty message prints nothing (a closed pipe).
#[derive(Debug)]
pub struct Fail {
    /// Exit code.
    pub code: u8,
    /// What went wrong and how to fix it.
    pub msg: String,
}

impl Fail {
    /// Exit 1 with `msg`.
    pub fn not_found(msg: impl Into<String>) -> Fail {
        Fail {
            code: NOTHING,
            msg: msg.into(),
        }
    }
    /// Exit 2 with `msg`.
    pub fn error(msg: impl Into<String>) -> Fail {
        Fail {
            code: ERROR,
            msg: msg.into(),
        }
    }
    /// Standard output was closed: stop quietly, exit 0.
    pub fn pipe() -> Fail {
        Fail {
            code: OK,
            msg: String::new(),
        }
    }
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Fail::pipe()
        } else {
            Fail::error(format!("cannot write the output: {e}"))
        }
    }
}

/// What a command returns: an exit code, or a failure.
pub type CmdResult = Result<u8, Fail>;

/// Print one line on standard output and flush it (so `| head` and
/// `| grep --line-buffered` see it at once).
pub fn line(s: &str) -> Result<(), Fail> {
    let mut o = io::stdout().lock();
    o.write_all(s.as_bytes())?;
    o.write_all(b"\n")?;
    o.flush()?;
    Ok(())
}

/// Print text as it is (no newline added) and flush.
pub fn raw(s: &str) -> Result<(), Fail> {
    let mut o = io::stdout().lock();
    o.write_all(s.as_bytes())?;
    o.flush()?;
    Ok(())
}

/// A notice on standard error, prefixed `shmbus: `. Errors writing it are
/// ignored (nobody is listening).
pub fn notice(s: &str) {
    let _ = writeln!(io::stderr().lock(), "shmbus: {s}");
}

/// True when standard output is a terminal.
pub fn stdout_is_tty() -> bool {
    use std::io::IsTerminal;
    io::stdout().is_terminal()
}

/// Format a key as `ipcs` does: `0x5312abcd`.
pub fn key_hex(key: i32) -> String {
    format!("0x{:08x}", key as u32)
}

/// A duration in ns as a short human text: `850 ns`, `12.3 ms`, `4.1 s`,
/// `3 h 2 min`.
pub fn human_ns(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} us", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1} ms", f / 1e6)
    } else if ns < 120_000_000_000 {
        format!("{:.1} s", f / 1e9)
    } else if ns < 7_200_000_000_000 {
        format!("{} min", ns / 60_000_000_000)
    } else if ns < 172_800_000_000_000 {
        format!("{} h", ns / 3_600_000_000_000)
    } else {
        format!("{} d", ns / 86_400_000_000_000)
    }
}

/// A byte count: `960 B`, `12.0 KiB`, `3.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else if n < 1024 * 1024 * 1024 {
        format!("{:.1} MiB", n as f64 / 1048576.0)
    } else {
        format!("{:.1} GiB", n as f64 / 1073741824.0)
    }
}

/// Seconds since the epoch as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn utc(secs: i64) -> String {
    let (y, m, d, hh, mm, ss) = shmbus_record::cat::civil(secs);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
}

/// A user name for `uid`, or the number.
pub fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

/// A group name for `gid`, or the number.
pub fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(g)) => g.name,
        _ => gid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_and_sizes() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(human_ns(850), "850 ns");
        assert_eq!(human_ns(12_300_000), "12.3 ms");
        assert_eq!(human_ns(4_100_000_000), "4.1 s");
        assert_eq!(human_bytes(960), "960 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 + 512 * 1024), "3.5 MiB");
        assert_eq!(key_hex(-1), "0xffffffff");
    }
}
