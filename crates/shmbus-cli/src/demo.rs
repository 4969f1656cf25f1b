//! `shmbus demo`: start the demo bus's sensor publishers, show a live table
//! of every topic (rate, latest value, age, lost frames, publisher), stop
//! at Ctrl-C or `--duration`, and remove everything the demo created.
//!
//! The engine is `shmbus_sensors::demo`. Each sensor runs as a separate
//! process: this same program with the hidden subcommand
//! `shmbus __sensor NAME ARGS...` (see `main.rs`), so one
//! `cargo run --release -p shmbus-cli -- demo` builds everything it needs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Run the demo. Exit code 0 if every topic received frames, no sensor
/// ended before the demo stopped it and nothing was left behind, 1 if not,
/// 2 if the config could not be loaded.
pub fn run(duration: Option<Duration>, config: Option<PathBuf>) -> ExitCode {
    shmbus_sensors::demo::main_self(duration, config)
}
