//! `shmbus pub TOPIC JSON`: encode JSON with the topic's schema and publish.
//!
//! The topic must exist: its schema, slot count, frame capacity, mode and
//! notify flag come from the segment, so this publisher reopens it exactly
//! as its own publisher would. The single-publisher rule applies: while a
//! publisher holds the topic's lock, `pub` refuses and names its pid.

use std::io::{BufRead, Read};
use std::time::Duration;

use serde_json::Value;
use shmbus_codec::{Codec, EncodeProblem, MAX_JSON_VALUES, OwnedNamedType};
use shmbus_core::OpenError;
use shmbus_core::plural;
use shmbus_core::sys::monotonic_ns;
use shmbus_pub::RawPublisher;

use crate::args::PubArgs;
use crate::discover;
use crate::out::{self, CmdResult, Fail, key_hex};

/// Run `shmbus pub`.
pub fn run(a: &PubArgs, bus: Option<&str>) -> CmdResult {
    // From stdin every line is published once, when it arrives: a rate or a
    // count there would be silently ignored, so they are refused up front.
    if a.json == "-" {
        let given: Vec<&str> = [(a.count.is_some(), "--count"), (a.rate.is_some(), "--rate")]
            .into_iter()
            .filter_map(|(set, name)| set.then_some(name))
            .collect();
        if !given.is_empty() {
            return Err(Fail::error(format!(
                "{} cannot be used with - (values from stdin): each line of stdin is published once, as it arrives, so the feed sets the pace and the end; pace or cut the feed itself (e.g. `head -n 100 | shmbus pub TOPIC -`), or give the value as an argument to repeat it",
                given.join(" and ")
            )));
        }
    }
    // A rate with no count paced one frame: `pub imu V --rate 50` meant a
    // stream at 50 Hz and published once, exit 0.
    if a.json != "-" && a.rate.is_some() && a.count.is_none() {
        return Err(Fail::error(
            "--rate paces repeated frames, but without --count the value is published once: add --count N (--count 0: until interrupted)",
        ));
    }
    let count = a.count.unwrap_or(1);
    let rate = a.rate.unwrap_or(10.0);
    let (entry, seg) = discover::attach("pub", &a.topic, bus)?;
    if entry.removed() || entry.key == 0 {
        // Found by shmid after `shmbus rm`/`ipcrm`: its key is gone, so no
        // publisher can open it again.
        return Err(Fail::not_found(format!(
            "topic '{}' (shmid {}) was removed; it only lives on for the {} process(es) still attached: start its publisher again to create it anew, then publish to its name or key",
            seg.info().name,
            entry.shmid,
            entry.nattch
        )));
    }
    let info = seg.info().clone();
    let topic = seg
        .reopen_topic()
        .map_err(|e| Fail::error(format!("cannot stat the segment: {e}")))?;
    drop(seg);
    let codec = Codec::from_schema_bytes(&info.schema).map_err(|e| {
        Fail::error(format!(
            "the schema in topic '{}' cannot be used ({e}); check `shmbus info {}`",
            info.name,
            key_hex(entry.key)
        ))
    })?;
    let example = codec.example();
    let bounds = Bounds::of(codec.schema(), info.geometry.frame_capacity);
    let encode = |text: &str| -> Result<Vec<u8>, Fail> {
        // Refuse what cannot fit before building it: a `Value` takes about
        // 80 bytes a value, a frame one byte or more.
        match over_bounds(text.as_bytes(), &bounds) {
            None => {}
            Some(Exceeded::Scalars) => {
                return Err(Fail::error(format!(
                    "the value is refused: it holds more than {} numbers, strings and booleans, and each takes at least one byte of a frame of '{}', which holds at most {}: shorten lists",
                    bounds.scalars,
                    info.name,
                    plural::count(info.geometry.frame_capacity, "byte")
                )));
            }
            Some(Exceeded::Values) => {
                return Err(Fail::error(format!(
                    "the value is refused: it holds more than {} JSON values, more than any value of '{}' (frames of at most {}) has: shorten lists; a value of this topic looks like: {example}",
                    bounds.values,
                    info.name,
                    plural::count(info.geometry.frame_capacity, "byte")
                )));
            }
        }
        let v: Value = shmbus_codec::parse_json(text.as_bytes()).map_err(|e| {
            let what = if shmbus_codec::json_refused(&e) {
                "refused"
            } else {
                "not valid JSON"
            };
            Fail::error(format!(
                "the value is {what} ({e}); a value of this topic looks like: {example}"
            ))
        })?;
        codec
            .encode_within(&v, info.geometry.frame_capacity)
            .map_err(|e| match e.problem {
                EncodeProblem::FrameTooLarge { len, capacity } => Fail::error(format!(
                    "the encoded frame is {len} bytes, the topic's frames hold at most {capacity}: shorten strings or lists"
                )),
                _ => Fail::error(format!(
                    "the value does not fit the schema of '{}': {e}; a value looks like: {example}",
                    info.name
                )),
            })
    };
    // From stdin: check nothing before opening (lines come later). From the
    // argument: refuse a bad value before touching the topic.
    let first = if a.json == "-" {
        None
    } else {
        Some(encode(without_bom(&a.json))?)
    };

    // Existing-only: a topic removed since the attach above is not created
    // again by a tool that only writes to topics that exist.
    let mut publisher = RawPublisher::open_existing(&topic, &info.schema, info.geometry.frame_capacity).map_err(|e| match e {
        OpenError::NotFound { .. } | OpenError::Removed { .. } => Fail::not_found(format!(
            "topic '{}' ({}) was removed while `shmbus pub` opened it; start its publisher again to create it anew",
            info.name,
            key_hex(entry.key)
        )),
        OpenError::PublisherActive { pid, .. } => Fail::error(format!(
            "topic '{}' ({}) already has a live publisher, pid {pid}; a topic has one publisher at a time: stop it first (kill {pid}), then run `shmbus pub` again",
            info.name,
            key_hex(entry.key)
        )),
        other => discover::open_fail(&other),
    })?;

    let period = shmbus_toolbox::parse::period(rate);
    // A repeated value (`--count 0`: until interrupted) ends on Ctrl-C,
    // `kill` or a hangup alike: the frame being published is finished, the
    // pause before the next one is cut short, and the summary says what was
    // published (exit 0, as `hz` and `record` end). Their default action
    // ended it with no summary, SIGTERM as 143. `pub -` keeps the default
    // action: a read of stdin is restarted after a caught signal, so a
    // handler could not end it while it waits for a line.
    let repeated = first.is_some() && count != 1;
    if repeated {
        shmbus_toolbox::stop::install().map_err(Fail::error)?;
    }
    let mut next = monotonic_ns();
    let mut sent: u64 = 0;
    let mut checked = next;
    // `every`: look for a removal before this publish, not only once in
    // REMOVAL_CHECK_NS (a line of stdin may come at any time).
    let mut publish = |bytes: &[u8], pace: bool, every: bool| -> Result<(), Fail> {
        if pace && sent > 0 {
            next += period.as_nanos() as u64;
            let now = monotonic_ns();
            if next > now {
                let due = std::time::Instant::now() + Duration::from_nanos(next - now);
                if !shmbus_toolbox::stop::sleep_until(due) {
                    return Ok(());
                }
            } else {
                next = now;
            }
        }
        // A topic removed while this runs (`shmbus rm --force`) is found
        // by no one: its frames would go nowhere, for ever with --count 0.
        // Stop, as `echo` does when its topic goes.
        let now = monotonic_ns();
        if every || now.saturating_sub(checked) >= REMOVAL_CHECK_NS {
            checked = now;
            if publisher.is_removed() {
                return Err(Fail::not_found(format!(
                    "topic '{}' ({}) was removed (`shmbus rm`) while this published: no one can find it now, so the rest is not published; start its publisher again to create it anew",
                    info.name,
                    key_hex(entry.key)
                )));
            }
            // Its lock removed alone (`ipcrm -s`): nothing keeps a second
            // publisher out, and readers call this one gone. Stop.
            if publisher.lock_removed() {
                return Err(Fail::error(format!(
                    "the publisher lock of topic '{}' ({}) was removed (`ipcrm -s`) while this published: another publisher could start on the topic, so the rest is not published; run the command again to take a new lock",
                    info.name,
                    key_hex(entry.key)
                )));
            }
        }
        // Ctrl-C, `kill` or a hangup ends this command by their default
        // action, but never in the middle of a publish (a slot left
        // mid-write reads as a publisher that died mid-publish).
        shmbus_toolbox::stop::deferred(|| publisher.publish_bytes(bytes))
            .map_err(|e| Fail::error(format!("publish failed: {e}")))?;
        sent += 1;
        Ok(())
    };
    match first {
        Some(bytes) => {
            let mut i = 0;
            while (count == 0 || i < count) && !shmbus_toolbox::stop::requested() {
                publish(&bytes, true, false).map_err(|f| Fail {
                    msg: format!(
                        "{}; {i} frame{} published before",
                        f.msg,
                        if i == 1 { " was" } else { "s were" }
                    ),
                    ..f
                })?;
                i += 1;
            }
        }
        None => {
            // One JSON value per line, each read with a bound: a stream
            // without newlines must not grow memory until the OOM killer.
            let limit = bounds.line;
            let mut stdin = std::io::stdin().lock();
            let mut buf = Vec::new();
            let mut number: u64 = 0;
            let mut published: u64 = 0;
            // A bad line ends the feed: say which line, and that the frames
            // of the lines before it are on the topic.
            let at_line = |f: Fail, number: u64, published: u64| Fail {
                msg: format!(
                    "line {number} of stdin: {}; the {published} frame{} before it {} published",
                    f.msg,
                    if published == 1 { "" } else { "s" },
                    if published == 1 { "was" } else { "were" }
                ),
                ..f
            };
            loop {
                buf.clear();
                let got = (&mut stdin)
                    .take(limit as u64 + 1)
                    .read_until(b'\n', &mut buf)
                    .map_err(|e| {
                        at_line(
                            Fail::error(format!("cannot read stdin: {e}")),
                            number + 1,
                            published,
                        )
                    })?;
                if got == 0 {
                    break;
                }
                number += 1;
                if buf.len() > limit && buf.last() != Some(&b'\n') {
                    return Err(at_line(
                        Fail::error(format!(
                            "longer than {limit} bytes, more than any value of '{}' needs; give one JSON value per line",
                            info.name
                        )),
                        number,
                        published,
                    ));
                }
                let line = std::str::from_utf8(&buf).map_err(|e| {
                    at_line(
                        Fail::error(format!(
                            "not UTF-8 text (byte {} of the line); give one JSON value per line",
                            e.valid_up_to()
                        )),
                        number,
                        published,
                    )
                })?;
                // A file saved by a Windows editor starts with a byte order
                // mark (RFC 8259 lets a parser ignore it), and so does each
                // file of `cat a.json b.json |`; no JSON value starts with
                // U+FEFF. CRLF line ends are JSON white space already.
                let line = without_bom(line);
                if line.trim().is_empty() {
                    continue;
                }
                let bytes = encode(line).map_err(|f| at_line(f, number, published))?;
                publish(&bytes, false, true).map_err(|f| at_line(f, number, published))?;
                published += 1;
            }
        }
    }
    out::line(&format!(
        "published {sent} frame{} on '{}' ({}), newest generation {}",
        if sent == 1 { "" } else { "s" },
        info.name,
        key_hex(entry.key),
        publisher.next_generation().saturating_sub(1)
    ))?;
    Ok(out::OK)
}

/// How often `pub --count N` looks whether its topic, or its lock, was
/// removed.
const REMOVAL_CHECK_NS: u64 = 100_000_000;

/// `text` without a UTF-8 byte order mark at its start.
fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// How much JSON a value of one topic can take, from its frame capacity
/// and its schema: text beyond these bounds cannot be a value that fits a
/// frame, so it is refused as soon as it is read, before it is parsed.
///
/// Every number, string and boolean takes at least one byte of frame
/// (integers and floats at least one, a string its length, a variant its
/// index; only `()` and unit structs take none, and their JSON is `null`).
/// When no type in the schema can take zero bytes (no `()`, unit struct,
/// empty tuple or struct, `[T; 0]`), every leaf of an encodable value
/// (scalar, `null`, empty array or object) takes at least one byte, so a
/// value has at most `capacity` leaves; with zero-byte types outside any
/// list or map, at most as many more as the schema has nodes. Every JSON
/// value lies on the path from the top to some leaf, and no path is longer
/// than the schema is deep (plus one: a byte array is one node and two
/// levels): so the count of values is bounded by `(leaves) x (depth + 1)`. A zero-byte type inside a list or map (a
/// `Vec<()>`) can repeat without taking bytes: then only the codec's own
/// bound, `MAX_JSON_VALUES`, holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bounds {
    /// The most numbers, strings and booleans (each at least one byte).
    pub scalars: usize,
    /// The most JSON values of any kind.
    pub values: usize,
    /// The longest line `pub -` reads.
    pub line: usize,
}

/// JSON text allowed per value: a number spelled with many digits, white
/// space, a key (the schema's longest name on top), separators.
const BYTES_PER_VALUE: usize = 64;
/// The shortest line bound, for small frames: room for white space and
/// long spellings whatever the schema.
const MIN_LINE: usize = 64 << 10;
/// The longest line bound: what `pub -` read before the bound came from
/// the topic (and still reads for a schema with zero-byte types in a list).
const MAX_LINE: usize = 16 << 20;

impl Bounds {
    pub(crate) fn of(schema: &OwnedNamedType, frame_capacity: usize) -> Bounds {
        let mut s = Shape::default();
        s.walk(schema, 1, false);
        let values = if s.zero_sized_repeats {
            MAX_JSON_VALUES
        } else {
            frame_capacity
                .saturating_add(s.nodes)
                .saturating_mul(s.depth.saturating_add(1))
                .min(MAX_JSON_VALUES)
        };
        let line = if s.zero_sized_repeats {
            MAX_LINE.max(frame_capacity.saturating_mul(BYTES_PER_VALUE))
        } else {
            values
                .saturating_mul(BYTES_PER_VALUE.saturating_add(s.longest_name))
                .clamp(
                    MIN_LINE,
                    MAX_LINE.max(frame_capacity.saturating_mul(BYTES_PER_VALUE)),
                )
        };
        Bounds {
            scalars: frame_capacity,
            values,
            line,
        }
    }
}

/// What [`Bounds`] needs to know of a schema.
#[derive(Default)]
struct Shape {
    /// Nodes, `[T; N]` counted N times (saturating).
    nodes: usize,
    /// The deepest path, in nodes.
    depth: usize,
    /// The longest field or variant name, in bytes.
    longest_name: usize,
    /// A type that can take zero bytes, inside a list or map.
    zero_sized_repeats: bool,
}

impl Shape {
    /// Walk `t` at `depth` (`repeated`: inside a list or map); returns
    /// whether a value of `t` can take zero bytes.
    fn walk(&mut self, t: &OwnedNamedType, depth: usize, repeated: bool) -> bool {
        use postcard_schema::schema::owned::{OwnedDataModelType as D, OwnedDataModelVariant as V};
        self.nodes = self.nodes.saturating_add(1);
        self.depth = self.depth.max(depth);
        // The schema was checked when the codec was built (at most
        // `MAX_SCHEMA_DEPTH` deep); stop here anyway rather than recurse.
        if depth > shmbus_core::schema::MAX_SCHEMA_DEPTH + 1 {
            self.zero_sized_repeats = true;
            return true;
        }
        let zero = match &t.ty {
            D::Unit | D::UnitStruct => true,
            D::NewtypeStruct(n) => self.walk(n, depth + 1, repeated),
            D::Option(n) => {
                self.walk(n, depth + 1, repeated);
                false
            }
            D::Seq(n) => {
                self.walk(n, depth + 1, true);
                false
            }
            D::Map { key, val } => {
                self.walk(key, depth + 1, true);
                self.walk(val, depth + 1, true);
                false
            }
            D::Tuple(v) | D::TupleStruct(v) => self.all(v.iter(), depth, repeated),
            D::Struct(fs) => {
                for f in fs {
                    self.longest_name = self.longest_name.max(f.name.len());
                }
                self.all(fs.iter().map(|f| &f.ty), depth, repeated)
            }
            D::Enum(vs) => {
                for v in vs {
                    self.longest_name = self.longest_name.max(v.name.len());
                    match &v.ty {
                        V::UnitVariant => {}
                        V::NewtypeVariant(n) => {
                            self.walk(n, depth + 1, repeated);
                        }
                        // `{"Name": [..]}`, `{"Name": {..}}`: the
                        // members are two JSON levels below the enum.
                        V::TupleVariant(ts) => {
                            self.all(ts.iter(), depth + 1, repeated);
                        }
                        V::StructVariant(fs) => {
                            for f in fs {
                                self.longest_name = self.longest_name.max(f.name.len());
                            }
                            self.all(fs.iter().map(|f| &f.ty), depth + 1, repeated);
                        }
                    }
                }
                false
            }
            _ => false,
        };
        if zero && repeated {
            self.zero_sized_repeats = true;
        }
        zero
    }

    /// Walk the members of a tuple or struct (one level down); `[T; N]`
    /// repeats one type N times: walked once, counted N times. Zero bytes
    /// if every member can take zero bytes (and so if there are none).
    fn all<'a>(
        &mut self,
        members: impl Iterator<Item = &'a OwnedNamedType>,
        depth: usize,
        repeated: bool,
    ) -> bool {
        let mut zero = true;
        let mut prev: Option<(&OwnedNamedType, bool, usize)> = None;
        for m in members {
            let z = match prev {
                Some((p, z, nodes)) if p == m => {
                    self.nodes = self.nodes.saturating_add(nodes);
                    z
                }
                _ => {
                    let before = self.nodes;
                    let z = self.walk(m, depth + 1, repeated);
                    prev = Some((m, z, self.nodes - before));
                    z
                }
            };
            zero &= z;
        }
        zero
    }
}

/// A check of JSON text against [`Bounds`] that builds nothing (no
/// `Value`): its memory is the parser's, whatever the text holds. It
/// says only whether a bound was passed; text that is not JSON is left for
/// [`shmbus_codec::parse_json`] to name (it stops at the same place, so
/// within the bounds).
fn over_bounds(text: &[u8], b: &Bounds) -> Option<Exceeded> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::cell::Cell;

    struct Count<'c> {
        scalars: &'c Cell<usize>,
        values: &'c Cell<usize>,
        over: &'c Cell<Option<Exceeded>>,
        b: &'c Bounds,
    }
    impl Count<'_> {
        fn value<E: serde::de::Error>(&self, scalar: bool) -> Result<(), E> {
            self.values.set(self.values.get() + 1);
            if scalar {
                self.scalars.set(self.scalars.get() + 1);
            }
            if scalar && self.scalars.get() > self.b.scalars {
                self.over.set(Some(Exceeded::Scalars));
            } else if self.values.get() > self.b.values {
                self.over.set(Some(Exceeded::Values));
            } else {
                return Ok(());
            }
            Err(E::custom("over the bounds"))
        }
        fn again(&self) -> Count<'_> {
            Count { ..*self }
        }
    }
    impl<'de> serde::de::DeserializeSeed<'de> for Count<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Count<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
            self.value(true)
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
            self.value(true)
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
            self.value(true)
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
            self.value(true)
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
            self.value(true)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
            self.value(false)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            self.value(false)?;
            while seq.next_element_seed(self.again())?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            self.value(false)?;
            while map.next_key::<IgnoredAny>()?.is_some() {
                map.next_value_seed(self.again())?;
            }
            Ok(())
        }
    }

    let (scalars, values, over) = (Cell::new(0), Cell::new(0), Cell::new(None));
    let count = Count {
        scalars: &scalars,
        values: &values,
        over: &over,
        b,
    };
    let mut de = serde_json::Deserializer::from_slice(text);
    let _ = (&mut de).deserialize_any(count);
    over.get()
}

/// Which bound a text passed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Exceeded {
    /// More numbers, strings and booleans than the frame has bytes.
    Scalars,
    /// More JSON values than any value of the schema has.
    Values,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(schema: &str) -> (Codec, Bounds, usize) {
        let c = Codec::parse(schema).unwrap();
        // A map declares no capacity: such a topic is made with one.
        let cap = c.max_size().unwrap_or(220);
        let b = Bounds::of(c.schema(), cap);
        (c, b, cap)
    }

    /// The largest values of schemas of every shape (each fills its frame
    /// to the byte, with nesting, options, variants and long names) are
    /// within the bounds, spelled with white space everywhere; the bounds
    /// are those of the capacity, not the codec's 2 million values.
    #[test]
    fn the_largest_value_of_a_schema_is_within_its_bounds() {
        let long = "n".repeat(200);
        let cases: Vec<(String, String)> = vec![
            (
                "struct A { v: heapless::Vec<u8, 1000> }".into(),
                format!("{{\"v\": [{}]}}", vec!["255"; 1000].join(" , ")),
            ),
            (
                format!("struct B {{ v: heapless::Vec<struct C {{ {long}: struct D {{ x: struct E {{ y: bool }} }} }}, 100> }}"),
                format!(
                    "{{\"v\": [{}]}}",
                    vec![format!("{{ \"{long}\" : {{ \"x\" : {{ \"y\" : false }} }} }}"); 100].join(" , ")
                ),
            ),
            (
                "struct F { v: heapless::Vec<Option<Option<u8>>, 50>, w: heapless::Vec<enum G { A, B(u8, u8), C { z: u8 } }, 50> }".into(),
                format!(
                    "{{\"v\": [{}], \"w\": [{}]}}",
                    ["[null]", "[7]", "[7]", "[7]", "[7]"].repeat(10).join(","),
                    vec!["{\"B\": [1, 2]}"; 45]
                        .into_iter()
                        .chain(vec!["{\"C\": {\"z\": 3}}"; 5])
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ),
            (
                "struct H { s: heapless::String<64>, m: BTreeMap<u8, f64> }".into(),
                format!(
                    "{{\"s\": \"{}\", \"m\": {{{}}}}}",
                    "\\u0001".repeat(64),
                    (0..16)
                        .map(|k| format!("\"{k}\": -2.2250738585072014e-308"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            // A zero-byte type outside lists only adds its own nodes.
            (
                "struct I { marker: (), v: heapless::Vec<u8, 4> }".into(),
                "{\"marker\": null, \"v\": [1, 2, 3, 4]}".into(),
            ),
        ];
        for (schema, json) in cases {
            let (c, b, cap) = bounds(&schema);
            let v = shmbus_codec::parse_json(json.as_bytes()).unwrap();
            let frame = c.encode_within(&v, cap).unwrap();
            assert!(
                frame.len() * 10 >= cap * 9,
                "{schema}: not the largest value: {} of {cap}",
                frame.len()
            );
            assert_eq!(over_bounds(json.as_bytes(), &b), None, "{schema}: {b:?}");
            assert!(json.len() <= b.line, "{schema}: {} > {b:?}", json.len());
            assert!(b.values < MAX_JSON_VALUES, "{schema}: {b:?}");
        }
    }

    /// Past each bound is refused without building the value: one number
    /// more than the frame has bytes, or more nulls than any value has.
    #[test]
    fn text_past_the_bounds_is_refused_by_the_count() {
        let (_, b, cap) = bounds("struct A { v: heapless::Vec<Option<u8>, 100> }");
        let numbers = |n: usize| format!("{{\"v\": [{}]}}", vec!["0"; n].join(","));
        assert_eq!(over_bounds(numbers(cap - 1).as_bytes(), &b), None);
        assert_eq!(
            over_bounds(numbers(cap + 1).as_bytes(), &b),
            Some(Exceeded::Scalars)
        );
        let nulls = format!("{{\"v\": [{}]}}", vec!["null"; b.values].join(","));
        assert_eq!(over_bounds(nulls.as_bytes(), &b), Some(Exceeded::Values));
        // Text that is not JSON is left to the parser to name.
        assert_eq!(over_bounds(b"{\"v\": [0,", &b), None);
    }

    /// A zero-byte type in a list can repeat without taking bytes: only
    /// the codec's own bound holds there.
    #[test]
    fn a_zero_byte_type_in_a_list_keeps_the_codecs_bound() {
        for schema in [
            "struct A { v: heapless::Vec<(), 8> }",
            "struct B { v: heapless::Vec<struct U {}, 8> }",
            "struct C { v: heapless::Vec<[u8; 0], 8> }",
            "struct D { v: heapless::Vec<(u8, ()), 8> }",
        ] {
            let (_, b, _) = bounds(schema);
            assert_eq!(b.values, MAX_JSON_VALUES, "{schema}");
            assert!(b.line >= MAX_LINE, "{schema}");
        }
    }
}
