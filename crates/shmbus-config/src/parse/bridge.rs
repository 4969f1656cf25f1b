//! `[bridge]`, `[[bridge.out]]`, `[[bridge.in]]` and `[bridge.mqtt]`:
//! parsed after the topics, because every topic they name must be one.

use std::collections::HashMap;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};

use super::{Parser, Value, shown};
use crate::TopicConfig;
use crate::bridge::{
    BridgeConfig, BridgeIn, BridgeOut, InFormat, MAX_PREFIX, MAX_QUEUE_BYTES, MqttConfig,
    OutFormat, OutSettings, PathSetting, StrSetting, level_problem,
};

const BRIDGE_FIELDS: &[&str] = &[
    "board_id",
    "prefix",
    "topics",
    "rate_hz",
    "every",
    "qos",
    "retain",
    "format",
    "queue",
    "queue_bytes",
    "stats_interval_s",
    "reconnect_min_ms",
    "reconnect_max_ms",
    "out",
    "in",
    "mqtt",
];
const OUT_FIELDS: &[&str] = &["topic", "rate_hz", "every", "qos", "retain", "format"];
const IN_FIELDS: &[&str] = &["from", "topic", "schema", "format", "qos"];
const MQTT_FIELDS: &[&str] = &[
    "broker",
    "client_id",
    "keepalive_s",
    "credentials",
    "ca",
    "client_cert",
    "client_key",
];

impl Parser<'_> {
    /// Parse the `[bridge]` value; `topics` are the file's topics.
    pub(super) fn bridge(&mut self, v: &Value<'_>, topics: &[TopicConfig]) -> Option<BridgeConfig> {
        let DeValue::Table(t) = v.get_ref() else {
            let found = v.get_ref().type_str();
            return self.err(
                v.span(),
                format!("`bridge` must be a table ([bridge]), found {found}"),
            );
        };
        let mut b = BridgeConfig::defaults_at(self.at(v.span().start));
        b.mqtt.at = b.at.clone();
        let mut out_value = None;
        let mut in_value = None;
        let mut pacing_seen = None;
        let mut reconnect_max = None;
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "board_id" => {
                    b.board_id = self
                        .string(v, "board_id")
                        .and_then(|s| self.level(v, "board_id", &s).then_some(s))
                }
                "prefix" => {
                    if let Some(p) = self.string(v, "prefix") {
                        if self.prefix(v, &p) {
                            b.prefix = p;
                        }
                    }
                }
                "topics" => b.topics = self.topic_list(v, topics),
                "rate_hz" | "every" | "qos" | "retain" | "format" => {
                    self.out_field(k.get_ref(), v, &mut b.defaults, &mut pacing_seen)
                }
                "queue" => {
                    b.queue = self
                        .bounded(v, "queue", 1, 10_000_000)
                        .map_or(b.queue, |n| n as usize)
                }
                "queue_bytes" => b.queue_bytes = self.queue_bytes(v).unwrap_or(b.queue_bytes),
                "stats_interval_s" => {
                    b.stats_interval_s = self
                        .bounded(v, "stats_interval_s", 0, 86_400)
                        .unwrap_or(b.stats_interval_s)
                }
                "reconnect_min_ms" => {
                    b.reconnect_min_ms = self
                        .bounded(v, "reconnect_min_ms", 1, 3_600_000)
                        .unwrap_or(b.reconnect_min_ms)
                }
                "reconnect_max_ms" => {
                    if let Some(n) = self.bounded(v, "reconnect_max_ms", 1, 3_600_000) {
                        b.reconnect_max_ms = n;
                        reconnect_max = Some(v.span());
                    }
                }
                "out" => out_value = Some(v),
                "in" => in_value = Some(v),
                "mqtt" => match v.get_ref() {
                    DeValue::Table(m) => b.mqtt = self.mqtt(m, self.at(v.span().start)),
                    other => {
                        let found = other.type_str();
                        self.err::<()>(
                            v.span(),
                            format!("`mqtt` must be a table ([bridge.mqtt]), found {found}"),
                        );
                    }
                },
                _ => self.unknown(k, "[bridge]", BRIDGE_FIELDS),
            }
        }
        if let Some(span) = reconnect_max {
            if b.reconnect_max_ms < b.reconnect_min_ms {
                self.err::<()>(
                    span,
                    format!(
                        "reconnect_max_ms = {} is below reconnect_min_ms = {}: raise it to at least {}",
                        b.reconnect_max_ms, b.reconnect_min_ms, b.reconnect_min_ms
                    ),
                );
            }
        }
        if let Some(v) = in_value {
            for (item, span) in self.tables(v, "in", "[[bridge.in]]") {
                if let Some(i) = self.inbound(item, span, topics) {
                    b.inbound.push(i);
                }
            }
        }
        self.check_inbound(&b);
        if let Some(v) = out_value {
            for (item, span) in self.tables(v, "out", "[[bridge.out]]") {
                if let Some(o) = self.out(item, span, topics, &b) {
                    b.out.push(o);
                }
            }
        }
        Some(b)
    }

    /// The elements of an array of tables (`[[bridge.NAME]]`), reporting
    /// anything else.
    fn tables<'v, 'i>(
        &mut self,
        v: &'v Value<'i>,
        name: &str,
        shown: &str,
    ) -> Vec<(&'v DeTable<'i>, std::ops::Range<usize>)> {
        match v.get_ref() {
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::Table(t) => out.push((t, item.span())),
                        other => {
                            let found = other.type_str();
                            self.err::<()>(
                                item.span(),
                                format!("each `{name}` must be a table ({shown}), found {found}"),
                            );
                        }
                    }
                }
                out
            }
            DeValue::Table(_) => self.err(
                v.span(),
                format!("`{name}` is a single table; write {shown} (double brackets) before each one"),
            )
            .unwrap_or_default(),
            other => {
                let found = other.type_str();
                self.err(
                    v.span(),
                    format!("`{name}` must be an array of tables ({shown}), found {found}"),
                )
                .unwrap_or_default()
            }
        }
    }

    /// One of the fields `[bridge]` and `[[bridge.out]]` share. `pacing`
    /// remembers where `rate_hz` or `every` was written: only one may be.
    fn out_field(
        &mut self,
        k: &str,
        v: &Value<'_>,
        s: &mut OutSettings,
        pacing: &mut Option<std::ops::Range<usize>>,
    ) {
        let mut one_pacing = |this: &mut Self| {
            if let Some(first) = pacing.clone() {
                // Tables iterate in key order, not file order: point at the later one.
                let later = if first.start > v.span().start {
                    first
                } else {
                    v.span()
                };
                this.err::<()>(
                    later,
                    "`rate_hz` and `every` cannot both be set: `rate_hz` sends the latest value at most N times a second, `every` sends every N-th frame; keep one",
                );
                return false;
            }
            *pacing = Some(v.span());
            true
        };
        match k {
            "rate_hz" => {
                if let Some(r) = self.rate(v) {
                    if one_pacing(self) {
                        s.rate_hz = Some(r);
                    }
                }
            }
            "every" => {
                if let Some(n) = self.bounded(v, "every", 1, 1_000_000) {
                    if one_pacing(self) {
                        s.every = Some(n as u32);
                    }
                }
            }
            "qos" => s.qos = self.qos(v).or(s.qos),
            "retain" => s.retain = self.boolean(v, "retain").or(s.retain),
            "format" => {
                s.format = match v.get_ref() {
                    DeValue::String(f) => match f.as_ref() {
                        "json" => Some(OutFormat::Json),
                        "postcard" => Some(OutFormat::Postcard),
                        "both" => Some(OutFormat::Both),
                        _ => self.err(
                            v.span(),
                            format!("format = \"{}\" is not a format: use \"json\" (default), \"postcard\" (the raw frame) or \"both\"", shown(f)),
                        ),
                    },
                    _ => self.wrong_type(v, "format", "\"json\", \"postcard\" or \"both\""),
                }
                .or(s.format)
            }
            _ => unreachable!("out_field is only called for the shared fields"),
        }
    }

    fn out(
        &mut self,
        t: &DeTable<'_>,
        span: std::ops::Range<usize>,
        topics: &[TopicConfig],
        b: &BridgeConfig,
    ) -> Option<BridgeOut> {
        let mut topic = None;
        let mut settings = OutSettings::default();
        let mut pacing_seen = None;
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "topic" => {
                    topic = self
                        .declared(v, topics)
                        .map(|name| (name, self.at(v.span().start), v.span()))
                }
                "rate_hz" | "every" | "qos" | "retain" | "format" => {
                    self.out_field(k.get_ref(), v, &mut settings, &mut pacing_seen)
                }
                _ => self.unknown(k, "[[bridge.out]]", OUT_FIELDS),
            }
        }
        let Some((topic, at, tspan)) = topic else {
            if !t.iter().any(|(k, _)| k.get_ref() == "topic") {
                self.err::<()>(
                    span,
                    "this [[bridge.out]] has no `topic`: add topic = \"...\"",
                );
            }
            return None;
        };
        if b.is_inbound_target(&topic) {
            return self.err(
                tspan,
                format!("topic `{topic}` is taken in by a [[bridge.in]]: sending it out too would echo the broker's messages back; remove one of them"),
            );
        }
        if let Some(list) = &b.topics {
            if !list.iter().any(|(n, _)| *n == topic) {
                return self.err(
                    tspan,
                    format!("topic `{topic}` is not in [bridge] topics: add it there, or remove this [[bridge.out]]"),
                );
            }
        }
        if let Some(first) = b.out.iter().find(|o| o.topic == topic) {
            return self.err(
                tspan,
                format!(
                    "a second [[bridge.out]] for `{topic}` (first at line {}): merge them",
                    first.at.line
                ),
            );
        }
        Some(BridgeOut {
            topic,
            settings,
            at,
        })
    }

    fn inbound(
        &mut self,
        t: &DeTable<'_>,
        span: std::ops::Range<usize>,
        topics: &[TopicConfig],
    ) -> Option<BridgeIn> {
        let mut remote = None;
        let mut topic = None;
        let mut schema = None;
        let mut format = InFormat::Json;
        let mut qos = 1;
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "from" => {
                    remote = self.string(v, "from").and_then(|s| {
                        self.remote_topic(v, &s)
                            .then(|| (s, self.at(v.span().start)))
                    })
                }
                "topic" => topic = self.declared(v, topics),
                "schema" => {
                    schema = match self.string(v, "schema") {
                        Some(s) if s.trim().is_empty() => self.err(
                            v.span(),
                            "`schema` is empty: declare the frame type, e.g. schema = \"struct Setpoint { speed: f32 }\"",
                        ),
                        Some(s) => Some((s, self.at(v.span().start))),
                        None => None,
                    }
                }
                "format" => {
                    format = match v.get_ref() {
                        DeValue::String(f) => match f.as_ref() {
                            "json" => InFormat::Json,
                            "envelope" => InFormat::Envelope,
                            "postcard" => InFormat::Postcard,
                            _ => {
                                self.err::<()>(
                                    v.span(),
                                    format!("format = \"{}\" is not an inbound format: use \"json\" (the value, default), \"envelope\" (an object with a `value`, as a bridge sends) or \"postcard\"", shown(f)),
                                );
                                format
                            }
                        },
                        _ => {
                            self.wrong_type::<()>(v, "format", "\"json\", \"envelope\" or \"postcard\"");
                            format
                        }
                    }
                }
                "qos" => qos = self.qos(v).unwrap_or(qos),
                _ => self.unknown(k, "[[bridge.in]]", IN_FIELDS),
            }
        }
        let has = |name: &str| t.iter().any(|(k, _)| k.get_ref() == name);
        let mut missing = Vec::new();
        for (field, example) in [
            ("from", "from = \"ground/board-1/setpoint\""),
            ("topic", "topic = \"setpoint\""),
            ("schema", "schema = \"struct Setpoint { speed: f32 }\""),
        ] {
            if !has(field) {
                missing.push(format!("`{field}` ({example})"));
            }
        }
        if !missing.is_empty() {
            self.err::<()>(
                span,
                format!("this [[bridge.in]] has no {}", missing.join(", no ")),
            );
            return None;
        }
        let ((remote, at_remote), topic, (schema, schema_at)) = (remote?, topic?, schema?);
        Some(BridgeIn {
            remote,
            topic,
            schema,
            schema_at,
            format,
            qos,
            at: at_remote,
        })
    }

    /// Two [[bridge.in]] from one broker topic or into one topic, or a topic
    /// both sent and taken in.
    fn check_inbound(&mut self, b: &BridgeConfig) {
        // A broker message goes to one route (the bridge subscribes once per
        // broker topic): a second route from the same topic would never
        // receive anything, so it is refused rather than left silent.
        let mut from: HashMap<&str, &BridgeIn> = HashMap::new();
        for i in &b.inbound {
            match from.get(i.remote.as_str()) {
                Some(first) => self.errs.push(
                    i.at.clone(),
                    format!(
                        "`{}` is already taken in at line {} (into topic `{}`): a broker topic feeds one local topic; remove this [[bridge.in]], or have the sender publish to another broker topic",
                        shown(&i.remote), first.at.line, first.topic
                    ),
                ),
                None => {
                    from.insert(&i.remote, i);
                }
            }
        }
        let mut seen: HashMap<&str, &BridgeIn> = HashMap::new();
        for i in &b.inbound {
            if let Some(first) = seen.get(i.topic.as_str()) {
                self.errs.push(
                    i.at.clone(),
                    format!(
                        "topic `{}` is already taken in from `{}` (line {}): a local topic has one publisher; use another topic",
                        i.topic, shown(&first.remote), first.at.line
                    ),
                );
                continue;
            }
            seen.insert(&i.topic, i);
            if let Some((_, at)) = b
                .topics
                .as_ref()
                .and_then(|l| l.iter().find(|(n, _)| *n == i.topic))
            {
                self.errs.push(
                    at.clone(),
                    format!(
                        "topic `{}` is taken in by the [[bridge.in]] at line {}: sending it out too would echo the broker's messages back; remove it from `topics`",
                        i.topic, i.at.line
                    ),
                );
            }
        }
    }

    fn mqtt(&mut self, t: &DeTable<'_>, at: crate::Location) -> MqttConfig {
        let mut m = MqttConfig {
            at,
            ..MqttConfig::default()
        };
        let mut cert_span = None;
        let mut key_span = None;
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "broker" => {
                    m.broker =
                        self.nonempty_str(v, "broker", "127.0.0.1:1883")
                            .map(|s| StrSetting {
                                value: s,
                                at: self.at(v.span().start),
                            })
                }
                "client_id" => {
                    m.client_id = self
                        .nonempty_str(v, "client_id", "shmbus-board-1")
                        .and_then(|s| {
                            if s.len() > 65_535 || s.contains('\0') {
                                self.err(
                                    v.span(),
                                    "`client_id` must be at most 65535 bytes with no NUL",
                                )
                            } else {
                                Some(s)
                            }
                        })
                }
                "keepalive_s" => m.keepalive_s = self.bounded(v, "keepalive_s", 1, 65_535),
                "credentials" => m.credentials = self.path(v, "credentials"),
                "ca" => m.ca = self.path(v, "ca"),
                "client_cert" => {
                    m.client_cert = self.path(v, "client_cert");
                    cert_span = Some(v.span());
                }
                "client_key" => {
                    m.client_key = self.path(v, "client_key");
                    key_span = Some(v.span());
                }
                _ => self.unknown(k, "[bridge.mqtt]", MQTT_FIELDS),
            }
        }
        match (cert_span, key_span) {
            (Some(s), None) => self.err::<()>(
                s,
                "`client_cert` needs `client_key` (the certificate's private key, PEM): add it",
            ),
            (None, Some(s)) => self.err::<()>(
                s,
                "`client_key` needs `client_cert` (the board's certificate, PEM): add it",
            ),
            _ => None,
        };
        m
    }

    fn nonempty_str(&mut self, v: &Value<'_>, field: &str, example: &str) -> Option<String> {
        match self.string(v, field) {
            Some(s) if s.trim().is_empty() => self.err(
                v.span(),
                format!(
                    "`{field}` is empty: remove it or give a value, e.g. {field} = \"{example}\""
                ),
            ),
            other => other,
        }
    }

    fn path(&mut self, v: &Value<'_>, field: &str) -> Option<PathSetting> {
        self.nonempty_str(v, field, "/etc/shmbus/FILE")
            .map(|s| PathSetting {
                path: PathBuf::from(s),
                at: self.at(v.span().start),
            })
    }

    fn qos(&mut self, v: &Value<'_>) -> Option<u8> {
        match self.int(v, "qos", "give 0, 1 or 2")? {
            (n @ 0..=2, _) => Some(n as u8),
            (n, _) => self.err(
                v.span(),
                format!("qos = {n} is not an MQTT QoS: use 0 (at most once), 1 (at least once) or 2 (exactly once)"),
            ),
        }
    }

    /// `queue_bytes`: from 1 KiB to [`MAX_QUEUE_BYTES`], which fits a
    /// 32-bit `usize`, so no board reads a different size than was checked.
    fn queue_bytes(&mut self, v: &Value<'_>) -> Option<usize> {
        let (n, _) = self.int(
            v,
            "queue_bytes",
            &format!("give from 1024 to {MAX_QUEUE_BYTES}"),
        )?;
        match usize::try_from(n) {
            Ok(n) if (1024..=MAX_QUEUE_BYTES).contains(&n) => Some(n),
            _ => self.err(
                v.span(),
                format!(
                    "queue_bytes = {n} must be from 1024 to {MAX_QUEUE_BYTES} (1 GiB, the most on every board, 32-bit ones too): the outbox is kept in memory; give a smaller size"
                ),
            ),
        }
    }

    fn bounded(&mut self, v: &Value<'_>, field: &str, min: u64, max: u64) -> Option<u64> {
        match self.int(v, field, &format!("give from {min} to {max}"))? {
            (n, _) if n >= 0 && (min..=max).contains(&(n as u64)) => Some(n as u64),
            (n, _) => self.err(
                v.span(),
                format!("{field} = {n} must be from {min} to {max}"),
            ),
        }
    }

    /// A topic name that must be one of the file's `[[topic]]`s.
    fn declared(&mut self, v: &Value<'_>, topics: &[TopicConfig]) -> Option<String> {
        let name = self.string(v, "topic")?;
        if topics.iter().any(|t| t.name == name) {
            return Some(name);
        }
        let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
        self.err(
            v.span(),
            format!(
                "no [[topic]] named `{}` in this file: declare it (its key, slots, mode), or use one of: {}",
                shown(&name),
                names.join(", ")
            ),
        )
    }

    fn topic_list(
        &mut self,
        v: &Value<'_>,
        topics: &[TopicConfig],
    ) -> Option<Vec<(String, crate::Location)>> {
        let DeValue::Array(items) = v.get_ref() else {
            return self.wrong_type(
                v,
                "topics",
                "a list of topic names, e.g. topics = [\"imu\", \"power\"]",
            );
        };
        let mut out: Vec<(String, crate::Location)> = Vec::new();
        for item in items.iter() {
            if let Some(name) = self.declared(item, topics) {
                if let Some((_, first)) = out.iter().find(|(n, _)| *n == name) {
                    let msg = format!(
                        "`{name}` is listed twice (first at column {}): remove one",
                        first.col
                    );
                    self.err::<()>(item.span(), msg);
                    continue;
                }
                out.push((name, self.at(item.span().start)));
            }
        }
        Some(out)
    }

    /// A board id: one topic level of letters, digits, `_`, `-`, `.`.
    fn level(&mut self, v: &Value<'_>, field: &str, s: &str) -> bool {
        match level_problem(s) {
            None => true,
            Some(p) => {
                self.err::<()>(v.span(), format!("{field} = \"{}\" {p}", shown(s)));
                false
            }
        }
    }

    fn prefix(&mut self, v: &Value<'_>, p: &str) -> bool {
        if p.len() > MAX_PREFIX {
            self.err::<()>(
                v.span(),
                format!(
                    "prefix = \"{}\" is longer than {MAX_PREFIX} bytes: shorten it (every broker topic of the board starts with it)",
                    shown(p)
                ),
            );
            return false;
        }
        for level in p.split('/') {
            if let Some(problem) = level_problem(level) {
                self.err::<()>(
                    v.span(),
                    format!(
                        "prefix = \"{}\": level \"{}\" {problem} (levels are separated by /)",
                        shown(p),
                        shown(level)
                    ),
                );
                return false;
            }
        }
        true
    }

    /// A broker topic to subscribe to: one topic, no wildcards.
    fn remote_topic(&mut self, v: &Value<'_>, s: &str) -> bool {
        let problem = if s.is_empty() {
            Some(
                "is empty: name the broker topic, e.g. from = \"ground/board-1/setpoint\""
                    .to_string(),
            )
        } else if s.contains(['+', '#']) {
            Some("has a wildcard (+ or #): a [[bridge.in]] takes one broker topic into one local topic; write the full topic name".to_string())
        } else if s.contains('\0') {
            Some("contains NUL".to_string())
        } else if let Some(c) = s.chars().find(|c| c.is_control()) {
            // MQTT 5 (1.5.4): a topic SHOULD NOT hold control characters; a
            // broker may drop the connection over one, and logs print it.
            Some(format!(
                "contains the control character '{}': write the broker topic in printable characters",
                c.escape_debug()
            ))
        } else if s.len() > 65_535 {
            Some("is longer than 65535 bytes".to_string())
        } else {
            // The broker delivers a shared subscription's messages under
            // the topic without the `$share/<group>/` (or `$queue/`) part:
            // none would match this route, and each would be dropped.
            shared_subscription(s).map(|topic| {
                format!(
                    "is a shared subscription: the broker delivers its messages under the topic without the $share/<group>/ (or $queue/) part, so none would reach this route; write from = \"{}\" (shared subscriptions are not supported)",
                    topic.filter(|t| !t.is_empty()).map_or("TOPIC".to_string(), shown)
                )
            })
        };
        match problem {
            None => true,
            Some(p) => {
                self.err::<()>(v.span(), format!("from = \"{}\" {p}", shown(s)));
                false
            }
        }
    }
}

/// `Some(topic)` if `from` is a shared subscription: MQTT 5's
/// `$share/<group>/<topic>` (`None` inside for `$share/<group>` with no
/// topic) or EMQX's `$queue/<topic>`.
fn shared_subscription(from: &str) -> Option<Option<&str>> {
    if let Some(rest) = from.strip_prefix("$share/") {
        Some(rest.split_once('/').map(|(_, t)| t))
    } else {
        from.strip_prefix("$queue/").map(Some)
    }
}
