//! The message types the sensor publishers put on the bus.
//!
//! Every type has a fixed maximum encoded size (`MaxSize`, `heapless` 0.7
//! strings and vectors), a `postcard_schema::Schema` (stored in the
//! segment, so tools decode frames without these types), and `t_ns`: the
//! `CLOCK_MONOTONIC` time the sample was taken, in nanoseconds (the same
//! clock as the frame's publish timestamp).
//!
//! A sensor that is missing is an empty list or a `None`, never an error.

use postcard::experimental::max_size::MaxSize;
use postcard_schema::Schema;
use serde::{Deserialize, Serialize};

/// A short name (interface, zone, supply): up to 24 bytes, truncated.
pub type Name = heapless::String<24>;

/// Make a [`Name`], truncating at a character boundary.
pub fn name(s: &str) -> Name {
    let mut n = Name::new();
    for c in s.trim().chars() {
        if n.push(c).is_err() {
            break;
        }
    }
    n
}

/// A 6-axis IMU sample (simulated by `shmbus-sensor-imu`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, MaxSize, Schema)]
pub struct Imu {
    /// Sample time, `CLOCK_MONOTONIC` ns.
    pub t_ns: u64,
    /// Sample index since the publisher started.
    pub seq: u64,
    /// Specific force in the body frame (x forward, y left, z up), m/s².
    /// At rest, level: `[0, 0, 9.81]`.
    pub acc: [f32; 3],
    /// Angular rate in the body frame, rad/s.
    pub gyro: [f32; 3],
    /// Sensor die temperature, °C.
    pub temp_c: f32,
}

/// An accelerometer read through Linux IIO (`shmbus-sensor-iio`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, MaxSize, Schema)]
pub struct Accel {
    /// Sample time, `CLOCK_MONOTONIC` ns.
    pub t_ns: u64,
    /// The IIO device's `name` (empty when there is none).
    pub device: Name,
    /// Acceleration in m/s² (`(raw + offset) * scale`); `None` when the
    /// machine has no IIO accelerometer or the read failed.
    pub acc: Option<[f32; 3]>,
}

/// CPU, load and memory (`shmbus-sensor-system`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, MaxSize, Schema)]
pub struct System {
    /// Sample time, `CLOCK_MONOTONIC` ns.
    pub t_ns: u64,
    /// CPU busy percentage over all CPUs since the previous sample (since
    /// boot for the first one), from `/proc/stat`.
    pub cpu_pct: Option<f32>,
    /// Number of CPUs (`cpuN` lines in `/proc/stat`).
    pub cpus: u16,
    /// 1, 5 and 15 minute load averages (`/proc/loadavg`).
    pub load: Option<[f32; 3]>,
    /// Runnable and total scheduling entities (`/proc/loadavg`).
    pub tasks: Option<[u32; 2]>,
    /// Memory, KiB (`/proc/meminfo`).
    pub mem: Option<Memory>,
}

/// Memory figures from `/proc/meminfo`, KiB.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, MaxSize, Schema)]
pub struct Memory {
    /// `MemTotal`.
    pub total_kib: u64,
    /// `MemAvailable` (or `MemFree + Buffers + Cached` on kernels before 3.14).
    pub available_kib: u64,
    /// `SwapTotal`.
    pub swap_total_kib: u64,
    /// `SwapFree`.
    pub swap_free_kib: u64,
}

/// One temperature.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, MaxSize, Schema)]
pub struct Temp {
    /// `zone:<type>` for a thermal zone, `<chip>/<label>` for hwmon.
    pub name: Name,
    /// Temperature in milli-degrees Celsius, as sysfs gives it.
    pub milli_c: i32,
}

/// Maximum temperatures per frame; more are dropped (reported once).
pub const MAX_TEMPS: usize = 16;

/// Thermal zones and hwmon temperatures (`shmbus-sensor-thermal`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, MaxSize, Schema)]
pub struct Thermal {
    /// Sample time, `CLOCK_MONOTONIC` ns.
    pub t_ns: u64,
    /// Every readable temperature; empty when the machine exposes none.
    pub temps: heapless::Vec<Temp, MAX_TEMPS>,
}

/// One power supply from `/sys/class/power_supply`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, MaxSize, Schema)]
pub struct Supply {
    /// Directory name (`BAT0`, `AC`, `usb`...).
    pub name: Name,
    /// `type`: Battery, Mains, USB, UPS...
    pub kind: Name,
    /// `status`: Charging, Discharging, Full... (empty if absent).
    pub status: Name,
    /// `online` (mains, USB).
    pub online: Option<bool>,
    /// `capacity`, percent (batteries).
    pub capacity_pct: Option<u8>,
    /// `voltage_now`, µV.
    pub voltage_uv: Option<i32>,
    /// `current_now`, µA (negative when discharging on some drivers).
    pub current_ua: Option<i32>,
    /// `power_now`, µW.
    pub power_uw: Option<i32>,
}

/// Maximum supplies per frame.
pub const MAX_SUPPLIES: usize = 4;

/// Power supplies (`shmbus-sensor-power`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, MaxSize, Schema)]
pub struct Power {
    /// Sample time, `CLOCK_MONOTONIC` ns.
    pub t_ns: u64,
    /// Every supply; empty on a machine without any (containers, servers).
    pub supplies: heapless::Vec<Supply, MAX_SUPPLIES>,
}

/// Counters of one network interface, from `/proc/net/dev`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, MaxSize, Schema)]
pub struct Iface {
    /// Interface name (`eth0`).
    pub name: Name,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Packets dropped on transmit.
    pub tx_dropped: u64,
    /// Receive rate since the previous sample, bytes/s (0 for the first).
    pub rx_bytes_per_s: f32,
    /// Transmit rate since the previous sample, bytes/s.
    pub tx_bytes_per_s: f32,
}

/// Maximum interfaces per frame.
pub const MAX_IFACES: usize = 8;

/// Network interfaces (`shmbus-sensor-net`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, MaxSize, Schema)]
pub struct Net {
    /// Sample time, `CLOCK_MONOTONIC` ns.
    pub t_ns: u64,
    /// The interfaces, in `/proc/net/dev` order.
    pub ifaces: heapless::Vec<Iface, MAX_IFACES>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_truncate_at_capacity_on_a_char_boundary() {
        assert_eq!(name(" eth0\n").as_str(), "eth0");
        let long = "é".repeat(20); // 40 bytes
        let n = name(&long);
        assert_eq!(n.len(), 24);
        assert!(n.chars().all(|c| c == 'é'));
    }

    #[test]
    fn every_frame_fits_a_small_slot() {
        // Sizes fix the segment size; keep them small for a 256 MiB board.
        for (what, size) in [
            ("Imu", Imu::POSTCARD_MAX_SIZE),
            ("Accel", Accel::POSTCARD_MAX_SIZE),
            ("System", System::POSTCARD_MAX_SIZE),
            ("Thermal", Thermal::POSTCARD_MAX_SIZE),
            ("Power", Power::POSTCARD_MAX_SIZE),
            ("Net", Net::POSTCARD_MAX_SIZE),
        ] {
            assert!(size > 8 && size <= 2048, "{what}: {size} bytes");
        }
    }
}
