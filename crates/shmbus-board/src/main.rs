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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(role @ ("pub" | "sub" | "intrude")) => {
            std::process::exit(roles::run(role, &args[1..]))
        }
        Some("scenarios") => runner::run(false),
        None if std::process::id() == 1 => runner::run(true),
        Some("-h" | "--help") => println!("{USAGE}"),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}
