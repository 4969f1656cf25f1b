//! # shmbus-toolbox: what every shmbus command shares
//!
//! The `shmbus` CLI, the recorder, the benchmark and the sensor publishers
//! print sizes, durations, dates and keys, read numbers from their command
//! lines and stop on Ctrl-C. Each of those is written once, here, in a crate
//! that depends on nothing heavier than `nix`, so any of them (and the board's
//! thin `shmbus`) can use it without pulling in another command's code.
//!
//! - [`units`]: text for humans — `12.3 ms`, `3.5 MiB`, `2026-11-30
//!   09:31:51`, `0x5312abcd`.
//! - [`parse`]: numeric command-line values with their bounds, as clap value
//!   parsers: a value out of range is a clear error (exit 2), never a panic.
//! - [`printable`]: text from segments and recordings with its terminal
//!   control characters escaped, for every line a tool prints.
//! - [`liveness`]: whether a topic's publisher runs, for status displays
//!   (a topic whose lock was removed under a publisher that still publishes).
//! - [`process`]: why a live publisher sends nothing (suspended, or
//!   blocked in the kernel), from `/proc/PID/stat`.
//! - [`repeats`]: a repeated error printed once, then a count at most once a
//!   second.
//! - [`files`]: what to say when a file may not be read (who runs, whose
//!   the file is, the fix).
//! - [`stop`]: the SIGINT/SIGTERM flag that long-running commands check.
//! - [`topic`]: TOPIC arguments (a name, a key, a shmid), parsed the same
//!   way by every command that takes one.
//! - [`say!`] and [`say_part!`]: `eprintln!` and `eprint!` that never
//!   panic.
#![warn(missing_docs)]
// Not `eprintln!`: it panics when stderr cannot be written (`shmbus_toolbox::say!`).
#![warn(clippy::print_stderr)]

pub mod cleanup;
pub mod files;
pub mod liveness;
pub mod parse;
pub mod printable;
pub mod process;
pub mod repeats;
pub mod stop;
pub mod term;
pub mod topic;
pub mod units;

/// `eprintln!` that never panics: a stderr that cannot be written (a full
/// disk, `2>/dev/full`, a pipe whose reader quit) loses the line, not the
/// program. `eprintln!` panics there, and a server or bridge whose log
/// reader went away died with exit 101 on its next warning.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr().lock(), $($arg)*);
    }};
}

/// `eprint!` that never panics, as [`say!`].
#[macro_export]
macro_rules! say_part {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::write!(::std::io::stderr().lock(), $($arg)*);
    }};
}

#[cfg(test)]
mod tests {
    /// A line to a stderr that cannot be written is lost and the program
    /// goes on: `eprintln!` panicked there (exit 101), as a server whose
    /// log reader had quit did. This test binary runs again as the
    /// program, uncaptured, with its stderr on /dev/full.
    #[test]
    fn say_goes_on_when_stderr_cannot_be_written() {
        let exe = std::env::current_exe().unwrap();
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = shmbus_testkit::command(exe)
            .args([
                "--exact",
                "tests::say_to_stderr",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SHMBUS_SAY_TO_STDERR", "1")
            .stderr(full)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{:?}: {stdout}", out.status);
        assert!(stdout.contains("1 passed"), "{stdout}");
    }

    /// The program of the test above (nothing outside it).
    #[test]
    fn say_to_stderr() {
        if std::env::var_os("SHMBUS_SAY_TO_STDERR").is_some() {
            crate::say!("a warning nobody can read: {}", 1);
            crate::say_part!("and a part");
        }
    }
}
