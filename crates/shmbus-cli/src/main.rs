//! `shmbus`: the command-line tool of the shmbus telemetry bus.
//!
//! Lists, inspects, echoes, publishes, measures and removes topics without
//! their Rust types (frames are decoded with the schema each segment
//! carries), and checks the machine's limits and permissions. See
//! `shmbus --help`; exit codes are in [`out`].
#![warn(missing_docs)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

mod args;
mod cmd;
mod demo;
mod discover;
mod out;
mod pretty;

use args::{Cli, Cmd};

fn main() -> ExitCode {
    // `shmbus demo` starts each sensor as this program's hidden
    // `__sensor NAME ARGS...` subcommand (not in --help).
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(shmbus_sensors::demo::SENSOR_SUBCOMMAND) {
        let name = argv.get(2).cloned().unwrap_or_default();
        return shmbus_sensors::run_sensor(&name, argv.get(3..).unwrap_or(&[]));
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = out::raw(&e.to_string());
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                eprint!("{e}");
                return ExitCode::from(out::ERROR);
            }
            let text = e.to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            eprint!("shmbus: {text}");
            return ExitCode::from(out::ERROR);
        }
    };
    let result = match cli.cmd {
        Cmd::List(a) => cmd::list::run(&a),
        Cmd::Info(a) => cmd::info::run(&a, a.bus.get()),
        Cmd::Echo(a) => cmd::echo::run(&a, a.bus.get()),
        Cmd::Pub(a) => cmd::publish::run(&a, a.bus.get()),
        Cmd::Hz(a) => cmd::hz::run(&a, a.bus.get()),
        Cmd::Top(a) => cmd::top::run(&a),
        Cmd::Rm(a) => cmd::rm::run(&a, a.bus.get()),
        Cmd::Doctor(a) => cmd::doctor::run(&a),
        Cmd::Demo(a) => {
            let d = match a.duration.map(Duration::try_from_secs_f64) {
                None => None,
                Some(Ok(d)) => Some(d),
                Some(Err(_)) => {
                    out::notice("--duration must be a positive number of seconds");
                    return ExitCode::from(out::ERROR);
                }
            };
            return demo::run(d, a.config);
        }
        Cmd::Bench(p) => return shmbus_bench::main_with_args("bench", p.args),
        Cmd::Record(p) => return shmbus_record::main_with_args("record", p.args),
        Cmd::Replay(p) => return shmbus_record::main_with_args("replay", p.args),
        Cmd::Cat(p) => return shmbus_record::main_with_args("cat", p.args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            if !f.msg.is_empty() {
                out::notice(&f.msg);
            }
            ExitCode::from(f.code)
        }
    }
}
