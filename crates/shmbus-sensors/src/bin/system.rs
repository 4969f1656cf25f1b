//! `shmbus-sensor-system`: see `shmbus-sensor-system --help` and the crate docs.

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    shmbus_sensors::run_sensor_os("system", &args)
}
