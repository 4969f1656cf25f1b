//! `shmbus-sensor`: every sensor publisher in one program, run as
//! `shmbus-sensor NAME [ARGS]` or through a link named
//! `shmbus-sensor-NAME`. See `shmbus-sensor --help` and the crate docs.
// Not `eprintln!`: it panics when stderr cannot be written (`shmbus_toolbox::say!`).
#![warn(clippy::print_stderr)]

fn main() -> std::process::ExitCode {
    let mut argv = std::env::args_os();
    let argv0 = argv.next().unwrap_or_default();
    let args: Vec<std::ffi::OsString> = argv.collect();
    shmbus_sensors::multicall::main(&argv0, &args)
}
