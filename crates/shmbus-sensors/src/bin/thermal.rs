//! `shmbus-sensor-thermal`: see `shmbus-sensor-thermal --help` and the crate docs.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    shmbus_sensors::run_sensor("thermal", &args)
}
