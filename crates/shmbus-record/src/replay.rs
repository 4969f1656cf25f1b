//! `shmbus replay`: republish the lossless frames of a recording.
//!
//! Each recorded topic is opened with a [`RawPublisher`] (same name, key,
//! slot count, frame capacity and schema bytes as recorded; the key can be
//! overridden), which creates the topic or reopens a segment with the same
//! shape, and refuses one whose publisher is alive. Frames are published
//! in file order, each at `start + (t - first_t) / rate`, where `t` is the
//! frame's `CLOCK_MONOTONIC` publish time (the message's `publish_time`,
//! on channels whose `shmbus.publish_time` says `monotonic`), so a step of
//! the wall clock while recording (NTP setting a board without an RTC) is
//! no pause here. Recordings made before that key existed have only the
//! `CLOCK_REALTIME` stamp (`log_time`): there a clock step is a pause, and
//! a wait over 10 s is announced first. Frames get fresh publish
//! timestamps (the recorded ones belong to another boot). The recorder
//! writes frames of different topics in batches, so a frame can be a few
//! milliseconds out of global order in the file; it is then published at
//! once. (The backlogs of `record --backlog` are written merged in
//! publish order.)
//!
//! A topic that was removed and recreated while it was recorded has two
//! lossless channels with one name and key. Of the same shape, both are
//! published through one publisher, as one topic whose generations go on
//! counting. Of different shapes (another slot count, frame capacity,
//! notify flag or schema), one segment cannot take both: replay refuses
//! before it publishes anything, with the channels and their shapes (a
//! first pass over the file finds them).
//!
//! Every frame is checked against its channel's schema with the codec
//! every typeless shmbus tool decodes with (`shmbus_codec`), before it is
//! published: a frame that does not decode (a damaged or forged file, or
//! a frame that did not match its schema when it was recorded, which the
//! recorder keeps lossless) would make the topic's subscribers fail, so
//! it is left out, named once (then counted, at most a line a second),
//! and the frames left out are listed at the end. There is no flag to
//! publish them anyway: no subscriber could read them, and the file
//! keeps them (`shmbus cat --json` warns about each).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use shmbus_codec::{Codec, SchemaError};
use shmbus_core::plural::count;
use shmbus_core::{OpenError, Topic};
use shmbus_pub::{PublishError, RawPublisher};
use shmbus_toolbox::repeats::Repeats;

use crate::cli::ReplayArgs;
use crate::format::{self, TopicMeta, role};
use crate::{Exit, stop};

/// What a channel became: the publisher (in `Publishers`) of its key,
/// the clock its frames are spaced by and the codec of its schema (each
/// frame is checked against it before it is published; `None` for a
/// schema the codec cannot take), or skipped.
enum Target {
    Publish {
        key: i32,
        spacing: Spacing,
        codec: Option<Box<Codec>>,
        /// The frame capacity the channel records: a longer frame is
        /// the file's damage, reported as such (not a schema mismatch).
        capacity: usize,
    },
    Skip,
}

/// Frames of a channel left out because they do not decode with its
/// schema: shown at the end of the replay.
struct Mismatched {
    /// The channel's topic name.
    name: String,
    /// Frames left out (in the first pass).
    frames: u64,
}

/// The stamp a channel's frames are spaced by in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spacing {
    /// `publish_time`, `CLOCK_MONOTONIC` (`shmbus.publish_time` =
    /// `monotonic`).
    Monotonic,
    /// `log_time`, `CLOCK_REALTIME`: recordings made before the monotonic
    /// stamp was stored.
    Realtime,
}

impl Spacing {
    fn of(ch: &mcap::Channel<'_>) -> Spacing {
        if format::publish_time_is_monotonic(&ch.metadata) {
            Spacing::Monotonic
        } else {
            Spacing::Realtime
        }
    }

    /// The message's stamp on this clock, ns.
    fn stamp(self, m: &mcap::Message<'_>) -> u64 {
        match self {
            Spacing::Monotonic => m.publish_time,
            Spacing::Realtime => m.log_time,
        }
    }

    /// Index of this clock's anchor (each clock has its own first frame).
    fn index(self) -> usize {
        match self {
            Spacing::Monotonic => 0,
            Spacing::Realtime => 1,
        }
    }
}

/// One publisher per key: channels of one topic recreated with the same
/// shape share it (a second open would find this replay's own lock).
type Publishers = HashMap<i32, Box<RawPublisher>>;

/// What a segment must be to take a channel's frames.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    slots: u32,
    frame_capacity: usize,
    notify: bool,
    schema: Vec<u8>,
}

impl Shape {
    fn describe(&self) -> String {
        format!(
            "{} slots, frames up to {}, notify {}, schema fingerprint {:016x}",
            self.slots,
            count(self.frame_capacity, "byte"),
            self.notify,
            shmbus_core::layout::fnv1a64(&self.schema)
        )
    }
}

/// The lossless channels to replay (after `--topics`), with the key each
/// is published at (after `--key`) and the shape it needs; `None` for a
/// channel that is skipped. Errors as [`open_target`] would report them.
fn plan(a: &ReplayArgs, ch: &mcap::Channel<'_>) -> Result<Option<(TopicMeta, Shape)>, Exit> {
    if ch.metadata.get(format::key::ROLE).map(String::as_str) != Some(role::LOSSLESS) {
        return Ok(None);
    }
    let mut meta = TopicMeta::from_metadata(&ch.metadata).map_err(|e| {
        Exit::error(format!(
            "channel '{}': {e}; was the file written by `shmbus record`?",
            shown(&ch.topic)
        ))
    })?;
    if !a.topics.is_empty() && !a.topics.contains(&meta.name) {
        return Ok(None);
    }
    let Some(schema) = ch
        .schema
        .as_ref()
        .filter(|s| s.encoding == format::SCHEMA_POSTCARD)
    else {
        return Ok(None);
    };
    if let Some((_, k)) = a.keys.iter().find(|(t, _)| *t == meta.name) {
        meta.key = *k;
    }
    let shape = Shape {
        slots: meta.slots,
        frame_capacity: meta.frame_capacity,
        notify: meta.notify,
        schema: schema.data.to_vec(),
    };
    Ok(Some((meta, shape)))
}

/// A first pass over the file: refuse, before anything is published, two
/// channels to be published at one key with different shapes (a topic
/// recreated with another shape while it was recorded, or two topics
/// sent to one key with `--key`). A read error ends the pass quietly:
/// the replay itself reports it after the frames before it. Returns the
/// channels with messages, in the order of their first message, so that
/// every topic is opened (and a live publisher refused) before the first
/// frame is published.
fn check_shapes(a: &ReplayArgs) -> Result<Vec<std::sync::Arc<mcap::Channel<'static>>>, Exit> {
    let mut at_key: HashMap<i32, (u16, TopicMeta, Shape)> = HashMap::new();
    let mut seen: HashSet<u16> = HashSet::new();
    let mut channels = Vec::new();
    for m in format::open_messages(&a.file)? {
        // A read through the whole file: on a board's SD card, seconds to
        // minutes. Ctrl-C ends it (was: ignored until its end).
        if stop::requested() {
            return Err(stopped_before_a_frame(a));
        }
        let Ok(m) = m else { break };
        if !seen.insert(m.channel.id) {
            continue;
        }
        channels.push(m.channel.clone());
        let Some((meta, shape)) = plan(a, &m.channel)? else {
            continue;
        };
        match at_key.get(&meta.key) {
            None => {
                at_key.insert(meta.key, (m.channel.id, meta, shape));
            }
            Some((id, first, first_shape)) if *first_shape != shape || first.name != meta.name => {
                let what = if first.name == meta.name {
                    format!(
                        "topic '{}' was recreated with another shape while it was recorded",
                        shown(&meta.name)
                    )
                } else {
                    format!(
                        "topics '{}' and '{}' would share one key",
                        shown(&first.name),
                        shown(&meta.name)
                    )
                };
                let fix = if first.name == meta.name {
                    "split the recording where it changed (e.g. `mcap filter` by time), or leave it out with --topics".to_string()
                } else {
                    "give each its own key with --key TOPIC=KEY".to_string()
                };
                return Err(Exit::error(format!(
                    "{what}: channel {id} ('{}': {}) and channel {} ('{}': {}) cannot both be published at key 0x{:08x}; nothing was replayed; {fix}",
                    shown(&first.name),
                    first_shape.describe(),
                    m.channel.id,
                    shown(&meta.name),
                    shape.describe(),
                    meta.key as u32
                )));
            }
            Some(_) => {}
        }
    }
    Ok(channels)
}

/// Where a file with no end stops, for messages: cut short (at which
/// byte, inside which record), or being recorded now.
fn ends_early(path: &std::path::Path, cut_at: Option<u64>) -> String {
    let file = path.display();
    if let Some(pid) = format::recorder_writing(path) {
        return format!(
            "{file} is being recorded now (recorder pid {pid}) and was read up to its last complete chunk"
        );
    }
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    match cut_at {
        Some(at) => format!(
            "{file} is damaged: it ends at byte {len}, inside the record that starts at byte {at} ({})",
            format::CUT_SHORT_WHY
        ),
        None => format!(
            "{file} is damaged: it ends at byte {len}, before the end of its data ({})",
            format::CUT_SHORT_WHY
        ),
    }
}

/// Run `shmbus replay`.
///
/// A replay that fails leaves no topic it created and published nothing
/// on: every topic is opened before the first frame, so a later topic
/// refused (a system limit, another user's key, a live publisher) or a
/// file found damaged before its first frame left the earlier topics
/// behind, empty and with their locks, under "nothing was replayed".
pub fn run(a: ReplayArgs) -> Result<(), Exit> {
    let mut publishers: Publishers = HashMap::new();
    let r = replay(a, &mut publishers);
    if r.is_err() {
        for (_, p) in publishers.drain() {
            let name = p.name().to_string();
            if let Err(e) = p.remove_if_unused() {
                shmbus_toolbox::say!(
                    "shmbus: warning: cannot remove topic '{}' that this replay created: {e}",
                    shown(&name)
                );
            }
        }
    }
    r
}

fn replay(a: ReplayArgs, publishers: &mut Publishers) -> Result<(), Exit> {
    stop::install().map_err(Exit::error)?;
    let mut targets: HashMap<u16, Target> = HashMap::new();
    let mut seen_topics: HashSet<String> = HashSet::new();
    let mut published: u64 = 0;
    let start = Instant::now();
    // Open once first: a missing, empty or non-MCAP file is an error that
    // says so, not a recording "cut short".
    format::require_regular_file(&a.file)?;
    // Every topic is opened before the first frame is published: a topic
    // whose first frame comes late in the file (one that appeared while
    // recording) and has a live publisher is refused now, not after the
    // other topics were replayed up to it.
    for ch in check_shapes(&a)? {
        let t = open_target(&a, &ch, &mut seen_topics, publishers).map_err(|mut x| {
            x.message.push_str("; nothing was replayed");
            x
        })?;
        targets.insert(ch.id, t);
    }
    let finished = format::finished(&a.file);
    if !finished {
        shmbus_toolbox::say!("{}", format::unfinished_line(&a.file, "replaying"));
    }
    // Where the first pass found the file stop inside a record, and
    // whether it read the whole data section (only the summary missing).
    let mut cut_at: Option<u64> = None;
    let mut all_data = false;
    // Frames that do not decode with their channel's schema, by channel:
    // never published (a subscriber of the topic could not decode them).
    let mut mismatched: BTreeMap<u16, Mismatched> = BTreeMap::new();
    let mut notes = Repeats::new("shmbus: warning: ");
    let mut scratch = Vec::new();
    let mut first_pass = true;
    // Topics removed (`shmbus rm`) under this replay: their frames would
    // reach no subscriber, so they are no longer published (as `shmbus
    // pub` stops). So are topics whose publisher lock alone was removed
    // (`ipcrm -s`): readers call this replay gone, and nothing keeps a
    // second publisher out. By key: the topic's name, the frames it got,
    // and whether it was the lock alone.
    let mut removed: BTreeMap<i32, (String, u64, bool)> = BTreeMap::new();
    let mut checked: HashMap<i32, Instant> = HashMap::new();
    let mut per_key: HashMap<i32, u64> = HashMap::new();
    // Why `--loop` could not repeat the file (its frames span no time).
    let mut unloopable: Option<String> = None;
    // Damaged records skipped (first pass): the replay ends with the
    // damage error, after everything else was replayed.
    let mut damage: Option<String> = None;
    'passes: loop {
        let mut pass_frames = 0u64;
        let mut generations = format::Generations::default();
        // Per clock: the first frame's stamp and when it was published.
        let mut t0: [Option<(u64, Instant)>; 2] = [None, None];
        // Per clock: the latest stamp published and the frames on it, for
        // the length of a pass (`--loop`).
        let mut last: [(u64, u64); 2] = [(0, 0); 2];
        let mut reader = format::open_messages(&a.file)?;
        while let Some(m) = reader.next() {
            // A damaged record whose length is sane (a chunk whose CRC
            // fails) is skipped, named once (first pass), and the replay
            // goes on after it.
            say_skips(&mut reader, &a.file, first_pass);
            if stop::requested() {
                break 'passes;
            }
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    // Damage part way: say what was replayed before it.
                    let end = format::classify(&a.file, e).map_err(|mut x| {
                        x.message.push_str(&format!(
                            "; {published} frame{} replayed before it",
                            if published == 1 { " was" } else { "s were" }
                        ));
                        x
                    })?;
                    if end == format::End::CutShort && first_pass {
                        cut_at = Some(reader.record_offset());
                    }
                    break;
                }
            };
            let target = match targets.get(&m.channel.id) {
                Some(t) => t,
                None => {
                    let t = open_target(&a, &m.channel, &mut seen_topics, publishers)?;
                    targets.entry(m.channel.id).or_insert(t)
                }
            };
            let Target::Publish {
                key,
                spacing,
                codec,
                capacity,
            } = target
            else {
                if let Some(at) = missed_at(&m) {
                    generations.missed(&at.0, at.1);
                }
                continue;
            };
            let (key, spacing) = (*key, *spacing);
            if removed.contains_key(&key) {
                continue;
            }
            let Some(publisher) = publishers.get_mut(&key) else {
                continue;
            };
            let generation = generations.frame(&m.channel, m.sequence);
            if let Some(codec) = codec.as_ref().filter(|_| m.data.len() <= *capacity) {
                scratch.clear();
                if let Err(e) = codec.write_json(&m.data, &mut scratch) {
                    if first_pass {
                        let name = publisher.name();
                        mismatched
                            .entry(m.channel.id)
                            .or_insert_with(|| Mismatched {
                                name: name.to_string(),
                                frames: 0,
                            })
                            .frames += 1;
                        notes.note("mismatch", "frames not published (schema mismatch)", || {
                            format!(
                                "{}: frame {generation} of '{}' (channel {}, log time {}) does not match its channel's schema ({e}); not published: a subscriber of the topic could not decode it",
                                a.file.display(),
                                shown(name),
                                m.channel.id,
                                m.log_time
                            )
                        });
                    }
                    continue;
                }
            }
            let t = spacing.stamp(&m);
            // The clock's anchor: its first frame's stamp, and a time taken
            // just after that frame was published (set below). Every later
            // frame of the pass, and the next pass (`--loop`), goes out at
            // its recorded offset from that publish or later: measured
            // with the published frames' own stamps, never early, however
            // late the first one went out. (Taken before the publish, a
            // first frame published late let the next pass start that much
            // less than its span plus one interval after it.)
            let anchor = t0[spacing.index()];
            let seen = &mut last[spacing.index()];
            *seen = (seen.0.max(t), seen.1 + 1);
            if let Some((first, wall0)) = anchor.filter(|&(first, _)| a.rate > 0.0 && t > first) {
                let due = wall0 + Duration::from_secs_f64((t - first) as f64 / 1e9 / a.rate);
                let wait = due.saturating_duration_since(Instant::now());
                if wait > LONG_PAUSE {
                    // Say what replay is waiting for. On the monotonic
                    // clock that is a silent topic; on the wall clock of an
                    // old recording it may also be a clock step (NTP on a
                    // board without an RTC).
                    let why = match spacing {
                        Spacing::Monotonic => "nothing was published in between",
                        Spacing::Realtime => {
                            "a clock step while recording or a silent topic (this recording has wall-clock stamps only)"
                        }
                    };
                    shmbus_toolbox::say!(
                        "shmbus: replay: waiting {} for the next frame of '{}': the recording has a gap there, {why}; Ctrl-C stops, --rate 0 replays without pauses",
                        for_people(wait),
                        publisher.name()
                    );
                }
                if !stop::sleep_until(due) {
                    break 'passes;
                }
            }
            // Removed under this replay (`shmbus rm`, `ipcrm`): no new
            // subscriber can find the segment, and with --loop the replay
            // would publish into it for ever. One system call, at most
            // twice a second per topic.
            let now = Instant::now();
            let due_check = checked
                .get(&key)
                .is_none_or(|c| now.duration_since(*c) >= REMOVAL_CHECK);
            if due_check {
                checked.insert(key, now);
                let gone = publisher.is_removed();
                if gone || publisher.lock_removed() {
                    let name = publisher.name().to_string();
                    let before = per_key.get(&key).copied().unwrap_or(0);
                    if gone {
                        shmbus_toolbox::say!(
                            "shmbus: warning: topic '{}' (key 0x{:08x}) was removed (`shmbus rm`) while it was replayed: no one can find it now, so the rest of its frames are not published ({before} were)",
                            shown(&name),
                            key as u32
                        );
                    } else {
                        shmbus_toolbox::say!(
                            "shmbus: warning: the publisher lock of topic '{}' (key 0x{:08x}) was removed (`ipcrm -s`) while it was replayed: readers see no publisher and another one could start on the topic, so the rest of its frames are not published ({before} were)",
                            shown(&name),
                            key as u32
                        );
                    }
                    removed.insert(key, (name, before, !gone));
                    continue;
                }
            }
            // The segment has the shape the channel records (the open
            // refuses any other), so a frame that does not fit is the
            // file's fault, not the segment's: never tell to remove it.
            publisher.publish_bytes(&m.data).map_err(|e| match e {
                PublishError::TooLarge { len, capacity } => Exit::error(format!(
                    "{} is damaged: a frame of '{}' (log time {}) is {}, more than the frame capacity of {} its channel records; {} before it {} replayed",
                    a.file.display(),
                    publisher.name(),
                    m.log_time,
                    count(len, "byte"),
                    count(capacity, "byte"),
                    count(published, "frame"),
                    if published == 1 { "was" } else { "were" }
                )),
                e => Exit::error(format!(
                    "cannot publish a recorded frame of '{}': {e}",
                    publisher.name()
                )),
            })?;
            if anchor.is_none() {
                t0[spacing.index()] = Some((t, Instant::now()));
            }
            published += 1;
            pass_frames += 1;
            *per_key.entry(key).or_insert(0) += 1;
        }
        say_skips(&mut reader, &a.file, first_pass);
        if first_pass {
            all_data = reader.read_all_data();
            damage = reader.damage(&a.file);
            for l in reader.unknown_lines(&a.file) {
                shmbus_toolbox::say!("{l}");
            }
        }
        first_pass = false;
        if pass_frames == 0 {
            break;
        }
        if !a.looped {
            break;
        }
        if a.rate > 0.0 {
            // The next pass starts one frame interval after this pass's
            // last frame, as if the recording went on: a pass lasts its
            // span plus that interval. Was: at once, so the last frame
            // and the next pass's first went out together, and a file of
            // one frame (or frames of one instant) was republished as
            // fast as the CPU allowed, for ever.
            let Some(next) = next_pass(&t0, &last, a.rate) else {
                unloopable = Some(format!(
                    "--loop: the frames of {} span no time ({pass_frames} frame{} at one instant), so a pass has no length to repeat it at; it was replayed once. Replay it without --loop, or with --rate 0 --loop to republish it as fast as possible",
                    a.file.display(),
                    if pass_frames == 1 { "" } else { "s" }
                ));
                break;
            };
            let wait = next.saturating_duration_since(Instant::now());
            if wait > LONG_PAUSE {
                shmbus_toolbox::say!(
                    "shmbus: replay: waiting {} before the next pass (one frame interval after the last frame); Ctrl-C stops",
                    for_people(wait)
                );
            }
            if !stop::sleep_until(next) {
                break 'passes;
            }
        }
    }
    notes.flush();
    let left_out: u64 = mismatched.values().map(|m| m.frames).sum();
    // A file with no end (cut short, or being recorded) was read only up
    // to where it stops: a topic not found there may be in what is lost,
    // and a file that stops before its first complete chunk is damaged,
    // not a recording of nothing. Was: "no topic 'imu' in the recording"
    // and "holds no shmbus frames" for a file cut inside its first chunk.
    let short = (!finished && !all_data).then(|| ends_early(&a.file, cut_at));
    for (t, _) in &a.keys {
        if !seen_topics.contains(t) {
            match &short {
                Some(s) => shmbus_toolbox::say!(
                    "shmbus: warning: --key {t}=...: no topic '{t}' in the part of the recording that could be read: {s}"
                ),
                None => shmbus_toolbox::say!(
                    "shmbus: warning: --key {t}=...: no topic '{t}' in the recording"
                ),
            }
        }
    }
    // A topic of --topics that the file has no frames of (a typo, a topic
    // of another recording), beside ones it has: named, as for --key. Was:
    // left out without a word, and "replayed N frames" read as if it was
    // replayed too. (With no frame replayed at all, the error names them.)
    if published > 0 {
        let mut named = HashSet::new();
        for t in a.topics.iter().filter(|t| !seen_topics.contains(*t)) {
            if named.insert(t) {
                shmbus_toolbox::say!(
                    "shmbus: warning: --topics: {} holds no frames of topic '{}'{}; `shmbus cat {}` lists its topics",
                    a.file.display(),
                    shown(t),
                    match &short {
                        Some(s) => format!(" in the part that could be read ({s})"),
                        None => String::new(),
                    },
                    a.file.display()
                );
            }
        }
    }
    if published == 0 && stop::requested() {
        return Err(stopped_before_a_frame(&a));
    }
    if let Some(d) = damage.as_ref().filter(|_| published == 0) {
        return Err(Exit::error(format!("{d}; nothing was replayed")));
    }
    if let Some(s) = short.as_ref().filter(|_| published == 0 && left_out == 0) {
        return Err(match format::recorder_writing(&a.file) {
            Some(pid) => Exit::not_found(format!(
                "{} is being recorded now (recorder pid {pid}) and holds no complete chunk yet (the recorder writes one at least once a second): nothing was replayed",
                a.file.display()
            )),
            None => Exit::error(format!(
                "{s}, before its first complete chunk: nothing was replayed"
            )),
        });
    }
    if published == 0 && left_out > 0 && removed.is_empty() {
        return Err(Exit::error(format!(
            "nothing replayed: {}; {} is damaged (`shmbus cat --json {}` shows what decodes)",
            mismatch_list(&mismatched),
            a.file.display(),
            a.file.display()
        )));
    }
    if published == 0 {
        return Err(Exit::not_found(if a.topics.is_empty() {
            format!("{} holds no shmbus frames to replay", a.file.display())
        } else {
            format!(
                "{} holds no frames of {}; `shmbus cat {}` lists its topics",
                a.file.display(),
                a.topics
                    .iter()
                    .map(|t| shown(t))
                    .collect::<Vec<_>>()
                    .join(", "),
                a.file.display()
            )
        }));
    }
    // Topics this replay created and published nothing on (Ctrl-C before
    // their first frame, or none of their frames decoded): removed, as a
    // failed replay removes them, not left behind empty with their locks.
    let unused: Vec<i32> = publishers
        .iter()
        .filter(|(_, p)| p.created() && p.next_generation() == 1 && !p.is_removed())
        .map(|(k, _)| *k)
        .collect();
    let mut emptied = 0;
    for k in unused {
        let Some(p) = publishers.remove(&k) else {
            continue;
        };
        let name = p.name().to_string();
        match p.remove_if_unused() {
            Ok(_) => emptied += 1,
            Err(e) => shmbus_toolbox::say!(
                "shmbus: warning: cannot remove topic '{}' that this replay created: {e}",
                shown(&name)
            ),
        }
    }
    let n = publishers.len();
    shmbus_toolbox::say!(
        "replayed {} of {} in {:.1} s{}",
        count(published, "frame"),
        count(n, "topic"),
        start.elapsed().as_secs_f64(),
        match emptied {
            0 => String::new(),
            1 => "; 1 topic it created got no frame and was removed".to_string(),
            e => format!("; {e} topics it created got no frame and were removed"),
        }
    );
    if left_out > 0 {
        shmbus_toolbox::say!(
            "shmbus: warning: not replayed{}: {}",
            if a.looped { " (in each pass)" } else { "" },
            mismatch_list(&mismatched)
        );
    }
    if let Some(d) = damage {
        // The damage code wins: said last, with what was replayed.
        if let Some(why) = &unloopable {
            shmbus_toolbox::say!("shmbus: warning: {why}");
        }
        return Err(Exit::error(format!(
            "{d}; {published} frame{} replayed{}",
            if published == 1 { " was" } else { "s were" },
            if removed.is_empty() {
                ""
            } else {
                " (some topics were removed under the replay, see above)"
            }
        )));
    }
    if !removed.is_empty() {
        let each: Vec<String> = removed
            .iter()
            .map(|(key, (name, before, lock_only))| {
                format!(
                    "'{}' (key 0x{:08x}) after {before} frame{}{}",
                    shown(name),
                    *key as u32,
                    if *before == 1 { "" } else { "s" },
                    if *lock_only {
                        " (its publisher lock, `ipcrm -s`)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        return Err(Exit::not_found(format!(
            "replay stopped publishing {} when {} removed (`shmbus rm`) under it; replay again to create {} anew",
            each.join(", "),
            if removed.len() == 1 {
                "it was"
            } else {
                "they were"
            },
            if removed.len() == 1 { "it" } else { "them" }
        )));
    }
    if let Some(why) = unloopable {
        return Err(Exit::error(why));
    }
    Ok(())
}

/// Name each damaged record the reader skipped since the last call, once
/// (on the first pass only: `--loop` reads the same damage again).
fn say_skips(reader: &mut format::Messages, file: &std::path::Path, first_pass: bool) {
    while let Some(s) = reader.next_skip() {
        if first_pass {
            shmbus_toolbox::say!("{}", s.line(file));
        }
    }
}

/// Ctrl-C (or SIGTERM, SIGHUP) before the first frame was published:
/// said as such (was: `FILE holds no shmbus frames to replay`, exit 1).
fn stopped_before_a_frame(a: &ReplayArgs) -> Exit {
    Exit::error(format!(
        "stopped (Ctrl-C, SIGTERM or SIGHUP) before a frame of {} was replayed; nothing was replayed",
        a.file.display()
    ))
}

/// How often a replayed topic is checked for removal (one `IPC_STAT`).
const REMOVAL_CHECK: Duration = Duration::from_millis(500);

/// When the next `--loop` pass starts: on each clock with frames at two
/// or more instants, one mean frame interval (at `rate`) after its last
/// frame's due time; the latest of those. `None` when no clock has a
/// span (one frame, or frames of one instant): a pass has no length.
fn next_pass(
    t0: &[Option<(u64, Instant)>; 2],
    last: &[(u64, u64); 2],
    rate: f64,
) -> Option<Instant> {
    t0.iter()
        .zip(last)
        .filter_map(|(anchor, &(latest, frames))| {
            let (first, wall0) = (*anchor)?;
            let span = latest
                .checked_sub(first)
                .filter(|s| *s > 0 && frames >= 2)?;
            let length = span as f64 + span as f64 / (frames - 1) as f64;
            Some(wall0 + Duration::from_secs_f64(length / 1e9 / rate))
        })
        .max()
}

/// `3 frames of 'imu' (channel 2) and 1 frame of 'gnss' (channel 4) did
/// not match their channel's schema`.
fn mismatch_list(mismatched: &BTreeMap<u16, Mismatched>) -> String {
    let each: Vec<String> = mismatched
        .iter()
        .map(|(id, m)| {
            format!(
                "{} frame{} of '{}' (channel {id})",
                m.frames,
                if m.frames == 1 { "" } else { "s" },
                shown(&m.name)
            )
        })
        .collect();
    let total: u64 = mismatched.values().map(|m| m.frames).sum();
    format!(
        "{} {} not match {} channel's schema",
        each.join(", "),
        if total == 1 { "does" } else { "do" },
        if mismatched.len() == 1 {
            "its"
        } else {
            "their"
        }
    )
}

/// A name from the file as a message quotes it: escaped and cut as every
/// shmbus message cuts one (`shmbus_core::topic::shown`).
fn shown(name: &str) -> String {
    shmbus_core::topic::shown(name)
}

/// A missed event's topic and `at_generation` (the generation of the
/// topic's next recorded frame).
fn missed_at(m: &mcap::Message<'_>) -> Option<(String, u64)> {
    if m.channel
        .metadata
        .get(format::key::ROLE)
        .map(String::as_str)
        != Some(role::MISSED)
    {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&m.data).ok()?;
    Some((
        v["topic"].as_str()?.to_string(),
        v["at_generation"].as_u64()?,
    ))
}

/// A wait for the next frame longer than this is announced first.
const LONG_PAUSE: Duration = Duration::from_secs(10);

/// `d` as a person reads it: `12.0 s`, `5.5 min`, `1.0 h`.
fn for_people(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}

/// Decide what to do with a channel the first time it shows up.
fn open_target(
    a: &ReplayArgs,
    ch: &mcap::Channel<'_>,
    seen: &mut HashSet<String>,
    publishers: &mut Publishers,
) -> Result<Target, Exit> {
    if ch.metadata.get(format::key::ROLE).map(String::as_str) != Some(role::LOSSLESS) {
        return Ok(Target::Skip);
    }
    let mut meta = TopicMeta::from_metadata(&ch.metadata).map_err(|e| {
        Exit::error(format!(
            "channel '{}': {e}; was the file written by `shmbus record`?",
            shown(&ch.topic)
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
        shmbus_toolbox::say!(
            "shmbus: warning: channel '{}' has no {} schema; skipped",
            shown(&ch.topic),
            format::SCHEMA_POSTCARD
        );
        return Ok(Target::Skip);
    };
    if let Some((_, k)) = a.keys.iter().find(|(t, _)| *t == meta.name) {
        meta.key = *k;
    }
    // Each frame is checked against the channel's schema before it is
    // published. A schema that is not one at all is what the recorder
    // never writes (it does not record such a topic): the channel is left
    // out. One the codec cannot take (no JSON form) leaves its frames
    // unchecked, as before.
    let codec = match Codec::from_schema_bytes(&schema.data) {
        Ok(c) => Some(Box::new(c)),
        Err(SchemaError::Malformed) => {
            shmbus_toolbox::say!(
                "shmbus: warning: channel {} ('{}') carries a schema this build cannot decode; not replayed (a damaged file, or one from a newer shmbus: upgrade shmbus)",
                ch.id,
                shown(&meta.name)
            );
            return Ok(Target::Skip);
        }
        Err(e) => {
            shmbus_toolbox::say!(
                "shmbus: warning: the frames of '{}' cannot be checked against its schema ({e}); replayed unchecked",
                shown(&meta.name)
            );
            None
        }
    };
    if publishers.contains_key(&meta.key) {
        // The same topic recreated with the same shape while it was
        // recorded (`check_shapes` refused any other): one publisher.
        return Ok(Target::Publish {
            key: meta.key,
            spacing: Spacing::of(ch),
            codec,
            capacity: meta.frame_capacity,
        });
    }
    // A name no topic can have (the recorder never writes one): said
    // once, cut as every message cuts a long string.
    if let Err(reason) = shmbus_core::topic::validate_name(&meta.name) {
        return Err(Exit::error(format!(
            "cannot replay channel {} of {}: {reason}",
            ch.id,
            a.file.display()
        )));
    }
    // A name a topic had before the level rule (`a//b`, `/imu`): it can
    // be read (`cat`) but no publisher may create it any more, and the
    // rule's own advice ("write 'a/b'") is not something a replay can
    // do. Said before anything is published, with what does work.
    if let Err(reason) = shmbus_core::topic::validate_topic_name(&meta.name) {
        let reason = reason.split(':').next().unwrap_or(&reason);
        return Err(Exit::error(format!(
            "cannot replay channel {} of {}: {reason}, a name an older shmbus took and no topic can be created with now (docs/LAYOUT.md 1.1); `shmbus cat` still reads its frames; replay the other topics with --topics A,B",
            ch.id,
            a.file.display()
        )));
    }
    let topic = Topic::new(&meta.name)
        .key(meta.key)
        .slots(meta.slots)
        .notify(meta.notify);
    match RawPublisher::open(&topic, &schema.data, meta.frame_capacity) {
        Ok(p) => {
            publishers.insert(meta.key, Box::new(p));
            Ok(Target::Publish {
                key: meta.key,
                spacing: Spacing::of(ch),
                codec,
                capacity: meta.frame_capacity,
            })
        }
        Err(OpenError::PublisherActive { pid, .. }) => Err(Exit::error(format!(
            "topic '{name}' (key 0x{:08x}) has a live publisher (pid {pid}); stop it first, or replay to another key with --key {name}=KEY",
            meta.key as u32,
            name = shown(&meta.name),
        ))),
        // The key holds something else: the topic with another type or
        // shape (a recording older than the board's software), another
        // topic, another program's segment. The error's own fix removes
        // it, which takes it from whoever uses it; replay can also go to
        // a key of its own, which was not said.
        Err(
            e @ (OpenError::SizeMismatch { .. }
            | OpenError::SchemaMismatch { .. }
            | OpenError::GeometryMismatch { .. }
            | OpenError::NameMismatch { .. }
            | OpenError::NotShmbus { .. }
            | OpenError::UnsupportedLayout { .. }
            | OpenError::Corrupt { .. }),
        ) => Err(Exit::error(format!(
            "cannot open topic '{name}' for replay: {e}; or leave it as it is and replay to another key with --key {name}=KEY",
            name = shown(&meta.name),
        ))),
        Err(e) => Err(Exit::error(format!(
            "cannot open topic '{}' for replay: {e}",
            shown(&meta.name)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn channel(metadata: BTreeMap<String, String>) -> mcap::Channel<'static> {
        mcap::Channel {
            id: 1,
            topic: "imu#postcard".into(),
            schema: None,
            message_encoding: format::MESSAGE_POSTCARD.into(),
            metadata,
        }
    }

    #[test]
    fn frames_are_spaced_by_the_monotonic_stamp_only_where_the_channel_says_so() {
        let mut m = BTreeMap::new();
        assert_eq!(Spacing::of(&channel(m.clone())), Spacing::Realtime);
        m.insert(format::key::PUBLISH_TIME.into(), "realtime".into());
        assert_eq!(Spacing::of(&channel(m.clone())), Spacing::Realtime);
        m.insert(format::key::PUBLISH_TIME.into(), format::MONOTONIC.into());
        let ch = channel(m);
        assert_eq!(Spacing::of(&ch), Spacing::Monotonic);
        let msg = mcap::Message {
            channel: std::sync::Arc::new(ch),
            sequence: 1,
            log_time: 10,
            publish_time: 20,
            data: std::borrow::Cow::Borrowed(&[]),
        };
        assert_eq!(Spacing::Monotonic.stamp(&msg), 20);
        assert_eq!(Spacing::Realtime.stamp(&msg), 10);
    }
}
