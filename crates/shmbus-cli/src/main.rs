//! `shmbus`: the command-line tool of the shmbus telemetry bus.
//!
//! Lists, inspects, echoes, publishes, measures and removes topics without
//! their Rust types (frames are decoded with the schema each segment
//! carries), and checks the machine's limits and permissions. See
//! `shmbus --help`; exit codes are in [`out`].
#![warn(missing_docs)]
// Not `eprintln!`: it panics when stderr cannot be written (`shmbus_toolbox::say!`).
#![warn(clippy::print_stderr)]

use std::process::ExitCode;

use clap::Parser;

mod args;
mod cmd;
#[cfg(feature = "demo")]
mod demo;
mod discover;
mod out;
mod pretty;

use args::{Cli, Cmd};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = out::raw(&e.to_string());
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                shmbus_toolbox::say_part!("{}", out::printable(&e.to_string()));
                return ExitCode::from(out::ERROR);
            }
            let text = e.to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            // clap quotes what was typed: a huge argument gives a short line.
            let text = shmbus_toolbox::printable::clipped(text);
            shmbus_toolbox::say_part!("shmbus: {}", out::printable(&text));
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
        #[cfg(feature = "demo")]
        Cmd::Demo(a) => return demo::run(a.duration, a.config),
        #[cfg(feature = "demo")]
        Cmd::Sensor(p) => {
            let name = p
                .args
                .first()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return shmbus_sensors::run_sensor_os(&name, p.args.get(1..).unwrap_or(&[]));
        }
        #[cfg(feature = "bench")]
        Cmd::Bench(a) => {
            let typed: Vec<String> = std::env::args().skip(2).collect();
            return shmbus_bench::run(&a, &typed);
        }
        #[cfg(feature = "record")]
        Cmd::Recording(c) => return shmbus_record::run(c),
        #[cfg(feature = "foxglove")]
        Cmd::Foxglove(a) => return shmbus_foxglove::cli::run(&a),
        #[cfg(feature = "bridge")]
        Cmd::Bridge(a) => return shmbus_bridge::cli::run(&a),
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
