//! # shmbus-examples: an IMU publisher and subscriber
//!
//! The message type [`Imu`] is what a sensor daemon for an inertial
//! measurement unit would publish: a sample counter, the sensor timestamp,
//! a frame id, acceleration, angular rate and temperature. Every field has
//! a fixed maximum size (`heapless::String`, arrays), so postcard's
//! `MaxSize` gives the frame capacity at compile time.
//!
//! The binaries `imu-publisher` and `imu-subscriber` use it; see the
//! crate's `README.md` for how to run them in two terminals.
#![warn(missing_docs)]

use std::time::Duration;

use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};
use shmbus_pub::Topic;

/// The default topic name of the examples.
pub const DEFAULT_TOPIC: &str = "imu";

/// One IMU sample.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, MaxSize, postcard_schema::Schema)]
pub struct Imu {
    /// Sample counter, from 0 for each publisher run.
    pub seq: u32,
    /// When the sensor took the sample: `CLOCK_MONOTONIC`, microseconds.
    pub t_us: u64,
    /// Which sensor (coordinate frame) the sample is in.
    pub frame_id: heapless::String<16>,
    /// Linear acceleration, m/s², x y z.
    pub acc: [f32; 3],
    /// Angular rate, rad/s, x y z.
    pub gyro: [f32; 3],
    /// Die temperature, °C.
    pub temp_c: f32,
}

impl Imu {
    /// A simulated sample: a board rocking slowly on a table. Deterministic
    /// in `seq`, so a test can recompute what was sent.
    pub fn simulate(seq: u32, t_us: u64) -> Imu {
        let phase = seq as f32 * 0.05;
        Imu {
            seq,
            t_us,
            frame_id: heapless::String::from("imu_link"),
            acc: [0.3 * phase.sin(), 0.3 * phase.cos(), 9.81],
            gyro: [0.02 * phase.cos(), -0.02 * phase.sin(), 0.0],
            temp_c: 35.0 + (seq % 100) as f32 * 0.01,
        }
    }
}

/// Parse a System V key: `0x`-prefixed hex or decimal.
pub fn parse_key(s: &str) -> Result<i32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).map(|k| k as i32),
        None => s.parse::<i32>(),
    };
    r.map_err(|_| format!("--key {s}: expected a number such as 0x53001234"))
}

/// The longest `--duration`, `--timeout` or `--wait`: 10^9 s (31.7 years).
pub const MAX_SECS: f64 = 1e9;

/// Seconds as `--flag` takes them: a finite number from 0 to [`MAX_SECS`].
/// `Duration::from_secs_f64` of `-1`, `nan` or `1e30` panicked (exit 101
/// and a backtrace), and a `--duration` of `-5` or `nan` published for
/// ever, as if none had been given.
pub fn seconds(flag: &str, v: f64) -> Result<Duration, String> {
    if !(0.0..=MAX_SECS).contains(&v) {
        return Err(format!(
            "--{flag} {v:?}: give seconds from 0 to {MAX_SECS:e} (decimals allowed), e.g. 2.5"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Write `text` on stdout. An error (`| head -1` closed the pipe) is
/// returned, not a panic: `println!` panicked (exit 101 and a backtrace),
/// and a publisher with `--remove true` then left its topic behind.
pub fn out(text: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    o.write_fmt(text)?;
    o.write_all(b"\n")?;
    o.flush()
}

/// Write `text` on stderr, if it can be written (`eprintln!` panics when
/// it cannot).
pub fn say(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Command-line options shared by both binaries: `--name NAME`, `--key
/// KEY`, and the binary's own `--flag VALUE` pairs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The topic (name, key, slots).
    pub topic: Topic,
    /// The other `--flag value` pairs, in order.
    pub rest: Vec<(String, String)>,
}

impl Options {
    /// Parse `args` (without the program name). Every option takes a value.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut name = DEFAULT_TOPIC.to_string();
        let mut key = None;
        let mut slots = None;
        let mut rest = Vec::new();
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            if flag == "-h" || flag == "--help" {
                return Err(String::new());
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--name" => name = value,
                "--key" => key = Some(parse_key(&value)?),
                "--slots" => {
                    slots = Some(
                        value
                            .parse()
                            .map_err(|_| format!("--slots {value}: not a number"))?,
                    )
                }
                _ if flag.starts_with("--") => rest.push((flag[2..].to_string(), value)),
                _ => return Err(format!("unexpected argument {flag}")),
            }
        }
        let mut topic = Topic::new(&name);
        if let Some(k) = key {
            topic = topic.key(k);
        }
        if let Some(s) = slots {
            topic = topic.slots(s);
        }
        Ok(Options { topic, rest })
    }

    /// The value of `--flag`, parsed, or `default`.
    pub fn get<T: core::str::FromStr>(&self, flag: &str, default: T) -> Result<T, String> {
        match self.rest.iter().rev().find(|(f, _)| f == flag) {
            Some((_, v)) => v
                .parse()
                .map_err(|_| format!("--{flag} {v}: not a valid value")),
            None => Ok(default),
        }
    }

    /// Fail on a flag that is not in `known`.
    pub fn only(&self, known: &[&str]) -> Result<(), String> {
        match self.rest.iter().find(|(f, _)| !known.contains(&f.as_str())) {
            Some((f, _)) => Err(format!("unknown option --{f}")),
            None => Ok(()),
        }
    }
}

/// Run `f` (opening the topic, a publish) with SIGTERM, SIGINT and SIGHUP
/// held back in the calling thread (`pthread_sigmask`, two system calls):
/// `systemctl stop`, Ctrl-C or a hang-up that arrives meanwhile ends the
/// program right after `f`, by its default action as before, and never in
/// the middle of a frame. Ended there, a publisher leaves that slot
/// mid-write, and every in-order reader gets "publisher died mid-publish"
/// for it until the next start repairs it. If the mask cannot be changed,
/// `f` runs anyway.
pub fn between_frames<R>(f: impl FnOnce() -> R) -> R {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
    let mut stops = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stops.add(sig);
    }
    let mut before = SigSet::empty();
    let held = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&stops), Some(&mut before)).is_ok();
    let r = f();
    if held {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&before), None);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_capacity_is_known_at_compile_time() {
        // u32 varint 5 + u64 varint 10 + string 1 + 16 + 7 f32 = 28.
        assert_eq!(Imu::POSTCARD_MAX_SIZE, 5 + 10 + 1 + 16 + 28);
        let bytes = postcard::to_allocvec(&Imu::simulate(7, 1_000)).unwrap();
        assert!(bytes.len() <= Imu::POSTCARD_MAX_SIZE);
        assert_eq!(
            postcard::from_bytes::<Imu>(&bytes).unwrap(),
            Imu::simulate(7, 1_000)
        );
    }

    /// Seconds that are negative, not a number or too large are refused,
    /// not a panic (`Duration::from_secs_f64`) and not "no limit".
    #[test]
    fn bad_seconds_are_refused() {
        for bad in [-1.0, -0.5, f64::NAN, f64::INFINITY, 1e30] {
            let e = seconds("wait", bad).unwrap_err();
            assert!(e.starts_with("--wait ") && e.contains("from 0 to"), "{e}");
        }
        assert_eq!(seconds("wait", 2.5), Ok(Duration::from_millis(2500)));
        assert_eq!(seconds("wait", 0.0), Ok(Duration::ZERO));
    }

    #[test]
    fn options_parse_and_refuse() {
        let o = Options::parse(["--key", "0x53000001", "--rate", "50"].map(String::from)).unwrap();
        assert_eq!(o.topic.key, 0x5300_0001);
        assert_eq!(o.topic.name, "imu");
        assert_eq!(o.get("rate", 1.0).unwrap(), 50.0);
        assert_eq!(o.get("count", 3u64).unwrap(), 3);
        assert!(o.only(&["rate"]).is_ok());
        assert!(o.only(&["count"]).unwrap_err().contains("--rate"));
        assert!(
            Options::parse(["--key".to_string()])
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(Options::parse(["--key", "zz"].map(String::from)).is_err());
    }
}
