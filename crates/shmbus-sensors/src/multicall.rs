//! `shmbus-sensor`: the six sensor publishers in one program, as BusyBox
//! does it.
//!
//! Six near-identical static programs took six times the flash of one (a
//! stripped armv7 sensor program is about 1.5 MB, almost all of it the code
//! they share) and six whole-program links in every build. One program now
//! runs any sensor:
//!
//! - `shmbus-sensor NAME [ARGS]` runs sensor `NAME` (`system`, `thermal`,
//!   `power`, `net`, `iio`, `imu`) with `ARGS`;
//! - run through a link (symlink or hard link) named `shmbus-sensor-NAME`,
//!   in any directory, it runs that sensor with all its arguments: the
//!   units, configs and scripts that run `shmbus-sensor-imu ...` work as
//!   they did, and the process shows as `shmbus-sensor-imu` in `ps` and in
//!   every message;
//! - `shmbus-sensor --help` lists the sensors, `shmbus-sensor NAME --help`
//!   (or `shmbus-sensor-NAME --help`) is that sensor's help, and
//!   `--version` says the version;
//! - a name that is no sensor (`shmbus-sensor foo`, or a link named
//!   `shmbus-sensor-foo`) is an error that lists the six, exit 2.
//!
//! Arguments reach the sensor as the system gives them (they need not be
//! UTF-8), as [`crate::run_sensor_os`] takes them.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::ExitCode;

use crate::SensorKind;

/// The multi-call program's own name.
pub const PROGRAM: &str = "shmbus-sensor";

/// What a command line asks the multi-call program to do.
#[derive(Debug, PartialEq)]
pub enum Dispatch<'a> {
    /// Run this sensor with these arguments (without the program name or
    /// the sensor's name).
    Run(SensorKind, &'a [OsString]),
    /// Print [`help`] on stdout, exit 0.
    Help,
    /// Print the version on stdout, exit 0.
    Version,
    /// Print this message on stderr, exit 2.
    Error(String),
}

/// The sensors' names, `system, thermal, power, net, iio, imu`.
fn names() -> String {
    let names: Vec<&str> = SensorKind::ALL.iter().map(|k| k.name()).collect();
    names.join(", ")
}

/// The sensor a (link) name or a `NAME` argument names: `imu` or
/// `shmbus-sensor-imu`.
fn sensor(name: &OsStr) -> Option<SensorKind> {
    let name = name.to_str()?;
    SensorKind::ALL
        .into_iter()
        .find(|k| k.name() == name || k.program() == name)
}

/// What `argv0` (the name the program was run as) and `args` (the rest of
/// the command line) ask for.
pub fn dispatch<'a>(argv0: &OsStr, args: &'a [OsString]) -> Dispatch<'a> {
    let base = Path::new(argv0)
        .file_name()
        .unwrap_or(argv0)
        .to_string_lossy();
    if let Some(rest) = base.strip_prefix("shmbus-sensor-") {
        return match SensorKind::ALL.into_iter().find(|k| k.name() == rest) {
            Some(kind) => Dispatch::Run(kind, args),
            None => Dispatch::Error(format!(
                "{PROGRAM}: run as '{}', a name that is no sensor: the sensors are {} (link this program as shmbus-sensor-NAME, or run `{PROGRAM} NAME`)",
                shmbus_core::topic::shown(&base),
                names()
            )),
        };
    }
    let Some(first) = args.first() else {
        return Dispatch::Error(format!(
            "{PROGRAM}: which sensor? Run `{PROGRAM} NAME [OPTIONS]`; the sensors are {} (`{PROGRAM} --help` says more)",
            names()
        ));
    };
    if let Some(kind) = sensor(first) {
        return Dispatch::Run(kind, &args[1..]);
    }
    match first.to_str() {
        Some("-h" | "--help" | "help") => Dispatch::Help,
        Some("-V" | "--version") => Dispatch::Version,
        _ => Dispatch::Error(format!(
            "{PROGRAM}: unknown sensor '{}': the sensors are {} (`{PROGRAM} --help` lists them)",
            shmbus_core::topic::shown(&first.to_string_lossy()),
            names()
        )),
    }
}

/// `shmbus-sensor --help`: the sensors (under `Commands:`, as a `--help`
/// with subcommands lists them) and how to run each.
pub fn help() -> String {
    let mut s = format!(
        "Run one shmbus sensor publisher: the six sensors in one program\n\n\
         Usage: {PROGRAM} <SENSOR> [OPTIONS]\n       \
         shmbus-sensor-<SENSOR> [OPTIONS]    (a link to {PROGRAM} named after the sensor)\n\n\
         Commands:\n"
    );
    for k in SensorKind::ALL {
        s.push_str(&format!("  {:<9}{}\n", k.name(), k.what()));
    }
    s.push_str(
        "\nOptions:\n  \
         -h, --help     Print help (`shmbus-sensor SENSOR --help`: the sensor's options)\n  \
         -V, --version  Print version\n\n\
         Each sensor also runs as shmbus-sensor-SENSOR (a symlink to this program, in any\n\
         directory): `shmbus-sensor-imu --demo-config` is `shmbus-sensor imu --demo-config`.\n",
    );
    s
}

/// The program: dispatch on `argv0` and `args`, run the sensor or say
/// what is wrong. Returns the exit code (2: an unknown sensor).
pub fn main(argv0: &OsStr, args: &[OsString]) -> ExitCode {
    match dispatch(argv0, args) {
        Dispatch::Run(kind, rest) => {
            // Show as the sensor in `ps`/`top` (the kernel keeps 15
            // bytes): `shmbus-sensor imu` as its link does, and a link run
            // by qemu-user, whose process the kernel named `qemu-arm`.
            if let Ok(name) = std::ffi::CString::new(kind.program()) {
                let _ = nix::sys::prctl::set_name(&name);
            }
            crate::run_sensor_os(kind.name(), rest)
        }
        Dispatch::Help => {
            print_out(&help());
            ExitCode::SUCCESS
        }
        Dispatch::Version => {
            print_out(&format!("{PROGRAM} {}\n", env!("CARGO_PKG_VERSION")));
            ExitCode::SUCCESS
        }
        Dispatch::Error(msg) => {
            shmbus_toolbox::say!("{msg}");
            ExitCode::from(2)
        }
    }
}

/// Write `text` on stdout, ignoring a closed pipe (`| head -1`).
fn print_out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_name_run_as_or_the_first_argument_picks_the_sensor() {
        let a = os(&["--rate", "5"]);
        assert_eq!(
            dispatch(OsStr::new("/usr/bin/shmbus-sensor-imu"), &a),
            Dispatch::Run(SensorKind::Imu, &a[..])
        );
        assert_eq!(
            dispatch(OsStr::new("shmbus-sensor-net"), &a),
            Dispatch::Run(SensorKind::Net, &a[..])
        );
        let b = os(&["thermal", "--help"]);
        assert_eq!(
            dispatch(OsStr::new("/x/shmbus-sensor"), &b),
            Dispatch::Run(SensorKind::Thermal, &b[1..])
        );
        let c = os(&["shmbus-sensor-power"]);
        assert_eq!(
            dispatch(OsStr::new("shmbus-sensor"), &c),
            Dispatch::Run(SensorKind::Power, &c[1..])
        );
        // Through a link, `imu` is an argument of the sensor, not a name.
        let d = os(&["imu"]);
        assert_eq!(
            dispatch(OsStr::new("shmbus-sensor-system"), &d),
            Dispatch::Run(SensorKind::System, &d[..])
        );
        assert_eq!(
            dispatch(OsStr::new("shmbus-sensor"), &os(&["--help"])),
            Dispatch::Help
        );
        assert_eq!(
            dispatch(OsStr::new("shmbus-sensor"), &os(&["-V"])),
            Dispatch::Version
        );
    }

    #[test]
    fn a_name_that_is_no_sensor_lists_the_six() {
        for (argv0, args) in [
            ("/usr/bin/shmbus-sensor-foo", os(&["--rate", "5"])),
            ("shmbus-sensor", os(&["foo"])),
            ("shmbus-sensor", os(&[])),
            ("shmbus-sensor", os(&["--rate"])),
            ("shmbus-sensor-", os(&[])),
            ("shmbus-sensor-x\x1b[31m", os(&[])),
        ] {
            match dispatch(OsStr::new(argv0), &args) {
                Dispatch::Error(m) => {
                    assert!(m.contains("system, thermal, power, net, iio, imu"), "{m}");
                    assert!(!m.contains('\x1b'), "escaped: {m}");
                }
                other => panic!("{argv0} {args:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_name_that_is_not_utf8_is_an_error_not_a_panic() {
        use std::os::unix::ffi::OsStrExt;
        let bad = OsStr::from_bytes(b"caf\xe9");
        let args = vec![bad.to_os_string()];
        assert!(matches!(
            dispatch(OsStr::new("shmbus-sensor"), &args),
            Dispatch::Error(m) if m.contains("unknown sensor 'caf\u{fffd}'")
        ));
        let mut link = b"/x/shmbus-sensor-".to_vec();
        link.extend_from_slice(b"im\xffu");
        assert!(matches!(
            dispatch(OsStr::from_bytes(&link), &[]),
            Dispatch::Error(_)
        ));
    }

    #[test]
    fn the_help_lists_every_sensor_under_commands() {
        let h = help();
        let listed = h.split("Commands:").nth(1).unwrap();
        let listed = listed.split("Options:").next().unwrap();
        let words: Vec<&str> = listed
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let want: Vec<&str> = SensorKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(words, want);
    }
}
