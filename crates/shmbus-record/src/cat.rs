//! `shmbus cat`: what a recording holds, or its frames as JSON lines,
//! decoded from the schema stored in the file (no Rust types needed).
//!
//! The file is read as a stream (no summary needed), so a recording cut
//! short by a crash is shown up to its last complete chunk, and says so.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;

use shmbus_codec::Codec;
use shmbus_toolbox::printable::{PrintableWriter, printable};
use shmbus_toolbox::units::{self, iso8601};

use crate::Exit;
use crate::cli::CatArgs;
use crate::format::{self, End, role};

/// Per-channel tallies.
#[derive(Default)]
struct Tally {
    channel: Option<Arc<mcap::Channel<'static>>>,
    messages: u64,
    bytes: u64,
    first_ns: Option<u64>,
    last_ns: u64,
}

/// Run `shmbus cat`.
pub fn run(a: CatArgs) -> Result<(), Exit> {
    if crate::stdout_closed() {
        return Err(crate::stdout_closed_error(
            "there is nowhere to show the recording",
        ));
    }
    // One open, one pass: a pipe or FIFO works as well as a file.
    let mut reader = format::open_messages(&a.file)?;
    let stdout = std::io::stdout();
    // Everything printed comes from the file: names, metadata and values
    // with their terminal control characters escaped.
    let mut out = PrintableWriter(std::io::BufWriter::new(stdout.lock()));
    let mut tallies: BTreeMap<u16, Tally> = BTreeMap::new();
    let mut schemas: HashMap<u16, Option<Codec>> = HashMap::new();
    let mut missed: BTreeMap<String, u64> = BTreeMap::new();
    let mut line = Vec::new();
    let mut generations = format::Generations::default();
    let mut end = End::Complete;
    let mut lines: u64 = 0;
    // Damage that ends the read (a record length that is garbage): what
    // was read before it is still shown, then the error. A damaged record
    // whose length is sane (a chunk whose CRC fails) is skipped, named
    // once on stderr, and the read goes on after it.
    let mut damaged: Option<Exit> = None;
    while let Some(m) = reader.next() {
        say_skips(&mut reader, &a.file);
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                match format::classify(&a.file, e) {
                    Ok(e) => end = e,
                    Err(x) => damaged = Some(x),
                }
                break;
            }
        };
        let t = tallies.entry(m.channel.id).or_default();
        if t.channel.is_none() {
            t.channel = Some(m.channel.clone());
        }
        t.messages += 1;
        t.bytes += m.data.len() as u64;
        t.first_ns = Some(t.first_ns.map_or(m.log_time, |f| f.min(m.log_time)));
        t.last_ns = t.last_ns.max(m.log_time);
        let role = m
            .channel
            .metadata
            .get(format::key::ROLE)
            .map(String::as_str);
        if role == Some(role::MISSED) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&m.data) {
                let topic = v["topic"].as_str().unwrap_or("?").to_string();
                if let Some(at) = v["at_generation"].as_u64() {
                    generations.missed(&topic, at);
                }
                *missed.entry(topic).or_default() += v["missed"].as_u64().unwrap_or(0);
            }
        }
        if !a.json {
            continue;
        }
        line.clear();
        let ok = match role {
            Some(role::LOSSLESS) => {
                let schema = schemas.entry(m.channel.id).or_insert_with(|| {
                    m.channel
                        .schema
                        .as_ref()
                        .filter(|s| s.encoding == format::SCHEMA_POSTCARD)
                        .and_then(|s| Codec::from_schema_bytes(&s.data).ok())
                });
                let name = m
                    .channel
                    .metadata
                    .get(format::key::TOPIC)
                    .cloned()
                    .unwrap_or_default();
                let generation = generations.frame(&m.channel, m.sequence);
                match schema {
                    Some(schema) => {
                        envelope(&mut line, &name, &m, Some(generation));
                        let r = schema.write_json(&m.data, &mut line);
                        line.extend_from_slice(b"}\n");
                        r.is_ok()
                    }
                    None => false,
                }
            }
            // Missed events, and JSON channels that shmbus did not write.
            Some(role::MISSED) | None if m.channel.message_encoding == format::MESSAGE_JSON => {
                match serde_json::from_slice::<serde_json::Value>(&m.data) {
                    Ok(v) => {
                        envelope(&mut line, &m.channel.topic, &m, None);
                        let _ = serde_json::to_writer(&mut line, &v);
                        line.extend_from_slice(b"}\n");
                        true
                    }
                    Err(_) => false,
                }
            }
            _ => continue,
        };
        if !ok {
            shmbus_toolbox::say!(
                "shmbus: warning: a message on '{}' (log time {}) does not decode; skipped",
                printable(&m.channel.topic),
                m.log_time
            );
            continue;
        }
        if let Err(e) = out.write_all(&line) {
            return output_failed(e, Some(lines));
        }
        lines += 1;
    }
    say_skips(&mut reader, &a.file);
    // Skipped damage: said at the end, once, with what it cost.
    let skipped = reader.damage(&a.file);
    let skipped_what = reader.skipped_summary();
    for l in reader.unknown_lines(&a.file) {
        shmbus_toolbox::say!("{l}");
    }
    // Channels without a message (a topic recorded while it was silent)
    // are listed too: the reader knows every channel record it passed.
    for id in 0..=u16::MAX {
        if let Some(ch) = reader.get_channel(id) {
            tallies.entry(id).or_default().channel.get_or_insert(ch);
        }
    }
    let read = if damaged.is_none() && end == End::Complete {
        let (finished, read) = format::finished_after(reader);
        if !finished {
            end = End::CutShort;
        }
        read
    } else {
        reader.bytes_read()
    };
    // The exit: a stop names its own damage (and the skips before it);
    // skips alone make the damage error after everything was shown.
    let state = match (&damaged, skipped_what.clone()) {
        (Some(_), _) => {
            Some("shown up to the damage, which is named on standard error".to_string())
        }
        (None, Some(what)) => Some(format!(
            "{what}, named on standard error; everything else shown{}",
            if end == End::CutShort {
                format!("; also cut short ({})", format::CUT_SHORT_WHY)
            } else {
                String::new()
            }
        )),
        (None, None) => None,
    };
    let damaged = match (damaged, skipped) {
        (Some(mut x), Some(_)) => {
            let what = skipped_what.unwrap_or_default();
            x.message.push_str(&format!("; before it, {what}"));
            Some(x)
        }
        (Some(x), None) => Some(x),
        (None, Some(s)) => Some(Exit::error(s)),
        (None, None) => None,
    };
    if a.json {
        if let Err(e) = out.flush() {
            return output_failed(e, Some(lines));
        }
        if end == End::CutShort {
            shmbus_toolbox::say!("{}", format::unfinished_line(&a.file, "shown"));
        }
        return damaged.map_or(Ok(()), Err);
    }
    let info = write_info(
        &mut out,
        &a,
        &tallies,
        &missed,
        &end,
        state.as_deref(),
        read,
    );
    if let Err(e) = info.and_then(|()| out.flush()) {
        return output_failed(e, None);
    }
    damaged.map_or(Ok(()), Err)
}

/// Name each damaged record the reader skipped since the last call, once.
fn say_skips(reader: &mut format::Messages, file: &std::path::Path) {
    while let Some(s) = reader.next_skip() {
        shmbus_toolbox::say!("{}", s.line(file));
    }
}

/// Writing standard output failed. A reader that went away (`| head`) is
/// no error: exit 0, quietly, as every shmbus command. Anything else (a
/// full disk under `> out.jsonl`, `/dev/full`, an I/O error) is: the
/// output is incomplete, and exit 0 would pass it on as whole. `lines`:
/// the JSON lines written before (`--json`; some may still have been in
/// the buffer that failed).
fn output_failed(e: std::io::Error, lines: Option<u64>) -> Result<(), Exit> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return Ok(());
    }
    let before = match lines {
        Some(n) => format!(
            "; the output is incomplete: at most {n} JSON line{} reached it",
            if n == 1 { "" } else { "s" }
        ),
        None => "; the output is incomplete".to_string(),
    };
    Err(Exit::error(format!("cannot write the output: {e}{before}")))
}

/// The start of a `--json` line: topic, times, generation. `mono_ns` is
/// the message's `publish_time` on channels where it is `CLOCK_MONOTONIC`
/// (named as in `shmbus echo --json`); absent in older recordings.
fn envelope(line: &mut Vec<u8>, topic: &str, m: &mcap::Message<'_>, generation: Option<u64>) {
    line.extend_from_slice(b"{\"topic\":");
    let _ = serde_json::to_writer(&mut *line, topic);
    let _ = write!(line, ",\"log_time_ns\":{}", m.log_time);
    if format::publish_time_is_monotonic(&m.channel.metadata) {
        let _ = write!(line, ",\"mono_ns\":{}", m.publish_time);
    }
    if let Some(g) = generation {
        let _ = write!(line, ",\"generation\":{g}");
    }
    line.extend_from_slice(b",\"value\":");
}

fn write_info(
    out: &mut impl Write,
    a: &CatArgs,
    tallies: &BTreeMap<u16, Tally>,
    missed: &BTreeMap<String, u64>,
    end: &End,
    damaged: Option<&str>,
    read: u64,
) -> std::io::Result<()> {
    // A file's size; a pipe's or FIFO's is what was read (its own size is
    // 0: `... | shmbus cat /dev/stdin` said "0 B" after 2.5 MiB).
    let size = match std::fs::metadata(&a.file) {
        Ok(m) if m.is_file() => units::bytes(m.len()),
        _ => format!("{} read", units::bytes(read)),
    };
    let state = match (end, format::recorder_writing(&a.file)) {
        _ if damaged.is_some() => format!("DAMAGED: {}", damaged.unwrap_or_default()),
        (End::Complete, _) => "complete".to_string(),
        (End::CutShort, Some(pid)) => {
            format!("BEING RECORDED now by pid {pid}: shown up to its last complete chunk")
        }
        (End::CutShort, None) => {
            format!(
                "CUT SHORT ({}): readable up to its last complete chunk",
                format::CUT_SHORT_WHY
            )
        }
    };
    writeln!(out, "file:     {} ({}, {state})", a.file.display(), size)?;
    let first = tallies.values().filter_map(|t| t.first_ns).min();
    let last = tallies.values().map(|t| t.last_ns).max();
    match (first, last) {
        (Some(f), Some(l)) => writeln!(
            out,
            "time:     {} .. {} ({:.3} s)",
            iso8601(f),
            iso8601(l),
            (l.saturating_sub(f)) as f64 / 1e9
        )?,
        _ => writeln!(out, "time:     (no messages)")?,
    }
    let total: u64 = tallies.values().map(|t| t.messages).sum();
    writeln!(out, "messages: {total}")?;
    writeln!(out, "channels:")?;
    writeln!(
        out,
        "  {:<4} {:<28} {:<9} {:<32} {:>9} {:>10} {:>10}",
        "ID", "TOPIC", "ENCODING", "SCHEMA (ENCODING)", "MESSAGES", "RATE", "BYTES"
    )?;
    for (id, t) in tallies {
        let Some(ch) = &t.channel else { continue };
        let schema = ch
            .schema
            .as_ref()
            .map(|s| format!("{} ({})", s.name, s.encoding))
            .unwrap_or_else(|| "-".into());
        let span = t.last_ns.saturating_sub(t.first_ns.unwrap_or(t.last_ns)) as f64 / 1e9;
        let rate = if t.messages > 1 && span > 0.0 {
            format!("{:.1}/s", (t.messages - 1) as f64 / span)
        } else {
            "-".into()
        };
        writeln!(
            out,
            "  {:<4} {:<28} {:<9} {:<32} {:>9} {:>10} {:>10}",
            id,
            ch.topic,
            ch.message_encoding,
            schema,
            t.messages,
            rate,
            units::bytes(t.bytes)
        )?;
    }
    let topics: Vec<&Arc<mcap::Channel<'static>>> = tallies
        .values()
        .filter_map(|t| t.channel.as_ref())
        .filter(|c| c.metadata.get(format::key::ROLE).map(String::as_str) == Some(role::LOSSLESS))
        .collect();
    if !topics.is_empty() {
        writeln!(out, "topics:")?;
        for c in topics {
            let md = |k: &str| c.metadata.get(k).cloned().unwrap_or_else(|| "?".into());
            let name = md(format::key::TOPIC);
            // Users as the recording machine named them (its uid 1000
            // need not be this machine's): `alice (uid 1000)`, or `uid
            // 1000` when it had no name for it or the file is older.
            let who = |uid_key: &str, user_key: &str| {
                let uid = c.metadata.get(uid_key)?;
                Some(match c.metadata.get(user_key) {
                    Some(name) => format!("{name} (uid {uid})"),
                    None => format!("uid {uid}"),
                })
            };
            let owner = match (
                who(format::key::OWNER_UID, format::key::OWNER_USER),
                who(format::key::CREATOR_UID, format::key::CREATOR_USER),
            ) {
                (Some(u), Some(cu)) => format!(", owner {u}, created by {cu}"),
                _ => String::new(),
            };
            writeln!(
                out,
                "  {name}: key {}{owner}, {} slots, frames up to {}, missed {}",
                md(format::key::KEY),
                md(format::key::SLOTS),
                bytes_of(&md(format::key::FRAME_CAPACITY)),
                missed.get(&name).copied().unwrap_or(0)
            )?;
        }
    }
    Ok(())
}

/// A byte count from a recording's metadata, as shown: `1 byte`,
/// `64 bytes` (`? bytes` when the recording does not say).
fn bytes_of(n: &str) -> String {
    if n == "1" {
        "1 byte".into()
    } else {
        format!("{n} bytes")
    }
}
