//! Argument parsing and help text for `record`, `replay` and `cat`.

use std::path::PathBuf;
use std::time::Duration;

use crate::Exit;
use crate::format::parse_key;

pub(crate) const RECORD_HELP: &str = "\
Record topics to an MCAP file (every frame, in publish order)

Usage: shmbus record [TOPIC...] -o FILE.mcap [OPTIONS]

Records the named topics (all shmbus topics on the machine when none are
named, including topics that appear while recording) until Ctrl-C, SIGTERM
or --duration. Each topic is stored twice: lossless postcard frames (for
replay) and JSON with a JSON Schema (for Foxglove and other viewers).
Frames lost because the recorder fell more than a ring behind are logged
on the /shmbus/missed channel.

Options:
  -o, --output FILE   MCAP file to write (required; replaced if it exists)
  --duration S        stop after S seconds (decimals allowed)
  --key K             also record the topic at System V key K (0x... or
                      decimal); repeatable
  --backlog           start with the frames still in each ring, not only
                      frames published from now on
  --no-json           lossless channels only: cheaper on the board; the
                      file stays replayable and `shmbus cat --json` works
  -h, --help          this text

Examples:
  shmbus record -o run.mcap                    # everything, until Ctrl-C
  shmbus record imu gnss -o run.mcap --duration 60
";

pub(crate) const REPLAY_HELP: &str = "\
Republish the topics of an MCAP recording with their original timing

Usage: shmbus replay FILE.mcap [OPTIONS]

Creates each recorded topic (same name, key, slots and frame capacity) if
needed and publishes its recorded frames, spaced as they were recorded.
Refuses a topic whose publisher is still running.

Options:
  --rate X            speed factor (2 = twice as fast; 0 = as fast as
                      possible); default 1
  --loop              start over at the end, until Ctrl-C
  --topics A,B        replay only these topics
  --key TOPIC=K       publish TOPIC at System V key K instead of the
                      recorded key; repeatable
  -h, --help          this text

Examples:
  shmbus replay run.mcap
  shmbus replay run.mcap --rate 0.5 --topics imu --key imu=0x7e000001
";

pub(crate) const CAT_HELP: &str = "\
Show what an MCAP recording holds, decoded without the Rust types

Usage: shmbus cat FILE.mcap [--json]

Without --json: channels, message counts, time range, schemas, missed
frames, and whether the file is complete. With --json: every recorded
frame as one JSON line {\"topic\", \"log_time_ns\", \"generation\", \"value\"},
plus missed-frame events, in file order.

Options:
  --json              dump messages as JSON lines
  -h, --help          this text

Examples:
  shmbus cat run.mcap
  shmbus cat run.mcap --json | head
";

/// Parsed `record` arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordArgs {
    /// Topic names; empty = all.
    pub topics: Vec<String>,
    /// Extra keys.
    pub keys: Vec<i32>,
    /// Output file.
    pub output: PathBuf,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Start at the oldest frame in each ring.
    pub backlog: bool,
    /// Write the JSON view channels.
    pub json: bool,
}

/// Parsed `replay` arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayArgs {
    /// Input file.
    pub file: PathBuf,
    /// Speed factor; 0 = as fast as possible.
    pub rate: f64,
    /// Repeat.
    pub looped: bool,
    /// Only these topics (empty = all).
    pub topics: Vec<String>,
    /// Key overrides.
    pub keys: Vec<(String, i32)>,
}

/// Parsed `cat` arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct CatArgs {
    /// Input file.
    pub file: PathBuf,
    /// JSON lines.
    pub json: bool,
}

/// What parsing asked for: run, or print help and exit 0.
pub enum Parsed<T> {
    /// Run with these arguments.
    Run(T),
    /// `--help` was given.
    Help,
}

fn usage(cmd: &str, msg: String) -> Exit {
    Exit::error(format!("{msg}\n(see `shmbus {cmd} --help`)"))
}

fn value(cmd: &str, it: &mut std::vec::IntoIter<String>, opt: &str) -> Result<String, Exit> {
    it.next()
        .ok_or_else(|| usage(cmd, format!("{opt} needs a value")))
}

fn key(cmd: &str, s: &str) -> Result<i32, Exit> {
    parse_key(s).filter(|k| *k != 0).ok_or_else(|| {
        usage(
            cmd,
            format!("'{s}' is not a System V key; write it as 0x53a1b2c3 or in decimal, and not 0"),
        )
    })
}

/// Split `--opt=value` into two words.
fn words(args: Vec<String>) -> std::vec::IntoIter<String> {
    let mut out = Vec::with_capacity(args.len());
    for a in args {
        match a.split_once('=') {
            Some((o, v)) if a.starts_with("--") => {
                out.push(o.to_string());
                out.push(v.to_string());
            }
            _ => out.push(a),
        }
    }
    out.into_iter()
}

pub(crate) fn record(args: Vec<String>) -> Result<Parsed<RecordArgs>, Exit> {
    const C: &str = "record";
    let mut it = words(args);
    let mut r = RecordArgs {
        topics: Vec::new(),
        keys: Vec::new(),
        output: PathBuf::new(),
        duration: None,
        backlog: false,
        json: true,
    };
    let mut output = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-o" | "--output" => output = Some(PathBuf::from(value(C, &mut it, &a)?)),
            "--duration" => {
                let v = value(C, &mut it, &a)?;
                let s: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s < 1e9)
                    .ok_or_else(|| {
                        usage(
                            C,
                            format!("--duration '{v}' is not a positive number of seconds"),
                        )
                    })?;
                r.duration = Some(Duration::from_secs_f64(s));
            }
            "--key" => {
                let v = value(C, &mut it, &a)?;
                r.keys.push(key(C, &v)?);
            }
            "--backlog" => r.backlog = true,
            "--no-json" => r.json = false,
            s if s.starts_with('-') => return Err(usage(C, format!("unknown option '{s}'"))),
            name => {
                shmbus_core::topic::validate_name(name).map_err(|e| usage(C, e))?;
                r.topics.push(name.to_string());
            }
        }
    }
    r.output = output.ok_or_else(|| usage(C, "no output file: add -o FILE.mcap".into()))?;
    Ok(Parsed::Run(r))
}

pub(crate) fn replay(args: Vec<String>) -> Result<Parsed<ReplayArgs>, Exit> {
    const C: &str = "replay";
    let mut it = words(args);
    let mut file = None;
    let mut r = ReplayArgs {
        file: PathBuf::new(),
        rate: 1.0,
        looped: false,
        topics: Vec::new(),
        keys: Vec::new(),
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--rate" => {
                let v = value(C, &mut it, &a)?;
                r.rate = v
                    .parse()
                    .ok()
                    .filter(|x: &f64| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| {
                        usage(
                            C,
                            format!("--rate '{v}' is not a number >= 0 (1 = real time)"),
                        )
                    })?;
            }
            "--loop" => r.looped = true,
            "--topics" => {
                let v = value(C, &mut it, &a)?;
                r.topics
                    .extend(v.split(',').filter(|s| !s.is_empty()).map(str::to_string));
            }
            "--key" => {
                let v = value(C, &mut it, &a)?;
                let (t, k) = v.split_once('=').ok_or_else(|| {
                    usage(
                        C,
                        format!("--key '{v}' must be TOPIC=KEY, e.g. imu=0x7e000001"),
                    )
                })?;
                r.keys.push((t.to_string(), key(C, k)?));
            }
            s if s.starts_with('-') => return Err(usage(C, format!("unknown option '{s}'"))),
            f if file.is_none() => file = Some(PathBuf::from(f)),
            f => {
                return Err(usage(
                    C,
                    format!("unexpected argument '{f}': give one file"),
                ));
            }
        }
    }
    r.file = file.ok_or_else(|| usage(C, "no file: shmbus replay FILE.mcap".into()))?;
    Ok(Parsed::Run(r))
}

pub(crate) fn cat(args: Vec<String>) -> Result<Parsed<CatArgs>, Exit> {
    const C: &str = "cat";
    let mut file = None;
    let mut json = false;
    for a in args {
        match a.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--json" => json = true,
            s if s.starts_with('-') => return Err(usage(C, format!("unknown option '{s}'"))),
            f if file.is_none() => file = Some(PathBuf::from(f)),
            f => {
                return Err(usage(
                    C,
                    format!("unexpected argument '{f}': give one file"),
                ));
            }
        }
    }
    let file = file.ok_or_else(|| usage(C, "no file: shmbus cat FILE.mcap".into()))?;
    Ok(Parsed::Run(CatArgs { file, json }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn record_arguments() {
        let Ok(Parsed::Run(r)) = record(v(
            "imu gnss -o x.mcap --duration 1.5 --key 0x7e000001 --no-json",
        )) else {
            panic!("should parse")
        };
        assert_eq!(r.topics, ["imu", "gnss"]);
        assert_eq!(r.output, PathBuf::from("x.mcap"));
        assert_eq!(r.duration, Some(Duration::from_millis(1500)));
        assert_eq!(r.keys, [0x7e00_0001]);
        assert!(!r.json && !r.backlog);
        assert!(matches!(record(v("--help")), Ok(Parsed::Help)));
        let e = record(v("imu")).err().unwrap();
        assert!(e.message.contains("-o FILE.mcap"), "{}", e.message);
        let e = record(v("-o x --duration -3")).err().unwrap();
        assert!(e.message.contains("positive"), "{}", e.message);
        let e = record(v("-o x --frob")).err().unwrap();
        assert!(
            e.message.contains("unknown option '--frob'"),
            "{}",
            e.message
        );
        assert_eq!(e.code, 2);
    }

    #[test]
    fn replay_and_cat_arguments() {
        let Ok(Parsed::Run(r)) =
            replay(v("f.mcap --rate=2 --loop --topics a,b --key a=0x7e000002"))
        else {
            panic!("should parse")
        };
        assert_eq!((r.rate, r.looped), (2.0, true));
        assert_eq!(r.topics, ["a", "b"]);
        assert_eq!(r.keys, [("a".to_string(), 0x7e00_0002)]);
        assert!(replay(v("f.mcap --key a")).is_err());
        assert!(replay(v("")).is_err());
        let Ok(Parsed::Run(c)) = cat(v("f.mcap --json")) else {
            panic!("should parse")
        };
        assert!(c.json);
        assert!(cat(v("a b")).is_err());
    }
}
