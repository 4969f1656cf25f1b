//! Exit codes, errors and output that survives a closed pipe.
//!
//! Exit codes: 0 success, 1 not found or nothing to show, 2 error.
//! A closed standard output (`shmbus echo imu | head -3`) ends the command
//! quietly with 0; a command that acts finishes what it was asked first
//! (`rm` removes every topic named), and `doctor` keeps its verdict (1 when
//! a check FAILs).

use std::io::{self, Write};

pub use shmbus_toolbox::printable::printable;

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
///
/// Every printing function here passes the text through
/// [`printable`]: names, schema text and values come from segments that
/// any local user may have planted, and their control characters must not
/// reach the terminal.
pub fn line(s: &str) -> Result<(), Fail> {
    let mut o = io::stdout().lock();
    o.write_all(printable(s).as_bytes())?;
    o.write_all(b"\n")?;
    o.flush()?;
    Ok(())
}

/// Print text (no newline added) and flush.
pub fn raw(s: &str) -> Result<(), Fail> {
    raw_after("", s)
}

/// Print the tool's own terminal `control` sequence as it is, then `s`
/// made [`printable`], and flush (`top` clears the screen, `hz` rewrites
/// its line).
pub fn raw_after(control: &'static str, s: &str) -> Result<(), Fail> {
    let mut o = io::stdout().lock();
    o.write_all(control.as_bytes())?;
    o.write_all(printable(s).as_bytes())?;
    o.flush()?;
    Ok(())
}

/// True once standard output can take nothing more: the read end of its
/// pipe was closed (`shmbus echo imu | head -1` after `head` quit), or the
/// terminal hung up. A command that writes only when a frame comes asks
/// this while it waits: on a quiet topic it never wrote again, so it never
/// learned, and the pipeline hung until Ctrl-C. A file, `/dev/null` or a
/// live pipe is never "gone".
pub fn reader_gone() -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let stdout = io::stdout();
    let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
}

/// Refuse to start a command that only reads and shows when its standard
/// output was closed at start (`shmbus echo imu >&-`): Rust's runtime had
/// put `/dev/null` there, so it read for ever with its output going
/// nowhere ([`shmbus_toolbox::term::stdout_closed`]). A shell's
/// `> /dev/null` is kept: reading without output on purpose. `what` says
/// what would be lost.
pub fn refuse_closed_stdout(what: &str) -> Result<(), Fail> {
    if shmbus_toolbox::term::stdout_closed() {
        return Err(Fail::error(shmbus_toolbox::term::stdout_closed_message(
            what,
        )));
    }
    Ok(())
}

/// A notice on standard error, prefixed `shmbus: `. Errors writing it are
/// ignored (nobody is listening).
pub fn notice(s: &str) {
    let _ = writeln!(io::stderr().lock(), "shmbus: {}", printable(s));
}

// Sizes, durations, dates and keys are formatted in one place for every
// shmbus command: shmbus-toolbox's `units`.
pub use shmbus_toolbox::units::{bytes as human_bytes, duration_ns as human_ns, key_hex, utc};

// A user's name (tables) and a user in a sentence: shmbus-toolbox's `units`.
pub use shmbus_toolbox::units::{user, user_name};

/// A group name for `gid`, or the number.
pub fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(g)) => g.name,
        _ => gid.to_string(),
    }
}
