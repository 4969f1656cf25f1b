//! Numeric command-line values, with their bounds, as clap value parsers
//! (`#[arg(value_parser = shmbus_toolbox::parse::seconds)]`).
//!
//! Every value is checked here, before a command starts: out of range, not
//! finite or not a number is an error that says what to write (clap prints
//! it and the command exits 2). Nothing downstream converts an unchecked
//! float to a `Duration` or divides by it.
//!
//! | parser | accepts |
//! |---|---|
//! | [`seconds`] | decimal seconds from [`MIN_SECS`] (1 ms) to [`MAX_SECS`] (10^9 s, 31.7 years) |
//! | [`rate`] | frames per second from [`MIN_RATE`] (one frame per 1000 s) to [`MAX_RATE`] (10^6) |
//! | [`speed`] | a replay speed factor: 0 (as fast as possible) or [`MIN_SPEED`] to [`MAX_SPEED`] |
//! | [`count`] | a whole number from 1 to 2^64 - 1 |
//! | [`count_or_zero`] | a whole number from 0 to 2^64 - 1 (the command says what 0 means) |
//! | [`millis`] | whole milliseconds from 0 to [`MAX_MILLIS`] (one minute) |
//! | [`key`] | a System V key: `0x5312abcd`, or decimal (negative allowed, as `/proc` shows keys); never 0 |
//! | [`bus`] | a bus name (`--bus`): 1 to 63 letters, digits and `_.-`, no `/` ([`shmbus_core::topic::validate_bus`]) |

use std::time::Duration;

/// The shortest duration an option takes: 1 ms.
pub const MIN_SECS: f64 = 0.001;
/// The longest duration an option takes: 10^9 s (31.7 years).
pub const MAX_SECS: f64 = 1e9;
/// The lowest publish rate: one frame per 1000 s.
pub const MIN_RATE: f64 = 0.001;
/// The highest publish rate: a million frames per second.
pub const MAX_RATE: f64 = 1e6;
/// The slowest replay speed factor other than 0.
pub const MIN_SPEED: f64 = 0.001;
/// The fastest replay speed factor (0 means as fast as possible anyway).
pub const MAX_SPEED: f64 = 1e6;
/// The longest sampling window in milliseconds.
pub const MAX_MILLIS: u64 = 60_000;

fn float(s: &str, what: &str, example: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number; give {what}, e.g. {example}"))?;
    if !v.is_finite() {
        return Err(format!(
            "'{s}' is not a finite number; give {what}, e.g. {example}"
        ));
    }
    Ok(v)
}

fn within(v: f64, s: &str, min: f64, max: f64, what: &str, example: &str) -> Result<f64, String> {
    if v < min || v > max {
        return Err(format!(
            "{s} is out of range: give {what} from {min} to {max}, e.g. {example}"
        ));
    }
    Ok(v)
}

/// Seconds, from [`MIN_SECS`] to [`MAX_SECS`], as a `Duration`.
pub fn seconds(s: &str) -> Result<Duration, String> {
    const WHAT: &str = "seconds (decimals allowed)";
    let v = float(s, WHAT, "2.5")?;
    let v = within(v, s, MIN_SECS, MAX_SECS, WHAT, "2.5")?;
    Ok(Duration::from_secs_f64(v))
}

/// A publish rate in frames per second, from [`MIN_RATE`] to [`MAX_RATE`].
pub fn rate(s: &str) -> Result<f64, String> {
    const WHAT: &str = "frames per second";
    let v = float(s, WHAT, "100")?;
    within(v, s, MIN_RATE, MAX_RATE, WHAT, "100")
}

/// The period of a rate from [`rate`]: `1 / hz` seconds, at least 1 µs.
pub fn period(hz: f64) -> Duration {
    let hz = hz.clamp(MIN_RATE, MAX_RATE);
    Duration::from_secs_f64(1.0 / hz)
}

/// A replay speed factor: 0 (as fast as possible), or from [`MIN_SPEED`] to
/// [`MAX_SPEED`] (1 = real time, 2 = twice as fast).
pub fn speed(s: &str) -> Result<f64, String> {
    const WHAT: &str = "a speed factor (1 = real time, 0 = as fast as possible)";
    let v = float(s, WHAT, "2")?;
    if v == 0.0 {
        return Ok(0.0);
    }
    within(v, s, MIN_SPEED, MAX_SPEED, WHAT, "2")
}

/// A whole number from `min` to `u64::MAX`; a refusal names that range.
fn whole(s: &str, min: u64) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        Ok(n) => Err(format!(
            "{n} is not allowed: give a whole number of at least {min}, e.g. 100"
        )),
        Err(_) => Err(format!(
            "'{s}' is not a whole number from {min} to {}, e.g. 100",
            u64::MAX
        )),
    }
}

/// A whole number, at least 1.
pub fn count(s: &str) -> Result<u64, String> {
    whole(s, 1)
}

/// A whole number, 0 allowed (the option says what 0 means).
pub fn count_or_zero(s: &str) -> Result<u64, String> {
    whole(s, 0)
}

/// Whole milliseconds from 0 to [`MAX_MILLIS`].
pub fn millis(s: &str) -> Result<u64, String> {
    // Every refusal names the real range, not u64's.
    let range = format!("give whole milliseconds from 0 to {MAX_MILLIS}, e.g. 200");
    match s.trim().parse::<u64>() {
        Ok(v) if v <= MAX_MILLIS => Ok(v),
        Ok(_) => Err(format!("{s} is out of range: {range}")),
        Err(_) => Err(format!("'{s}' is not a whole number: {range}")),
    }
}

/// A System V key: `0x5312abcd` (hex, as `ipcs` shows it) or decimal
/// (negative allowed, as `/proc/sysvipc` shows it). 0 is `IPC_PRIVATE` and
/// never names a topic.
pub fn key(s: &str) -> Result<i32, String> {
    let t = s.trim();
    let k = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok().map(|u| u as i32),
        None => t.parse::<i64>().ok().and_then(|k| {
            (i64::from(i32::MIN)..=i64::from(u32::MAX))
                .contains(&k)
                .then_some(k as u32 as i32)
        }),
    };
    match k {
        Some(0) => Err("key 0 is IPC_PRIVATE and never names a topic".into()),
        Some(k) => Ok(k),
        None => Err(format!(
            "'{s}' is not a System V key: write 0x5312abcd or a decimal number"
        )),
    }
}

/// A bus name (`--bus`): what a config's `bus` may be
/// ([`shmbus_core::topic::validate_bus`]). Without this check `--bus a/b`
/// looked for `c` at the key of topic `b/c` on bus `a`, and `--bus ""` at
/// a key no config can give; the error quotes the name escaped.
pub fn bus(s: &str) -> Result<String, String> {
    shmbus_core::topic::validate_bus(s)?;
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXTREMES: [&str; 12] = [
        "0",
        "-1",
        "NaN",
        "inf",
        "-inf",
        "1e-300",
        "5e-324",
        "1e300",
        "",
        "18446744073709551616",
        "abc",
        "-0",
    ];

    #[test]
    fn extremes_are_errors_or_in_range_never_panics() {
        for s in EXTREMES {
            if let Ok(d) = seconds(s) {
                panic!("seconds({s:?}) accepted: {d:?}");
            }
            assert!(rate(s).is_err(), "rate({s:?})");
            match speed(s) {
                Ok(v) => assert_eq!(v, 0.0, "speed({s:?})"),
                Err(e) => assert!(e.contains("speed factor") || e.contains("range"), "{e}"),
            }
            if let Ok(n) = count(s) {
                panic!("count({s:?}) = {n}");
            }
            if let Ok(n) = millis(s) {
                assert_eq!(n, 0, "millis({s:?})");
            }
        }
    }

    #[test]
    fn ranges_hold_and_errors_say_what_to_write() {
        assert_eq!(seconds("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(seconds("0.001"), Ok(Duration::from_millis(1)));
        assert!(seconds("0.0009").unwrap_err().contains("from 0.001"));
        assert!(seconds("1e10").unwrap_err().contains("e.g. 2.5"));
        assert_eq!(rate("1000"), Ok(1000.0));
        assert!(rate("1e-300").unwrap_err().contains("out of range"));
        assert_eq!(period(MIN_RATE), Duration::from_secs(1000));
        assert_eq!(period(MAX_RATE), Duration::from_micros(1));
        assert_eq!(speed("0"), Ok(0.0));
        assert_eq!(speed("0.5"), Ok(0.5));
        assert!(speed("1e-300").is_err());
        assert_eq!(count("7"), Ok(7));
        assert_eq!(count(&u64::MAX.to_string()), Ok(u64::MAX));
        assert!(count("0").unwrap_err().contains("at least 1"));
        // A refusal of text names the range of the option, not u64's
        // from 0: "--count -1" was told "from 0 to ...", and 0 is refused.
        for bad in ["-1", "x", "1.5", ""] {
            let e = count(bad).unwrap_err();
            assert!(e.contains("from 1 to"), "{bad}: {e}");
            assert!(!e.contains("from 0"), "{bad}: {e}");
        }
        assert!(count_or_zero("-1").unwrap_err().contains("from 0 to"));
        assert_eq!(count_or_zero("0"), Ok(0));
        assert_eq!(millis("60000"), Ok(60_000));
        assert!(millis("60001").is_err());
        for bad in ["-1", "1.5", "x", "99999999999999999999999"] {
            let e = millis(bad).unwrap_err();
            assert!(e.contains("from 0 to 60000"), "{bad}: {e}");
        }
    }

    #[test]
    fn keys_parse_in_both_notations() {
        assert_eq!(key("0x53000001"), Ok(0x5300_0001));
        assert_eq!(key("0X7E00ABCD"), Ok(0x7e00_abcd));
        assert_eq!(key("1392508928"), Ok(1_392_508_928));
        assert_eq!(key("-1"), Ok(-1));
        assert_eq!(key("4294967295"), Ok(-1));
        assert_eq!(key("0xffffffff"), Ok(-1));
        assert!(key("0").unwrap_err().contains("IPC_PRIVATE"));
        assert!(key("0x0").is_err());
        assert!(key("imu").unwrap_err().contains("0x5312abcd"));
        assert!(key("0x1ffffffff").is_err());
        assert!(key("4294967296").is_err());
    }
}
