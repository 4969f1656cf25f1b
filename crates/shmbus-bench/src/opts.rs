//! Command-line options of `shmbus bench`.

use std::path::PathBuf;

/// Usage text, printed for `--help` and after an argument error.
pub const USAGE: &str = "\
usage: shmbus bench [--quick] [--json] [--plot FILE] [--out DIR] [--rounds N]
                    [--iters N] [--fanout LIST] [--iceoryx2 PATH] [--peer-json FILE]
                    [--no-pin]

Measures, in one run with the mechanisms interleaved in rounds, what a
publish, a poll and a handoff cost, next to hand-written floors (atomic,
seqlock and futex ping-pong) and the alternatives (Unix datagram socket,
pipe, POSIX message queue, and iceoryx2 when given).

  --quick          short run for CI (a few seconds; fan-out up to 16)
  --json           print JSON on stdout instead of the table
  --plot FILE      write an SVG plot of the latency distributions and fan-out
  --out DIR        write bench.txt, bench.json and bench.svg into DIR
  --rounds N       interleaved rounds (default 10, quick 3)
  --iters N        round trips per mechanism per round (default 4000, quick 400)
  --fanout LIST    subscriber counts, e.g. 1,4,16,64 (default; quick 1,4,16)
  --iceoryx2 PATH  run the iceoryx2 peer binary (bench/iceoryx2-peer) each round
  --peer-json FILE merge a figure the iceoryx2 peer printed earlier
  --no-pin         skip the pinned variants";

/// Parsed options.
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
}

impl Opts {
    /// Parse the words after `bench`.
    pub fn parse(args: &[String]) -> Result<Opts, String> {
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = Opts {
            quick,
            json: false,
            plot: None,
            out: None,
            rounds: if quick { 3 } else { 10 },
            iters: if quick { 400 } else { 4000 },
            fanout: if quick {
                vec![1, 4, 16]
            } else {
                vec![1, 4, 16, 64]
            },
            fanout_frames: if quick { 100 } else { 400 },
            micro_samples: if quick { 30 } else { 200 },
            iceoryx2: None,
            peer_json: None,
            pin: true,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value (see --help)"))
            };
            let number = |name: &str, v: String| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name} wants a positive number, not '{v}'"))
            };
            match a.as_str() {
                "--quick" => {}
                "--json" => o.json = true,
                "--no-pin" => o.pin = false,
                "--plot" => o.plot = Some(value("--plot")?.into()),
                "--out" => o.out = Some(value("--out")?.into()),
                "--iceoryx2" => o.iceoryx2 = Some(value("--iceoryx2")?.into()),
                "--peer-json" => o.peer_json = Some(value("--peer-json")?.into()),
                "--rounds" => o.rounds = number("--rounds", value("--rounds")?)?,
                "--iters" => {
                    o.iters = number("--iters", value("--iters")?)?;
                    o.fanout_frames = o.fanout_frames.min(o.iters.max(10));
                    o.micro_samples = o.micro_samples.min(o.iters.max(5));
                }
                "--fanout" => {
                    let v = value("--fanout")?;
                    o.fanout = v
                        .split(',')
                        .map(|s| number("--fanout", s.trim().to_string()))
                        .collect::<Result<_, _>>()?;
                }
                other => return Err(format!("unknown argument '{other}'")),
            }
        }
        Ok(o)
    }
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
    }

    #[test]
    fn errors_name_the_argument() {
        assert!(
            parse("--rounds")
                .unwrap_err()
                .contains("--rounds needs a value")
        );
        assert!(parse("--rounds 0").unwrap_err().contains("positive"));
        assert!(parse("--frobnicate").unwrap_err().contains("--frobnicate"));
    }
}
