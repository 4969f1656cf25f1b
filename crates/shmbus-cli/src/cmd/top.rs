//! `shmbus top`: a live table of every topic (rate, age, generation,
//! publisher, attachments), refreshed in place on a terminal and printed
//! as successive plain tables otherwise.
//!
//! Rates are generation deltas between refreshes. Lost frames are a
//! per-reader notion (see `shmbus hz`), so top does not show them; it
//! flags topics whose publisher is not running or has gone quiet.

use std::collections::HashMap;
use std::time::Duration;

use shmbus_core::PublisherStatus;
use shmbus_core::sys::{monotonic_ns, realtime_ns};
use shmbus_toolbox::liveness::{Liveness, Watch};

use super::list::{Row, rate_between, rate_text, rows, table};
use super::publisher_text;
use crate::args::TopArgs;
use crate::out::{self, CmdResult, Fail, human_ns, key_hex, utc};

/// The state word for a topic: publisher, frames, staleness.
pub fn state(
    removed: bool,
    alive: bool,
    generation: u64,
    rate: Option<f64>,
    age_ns: Option<u64>,
    interval: Duration,
) -> &'static str {
    if removed {
        "REMOVED"
    } else if !alive {
        "NO PUBLISHER"
    } else if generation == 0 {
        "waiting"
    } else if rate == Some(0.0) && age_ns.is_some_and(|a| a > 2 * interval.as_nanos() as u64) {
        "STALE"
    } else {
        "ok"
    }
}

/// The STATE cell: [`state`], and for a topic whose live publisher sends
/// nothing, why, when its process says (stopped, or blocked in the kernel:
/// [`shmbus_toolbox::process::held_up`]).
fn state_text(state: &'static str, publisher: &PublisherStatus) -> String {
    match (state, publisher) {
        ("STALE" | "waiting", PublisherStatus::Alive { pid }) => {
            match shmbus_toolbox::process::held_up(*pid) {
                Some(why) => format!("{state}: publisher {why}"),
                None => state.into(),
            }
        }
        _ => state.into(),
    }
}

/// Run `shmbus top`.
pub fn run(a: &TopArgs) -> CmdResult {
    out::refuse_closed_stdout("the table would be shown to no one, so no topic is watched")?;
    let interval = a.interval;
    let stop_at = a.duration.map(|d| monotonic_ns() + d.as_nanos() as u64);
    // Redrawn in place only on a terminal that can move its cursor.
    let tty = shmbus_toolbox::term::stdout_can_redraw();
    // shmid -> (generation, newest publish time, sample time)
    let mut prev: HashMap<i32, (u64, u64, u64)> = HashMap::new();
    // shmid -> whether a topic without a lock still moves (a lock removed
    // under a publisher that goes on publishing is a running publisher).
    let mut watches: HashMap<i32, Watch> = HashMap::new();
    // The config's keys, read once (was: on every refresh).
    let config_keys = crate::discover::config_keys();
    for r in rows(&a.keys, &config_keys)? {
        if let Row::Topic(s, t, _) = r {
            prev.insert(s.entry.shmid, (s.generation, s.last_mono_ns, t));
            let mut w = Watch::new();
            w.look(s.publisher, s.generation, s.age(t), t);
            watches.insert(s.entry.shmid, w);
        }
    }
    let mut refreshes: u64 = 0;
    let mut tick = monotonic_ns();
    loop {
        tick += interval.as_nanos() as u64;
        let now = monotonic_ns();
        let wake = stop_at.map_or(tick, |s| s.min(tick));
        let mut now = now;
        // A second at a time, looking whether anyone still reads: `top
        // --interval 60 | head` ended at the next refresh, a minute later.
        while wake > now {
            if out::reader_gone() {
                return Err(Fail::pipe());
            }
            std::thread::sleep(Duration::from_nanos(wake - now).min(Duration::from_secs(1)));
            now = monotonic_ns();
        }
        let list = rows(&a.keys, &config_keys)?;
        let now = monotonic_ns();
        let mut t = vec![
            [
                "TOPIC",
                "KEY",
                "SCHEMA",
                "RATE",
                "AGE",
                "GEN",
                "PUBLISHER",
                "ATT",
                "LOCK",
                "STATE",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
        ];
        let mut next = HashMap::new();
        let mut next_watches = HashMap::new();
        for r in &list {
            match r {
                Row::Topic(s, ts, _) => {
                    let mut watch = watches.remove(&s.entry.shmid).unwrap_or_default();
                    let liveness = watch.look(s.publisher, s.generation, s.age(*ts), *ts);
                    next_watches.insert(s.entry.shmid, watch);
                    let rate = prev.get(&s.entry.shmid).map(|&(g, last, t0)| {
                        let (a, b) = ((g, last), (s.generation, s.last_mono_ns));
                        rate_between(a, b, ts.saturating_sub(t0)).unwrap_or(0.0)
                    });
                    next.insert(s.entry.shmid, (s.generation, s.last_mono_ns, *ts));
                    let age = s.age_ns(now);
                    let removed = s.entry.removed();
                    t.push(vec![
                        if removed {
                            format!("{} (removed)", s.name)
                        } else {
                            s.name.clone()
                        },
                        key_hex(s.entry.key),
                        super::list::schema_cell(&s.schema_name),
                        rate_text(rate),
                        age.map_or("-".into(), human_ns),
                        s.generation.to_string(),
                        match liveness {
                            // Its lock removed (`ipcrm -s`, logind's
                            // `RemoveIPC`) while frames still come: it said
                            // "none" and NO PUBLISHER beside the rate.
                            Liveness::NoLockPublishing => "running, no lock".into(),
                            _ => publisher_text(&s.publisher),
                        },
                        s.entry.nattch.to_string(),
                        if s.entry.locked() { "yes" } else { "no" }.into(),
                        state_text(
                            state(
                                removed,
                                liveness.is_running(),
                                s.generation,
                                rate,
                                age,
                                interval,
                            ),
                            &s.publisher,
                        ),
                    ]);
                }
                Row::Denied(e) => t.push(vec![
                    "(permission denied)".into(),
                    key_hex(e.key),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    e.nattch.to_string(),
                    if e.locked() { "yes" } else { "no" }.into(),
                    "-".into(),
                ]),
                Row::Foreign(e) => t.push(not_a_topic_row(
                    "(not shmbus)",
                    e.key,
                    "-".into(),
                    e.nattch.to_string(),
                    "SQUAT? see shmbus list",
                )),
                Row::LockOnly(l) => t.push(not_a_topic_row(
                    "(lock only)",
                    l.key,
                    super::list::lock_state(l),
                    "-".into(),
                    "LOCK ONLY: see shmbus list",
                )),
                Row::HalfMade(e, lock) => t.push(not_a_topic_row(
                    "(half-created)",
                    e.key,
                    publisher_text(lock),
                    e.nattch.to_string(),
                    if lock.is_alive() {
                        "BEING CREATED"
                    } else {
                        "HALF-CREATED: see shmbus list"
                    },
                )),
                Row::Broken(e, _) => t.push(not_a_topic_row(
                    "(broken)",
                    e.key,
                    "-".into(),
                    e.nattch.to_string(),
                    "BROKEN: see shmbus list",
                )),
            }
        }
        prev = next;
        watches = next_watches;
        let head = format!(
            "shmbus top: {} topic{} at {} UTC, every {:?}{}",
            list.len(),
            if list.len() == 1 { "" } else { "s" },
            utc((realtime_ns() / 1_000_000_000) as i64),
            interval,
            if tty { " (Ctrl-C to quit)" } else { "" }
        );
        // An empty table said nothing of why: a mistyped --key looked the
        // same as a bus whose publishers have not started yet.
        let body = if list.is_empty() {
            nothing_yet(&a.keys)
        } else {
            table(&t)
        };
        if tty {
            out::raw_after("\x1b[H\x1b[2J", &format!("{head}\n\n{body}"))?;
        } else {
            out::raw(&format!("{head}\n{body}\n"))?;
        }
        refreshes += 1;
        if a.count.is_some_and(|c| refreshes >= c) || stop_at.is_some_and(|s| monotonic_ns() >= s) {
            return Ok(out::OK);
        }
    }
}

/// What an empty refresh shows instead of a table with no rows.
fn nothing_yet(keys: &[i32]) -> String {
    if keys.is_empty() {
        "no shmbus topics on this machine yet: start a publisher (try `shmbus demo`)".into()
    } else {
        let keys: Vec<String> = keys.iter().map(|&k| key_hex(k)).collect();
        format!(
            "nothing at {} {} yet (see `shmbus list` for the topics there are)",
            if keys.len() == 1 { "key" } else { "keys" },
            keys.join(", ")
        )
    }
}

/// A row of something at a key that is no readable topic (another
/// program's segment, a lock alone, a half-created or broken topic): its
/// label, key, publisher and attach columns and its state; no rates.
fn not_a_topic_row(
    what: &str,
    key: i32,
    publisher: String,
    nattch: String,
    state: &str,
) -> Vec<String> {
    let dash = || "-".to_string();
    vec![
        what.into(),
        key_hex(key),
        dash(),
        dash(),
        dash(),
        dash(),
        publisher,
        nattch,
        dash(),
        state.into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        let i = Duration::from_secs(1);
        assert_eq!(
            state(false, false, 5, Some(1.0), Some(0), i),
            "NO PUBLISHER"
        );
        assert_eq!(state(false, true, 0, None, None, i), "waiting");
        assert_eq!(
            state(false, true, 5, Some(0.0), Some(3_000_000_000), i),
            "STALE"
        );
        assert_eq!(state(false, true, 5, Some(10.0), Some(1_000), i), "ok");
        assert_eq!(state(true, true, 5, Some(10.0), Some(1_000), i), "REMOVED");
    }
}
