//! `shmbus-bench`: the benchmark without the CLI, for development and for
//! boards whose `shmbus` is built without the `bench` feature.
//! `shmbus-bench [bench] [--quick] [--json] ...` is `shmbus bench ...`.

use clap::{CommandFactory, FromArgMatches, Parser};

/// Measure publish, poll and handoff costs.
#[derive(Debug, Parser)]
#[command(name = "shmbus-bench", version)]
struct Cli {
    #[command(flatten)]
    args: shmbus_bench::opts::BenchArgs,
}

fn main() -> std::process::ExitCode {
    let mut words: Vec<String> = std::env::args().skip(1).collect();
    // Peers are started as `<exe> bench --peer ...`, like the CLI's form.
    if words.first().map(String::as_str) == Some("bench") {
        words.remove(0);
    }
    let m = Cli::command()
        .get_matches_from(std::iter::once("shmbus-bench".to_string()).chain(words.iter().cloned()));
    let cli = Cli::from_arg_matches(&m).unwrap_or_else(|e| e.exit());
    shmbus_bench::run(&cli.args, &words)
}
