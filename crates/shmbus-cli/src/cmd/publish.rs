//! `shmbus pub TOPIC JSON`: encode JSON with the topic's schema and publish.
//!
//! The topic must exist: its schema, slot count, frame capacity, mode and
//! notify flag come from the segment, so this publisher reopens it exactly
//! as its own publisher would. The single-publisher rule applies: while a
//! publisher holds the topic's lock, `pub` refuses and names its pid.

use std::io::{BufRead, Read};
use std::time::Duration;

use serde_json::Value;
use shmbus_codec::{Codec, EncodeProblem};
use shmbus_core::OpenError;
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
    let encode = |text: &str| -> Result<Vec<u8>, Fail> {
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
        Some(encode(&a.json)?)
    };

    let mut publisher = RawPublisher::open(&topic, &info.schema, info.geometry.frame_capacity).map_err(|e| match e {
        OpenError::PublisherActive { pid, .. } => Fail::error(format!(
            "topic '{}' ({}) already has a live publisher, pid {pid}; a topic has one publisher at a time: stop it first (kill {pid}), then run `shmbus pub` again",
            info.name,
            key_hex(entry.key)
        )),
        other => discover::open_fail(&other),
    })?;

    let period = shmbus_toolbox::parse::period(rate);
    let mut next = monotonic_ns();
    let mut sent: u64 = 0;
    let mut publish = |bytes: &[u8], pace: bool| -> Result<(), Fail> {
        if pace && sent > 0 {
            next += period.as_nanos() as u64;
            let now = monotonic_ns();
            if next > now {
                std::thread::sleep(Duration::from_nanos(next - now));
            } else {
                next = now;
            }
        }
        publisher
            .publish_bytes(bytes)
            .map_err(|e| Fail::error(format!("publish failed: {e}")))?;
        sent += 1;
        Ok(())
    };
    match first {
        Some(bytes) => {
            let mut i = 0;
            while count == 0 || i < count {
                publish(&bytes, true)?;
                i += 1;
            }
        }
        None => {
            // One JSON value per line, each read with a bound: a stream
            // without newlines must not grow memory until the OOM killer.
            let limit = max_line_len(info.geometry.frame_capacity);
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
                    .map_err(|e| Fail::error(format!("cannot read stdin: {e}")))?;
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
                if line.trim().is_empty() {
                    continue;
                }
                let bytes = encode(line).map_err(|f| at_line(f, number, published))?;
                publish(&bytes, false)?;
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

/// The longest line `pub -` reads: 16 MiB, or 64 bytes of JSON per byte of
/// the frame capacity if that is more (field names and number text make
/// JSON longer than the frame, but not without bound).
fn max_line_len(frame_capacity: usize) -> usize {
    (16 << 20).max(frame_capacity.saturating_mul(64))
}
