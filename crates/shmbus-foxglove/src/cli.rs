//! `shmbus foxglove`: the command line of the server.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use clap::builder::TypedValueParser;

use shmbus_toolbox::parse::{rate, seconds};
use shmbus_toolbox::stop;

use crate::{Config, Selector, Server};

/// `shmbus foxglove`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Examples:\n  shmbus foxglove                          # every topic, ws://127.0.0.1:8765\n  \
shmbus foxglove imu thermal --max-rate 100\n  \
shmbus foxglove --rate imu=50 --allow-publish\n  \
ssh -L 8765:127.0.0.1:8765 user@board   # on the laptop, then open ws://127.0.0.1:8765\n\n\
In Foxglove or Lichtblick: Open connection > Foxglove WebSocket > ws://127.0.0.1:8765.\n\
The protocol has no authentication: the server listens on 127.0.0.1 unless --bind\n\
says otherwise; reach a board through an SSH tunnel (docs/FOXGLOVE.md)."
)]
pub struct FoxgloveArgs {
    /// Topics to serve: names, keys (0x5312abcd or decimal) or shmids
    /// (shmid:N); default: every topic.
    #[arg(value_name = "TOPIC", value_parser = Selector::parse)]
    pub topics: Vec<Selector>,
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR:PORT", default_value_t = crate::DEFAULT_BIND)]
    pub bind: SocketAddr,
    /// Only match topic names whose key derives from this bus name.
    #[arg(long, value_name = "BUS", value_parser = shmbus_toolbox::parse::bus)]
    pub bus: Option<String>,
    /// At most HZ frames per second of each topic (the newest per interval).
    #[arg(long, value_name = "HZ", value_parser = rate, allow_hyphen_values = true)]
    pub max_rate: Option<f64>,
    /// Limit one topic: NAME=HZ (repeatable; 0 lifts --max-rate for it).
    /// A NAME no served topic has is refused (TOPICs all names) or warned
    /// about.
    #[arg(long = "rate", value_name = "TOPIC=HZ", value_parser = topic_rate, allow_hyphen_values = true)]
    pub rates: Vec<(String, f64)>,
    /// KiB of frames queued per client before its oldest frames are dropped.
    #[arg(long, value_name = "KIB", default_value_t = 1024, value_parser = clap::value_parser!(i64).range(16..=1048576).map(unsigned), allow_hyphen_values = true)]
    pub client_queue: u64,
    /// Most clients at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(i64).range(1..=1024).map(unsigned), allow_hyphen_values = true)]
    pub max_clients: u64,
    /// Disconnect a client that takes no data for this many seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds, allow_hyphen_values = true)]
    pub stall_timeout: Duration,
    /// Report a topic stale when its newest frame is older than this.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = seconds, allow_hyphen_values = true)]
    pub stale_after: Duration,
    /// Let clients publish on existing topics (Foxglove's Publish panel).
    #[arg(long)]
    pub allow_publish: bool,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long, value_name = "SECS", value_parser = seconds, allow_hyphen_values = true)]
    pub duration: Option<Duration>,
    /// No line per client connecting or leaving.
    #[arg(long, short)]
    pub quiet: bool,
}

impl FoxgloveArgs {
    /// The server configuration these arguments describe.
    pub fn config(&self) -> Config {
        Config {
            bind: self.bind,
            topics: self.topics.clone(),
            bus: self.bus.clone(),
            max_rate: self.max_rate,
            topic_rates: self.rates.clone(),
            client_queue: (self.client_queue as usize).saturating_mul(1024),
            max_clients: self.max_clients as usize,
            stall_timeout: self.stall_timeout,
            stale_after: self.stale_after,
            allow_publish: self.allow_publish,
            quiet: self.quiet,
            ..Config::default()
        }
    }
}

/// A count already checked to be in a positive range, as the field's
/// type. Parsed as signed, so `-1` gets the range's message, not "invalid
/// digit found in string".
fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn topic_rate(s: &str) -> Result<(String, f64), String> {
    let (name, hz) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("'{s}' is not TOPIC=HZ: write e.g. --rate imu=50"))?;
    if name.is_empty() {
        return Err(format!("'{s}' names no topic: write e.g. --rate imu=50"));
    }
    // 0 lifts --max-rate for this topic; anything else is a rate.
    if hz.trim().parse::<f64>() == Ok(0.0) {
        return Ok((name.to_string(), 0.0));
    }
    Ok((name.to_string(), rate(hz)?))
}

/// Run the server until SIGINT, SIGTERM or SIGHUP (or `--duration`). Exit 0;
/// 1 when none of the named topics is there and none can appear (shmids);
/// 2 on an error, or when none of the named topics can be served or
/// appear; the reason on stderr. A named topic or key not there yet is
/// waited for (served once it appears), with a warning.
pub fn run(args: &FoxgloveArgs) -> ExitCode {
    if let Err(e) = rates_name_served_topics(&args.topics, &args.rates) {
        shmbus_toolbox::say!("shmbus: {e}");
        return ExitCode::from(2);
    }
    let mut cfg = args.config();
    cfg.topics = match crate::settle(&cfg.topics) {
        Ok(t) => t,
        Err(e) => {
            shmbus_toolbox::say!("shmbus: {e}");
            return ExitCode::from(2);
        }
    };
    let named = cfg.topics.len();
    let mut server = match Server::bind(cfg) {
        Ok(s) => s,
        Err(e) => {
            shmbus_toolbox::say!("shmbus: {e}");
            return ExitCode::from(2);
        }
    };
    // Named topics, none of them usable now or later: fail rather than
    // serve nothing (each was warned about, with why). Some usable, or
    // some that may still appear: serve, and serve those once they appear
    // (the server documents topics that come and go).
    let may_appear = server.unserved().iter().any(|u| u.may_appear);
    if named > 0 && server.topic_count() == 0 && server.unserved().len() == named && !may_appear {
        server.warn_unserved(false);
        let labels: Vec<&str> = server.unserved().iter().map(|u| u.label.as_str()).collect();
        let labels = shmbus_toolbox::printable::printable(&labels.join(", ")).into_owned();
        if server.unserved().iter().all(|u| u.not_found) {
            shmbus_toolbox::say!(
                "shmbus: no {labels} on this machine; check the name with `shmbus list`, or start its publisher first"
            );
            return ExitCode::from(1);
        }
        shmbus_toolbox::say!(
            "shmbus: none of the named topics can be served ({labels}; see the warnings above)"
        );
        return ExitCode::from(2);
    }
    if let Err(e) = stop::install() {
        shmbus_toolbox::say!("shmbus: {e}");
        return ExitCode::from(2);
    }
    for w in rates_matching_nothing(&args.rates, &server.topic_names()) {
        shmbus_toolbox::say!("shmbus: warning: {w}");
    }
    let addr = server.local_addr();
    if !addr.ip().is_loopback() {
        shmbus_toolbox::say!(
            "shmbus foxglove: WARNING: listening on {addr}: the protocol has no authentication, so anyone who can reach this address can read every topic{}; prefer 127.0.0.1 and an SSH tunnel (docs/FOXGLOVE.md)",
            if args.allow_publish {
                " and publish on it"
            } else {
                ""
            }
        );
    }
    {
        // Not `println!`: it panics when stdout cannot be written (a full
        // disk, a pipe whose reader quit), and the server would die before
        // serving. The line is lost then; the server serves.
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "shmbus foxglove: ws://{addr} serving {} topic(s); in Foxglove: Open connection > Foxglove WebSocket > ws://{addr}",
            server.topic_count()
        );
        let _ = out.flush();
    }
    let summary = server.run_for(stop::flag(), args.duration);
    if !args.quiet {
        shmbus_toolbox::say!(
            "shmbus foxglove: stopped; {} client(s) served, {} frame(s) dropped for slow clients, {} message(s) published",
            summary.clients,
            summary.dropped_frames,
            summary.published
        );
        for (name, frames, missed, bad) in &summary.topics {
            if *frames + *missed + *bad > 0 {
                shmbus_toolbox::say!(
                    "  {name}: {} sent, {missed} missed by the server, {bad} undecodable",
                    shmbus_core::plural::count(*frames, "frame")
                );
            }
        }
    }
    ExitCode::SUCCESS
}

/// A `--rate NAME=HZ` applies to the topic named NAME only, and a name
/// that no served topic has is a limit silently not applied (a typo on a
/// weak board that needed it). When every TOPIC is a name, a rate for any
/// other name can never apply: refused, with the names it may take.
fn rates_name_served_topics(topics: &[Selector], rates: &[(String, f64)]) -> Result<(), String> {
    let names: Vec<&str> = topics
        .iter()
        .map(|s| match s {
            Selector::Name(n) => Some(n.as_str()),
            _ => None,
        })
        .collect::<Option<_>>()
        .unwrap_or_default();
    if names.is_empty() {
        return Ok(()); // every topic, or keys: names are known once served
    }
    for (name, hz) in rates {
        if !names.contains(&name.as_str()) {
            return Err(shmbus_toolbox::printable::printable(&format!(
                "--rate {name}={hz}: '{name}' is not one of the topics to serve ({}), so the limit would never apply; write --rate with one of those names",
                names.join(", ")
            ))
            .into_owned());
        }
    }
    Ok(())
}

/// One warning for each `--rate` whose name no topic served now has
/// (`served`: [`Server::topic_names`]): it applies only if such a topic
/// appears, and a misspelt name would otherwise never be noticed.
fn rates_matching_nothing(rates: &[(String, f64)], served: &[String]) -> Vec<String> {
    const SHOWN: usize = 10;
    let mut out = Vec::new();
    for (i, (name, hz)) in rates.iter().enumerate() {
        // Said once per name (the last --rate for a name is the one used).
        if served.contains(name) || rates[i + 1..].iter().any(|(n, _)| n == name) {
            continue;
        }
        let serving = if served.is_empty() {
            "no topic is served now".to_string()
        } else {
            let mut s = served[..served.len().min(SHOWN)].join(", ");
            if served.len() > SHOWN {
                s.push_str(&format!(" and {} more", served.len() - SHOWN));
            }
            format!("serving {s}")
        };
        out.push(
            shmbus_toolbox::printable::printable(&format!(
                "--rate {name}={hz}: no topic named '{name}' is served ({serving}); the limit applies only if it appears: check the name with `shmbus list`"
            ))
            .into_owned(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        a: FoxgloveArgs,
    }

    #[test]
    fn defaults_are_loopback_and_every_topic() {
        let t = T::try_parse_from(["x"]).unwrap();
        let c = t.a.config();
        assert_eq!(c.bind, crate::DEFAULT_BIND);
        assert!(c.bind.ip().is_loopback());
        assert!(c.topics.is_empty());
        assert_eq!(c.client_queue, 1024 * 1024);
        assert!(!c.allow_publish);
    }

    #[test]
    fn options_parse_and_bad_values_say_the_fix() {
        let t = T::try_parse_from([
            "x",
            "imu",
            "0x7a000001",
            "--bind",
            "0.0.0.0:9000",
            "--max-rate",
            "100",
            "--rate",
            "imu=5",
            "--rate",
            "a=b=0",
        ])
        .unwrap();
        let c = t.a.config();
        assert_eq!(
            c.topics,
            [Selector::Name("imu".into()), Selector::Key(0x7a00_0001)]
        );
        assert_eq!(c.bind.port(), 9000);
        assert_eq!(c.max_rate, Some(100.0));
        assert_eq!(
            c.topic_rates,
            [("imu".to_string(), 5.0), ("a=b".to_string(), 0.0)]
        );
        for (bad, says) in [
            (&["--max-rate=-1"][..], "out of range"),
            (&["--max-rate", "NaN"], "not a finite number"),
            (&["--max-rate", "0"], "out of range"),
            (&["--rate", "imu=-3"], "out of range"),
            (&["--rate", "imu"], "TOPIC=HZ"),
            (&["--rate", "=5"], "names no topic"),
            (&["--stall-timeout", "0"], "out of range"),
            (&["--stale-after", "inf"], "not a finite number"),
            (&["--bind", "localhost"], "invalid"),
            (&["--client-queue", "1"], "1"),
            // A negative number is a value out of range, not an unknown
            // argument ("unexpected argument '-1' found").
            (&["--max-rate", "-1"], "out of range"),
            (&["--rate", "-1"], "TOPIC=HZ"),
            (&["--stall-timeout", "-1"], "out of range"),
            (&["--stale-after", "-2"], "out of range"),
            (&["--duration", "-1"], "out of range"),
            (&["--client-queue", "-1"], "-1 is not in 16..=1048576"),
            (&["--max-clients", "-1"], "-1 is not in 1..=1024"),
            (&["--max-clients", "2000"], "2000 is not in 1..=1024"),
        ] {
            let e = T::try_parse_from(std::iter::once("x").chain(bad.iter().copied()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
