//! `shmbus-bridge`: the bridge as a small standalone program for the board
//! (the same as `shmbus bridge`). See `docs/BRIDGE.md`.
// Not `eprintln!`: it panics when stderr cannot be written (`shmbus_toolbox::say!`).
#![warn(clippy::print_stderr)]
// Nor `println!`: it panics when stdout cannot be written (`cli::put`).
#![warn(clippy::print_stdout)]

use std::process::ExitCode;

use clap::Parser;
use shmbus_bridge::cli::{AFTER_HELP, BridgeArgs, ERROR, run};

/// Bridge shmbus topics to an MQTT broker, and broker topics back.
#[derive(Debug, Parser)]
#[command(name = "shmbus-bridge", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    args: BridgeArgs,
}

fn main() -> ExitCode {
    match Cli::try_parse() {
        Ok(c) => run(&c.args),
        Err(e) if e.use_stderr() => {
            // clap quotes what was typed: a huge argument gives a short
            // line, and no control character reaches the terminal.
            let text = e.to_string();
            let text = shmbus_toolbox::printable::clipped(&text);
            shmbus_toolbox::say_part!("{}", shmbus_toolbox::printable::printable(&text));
            ExitCode::from(ERROR)
        }
        Err(e) => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
    }
}
