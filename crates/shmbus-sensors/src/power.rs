//! Power supplies from `/sys/class/power_supply/*`.

use std::path::{Path, PathBuf};

use crate::args::Args;
use crate::msg::{MAX_SUPPLIES, Power, Supply, name};
use crate::run::{Source, Warn};
use crate::sysfs::{entries, file_name, read_int_in, read_name};

/// Read one supply directory. Attributes a driver does not provide are
/// `None`; a value that is not a number, or out of its range (a capacity
/// outside 0 to 100 %, a voltage, current or power beyond 32 bits), is
/// `None` with a warning.
pub fn read_supply(dir: &Path, warn: &mut Warn) -> Supply {
    let i32_range = (i64::from(i32::MIN), i64::from(i32::MAX));
    let mut int = |attr: &str, (lo, hi): (i64, i64)| -> Option<i64> {
        let p = dir.join(attr);
        if !p.exists() {
            return None;
        }
        match read_int_in(&p, lo, hi) {
            Ok(v) => Some(v),
            Err(e) => {
                // ENODATA from a battery that is not present is common.
                warn.once(format!("skipping {e}"));
                None
            }
        }
    };
    Supply {
        name: name(&file_name(dir)),
        kind: name(&read_name(&dir.join("type")).unwrap_or_default()),
        status: name(&read_name(&dir.join("status")).unwrap_or_default()),
        online: int("online", (i64::MIN, i64::MAX)).map(|v| v != 0),
        capacity_pct: int("capacity", (0, 100)).map(|v| v as u8),
        voltage_uv: int("voltage_now", i32_range).map(|v| v as i32),
        current_ua: int("current_now", i32_range).map(|v| v as i32),
        power_uw: int("power_now", i32_range).map(|v| v as i32),
    }
}

/// The power sensor.
#[derive(Debug)]
pub struct PowerSource {
    dir: PathBuf,
}

impl PowerSource {
    /// Reading under `args.root`.
    pub fn new(args: &Args) -> PowerSource {
        PowerSource {
            dir: args.at("sys/class/power_supply"),
        }
    }
}

impl Source for PowerSource {
    type Msg = Power;

    fn sample(&mut self, t_ns: u64, warn: &mut Warn) -> Power {
        let dirs = entries(&self.dir, "");
        if dirs.is_empty() {
            warn.once(format!(
                "no power supply in {} (no battery or charger driver here): publishing empty frames",
                self.dir.display()
            ));
        }
        if dirs.len() > MAX_SUPPLIES {
            warn.once(format!(
                "{} supplies found, publishing the first {MAX_SUPPLIES}",
                dirs.len()
            ));
        }
        Power {
            t_ns,
            supplies: dirs
                .iter()
                .take(MAX_SUPPLIES)
                .map(|d| read_supply(d, warn))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysfs::testdir::TempDir;

    #[test]
    fn battery_and_mains_are_read() {
        let d = TempDir::new("power");
        d.file("sys/class/power_supply/BAT0/type", "Battery\n")
            .file("sys/class/power_supply/BAT0/status", "Discharging\n")
            .file("sys/class/power_supply/BAT0/capacity", "87\n")
            .file("sys/class/power_supply/BAT0/voltage_now", "12100000\n")
            .file("sys/class/power_supply/BAT0/current_now", "-850000\n")
            .file("sys/class/power_supply/AC/type", "Mains\n")
            .file("sys/class/power_supply/AC/online", "0\n");
        let mut src = PowerSource {
            dir: d.path().join("sys/class/power_supply"),
        };
        let mut w = Warn::new("test");
        let m = src.sample(7, &mut w);
        assert_eq!(m.supplies.len(), 2);
        let ac = &m.supplies[0];
        assert_eq!(
            (ac.name.as_str(), ac.kind.as_str(), ac.online),
            ("AC", "Mains", Some(false))
        );
        assert_eq!((ac.capacity_pct, ac.voltage_uv), (None, None));
        let bat = &m.supplies[1];
        assert_eq!(
            (bat.kind.as_str(), bat.status.as_str()),
            ("Battery", "Discharging")
        );
        assert_eq!(
            (bat.capacity_pct, bat.voltage_uv, bat.current_ua),
            (Some(87), Some(12_100_000), Some(-850_000))
        );
        assert_eq!(bat.power_uw, None);
        assert_eq!(w.count(), 0);
    }

    #[test]
    fn garbage_values_become_none_with_one_warning_and_no_supplies_is_empty() {
        let d = TempDir::new("power-bad");
        d.file("sys/class/power_supply/BAT1/type", "Battery\n")
            .file("sys/class/power_supply/BAT1/capacity", "full\n")
            .file(
                "sys/class/power_supply/BAT1/voltage_now",
                "99999999999999\n",
            );
        let mut w = Warn::new("test");
        let s = read_supply(&d.path().join("sys/class/power_supply/BAT1"), &mut w);
        assert_eq!(s.capacity_pct, None);
        assert_eq!(
            s.voltage_uv, None,
            "a value out of range is missing, never clamped (it read i32::MAX)"
        );
        assert_eq!(w.count(), 2);
        // A capacity below 0 or above 100 % is garbage too: it read 0 %
        // (a consumer shuts the board down for that) and 100 %.
        for (bad, warned) in [("-5", 3), ("101", 4)] {
            d.file("sys/class/power_supply/BAT1/capacity", &format!("{bad}\n"));
            let s = read_supply(&d.path().join("sys/class/power_supply/BAT1"), &mut w);
            assert_eq!(s.capacity_pct, None, "capacity {bad}");
            assert_eq!(w.count(), warned, "capacity {bad}");
        }
        let before = w.count();
        let mut none = PowerSource {
            dir: d.path().join("nothing"),
        };
        assert!(none.sample(1, &mut w).supplies.is_empty());
        assert!(none.sample(2, &mut w).supplies.is_empty());
        assert_eq!(
            w.count(),
            before + 1,
            "the missing directory is reported once"
        );
    }

    /// A supply whose directory name is not UTF-8 is published (its name
    /// shown lossily), not skipped without a word.
    #[test]
    fn a_supply_with_a_non_utf8_name_is_published() {
        use std::os::unix::ffi::OsStrExt;
        let d = TempDir::new("power-latin1");
        let dir = d
            .path()
            .join("sys/class/power_supply")
            .join(std::ffi::OsStr::from_bytes(b"bat\xff"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("capacity"), "50\n").unwrap();
        let mut src = PowerSource {
            dir: d.path().join("sys/class/power_supply"),
        };
        let mut w = Warn::new("test");
        let m = src.sample(1, &mut w);
        assert_eq!(m.supplies.len(), 1, "{m:?}");
        assert_eq!(m.supplies[0].name.as_str(), "bat\u{fffd}");
        assert_eq!(m.supplies[0].capacity_pct, Some(50));
    }
}
