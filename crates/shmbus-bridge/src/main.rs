//! `shmbus-bridge`: the bridge as a small standalone program for the board
//! (the same as `shmbus bridge`). See `docs/BRIDGE.md`.

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
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() {
                ExitCode::from(ERROR)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
