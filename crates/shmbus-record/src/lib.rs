//! # shmbus-record: record topics to MCAP, replay them, show what a file holds
//!
//! `shmbus record|replay|cat` (the `shmbus` tool flattens [`cli::Command`]
//! into its subcommands and calls [`run`]; also the `shmbus-record` binary
//! of this crate).
//!
//! - [`record`]: every frame of the chosen topics, in publish order, with
//!   the publish timestamps, into an MCAP file: each topic as a lossless
//!   channel (postcard bytes + the segment's own schema) and a viewer
//!   channel (JSON + JSON Schema, which Foxglove opens), plus missed-frame
//!   events. Chunks are cut at least once a second, so a recorder killed
//!   by SIGKILL leaves a file readable up to its last complete chunk.
//! - [`replay`]: republish the lossless frames with their original timing.
//! - [`cat`]: channels, counts, time range; `--json` decodes every frame
//!   without the Rust types.
//!
//! The file format is specified in `docs/RECORDING.md`.
#![warn(missing_docs)]
// Not `eprintln!`: it panics when stderr cannot be written (`shmbus_toolbox::say!`).
#![warn(clippy::print_stderr)]

pub mod cat;
pub mod cli;
pub mod format;
mod framing;
pub mod record;
pub mod replay;

use shmbus_toolbox::stop;

use std::process::ExitCode;

/// How a subcommand ended: exit code and message for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// 0 ok, 1 nothing found / not found, 2 error.
    pub code: u8,
    /// What to print on stderr (without the `shmbus: ` prefix), or empty.
    pub message: String,
}

impl Exit {
    /// Exit code 2 with `message`.
    pub fn error(message: impl Into<String>) -> Exit {
        Exit {
            code: 2,
            message: message.into(),
        }
    }
    /// Exit code 1 (nothing there) with `message`.
    pub fn not_found(message: impl Into<String>) -> Exit {
        Exit {
            code: 1,
            message: message.into(),
        }
    }
}

/// Whether standard output was closed when the program started (`>&-`,
/// or a service manager that gives it none).
///
/// Rust's runtime puts `/dev/null` on a closed fd 0, 1 or 2 before `main`
/// (opened read-write), so a closed stdout looks open, and everything
/// written to it is gone without an error: `shmbus record -o - >&-`
/// recorded into nothing and exited 0, `shmbus cat FILE >&-` showed
/// nothing and exited 0. That `/dev/null` is told from a shell's
/// `> /dev/null` (write-only, kept as the user's wish) by its read-write
/// mode; only `1<> /dev/null` looks the same, and is taken as closed.
pub(crate) fn stdout_closed() -> bool {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use std::os::fd::AsFd;
    let out = std::io::stdout();
    let fd = out.as_fd();
    let flags = match fcntl(fd, FcntlArg::F_GETFL) {
        Ok(f) => OFlag::from_bits_truncate(f),
        Err(e) => return e == nix::errno::Errno::EBADF,
    };
    if flags & OFlag::O_ACCMODE != OFlag::O_RDWR {
        return false;
    }
    nix::sys::stat::fstat(fd).is_ok_and(|st| {
        (st.st_mode & nix::libc::S_IFMT) == nix::libc::S_IFCHR
            && st.st_rdev == nix::libc::makedev(1, 3)
    })
}

/// The error for a command whose output is a closed standard output.
pub(crate) fn stdout_closed_error(what: &str) -> Exit {
    Exit::error(format!(
        "standard output is closed (`>&-`; or it is /dev/null opened read-write, which is how a closed one reaches this program): {what}; give it a file or a pipe (`> /dev/null` to discard on purpose)"
    ))
}

/// Run `shmbus record|replay|cat`. Exit 0 ok, 1 nothing to do / not
/// found, 2 error; errors are printed on stderr as `shmbus: ...` with the
/// fix.
pub fn run(command: cli::Command) -> ExitCode {
    let result = match command {
        cli::Command::Record(a) => record::run(a),
        cli::Command::Replay(a) => replay::run(a),
        cli::Command::Cat(a) => cat::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                shmbus_toolbox::say!(
                    "shmbus: {}",
                    shmbus_toolbox::printable::printable(&e.message)
                );
            }
            ExitCode::from(e.code)
        }
    }
}
