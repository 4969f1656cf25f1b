//! `shmbus replay`: republish the lossless frames of a recording.
//!
//! Each recorded topic is opened with a [`RawPublisher`] (same name, key,
//! slot count, frame capacity and schema bytes as recorded; the key can be
//! overridden), which creates the topic or reopens a segment with the same
//! shape, and refuses one whose publisher is alive. Frames are published
//! in file order, each at `start + (log_time - first_log_time) / rate`,
//! with fresh publish timestamps (the recorded monotonic times belong to
//! another boot). The recorder writes frames of different topics in
//! batches, so a frame can be a few milliseconds out of global order in the
//! file; it is then published at once.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use shmbus_core::{OpenError, Topic};
use shmbus_pub::RawPublisher;

use crate::cli::ReplayArgs;
use crate::format::{self, TopicMeta, role};
use crate::{Exit, stop};

/// What a channel became: a publisher, or skipped.
enum Target {
    Publish(Box<RawPublisher>),
    Skip,
}

/// Run `shmbus replay`.
pub fn run(a: ReplayArgs) -> Result<(), Exit> {
    stop::install().map_err(Exit::error)?;
    let mut targets: HashMap<u16, Target> = HashMap::new();
    let mut seen_topics: HashSet<String> = HashSet::new();
    let mut published: u64 = 0;
    let start = Instant::now();
    // Open once first: a missing, empty or non-MCAP file is an error that
    // says so, not a recording "cut short".
    format::require_regular_file(&a.file)?;
    drop(format::open_messages(&a.file)?);
    if !format::finished(&a.file) {
        eprintln!(
            "shmbus: warning: {} was cut short (recorder killed?); replaying up to its last complete chunk",
            a.file.display()
        );
    }
    'passes: loop {
        let mut pass_frames = 0u64;
        let mut t0: Option<(u64, Instant)> = None;
        for m in format::open_messages(&a.file)? {
            if stop::requested() {
                break 'passes;
            }
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    format::classify(&a.file, e)?;
                    break;
                }
            };
            let target = match targets.get_mut(&m.channel.id) {
                Some(t) => t,
                None => {
                    let t = open_target(&a, &m.channel, &mut seen_topics)?;
                    targets.entry(m.channel.id).or_insert(t)
                }
            };
            let Target::Publish(publisher) = target else {
                continue;
            };
            let (first, wall0) = *t0.get_or_insert((m.log_time, Instant::now()));
            if a.rate > 0.0 && m.log_time > first {
                let due =
                    wall0 + Duration::from_secs_f64((m.log_time - first) as f64 / 1e9 / a.rate);
                if !sleep_until(due) {
                    break 'passes;
                }
            }
            publisher.publish_bytes(&m.data).map_err(|e| {
                Exit::error(format!(
                    "cannot publish a recorded frame of '{}': {e}; the topic at key 0x{:08x} has another shape, remove it with `shmbus rm` first",
                    publisher.name(),
                    publisher.key() as u32
                ))
            })?;
            published += 1;
            pass_frames += 1;
        }
        if pass_frames == 0 {
            break;
        }
        if !a.looped {
            break;
        }
    }
    for (t, _) in &a.keys {
        if !seen_topics.contains(t) {
            eprintln!("shmbus: warning: --key {t}=...: no topic '{t}' in the recording");
        }
    }
    if published == 0 {
        return Err(Exit::not_found(if a.topics.is_empty() {
            format!("{} holds no shmbus frames to replay", a.file.display())
        } else {
            format!(
                "{} holds no frames of {}; `shmbus cat {}` lists its topics",
                a.file.display(),
                a.topics.join(", "),
                a.file.display()
            )
        }));
    }
    let n = targets
        .values()
        .filter(|t| matches!(t, Target::Publish(_)))
        .count();
    eprintln!(
        "replayed {published} frames of {n} topic{} in {:.1} s",
        if n == 1 { "" } else { "s" },
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Sleep until `due` in steps short enough to notice Ctrl-C; false if
/// interrupted.
fn sleep_until(due: Instant) -> bool {
    loop {
        if stop::requested() {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        std::thread::sleep((due - now).min(Duration::from_millis(100)));
    }
}

/// Decide what to do with a channel the first time it shows up.
fn open_target(
    a: &ReplayArgs,
    ch: &mcap::Channel<'_>,
    seen: &mut HashSet<String>,
) -> Result<Target, Exit> {
    if ch.metadata.get(format::key::ROLE).map(String::as_str) != Some(role::LOSSLESS) {
        return Ok(Target::Skip);
    }
    let mut meta = TopicMeta::from_metadata(&ch.metadata).map_err(|e| {
        Exit::error(format!(
            "channel '{}': {e}; was the file written by `shmbus record`?",
            ch.topic
        ))
    })?;
    seen.insert(meta.name.clone());
    if !a.topics.is_empty() && !a.topics.contains(&meta.name) {
        return Ok(Target::Skip);
    }
    let Some(schema) = ch
        .schema
        .as_ref()
        .filter(|s| s.encoding == format::SCHEMA_POSTCARD)
    else {
        eprintln!(
            "shmbus: warning: channel '{}' has no {} schema; skipped",
            shmbus_toolbox::printable::printable(&ch.topic),
            format::SCHEMA_POSTCARD
        );
        return Ok(Target::Skip);
    };
    if let Some((_, k)) = a.keys.iter().find(|(t, _)| *t == meta.name) {
        meta.key = *k;
    }
    let topic = Topic::new(&meta.name)
        .key(meta.key)
        .slots(meta.slots)
        .notify(meta.notify);
    match RawPublisher::open(&topic, &schema.data, meta.frame_capacity) {
        Ok(p) => Ok(Target::Publish(Box::new(p))),
        Err(OpenError::PublisherActive { pid, .. }) => Err(Exit::error(format!(
            "topic '{}' (key 0x{:08x}) has a live publisher (pid {pid}); stop it first, or replay to another key with --key {}=KEY",
            meta.name, meta.key as u32, meta.name
        ))),
        Err(e) => Err(Exit::error(format!(
            "cannot open topic '{}' for replay: {e}",
            meta.name
        ))),
    }
}
