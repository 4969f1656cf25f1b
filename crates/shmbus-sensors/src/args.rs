//! The command line every sensor publisher shares (clap derive, the same
//! style as every `shmbus` command).

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args as ClapArgs, CommandFactory, FromArgMatches, Parser};
use shmbus_toolbox::parse;

/// Parsed common arguments.
#[derive(Debug, Clone, PartialEq, ClapArgs)]
pub struct Args {
    /// Config file (default: $SHMBUS_CONFIG, /etc/shmbus/shmbus.toml, then the
    /// built-in demo config; see /usr/share/doc/shmbus/configs/README.md,
    /// configs/README.md in the source).
    #[arg(long, value_name = "FILE", conflicts_with = "demo_config")]
    pub config: Option<PathBuf>,
    /// Use the built-in demo config.
    #[arg(long = "demo-config")]
    pub demo_config: bool,
    /// Move the config to bus NAME (keys derived from the names change).
    #[arg(long, value_name = "NAME", value_parser = shmbus_toolbox::parse::bus)]
    pub bus: Option<String>,
    /// Topic to publish (default: the topic whose `publisher` is this
    /// program). A topic whose `publisher` is another sensor is refused.
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// Publish rate, frames per second (0.001 to 1000000; default: the
    /// topic's rate_hz, else the sensor's own).
    #[arg(long = "rate", value_name = "HZ", value_parser = parse::rate, allow_hyphen_values = true)]
    pub rate_hz: Option<f64>,
    /// Stop after SECS seconds (decimals allowed).
    #[arg(long, value_name = "SECS", value_parser = parse::seconds, allow_hyphen_values = true)]
    pub duration: Option<Duration>,
    /// Stop after N frames.
    #[arg(long, value_name = "N", value_parser = parse::count, allow_hyphen_values = true)]
    pub count: Option<u64>,
    /// Stop when process PID is no longer this process's parent, and then
    /// remove the topic (segment and lock): the parent (the demo) died
    /// without removing it. Refused if PID is not the parent at the start.
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(i32).range(1..), allow_hyphen_values = true)]
    pub parent: Option<i32>,
    /// Read /proc and /sys under DIR instead of / (tests, chroots).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

/// The clap command of `program`: `what` it publishes and its default rate.
pub fn command(program: &'static str, what: &'static str, default_rate: f64) -> clap::Command {
    Cli::command()
        .name(program)
        .bin_name(program)
        .version(env!("CARGO_PKG_VERSION"))
        .about(what)
        .after_help(format!(
            "Publishes on one topic of a shmbus config, at the topic's rate_hz (default {default_rate} Hz).\n\n\
             Example:\n  {program} --demo-config --duration 10"
        ))
}

impl Args {
    /// Parse `args` (without the program name) as `program` does; the error
    /// is clap's message (or its help text). Arguments need not be UTF-8:
    /// a path (`--config`, `--root`) is taken as the system gives it.
    pub fn parse_as<A: AsRef<OsStr>>(cmd: clap::Command, args: &[A]) -> Result<Args, clap::Error> {
        let name = OsString::from(cmd.get_name());
        let m = cmd.try_get_matches_from(
            std::iter::once(name).chain(args.iter().map(|a| a.as_ref().to_os_string())),
        )?;
        Cli::from_arg_matches(&m).map(|c| c.args)
    }

    /// Parse `args` (without the program name); the error says which
    /// argument is wrong and how.
    pub fn parse(args: &[String]) -> Result<Args, String> {
        Self::parse_as(Cli::command().name("sensor"), args).map_err(|e| e.to_string())
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
        assert!(parse("--rate 0").unwrap_err().contains("e.g. 100"));
        assert!(parse("--rate 1e-300").unwrap_err().contains("out of range"));
        assert!(parse("--rate fast").unwrap_err().contains("'fast'"));
        assert!(parse("--duration -1").unwrap_err().contains("e.g. 2.5"));
        assert!(parse("--count x").unwrap_err().contains("whole number"));
        assert!(parse("--parent 0").unwrap_err().contains("--parent"));
        assert!(parse("--topic").unwrap_err().contains("--topic"));
        assert!(parse("--frobnicate").unwrap_err().contains("--frobnicate"));
        // A bus no config can have: `a/b` would share keys with bus `a`.
        assert!(
            parse("--bus a/b")
                .unwrap_err()
                .contains("bus name 'a/b' contains '/'")
        );
        assert!(
            parse("--config a --demo-config")
                .unwrap_err()
                .contains("cannot be used with")
        );
    }

    #[test]
    fn help_names_the_program() {
        let cmd = command("shmbus-sensor-imu", "publish a simulated IMU", 1000.0);
        let e = Args::parse_as(cmd, &["--help"]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("Usage: shmbus-sensor-imu"), "{text}");
        assert!(text.contains("default 1000 Hz"), "{text}");
    }
}
