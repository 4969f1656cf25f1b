//! Development binary: `shmbus-record record|replay|cat ...`, the same as
//! `shmbus record|replay|cat ...`.
// Not `eprintln!`: it panics when stderr cannot be written (`shmbus_toolbox::say!`).
#![warn(clippy::print_stderr)]

use clap::Parser;

/// Record shmbus topics to MCAP, replay them, show what a recording holds.
#[derive(Debug, Parser)]
#[command(name = "shmbus-record", version)]
struct Cli {
    #[command(subcommand)]
    cmd: shmbus_record::cli::Command,
}

fn main() -> std::process::ExitCode {
    shmbus_record::run(Cli::parse().cmd)
}
