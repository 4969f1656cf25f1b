//! Temperatures from `/sys/class/thermal/thermal_zone*` and
//! `/sys/class/hwmon/hwmon*/temp*_input`.

use std::path::{Path, PathBuf};

use crate::args::Args;
use crate::msg::{MAX_TEMPS, Temp, Thermal, name};
use crate::run::{Source, Warn};
use crate::sysfs::{entries, file_name, read_int_in, read_name};

/// Every temperature under `root` (`sys/class/thermal`, `sys/class/hwmon`).
/// Unreadable ones (some zones answer EIO or ENODATA) are skipped with a
/// warning each; `warn` receives a single note if there are none at all.
pub fn read_temps(root: &Path, warn: &mut Warn) -> Vec<Temp> {
    let mut out = Vec::new();
    for zone in entries(&root.join("sys/class/thermal"), "thermal_zone") {
        let kind = read_name(&zone.join("type")).unwrap_or_else(|_| file_name(&zone));
        match read_milli_c(&zone.join("temp")) {
            Ok(milli_c) => out.push(Temp {
                name: name(&format!("zone:{kind}")),
                milli_c,
            }),
            Err(e) => {
                warn.once(format!("skipping thermal zone: {e}"));
            }
        }
    }
    for chip in entries(&root.join("sys/class/hwmon"), "hwmon") {
        let chip_name = read_name(&chip.join("name")).unwrap_or_else(|_| file_name(&chip));
        for input in hwmon_inputs(&chip) {
            let n = file_name(&input);
            let stem = n.trim_end_matches("_input");
            let label =
                read_name(&chip.join(format!("{stem}_label"))).unwrap_or_else(|_| stem.to_string());
            match read_milli_c(&input) {
                Ok(milli_c) => out.push(Temp {
                    name: name(&format!("{chip_name}/{label}")),
                    milli_c,
                }),
                Err(e) => {
                    warn.once(format!("skipping hwmon sensor: {e}"));
                }
            }
        }
    }
    out
}

fn hwmon_inputs(chip: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = entries(chip, "temp")
        .into_iter()
        .filter(|p| file_name(p).ends_with("_input"))
        .collect();
    v.sort_by_key(|p| natural(p));
    v
}

/// `temp12_input` → 12, for ordering.
fn natural(p: &Path) -> u64 {
    file_name(p)
        .trim_start_matches("temp")
        .trim_end_matches("_input")
        .parse()
        .unwrap_or(u64::MAX)
}

/// A temperature in m°C: from absolute zero to what the field holds. One
/// beyond is a driver's garbage, skipped with a warning like a non-number
/// (it was clamped to 2147483.647 °C and published).
fn read_milli_c(path: &Path) -> Result<i32, String> {
    read_int_in(path, -273_150, i64::from(i32::MAX)).map(|v| v as i32)
}

/// The thermal sensor.
#[derive(Debug)]
pub struct ThermalSource {
    root: PathBuf,
}

impl ThermalSource {
    /// Reading under `args.root`.
    pub fn new(args: &Args) -> ThermalSource {
        ThermalSource {
            root: args.root.clone(),
        }
    }
}

impl Source for ThermalSource {
    type Msg = Thermal;

    fn sample(&mut self, t_ns: u64, warn: &mut Warn) -> Thermal {
        let temps = read_temps(&self.root, warn);
        if temps.is_empty() {
            warn.once(format!(
                "no temperature found in {} or {} (common in containers and VMs): publishing empty frames",
                self.root.join("sys/class/thermal").display(),
                self.root.join("sys/class/hwmon").display()
            ));
        }
        if temps.len() > MAX_TEMPS {
            warn.once(format!(
                "{} temperatures found, publishing the first {MAX_TEMPS}",
                temps.len()
            ));
        }
        Thermal {
            t_ns,
            temps: temps.into_iter().take(MAX_TEMPS).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysfs::testdir::TempDir;

    #[test]
    fn zones_and_hwmon_are_read_with_names_in_order() {
        let d = TempDir::new("thermal");
        d.file("sys/class/thermal/thermal_zone0/type", "imx_thermal_zone\n")
            .file("sys/class/thermal/thermal_zone0/temp", "42500\n")
            .file("sys/class/thermal/thermal_zone1/type", "battery\n")
            .file("sys/class/thermal/thermal_zone1/temp", "-5000\n")
            .file("sys/class/thermal/cooling_device0/type", "fan\n")
            .file("sys/class/hwmon/hwmon0/name", "coretemp\n")
            .file("sys/class/hwmon/hwmon0/temp10_input", "51000\n")
            .file("sys/class/hwmon/hwmon0/temp2_input", "50000\n")
            .file("sys/class/hwmon/hwmon0/temp2_label", "Core 0\n")
            .file("sys/class/hwmon/hwmon0/temp2_max", "100000\n");
        let mut w = Warn::new("test");
        let t = read_temps(d.path(), &mut w);
        let got: Vec<(&str, i32)> = t.iter().map(|t| (t.name.as_str(), t.milli_c)).collect();
        assert_eq!(
            got,
            [
                ("zone:imx_thermal_zone", 42500),
                ("zone:battery", -5000),
                ("coretemp/Core 0", 50000),
                ("coretemp/temp10", 51000)
            ]
        );
        assert_eq!(w.count(), 0);
    }

    #[test]
    fn unreadable_and_garbage_values_are_skipped_once() {
        let d = TempDir::new("thermal-bad");
        d.file("sys/class/thermal/thermal_zone0/type", "acpitz\n")
            .file("sys/class/thermal/thermal_zone0/temp", "n/a\n")
            .file("sys/class/thermal/thermal_zone1/type", "x\n")
            .file("sys/class/thermal/thermal_zone1/temp", "30000\n");
        let mut w = Warn::new("test");
        let t = read_temps(d.path(), &mut w);
        assert_eq!(t.len(), 1);
        assert_eq!(w.count(), 1);
        read_temps(d.path(), &mut w);
        assert_eq!(w.count(), 1, "the same problem is reported once");
    }

    /// A temperature below absolute zero or beyond the field's 32 bits is
    /// a driver's garbage: skipped with a warning. It was clamped (to
    /// 2147483.647 °C) and published as a reading.
    #[test]
    fn a_temperature_out_of_range_is_skipped_not_clamped() {
        let d = TempDir::new("thermal-range");
        d.file("sys/class/thermal/thermal_zone0/type", "a\n")
            .file("sys/class/thermal/thermal_zone0/temp", "99999999999\n")
            .file("sys/class/thermal/thermal_zone1/type", "b\n")
            .file("sys/class/thermal/thermal_zone1/temp", "-300000\n")
            .file("sys/class/thermal/thermal_zone2/type", "c\n")
            .file("sys/class/thermal/thermal_zone2/temp", "-273150\n");
        let mut w = Warn::new("test");
        let t = read_temps(d.path(), &mut w);
        let got: Vec<(&str, i32)> = t.iter().map(|t| (t.name.as_str(), t.milli_c)).collect();
        assert_eq!(got, [("zone:c", -273_150)]);
        assert_eq!(w.count(), 2);
    }

    /// A label that is not UTF-8 (a device tree's Latin-1 `label`) names
    /// its sensor, shown lossily: it was dropped for the file's stem.
    #[test]
    fn a_latin1_label_names_its_sensor() {
        let d = TempDir::new("thermal-latin1");
        d.file("sys/class/hwmon/hwmon0/name", "lm75\n")
            .file("sys/class/hwmon/hwmon0/temp1_input", "41000\n");
        std::fs::write(
            d.path().join("sys/class/hwmon/hwmon0/temp1_label"),
            b"bo\xeete\n",
        )
        .unwrap();
        let t = read_temps(d.path(), &mut Warn::new("test"));
        assert_eq!(t[0].name.as_str(), "lm75/bo\u{fffd}te");
        assert_eq!(t[0].milli_c, 41000);
    }

    #[test]
    fn no_sensors_gives_empty_frames_and_one_note() {
        let d = TempDir::new("thermal-none");
        let mut src = ThermalSource {
            root: d.path().to_path_buf(),
        };
        let mut w = Warn::new("test");
        for i in 0..3 {
            let m = src.sample(i, &mut w);
            assert!(m.temps.is_empty());
            assert_eq!(m.t_ns, i);
        }
        assert_eq!(w.count(), 1);
    }
}
