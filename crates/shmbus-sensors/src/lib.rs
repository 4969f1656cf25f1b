//! # shmbus-sensors: sensor publishers and the demo
//!
//! One publisher per sensor, each a real process that uses only the public
//! [`shmbus_pub::Publisher`] API, as a board runs them. The six are one
//! program, `shmbus-sensor` ([`multicall`], as BusyBox does it): `shmbus-sensor
//! imu ARGS` runs the IMU, and so does a link to it named `shmbus-sensor-imu`
//! (the Debian package and the board image install the six links), so every
//! unit, config and script that runs `shmbus-sensor-imu ARGS` works as before.
//! `shmbus-sensor --help` lists them.
//!
//! | program | topic type | reads |
//! |---|---|---|
//! | `shmbus-sensor-system` | [`msg::System`] | `/proc/stat`, `/proc/loadavg`, `/proc/meminfo` |
//! | `shmbus-sensor-thermal` | [`msg::Thermal`] | `/sys/class/thermal/thermal_zone*`, `/sys/class/hwmon/hwmon*` |
//! | `shmbus-sensor-power` | [`msg::Power`] | `/sys/class/power_supply/*` |
//! | `shmbus-sensor-net` | [`msg::Net`] | `/proc/net/dev` (counters and rates) |
//! | `shmbus-sensor-iio` | [`msg::Accel`] | `/sys/bus/iio/devices/iio:device*/in_accel_*` |
//! | `shmbus-sensor-imu` | [`msg::Imu`] | nothing: a simulated IMU, 1 kHz by default |
//!
//! Each keeps its rate's schedule: a wake-up that comes late (a busy core)
//! publishes the frames it left due at once, up to a quarter of the topic's
//! ring; a sensor further behind (suspended, stopped) skips the missed
//! ticks instead of publishing a burst.
//!
//! All take the same arguments (`--config FILE --topic NAME --rate HZ
//! --duration SECS --count N`, see [`args`]; `--help` lists them). A sensor the machine lacks is
//! reported once on stderr and published as empty or `None` frames: the
//! publisher never stops for it.
//!
//! ## Odd files, removed topics
//!
//! - Every `/proc` and sysfs file is opened without blocking and read only
//!   if it is a regular file, at most 64 KiB (an attribute) or 4 MiB (a
//!   `/proc` file): a FIFO, a device, a directory, a huge or a non-UTF-8
//!   file where a value was expected is a one-line warning naming the
//!   file, and that value is left out (a tree under `--root` may hold
//!   anything).
//! - Numbers must be finite: `nan`, `inf` or `1e999` in an IIO scale or
//!   offset, or a load average that is not a finite number from 0 up, is
//!   garbage like any other; an acceleration that overflows is an error
//!   (`acc = None`), never a NaN in a frame.
//! - Numbers must be in range: a battery capacity outside 0 to 100 %, a
//!   voltage, current or power beyond its field's 32 bits, a temperature
//!   below absolute zero or beyond 32 bits of m°C is garbage too (a
//!   warning, the value left out), never clamped into a believable reading
//!   (a battery at -5 % published as 0 %).
//! - Names are the kernel's bytes: an interface in `/proc/net/dev`, a
//!   device's `name`, a zone's `type`, a hwmon `label` that is not UTF-8
//!   is published with U+FFFD for the bytes that are not.
//! - A bad line of `/proc/net/dev` costs its interface only; the others are
//!   published.
//! - The IIO sensor looks for its accelerometer again when the device's
//!   directory is gone or holds no accelerometer any more (IIO numbers are
//!   reused: a driver reload can put another device at the same one).
//! - The IIO sensor looks for an accelerometer once a second while it has
//!   none (a driver that probes late, a device unbound or renumbered); the
//!   others read their directories at every frame.
//! - Each distinct warning is printed once, and at most 32 different ones;
//!   past that one line says no more new ones are printed.
//! - If the topic is removed under a running sensor (`shmbus rm --force`,
//!   `ipcrm`), the sensor notices within about half a second (between the
//!   frames of a slow topic too), says so, creates the topic again and
//!   publishes into it at once, as a restart would. If it cannot (another
//!   publisher took the key), it exits with status 1.
//! - `systemctl stop` (SIGTERM), Ctrl-C (SIGINT) and SIGHUP end a sensor by
//!   their default action (systemd counts it a clean stop), but never in
//!   the middle of a frame or of opening the topic: both run inside
//!   `shmbus_toolbox::stop::deferred`, and a signal that arrives meanwhile
//!   is noted and ends the sensor right after (no system call per frame). A sensor ended mid-frame left that slot mid-write, read
//!   by every subscriber as a publisher that died mid-publish until the
//!   next start repaired it.
//! - Arguments need not be UTF-8: a `--config` or `--root` path is taken
//!   as the system gives it.
//! - `--topic` naming a topic whose `publisher` is another sensor, and
//!   `--parent PID` when PID is not the sensor's parent, are refused at the
//!   start (exit 2), before anything is created.
//!
//! The same publishers run in-process through [`run_sensor`], which is how
//! `shmbus __sensor NAME ARGS...` (used by `shmbus demo`) starts them, and
//! the demo itself lives in [`demo`].
#![warn(missing_docs)]
// Not `eprintln!`: it panics when stderr cannot be written (`shmbus_toolbox::say!`).
#![warn(clippy::print_stderr)]

pub mod args;
pub mod demo;
pub mod iio;
pub mod imu;
pub mod msg;
pub mod multicall;
pub mod net;
pub mod power;
pub mod run;
pub mod summary;
mod sysfs;
pub mod system;
pub mod thermal;

use std::process::ExitCode;

use args::Args;
use run::run_source;

/// The sensors this crate publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SensorKind {
    /// CPU, load, memory.
    System,
    /// Thermal zones and hwmon.
    Thermal,
    /// Power supplies.
    Power,
    /// Network counters.
    Net,
    /// IIO accelerometer.
    Iio,
    /// Simulated IMU.
    Imu,
}

impl SensorKind {
    /// Every sensor.
    pub const ALL: [SensorKind; 6] = [
        SensorKind::System,
        SensorKind::Thermal,
        SensorKind::Power,
        SensorKind::Net,
        SensorKind::Iio,
        SensorKind::Imu,
    ];

    /// Short name: `system`, `thermal`, `power`, `net`, `iio`, `imu`.
    pub fn name(self) -> &'static str {
        match self {
            SensorKind::System => "system",
            SensorKind::Thermal => "thermal",
            SensorKind::Power => "power",
            SensorKind::Net => "net",
            SensorKind::Iio => "iio",
            SensorKind::Imu => "imu",
        }
    }

    /// Program name: `shmbus-sensor-<name>`.
    pub fn program(self) -> &'static str {
        match self {
            SensorKind::System => "shmbus-sensor-system",
            SensorKind::Thermal => "shmbus-sensor-thermal",
            SensorKind::Power => "shmbus-sensor-power",
            SensorKind::Net => "shmbus-sensor-net",
            SensorKind::Iio => "shmbus-sensor-iio",
            SensorKind::Imu => "shmbus-sensor-imu",
        }
    }

    /// From a short name or a program name.
    pub fn from_name(s: &str) -> Option<SensorKind> {
        let s = s.strip_prefix("shmbus-sensor-").unwrap_or(s);
        SensorKind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Publish rate when neither `--rate` nor the topic's `rate_hz` gives one.
    pub fn default_rate_hz(self) -> f64 {
        match self {
            SensorKind::Imu => 1000.0,
            SensorKind::Iio => 50.0,
            SensorKind::System | SensorKind::Net => 2.0,
            SensorKind::Thermal | SensorKind::Power => 1.0,
        }
    }

    /// Length of the schema its publisher embeds in the segment
    /// (`shmbus_core::schema::schema_bytes` of the message type). A constant,
    /// so a program can size a sensor's topic without linking the schema
    /// code (`shmbus doctor` in the board's thin `shmbus`); a test checks
    /// each against the real schema.
    pub const fn schema_len(self) -> usize {
        match self {
            SensorKind::System => 226,
            SensorKind::Thermal => 95,
            SensorKind::Power => 271,
            SensorKind::Net => 241,
            SensorKind::Iio => 86,
            SensorKind::Imu => 94,
        }
    }

    /// The largest frame of its message type, bytes (`POSTCARD_MAX_SIZE`).
    pub const fn frame_capacity(self) -> usize {
        use postcard::experimental::max_size::MaxSize;
        match self {
            SensorKind::System => msg::System::POSTCARD_MAX_SIZE,
            SensorKind::Thermal => msg::Thermal::POSTCARD_MAX_SIZE,
            SensorKind::Power => msg::Power::POSTCARD_MAX_SIZE,
            SensorKind::Net => msg::Net::POSTCARD_MAX_SIZE,
            SensorKind::Iio => msg::Accel::POSTCARD_MAX_SIZE,
            SensorKind::Imu => msg::Imu::POSTCARD_MAX_SIZE,
        }
    }

    /// The segment size of a topic this sensor publishes with `slots`
    /// slots, exactly as its publisher creates it (the header with the
    /// message's schema, and slots that hold its largest frame); `None` for
    /// a slot count the layout refuses.
    pub fn segment_size(self, slots: u32) -> Option<u64> {
        shmbus_core::layout::Geometry::new(self.schema_len(), slots, self.frame_capacity().max(1))
            .map(|g| g.segment_size as u64)
    }

    fn what(self) -> &'static str {
        match self {
            SensorKind::System => "publish CPU load and memory from /proc",
            SensorKind::Thermal => "publish thermal zone and hwmon temperatures",
            SensorKind::Power => "publish power supply state from /sys/class/power_supply",
            SensorKind::Net => "publish network interface counters and rates",
            SensorKind::Iio => "publish an IIO accelerometer (absent frames if there is none)",
            SensorKind::Imu => "publish a simulated 6-axis IMU (deterministic motion)",
        }
    }
}

/// Run sensor `name` (`imu` or `shmbus-sensor-imu`...) with command-line
/// `args` (without the program name). Used by `shmbus __sensor NAME
/// ARGS...`; see [`run_sensor_os`] for arguments that need not be UTF-8.
pub fn run_sensor(name: &str, args: &[String]) -> ExitCode {
    run_sensor_os(name, args)
}

/// [`run_sensor`] with arguments as the system gives them (the
/// `shmbus-sensor` program, [`multicall`]: `std::env::args_os`). The
/// sensor programs once collected
/// `std::env::args()`, which panics on an argument that is not UTF-8: a
/// `--config` or `--root` path with a Latin-1 name ended the sensor with
/// exit 101 and a backtrace.
pub fn run_sensor_os<A: AsRef<std::ffi::OsStr>>(name: &str, args: &[A]) -> ExitCode {
    let Some(kind) = SensorKind::from_name(name) else {
        let names: Vec<&str> = SensorKind::ALL.iter().map(|k| k.name()).collect();
        shmbus_toolbox::say!(
            "unknown sensor '{}': use one of {}",
            shmbus_core::topic::shown(name),
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    let cmd = args::command(kind.program(), kind.what(), kind.default_rate_hz());
    let args = match Args::parse_as(cmd, args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match kind {
        SensorKind::System => run_source(kind, &args, |_| system::SystemSource::new(&args)),
        SensorKind::Thermal => run_source(kind, &args, |_| thermal::ThermalSource::new(&args)),
        SensorKind::Power => run_source(kind, &args, |_| power::PowerSource::new(&args)),
        SensorKind::Net => run_source(kind, &args, |_| net::NetSource::new(&args)),
        SensorKind::Iio => run_source(kind, &args, |_| iio::IioSource::new(&args)),
        // The simulation's clock is the sample index, so it needs the rate.
        SensorKind::Imu => run_source(kind, &args, imu::ImuSource::new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_lengths_and_sizes_are_the_publishers() {
        use shmbus_core::schema::schema_bytes;
        let real = |k: SensorKind| match k {
            SensorKind::System => schema_bytes::<msg::System>(),
            SensorKind::Thermal => schema_bytes::<msg::Thermal>(),
            SensorKind::Power => schema_bytes::<msg::Power>(),
            SensorKind::Net => schema_bytes::<msg::Net>(),
            SensorKind::Iio => schema_bytes::<msg::Accel>(),
            SensorKind::Imu => schema_bytes::<msg::Imu>(),
        };
        for k in SensorKind::ALL {
            let len = real(k).unwrap().len();
            assert_eq!(
                k.schema_len(),
                len,
                "{}: the schema is {len} bytes now: update SensorKind::schema_len",
                k.name()
            );
        }
        // The demo's imu topic (64 slots) as `shmbus list` shows it: 8.4 KiB.
        assert_eq!(SensorKind::Imu.segment_size(64), Some(8576));
        assert_eq!(SensorKind::Imu.segment_size(3), None);
    }
}
