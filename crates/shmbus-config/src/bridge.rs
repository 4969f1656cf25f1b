//! The `[bridge]` table: what `shmbus bridge` sends off the board and takes
//! back, checked when the file loads like everything else in it.
//!
//! The engine-neutral settings (board id, prefix, topics, pacing, queue,
//! reconnection) sit in `[bridge]`, `[[bridge.out]]` and `[[bridge.in]]`;
//! each engine has its own sub-table (`[bridge.mqtt]`). The format is in
//! `docs/BRIDGE.md`.

use std::path::{Path, PathBuf};

use crate::error::Location;

/// Default topic prefix: `<prefix>/<board-id>/<topic>`.
pub const DEFAULT_PREFIX: &str = "shmbus";
/// Default number of messages kept while the broker is away.
pub const DEFAULT_QUEUE: usize = 1000;
/// Default bound on the bytes kept while the broker is away.
pub const DEFAULT_QUEUE_BYTES: usize = 1 << 20;
/// The most `queue_bytes` may be: 1 GiB, the same on every target, so a
/// config checked on a 64-bit host means the same on a 32-bit board (where
/// `usize` is 32 bits and 4 GiB or more would not fit).
pub const MAX_QUEUE_BYTES: usize = 1 << 30;
/// Default interval of the bridge's statistics message, seconds.
pub const DEFAULT_STATS_INTERVAL_S: u64 = 10;
/// Default first reconnection delay, ms (doubles after each failure).
pub const DEFAULT_RECONNECT_MIN_MS: u64 = 250;
/// Default longest reconnection delay, ms.
pub const DEFAULT_RECONNECT_MAX_MS: u64 = 10_000;
/// Default MQTT keep-alive, seconds.
pub const DEFAULT_KEEPALIVE_S: u64 = 10;

/// The longest `prefix`, in bytes: the file's check refuses a longer one at
/// the prefix's `line:col`, and the bridge (its `settings::MAX_PREFIX` is
/// this constant) refuses it in `--prefix` too.
pub const MAX_PREFIX: usize = 1024;

/// Longest board id and prefix level: topic names stay short on the wire.
const MAX_LEVEL: usize = 64;

/// The `[bridge]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeConfig {
    /// This board's name in topic names (default: the host name).
    pub board_id: Option<String>,
    /// First level(s) of every topic (default `shmbus`).
    pub prefix: String,
    /// Topics to send: `None` is every `[[topic]]` of the file that is not
    /// the target of a `[[bridge.in]]`.
    pub topics: Option<Vec<(String, Location)>>,
    /// Settings of every sent topic unless its `[[bridge.out]]` says otherwise.
    pub defaults: OutSettings,
    /// Per-topic settings.
    pub out: Vec<BridgeOut>,
    /// Broker topics republished as local topics.
    pub inbound: Vec<BridgeIn>,
    /// Messages kept while the broker is away (oldest dropped first).
    pub queue: usize,
    /// Bytes of payload kept while the broker is away (oldest dropped first).
    pub queue_bytes: usize,
    /// Seconds between statistics messages (0: none).
    pub stats_interval_s: u64,
    /// First delay before reconnecting, ms; doubles up to `reconnect_max_ms`.
    pub reconnect_min_ms: u64,
    /// Longest delay between reconnection attempts, ms.
    pub reconnect_max_ms: u64,
    /// `[bridge.mqtt]`.
    pub mqtt: MqttConfig,
    /// Where `[bridge]` starts.
    pub at: Location,
}

impl BridgeConfig {
    /// The settings of a sent topic: its `[[bridge.out]]` over the defaults.
    pub fn out_settings(&self, topic: &str) -> OutSettings {
        let mut s = self.defaults.clone();
        if let Some(o) = self.out.iter().find(|o| o.topic == topic) {
            s.apply(&o.settings);
        }
        s
    }

    /// True if `topic` is the target of a `[[bridge.in]]`.
    pub fn is_inbound_target(&self, topic: &str) -> bool {
        self.inbound.iter().any(|i| i.topic == topic)
    }

    /// The table an empty `[bridge]` gives, located at `at`.
    pub fn defaults_at(at: Location) -> BridgeConfig {
        BridgeConfig {
            board_id: None,
            prefix: DEFAULT_PREFIX.to_string(),
            topics: None,
            defaults: OutSettings::defaults(),
            out: Vec::new(),
            inbound: Vec::new(),
            queue: DEFAULT_QUEUE,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            stats_interval_s: DEFAULT_STATS_INTERVAL_S,
            reconnect_min_ms: DEFAULT_RECONNECT_MIN_MS,
            reconnect_max_ms: DEFAULT_RECONNECT_MAX_MS,
            mqtt: MqttConfig::default(),
            at,
        }
    }

    /// Every location in the table (to rename the file in messages).
    pub(crate) fn locations_mut(&mut self) -> Vec<&mut Location> {
        let mut v: Vec<&mut Location> = vec![&mut self.at, &mut self.mqtt.at];
        if let Some(t) = self.topics.as_mut() {
            v.extend(t.iter_mut().map(|(_, at)| at));
        }
        v.extend(self.out.iter_mut().map(|o| &mut o.at));
        for i in &mut self.inbound {
            v.push(&mut i.at);
            v.push(&mut i.schema_at);
        }
        if let Some(b) = self.mqtt.broker.as_mut() {
            v.push(&mut b.at);
        }
        for p in [
            &mut self.mqtt.credentials,
            &mut self.mqtt.ca,
            &mut self.mqtt.client_cert,
            &mut self.mqtt.client_key,
        ]
        .into_iter()
        .flatten()
        {
            v.push(&mut p.at);
        }
        v
    }
}

/// How a topic is sent: a field left `None` takes the default.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OutSettings {
    /// Latest value at most this often (frames in between are not sent).
    pub rate_hz: Option<f64>,
    /// Every `every`-th frame in publish order (1: every frame).
    pub every: Option<u32>,
    /// Delivery guarantee, 0, 1 or 2.
    pub qos: Option<u8>,
    /// Whether the broker keeps the latest message for late subscribers.
    pub retain: Option<bool>,
    /// JSON, the raw postcard frame, or both.
    pub format: Option<OutFormat>,
}

impl OutSettings {
    /// The built-in defaults: every frame, QoS 0, retained, JSON.
    pub fn defaults() -> OutSettings {
        OutSettings {
            rate_hz: None,
            every: None,
            qos: Some(0),
            retain: Some(true),
            format: Some(OutFormat::Json),
        }
    }

    /// Take every field `over` sets. Pacing is one choice: a `rate_hz`
    /// clears an inherited `every` and the other way round.
    pub fn apply(&mut self, over: &OutSettings) {
        if over.rate_hz.is_some() || over.every.is_some() {
            self.rate_hz = over.rate_hz;
            self.every = over.every;
        }
        if over.qos.is_some() {
            self.qos = over.qos;
        }
        if over.retain.is_some() {
            self.retain = over.retain;
        }
        if over.format.is_some() {
            self.format = over.format;
        }
    }
}

/// Payload of a sent topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    /// A JSON object: generation, timestamps and the decoded value.
    Json,
    /// The postcard frame exactly as in the slot.
    Postcard,
    /// Both, on two topics.
    Both,
}

impl OutFormat {
    /// True if the JSON message is sent.
    pub fn json(self) -> bool {
        matches!(self, OutFormat::Json | OutFormat::Both)
    }
    /// True if the postcard message is sent.
    pub fn postcard(self) -> bool {
        matches!(self, OutFormat::Postcard | OutFormat::Both)
    }
}

/// One `[[bridge.out]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeOut {
    /// The local topic.
    pub topic: String,
    /// Its settings (unset fields take `[bridge]`'s).
    pub settings: OutSettings,
    /// Where `topic` is written.
    pub at: Location,
}

/// One `[[bridge.in]]`: a broker topic republished as a local topic.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeIn {
    /// The broker topic (no wildcards).
    pub remote: String,
    /// The local topic (a `[[topic]]` of the file).
    pub topic: String,
    /// The frame type, declared in the codec's schema text.
    pub schema: String,
    /// Where `schema` is written (schema errors point here).
    pub schema_at: Location,
    /// What the payloads are.
    pub format: InFormat,
    /// Subscription QoS, 0, 1 or 2.
    pub qos: u8,
    /// Where `remote` is written.
    pub at: Location,
}

/// Payload of a broker topic taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFormat {
    /// The value as JSON.
    Json,
    /// A JSON object with a `value` member, as the bridge sends.
    Envelope,
    /// A postcard frame.
    Postcard,
}

/// A path written in the file, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct PathSetting {
    /// As written.
    pub path: PathBuf,
    /// Where it is written.
    pub at: Location,
}

impl PathSetting {
    /// The path, relative ones taken from the config file's directory
    /// (`config_path` is [`crate::Config::path`]).
    pub fn resolve(&self, config_path: &str) -> PathBuf {
        if self.path.is_absolute() {
            return self.path.clone();
        }
        match Path::new(config_path).parent() {
            Some(dir) if !config_path.starts_with('<') => dir.join(&self.path),
            _ => self.path.clone(),
        }
    }
}

/// A string setting and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct StrSetting {
    /// The value.
    pub value: String,
    /// Where it is written.
    pub at: Location,
}

/// `[bridge.mqtt]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MqttConfig {
    /// `host:port`, `mqtt://host:port` or `mqtts://host:port`.
    pub broker: Option<StrSetting>,
    /// The MQTT client id (default `shmbus-<board-id>`).
    pub client_id: Option<String>,
    /// Keep-alive, seconds (default 10): the broker sends the last will of a
    /// board it has not heard from for 1.5 times this.
    pub keepalive_s: Option<u64>,
    /// A file with `username` and `password` (never on the command line).
    pub credentials: Option<PathSetting>,
    /// CA certificates (PEM) that sign the broker's certificate (TLS).
    pub ca: Option<PathSetting>,
    /// This board's certificate (PEM), for brokers that require one.
    pub client_cert: Option<PathSetting>,
    /// Its private key (PEM).
    pub client_key: Option<PathSetting>,
    /// Where `[bridge.mqtt]` starts (or `[bridge]` if absent).
    pub at: Location,
}

/// Why `s` cannot be the board id or one level of the prefix, if it
/// cannot: 1 to 64 letters, digits, `_`, `-`, `.` (never an MQTT wildcard,
/// a `$` or a `/`).
pub fn level_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is empty: use letters, digits, _ - .".to_string());
    }
    if s.len() > MAX_LEVEL {
        return Some(format!("is longer than {MAX_LEVEL} bytes: shorten it"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Some(format!(
            "contains '{}': use letters, digits, _ - . only (no / + # $ or spaces)",
            c.escape_default()
        ));
    }
    None
}
