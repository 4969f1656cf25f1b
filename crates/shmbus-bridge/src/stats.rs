//! The bridge's counters: what it read, sent, dropped and refused.
//!
//! Published as JSON on `<prefix>/<board>/$stats` every
//! `stats_interval_s`, and printed when the bridge stops. A message on its
//! way out is counted at each step: `handed` (taken from the outbox by the
//! engine), `written` (a PUBLISH written to the link), `acknowledged`
//! (QoS 1/2: PUBACK or PUBCOMP from the broker) and `delivered` (what the
//! broker has as far as the bridge can know: QoS 1/2 acknowledged, QoS 0
//! written; `docs/BRIDGE.md` has every counter). Every loss has a
//! counter: `missed` (frames overwritten in the ring before the bridge read
//! them), `dropped` (messages pushed out of the full outbox while the broker
//! was away), `in.bad` and `in.refused` (broker messages not published on
//! the bus).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

/// Counters of one sent topic.
#[derive(Debug, Default)]
pub struct TopicStats {
    /// Frames read from the bus.
    pub read: AtomicU64,
    /// Messages queued for the broker.
    pub sent: AtomicU64,
    /// Frames overwritten in the ring before they were read.
    pub missed: AtomicU64,
    /// Frames read but not sent (`rate_hz` / `every`).
    pub skipped: AtomicU64,
    /// Frames that did not decode with the topic's schema.
    pub bad: AtomicU64,
}

/// Counters of the whole bridge.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    /// Frames read from the bus, all topics.
    pub read: AtomicU64,
    /// Messages taken from the outbox and handed to the engine (for MQTT,
    /// rumqttc's request channel): not yet on the link. Counted when taken,
    /// so a message the engine could no longer take at a stop is counted
    /// too (and is in [`Stats::unconfirmed`]).
    pub handed: AtomicU64,
    /// The bridge's own `$state` messages handed to the engine: the birth
    /// (`online`) at each connect and the goodbye (`offline`) at the stop.
    pub own: AtomicU64,
    /// State messages (`$state`, `$in/...`, the latest-value topics) the
    /// engine still held at a link break: not taken back, as the newest
    /// of each is sent again after the next connect.
    pub superseded: AtomicU64,
    /// PUBLISH packets written to the link (every QoS, the bridge's own
    /// `$state` included; a message sent again after a reconnect counts
    /// again).
    pub written: AtomicU64,
    /// QoS 1/2 messages the broker acknowledged (PUBACK, PUBCOMP).
    pub acknowledged: AtomicU64,
    /// As far as the bridge can know, messages the broker has: QoS 1/2
    /// acknowledged, plus QoS 0 written to the link (TCP gives no receipt).
    pub delivered: AtomicU64,
    /// Messages pushed out of the full outbox (oldest first).
    pub dropped: AtomicU64,
    /// Messages never queued: larger than the engine can send.
    pub too_large: AtomicU64,
    /// Messages taken back from a broken connection and queued again.
    pub requeued: AtomicU64,
    /// Successful connections (the first one included).
    pub connections: AtomicU64,
    /// Connection attempts that failed or connections that broke.
    pub link_errors: AtomicU64,
    /// True while connected.
    pub connected: AtomicBool,
    /// Broker messages received for the `[[bridge.in]]` topics.
    pub in_received: AtomicU64,
    /// Of those, published on the bus.
    pub in_published: AtomicU64,
    /// Of those, not valid for the declared schema (never published).
    pub in_bad: AtomicU64,
    /// Of those, not published because another local process publishes the
    /// topic (or the topic could not be opened).
    pub in_refused: AtomicU64,
    /// Times a `[[bridge.in]]` local topic was found removed (`shmbus rm`)
    /// and created again for the message at hand.
    pub in_recreated: AtomicU64,
    /// Broker messages over the bridge's size limit (each one broke the
    /// connection; the `[[bridge.in]]` subscriptions were then paused).
    pub in_oversized: AtomicU64,
    /// Broker messages on a topic no `[[bridge.in]]` takes (never asked
    /// for: dropped).
    pub in_unmatched: AtomicU64,
    /// Retained broker messages sent again (after a reconnect, a new
    /// subscription) whose frame the local topic already held: not
    /// published again.
    pub in_replayed: AtomicU64,
    /// Empty broker messages (a retained message cleared): not published,
    /// not bad.
    pub in_cleared: AtomicU64,
    topics: Mutex<Vec<(String, std::sync::Arc<TopicStats>)>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            read: AtomicU64::new(0),
            handed: AtomicU64::new(0),
            own: AtomicU64::new(0),
            superseded: AtomicU64::new(0),
            written: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            requeued: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            link_errors: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            in_received: AtomicU64::new(0),
            in_published: AtomicU64::new(0),
            in_bad: AtomicU64::new(0),
            in_refused: AtomicU64::new(0),
            in_recreated: AtomicU64::new(0),
            in_oversized: AtomicU64::new(0),
            in_unmatched: AtomicU64::new(0),
            in_replayed: AtomicU64::new(0),
            in_cleared: AtomicU64::new(0),
            topics: Mutex::new(Vec::new()),
        }
    }
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Stats {
    /// The counters of a sent topic (created on first use).
    pub fn topic(&self, name: &str) -> std::sync::Arc<TopicStats> {
        let mut t = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, s)) = t.iter().find(|(n, _)| n == name) {
            return s.clone();
        }
        let s = std::sync::Arc::new(TopicStats::default());
        t.push((name.to_string(), s.clone()));
        s
    }

    /// Sum of `missed` over every topic.
    pub fn missed(&self) -> u64 {
        let t = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        t.iter().map(|(_, s)| get(&s.missed)).sum()
    }

    /// Messages handed to the engine (the bridge's own included) that are
    /// neither delivered, nor taken back into the outbox, nor superseded:
    /// while the bridge runs, those in the MQTT client (its request channel,
    /// or written and awaiting the broker's acknowledgement); after the
    /// stop, those lost with the link (or taken by a broker that never
    /// acknowledged them). Every message that entered the outbox is then in
    /// exactly one of `delivered`, `queue.len`, `dropped`, `too_large` and
    /// this (`docs/BRIDGE.md`).
    pub fn unconfirmed(&self) -> u64 {
        (get(&self.handed) + get(&self.own))
            .saturating_sub(get(&self.delivered) + get(&self.requeued) + get(&self.superseded))
    }

    /// Everything as a JSON object; `queue` is the outbox's
    /// `(len, bytes, max_len, max_bytes)`.
    pub fn to_json(&self, queue: (usize, usize, usize, usize)) -> Value {
        let topics: serde_json::Map<String, Value> = self
            .topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    json!({
                        "read": get(&s.read), "sent": get(&s.sent), "missed": get(&s.missed),
                        "skipped": get(&s.skipped), "bad": get(&s.bad),
                    }),
                )
            })
            .collect();
        json!({
            "uptime_s": (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "connected": self.connected.load(Ordering::Relaxed),
            "connections": get(&self.connections),
            "link_errors": get(&self.link_errors),
            "out": {
                "read": get(&self.read),
                "handed": get(&self.handed),
                "own": get(&self.own),
                "written": get(&self.written),
                "acknowledged": get(&self.acknowledged),
                "delivered": get(&self.delivered),
                "missed": self.missed(),
                "dropped": get(&self.dropped),
                "requeued": get(&self.requeued),
                "superseded": get(&self.superseded),
                "unconfirmed": self.unconfirmed(),
                "too_large": get(&self.too_large),
            },
            "queue": { "len": queue.0, "bytes": queue.1, "max_len": queue.2, "max_bytes": queue.3 },
            "in": {
                "received": get(&self.in_received),
                "published": get(&self.in_published),
                "bad": get(&self.in_bad),
                "refused": get(&self.in_refused),
                "recreated": get(&self.in_recreated),
                "oversized": get(&self.in_oversized),
                "unmatched": get(&self.in_unmatched),
                "replayed": get(&self.in_replayed),
                "cleared": get(&self.in_cleared),
            },
            "topics": topics,
        })
    }
}
