//! The command line every sensor publisher shares.

use std::path::PathBuf;
use std::time::Duration;

/// Parsed common arguments.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Args {
    /// `--config FILE`: the config to take the topic from (else the search
    /// order of `shmbus-config`).
    pub config: Option<PathBuf>,
    /// `--demo-config`: use the built-in demo config, ignoring the search order.
    pub demo_config: bool,
    /// `--bus NAME`: move the config to this bus (derived keys change).
    pub bus: Option<String>,
    /// `--topic NAME`: which topic of the config to publish.
    pub topic: Option<String>,
    /// `--rate HZ`: publish rate (else the topic's `rate_hz`, else the sensor's default).
    pub rate_hz: Option<f64>,
    /// `--duration SECS`: stop after this long.
    pub duration: Option<Duration>,
    /// `--count N`: stop after N frames.
    pub count: Option<u64>,
    /// `--parent PID`: stop when this process is no longer our parent.
    pub parent: Option<i32>,
    /// `--root DIR`: read `/proc` and `/sys` under DIR (tests, chroots).
    pub root: PathBuf,
    /// `--help`.
    pub help: bool,
}

/// The usage text for `program`.
pub fn usage(program: &str, what: &str, default_rate: f64) -> String {
    format!(
        "{program}: {what}

Usage: {program} [OPTIONS]

Publishes on one topic of a shmbus config, at the topic's rate_hz (default {default_rate} Hz).

Options:
  --config FILE     config file (default: $SHMBUS_CONFIG, /etc/shmbus/shmbus.toml,
                    then the built-in demo config; see configs/README.md)
  --demo-config     use the built-in demo config
  --bus NAME        move the config to bus NAME (keys derived from the names change)
  --topic NAME      topic to publish (default: the topic whose `publisher` is {program})
  --rate HZ         publish rate, frames per second
  --duration SECS   stop after SECS seconds (decimals allowed)
  --count N         stop after N frames
  --parent PID      stop when process PID is no longer this process's parent
  --root DIR        read /proc and /sys under DIR instead of / (tests, chroots)
  -h, --help        this text
"
    )
}

impl Args {
    /// Parse `args` (without the program name). The error says which
    /// argument is wrong and how.
    pub fn parse(args: &[String]) -> Result<Args, String> {
        let mut a = Args {
            root: PathBuf::from("/"),
            ..Args::default()
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = |what: &str| -> Result<String, String> {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| format!("{flag} needs a value ({what})"))
            };
            match flag {
                "--config" => a.config = Some(PathBuf::from(value("a file")?)),
                "--demo-config" => a.demo_config = true,
                "--bus" => a.bus = Some(value("a bus name")?),
                "--topic" => a.topic = Some(value("a topic name")?),
                "--rate" => {
                    let v = value("frames per second")?;
                    match v.parse::<f64>() {
                        Ok(r) if r.is_finite() && r > 0.0 && r <= 1_000_000.0 => {
                            a.rate_hz = Some(r)
                        }
                        _ => {
                            return Err(format!(
                                "--rate {v}: give a rate in Hz between 0 and 1000000, e.g. --rate 100"
                            ));
                        }
                    }
                }
                "--duration" => {
                    let v = value("seconds")?;
                    match v.parse::<f64>() {
                        Ok(s) if s.is_finite() && s >= 0.0 => {
                            a.duration = Some(Duration::from_secs_f64(s))
                        }
                        _ => {
                            return Err(format!(
                                "--duration {v}: give seconds, e.g. --duration 2.5"
                            ));
                        }
                    }
                }
                "--count" => {
                    let v = value("a number of frames")?;
                    a.count = Some(v.parse().map_err(|_| {
                        format!("--count {v}: give a whole number, e.g. --count 100")
                    })?);
                }
                "--parent" => {
                    let v = value("a pid")?;
                    a.parent = Some(
                        v.parse()
                            .map_err(|_| format!("--parent {v}: give a process id"))?,
                    );
                }
                "--root" => a.root = PathBuf::from(value("a directory")?),
                "-h" | "--help" => a.help = true,
                other => return Err(format!("unknown argument '{other}': see --help")),
            }
        }
        if a.config.is_some() && a.demo_config {
            return Err("--config and --demo-config exclude each other: give one".into());
        }
        Ok(a)
    }

    /// A path under `--root`: `at("proc/stat")`.
    pub fn at(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args, String> {
        Args::parse(&s.split_whitespace().map(str::to_string).collect::<Vec<_>>())
    }

    #[test]
    fn common_arguments_parse() {
        let a = parse("--config b.toml --topic imu --rate 250 --duration 1.5 --count 7 --bus x --parent 42 --root /tmp/r").unwrap();
        assert_eq!(a.config, Some(PathBuf::from("b.toml")));
        assert_eq!(a.topic.as_deref(), Some("imu"));
        assert_eq!(a.rate_hz, Some(250.0));
        assert_eq!(a.duration, Some(Duration::from_millis(1500)));
        assert_eq!((a.count, a.parent), (Some(7), Some(42)));
        assert_eq!(a.bus.as_deref(), Some("x"));
        assert_eq!(a.at("proc/stat"), PathBuf::from("/tmp/r/proc/stat"));
        assert_eq!(parse("--rate=10").unwrap().rate_hz, Some(10.0));
        assert_eq!(parse("").unwrap().root, PathBuf::from("/"));
    }

    #[test]
    fn bad_arguments_say_what_to_write() {
        assert!(parse("--rate 0").unwrap_err().contains("e.g. --rate 100"));
        assert!(parse("--rate fast").unwrap_err().contains("--rate fast"));
        assert!(
            parse("--duration -1")
                .unwrap_err()
                .contains("--duration 2.5")
        );
        assert!(parse("--count x").unwrap_err().contains("whole number"));
        assert!(
            parse("--topic")
                .unwrap_err()
                .contains("--topic needs a value")
        );
        assert!(
            parse("--frobnicate")
                .unwrap_err()
                .contains("unknown argument '--frobnicate'")
        );
        assert!(
            parse("--config a --demo-config")
                .unwrap_err()
                .contains("exclude")
        );
    }
}
