//! Command-line options of `shmbus bench` (clap derive, like every other
//! `shmbus` command; the `shmbus` CLI uses [`BenchArgs`] as its `bench`
//! subcommand).

use std::path::PathBuf;

use clap::Args;

/// The longest run `--rounds` asks for.
pub const MAX_ROUNDS: usize = 1000;
/// The most round trips per mechanism per round `--iters` asks for.
pub const MAX_ITERS: usize = 10_000_000;
/// The most subscriber processes one fan-out point starts.
pub const MAX_FANOUT: usize = 256;

const AFTER: &str = "\
Measures, in one run with the mechanisms interleaved in rounds, what a
publish, a poll and a handoff cost, next to hand-written floors (atomic,
seqlock and futex ping-pong) and the alternatives (Unix datagram socket,
pipe, POSIX message queue, and iceoryx2 when given). Each ratio is printed
with its lowest and highest value round by round, and each target with the
number of rounds that meet it. Defaults: 10 rounds of 4000 round trips,
fan-out 1,4,16,64; with --quick 3 rounds of 400, fan-out 1,4,16.

Examples:
  shmbus bench --quick
  shmbus bench --json --plot bench.svg";

/// `shmbus bench` arguments, as typed.
#[derive(Debug, Clone, PartialEq, Default, Args)]
#[command(after_help = AFTER)]
pub struct BenchArgs {
    /// Short run for CI (a few seconds; fan-out up to 16).
    #[arg(long)]
    pub quick: bool,
    /// Print JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG plot of the latency distributions and fan-out.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Write bench.txt, bench.json and bench.svg into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Interleaved rounds (1 to 1000; default 10, quick 3).
    #[arg(long, value_name = "N", value_parser = rounds, allow_hyphen_values = true)]
    pub rounds: Option<usize>,
    /// Round trips per mechanism per round (1 to 10000000; default 4000, quick 400).
    #[arg(long, value_name = "N", value_parser = iters, allow_hyphen_values = true)]
    pub iters: Option<usize>,
    /// Subscriber counts, e.g. 1,4,16,64 (each 1 to 256).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = fanout, allow_hyphen_values = true)]
    pub fanout: Vec<usize>,
    /// Run the iceoryx2 peer binary (bench/iceoryx2-peer) each round.
    #[arg(long, value_name = "PATH")]
    pub iceoryx2: Option<PathBuf>,
    /// Merge a figure the iceoryx2 peer printed earlier.
    #[arg(long = "peer-json", value_name = "FILE")]
    pub peer_json: Option<PathBuf>,
    /// Skip the pinned variants.
    #[arg(long = "no-pin")]
    pub no_pin: bool,
    /// Run only these parts: handoff, micro, fanout (e.g. --only micro).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = ["handoff", "micro", "fanout"])]
    pub only: Vec<String>,
    /// The peer side of a measurement (internal: `bench --peer ROLE k=v...`).
    #[arg(long, hide = true, num_args = 1.., allow_hyphen_values = true, value_name = "ROLE")]
    pub peer: Vec<String>,
}

fn bounded(s: &str, name: &str, max: usize) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{name} wants a whole number from 1 to {max}, not '{s}'"
        )),
    }
}

fn rounds(s: &str) -> Result<usize, String> {
    bounded(s, "--rounds", MAX_ROUNDS)
}

fn iters(s: &str) -> Result<usize, String> {
    bounded(s, "--iters", MAX_ITERS)
}

fn fanout(s: &str) -> Result<usize, String> {
    bounded(s, "--fanout", MAX_FANOUT)
}

/// The options of a run, with the defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Opts {
    /// Short run.
    pub quick: bool,
    /// JSON on stdout.
    pub json: bool,
    /// SVG output file.
    pub plot: Option<PathBuf>,
    /// Output directory for text, JSON and SVG.
    pub out: Option<PathBuf>,
    /// Interleaved rounds.
    pub rounds: usize,
    /// Round trips per mechanism per round.
    pub iters: usize,
    /// Fan-out subscriber counts.
    pub fanout: Vec<usize>,
    /// Frames published per fan-out point.
    pub fanout_frames: usize,
    /// Samples (batches) per in-process micro benchmark.
    pub micro_samples: usize,
    /// iceoryx2 peer binary.
    pub iceoryx2: Option<PathBuf>,
    /// iceoryx2 peer output to merge.
    pub peer_json: Option<PathBuf>,
    /// Run the pinned variants (if there are two CPUs).
    pub pin: bool,
    /// The parts to run (handoff, micro, fanout); empty: all.
    pub only: Vec<String>,
}

impl BenchArgs {
    /// The run's options: `--quick` changes the defaults, explicit values
    /// override them.
    pub fn opts(&self) -> Opts {
        let quick = self.quick;
        let mut o = Opts {
            quick,
            json: self.json,
            plot: self.plot.clone(),
            out: self.out.clone(),
            rounds: if quick { 3 } else { 10 },
            iters: if quick { 400 } else { 4000 },
            fanout: if quick {
                vec![1, 4, 16]
            } else {
                vec![1, 4, 16, 64]
            },
            fanout_frames: if quick { 100 } else { 400 },
            micro_samples: if quick { 30 } else { 200 },
            iceoryx2: self.iceoryx2.clone(),
            peer_json: self.peer_json.clone(),
            pin: !self.no_pin,
            only: self.only.clone(),
        };
        if let Some(r) = self.rounds {
            o.rounds = r;
        }
        if let Some(i) = self.iters {
            o.iters = i;
            o.fanout_frames = o.fanout_frames.min(i.max(10));
            o.micro_samples = o.micro_samples.min(i.max(5));
        }
        if !self.fanout.is_empty() {
            o.fanout = self.fanout.clone();
        }
        o
    }
}

impl Opts {
    /// True if part `name` (handoff, micro, fanout) runs.
    pub fn runs(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }

    /// Parse the words after `bench` (as the `shmbus-bench` binary and the
    /// tests do); the error is clap's message.
    pub fn parse(args: &[String]) -> Result<Opts, String> {
        parse_args(args).map(|a| a.opts())
    }
}

/// Parse the words after `bench` into [`BenchArgs`].
pub fn parse_args(args: &[String]) -> Result<BenchArgs, String> {
    use clap::{CommandFactory, FromArgMatches, Parser};
    #[derive(Parser)]
    #[command(name = "shmbus bench")]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }
    let m = Cli::command()
        .try_get_matches_from(std::iter::once("bench").chain(args.iter().map(String::as_str)))
        .map_err(|e| e.to_string())?;
    Cli::from_arg_matches(&m)
        .map(|c| c.args)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Opts, String> {
        Opts::parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn quick_changes_the_defaults_and_flags_override_them() {
        let o = parse("--json --quick --rounds 2 --fanout 1,2").unwrap();
        assert!(o.quick && o.json);
        assert_eq!(o.rounds, 2);
        assert_eq!(o.fanout, vec![1, 2]);
        assert_eq!(parse("").unwrap().fanout, vec![1, 4, 16, 64]);
        assert_eq!(parse("--quick").unwrap().iters, 400);
    }

    #[test]
    fn errors_name_the_argument() {
        assert!(parse("--rounds").unwrap_err().contains("--rounds"));
        assert!(parse("--rounds 0").unwrap_err().contains("from 1 to"));
        assert!(parse("--iters 1e300").unwrap_err().contains("--iters"));
        assert!(parse("--fanout 1,100000").unwrap_err().contains("--fanout"));
        assert!(parse("--frobnicate").unwrap_err().contains("--frobnicate"));
        assert!(parse("--only micro,wat").unwrap_err().contains("wat"));
        let o = parse("--only micro").unwrap();
        assert!(o.runs("micro") && !o.runs("handoff"));
    }

    #[test]
    fn the_peer_side_takes_its_words() {
        let a = parse_args(&["--peer".into(), "atomic".into(), "shmid=5".into()]).unwrap();
        assert_eq!(a.peer, ["atomic", "shmid=5"]);
    }
}
