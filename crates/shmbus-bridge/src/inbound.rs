//! Broker to board: each `[[bridge.in]]` republishes one broker topic as a
//! local topic of a declared schema.
//!
//! ## A message's way in
//! 1. The payload is read as the route's `format`: `json` (the value),
//!    `envelope` (an object whose `value` is the value, as a bridge sends
//!    it) or `postcard` (a frame).
//! 2. The shared codec checks it against the declared schema: every field
//!    present, integers in range, strings and lists within their declared
//!    capacities, the frame within the topic's frame capacity. A payload
//!    that fails is **bad**: counted, reported (the first one on stderr,
//!    the latest reason in `<prefix>/<board>/$in/<topic>`), never published.
//! 3. The frame is published on the local topic, which the bridge opens as
//!    its publisher on the first valid message.
//!
//! ## Never fighting a local publisher
//! A topic has one live publisher. If another local process publishes the
//! topic (a sensor, `shmbus pub`), opening fails with its pid: the bridge
//! does not publish, counts the message as **refused**, reports who holds
//! the topic, and tries again at most once a second, so it takes over only
//! after that process has stopped. A segment of another schema at the key
//! is refused the same way (remove it, or fix the declaration). A local
//! topic removed under the bridge (`shmbus rm`) is noticed by the publish
//! it affects (one check after each publish), created again, and the
//! message published on it; each time is counted (`recreated`,
//! `in.recreated`). So is its publisher lock removed alone (`ipcrm -s`),
//! which the bridge takes again at once. Between messages the run looks
//! every [`WATCH_INTERVAL`] ([`Inbound::watch`]): a removed topic is
//! created again then, and the broker asked for its retained value anew.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use shmbus_codec::Codec;
use shmbus_config::bridge::InFormat;
use shmbus_core::OpenError;
use shmbus_pub::RawPublisher;

use crate::names::Names;
use crate::outbox::{Message, Outbox, Qos};
use crate::settings::InTopic;
use crate::stats::Stats;

/// How often a refused or failed open is tried again.
const REOPEN: Duration = Duration::from_secs(1);

/// How often the run calls [`Inbound::watch`]: a local topic removed
/// under the bridge, or its lock, is back within this.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// One `[[bridge.in]]` at run time.
struct Route {
    t: InTopic,
    codec: Codec,
    schema: Vec<u8>,
    capacity: usize,
    publisher: Option<RawPublisher>,
    next_open: Option<Instant>,
    state: &'static str,
    holder: Option<i32>,
    /// The latest problem's reason: history, kept after the route recovers
    /// (`state` says what is now), with when it last happened.
    last_error: Option<String>,
    last_error_at: Option<(SystemTime, Instant)>,
    received: u64,
    published: u64,
    bad: u64,
    refused: u64,
    recreated: u64,
    /// Retained copies of the frame the topic already holds, not published.
    replayed: u64,
    /// Empty messages (a retained message cleared on the broker).
    cleared: u64,
    /// The frame last published, while the topic still holds it.
    last_frame: Option<Vec<u8>>,
    warned_bad: bool,
    warned_open: Option<String>,
}

impl Route {
    /// A problem now: its reason and time replace the previous ones.
    fn set_error(&mut self, why: String) {
        self.last_error = Some(why);
        self.last_error_at = Some((SystemTime::now(), Instant::now()));
    }
}

/// Every `[[bridge.in]]`.
pub struct Inbound {
    routes: Vec<Route>,
    names: Names,
    outbox: Arc<Outbox>,
    stats: Arc<Stats>,
    /// A message on a topic no route takes was named on stderr.
    warned_unmatched: bool,
    /// [`Inbound::watch`] created a local topic again: the engine is to
    /// subscribe again, so the broker sends its retained messages (the
    /// current value) anew ([`Inbound::take_resubscribe`]).
    resubscribe: bool,
}

impl Inbound {
    /// Check every declared schema (errors at the schema's `path:line:col`).
    pub fn new(
        list: &[InTopic],
        names: Names,
        outbox: Arc<Outbox>,
        stats: Arc<Stats>,
    ) -> Result<Inbound, String> {
        let mut routes = Vec::new();
        let mut errs = Vec::new();
        for t in list {
            let codec = match Codec::parse(&t.schema) {
                Ok(c) => c,
                Err(e) => {
                    errs.push(format!("{}: schema: {e}", t.schema_at));
                    continue;
                }
            };
            let capacity = match codec.frame_capacity() {
                Ok(n) => n,
                Err(why) => {
                    errs.push(format!("{}: schema: {why}", t.schema_at));
                    continue;
                }
            };
            routes.push(Route {
                schema: codec.schema_bytes(),
                codec,
                capacity,
                t: t.clone(),
                publisher: None,
                next_open: None,
                state: "waiting",
                holder: None,
                last_error: None,
                last_error_at: None,
                received: 0,
                published: 0,
                bad: 0,
                refused: 0,
                recreated: 0,
                replayed: 0,
                cleared: 0,
                last_frame: None,
                warned_bad: false,
                warned_open: None,
            });
        }
        if !errs.is_empty() {
            return Err(errs.join("\n"));
        }
        let inbound = Inbound {
            routes,
            names,
            outbox,
            stats,
            warned_unmatched: false,
            resubscribe: false,
        };
        for i in 0..inbound.routes.len() {
            inbound.report(i);
        }
        Ok(inbound)
    }

    /// Open every local topic now (a failure is reported and tried again
    /// when messages come), so local subscribers can attach before the
    /// first message arrives.
    pub fn open_all(&mut self) {
        for i in 0..self.routes.len() {
            open(&mut self.routes[i]);
            self.routes[i].next_open = None;
            self.report(i);
        }
    }

    /// The run failed before it did anything (a broker that refused it at
    /// the first connection, a thread that could not start): remove every
    /// local topic it created and published nothing on, segment and
    /// publisher lock, so that nothing of a run that never ran is left
    /// behind. Topics it reopened (a bridge before it made them), or
    /// published on, stay. Every route's publisher is let go: the run is
    /// over.
    pub fn remove_unused(&mut self) {
        for r in &mut self.routes {
            if let Some(p) = r.publisher.take() {
                if let Err(e) = p.remove_if_unused() {
                    shmbus_toolbox::say!(
                        "shmbus-bridge: cannot remove topic '{}', which this run created: {e}",
                        r.t.cfg.name
                    );
                }
            }
        }
    }

    /// Look after every open local topic; the run calls this every
    /// [`WATCH_INTERVAL`]. A topic removed under the bridge (`shmbus rm
    /// --force`, `ipcrm -M`, systemd-logind's `RemoveIPC`) is created again
    /// at once, as at the start, so local subscribers find it; its publisher
    /// lock removed alone (`ipcrm -s`) is taken again. Each is counted in
    /// `recreated`. Both used to wait for the next broker message, which
    /// may come hours later: until then the topic was gone (or had no
    /// publisher, and a second one could start), though the docs promised
    /// a new lock within half a second.
    ///
    /// A topic created again is empty: its value went with the old
    /// segment. The engine then subscribes again
    /// ([`Inbound::take_resubscribe`]), and the broker sends its retained
    /// message (the sender's current value, if it retains it) anew, which
    /// is published on the new segment; nothing that was not retained is
    /// repeated.
    pub fn watch(&mut self) {
        for i in 0..self.routes.len() {
            let before = self.summary(i);
            let r = &mut self.routes[i];
            if drop_if_removed(r) {
                // The frame it held is gone: a retained copy is news now.
                r.last_frame = None;
                r.recreated += 1;
                self.stats.in_recreated.fetch_add(1, Ordering::Relaxed);
                open(r);
                self.resubscribe = true;
            } else if relock_if_lock_removed(r) {
                r.recreated += 1;
                self.stats.in_recreated.fetch_add(1, Ordering::Relaxed);
            }
            if self.summary(i) != before {
                self.report(i);
            }
        }
    }

    /// True once after [`Inbound::watch`] created a local topic again: the
    /// engine subscribes to [`Inbound::subscriptions`] again, so the broker
    /// sends the retained messages anew (copies of frames the topics still
    /// hold are `replayed`, not published again).
    pub fn take_resubscribe(&mut self) -> bool {
        std::mem::take(&mut self.resubscribe)
    }

    /// The broker topics to subscribe to.
    pub fn subscriptions(&self) -> Vec<(String, Qos)> {
        self.routes
            .iter()
            .map(|r| (r.t.remote.clone(), r.t.qos))
            .collect()
    }

    /// Take one broker message, sent live.
    pub fn handle(&mut self, topic: &str, payload: &[u8]) {
        self.handle_message(topic, payload, false);
    }

    /// Take one broker message; `retained`: the broker sends it because it
    /// keeps it (MQTT's RETAIN flag on delivery: after every connect and
    /// new subscription), not because someone just published it. A
    /// retained copy of the frame this route last published, which the
    /// local topic still holds, is not published again (`replayed`): a
    /// link drop would otherwise turn one setpoint into two frames.
    pub fn handle_message(&mut self, topic: &str, payload: &[u8], retained: bool) {
        let Some(i) = self.routes.iter().position(|r| r.t.remote == topic) else {
            // Never asked for (the subscriptions are exact topics): a
            // broker that delivers under another name. Counted, said once.
            self.stats.in_unmatched.fetch_add(1, Ordering::Relaxed);
            if !self.warned_unmatched {
                self.warned_unmatched = true;
                shmbus_toolbox::say!(
                    "shmbus-bridge: a message on broker topic \"{}\", which no [[bridge.in]] takes: dropped (counted in $stats in.unmatched; further ones are not printed)",
                    shmbus_core::topic::shown(topic)
                );
            }
            return;
        };
        self.stats.in_received.fetch_add(1, Ordering::Relaxed);
        let before = self.summary(i);
        let r = &mut self.routes[i];
        r.received += 1;
        let frame = frame_of(r, payload).map_err(shorten);
        // A good frame needs the topic open (the start opened it unless it
        // failed then, e.g. a live local publisher since gone). The open
        // comes first so that it reads what the topic already holds (a
        // bridge before this one published it; the segment outlives it):
        // a retained copy of that frame is a replay, not news.
        if frame.is_ok() && r.publisher.is_none() {
            open(r);
        }
        let replay = retained
            && frame
                .as_ref()
                .is_ok_and(|f| r.last_frame.as_deref() == Some(f.as_slice()))
            && r.publisher.as_ref().is_some_and(|p| !p.is_removed());
        match frame {
            // How a broker's retained message is cleared (`mosquitto_pub
            // -r -n`), sent to subscribers too: nothing to publish, and not
            // a bad payload (an empty frame of a zero-size type is taken).
            Err(_) if payload.is_empty() => {
                r.cleared += 1;
                self.stats.in_cleared.fetch_add(1, Ordering::Relaxed);
            }
            Err(why) => {
                r.bad += 1;
                self.stats.in_bad.fetch_add(1, Ordering::Relaxed);
                if !r.warned_bad {
                    r.warned_bad = true;
                    shmbus_toolbox::say!(
                        "shmbus-bridge: {} -> topic '{}': bad payload, not published: {why} (counted in $stats and {}; further ones are not printed)",
                        r.t.remote,
                        r.t.cfg.name,
                        self.names.inbound(&r.t.cfg.name)
                    );
                }
                r.set_error(why);
                // The message changes with every bad payload only in its
                // counters: send it when the state changes, else on the
                // statistics tick.
                if before.0 != "bad" {
                    r.state = "bad";
                }
            }
            Ok(_) if replay => {
                r.replayed += 1;
                self.stats.in_replayed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(frame) => {
                // A local topic removed under the bridge (`shmbus rm`),
                // before or during this publish, has the frame on a segment
                // no new subscriber sees: one IPC_STAT after each publish
                // notices it, and the frame goes again on the segment
                // created anew. Each removal is counted (`in.recreated`).
                let mut retried = false;
                loop {
                    if r.publisher.is_none() {
                        open(r);
                    }
                    match r.publisher.as_mut().map(|p| p.publish_bytes(&frame)) {
                        None => {
                            r.refused += 1;
                            self.stats.in_refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Ok(_)) => {
                            if drop_if_removed(r) {
                                r.recreated += 1;
                                self.stats.in_recreated.fetch_add(1, Ordering::Relaxed);
                                if !retried {
                                    retried = true;
                                    continue;
                                }
                            }
                            // Its lock alone removed (`ipcrm -s`): the frame
                            // is on the topic's segment, but readers see no
                            // publisher and a second one could start. Take
                            // a lock again now (counted as a recreation).
                            if relock_if_lock_removed(r) {
                                r.recreated += 1;
                                self.stats.in_recreated.fetch_add(1, Ordering::Relaxed);
                            }
                            r.published += 1;
                            r.state = "publishing";
                            r.last_frame = Some(frame.clone());
                            self.stats.in_published.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Err(e)) => {
                            r.refused += 1;
                            self.stats.in_refused.fetch_add(1, Ordering::Relaxed);
                            r.state = "error";
                            r.set_error(format!("publish: {e}"));
                        }
                    }
                    break;
                }
            }
        }
        if self.summary(i) != before {
            self.report(i);
        }
    }

    /// The broker sent a message too big to read on one of these topics
    /// (which one cannot be known): every route is `paused` for a while,
    /// with the reason.
    pub fn pause(&mut self, why: &str) {
        for i in 0..self.routes.len() {
            let r = &mut self.routes[i];
            r.state = "paused";
            r.set_error(why.to_string());
            self.report(i);
        }
    }

    /// The subscriptions are made again after a pause.
    pub fn resume(&mut self) {
        for i in 0..self.routes.len() {
            let r = &mut self.routes[i];
            if r.state == "paused" {
                r.state = if r.publisher.is_some() {
                    "publishing"
                } else {
                    "waiting"
                };
                self.report(i);
            }
        }
    }

    /// The broker's answer to the subscriptions, one result per route in
    /// [`Inbound::subscriptions`] order: a route the broker did not
    /// subscribe is `unsubscribed` with the reason (none of its messages
    /// can arrive); an accepted one that was `unsubscribed` is back to
    /// `publishing` or `waiting`.
    pub fn subscribed(&mut self, results: &[Result<(), String>]) {
        for (i, res) in results.iter().enumerate().take(self.routes.len()) {
            let r = &mut self.routes[i];
            match res {
                Err(why) => {
                    r.state = "unsubscribed";
                    r.set_error(format!("not subscribed: {why}"));
                }
                Ok(()) if r.state == "unsubscribed" => {
                    r.state = if r.publisher.is_some() {
                        "publishing"
                    } else {
                        "waiting"
                    };
                }
                Ok(()) => continue,
            }
            self.report(i);
        }
    }

    /// What changes a route's report at once (its other counters go out on
    /// the statistics tick).
    fn summary(&self, i: usize) -> (&'static str, Option<i32>, Option<String>, u64, u64) {
        let r = &self.routes[i];
        (
            r.state,
            r.holder,
            r.last_error.clone(),
            r.recreated,
            r.cleared,
        )
    }

    /// Send every route's state and counters (the statistics tick).
    pub fn report_all(&self) {
        for i in 0..self.routes.len() {
            self.report(i);
        }
    }

    fn report(&self, i: usize) {
        let r = &self.routes[i];
        let mut v = json!({
            "from": r.t.remote,
            "topic": r.t.cfg.name,
            "state": r.state,
            "received": r.received,
            "published": r.published,
            "bad": r.bad,
            "refused": r.refused,
            "recreated": r.recreated,
            "replayed": r.replayed,
            "cleared": r.cleared,
        });
        if let Some(pid) = r.holder {
            v["holder_pid"] = json!(pid);
        }
        if let Some(e) = &r.last_error {
            v["last_error"] = json!(e);
        }
        // When, so a `last_error` of hours ago is not read as the present:
        // wall-clock ns (as a frame's `real_ns`) and the seconds between it
        // and this report (sent on every change and statistics tick).
        if let Some((wall, mono)) = r.last_error_at {
            if let Ok(d) = wall.duration_since(UNIX_EPOCH) {
                v["last_error_ns"] = json!(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            }
            v["last_error_age_s"] = json!(mono.elapsed().as_secs());
        }
        self.outbox.set_state(Message {
            topic: self.names.inbound(&r.t.cfg.name),
            payload: serde_json::to_vec(&v).unwrap_or_default(),
            qos: Qos::AtLeastOnce,
            retain: true,
        });
    }
}

/// The longest reason kept for a bad payload: the codec's message can
/// quote the payload (an unknown field's name), which the sender chooses.
const MAX_REASON: usize = 300;

/// `why`, cut to [`MAX_REASON`] bytes (at a character boundary).
fn shorten(why: String) -> String {
    if why.len() <= MAX_REASON {
        return why;
    }
    let mut end = MAX_REASON;
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &why[..end], why.len())
}

/// The payload as a frame of the route's schema, or why not.
fn frame_of(r: &Route, payload: &[u8]) -> Result<Vec<u8>, String> {
    let json = |payload: &[u8]| -> Result<Value, String> {
        shmbus_codec::parse_json(payload).map_err(|e| {
            let what = if shmbus_codec::json_refused(&e) {
                "JSON refused"
            } else {
                "not JSON"
            };
            format!("{what}: {e}")
        })
    };
    match r.t.format {
        InFormat::Json => {
            let v = json(payload)?;
            r.codec
                .encode_within(&v, r.capacity)
                .map_err(|e| e.to_string())
        }
        InFormat::Envelope => {
            let v = json(payload)?;
            let value = v
                .get("value")
                .ok_or("not an envelope: a JSON object with a \"value\" member is expected")?;
            r.codec
                .encode_within(value, r.capacity)
                .map_err(|e| format!("in `value`: {e}"))
        }
        InFormat::Postcard => {
            if payload.len() > r.capacity {
                return Err(format!(
                    "{} {} the topic's frame capacity of {}",
                    shmbus_core::plural::count(payload.len(), "byte"),
                    if payload.len() == 1 {
                        "exceeds"
                    } else {
                        "exceed"
                    },
                    shmbus_core::plural::count(r.capacity, "byte")
                ));
            }
            r.codec
                .decode(payload)
                .map(|_| payload.to_vec())
                .map_err(|e| format!("not a frame of the declared schema: {e}"))
        }
    }
}

/// If someone removed the local topic (`shmbus rm`, `ipcrm`: the key no
/// longer leads to its segment), let go of it, so the next open creates it
/// again; true if so.
fn drop_if_removed(r: &mut Route) -> bool {
    if !r.publisher.as_ref().is_some_and(RawPublisher::is_removed) {
        return false;
    }
    shmbus_toolbox::say!(
        "shmbus-bridge: {} -> topic '{}' was removed; creating it again (counted in $stats in.recreated)",
        r.t.remote,
        r.t.cfg.name
    );
    r.publisher = None;
    r.next_open = None;
    true
}

/// If the local topic's publisher lock alone was removed (`ipcrm -s`),
/// open the topic again at once, which takes a new lock on the same
/// segment (or is refused, and says why, if another publisher took it
/// first); true if so.
fn relock_if_lock_removed(r: &mut Route) -> bool {
    if !r.publisher.as_ref().is_some_and(RawPublisher::lock_removed) {
        return false;
    }
    shmbus_toolbox::say!(
        "shmbus-bridge: {} -> the publisher lock of topic '{}' was removed (`ipcrm -s`); taking it again (counted in $stats in.recreated)",
        r.t.remote,
        r.t.cfg.name
    );
    r.publisher = None;
    r.next_open = None;
    open(r);
    true
}

/// The newest frame a topic holds, if it can be read now (a read-only
/// attach; any error is "not known").
fn newest_frame(topic: &shmbus_core::topic::Topic) -> Option<Vec<u8>> {
    let mut sub = shmbus_sub::RawSubscriber::attach(topic).ok()?;
    let mut buf = Vec::new();
    sub.latest_bytes(&mut buf).ok()??;
    Some(buf)
}

/// Try to become the local topic's publisher (at most once per second).
fn open(r: &mut Route) {
    let now = Instant::now();
    if r.next_open.is_some_and(|t| now < t) {
        return;
    }
    r.next_open = Some(now + REOPEN);
    let name = r.t.cfg.name.clone();
    let (state, holder, err) = match RawPublisher::open(&r.t.topic, &r.schema, r.capacity) {
        Ok(p) => {
            // A topic that was there before the open (a bridge before this
            // one published it; the segment outlives it): its newest frame
            // is what the topic holds, so a retained copy of it from the
            // broker is a replay, not news.
            if !p.created() && r.last_frame.is_none() {
                r.last_frame = newest_frame(&r.t.topic);
            }
            r.publisher = Some(p);
            r.state = "publishing";
            r.holder = None;
            r.warned_open = None;
            return;
        }
        Err(OpenError::PublisherActive { pid, .. }) => (
            "refused",
            Some(pid),
            format!(
                "topic '{name}' has a live local publisher (pid {pid}); the bridge does not fight it: stop that process, or take the broker topic into another topic"
            ),
        ),
        Err(e) => ("error", None, format!("cannot open topic '{name}': {e}")),
    };
    r.state = state;
    r.holder = holder;
    if r.warned_open.as_deref() != Some(err.as_str()) {
        shmbus_toolbox::say!("shmbus-bridge: {} -> {err}", r.t.remote);
        r.warned_open = Some(err.clone());
    }
    r.set_error(err);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message on a broker topic no route takes (a broker that delivers
    /// a shared subscription under another name, or one that misbehaves)
    /// is counted in `in.unmatched`: it used to vanish without a trace.
    #[test]
    fn a_message_no_route_takes_is_counted() {
        let stats = Arc::new(Stats::default());
        let outbox = Arc::new(Outbox::new(10, 1 << 20, stats.clone()));
        let mut inbound = Inbound::new(&[], Names::new("p", "b"), outbox, stats.clone()).unwrap();
        inbound.handle("ground/sp", b"{}");
        inbound.handle("ground/sp", b"{}");
        inbound.handle("other\u{1b}[2J", b"");
        let v = stats.to_json((0, 0, 0, 0));
        assert_eq!(v["in"]["unmatched"], 3, "{v}");
        assert_eq!(v["in"]["received"], 0, "{v}");
    }

    /// A bridge restarted (a crash, an upgrade) found the broker's
    /// retained setpoint new: the bridge before it had published it, and
    /// the local topic, which outlives the bridge, still held it, but the
    /// new bridge's memory of what it published was empty, so the frame
    /// went out again as a new generation. The open now reads what the
    /// topic holds: a retained copy of it is `replayed`. A retained
    /// message into an empty topic, or a retained value that differs, is
    /// still published.
    #[test]
    fn a_restarted_bridge_does_not_publish_the_retained_frame_the_topic_holds() {
        let key = shmbus_testkit::unique_key("restart-replay");
        let _guard = shmbus_testkit::Guard(key);
        let route = InTopic::for_test("sp", "g/sp", key);
        let start = || {
            let stats = Arc::new(Stats::default());
            let outbox = Arc::new(Outbox::new(10, 1 << 20, stats.clone()));
            let inbound = Inbound::new(
                std::slice::from_ref(&route),
                Names::new("p", "b"),
                outbox,
                stats.clone(),
            )
            .unwrap();
            (inbound, stats)
        };
        let count = |s: &Stats, k: &str| s.to_json((0, 0, 0, 0))["in"][k].as_u64().unwrap();
        let generation = || {
            shmbus_sub::RawSubscriber::attach(&route.topic)
                .unwrap()
                .generation()
        };
        // The first bridge: the retained setpoint into an empty topic.
        let (mut first, stats) = start();
        first.handle_message("g/sp", br#"{"a":7}"#, true);
        assert_eq!(count(&stats, "published"), 1);
        assert_eq!(generation(), 1);
        drop(first);
        // The next bridge gets the same retained message at its subscribe.
        let (mut next, stats) = start();
        next.handle_message("g/sp", br#"{ "a": 7 }"#, true);
        assert_eq!(
            count(&stats, "replayed"),
            1,
            "{}",
            stats.to_json((0, 0, 0, 0))
        );
        assert_eq!(count(&stats, "published"), 0);
        assert_eq!(generation(), 1, "the setpoint was published again");
        // A retained value the topic does not hold is news.
        next.handle_message("g/sp", br#"{"a":8}"#, true);
        assert_eq!(count(&stats, "published"), 1);
        assert_eq!(generation(), 2);
        drop(next);
    }

    /// A publish that fails set the route's `last_error` but not when
    /// (`last_error_ns`, `last_error_age_s`): the report gave the time of
    /// an older problem, or none. A publisher used by a `fork()` child
    /// fails its publish (`ForkedChild`): the child's route says when.
    #[test]
    fn a_failed_publish_says_when_it_happened() {
        let key = shmbus_testkit::unique_key("publish-error-time");
        let _guard = shmbus_testkit::Guard(key);
        let route = InTopic::for_test("sp", "g/sp", key);
        let stats = Arc::new(Stats::default());
        let outbox = Arc::new(Outbox::new(10, 1 << 20, stats.clone()));
        let mut inbound = Inbound::new(
            std::slice::from_ref(&route),
            Names::new("p", "b"),
            outbox,
            stats,
        )
        .unwrap();
        inbound.open_all();
        assert_eq!(inbound.routes[0].state, "publishing");
        let child = shmbus_testkit::ForkChild::start(move || {
            inbound.handle("g/sp", br#"{"a":7}"#);
            let r = &inbound.routes[0];
            if r.state != "error"
                || !r
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("publish"))
            {
                return 2;
            }
            if r.last_error_at.is_none() {
                return 3; // the error's time was not recorded
            }
            0
        })
        .unwrap();
        assert_eq!(child.wait(Duration::from_secs(60)), Ok(0));
    }

    #[test]
    fn reasons_over_the_limit_are_cut_at_a_character_boundary() {
        let short = "x".repeat(MAX_REASON);
        assert_eq!(shorten(short.clone()), short);
        // 'é' is two bytes: byte 300 falls inside one after an odd prefix.
        let long = format!("a{}", "é".repeat(400));
        let cut = shorten(long.clone());
        assert!(
            cut.ends_with(&format!("… ({} bytes in all)", long.len())),
            "{cut}"
        );
        assert!(
            cut.starts_with("aé") && cut.len() < MAX_REASON + 40,
            "{cut}"
        );
    }
}
