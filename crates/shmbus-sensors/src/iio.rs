//! An accelerometer through Linux IIO: `/sys/bus/iio/devices/iio:device*`
//! with `in_accel_{x,y,z}_raw`, scaled by `in_accel_scale` (or the per-axis
//! `in_accel_x_scale`) after adding the optional `in_accel_{x,y,z}_offset`.

use std::path::{Path, PathBuf};

use crate::args::Args;
use crate::msg::{Accel, Name, name};
use crate::run::{Source, Warn};
use shmbus_core::topic::shown;

use crate::sysfs::{entries, read_f64, read_int, read_name, shown_path};

/// The first IIO device under `root` that has an accelerometer.
pub fn find_accel(root: &Path) -> Option<PathBuf> {
    entries(&root.join("sys/bus/iio/devices"), "iio:device")
        .into_iter()
        .find(|d| d.join("in_accel_x_raw").exists())
}

/// Read one accelerometer sample, m/s².
pub fn read_accel(dev: &Path) -> Result<[f32; 3], String> {
    let mut out = [0f32; 3];
    for (v, axis) in out.iter_mut().zip(["x", "y", "z"]) {
        let raw = read_int(&dev.join(format!("in_accel_{axis}_raw")))?;
        let offset = match dev.join(format!("in_accel_{axis}_offset")) {
            p if p.exists() => read_f64(&p)?,
            _ => match dev.join("in_accel_offset") {
                p if p.exists() => read_f64(&p)?,
                _ => 0.0,
            },
        };
        // The axis's own scale, else the shared one. A scale file that is
        // there but unreadable is that error: it was taken for a missing
        // file ("no in_accel_scale"), and a garbage per-axis scale fell
        // back to the shared one unsaid.
        let scale = match dev.join(format!("in_accel_{axis}_scale")) {
            p if p.exists() => read_f64(&p)?,
            _ => match dev.join("in_accel_scale") {
                p if p.exists() => read_f64(&p)?,
                _ => {
                    return Err(format!(
                        "{}: no in_accel_scale or in_accel_{axis}_scale",
                        shown_path(dev)
                    ));
                }
            },
        };
        let g = (raw as f64 + offset) * scale;
        // Huge raw, offset and scale values overflow f32 (or f64): an
        // infinite acceleration is no reading.
        if !(g as f32).is_finite() {
            return Err(format!(
                "{}: in_accel_{axis} gives {g:e}, out of range",
                shown_path(dev)
            ));
        }
        *v = g as f32;
    }
    Ok(out)
}

/// How often the sensor looks for an accelerometer while it has none.
const LOOK_AGAIN_NS: u64 = 1_000_000_000;

/// The IIO accelerometer sensor.
///
/// It looks for a device while it has none, once a second: it looked once,
/// at its first frame, so a sensor started before its driver had probed
/// (a deferred I2C probe at boot, a module loaded later, a USB device
/// plugged in) published `acc = None` until restarted. A device whose
/// directory is gone (unbound, renumbered) is looked for again too.
#[derive(Debug)]
pub struct IioSource {
    root: PathBuf,
    dev: Option<(PathBuf, Name)>,
    /// When it last looked for a device (`None`: never).
    looked_at: Option<u64>,
    /// A look found no device, or the device went away.
    missed: bool,
}

impl IioSource {
    /// Reading under `args.root`.
    pub fn new(args: &Args) -> IioSource {
        IioSource {
            root: args.root.clone(),
            dev: None,
            looked_at: None,
            missed: false,
        }
    }

    fn look(&mut self, t_ns: u64, warn: &mut Warn) {
        if self
            .looked_at
            .is_some_and(|t| t_ns.saturating_sub(t) < LOOK_AGAIN_NS)
        {
            return;
        }
        let missed = self.looked_at.is_some();
        self.looked_at = Some(t_ns);
        self.dev = find_accel(&self.root).map(|d| {
            let n = read_name(&d.join("name")).unwrap_or_default();
            (d, name(&n))
        });
        self.missed |= missed;
        match &self.dev {
            None => {
                warn.once(format!(
                    "no IIO accelerometer in {}: publishing frames with acc = None until one appears",
                    shown_path(&self.root.join("sys/bus/iio/devices"))
                ));
            }
            // Said only when it came after a look that found none.
            Some((dir, device)) if self.missed => {
                warn.once(format!(
                    "IIO accelerometer '{}' found at {}: publishing its values",
                    shown(device),
                    shown_path(dir)
                ));
            }
            Some(_) => {}
        }
    }
}

impl Source for IioSource {
    type Msg = Accel;

    fn sample(&mut self, t_ns: u64, warn: &mut Warn) -> Accel {
        // Gone, or no accelerometer any more: IIO numbers are reused (the
        // lowest free one), so a driver reload can put another device (an
        // ADC, the magnetometer of the same chip) at this directory
        // between two frames. Only a missing directory was looked at, so
        // the sensor then read the new device's missing files for good,
        // publishing `acc = None` under the old device's name, and never
        // found the accelerometer at its new number.
        if self
            .dev
            .as_ref()
            .is_some_and(|(dir, _)| !dir.join("in_accel_x_raw").exists())
        {
            self.dev = None;
            self.looked_at = None;
            self.missed = true;
        }
        if self.dev.is_none() {
            self.look(t_ns, warn);
        }
        match &self.dev {
            Some((dir, device)) => Accel {
                t_ns,
                device: device.clone(),
                acc: match read_accel(dir) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        warn.once(format!("read failed: {e}"));
                        None
                    }
                },
            },
            None => Accel {
                t_ns,
                device: Name::new(),
                acc: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysfs::testdir::TempDir;

    /// A source that has not looked for a device yet, under `d`.
    fn source_at(d: &TempDir) -> IioSource {
        IioSource {
            root: d.path().to_path_buf(),
            dev: None,
            looked_at: None,
            missed: false,
        }
    }

    #[test]
    fn raw_values_are_offset_and_scaled() {
        let d = TempDir::new("iio");
        let dev = "sys/bus/iio/devices/iio:device1";
        d.file("sys/bus/iio/devices/iio:device0/in_voltage0_raw", "5\n")
            .file(&format!("{dev}/name"), "mma8451\n")
            .file(&format!("{dev}/in_accel_x_raw"), "100\n")
            .file(&format!("{dev}/in_accel_y_raw"), "-50\n")
            .file(&format!("{dev}/in_accel_z_raw"), "4096\n")
            .file(&format!("{dev}/in_accel_z_offset"), "-96\n")
            .file(&format!("{dev}/in_accel_scale"), "0.002394\n");
        let found = find_accel(d.path()).unwrap();
        assert!(found.ends_with("iio:device1"));
        let a = read_accel(&found).unwrap();
        let want = [0.2394, -0.1197, 9.576];
        for (g, w) in a.iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "{a:?}");
        }
        let mut src = source_at(&d);
        let mut w = Warn::new("test");
        let m = src.sample(3, &mut w);
        assert_eq!(m.device.as_str(), "mma8451");
        assert!(m.acc.is_some());
    }

    #[test]
    fn missing_device_or_garbage_is_none_not_a_crash() {
        let d = TempDir::new("iio-bad");
        let mut src = source_at(&d);
        let mut w = Warn::new("test");
        for t in 0..3 {
            assert_eq!(src.sample(t, &mut w).acc, None);
        }
        assert_eq!(w.count(), 1);
        let dev = "sys/bus/iio/devices/iio:device0";
        d.file(&format!("{dev}/in_accel_x_raw"), "1\n")
            .file(&format!("{dev}/in_accel_y_raw"), "oops\n")
            .file(&format!("{dev}/in_accel_z_raw"), "1\n")
            .file(&format!("{dev}/in_accel_scale"), "1\n");
        assert!(
            read_accel(&d.path().join(dev))
                .unwrap_err()
                .contains("'oops' is not an integer")
        );
        d.file(&format!("{dev}/in_accel_y_raw"), "1\n");
        std::fs::remove_file(d.path().join(format!("{dev}/in_accel_scale"))).unwrap();
        assert!(
            read_accel(&d.path().join(dev))
                .unwrap_err()
                .contains("no in_accel_scale")
        );
    }

    /// `nan`, `inf` or `1e999` in a scale or offset, or values whose
    /// product overflows: an error (the frame says `acc = None`), never a
    /// NaN or an infinite acceleration in the frame.
    #[test]
    fn non_finite_scales_and_overflows_are_errors_not_nan_frames() {
        let d = TempDir::new("iio-nan");
        let dev = "sys/bus/iio/devices/iio:device0";
        d.file(&format!("{dev}/in_accel_x_raw"), "1\n")
            .file(&format!("{dev}/in_accel_y_raw"), "1\n")
            .file(&format!("{dev}/in_accel_z_raw"), "1\n");
        let path = d.path().join(dev);
        for (file, value, says) in [
            ("in_accel_scale", "nan", "'nan' is not a finite number"),
            ("in_accel_scale", "inf", "'inf' is not a finite number"),
            ("in_accel_scale", "1e999", "'1e999' is not a finite number"),
            ("in_accel_offset", "NaN", "'NaN' is not a finite number"),
            ("in_accel_scale", "1e300", "out of range"),
        ] {
            d.file(&format!("{dev}/in_accel_scale"), "1\n")
                .file(&format!("{dev}/in_accel_offset"), "0\n")
                .file(&format!("{dev}/{file}"), value);
            let e = read_accel(&path).unwrap_err();
            assert!(e.contains(says), "{file} = {value}: {e}");
            let mut src = source_at(&d);
            assert_eq!(src.sample(1, &mut Warn::new("test")).acc, None);
        }
        // A garbage per-axis scale is that error, not the shared scale.
        d.file(&format!("{dev}/in_accel_scale"), "0.5\n")
            .file(&format!("{dev}/in_accel_offset"), "0\n")
            .file(&format!("{dev}/in_accel_y_scale"), "junk\n");
        let e = read_accel(&path).unwrap_err();
        assert!(e.contains("'junk' is not a finite number"), "{e}");
        std::fs::remove_file(path.join("in_accel_y_scale")).unwrap();
        assert_eq!(read_accel(&path), Ok([0.5, 0.5, 0.5]));
    }

    /// An accelerometer that appears after the sensor started (a driver
    /// that probes late at boot, a module loaded later) is found within a
    /// second, and one that goes away and comes back under another number
    /// is found again: the sensor looked once, at its first frame, and
    /// published `acc = None` until restarted.
    #[test]
    fn an_accelerometer_that_appears_later_is_found() {
        let d = TempDir::new("iio-late");
        let mut src = source_at(&d);
        let mut w = Warn::new("test");
        let s = 1_000_000_000u64;
        assert_eq!(src.sample(5 * s, &mut w).acc, None);
        let add = |n: u32| {
            let dev = format!("sys/bus/iio/devices/iio:device{n}");
            d.file(&format!("{dev}/name"), "mma8451\n")
                .file(&format!("{dev}/in_accel_x_raw"), &format!("{n}\n"))
                .file(&format!("{dev}/in_accel_y_raw"), "0\n")
                .file(&format!("{dev}/in_accel_z_raw"), "0\n")
                .file(&format!("{dev}/in_accel_scale"), "1\n");
            d.path().join(dev)
        };
        let first = add(0);
        // Within the second after the last look: not yet looked again.
        assert_eq!(src.sample(5 * s + s / 2, &mut w).acc, None);
        let m = src.sample(6 * s, &mut w);
        assert_eq!(m.acc, Some([0.0, 0.0, 0.0]));
        assert_eq!(m.device.as_str(), "mma8451");
        // Unbound, then back as iio:device3.
        std::fs::remove_dir_all(&first).unwrap();
        assert_eq!(src.sample(7 * s, &mut w).acc, None);
        add(3);
        assert_eq!(src.sample(8 * s, &mut w).acc, Some([3.0, 0.0, 0.0]));
    }

    /// Between two frames the accelerometer's number goes to another IIO
    /// device (an ADC) and the accelerometer comes back at a new one: the
    /// sensor follows it. It kept the old directory because it was still
    /// there, and published `acc = None` under the old name for good.
    #[test]
    fn an_accelerometer_whose_number_another_device_took_is_found_again() {
        let d = TempDir::new("iio-renumbered");
        let devices = d.path().join("sys/bus/iio/devices");
        let accel = |n: u32, name: &str| {
            let dev = format!("sys/bus/iio/devices/iio:device{n}");
            d.file(&format!("{dev}/name"), name)
                .file(&format!("{dev}/in_accel_x_raw"), "2\n")
                .file(&format!("{dev}/in_accel_y_raw"), "0\n")
                .file(&format!("{dev}/in_accel_z_raw"), "0\n")
                .file(&format!("{dev}/in_accel_scale"), "1\n");
        };
        accel(0, "fxos8700\n");
        let mut src = source_at(&d);
        let mut w = Warn::new("test");
        let s = 1_000_000_000u64;
        assert_eq!(src.sample(s, &mut w).acc, Some([2.0, 0.0, 0.0]));
        // The driver is reloaded: an ADC probes first and takes device0.
        std::fs::remove_dir_all(devices.join("iio:device0")).unwrap();
        d.file("sys/bus/iio/devices/iio:device0/name", "vf610-adc\n")
            .file("sys/bus/iio/devices/iio:device0/in_voltage0_raw", "5\n");
        accel(1, "fxos8700\n");
        let m = src.sample(s + s / 50, &mut w);
        assert_eq!(m.acc, Some([2.0, 0.0, 0.0]), "{m:?}");
        assert_eq!(m.device.as_str(), "fxos8700");
    }
}
