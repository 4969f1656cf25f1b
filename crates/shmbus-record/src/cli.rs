//! The command line of `record`, `replay` and `cat` (clap derive, the same
//! style as every other `shmbus` command; the `shmbus` CLI flattens
//! [`Command`] into its own subcommands).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use shmbus_toolbox::parse;

/// `record`, `replay` and `cat`.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Record topics to an MCAP file (every frame, in publish order).
    #[command(after_help = RECORD_AFTER)]
    Record(RecordArgs),
    /// Republish the topics of an MCAP recording with their original timing.
    #[command(after_help = REPLAY_AFTER)]
    Replay(ReplayArgs),
    /// Show what an MCAP recording holds, decoded without the Rust types.
    #[command(after_help = CAT_AFTER)]
    Cat(CatArgs),
}

const RECORD_AFTER: &str = "\
Records the named topics (all shmbus topics on the machine when none are
named, including topics that appear while recording) until Ctrl-C, SIGTERM
or --duration. TOPIC is a topic name, a key (0x5312abcd or decimal) or a
shmid (shmid:N), as for every shmbus command. A name is looked up as every
shmbus tool looks it up: at the key it derives from, else among this
user's own and root's segments; another user's segment that carries the
name elsewhere is recorded only when its key is given. A named topic that
cannot be recorded gets one warning saying why (not found, not a shmbus
topic, corrupt, permission); one not there yet is recorded once it
appears. When none of the named topics can be recorded, record fails:
exit 1 if none is there, else 2. Each topic is stored twice:
lossless postcard frames (for replay) and JSON with a JSON Schema (for
Foxglove and other viewers). Frames lost because the recorder fell more
than a ring behind are logged on the /shmbus/missed channel.

Examples:
  shmbus record -o run.mcap                    # everything, until Ctrl-C
  shmbus record imu gnss -o run.mcap --duration 60
  shmbus record 0x5312abcd shmid:7 -o run.mcap";

const REPLAY_AFTER: &str = "\
Creates each recorded topic (same name, key, slots and frame capacity) if
needed and publishes its recorded frames, spaced as they were recorded.
Refuses a topic whose publisher is still running.

Examples:
  shmbus replay run.mcap
  shmbus replay run.mcap --rate 0.5 --topics imu --key imu=0x7e000001";

const CAT_AFTER: &str = "\
Without --json: channels, message counts, time range, schemas, the key and
owner of each topic, missed frames, and whether the file is complete. With
--json: every recorded frame as one JSON line {\"topic\", \"log_time_ns\",
\"mono_ns\", \"generation\", \"value\"}, plus missed-frame events, in file
order. mono_ns (CLOCK_MONOTONIC) spaces frames truly across a wall-clock step.

Examples:
  shmbus cat run.mcap
  shmbus cat run.mcap --json | head";

/// `record` arguments.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct RecordArgs {
    /// Topics to record: names, keys (0x5312abcd or decimal) or shmids
    /// (shmid:N); all topics when none are named.
    #[arg(value_name = "TOPIC", value_parser = shmbus_toolbox::topic::arg)]
    pub topics: Vec<String>,
    /// MCAP file to write (replaced if it exists); `-` is standard output,
    /// which must then be a pipe or a file, not a terminal.
    #[arg(short = 'o', long = "output", value_name = "FILE.mcap")]
    pub output: PathBuf,
    /// Stop after this many seconds (decimals allowed).
    #[arg(long, value_name = "SECS", value_parser = parse::seconds, allow_hyphen_values = true)]
    pub duration: Option<Duration>,
    /// Also record the topic at System V key KEY (0x... or decimal); repeatable.
    #[arg(long = "key", value_name = "KEY", value_parser = parse::key, allow_hyphen_values = true)]
    pub keys: Vec<i32>,
    /// Start with the frames still in each ring, not only frames published from now on.
    #[arg(long)]
    pub backlog: bool,
    /// Lossless channels only: cheaper on the board; the file stays
    /// replayable and `shmbus cat --json` works.
    #[arg(long = "no-json")]
    pub no_json: bool,
}

/// `replay` arguments.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct ReplayArgs {
    /// The recording.
    #[arg(value_name = "FILE.mcap")]
    pub file: PathBuf,
    /// Speed factor: 2 = twice as fast, 0 = as fast as possible (0.001 to 1000000, or 0).
    #[arg(long, default_value_t = 1.0, value_name = "X", value_parser = parse::speed, allow_hyphen_values = true)]
    pub rate: f64,
    /// Start over at the end, until Ctrl-C.
    #[arg(long = "loop")]
    pub looped: bool,
    /// Replay only these topics (comma-separated, or repeated).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub topics: Vec<String>,
    /// Publish TOPIC at System V key KEY instead of the recorded key; repeatable.
    #[arg(long = "key", value_name = "TOPIC=KEY", value_parser = topic_key)]
    pub keys: Vec<(String, i32)>,
}

/// `cat` arguments.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct CatArgs {
    /// The recording.
    #[arg(value_name = "FILE.mcap")]
    pub file: PathBuf,
    /// Dump messages as JSON lines.
    #[arg(long)]
    pub json: bool,
}

fn topic_name(s: &str) -> Result<String, String> {
    shmbus_core::topic::validate_name(s)?;
    Ok(s.to_string())
}

fn topic_key(s: &str) -> Result<(String, i32), String> {
    let (t, k) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' must be TOPIC=KEY, e.g. imu=0x7e000001"))?;
    Ok((topic_name(t)?, parse::key(k)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(subcommand)]
        cmd: Command,
    }

    fn parse(s: &str) -> Result<Command, String> {
        T::try_parse_from(std::iter::once("t").chain(s.split_whitespace()))
            .map(|t| t.cmd)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn record_arguments() {
        let Ok(Command::Record(r)) =
            parse("record imu gnss -o x.mcap --duration 1.5 --key 0x7e000001 --no-json")
        else {
            panic!("should parse")
        };
        assert_eq!(r.topics, ["imu", "gnss"]);
        assert_eq!(r.output, PathBuf::from("x.mcap"));
        assert_eq!(r.duration, Some(Duration::from_millis(1500)));
        assert_eq!(r.keys, [0x7e00_0001]);
        assert!(r.no_json && !r.backlog);
        let e = parse("record imu").unwrap_err();
        assert!(e.contains("--output"), "{e}");
        let e = parse("record -o x --duration -3").unwrap_err();
        assert!(e.contains("-3"), "{e}");
        let e = parse("record -o x --frob").unwrap_err();
        assert!(e.contains("--frob"), "{e}");
        assert!(parse("record bad#name -o x").is_err());
        // Every TOPIC form of the other commands.
        let Ok(Command::Record(r)) = parse("record 0x5312bdaa shmid:7 42 key:9 imu -o x") else {
            panic!("should parse")
        };
        assert_eq!(r.topics, ["0x5312bdaa", "shmid:7", "42", "key:9", "imu"]);
        assert!(parse("record key:0 -o x").is_err());
        assert!(parse("record shmid:x -o x").is_err(), "not a name either");
    }

    #[test]
    fn replay_and_cat_arguments() {
        let Ok(Command::Replay(r)) =
            parse("replay f.mcap --rate=2 --loop --topics a,b --key a=0x7e000002")
        else {
            panic!("should parse")
        };
        assert_eq!((r.rate, r.looped), (2.0, true));
        assert_eq!(r.topics, ["a", "b"]);
        assert_eq!(r.keys, [("a".to_string(), 0x7e00_0002)]);
        assert!(parse("replay f.mcap --key a").is_err());
        assert!(parse("replay f.mcap --rate 1e-300").is_err());
        assert!(parse("replay").is_err());
        let Ok(Command::Cat(c)) = parse("cat f.mcap --json") else {
            panic!("should parse")
        };
        assert!(c.json);
        assert!(parse("cat a b").is_err());
    }
}
