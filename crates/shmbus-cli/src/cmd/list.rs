//! `shmbus list`: every topic on the machine, one row each.

use std::time::Duration;

use serde_json::{Value, json};
use shmbus_core::{OpenError, PublisherStatus};

use super::{
    Summary, key_json, mode_owner, publisher_json, publisher_json_aged, publisher_text,
    publisher_text_aged,
};
use crate::args::ListArgs;
use crate::discover::{self, Entry, LockOnly, Probe, now_ns};
use crate::out::{self, CmdResult, Fail, human_bytes, human_ns, key_hex, user, user_name};

/// One row of the listing.
pub enum Row {
    /// A readable topic, its first sample time, and its rate once measured.
    Topic(Box<Summary>, u64, Option<f64>),
    /// A segment this user may not attach.
    Denied(Entry),
    /// A shmbus segment that cannot be used.
    Broken(Entry, OpenError),
    /// A half-created topic: its magic is still 0 and its publisher lock
    /// is at its key (`OpenError::NotReady`). The lock's state read just
    /// after: held, its creator is at work (or hung); free, the creator
    /// died before it wrote the header, and the segment stays unreadable
    /// until its publisher runs again or it is removed.
    HalfMade(Entry, PublisherStatus),
    /// A segment that is not a shmbus topic, at a key where a topic belongs
    /// (the config's, the derived range, or asked for): a possible squat.
    Foreign(Entry),
    /// A semaphore set at a topic key with no segment: a lock left behind,
    /// or a squat that keeps the real publisher from starting.
    LockOnly(LockOnly),
}

impl Row {
    /// The segment of this row, whatever state it is in; `None` for a
    /// lone lock (no segment).
    pub fn segment(&self) -> Option<&Entry> {
        match self {
            Row::Topic(s, _, _) => Some(&s.entry),
            Row::Denied(e) | Row::Broken(e, _) | Row::HalfMade(e, _) | Row::Foreign(e) => Some(e),
            Row::LockOnly(_) => None,
        }
    }
}

/// The table row of a segment that is not a readable topic: what it is,
/// its key, shmid and size, the publisher cell, and its attachments, mode,
/// owner and lock; the topic-only cells dashed.
fn segment_row(what: &str, e: &Entry, publisher: String) -> Vec<String> {
    let (mode, owner) = mode_owner(e);
    let mut row = vec![
        what.to_string(),
        key_hex(e.key),
        e.shmid.to_string(),
        human_bytes(e.size),
    ];
    row.extend(["-", "-", "-", "-"].map(String::from));
    row.extend([
        publisher,
        e.nattch.to_string(),
        mode,
        owner,
        if e.locked() { "yes" } else { "no" }.into(),
    ]);
    row.extend(["-", "-"].map(String::from));
    row
}

/// Probe every segment (optionally only `keys`) into rows; other programs'
/// segments are left out unless they sit at a key where a topic belongs:
/// one of `keys`, of `topic_keys` (a config's: [`discover::config_keys`]),
/// or of the derived-key range. Lone semaphores at such keys are rows too.
pub fn rows(keys: &[i32], topic_keys: &[i32]) -> Result<Vec<Row>, Fail> {
    let mut rows = Vec::new();
    let all = discover::entries()?;
    let locks = discover::Locks::read();
    let topic_keys: std::collections::HashSet<i32> =
        keys.iter().chain(topic_keys).copied().collect();
    for e in &all {
        if !keys.is_empty() && !keys.contains(&e.key) {
            continue;
        }
        let e = e.clone();
        match discover::probe(&e) {
            Probe::Topic(seg) => {
                let t = now_ns();
                rows.push(Row::Topic(
                    Box::new(Summary::read(&e, &seg, &locks)),
                    t,
                    None,
                ));
            }
            Probe::Denied => rows.push(Row::Denied(e)),
            Probe::Foreign
                if e.key != 0
                    && (topic_keys.contains(&e.key) || discover::derived_range(e.key)) =>
            {
                rows.push(Row::Foreign(e))
            }
            Probe::Broken(OpenError::NotReady { .. }) => {
                let lock = shmbus_core::lock::publisher_status(e.key);
                rows.push(Row::HalfMade(e, lock))
            }
            Probe::Foreign | Probe::Gone => {}
            Probe::Broken(err) => rows.push(Row::Broken(e, err)),
        }
    }
    for l in discover::lock_only(&topic_keys, &all, &locks) {
        if keys.is_empty() || keys.contains(&l.key) {
            rows.push(Row::LockOnly(l));
        }
    }
    Ok(rows)
}

/// The word for a lone lock's state: held by a pid, free, or unreadable.
pub fn lock_state(l: &LockOnly) -> String {
    match l.status() {
        shmbus_core::PublisherStatus::Alive { pid } => format!("held by {pid}"),
        shmbus_core::PublisherStatus::NotRunning => "free".into(),
        _ => "unreadable".into(),
    }
}

/// The word for a half-created segment's creator, from its lock: "at work"
/// (the lock is held), "gone" (free: a crash left the segment), or
/// "unknown" (the lock is unreadable, or was removed since).
pub fn creator_word(lock: &PublisherStatus) -> &'static str {
    match lock {
        PublisherStatus::Alive { .. } => "at work",
        PublisherStatus::NotRunning => "gone",
        _ => "unknown",
    }
}

/// What a half-created segment is, and what to do about it; `None` for one
/// whose creator is still at work (nothing to do but wait).
///
/// The `shmbus rm` it suggests has `--force` away from a topic key
/// ([`discover::topic_key`]), where rm asks for it.
pub fn half_made_text(e: &Entry, lock: &PublisherStatus) -> Option<(String, String)> {
    let k = key_hex(e.key);
    let force = if discover::topic_key(e.key, &discover::config_keys()) {
        ""
    } else {
        "--force "
    };
    let made = format!(
        "segment {k} (shmid {}, {}, created by {}, pid {}) is half-created: its magic is still 0",
        e.shmid,
        human_bytes(e.size),
        user(e.cuid),
        e.cpid
    );
    match lock {
        PublisherStatus::Alive { .. } => None,
        PublisherStatus::NotRunning => Some((
            format!(
                "{made} and nobody holds its publisher lock: its creator died before it wrote the header, and subscribers cannot read the topic"
            ),
            format!(
                "start its publisher again as {} (a publisher finishes a half-created segment it created, if the topic's sizes are unchanged), or remove it: `shmbus rm {force}{k}`",
                user(e.cuid)
            ),
        )),
        PublisherStatus::Unknown => Some((
            format!(
                "{made} and its publisher lock cannot be read: whether its creator is still at work is unknown"
            ),
            format!(
                "its owner or root sees more with `shmbus list --key {k}`; if its creator is gone, remove it: `shmbus rm {force}{k}`"
            ),
        )),
        PublisherStatus::NoLock => Some((
            format!("{made} and its publisher lock was removed since: no publisher can finish it"),
            format!("remove it as its owner or root: `ipcrm -m {}`", e.shmid),
        )),
    }
}

/// Sample every topic's generation again `window` after the first sample
/// and fill in the rates.
pub fn measure_rates(rows: &mut [Row], window: Duration) {
    let Some(first) = rows.iter().find_map(|r| match r {
        Row::Topic(_, t, _) => Some(*t),
        _ => None,
    }) else {
        return;
    };
    let wait = (first + window.as_nanos() as u64).saturating_sub(now_ns());
    std::thread::sleep(Duration::from_nanos(wait));
    for r in rows.iter_mut() {
        if let Row::Topic(s, t0, rate) = r {
            if let Some((g1, last1)) = discover::generation_of(&s.entry) {
                let wall = now_ns().saturating_sub(*t0);
                *rate = rate_between((s.generation, s.last_mono_ns), (g1, last1), wall);
                s.generation = g1;
                s.last_mono_ns = last1;
            }
        }
    }
}

/// Frames per second between two samples of (generation, newest publish
/// time) taken `wall_ns` apart: the generation delta over the longer of
/// the publish-time span (exact for a periodic publisher, even at one
/// frame) and the wall time (right for bursts). `None` if nothing was
/// published in between (slower than the window can tell).
pub fn rate_between(a: (u64, u64), b: (u64, u64), wall_ns: u64) -> Option<f64> {
    let frames = b.0.checked_sub(a.0).filter(|&n| n > 0)?;
    let span = if a.0 == 0 { 0 } else { b.1.saturating_sub(a.1) };
    Some(frames as f64 / (span.max(wall_ns).max(1) as f64 / 1e9))
}

/// A rate as short text.
pub fn rate_text(r: Option<f64>) -> String {
    match r {
        None => "-".into(),
        Some(r) if r >= 100.0 => format!("{r:.0} Hz"),
        Some(r) => format!("{r:.1} Hz"),
    }
}

fn row_json(r: &Row, now: u64) -> Value {
    match r {
        Row::Topic(s, _, rate) => {
            let (mode, owner) = mode_owner(&s.entry);
            json!({
                "status": "ok",
                "name": s.name,
                "key": key_json(s.entry.key),
                "shmid": s.entry.shmid,
                "size": s.entry.size,
                "slots": s.slots,
                "frame_capacity": s.capacity,
                "schema": s.schema_name,
                "generation": s.generation,
                "publisher_pid": s.header_pid,
                "publisher": publisher_json_aged(&s.publisher, s.age_ns(now)),
                "lock_squatter_uid": s.lock_squatter,
                "publisher_alive": s.publisher.is_alive(),
                "nattch": s.entry.nattch,
                "mode": mode,
                "owner": owner,
                "uid": s.entry.uid,
                "locked": s.entry.locked(),
                "removed": s.entry.removed(),
                "age_ns": s.age_ns(now),
                "rate_hz": rate,
            })
        }
        Row::Denied(e) => {
            let (mode, owner) = mode_owner(e);
            json!({"status": "permission denied", "key": key_json(e.key), "shmid": e.shmid,
                   "size": e.size, "nattch": e.nattch, "mode": mode, "owner": owner, "uid": e.uid})
        }
        Row::Broken(e, err) => {
            let (mode, owner) = mode_owner(e);
            json!({"status": "broken", "error": err.to_string(), "key": key_json(e.key),
                   "shmid": e.shmid, "size": e.size, "nattch": e.nattch, "mode": mode, "owner": owner})
        }
        Row::HalfMade(e, lock) => {
            let (mode, owner) = mode_owner(e);
            json!({"status": "half-created", "creator": creator_word(lock),
                   "publisher": publisher_json(lock), "key": key_json(e.key), "shmid": e.shmid,
                   "size": e.size, "nattch": e.nattch, "mode": mode, "owner": owner,
                   "uid": e.uid, "creator_uid": e.cuid, "cpid": e.cpid,
                   "locked": e.locked(), "removed": e.removed()})
        }
        Row::Foreign(e) => {
            let (mode, owner) = mode_owner(e);
            json!({"status": "not shmbus", "key": key_json(e.key), "shmid": e.shmid,
                   "size": e.size, "nattch": e.nattch, "mode": mode, "owner": owner,
                   "uid": e.uid, "creator_uid": e.cuid, "cpid": e.cpid})
        }
        Row::LockOnly(l) => {
            json!({"status": "lock only", "key": key_json(l.key), "semid": l.semid,
                   "nsems": l.nsems, "mode": format!("{:04o}", l.mode), "owner": user_name(l.uid),
                   "uid": l.uid, "creator_uid": l.cuid, "lock": lock_state(l)})
        }
    }
}

/// A schema's type name as a table cell (`list`, `top`): cut by the
/// bus-wide rule ([`shmbus_core::topic::long_head`]: over 64 characters,
/// its first 40 and its length). Any local user writes the schema of a
/// segment they create, and its name, up to 32 KiB, widened every row of
/// the table to its length; a newline in it made a line of its own that
/// read as another topic's row ([`table`] escapes it; [`out::line`]
/// escapes the terminal's control characters as everywhere).
pub fn schema_cell(name: &str) -> String {
    match shmbus_core::topic::long_head(name) {
        None => name.to_string(),
        Some(head) => format!("{head}... ({} bytes)", name.len()),
    }
}

/// Print rows as an aligned table. A cell never breaks its row: a line
/// break or tab in one is written escaped (`\n`, `\t`).
pub fn table(rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| {
                    if c.contains(['\n', '\r', '\t']) {
                        c.replace('\n', "\\n")
                            .replace('\r', "\\r")
                            .replace('\t', "\\t")
                    } else {
                        c.clone()
                    }
                })
                .collect()
        })
        .collect();
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut w = vec![0; n];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut s = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(c);
                for _ in c.chars().count()..w[i] + 2 {
                    line.push(' ');
                }
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

/// The table's header and one line per row, plus notes for broken rows.
pub fn render(rows: &[Row], now: u64, window_ms: u64) -> (Vec<Vec<String>>, Vec<String>) {
    let mut t = vec![
        [
            "TOPIC",
            "KEY",
            "SHMID",
            "SIZE",
            "SLOTS",
            "FRAME",
            "SCHEMA",
            "GEN",
            "PUBLISHER",
            "ATT",
            "MODE",
            "OWNER",
            "LOCK",
            "AGE",
            "RATE",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>(),
    ];
    let mut notes = Vec::new();
    for r in rows {
        match r {
            Row::Topic(s, _, rate) => {
                let (mode, owner) = mode_owner(&s.entry);
                let name = if s.entry.removed() {
                    format!("{} (removed)", s.name)
                } else {
                    s.name.clone()
                };
                t.push(vec![
                    name,
                    key_hex(s.entry.key),
                    s.entry.shmid.to_string(),
                    human_bytes(s.entry.size),
                    s.slots.to_string(),
                    format!("{} B", s.capacity),
                    schema_cell(&s.schema_name),
                    s.generation.to_string(),
                    match s.lock_squatter {
                        Some(uid) => {
                            let (what, fix) = super::lock_squat_text(&s.entry, uid);
                            notes.push(format!("{}: {what}; {fix}", key_hex(s.entry.key)));
                            format!("lock of {}!", shmbus_toolbox::units::user(uid))
                        }
                        None => match super::held_up(&s.publisher, s.age_ns(now)) {
                            Some(why) => {
                                notes.push(format!(
                                    "{}: '{}': publisher {} but {why}; {}",
                                    key_hex(s.entry.key),
                                    s.name,
                                    publisher_text(&s.publisher),
                                    s.age_ns(now).map_or("no frame yet".into(), |a| format!(
                                        "newest frame {} ago",
                                        human_ns(a)
                                    ))
                                ));
                                format!("{} (held up)", publisher_text(&s.publisher))
                            }
                            None => publisher_text_aged(&s.publisher, s.age_ns(now)),
                        },
                    },
                    s.entry.nattch.to_string(),
                    mode,
                    owner,
                    if s.entry.locked() { "yes" } else { "no" }.into(),
                    s.age_ns(now).map_or("-".into(), human_ns),
                    match rate {
                        None if window_ms > 0 => format!("<{:.0} Hz", 1000.0 / window_ms as f64),
                        r => rate_text(*r),
                    },
                ]);
            }
            Row::LockOnly(l) => {
                notes.push(format!(
                    "{}: a semaphore set (semid {}, {}, created by {}) with no segment: a lock left behind, or a squat that keeps the topic's publisher from starting; remove it with `{}`",
                    key_hex(l.key),
                    l.semid,
                    lock_state(l),
                    user(l.cuid),
                    super::rm::lock_removal(l, &discover::config_keys())
                ));
                let mut row = vec!["(lock only: see below)".to_string(), key_hex(l.key)];
                row.extend(["-", "-", "-", "-", "-", "-"].map(String::from));
                row.push(lock_state(l));
                row.push("-".into());
                row.extend([format!("{:04o}", l.mode), user_name(l.uid)]);
                row.extend(["-", "-", "-"].map(String::from));
                t.push(row);
            }
            Row::HalfMade(e, lock) => {
                let what = match half_made_text(e, lock) {
                    None => "(being created)",
                    Some((what, fix)) => {
                        notes.push(format!("{}: {what}; {fix}", key_hex(e.key)));
                        "(half-created: see below)"
                    }
                };
                let publisher = match lock {
                    PublisherStatus::Alive { pid } => format!("creating {pid}"),
                    other => publisher_text(other),
                };
                t.push(segment_row(what, e, publisher));
            }
            Row::Denied(e) | Row::Broken(e, _) | Row::Foreign(e) => {
                let what = match r {
                    Row::Broken(_, err) => {
                        let live = super::broken_live_publisher(e)
                            .map(|fix| format!("; but {fix}"))
                            .unwrap_or_default();
                        notes.push(format!("{}: {err}{live}", key_hex(e.key)));
                        "(broken: see below)"
                    }
                    Row::Foreign(_) => {
                        notes.push(format!(
                            "{}: not a shmbus topic (shmid {}, created by {}, pid {}) at a key where a topic belongs: a squat keeps that topic's publisher from starting; root removes it with `ipcrm -m {}`",
                            key_hex(e.key),
                            e.shmid,
                            user(e.cuid),
                            e.cpid,
                            e.shmid
                        ));
                        "(not shmbus: see below)"
                    }
                    _ => "(permission denied)",
                };
                t.push(segment_row(what, e, "-".into()));
            }
        }
    }
    (t, notes)
}

/// At most this many other programs' segments in the derived-key range
/// get a row each when none sits at a key the config or `--key` names:
/// more are one line (3,000 of them made 6,001 lines).
const FOREIGN_ROWS: usize = 8;

/// Take out the rows of other programs' segments that sit in the derived
/// key range, away from every key the config names, if there are more than
/// [`FOREIGN_ROWS`]; the one line that stands for them.
fn fold_foreign(rows: &mut Vec<Row>, config_keys: &[i32]) -> Option<String> {
    let stray = |r: &Row| matches!(r, Row::Foreign(e) if !config_keys.contains(&e.key));
    let n = rows.iter().filter(|r| stray(r)).count();
    if n <= FOREIGN_ROWS {
        return None;
    }
    let mut by_creator = std::collections::BTreeMap::<u32, usize>::new();
    rows.retain(|r| match r {
        Row::Foreign(e) if stray(r) => {
            *by_creator.entry(e.cuid).or_default() += 1;
            false
        }
        _ => true,
    });
    let mut creators: Vec<(u32, usize)> = by_creator.into_iter().collect();
    creators.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut who: Vec<String> = creators
        .iter()
        .take(3)
        .map(|(uid, c)| format!("{c} by {}", user(*uid)))
        .collect();
    if creators.len() > 3 {
        who.push(format!("{} more creators", creators.len() - 3));
    }
    Some(format!(
        "{n} segments of other programs (created {}) sit at keys that topic names derive to (0x53......), none at a topic of the config: each keeps the topic whose name derives to its key from starting. `shmbus list --key KEY` shows one, `shmbus list --json` lists them all; root removes one with `ipcrm -m SHMID`",
        who.join(", ")
    ))
}

/// Run `shmbus list`.
pub fn run(a: &ListArgs) -> CmdResult {
    let config_keys = discover::config_keys();
    let mut rows = rows(&a.keys, &config_keys)?;
    if a.window > 0 {
        measure_rates(&mut rows, Duration::from_millis(a.window));
    }
    let now = now_ns();
    if a.json {
        let v: Vec<Value> = rows.iter().map(|r| row_json(r, now)).collect();
        out::line(&serde_json::to_string_pretty(&v).unwrap_or_default())?;
    } else if !rows.is_empty() {
        // Named with --key: every row, as asked.
        let folded = if a.keys.is_empty() {
            fold_foreign(&mut rows, &config_keys)
        } else {
            None
        };
        let (t, notes) = render(&rows, now, a.window);
        if !rows.is_empty() {
            out::raw(&table(&t))?;
        }
        for n in notes.iter().chain(folded.iter()) {
            out::line(n)?;
        }
        return Ok(out::OK);
    }
    if rows.is_empty() {
        if a.keys.is_empty() {
            out::notice("no shmbus topics on this machine: start a publisher (try `shmbus demo`)");
        } else {
            // Only the filter matched nothing: other topics may well exist.
            let keys: Vec<String> = a.keys.iter().map(|k| key_hex(*k)).collect();
            out::notice(&format!(
                "no shmbus topic at --key {}: the filter matched nothing; `shmbus list` without --key shows every topic",
                keys.join(", ")
            ));
        }
        return Ok(out::NOTHING);
    }
    Ok(out::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing reads the semaphore table once, whatever the number of
    /// topics: every row read all of it again to find its lock's creator
    /// (1,000 topics took `list`, `list --json` and `doctor` 15 s each).
    #[test]
    fn a_listing_reads_the_semaphore_table_once() {
        use shmbus_testkit::{Guard, unique_key, watchdog};
        watchdog("list-sem-once", Duration::from_secs(120));
        let keys: Vec<i32> = (0..4).map(|_| unique_key("list-sem-once")).collect();
        let _guards: Vec<Guard> = keys.iter().map(|&k| Guard(k)).collect();
        let _pubs: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                let t = shmbus_core::Topic::new(&format!("sem-once-{i}"))
                    .key(k)
                    .slots(2);
                shmbus_pub::Publisher::<u32>::open(&t).unwrap()
            })
            .collect();
        let reads = || discover::tests::SEM_READS.with(std::cell::Cell::get);
        let before = reads();
        let rows = rows(&keys, &[]).unwrap();
        assert_eq!(
            rows.iter().filter(|r| matches!(r, Row::Topic(..))).count(),
            4
        );
        let now = now_ns();
        let (table, _) = render(&rows, now, 0);
        assert_eq!(table.len(), 5);
        for r in &rows {
            assert_eq!(row_json(r, now)["lock_squatter_uid"], Value::Null);
        }
        assert_eq!(reads() - before, 1, "semaphore table reads for 4 topics");
    }

    #[test]
    fn rates_use_publish_times_for_slow_topics_and_wall_time_for_bursts() {
        // 2 Hz, one frame between samples taken 200 ms apart: exact.
        let r = rate_between((10, 1_000_000_000), (11, 1_500_000_000), 200_000_000).unwrap();
        assert!((r - 2.0).abs() < 1e-9, "{r}");
        // A burst of 20 frames within 1 ms, sampled 200 ms apart: 100 Hz.
        let r = rate_between((10, 1_000_000_000), (30, 1_001_000_000), 200_000_000).unwrap();
        assert!((r - 100.0).abs() < 1e-9, "{r}");
        assert_eq!(rate_between((10, 5), (10, 5), 200_000_000), None);
        // First frames ever: no earlier publish time to compare with.
        let r = rate_between((0, 0), (4, 9_000_000_000), 200_000_000).unwrap();
        assert!((r - 20.0).abs() < 1e-9, "{r}");
    }

    #[test]
    fn a_cell_never_breaks_its_row() {
        let t = table(&[
            vec!["A".into(), "B".into(), "C".into()],
            vec!["x\ny".into(), "a\tb".into(), "c\r".into()],
        ]);
        assert_eq!(t, "A     B     C\nx\\ny  a\\tb  c\\r\n");
        assert_eq!(schema_cell("Imu"), "Imu");
        assert_eq!(
            schema_cell("heapless::Vec<u8, 16>"),
            "heapless::Vec<u8, 16>"
        );
        let long = format!("Imu\nforged{}", "W".repeat(3000));
        let c = schema_cell(&long);
        assert!(
            c.starts_with("Imu\nforged") && c.ends_with("... (3010 bytes)"),
            "{c}"
        );
        assert_eq!(c.chars().count(), 40 + "... (3010 bytes)".len());
        let t = table(&[vec!["A".into(), c]]);
        assert_eq!(t.lines().count(), 1, "{t}");
        assert!(t.starts_with("A  Imu\\nforged"), "{t}");
    }
}
