//! `shmbus-bench`: the benchmark without the CLI, for development.
//! `shmbus-bench [bench] [--quick] [--json] ...` is `shmbus bench ...`.

fn main() -> std::process::ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // Peers are started as `<exe> bench --peer ...`, like the CLI's form.
    if args.first().map(String::as_str) == Some("bench") {
        args.remove(0);
    }
    shmbus_bench::main_with_args("bench", args)
}
