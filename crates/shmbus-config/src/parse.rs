//! TOML text to [`Config`], collecting every problem with its position.

use std::collections::HashMap;

use shmbus_core::LockPolicy;
use shmbus_core::layout::MAX_SLOTS;
use shmbus_core::topic::{DEFAULT_BUS, derive_key, shown, validate_bus, validate_topic_name};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{ConfigErrors, LineIndex, Location};
use crate::{Config, TopicConfig};

mod bridge;

type Value<'i> = Spanned<DeValue<'i>>;

const TOP_FIELDS: &[&str] = &["bus", "defaults", "topic", "bridge"];
const DEFAULT_FIELDS: &[&str] = &[
    "slots",
    "mode",
    "group",
    "lock",
    "notify",
    "publisher_user",
    "max_age_ms",
];
const TOPIC_FIELDS: &[&str] = &[
    "name",
    "key",
    "slots",
    "mode",
    "group",
    "lock",
    "notify",
    "publisher_user",
    "rate_hz",
    "max_age_ms",
    "publisher",
    "description",
];

/// What `key` takes, for a refusal.
const KEY_TAKES: &str =
    "give a 32-bit System V key, from -2147483648 to 4294967295 (0xffffffff), e.g. 0x53000001";
/// What `group` and `publisher_user` take, for a refusal.
const ID_TAKES: &str = "give a name, or a numeric id from 0 to 4294967294";
/// What a topic's `rate_hz` takes, for a refusal.
const RATE_TAKES: &str = "give more than 0 and at most 1000000 (frames per second)";

/// The slowest `rate_hz` of a topic: the publishers' own floor
/// (`shmbus_toolbox::parse::MIN_RATE`, which `--rate` refuses below and
/// the sensors clamp a config's rate to; a test keeps the two equal).
pub(crate) const MIN_TOPIC_RATE_HZ: f64 = 0.001;

/// Topic settings that `[defaults]` can give.
#[derive(Clone)]
struct Defaults {
    slots: u32,
    mode: u32,
    group: Option<(String, Location)>,
    lock: LockPolicy,
    notify: bool,
    publisher_user: Option<(String, Location)>,
    max_age_ms: Option<(u64, Location)>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            slots: 16,
            mode: 0o644,
            group: None,
            lock: LockPolicy::Try,
            notify: true,
            publisher_user: None,
            max_age_ms: None,
        }
    }
}

struct Parser<'a> {
    path: &'a str,
    lines: LineIndex<'a>,
    errs: ConfigErrors,
}

/// Parse and validate `text`; `path` is used in messages.
pub(crate) fn parse(text: &str, path: &str) -> Result<Config, ConfigErrors> {
    let mut p = Parser {
        path,
        lines: LineIndex::new(path, text),
        errs: ConfigErrors::default(),
    };
    let (doc, syntax) = parse_toml(text);
    for e in syntax {
        let at = match e.span() {
            Some(s) => p.at(s.start),
            None => Location::file(path),
        };
        let msg = e.message().trim().replace('\n', " ");
        let more = if text.len() > crate::RECOVER_BYTES {
            // parse_toml stopped collecting at the first error.
            format!(
                " (the file is over {} KiB: only its first syntax error is listed; \
                 fix it and check again)",
                crate::RECOVER_BYTES / 1024
            )
        } else {
            String::new()
        };
        p.errs.push(at, format!("TOML syntax: {msg}{more}"));
    }
    if !p.errs.is_empty() {
        // A broken document gives half-parsed tables: checking them would
        // only add noise after the syntax errors.
        return p.errs.into_result(Config::empty(path));
    }
    let config = p.document(doc.get_ref());
    p.errs.into_result(config)
}

/// The document and its syntax errors: all of them up to
/// [`RECOVER_BYTES`](crate::RECOVER_BYTES), the first one past it.
fn parse_toml(text: &str) -> (Spanned<DeTable<'_>>, Vec<toml::de::Error>) {
    if text.len() <= crate::RECOVER_BYTES {
        return DeTable::parse_recoverable(text);
    }
    match DeTable::parse(text) {
        Ok(doc) => (doc, Vec::new()),
        Err(e) => (Spanned::new(0..0, DeTable::new()), vec![e]),
    }
}

impl<'a> Parser<'a> {
    fn at(&self, offset: usize) -> Location {
        self.lines.at(offset)
    }

    fn err<T>(&mut self, span: std::ops::Range<usize>, msg: impl Into<String>) -> Option<T> {
        let at = self.at(span.start);
        self.errs.push(at, msg);
        None
    }

    fn unknown(&mut self, key: &Spanned<std::borrow::Cow<'_, str>>, table: &str, known: &[&str]) {
        let k = key.get_ref();
        let hint = match (elsewhere(k, table), suggestion(k, known)) {
            (Some(there), _) => format!("{there}; "),
            (None, Some(best)) => format!("did you mean `{best}`? "),
            (None, None) => String::new(),
        };
        let msg = format!(
            "unknown field `{}` in {table}; {hint}known fields: {}",
            shown(k),
            known.join(", ")
        );
        self.err::<()>(key.span(), msg);
    }

    fn document(&mut self, doc: &DeTable<'_>) -> Config {
        let mut bus = DEFAULT_BUS.to_string();
        let mut defaults = Defaults::default();
        let mut topics_value = None;
        let mut bridge_value = None;
        for (k, v) in doc.iter() {
            match k.get_ref().as_ref() {
                "bus" => {
                    if let Some(b) = self.string(v, "bus") {
                        match validate_bus(&b) {
                            Ok(()) => bus = b,
                            Err(e) => {
                                self.err::<()>(v.span(), format!("bus: {e}"));
                            }
                        }
                    }
                }
                "defaults" => match v.get_ref() {
                    DeValue::Table(t) => defaults = self.defaults(t),
                    other => {
                        self.err::<()>(
                            v.span(),
                            format!(
                                "`defaults` must be a table ([defaults]), found {}",
                                other.type_str()
                            ),
                        );
                    }
                },
                "topic" => topics_value = Some(v),
                "bridge" => bridge_value = Some(v),
                _ => self.unknown(k, "the top level", TOP_FIELDS),
            }
        }
        let mut topics = Vec::new();
        match topics_value.map(|v| (v, v.get_ref())) {
            Some((_, DeValue::Array(items))) => {
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::Table(t) => {
                            if let Some(tc) = self.topic(t, item.span(), &bus, &defaults) {
                                topics.push(tc);
                            }
                        }
                        other => {
                            self.err::<()>(
                                item.span(),
                                format!(
                                    "each topic must be a table ([[topic]]), found {}",
                                    other.type_str()
                                ),
                            );
                        }
                    }
                }
            }
            Some((v, DeValue::Table(_))) => {
                self.err::<()>(
                    v.span(),
                    "`topic` is a single table; write [[topic]] (double brackets) before each topic",
                );
            }
            Some((v, other)) => {
                self.err::<()>(
                    v.span(),
                    format!(
                        "`topic` must be an array of tables ([[topic]]), found {}",
                        other.type_str()
                    ),
                );
            }
            None => {
                self.errs.push(
                    self.at(0),
                    "no topics: add at least one [[topic]] table with a `name`",
                );
            }
        }
        let bridge = bridge_value.and_then(|v| self.bridge(v, &topics));
        let config = Config {
            bus,
            topics,
            bridge,
            path: self.path.to_string(),
        };
        check_unique(&config, &mut self.errs);
        config
    }

    fn defaults(&mut self, t: &DeTable<'_>) -> Defaults {
        let mut d = Defaults::default();
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "slots" => d.slots = self.slots(v).unwrap_or(d.slots),
                "mode" => d.mode = self.mode(v).unwrap_or(d.mode),
                "group" => {
                    d.group = self
                        .principal(v, "group")
                        .map(|g| (g, self.at(v.span().start)))
                }
                "lock" => d.lock = self.lock(v).unwrap_or(d.lock),
                "notify" => d.notify = self.boolean(v, "notify").unwrap_or(d.notify),
                "publisher_user" => {
                    d.publisher_user = self
                        .principal(v, "publisher_user")
                        .map(|u| (u, self.at(v.span().start)))
                }
                "max_age_ms" => {
                    d.max_age_ms = self
                        .positive_int(v, "max_age_ms")
                        .map(|ms| (ms, self.at(v.span().start)))
                }
                _ => self.unknown(k, "[defaults]", DEFAULT_FIELDS),
            }
        }
        d
    }

    fn topic(
        &mut self,
        t: &DeTable<'_>,
        span: std::ops::Range<usize>,
        bus: &str,
        d: &Defaults,
    ) -> Option<TopicConfig> {
        let mut name = None;
        let mut name_at = None;
        let mut key = None;
        let mut slots = d.slots;
        let mut mode = d.mode;
        let mut group = d.group.clone();
        let mut lock = d.lock;
        let mut notify = d.notify;
        let mut user = d.publisher_user.clone();
        let mut rate_hz = None;
        let mut max_age_ms = d.max_age_ms.clone();
        let mut publisher = None;
        let mut description = None;
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "name" => {
                    name_at = Some(self.at(v.span().start));
                    name = self
                        .string(v, "name")
                        .and_then(|n| match validate_topic_name(&n) {
                            Ok(()) => Some(n),
                            Err(e) => self.err(v.span(), e),
                        });
                }
                "key" => key = self.key(v),
                "slots" => slots = self.slots(v).unwrap_or(slots),
                "mode" => mode = self.mode(v).unwrap_or(mode),
                "group" => {
                    group = self
                        .principal(v, "group")
                        .map(|g| (g, self.at(v.span().start)))
                }
                "lock" => lock = self.lock(v).unwrap_or(lock),
                "notify" => notify = self.boolean(v, "notify").unwrap_or(notify),
                "publisher_user" => {
                    user = self
                        .principal(v, "publisher_user")
                        .map(|u| (u, self.at(v.span().start)))
                }
                "rate_hz" => {
                    rate_hz = self.rate(v).and_then(|r| {
                        if r >= MIN_TOPIC_RATE_HZ {
                            return Some(r);
                        }
                        // 1e-300 as 1e-300, not as its 300 zeros.
                        let shown_r = Some(r.to_string())
                            .filter(|t| t.len() <= 12)
                            .unwrap_or_else(|| format!("{r:e}"));
                        self.err(
                            v.span(),
                            format!(
                                "rate_hz = {shown_r} is below {MIN_TOPIC_RATE_HZ} (one frame per 1000 s), the slowest a publisher runs (it would publish at {MIN_TOPIC_RATE_HZ}, while staleness went by {r}): use rate_hz = {MIN_TOPIC_RATE_HZ} or more, and `max_age_ms` for staleness"
                            ),
                        )
                    })
                }
                "max_age_ms" => {
                    max_age_ms = self
                        .positive_int(v, "max_age_ms")
                        .map(|ms| (ms, self.at(v.span().start)))
                }
                "publisher" => publisher = self.nonempty(v, "publisher"),
                "description" => description = self.string(v, "description"),
                _ => self.unknown(k, "[[topic]]", TOPIC_FIELDS),
            }
        }
        let Some(name) = name else {
            if name_at.is_none() {
                self.err::<()>(span, "this [[topic]] has no `name`: add name = \"...\"");
            }
            return None;
        };
        // A topic with a bad field is still returned, so that duplicate
        // names and keys are checked too; its errors already fail the load.
        let (key, key_derived) = match key {
            Some(k) => (k, false),
            None => (derive_key(bus, &name), true),
        };
        Some(TopicConfig {
            name,
            key,
            key_derived,
            slots,
            mode,
            group: group.as_ref().map(|g| g.0.clone()),
            lock,
            notify,
            publisher_user: user.as_ref().map(|u| u.0.clone()),
            rate_hz,
            max_age_ms: max_age_ms.as_ref().map(|m| m.0),
            publisher,
            description,
            at: name_at.unwrap_or_else(|| self.at(span.start)),
            group_at: group.map(|g| g.1),
            user_at: user.map(|u| u.1),
            max_age_at: max_age_ms.map(|m| m.1),
        })
    }

    fn wrong_type<T>(&mut self, v: &Value<'_>, field: &str, want: &str) -> Option<T> {
        let found = v.get_ref().type_str();
        self.err(v.span(), format!("`{field}` must be {want}, found {found}"))
    }

    fn string(&mut self, v: &Value<'_>, field: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => self.wrong_type(v, field, "a string"),
        }
    }

    fn nonempty(&mut self, v: &Value<'_>, field: &str) -> Option<String> {
        match self.string(v, field) {
            Some(s) if s.trim().is_empty() => self.err(
                v.span(),
                format!("`{field}` is empty: remove it or name a program"),
            ),
            other => other,
        }
    }

    fn boolean(&mut self, v: &Value<'_>, field: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => self.wrong_type(v, field, "true or false"),
        }
    }

    /// An integer; `takes` says what the field takes ("give ..."), for an
    /// integer beyond 64 bits, which no field takes (it was "out of range"
    /// without the range).
    fn int(&mut self, v: &Value<'_>, field: &str, takes: &str) -> Option<(i64, u32)> {
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some((n, i.radix())),
                Err(_) => self.err(
                    v.span(),
                    format!(
                        "`{field}` = {} is out of range (beyond 64 bits): {takes}",
                        shown(&i.to_string())
                    ),
                ),
            },
            _ => self.wrong_type(v, field, "an integer"),
        }
    }

    fn positive_int(&mut self, v: &Value<'_>, field: &str) -> Option<u64> {
        let takes = format!("give a whole number from 1 to {}", i64::MAX);
        match self.int(v, field, &takes)? {
            (n, _) if n > 0 => Some(n as u64),
            (n, _) => self.err(v.span(), format!("`{field}` = {n} must be greater than 0")),
        }
    }

    fn key(&mut self, v: &Value<'_>) -> Option<i32> {
        if let DeValue::String(s) = v.get_ref() {
            return self.err(
                v.span(),
                format!("`key` must be an integer: write key = {} without quotes (TOML reads 0x... as hex)", shown(s)),
            );
        }
        let (n, _) = self.int(v, "key", KEY_TAKES)?;
        if n == 0 {
            return self.err(
                v.span(),
                "key = 0 is IPC_PRIVATE and cannot name a topic: remove `key` to derive one from the bus and topic names, or pick another",
            );
        }
        if !(i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(&n) {
            return self.err(
                v.span(),
                format!(
                    "key = {n} does not fit in 32 bits: System V keys are 32-bit (e.g. 0x53000001)"
                ),
            );
        }
        Some(n as u32 as i32)
    }

    fn slots(&mut self, v: &Value<'_>) -> Option<u32> {
        let (n, _) = self.int(
            v,
            "slots",
            &format!("give a power of two from 1 to {MAX_SLOTS}"),
        )?;
        if n < 1 || n > i64::from(MAX_SLOTS) || !(n as u64).is_power_of_two() {
            let fix = if n < 1 {
                1
            } else {
                (n as u64)
                    .min(u64::from(MAX_SLOTS))
                    .next_power_of_two()
                    .min(u64::from(MAX_SLOTS))
            };
            return self.err(
                v.span(),
                format!(
                    "slots = {n} must be a power of two from 1 to {MAX_SLOTS}: use slots = {fix}"
                ),
            );
        }
        Some(n as u32)
    }

    fn mode(&mut self, v: &Value<'_>) -> Option<u32> {
        let mode = match v.get_ref() {
            DeValue::String(s) => {
                let digits = s.strip_prefix("0o").unwrap_or(s);
                match u32::from_str_radix(digits, 8) {
                    Ok(m) if !digits.is_empty() => m,
                    _ => {
                        return self.err(
                            v.span(),
                            format!("mode = \"{}\" is not an octal number: write mode = 0o644 or mode = \"0644\"", shown(s)),
                        );
                    }
                }
            }
            DeValue::Integer(_) => {
                let (n, radix) = self.int(v, "mode", "give a file mode in octal, e.g. 0o644")?;
                // Hex (0x1a4) and binary name their bits exactly; a decimal
                // integer is almost always octal digits written without 0o.
                if radix == 10 && n >= 0 {
                    let hint = if n.to_string().bytes().all(|b| b <= b'7') {
                        format!("write mode = 0o{n} or mode = \"0{n}\"")
                    } else {
                        "8 and 9 are not octal digits: write the mode in octal, e.g. mode = 0o644"
                            .into()
                    };
                    return self.err(
                        v.span(),
                        format!("mode = {n} is not octal (TOML integers are decimal unless written 0o...): {hint}"),
                    );
                }
                match u32::try_from(n) {
                    Ok(m) => m,
                    Err(_) => {
                        return self.err(
                            v.span(),
                            format!("mode = {n} is not a file mode: use e.g. 0o644"),
                        );
                    }
                }
            }
            _ => {
                return self.wrong_type(v, "mode", "an octal integer (0o644) or string (\"0644\")");
            }
        };
        if mode & !0o777 != 0 {
            return self.err(
                v.span(),
                format!("mode = 0o{mode:o} has bits outside 0o777: use e.g. 0o644"),
            );
        }
        if mode & 0o600 != 0o600 {
            return self.err(
                v.span(),
                format!("mode = 0o{mode:03o} must let the owner (the publisher) read and write: use 0o{:03o}", mode | 0o600),
            );
        }
        if mode & 0o022 != 0 {
            return self.err(
                v.span(),
                format!(
                    "mode = 0o{mode:03o} lets group or others write the segment (only the publisher writes; subscribers attach read-only): use 0o{:03o}",
                    mode & !0o022
                ),
            );
        }
        Some(mode)
    }

    fn lock(&mut self, v: &Value<'_>) -> Option<LockPolicy> {
        match v.get_ref() {
            DeValue::String(s) => match s.as_ref() {
                "required" => Some(LockPolicy::Required),
                "try" => Some(LockPolicy::Try),
                "off" => Some(LockPolicy::Off),
                _ => self.err(
                    v.span(),
                    format!("lock = \"{}\" is not a lock policy: use \"required\" (fail if SHM_LOCK is refused), \"try\" (default) or \"off\"", shown(s)),
                ),
            },
            _ => self.wrong_type(v, "lock", "\"required\", \"try\" or \"off\""),
        }
    }

    /// A user or group: a name, or a numeric id.
    fn principal(&mut self, v: &Value<'_>, field: &str) -> Option<String> {
        let id = match v.get_ref() {
            DeValue::String(s) if !s.is_empty() => return self.numeric_id(v, field, s),
            DeValue::String(_) => {
                return self.err(
                    v.span(),
                    format!("`{field}` is empty: remove it or give a name"),
                );
            }
            DeValue::Integer(_) => self.int(v, field, ID_TAKES)?.0,
            _ => return self.wrong_type(v, field, "a name or a numeric id"),
        };
        self.numeric_id(v, field, &id.to_string())
    }

    /// A group or user as written, refused if it is a number no id can be
    /// (`crate::id_problem`).
    fn numeric_id(&mut self, v: &Value<'_>, field: &str, s: &str) -> Option<String> {
        match crate::id_problem(s, field) {
            Some(p) => self.err(v.span(), p),
            None => Some(s.to_string()),
        }
    }

    fn rate(&mut self, v: &Value<'_>) -> Option<f64> {
        // The value as written (`1e300`, not its 301 digits), quoted by the
        // one rule for outside text.
        let (r, written) = match v.get_ref() {
            DeValue::Float(f) => (
                f.as_str().replace('_', "").parse::<f64>().ok(),
                f.as_str().to_string(),
            ),
            DeValue::Integer(_) => {
                let n = self.int(v, "rate_hz", RATE_TAKES).map(|(n, _)| n);
                (
                    n.map(|n| n as f64),
                    n.map_or_else(String::new, |n| n.to_string()),
                )
            }
            _ => return self.wrong_type(v, "rate_hz", "a number (frames per second)"),
        };
        let r = r?;
        if !(r.is_finite() && r > 0.0 && r <= 1_000_000.0) {
            return self.err(
                v.span(),
                format!(
                    "rate_hz = {} must be more than 0 and at most 1000000 (frames per second)",
                    shown(&written)
                ),
            );
        }
        Some(r)
    }
}

/// Duplicate names and keys (explicit, derived, or one of each).
pub(crate) fn check_unique(config: &Config, errs: &mut ConfigErrors) {
    let mut names: HashMap<&str, &TopicConfig> = HashMap::new();
    let mut keys: HashMap<i32, &TopicConfig> = HashMap::new();
    for t in &config.topics {
        if let Some(first) = names.get(t.name.as_str()) {
            errs.push(
                t.at.clone(),
                format!(
                    "duplicate topic `{}` (first declared at line {}): rename one of them",
                    t.name, first.at.line
                ),
            );
            continue;
        }
        names.insert(&t.name, t);
        if let Some(first) = keys.get(&t.key) {
            let how = |x: &TopicConfig| if x.key_derived { "derived" } else { "explicit" };
            let fix = if t.key_derived && first.key_derived {
                "set an explicit `key = 0x...` on one of them, or rename one"
            } else {
                "give each topic its own key"
            };
            errs.push(
                t.at.clone(),
                format!(
                    "key 0x{:08x} ({}) of topic `{}` collides with the {} key of topic `{}` (line {}): {fix}",
                    t.key as u32,
                    how(t),
                    t.name,
                    how(first),
                    first.name,
                    first.at.line
                ),
            );
            continue;
        }
        keys.insert(t.key, t);
    }
}

/// Where a field that is not one of `table`'s belongs, when it is a field
/// of another table of the file: TOML puts every line after a table header
/// into that table, so `bus` written after a `[[topic]]` is that topic's,
/// and `slots` written before the first header is top-level. Each was
/// "unknown field" with a "known fields" list that did not name it.
fn elsewhere(field: &str, table: &str) -> Option<&'static str> {
    match table {
        "[[topic]]" | "[defaults]" if TOP_FIELDS.contains(&field) => Some(
            "it is a top-level field: move it above the first table header (in TOML every line after `[[topic]]` or `[defaults]` belongs to that table)",
        ),
        "the top level" if DEFAULT_FIELDS.contains(&field) => Some(
            "it is a field of a [[topic]] or of [defaults]: a line before the first table header is top-level; move it under one",
        ),
        "the top level" if TOPIC_FIELDS.contains(&field) => Some(
            "it is a field of a [[topic]]: a line before the first table header is top-level; move it under the topic's [[topic]]",
        ),
        "[defaults]" if TOPIC_FIELDS.contains(&field) => {
            Some("it is set per topic, not in [defaults]: write it in each [[topic]]")
        }
        _ => None,
    }
}

/// The known field an unknown one most likely means, if any: the same
/// name in another case or with `-` for `_` (`Slots`, `rate-hz`); a field
/// one typo away (`queue_byte`); a field it begins or is part of (`rate`, `max_age`, `hz`, `desc`); else one
/// within a typo or two of it (`slot`, `mdoe`), where two typos count only
/// in a name of five characters or more, so that `rate` is not taken for
/// `name` (two letters of four differ).
pub(crate) fn suggestion<'k>(field: &str, known: &[&'k str]) -> Option<&'k str> {
    let k = field.to_ascii_lowercase().replace('-', "_");
    if let Some(f) = known.iter().find(|f| **f == k) {
        return Some(f);
    }
    let len = k.chars().count();
    // One typo from a field is that field, before any field that merely
    // begins with it: `queue_byte` is `queue_bytes`, not `queue`.
    let one_typo = known
        .iter()
        .filter(|f| len.abs_diff(f.chars().count()) <= 1)
        .find(|f| edit_distance(&k, f) == 1);
    if let Some(f) = one_typo {
        return Some(f);
    }
    if len >= 2 {
        // The shortest field that holds it: `pub` is `publisher` rather
        // than `publisher_user`.
        let part = known
            .iter()
            .filter(|f| f.contains(k.as_str()) || (k.starts_with(**f) && f.len() >= 2))
            .min_by_key(|f| f.len());
        if let Some(f) = part {
            return Some(f);
        }
    }
    let most = if len >= 5 { 2 } else { 1 };
    known
        .iter()
        // Lengths further apart than `most` are further apart than that
        // (and a 1 MiB unknown field is not compared at all).
        .filter(|f| len.abs_diff(f.chars().count()) <= most)
        .map(|f| (edit_distance(&k, f), *f))
        .filter(|(d, _)| *d <= most)
        .min_by_key(|(d, _)| *d)
        .map(|(_, f)| f)
}

/// Edit distance with adjacent transpositions (`mdoe` is one from
/// `mode`), for "did you mean" hints. Three rows of `b`'s length: a 1 MiB
/// unknown field costs no more memory than a short one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows i-2, i-1 and i of the table of distances of a[..i] and b[..j].
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            cur[j] = best;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}
