//! The command line of `shmbus bridge` and `shmbus-bridge` (one set of
//! arguments for both).
//!
//! The field docs below are clap's help text, written for a terminal, not
//! rustdoc: `[bridge]` names a TOML table and `<topic>` a placeholder.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use shmbus_config::Config;
use shmbus_config::bridge::OutFormat;

use crate::mqtt::{MqttOverrides, MqttSettings};
use crate::settings::{Overrides, Settings};

/// Exit code: stopped as asked (signal, `--duration`), or `--check` passed.
pub const OK: u8 = 0;
/// Exit code: bad config or arguments, or a broker that refuses this
/// bridge (credentials, TLS) on the first connection.
pub const ERROR: u8 = 2;

/// Help shown after the options.
pub const AFTER_HELP: &str = "\
Examples:
  shmbus bridge 127.0.0.1:1883 --config configs/demo.toml --board-id lab
  shmbus bridge mqtts://broker.example:8883 --ca ca.pem --credentials /etc/shmbus/bridge.cred
  shmbus bridge 127.0.0.1:1883 --check       # check the config and files, connect to nothing
  mosquitto_sub -h 127.0.0.1 -t 'shmbus/lab/#' -v   # what the broker gets

Topics go to <prefix>/<board-id>/<topic> (JSON: topic, generation, real_ns, mono_ns, value),
with retained $status, $schema, $jsonschema and $schematext beside each, and
<prefix>/<board-id>/$state = online | offline (birth and last will).
Settings come from the [bridge] table of the config (docs/BRIDGE.md); these options override it.
Passwords only come from a file (--credentials or credentials in [bridge.mqtt]).
Exit codes: 0 stopped by SIGINT, SIGTERM, SIGHUP or --duration, 2 bad config, or a broker that refuses
the credentials or the TLS handshake at the first connection.";

/// Payload format for `--format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// JSON: topic, generation, times, value.
    Json,
    /// The raw postcard frame (on <topic>/$raw).
    Postcard,
    /// Both.
    Both,
}

/// Arguments of the bridge.
#[derive(Debug, Args)]
pub struct BridgeArgs {
    /// Broker: host:port, mqtt://host:port or mqtts://host:port (default: `broker` in [bridge.mqtt]).
    pub broker: Option<String>,
    /// Topic config (default: $SHMBUS_CONFIG, /etc/shmbus/shmbus.toml, the built-in demo config).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Move the config's derived keys to this bus (as `shmbus demo` prints it).
    #[arg(long, value_name = "NAME", value_parser = shmbus_toolbox::parse::bus)]
    pub bus: Option<String>,
    /// This board's name in topic names (default: board_id in [bridge], else the host name).
    #[arg(long, value_name = "ID")]
    pub board_id: Option<String>,
    /// First level(s) of every topic name (default: shmbus).
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Send only this topic (repeat for more; default: [bridge] topics, else every topic of the config).
    #[arg(long = "topic", value_name = "NAME")]
    pub topics: Vec<String>,
    /// Send each topic's latest value at most this often (default: every frame).
    #[arg(long, value_name = "HZ", allow_negative_numbers = true, value_parser = shmbus_toolbox::parse::rate)]
    pub rate_hz: Option<f64>,
    /// Payload format of the sent topics.
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// QoS of the sent frames.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: Option<u8>,
    /// File with username and password (TOML: username = "...", password = "..."; mode 600).
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// CA certificates (PEM) the broker's certificate must chain to (mqtts://; default: the system's).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// This board's certificate (PEM), for brokers that require one.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The board certificate's private key (PEM; mode 600).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// MQTT client id (default: shmbus-<board-id>).
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true, value_parser = shmbus_toolbox::parse::seconds)]
    pub duration: Option<Duration>,
    /// On exit, print the final counters as one JSON line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Check the config, the files and the arguments, print what would run, and exit.
    #[arg(long)]
    pub check: bool,
}

/// Run the bridge with these arguments; messages go to stderr.
pub fn run(a: &BridgeArgs) -> ExitCode {
    match run_inner(a) {
        Ok(()) => ExitCode::from(OK),
        Err(e) => {
            // Messages quote what was typed (a board id, a topic, a file
            // name): no control character of it reaches the terminal.
            for line in e.lines() {
                shmbus_toolbox::say!(
                    "shmbus-bridge: {}",
                    shmbus_toolbox::printable::printable(line)
                );
            }
            ExitCode::from(ERROR)
        }
    }
}

fn run_inner(a: &BridgeArgs) -> Result<(), String> {
    let (rate_hz, duration) = (a.rate_hz, a.duration);
    let (mut config, source) = Config::find(a.config.as_deref()).map_err(|e| e.to_string())?;
    if let Some(bus) = &a.bus {
        config.rebus(bus).map_err(|e| e.to_string())?;
    }
    let over = Overrides {
        board_id: a.board_id.clone(),
        prefix: a.prefix.clone(),
        topics: a.topics.clone(),
        rate_hz,
        format: a.format.map(|f| match f {
            FormatArg::Json => OutFormat::Json,
            FormatArg::Postcard => OutFormat::Postcard,
            FormatArg::Both => OutFormat::Both,
        }),
        qos: a.qos,
    };
    let settings = Settings::resolve(&config, &over)?;
    let mqtt_over = MqttOverrides {
        broker: a.broker.clone(),
        credentials: a.credentials.clone(),
        ca: a.ca.clone(),
        client_cert: a.client_cert.clone(),
        client_key: a.client_key.clone(),
        client_id: a.client_id.clone(),
    };
    let mqtt = MqttSettings::resolve(
        &settings.table.mqtt,
        &mqtt_over,
        &config.path,
        &settings.board_id,
    )?;
    if a.check {
        // The inbound schemas are checked by building the routes.
        let stats = std::sync::Arc::new(crate::stats::Stats::default());
        let outbox = std::sync::Arc::new(crate::outbox::Outbox::new(1, 1, stats.clone()));
        let names = crate::names::Names::new(&settings.prefix, &settings.board_id);
        crate::inbound::Inbound::new(&settings.inbound, names.clone(), outbox, stats)?;
        let mut text = format!(
            "config: {}\nbroker: {} as {}{}\n",
            shmbus_toolbox::printable::printable(&source.to_string()),
            mqtt.broker,
            mqtt.shown_client_id(),
            if mqtt.credentials.is_some() {
                " (with credentials)"
            } else {
                ""
            }
        );
        for t in &settings.out {
            text.push_str(&format!(
                "out: {:<16} key 0x{:08x} -> {} ({:?}, {:?}, qos {:?}, retain {})\n",
                t.cfg.name,
                t.topic.key as u32,
                names.data(&t.cfg.name),
                t.pace,
                t.format,
                t.qos,
                t.retain
            ));
        }
        for i in &settings.inbound {
            text.push_str(&format!(
                "in:  {:<16} key 0x{:08x} <- {} ({:?})\n",
                i.cfg.name, i.topic.key as u32, i.remote, i.format
            ));
        }
        text.push_str("ok\n");
        put(&text);
        return Ok(());
    }
    let summary = crate::run(settings, mqtt, duration)?;
    let n = |p: &str| {
        summary
            .pointer(p)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    shmbus_toolbox::say!(
        "shmbus-bridge: stopped: {} read, {} delivered ({} of QoS 1/2 acknowledged by the broker, the rest QoS 0 written to the link), {} missed, {} dropped while the broker was away, {} still queued at the stop (never delivered), {} handed to the MQTT link but never confirmed (lost with it, or taken by a broker that did not acknowledge); in: {} received, {} published, {} bad, {} refused, {} replayed, {} cleared; {} on no route's topic",
        shmbus_core::plural::count(n("/out/read"), "frame"),
        shmbus_core::plural::count(n("/out/delivered"), "message"),
        n("/out/acknowledged"),
        n("/out/missed"),
        n("/out/dropped"),
        n("/queue/len"),
        n("/out/unconfirmed"),
        n("/in/received"),
        n("/in/published"),
        n("/in/bad"),
        n("/in/refused"),
        n("/in/replayed"),
        n("/in/cleared"),
        n("/in/unmatched")
    );
    if a.json {
        put(&format!("{summary}\n"));
    }
    Ok(())
}

/// Write `text` to stdout. A stdout that cannot be written (closed, full,
/// a pipe whose reader quit) is said on stderr and changes nothing else:
/// the exit code stays the run's own (`println!` panicked there, exit 101,
/// after a run that had gone well).
fn put(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        shmbus_toolbox::say!("shmbus-bridge: cannot write to stdout: {e}");
    }
}
