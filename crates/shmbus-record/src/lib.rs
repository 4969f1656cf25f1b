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

/// Whether standard output was closed when the program started:
/// [`shmbus_toolbox::term::stdout_closed`].
pub(crate) fn stdout_closed() -> bool {
    shmbus_toolbox::term::stdout_closed()
}

/// The error for a command whose output is a closed standard output.
pub(crate) fn stdout_closed_error(what: &str) -> Exit {
    Exit::error(shmbus_toolbox::term::stdout_closed_message(what))
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
