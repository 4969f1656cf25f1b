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
//! - [`stop`]: the SIGINT/SIGTERM flag that long-running commands check.
//! - [`topic`]: TOPIC arguments (a name, a key, a shmid), parsed the same
//!   way by every command that takes one.
#![warn(missing_docs)]

pub mod liveness;
pub mod parse;
pub mod printable;
pub mod process;
pub mod repeats;
pub mod stop;
pub mod term;
pub mod topic;
pub mod units;
