//! `shmbus-sensor-system`: see `shmbus-sensor-system --help` and the crate docs.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    shmbus_sensors::run_sensor("system", &args)
}
