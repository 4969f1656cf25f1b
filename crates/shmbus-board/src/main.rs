//! `shmbus-board`: the scenario runner for the emulated i.MX6ULL.
//!
//! One static armv7 binary, several jobs (a multi-call binary):
//! - as PID 1 (`/init` of the CI initramfs, ci/board/): mount `/proc`,
//!   `/sys`, `/dev`, run every scenario, print `SHMBUS-BOARD: PASS` or
//!   `FAIL`, power off;
//! - `shmbus-board scenarios`: the same on a developer machine (as root,
//!   without mounting or powering off); `SHMBUS_BOARD_ONLY=a,b` picks some;
//! - `shmbus-board pub|sub|intrude --key K ...`: the bus processes the
//!   scenarios start (re-executing `/proc/self/exe`), also used by
//!   ci/mixed-arch.sh across architectures.

/// A line on the console (standard output), as `println!` but never a
/// panic: `shmbus-board scenarios | head` closed the pipe and the runner
/// panicked in the middle of a scenario, before its cleanup ran. The run
/// goes on to its end (and its cleanup) whether anyone reads or not.
macro_rules! console {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod cpu;
mod frame;
mod hardening;
mod roles;
mod runner;
mod scenarios;
mod spawn;
mod tools;

const USAGE: &str = "usage: shmbus-board [scenarios | pub|sub|intrude --key K [--name N --mode 640 --group G --lock required|try|off ...]]
  as PID 1 (the board's /init) it runs every scenario and powers off";

const SCENARIOS_HELP: &str = "usage: shmbus-board scenarios
  Runs the emulated board's scenarios on this machine, as root (without mounting or
  powering off), in this IPC namespace: run it under `unshare --ipc` to keep its
  topics away from the machine's. It takes no arguments; the environment picks:
    SHMBUS_BOARD_ONLY=a,b                   only the scenarios named
    SHMBUS_BOARD_ALLOW_SYSTEM_CHANGES=1     also the ones that change kernel sysctls or the clock
  Each scenario prints one line (`SHMBUS-BOARD: NAME ... ok|FAIL`), the run `PASS` or `FAIL`.
Example:
  SHMBUS_BOARD_ONLY=permission unshare --ipc shmbus-board scenarios";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(role @ ("pub" | "sub" | "intrude")) => {
            std::process::exit(roles::run(role, &args[1..]))
        }
        // Only the bare word runs the scenarios: `scenarios --help` ran
        // every one of them (as root, on the developer's machine).
        Some("scenarios") if args.len() == 1 => runner::run(false),
        Some("scenarios") if matches!(args[1].as_str(), "-h" | "--help") => {
            console!("{SCENARIOS_HELP}")
        }
        Some("scenarios") => {
            eprintln!(
                "shmbus-board: `scenarios` takes no arguments (got {:?}); the environment picks them: see `shmbus-board scenarios --help`",
                args[1]
            );
            std::process::exit(2);
        }
        None if std::process::id() == 1 => runner::run(true),
        Some("-h" | "--help") => console!("{USAGE}"),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}
