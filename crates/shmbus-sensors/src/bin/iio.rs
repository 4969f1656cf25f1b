//! `shmbus-sensor-iio`: see `shmbus-sensor-iio --help` and the crate docs.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    shmbus_sensors::run_sensor("iio", &args)
}
