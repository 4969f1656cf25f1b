//! The outbox: everything waiting to go to the broker.
//!
//! Two parts, both bounded:
//! - **state**: the retained messages that describe the board (birth,
//!   schemas, publisher status, inbound state, statistics), one per broker
//!   topic, newest wins. All of it is sent again after every (re)connect, so
//!   a broker that restarted empty learns the whole state back. Bounded by
//!   the number of topics.
//! - **data**: frames, in order, at most `max_len` messages and `max_bytes`
//!   bytes of payload. When either bound is hit the **oldest** message is
//!   dropped and counted ([`crate::stats::Stats::dropped`]): while the
//!   broker is away the queue keeps the newest frames.
//!
//! A message larger than the engine can send (`max_message`: topic and
//! payload bytes) is never queued: it would break the link, or push every
//! other queued frame out. It is counted (`out.too_large` in `$stats`) and
//! named on stderr once per broker topic.
//!
//! Producers (the topic readers) never block: a push is a short mutex hold.
//! The engine takes messages with [`Outbox::next`] only while it is
//! connected; state goes before data.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::stats::Stats;

/// Delivery guarantee of a message (MQTT's QoS levels; other engines map
/// them to what they have).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// Fire and forget.
    AtMostOnce,
    /// Acknowledged; may be delivered twice.
    AtLeastOnce,
    /// Acknowledged in two steps; delivered once.
    ExactlyOnce,
}

impl Qos {
    /// From the config's 0, 1, 2 (anything above 2 is 2).
    pub fn from_level(level: u8) -> Qos {
        match level {
            0 => Qos::AtMostOnce,
            1 => Qos::AtLeastOnce,
            _ => Qos::ExactlyOnce,
        }
    }
}

/// One message for the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Broker topic.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Delivery guarantee.
    pub qos: Qos,
    /// Whether the broker keeps it for late subscribers.
    pub retain: bool,
}

#[derive(Debug, Default)]
struct Inner {
    state: BTreeMap<String, Message>,
    /// State topics to send, in the order they changed.
    dirty: VecDeque<String>,
    data: VecDeque<Message>,
    data_bytes: usize,
    connected: bool,
    closed: bool,
    /// Broker topics already named on stderr for a too-large message.
    warned_large: BTreeSet<String>,
}

/// The bounded queue between the bus side and the engine.
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    ready: Condvar,
    max_len: usize,
    max_bytes: usize,
    max_message: usize,
    stats: Arc<Stats>,
}

impl Outbox {
    /// An outbox keeping at most `max_len` data messages and `max_bytes`
    /// bytes of data payload (at least one message is always kept).
    pub fn new(max_len: usize, max_bytes: usize, stats: Arc<Stats>) -> Outbox {
        Outbox {
            inner: Mutex::new(Inner::default()),
            ready: Condvar::new(),
            max_len: max_len.max(1),
            max_bytes,
            max_message: usize::MAX,
            stats,
        }
    }

    /// Refuse messages whose topic and payload together exceed `n` bytes
    /// (the engine's largest packet, less its headers).
    pub fn with_max_message(mut self, n: usize) -> Outbox {
        self.max_message = n;
        self
    }

    /// True (and counted, and said once per topic) if `m` is too large to
    /// send.
    fn too_large(&self, g: &mut Inner, m: &Message) -> bool {
        let n = m.topic.len() + m.payload.len();
        if n <= self.max_message {
            return false;
        }
        self.stats.too_large.fetch_add(1, Ordering::Relaxed);
        if !g.warned_large.contains(&m.topic) {
            g.warned_large.insert(m.topic.clone());
            shmbus_toolbox::say!(
                "shmbus-bridge: a message of {n} bytes for {} is over the broker link's limit of {} bytes: not sent (counted in $stats out.too_large; further ones are not printed); send the topic as format = \"postcard\" (its raw frame is smaller than its JSON), or make its frames smaller",
                m.topic,
                self.max_message
            );
        }
        true
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every
        // update is a single push/pop pair): keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a frame. Drops the oldest frames if a bound is exceeded.
    pub fn push(&self, m: Message) {
        let mut g = self.lock();
        if self.too_large(&mut g, &m) {
            return;
        }
        self.push_locked(&mut g, m, false);
        drop(g);
        self.ready.notify_one();
    }

    /// Put messages the engine took but could not deliver back at the
    /// front, in their order (they are older than anything queued).
    pub fn requeue(&self, ms: Vec<Message>) {
        if ms.is_empty() {
            return;
        }
        let mut g = self.lock();
        let n = ms.len() as u64;
        for m in ms.into_iter().rev() {
            self.push_locked(&mut g, m, true);
        }
        drop(g);
        self.stats.requeued.fetch_add(n, Ordering::Relaxed);
        self.ready.notify_one();
    }

    fn push_locked(&self, g: &mut Inner, m: Message, front: bool) {
        g.data_bytes += m.payload.len();
        if front {
            g.data.push_front(m);
        } else {
            g.data.push_back(m);
        }
        while g.data.len() > self.max_len || (g.data_bytes > self.max_bytes && g.data.len() > 1) {
            // The oldest is at the front.
            if let Some(old) = g.data.pop_front() {
                g.data_bytes -= old.payload.len();
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Set a retained state message (replaces the previous one of its topic).
    pub fn set_state(&self, m: Message) {
        let mut g = self.lock();
        if g.state.get(&m.topic) == Some(&m) || self.too_large(&mut g, &m) {
            return;
        }
        if !g.dirty.contains(&m.topic) {
            g.dirty.push_back(m.topic.clone());
        }
        g.state.insert(m.topic.clone(), m);
        drop(g);
        self.ready.notify_one();
    }

    /// The engine is connected (`true`: [`Outbox::next`] hands out
    /// messages) or not. Connecting marks the whole state to be sent again.
    pub fn set_connected(&self, connected: bool) {
        let mut g = self.lock();
        g.connected = connected;
        if connected {
            let Inner { state, dirty, .. } = &mut *g;
            dirty.clear();
            dirty.extend(state.keys().cloned());
        }
        drop(g);
        self.ready.notify_all();
    }

    /// Stop handing out messages; [`Outbox::next`] returns `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// The next message to send, waiting up to `timeout` while the engine
    /// is connected and something is queued. State comes first.
    pub fn next(&self, timeout: Duration) -> Option<Message> {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock();
        loop {
            if g.closed {
                return None;
            }
            if g.connected {
                while let Some(t) = g.dirty.pop_front() {
                    if let Some(m) = g.state.get(&t) {
                        return Some(m.clone());
                    }
                }
                if let Some(m) = g.data.pop_front() {
                    g.data_bytes -= m.payload.len();
                    return Some(m);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            g = self
                .ready
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Data messages queued, and their payload bytes.
    pub fn len(&self) -> (usize, usize) {
        let g = self.lock();
        (g.data.len(), g.data_bytes)
    }

    /// True if no data message is queued.
    pub fn is_empty(&self) -> bool {
        self.len().0 == 0
    }

    /// The bounds (messages, bytes).
    pub fn bounds(&self) -> (usize, usize) {
        (self.max_len, self.max_bytes)
    }

    /// The retained state message of `topic`, if set.
    pub fn state_of(&self, topic: &str) -> Option<Message> {
        self.lock().state.get(topic).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(t: &str, n: usize) -> Message {
        Message {
            topic: t.to_string(),
            payload: vec![0; n],
            qos: Qos::AtMostOnce,
            retain: false,
        }
    }

    fn drain(o: &Outbox) -> Vec<String> {
        std::iter::from_fn(|| o.next(Duration::ZERO))
            .map(|m| m.topic)
            .collect()
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_it() {
        let stats = Arc::new(Stats::default());
        let o = Outbox::new(3, 1 << 20, stats.clone());
        for i in 0..5 {
            o.push(msg(&format!("m{i}"), 1));
        }
        assert_eq!(o.len(), (3, 3));
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 2);
        // Nothing is handed out while disconnected.
        assert_eq!(o.next(Duration::from_millis(5)), None);
        o.set_connected(true);
        assert_eq!(drain(&o), ["m2", "m3", "m4"]);
        assert_eq!(o.len(), (0, 0));
    }

    #[test]
    fn the_byte_bound_drops_the_oldest_too_but_keeps_one() {
        let stats = Arc::new(Stats::default());
        let o = Outbox::new(100, 10, stats.clone());
        o.push(msg("a", 4));
        o.push(msg("b", 4));
        o.push(msg("c", 4));
        assert_eq!(o.len(), (2, 8));
        o.push(msg("huge", 50));
        assert_eq!(o.len(), (1, 50));
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_message_over_the_engine_limit_is_never_queued_nor_pushes_others_out() {
        let stats = Arc::new(Stats::default());
        let o = Outbox::new(100, 1000, stats.clone()).with_max_message(100);
        o.push(msg("a", 10));
        o.push(msg("b", 99)); // topic + payload = 100: fits
        o.push(msg("big", 5000));
        o.set_state(msg("s", 500));
        assert_eq!(o.len(), (2, 109));
        assert_eq!(stats.too_large.load(Ordering::Relaxed), 2);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
        o.set_connected(true);
        assert_eq!(drain(&o), ["a", "b"]);
    }

    #[test]
    fn state_goes_first_newest_wins_and_is_sent_again_on_every_connect() {
        let stats = Arc::new(Stats::default());
        let o = Outbox::new(10, 1 << 20, stats);
        o.push(msg("data", 1));
        o.set_state(msg("s1", 1));
        o.set_state(msg("s2", 1));
        o.set_state(msg("s1", 2));
        o.set_connected(true);
        assert_eq!(drain(&o), ["s1", "s2", "data"]);
        assert_eq!(o.state_of("s1").unwrap().payload.len(), 2);
        // Setting the same message again sends nothing; a reconnect resends all.
        o.set_state(msg("s1", 2));
        assert!(drain(&o).is_empty());
        o.set_connected(false);
        o.set_connected(true);
        assert_eq!(drain(&o), ["s1", "s2"]);
    }

    #[test]
    fn requeued_messages_go_back_in_front_in_order() {
        let stats = Arc::new(Stats::default());
        let o = Outbox::new(3, 1 << 20, stats.clone());
        o.push(msg("new", 1));
        o.requeue(vec![msg("old1", 1), msg("old2", 1), msg("old3", 1)]);
        // Bound 3: the oldest requeued one is dropped.
        o.set_connected(true);
        assert_eq!(drain(&o), ["old2", "old3", "new"]);
        assert_eq!(stats.requeued.load(Ordering::Relaxed), 3);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_waiting_taker_wakes_on_push_and_on_close() {
        let stats = Arc::new(Stats::default());
        let o = Arc::new(Outbox::new(10, 1 << 20, stats));
        o.set_connected(true);
        let o2 = o.clone();
        let t = std::thread::spawn(move || o2.next(Duration::from_secs(60)));
        o.push(msg("x", 1));
        assert_eq!(t.join().unwrap().unwrap().topic, "x");
        let o3 = o.clone();
        let t = std::thread::spawn(move || o3.next(Duration::from_secs(60)));
        o.close();
        assert_eq!(t.join().unwrap(), None);
    }
}
