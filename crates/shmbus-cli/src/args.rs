//! The command line (clap derive). Every command has an example in its
//! long help.
//!
//! Command families that pull in heavy code live in their own crates and are
//! compiled only with their cargo feature (see `Cargo.toml`): each is one
//! `#[cfg(feature = "...")]` variant of [`Cmd`] whose arguments are that
//! crate's clap `Args` (or `Subcommand`, flattened) type, and one arm in
//! `main.rs`. `shmbus --help` lists only the commands this build has.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use shmbus_toolbox::parse;

const TOPIC_HELP: &str = "Topic name, key (0x5312abcd or decimal) or shmid (shmid:N)";

/// shmbus: inspect and drive the telemetry bus over System V shared memory.
#[derive(Debug, Parser)]
#[command(
    name = "shmbus",
    version,
    about = "Inspect and drive the shmbus telemetry bus (System V shared memory)",
    after_help = "TOPIC is a topic name, a key (0x5312abcd or decimal) or a shmid (shmid:N).\n\
A name is looked up at the key it derives from (as configs derive it), else among your own\n\
and root's topics: another user's segment is never taken under a name, only by its key.\n\
Exit codes: 0 ok, 1 not found or nothing to show, 2 error (a TOPIC that can name no topic,\n\
such as `shmid:x` or a name with a space, is an error). A closed pipe is not an error.\n\n\
Examples:\n  shmbus list\n  shmbus echo imu --count 3\n  shmbus hz imu\n  shmbus doctor"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// List every topic on this machine.
    #[command(
        after_help = "Examples:\n  shmbus list\n  shmbus list --json | jq '.[].name'\n\n\
RATE is measured over --window milliseconds (0: not measured, shown as -).\n\
Segments of other programs are skipped, except at keys where a topic belongs (the config's,\n\
the derived range 0x53......, or --key): there a non-shmbus segment is '(not shmbus)' and a\n\
semaphore with no segment '(lock only)', both possible squats. Segments this user may not\n\
read are shown as 'permission denied'. A topic whose header is not written yet is\n\
'(being created)' while its creator holds the publisher lock, and '(half-created)' when\n\
nobody does (its creator died): start its publisher again, or `shmbus rm KEY` (--force away\n\
from a topic key). A lock is a set of one semaphore made by the segment's creator: zeros\n\
beside any other semaphore set are another program's segment, never removed by `shmbus rm`."
    )]
    List(ListArgs),
    /// Show everything about one topic: header, schema, shmid_ds, latest frame.
    #[command(after_help = "Examples:\n  shmbus info imu\n  shmbus info 0x53a1b2c3 --json")]
    Info(InfoArgs),
    /// Print frames as they arrive, decoded with the schema in the segment.
    #[command(
        after_help = "Examples:\n  shmbus echo imu                 # newest frame, then each new one\n  \
shmbus echo imu --all --json    # every frame in order, one JSON object per line\n  \
shmbus echo imu --count 1 --json | jq .value.acc\n\n\
Latest-value mode may skip frames (it shows the newest); --all reads every frame and\n\
reports frames it missed on stderr. With --json each line is\n\
{\"topic\":..,\"generation\":..,\"real_ns\":..,\"mono_ns\":..,\"value\":{..}}.\n\
A publisher that stops is waited for; a removed topic too, until it is created again at\n\
its key (echo then reads the new one, said on stderr). --timeout bounds both waits."
    )]
    Echo(EchoArgs),
    /// Publish a JSON value on an existing topic, encoded with its schema.
    #[command(
        after_help = "Examples:\n  shmbus pub imu '{\"t_us\":0,\"acc\":[0,0,9.81]}'\n  \
shmbus pub imu \"$(shmbus info imu --json | jq -c .example)\" --count 100 --rate 50\n  \
shmbus echo imu --all --json | jq -c .value | shmbus pub other -   # JSON lines from stdin\n\n\
The topic must exist (its schema and sizes come from the segment) and have no live\n\
publisher: a topic has one publisher at a time. `shmbus info TOPIC` shows an example value.\n\
With -, each line is published once, as it arrives: the feed sets the pace and the\n\
end, so --count and --rate are refused there. A value (or line) with more numbers than the\n\
topic's frames have bytes, or longer than any value of the topic needs, is refused unparsed.\n\
Ctrl-C (or SIGTERM, SIGHUP) ends it between two frames, never in the middle of one."
    )]
    Pub(PubArgs),
    /// Measure a topic's rate, intervals, lost frames, staleness and liveness.
    #[command(
        after_help = "Examples:\n  shmbus hz imu\n  shmbus hz imu --count 5 --interval 0.5\n\n\
On a terminal the line refreshes in place; otherwise one line per interval.\n\
A removed topic is waited for until it is created again at its key, then measured on."
    )]
    Hz(HzArgs),
    /// Live table of every topic: rate, age, generation, publisher, attachments.
    #[command(
        after_help = "Examples:\n  shmbus top\n  shmbus top --count 1 | cat   # one snapshot as plain text"
    )]
    Top(TopArgs),
    /// Remove topics (segment and publisher lock).
    #[command(
        after_help = "Examples:\n  shmbus rm imu\n  shmbus rm 0x53a1b2c3 0x53a1b2c4 --force\n\n\
Removal frees the key at once. Processes still attached keep their mapping until they\n\
detach or exit (subscribers see the topic as removed); the memory is freed then.\n\
A topic with a live publisher is only removed with --force, also one whose lock was\n\
removed while frames still come (a publisher running without its lock)."
    )]
    Rm(RmArgs),
    /// Check what the bus needs from this machine, and how to fix problems.
    #[command(
        after_help = "Examples:\n  shmbus doctor\n  shmbus doctor --config configs/board.toml\n  \
shmbus doctor --config /etc/shmbus/shmbus.toml --sysctl > /etc/sysctl.d/60-shmbus.conf\n\n\
A half-created topic left by a crashed publisher (no header, nobody holds its lock) FAILs\n\
at a configured topic's key and WARNs elsewhere; one being created is OK. At most 20\n\
findings of one check and level are shown, then how many more (`shmbus list` shows all).\n\
Exit code: 0 when nothing FAILs (warnings allowed), 1 when a check FAILs.\n\
With --sysctl: 0, and the lines (empty if the limits suffice); 2 if the config has errors."
    )]
    Doctor(DoctorArgs),
    /// Run the demo sensor publishers.
    #[cfg(feature = "demo")]
    #[command(after_help = "Examples:\n  shmbus demo --duration 10 &\n  shmbus top")]
    Demo(DemoArgs),
    /// Run one demo sensor in this process (how `shmbus demo` starts them).
    #[cfg(feature = "demo")]
    #[command(name = "__sensor", hide = true, disable_help_flag = true)]
    Sensor(Passthrough),
    /// Measure publish, poll and handoff costs against floors and alternatives.
    #[cfg(feature = "bench")]
    Bench(shmbus_bench::opts::BenchArgs),
    /// `record`, `replay`, `cat`: MCAP recordings (feature `record`).
    #[cfg(feature = "record")]
    #[command(flatten)]
    Recording(shmbus_record::cli::Command),
    /// Serve topics live to Foxglove or Lichtblick (Foxglove WebSocket protocol).
    #[cfg(feature = "foxglove")]
    Foxglove(shmbus_foxglove::cli::FoxgloveArgs),
    /// Bridge topics to an MQTT broker and broker topics back (feature `bridge`).
    #[cfg(feature = "bridge")]
    #[command(after_help = shmbus_bridge::cli::AFTER_HELP)]
    Bridge(Box<shmbus_bridge::cli::BridgeArgs>),
}

/// `--bus`, for commands that take a TOPIC.
#[derive(Debug, Args)]
pub struct BusArg {
    /// Only match topic names whose key derives from this bus name (as
    /// configs do); by default names are looked up in every segment.
    #[arg(long, value_name = "BUS", value_parser = parse::bus)]
    pub bus: Option<String>,
}

impl BusArg {
    /// The bus, if given.
    pub fn get(&self) -> Option<&str> {
        self.bus.as_deref()
    }
}

/// Arguments handed unchanged to another crate's command.
#[derive(Debug, Args)]
pub struct Passthrough {
    /// Arguments of the command, as the system gives them: a path that is
    /// not UTF-8 (a Latin-1 file name) reaches the sensor unchanged.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<std::ffi::OsString>,
}

/// `shmbus list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// One JSON array of objects.
    #[arg(long)]
    pub json: bool,
    /// Milliseconds between the two generation samples for RATE (0: skip; at most 60000).
    #[arg(long, default_value_t = 200, value_name = "MS", value_parser = parse::millis, allow_hyphen_values = true)]
    pub window: u64,
    /// Only these keys (repeatable; 0x... or decimal).
    #[arg(long = "key", value_name = "KEY", value_parser = parse::key, allow_hyphen_values = true)]
    pub keys: Vec<i32>,
}

/// `shmbus info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub bus: BusArg,
    #[arg(help = TOPIC_HELP)]
    pub topic: String,
    /// One JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `shmbus echo`.
#[derive(Debug, Args)]
pub struct EchoArgs {
    #[command(flatten)]
    pub bus: BusArg,
    #[arg(help = TOPIC_HELP)]
    pub topic: String,
    /// One JSON object per frame, one per line.
    #[arg(long)]
    pub json: bool,
    /// Stop after N frames (a frame that cannot be shown counts, and is reported).
    #[arg(long, short = 'n', value_name = "N", value_parser = parse::count, allow_hyphen_values = true)]
    pub count: Option<u64>,
    /// Every frame in publish order (with missed-frame notices), not only the newest.
    #[arg(long)]
    pub all: bool,
    /// With --all: start at the oldest frame still in the ring, not the next one.
    #[arg(long, requires = "all")]
    pub from_oldest: bool,
    /// Give up (exit 1) if no frame arrives for this many seconds (also while a
    /// stopped publisher or a removed topic is waited for).
    #[arg(long, value_name = "SECS", value_parser = parse::seconds, allow_hyphen_values = true)]
    pub timeout: Option<Duration>,
}

/// `shmbus pub`.
#[derive(Debug, Args)]
pub struct PubArgs {
    #[command(flatten)]
    pub bus: BusArg,
    #[arg(help = TOPIC_HELP)]
    pub topic: String,
    /// The value as JSON, or - to read one JSON value per line from stdin
    /// (each published once, as it arrives; not with --count or --rate).
    /// A negative number is a value (`shmbus pub setpoint -5`), not an option.
    #[arg(allow_negative_numbers = true)]
    pub json: String,
    /// Publish the value N times (default 1; 0: until interrupted: Ctrl-C or kill ends it with the summary). Not with -.
    #[arg(long, short = 'n', value_name = "N", value_parser = parse::count_or_zero, allow_hyphen_values = true)]
    pub count: Option<u64>,
    /// Frames per second when publishing more than one (0.001 to 1000000; default 10). Only with --count; not with -.
    #[arg(long, value_name = "HZ", value_parser = parse::rate, allow_hyphen_values = true)]
    pub rate: Option<f64>,
}

/// `shmbus hz`.
#[derive(Debug, Args)]
pub struct HzArgs {
    #[command(flatten)]
    pub bus: BusArg,
    #[arg(help = TOPIC_HELP)]
    pub topic: String,
    /// Seconds per report.
    #[arg(long, default_value = "1", value_name = "SECS", value_parser = parse::seconds, allow_hyphen_values = true)]
    pub interval: Duration,
    /// Stop after N reports.
    #[arg(long, short = 'n', value_name = "N", value_parser = parse::count, allow_hyphen_values = true)]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = parse::seconds, allow_hyphen_values = true)]
    pub duration: Option<Duration>,
}

/// `shmbus top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Seconds between refreshes.
    #[arg(long, default_value = "1", value_name = "SECS", value_parser = parse::seconds, allow_hyphen_values = true)]
    pub interval: Duration,
    /// Stop after N refreshes.
    #[arg(long, short = 'n', value_name = "N", value_parser = parse::count, allow_hyphen_values = true)]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = parse::seconds, allow_hyphen_values = true)]
    pub duration: Option<Duration>,
    /// Only these keys (repeatable).
    #[arg(long = "key", value_name = "KEY", value_parser = parse::key, allow_hyphen_values = true)]
    pub keys: Vec<i32>,
}

/// `shmbus rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    #[command(flatten)]
    pub bus: BusArg,
    /// Topics to remove.
    #[arg(required = true, help = "Topics (names, keys or shmids)")]
    pub topics: Vec<String>,
    /// Also remove topics whose publisher is alive, a lone semaphore (no
    /// segment) that a process holds or that is not at a topic key
    /// (0x53......, or one the config declares), and a half-created segment
    /// (zeros beside a lock) that is not at a topic key: there it may be
    /// another program's memory and semaphore.
    #[arg(long)]
    pub force: bool,
}

/// `shmbus doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Topic config to check against (default: the usual search path).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Only look at these keys for stale topics (repeatable).
    #[arg(long = "key", value_name = "KEY", value_parser = parse::key, allow_hyphen_values = true)]
    pub keys: Vec<i32>,
    /// Print only the sysctl.d lines that raise the System V limits the
    /// config needs (nothing when they suffice), for /etc/sysctl.d/.
    #[arg(long)]
    pub sysctl: bool,
}

/// `shmbus demo`.
#[cfg(feature = "demo")]
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Stop after this many seconds (default: until interrupted).
    #[arg(long, value_name = "SECS", value_parser = parse::seconds, allow_hyphen_values = true)]
    pub duration: Option<Duration>,
    /// Topic config (default: the built-in demo topics).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent_and_every_command_has_an_example() {
        Cli::command().debug_assert();
        let cmd = Cli::command();
        for sub in cmd.get_subcommands() {
            let name = sub.get_name();
            if name == "__sensor" {
                continue;
            }
            let after = sub
                .get_after_help()
                .map(|s| s.to_string())
                .unwrap_or_default();
            assert!(
                after.contains(&format!("shmbus {name}")),
                "{name} has no example"
            );
        }
    }

    #[test]
    fn bus_belongs_to_the_topic_commands() {
        #[cfg(feature = "record")]
        {
            let c = Cli::try_parse_from(["shmbus", "record", "-o", "x", "imu"]).unwrap();
            assert!(matches!(c.cmd, Cmd::Recording(_)), "{c:?}");
            assert!(Cli::try_parse_from(["shmbus", "record", "--bus", "lab", "-o", "x"]).is_err());
        }
        let c = Cli::try_parse_from(["shmbus", "echo", "imu", "--bus", "lab"]).unwrap();
        match c.cmd {
            Cmd::Echo(e) => assert_eq!(e.bus.get(), Some("lab")),
            other => panic!("{other:?}"),
        }
    }
}
