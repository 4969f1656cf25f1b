//! The bridge's settings: the config file's `[bridge]` table, with the
//! command line on top, checked and resolved (topics to keys, paths to
//! files, the host name to a board id) before anything starts.

use std::time::Duration;

use shmbus_config::bridge::{BridgeConfig, InFormat, OutFormat, level_problem};
use shmbus_config::{Config, Location, TopicConfig};
use shmbus_core::Topic;

use crate::outbox::Qos;

/// How often a sent topic's frames go out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Frames in publish order whose generation is a multiple of N (1:
    /// every frame).
    Every(u32),
    /// The latest value, at most once per period.
    Rate(Duration),
}

/// The longest prefix. MQTT carries a topic name with a 2-byte length: a
/// prefix that made the last will's topic longer than 65535 bytes went out
/// in a CONNECT cut short, which the broker drops, retried for good (and
/// Mosquitto refuses a topic of more than 200 levels anyway). The config's
/// own constant: the file's check (`shmbus doctor --config`) and the
/// bridge refuse the same prefixes, `--prefix` included.
pub use shmbus_config::bridge::MAX_PREFIX;

/// The longest `rate_hz` period: a slower rate (the config takes any
/// positive number, e.g. 1e-300) sends the latest value once a year.
pub const MAX_PERIOD: Duration = Duration::from_secs(365 * 86_400);

/// The period of a rate, at most [`MAX_PERIOD`] (never a panic, whatever
/// the float).
pub fn period(hz: f64) -> Duration {
    Duration::try_from_secs_f64(1.0 / hz)
        .unwrap_or(MAX_PERIOD)
        .min(MAX_PERIOD)
}

/// One topic sent to the broker.
#[derive(Debug, Clone)]
pub struct OutTopic {
    /// Its config (name, staleness).
    pub cfg: TopicConfig,
    /// The topic to attach.
    pub topic: Topic,
    /// Which frames go out.
    pub pace: Pace,
    /// Delivery guarantee of its frames.
    pub qos: Qos,
    /// Whether its frames are retained.
    pub retain: bool,
    /// JSON, postcard or both.
    pub format: OutFormat,
}

/// One broker topic taken in.
#[derive(Debug, Clone)]
pub struct InTopic {
    /// The broker topic.
    pub remote: String,
    /// The local topic's config.
    pub cfg: TopicConfig,
    /// The local topic to publish.
    pub topic: Topic,
    /// The declared schema text, and where it is written.
    pub schema: String,
    /// Where the schema is written.
    pub schema_at: Location,
    /// Payload format.
    pub format: InFormat,
    /// Subscription QoS.
    pub qos: Qos,
}

impl InTopic {
    /// A test route: broker topic `remote` into local topic `name` at
    /// `key` (4 slots), of type `struct S { a: u8 }`, JSON, QoS 1.
    #[cfg(test)]
    pub(crate) fn for_test(name: &str, remote: &str, key: i32) -> InTopic {
        let text = format!(
            "[[topic]]\nname = \"{name}\"\nkey = 0x{:08x}\nslots = 4\n",
            key as u32
        );
        let cfg = shmbus_config::Config::parse(&text, "t.toml")
            .unwrap()
            .topics
            .remove(0);
        InTopic {
            remote: remote.into(),
            topic: cfg.to_topic().unwrap(),
            cfg,
            schema: "struct S { a: u8 }".into(),
            schema_at: Location::file("t.toml"),
            format: InFormat::Json,
            qos: Qos::AtLeastOnce,
        }
    }
}

/// Everything the engine-neutral core needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This board's name in topic names.
    pub board_id: String,
    /// First level(s) of every topic name.
    pub prefix: String,
    /// Topics sent.
    pub out: Vec<OutTopic>,
    /// Topics taken in.
    pub inbound: Vec<InTopic>,
    /// Outbox bounds: messages, bytes.
    pub queue: (usize, usize),
    /// Statistics interval (`None`: no statistics messages).
    pub stats_interval: Option<Duration>,
    /// First and longest delay between reconnection attempts.
    pub reconnect: (Duration, Duration),
    /// The `[bridge]` table as loaded (the engine reads its own sub-table).
    pub table: BridgeConfig,
    /// The config's path, for messages and relative paths.
    pub config_path: String,
}

/// What the command line can set over the config file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--board-id`.
    pub board_id: Option<String>,
    /// `--prefix`.
    pub prefix: Option<String>,
    /// `--topic` (repeated): the topics to send, instead of the file's list.
    pub topics: Vec<String>,
    /// `--rate-hz`: latest value at most this often, for every sent topic.
    pub rate_hz: Option<f64>,
    /// `--format`.
    pub format: Option<OutFormat>,
    /// `--qos`.
    pub qos: Option<u8>,
}

impl Settings {
    /// Resolve `config` (with its `[bridge]` table, or the defaults) and
    /// the command line. Every problem is reported, one per line.
    pub fn resolve(config: &Config, over: &Overrides) -> Result<Settings, String> {
        let mut errs = Vec::new();
        let table = config
            .bridge
            .clone()
            .unwrap_or_else(|| BridgeConfig::defaults_at(Location::file(&config.path)));
        let board_id = match over.board_id.clone().or_else(|| table.board_id.clone()) {
            Some(b) => b,
            None => host_board_id().unwrap_or_else(|e| {
                errs.push(e);
                String::new()
            }),
        };
        if let Some(p) = level_problem(&board_id).filter(|_| !board_id.is_empty()) {
            errs.push(format!("board id \"{board_id}\" {p}"));
        }
        let prefix = over.prefix.clone().unwrap_or_else(|| table.prefix.clone());
        if prefix.len() > MAX_PREFIX {
            errs.push(format!(
                "prefix \"{}\" is longer than {MAX_PREFIX} bytes: shorten it (every broker topic of the board starts with it)",
                shmbus_core::topic::shown(&prefix)
            ));
        }
        for level in prefix.split('/').filter(|_| prefix.len() <= MAX_PREFIX) {
            if let Some(p) = level_problem(level) {
                errs.push(format!(
                    "prefix \"{prefix}\": level \"{level}\" {p} (levels are separated by /)"
                ));
                break;
            }
        }

        // The sent topics: --topic, else [bridge] topics, else every topic
        // that is not taken in.
        let names: Vec<String> = if !over.topics.is_empty() {
            for t in &over.topics {
                if config.topic(t).is_none() {
                    errs.push(config.require_topic(t).unwrap_err());
                } else if table.is_inbound_target(t) {
                    errs.push(format!(
                        "--topic {t}: `{t}` is taken in by a [[bridge.in]] of {}; sending it out too would echo the broker's messages back",
                        config.path
                    ));
                }
            }
            // Once each: a topic given twice had two readers, and every
            // frame went to the broker twice.
            let mut seen = std::collections::BTreeSet::new();
            over.topics
                .iter()
                .filter(|t| seen.insert(t.as_str()))
                .cloned()
                .collect()
        } else if let Some(list) = &table.topics {
            list.iter().map(|(n, _)| n.clone()).collect()
        } else {
            config
                .topics
                .iter()
                .filter(|t| !table.is_inbound_target(&t.name))
                .map(|t| t.name.clone())
                .collect()
        };
        let mut out = Vec::new();
        for name in &names {
            let Some(cfg) = config.topic(name) else {
                continue;
            };
            let mut s = table.out_settings(name);
            if let Some(r) = over.rate_hz {
                s.rate_hz = Some(r);
                s.every = None;
            }
            if over.format.is_some() {
                s.format = over.format;
            }
            if over.qos.is_some() {
                s.qos = over.qos;
            }
            let pace = match (s.rate_hz, s.every) {
                (Some(hz), _) => Pace::Rate(period(hz)),
                (None, Some(n)) => Pace::Every(n.max(1)),
                (None, None) => Pace::Every(1),
            };
            match cfg.to_topic() {
                Ok(topic) => out.push(OutTopic {
                    cfg: cfg.clone(),
                    topic,
                    pace,
                    qos: Qos::from_level(s.qos.unwrap_or(0)),
                    retain: s.retain.unwrap_or(true),
                    format: s.format.unwrap_or(OutFormat::Json),
                }),
                Err(e) => errs.push(e.to_string()),
            }
        }
        let mut inbound = Vec::new();
        for i in &table.inbound {
            let Some(cfg) = config.topic(&i.topic) else {
                continue;
            };
            match cfg.to_topic() {
                Ok(topic) => inbound.push(InTopic {
                    remote: i.remote.clone(),
                    cfg: cfg.clone(),
                    topic,
                    schema: i.schema.clone(),
                    schema_at: i.schema_at.clone(),
                    format: i.format,
                    qos: Qos::from_level(i.qos),
                }),
                Err(e) => errs.push(e.to_string()),
            }
        }
        // A `from` whose messages could never reach its route, or that
        // would bring this bridge's own messages back in.
        let own = crate::names::Names::new(&prefix, &board_id);
        for i in &table.inbound {
            if let Some(p) = from_problem(&i.remote, &own, &out, &table) {
                errs.push(format!(
                    "{}: from = \"{}\" {p}",
                    i.at,
                    shmbus_core::topic::shown(&i.remote)
                ));
            }
        }
        if out.is_empty() && inbound.is_empty() && errs.is_empty() {
            errs.push(format!(
                "{}: nothing to bridge: the config has no topic to send and no [[bridge.in]]",
                config.path
            ));
        }
        if !errs.is_empty() {
            return Err(errs.join("\n"));
        }
        let ms = Duration::from_millis;
        Ok(Settings {
            board_id,
            prefix,
            out,
            inbound,
            queue: (table.queue, table.queue_bytes),
            stats_interval: (table.stats_interval_s > 0)
                .then(|| Duration::from_secs(table.stats_interval_s)),
            reconnect: (ms(table.reconnect_min_ms), ms(table.reconnect_max_ms)),
            config_path: config.path.clone(),
            table,
        })
    }
}

/// Why the broker topic `from` cannot be taken in, if it cannot: a topic
/// this bridge publishes itself (a loop). It depends on the prefix and
/// board id, which the command line may override, so it is checked here
/// rather than by the config's parser.
fn from_problem(
    from: &str,
    own: &crate::names::Names,
    out: &[OutTopic],
    table: &BridgeConfig,
) -> Option<String> {
    // (A shared subscription, `$share/...` or `$queue/...`, is refused by
    // the config's parser, so `shmbus doctor --config` and `shmbus bridge
    // --check` say it too.)
    let rest = from.strip_prefix(own.base())?.strip_prefix('/')?;
    let meta = |m: &str| {
        matches!(
            m,
            "$raw" | "$status" | "$schema" | "$jsonschema" | "$schematext"
        )
    };
    let ours = matches!(rest, "$state" | "$stats")
        || rest
            .strip_prefix("$in/")
            .is_some_and(|t| table.is_inbound_target(t))
        || out.iter().any(|o| {
            let name = o.cfg.name.as_str();
            rest == name
                || rest
                    .strip_prefix(name)
                    .and_then(|m| m.strip_prefix('/'))
                    .is_some_and(meta)
        });
    ours.then(|| {
        format!(
            "is a topic this bridge publishes itself (under {}/): its own messages would come back in, a loop; take in a topic of another board or of the ground station",
            own.base()
        )
    })
}

/// The host name, as a board id.
fn host_board_id() -> Result<String, String> {
    let h = nix::unistd::gethostname().map_err(|e| {
        format!("cannot read the host name for the board id ({e}): give --board-id NAME")
    })?;
    let h = h.to_string_lossy().into_owned();
    match level_problem(&h) {
        None => Ok(h),
        Some(p) => Err(format!(
            "the host name \"{h}\" {p}; it cannot be the board id: give --board-id NAME or board_id in [bridge]"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, "t.toml").unwrap()
    }

    const TOPICS: &str = "[[topic]]\nname = \"imu\"\nrate_hz = 1000\n[[topic]]\nname = \"power\"\n[[topic]]\nname = \"setpoint\"\n";

    #[test]
    fn by_default_every_topic_not_taken_in_is_sent_every_frame_as_json() {
        let c = config(&format!(
            "{TOPICS}[bridge]\nboard_id = \"b1\"\n[[bridge.in]]\nfrom = \"g/sp\"\ntopic = \"setpoint\"\nschema = \"u8\"\n"
        ));
        let s = Settings::resolve(&c, &Overrides::default()).unwrap();
        let names: Vec<&str> = s.out.iter().map(|t| t.cfg.name.as_str()).collect();
        assert_eq!(names, ["imu", "power"]);
        assert_eq!(s.out[0].pace, Pace::Every(1));
        assert_eq!(
            (s.out[0].qos, s.out[0].retain, s.out[0].format),
            (Qos::AtMostOnce, true, OutFormat::Json)
        );
        assert_eq!(s.inbound[0].topic.key, c.topic("setpoint").unwrap().key);
        assert_eq!(s.inbound[0].qos, Qos::AtLeastOnce);
        assert_eq!((s.board_id.as_str(), s.prefix.as_str()), ("b1", "shmbus"));
    }

    #[test]
    fn a_tiny_rate_is_a_long_period_not_a_panic() {
        for (hz, want) in [
            ("1e-300", MAX_PERIOD),
            ("0.5", Duration::from_secs(2)),
            ("1e-9", MAX_PERIOD),
        ] {
            let c = config(&format!(
                "{TOPICS}[bridge]\nboard_id = \"b1\"\nrate_hz = {hz}\n[[bridge.out]]\ntopic = \"power\"\nrate_hz = {hz}\n"
            ));
            let s = Settings::resolve(&c, &Overrides::default()).unwrap();
            assert!(s.out.iter().all(|t| t.pace == Pace::Rate(want)), "{hz}");
        }
        assert_eq!(period(f64::MIN_POSITIVE), MAX_PERIOD);
        assert_eq!(period(1000.0), Duration::from_millis(1));
    }

    #[test]
    fn the_command_line_wins() {
        let c = config(&format!("{TOPICS}[bridge]\nboard_id = \"b1\"\nevery = 4\n"));
        let over = Overrides {
            board_id: Some("b2".into()),
            prefix: Some("lab/x".into()),
            topics: vec!["power".into()],
            rate_hz: Some(4.0),
            format: Some(OutFormat::Both),
            qos: Some(1),
        };
        let s = Settings::resolve(&c, &over).unwrap();
        assert_eq!((s.board_id.as_str(), s.prefix.as_str()), ("b2", "lab/x"));
        assert_eq!(s.out.len(), 1);
        assert_eq!(s.out[0].pace, Pace::Rate(Duration::from_millis(250)));
        assert_eq!(
            (s.out[0].format, s.out[0].qos),
            (OutFormat::Both, Qos::AtLeastOnce)
        );
    }

    #[test]
    fn a_prefix_too_long_for_a_broker_topic_is_refused_in_one_short_line() {
        let c = config(&format!("{TOPICS}[bridge]\nboard_id = \"b1\"\n"));
        let long = ["abcdefgh"; 8000].join("/");
        let over = Overrides {
            prefix: Some(long),
            ..Overrides::default()
        };
        let e = Settings::resolve(&c, &over).unwrap_err();
        assert!(e.contains("is longer than 1024 bytes: shorten it"), "{e}");
        assert!(e.len() < 400 && e.lines().count() == 1, "{e}");
        let longest = ["abcdefgh"; 113].join("/") + "/abcdefg";
        assert_eq!(longest.len(), MAX_PREFIX);
        let over = Overrides {
            prefix: Some(longest.clone()),
            ..Overrides::default()
        };
        assert_eq!(Settings::resolve(&c, &over).unwrap().prefix, longest);
    }

    /// A shared subscription (`$share/<group>/<topic>`, EMQX's
    /// `$queue/<topic>`) is delivered under the topic without that part:
    /// the route never matched, and every message was dropped without a
    /// count. A `from` that this bridge itself publishes would take its own
    /// messages back in (a loop). Both are refused, at their line.
    #[test]
    fn a_from_whose_messages_could_never_arrive_as_named_or_are_our_own_is_refused() {
        let text = |from: &str| {
            format!(
                "{TOPICS}[bridge]\nboard_id = \"b1\"\n[[bridge.in]]\nfrom = \"{from}\"\ntopic = \"setpoint\"\nschema = \"u8\"\n"
            )
        };
        let with_from = |from: &str| config(&text(from));
        // Shared subscriptions: refused by the config's parser (so
        // `shmbus doctor --config` says it too), at their line.
        for (from, words) in [
            ("$share/ground/g/sp", "from = \"g/sp\""),
            ("$share/ground", "from = \"TOPIC\""),
            ("$queue/g/sp", "from = \"g/sp\""),
        ] {
            let e = Config::parse(&text(from), "t.toml")
                .err()
                .unwrap_or_else(|| panic!("{from}: taken"))
                .to_string();
            assert!(
                e.contains(words) && e.starts_with("t.toml:11:"),
                "{from}: {e}"
            );
            assert!(e.contains("shared subscription"), "{e}");
        }
        for (from, words) in [
            ("shmbus/b1/imu", "this bridge publishes it"),
            ("shmbus/b1/imu/$raw", "this bridge publishes it"),
            ("shmbus/b1/$stats", "this bridge publishes it"),
            ("shmbus/b1/$state", "this bridge publishes it"),
            ("shmbus/b1/$in/setpoint", "this bridge publishes it"),
        ] {
            let e = Settings::resolve(&with_from(from), &Overrides::default())
                .err()
                .unwrap_or_else(|| panic!("{from}: taken"));
            assert!(e.contains(words) && e.starts_with("t.toml:"), "{from}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        // The resolved prefix and board id count, command line included.
        let over = Overrides {
            prefix: Some("fleet".into()),
            ..Overrides::default()
        };
        assert!(Settings::resolve(&with_from("fleet/b1/power"), &over).is_err());
        assert!(Settings::resolve(&with_from("shmbus/b1/power"), &over).is_ok());
        // Another board's topics, and topics this bridge does not send, are fine.
        for from in [
            "shmbus/b2/imu",
            "shmbus/b1/other",
            "$SYS/broker/uptime",
            "share/x",
        ] {
            let r = Settings::resolve(&with_from(from), &Overrides::default());
            assert!(r.is_ok(), "{from}: {r:?}");
        }
    }

    #[test]
    fn a_topic_given_twice_is_sent_once() {
        let c = config(&format!("{TOPICS}[bridge]\nboard_id = \"b1\"\n"));
        let over = Overrides {
            topics: vec!["power".into(), "imu".into(), "power".into()],
            ..Overrides::default()
        };
        let s = Settings::resolve(&c, &over).unwrap();
        let names: Vec<&str> = s.out.iter().map(|t| t.cfg.name.as_str()).collect();
        assert_eq!(names, ["power", "imu"]);
    }

    #[test]
    fn bad_command_line_values_are_all_reported() {
        let c = config(TOPICS);
        let over = Overrides {
            board_id: Some("a/b".into()),
            prefix: Some("x/+".into()),
            topics: vec!["gnss".into()],
            ..Overrides::default()
        };
        let e = Settings::resolve(&c, &over).unwrap_err();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 3, "{e}");
        assert!(lines[0].starts_with("board id \"a/b\" contains '/'"), "{e}");
        assert!(lines[1].contains("level \"+\" contains '+'"), "{e}");
        assert!(
            lines[2].contains("no topic `gnss`; the topics are: imu, power, setpoint"),
            "{e}"
        );
    }
}
