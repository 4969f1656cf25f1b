//! Two-process handoff: every mechanism as a ping-pong between this
//! process and a peer (this executable run again), timed per round trip
//! with `CLOCK_MONOTONIC` in this process. One-way latency is reported as
//! (round trip - clock overhead) / 2.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use shmbus_core::sys::monotonic_ns;
use shmbus_core::{LockPolicy, Topic};
use shmbus_pub::{Publisher, RawPublisher};
use shmbus_sub::{RawSubscriber, Subscriber};

use crate::frames::{Frame64, Frame64Bytes, SeqFrame};
use crate::os::{Peer, Scratch, spin_until};
use crate::{alts, floors};

/// What a mechanism is, for ratios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A hand-written floor.
    Floor,
    /// shmbus itself.
    Shmbus,
    /// Something a user would use instead.
    Alternative,
}

/// The mechanisms of the handoff benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mech {
    /// Floor: one atomic word, spin.
    Atomic,
    /// Floor: bare seqlock, 64 B, spin.
    Seqlock,
    /// Floor: raw futex wait/wake.
    Futex,
    /// shmbus busy-poll (`has_new` + `latest`), topic notify off.
    ShmbusPoll,
    /// As [`Mech::ShmbusPoll`] with the frame's arrays as `Bytes<32>`
    /// (the same wire; one-copy decode).
    ShmbusPollBytes,
    /// shmbus busy-poll with pre-encoded bytes (`RawPublisher::publish_bytes`,
    /// `RawSubscriber::latest_bytes`): the transport without postcard.
    ShmbusRaw,
    /// As [`Mech::ShmbusRaw`] with the caller's timestamps
    /// (`publish_bytes_at`): the transport without the clock read.
    ShmbusRawAt,
    /// As [`Mech::ShmbusRawAt`] with fixed-length frames on both sides
    /// (`publish_array_at`, `latest_into`): no length to loop over.
    ShmbusRawFixed,
    /// The bare seqlock in shmbus's layout, hand-written
    /// ([`floors::layout_rt`]): between the seqlock floor and the raw hop.
    Layout,
    /// shmbus busy-poll on a topic with notify on (publish pays FUTEX_WAKE).
    ShmbusPollNotify,
    /// shmbus blocking (`wait_latest`), notify on.
    ShmbusWait,
    /// Unix datagram socketpair.
    Unix,
    /// Two pipes.
    Pipe,
    /// Two POSIX message queues.
    Mqueue,
    /// iceoryx2 busy-poll publish-subscribe (external peer).
    Iceoryx2,
}

impl Mech {
    /// Every mechanism, in the order of a round.
    pub const ALL: [Mech; 15] = [
        Mech::Atomic,
        Mech::Seqlock,
        Mech::Layout,
        Mech::ShmbusRaw,
        Mech::ShmbusRawAt,
        Mech::ShmbusRawFixed,
        Mech::ShmbusPoll,
        Mech::ShmbusPollBytes,
        Mech::ShmbusPollNotify,
        Mech::Iceoryx2,
        Mech::Futex,
        Mech::ShmbusWait,
        Mech::Unix,
        Mech::Pipe,
        Mech::Mqueue,
    ];

    /// Short stable name (JSON key).
    pub fn key(self) -> &'static str {
        match self {
            Mech::Atomic => "atomic",
            Mech::Seqlock => "seqlock",
            Mech::Layout => "layout",
            Mech::Futex => "futex",
            Mech::ShmbusPoll => "shmbus_poll",
            Mech::ShmbusPollBytes => "shmbus_poll_bytes",
            Mech::ShmbusRaw => "shmbus_poll_raw",
            Mech::ShmbusRawAt => "shmbus_poll_raw_at",
            Mech::ShmbusRawFixed => "shmbus_poll_raw_fixed",
            Mech::ShmbusPollNotify => "shmbus_poll_notify",
            Mech::ShmbusWait => "shmbus_wait",
            Mech::Unix => "unix_dgram",
            Mech::Pipe => "pipe",
            Mech::Mqueue => "mqueue",
            Mech::Iceoryx2 => "iceoryx2",
        }
    }

    /// Human label.
    pub fn label(self) -> &'static str {
        match self {
            Mech::Atomic => "floor: atomic word ping-pong",
            Mech::Seqlock => "floor: bare seqlock 64 B",
            Mech::Layout => "floor: seqlock in shmbus's layout",
            Mech::Futex => "floor: raw futex wait/wake",
            Mech::ShmbusPoll => "shmbus busy-poll (notify off)",
            Mech::ShmbusPollBytes => "shmbus busy-poll, Bytes<32> fields",
            Mech::ShmbusRaw => "shmbus busy-poll, raw bytes",
            Mech::ShmbusRawAt => "shmbus busy-poll, raw, caller's stamp",
            Mech::ShmbusRawFixed => "shmbus busy-poll, raw fixed length",
            Mech::ShmbusPollNotify => "shmbus busy-poll (notify on)",
            Mech::ShmbusWait => "shmbus wait_latest (blocking)",
            Mech::Unix => "Unix datagram socketpair",
            Mech::Pipe => "pipe",
            Mech::Mqueue => "POSIX message queue",
            Mech::Iceoryx2 => "iceoryx2 0.10 busy-poll",
        }
    }

    /// Floor, shmbus or alternative.
    pub fn kind(self) -> Kind {
        match self {
            Mech::Atomic | Mech::Seqlock | Mech::Layout | Mech::Futex => Kind::Floor,
            Mech::ShmbusPoll
            | Mech::ShmbusPollBytes
            | Mech::ShmbusRaw
            | Mech::ShmbusRawAt
            | Mech::ShmbusRawFixed
            | Mech::ShmbusPollNotify
            | Mech::ShmbusWait => Kind::Shmbus,
            _ => Kind::Alternative,
        }
    }

    /// True if both sides sleep in the kernel rather than spin.
    pub fn blocking(self) -> bool {
        matches!(
            self,
            Mech::Futex | Mech::ShmbusWait | Mech::Unix | Mech::Pipe | Mech::Mqueue
        )
    }
}

/// A topic pair for the shmbus ping-pong of frames `F`.
struct Pair<F: SeqFrame> {
    ping: Topic,
    pong: Topic,
    publisher: Publisher<F>,
    sub: Subscriber<F>,
}

/// Topic on the bench's private key range.
pub fn topic(key: i32, name: &str, notify: bool) -> Topic {
    Topic::new(name)
        .key(key)
        .notify(notify)
        .lock(LockPolicy::Off)
        .slots(16)
}

fn topic_arg(t: &Topic) -> String {
    format!("{}:{}:{}", t.key, u8::from(t.notify), t.name)
}

/// Parse a `key:notify:name` argument.
pub fn parse_topic(s: &str) -> Result<Topic, String> {
    let mut it = s.splitn(3, ':');
    let key = it
        .next()
        .and_then(|k| k.parse().ok())
        .ok_or("bad topic key")?;
    let notify = it.next() == Some("1");
    let name = it.next().ok_or("topic has no name")?;
    Ok(topic(key, name, notify))
}

impl<F: SeqFrame> Pair<F> {
    fn open(keys: &mut crate::Keys, suffix: &str, notify: bool) -> Result<Pair<F>, String> {
        let ping = topic(keys.take()?, &format!("bench/{suffix}-ping"), notify);
        let pong = topic(keys.take()?, &format!("bench/{suffix}-pong"), notify);
        let publisher =
            crate::creating(|| Publisher::<F>::open(&ping)).map_err(|e| e.to_string())?;
        // Create the pong topic so we can attach now; each peer reopens it.
        drop(crate::creating(|| Publisher::<F>::open(&pong)).map_err(|e| e.to_string())?);
        let sub = Subscriber::<F>::attach(&pong).map_err(|e| e.to_string())?;
        Ok(Pair {
            ping,
            pong,
            publisher,
            sub,
        })
    }

    fn args(&self) -> Vec<String> {
        vec![
            format!("ping={}", topic_arg(&self.ping)),
            format!("pong={}", topic_arg(&self.pong)),
        ]
    }
}

/// A topic pair for the raw-bytes ping-pong.
struct RawPair {
    ping: Topic,
    pong: Topic,
    publisher: RawPublisher,
    sub: RawSubscriber,
}

/// The schema of the raw topics: the bytes of a [`Frame64`].
fn raw_schema() -> Result<Vec<u8>, String> {
    shmbus_core::schema::schema_bytes::<Frame64>().map_err(|e| e.to_string())
}

impl RawPair {
    fn open(keys: &mut crate::Keys) -> Result<RawPair, String> {
        let ping = topic(keys.take()?, "bench/raw-ping", false);
        let pong = topic(keys.take()?, "bench/raw-pong", false);
        let schema = raw_schema()?;
        let publisher = crate::creating(|| RawPublisher::open(&ping, &schema, 64))
            .map_err(|e| e.to_string())?;
        drop(
            crate::creating(|| RawPublisher::open(&pong, &schema, 64))
                .map_err(|e| e.to_string())?,
        );
        let sub = RawSubscriber::attach(&pong).map_err(|e| e.to_string())?;
        Ok(RawPair {
            ping,
            pong,
            publisher,
            sub,
        })
    }

    /// One round trip in `mode`.
    fn rt(&mut self, seq: u64, buf: &mut Vec<u8>, mode: RawMode) -> Result<(), String> {
        let frame = Frame64::new(seq);
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&frame.a);
        bytes[32..].copy_from_slice(&frame.b);
        match mode {
            RawMode::Clock => self.publisher.publish_bytes(&bytes),
            RawMode::Stamped => self.publisher.publish_bytes_at(&bytes, seq, seq),
            RawMode::Fixed => self.publisher.publish_array_at(&bytes, seq, seq),
        }
        .map_err(|e| e.to_string())?;
        let mut fixed = [0u8; 64];
        loop {
            spin_until(|| self.sub.has_new())?;
            let got = if mode == RawMode::Fixed {
                self.sub
                    .latest_into(&mut fixed)
                    .map_err(|e| e.to_string())?;
                fixed[..8] == bytes[..8]
            } else {
                self.sub.latest_bytes(buf).map_err(|e| e.to_string())?;
                buf.get(..8) == Some(&bytes[..8])
            };
            if got {
                return Ok(());
            }
        }
    }
}

/// How the raw-bytes ping-pong publishes and reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawMode {
    /// `publish_bytes` (one clock read) and `latest_bytes`.
    Clock,
    /// `publish_bytes_at` (the caller's stamps) and `latest_bytes`.
    Stamped,
    /// `publish_array_at` and `latest_into`: 64-byte frames both ways.
    Fixed,
}

impl RawMode {
    /// The peer role that echoes in this mode.
    pub fn role(self) -> &'static str {
        match self {
            RawMode::Clock => "shmbus_raw",
            RawMode::Stamped => "shmbus_raw_at",
            RawMode::Fixed => "shmbus_raw_fixed",
        }
    }

    /// The mode of a peer role, if it is one of the raw roles.
    pub fn of_role(role: &str) -> Option<RawMode> {
        [RawMode::Clock, RawMode::Stamped, RawMode::Fixed]
            .into_iter()
            .find(|m| m.role() == role)
    }
}

/// Peer side of the raw-bytes ping-pong: echo the frame's bytes as `mode`
/// says (with the ping's own timestamps unless [`RawMode::Clock`], reading
/// no clock).
pub fn raw_peer(ping: &Topic, pong: &Topic, mode: RawMode) -> Result<(), String> {
    let mut sub = RawSubscriber::attach(ping).map_err(|e| e.to_string())?;
    let mut publisher = RawPublisher::open(pong, &raw_schema()?, 64).map_err(|e| e.to_string())?;
    println!("ready");
    let mut buf = Vec::with_capacity(64);
    let mut fixed = [0u8; 64];
    loop {
        spin_until(|| sub.has_new())?;
        let meta = if mode == RawMode::Fixed {
            sub.latest_into(&mut fixed)
        } else {
            sub.latest_bytes(&mut buf)
        }
        .map_err(|e| e.to_string())?;
        let Some(meta) = meta else {
            continue;
        };
        let frame: &[u8] = if mode == RawMode::Fixed { &fixed } else { &buf };
        if frame.get(..8) == Some(&u64::MAX.to_le_bytes()[..]) {
            return Ok(());
        }
        match mode {
            RawMode::Clock => publisher.publish_bytes(&buf),
            RawMode::Stamped => publisher.publish_bytes_at(&buf, meta.mono_ns, meta.real_ns),
            RawMode::Fixed => publisher.publish_array_at(&fixed, meta.mono_ns, meta.real_ns),
        }
        .map_err(|e| e.to_string())?;
    }
}

/// Everything the handoff batches share for the whole run.
pub struct Handoff {
    scratch: Scratch,
    raw: RawPair,
    poll: Pair<Frame64>,
    poll_bytes: Pair<Frame64Bytes>,
    wake: Pair<Frame64>,
    iceoryx2: Option<PathBuf>,
    budget_ns: u64,
}

/// Round trips of one batch, in ns (raw, clock overhead included).
pub type Rtts = Vec<f64>;

impl Handoff {
    /// Create the scratch segment and the shmbus topics.
    pub fn new(
        keys: &mut crate::Keys,
        iceoryx2: Option<PathBuf>,
        budget: Duration,
    ) -> Result<Handoff, String> {
        let scratch = Scratch::create(floors::SCRATCH_SIZE)?;
        Ok(Handoff {
            scratch,
            raw: RawPair::open(keys)?,
            poll: Pair::open(keys, "poll", false)?,
            poll_bytes: Pair::open(keys, "bytes", false)?,
            wake: Pair::open(keys, "wake", true)?,
            iceoryx2,
            budget_ns: budget.as_nanos() as u64,
        })
    }

    /// True if the mechanism can run here (iceoryx2 needs its binary).
    pub fn available(&self, m: Mech) -> bool {
        m != Mech::Iceoryx2 || self.iceoryx2.is_some()
    }

    /// One batch of `iters` round trips of mechanism `m`; `cpus` pins this
    /// process to the first and the peer to the second.
    pub fn batch(
        &mut self,
        m: Mech,
        iters: usize,
        cpus: Option<(usize, usize)>,
    ) -> Result<Rtts, String> {
        let extra: Vec<String> = cpus
            .map(|(_, b)| vec![format!("cpu={b}")])
            .unwrap_or_default();
        let budget = self.budget_ns;
        match m {
            Mech::Atomic | Mech::Seqlock | Mech::Layout | Mech::Futex => {
                floors::reset(&self.scratch);
                let mut args = vec![format!("shmid={}", self.scratch.shmid())];
                args.extend(extra);
                let peer = Peer::spawn(m.key(), &args, &[])?;
                let s = &self.scratch;
                let (mut last, mut sent) = (0, 0);
                let r = measure(iters, budget, |seq| {
                    sent = seq;
                    match m {
                        Mech::Atomic => floors::atomic_rt(s, seq),
                        Mech::Seqlock => floors::seqlock_rt(s, seq, &mut last),
                        Mech::Layout => floors::layout_rt(s, seq),
                        _ => floors::futex_rt(s, seq),
                    }
                });
                match m {
                    Mech::Atomic => floors::atomic_stop(s),
                    Mech::Seqlock => floors::seqlock_stop(s),
                    Mech::Layout => floors::layout_stop(s, sent + 1),
                    _ => floors::futex_stop(s),
                }
                peer.finish()?;
                r
            }
            Mech::ShmbusRaw | Mech::ShmbusRawAt | Mech::ShmbusRawFixed => {
                let mode = match m {
                    Mech::ShmbusRaw => RawMode::Clock,
                    Mech::ShmbusRawAt => RawMode::Stamped,
                    _ => RawMode::Fixed,
                };
                let raw = &mut self.raw;
                let mut args = vec![
                    format!("ping={}", topic_arg(&raw.ping)),
                    format!("pong={}", topic_arg(&raw.pong)),
                ];
                args.extend(extra);
                let peer = Peer::spawn(mode.role(), &args, &[])?;
                let mut buf = Vec::with_capacity(64);
                let r = measure(iters, budget, |seq| raw.rt(seq, &mut buf, mode));
                let mut stop = [0u8; 64];
                stop[..8].copy_from_slice(&u64::MAX.to_le_bytes());
                let _ = raw.publisher.publish_bytes(&stop);
                peer.finish()?;
                r
            }
            Mech::ShmbusPoll | Mech::ShmbusPollNotify | Mech::ShmbusWait => {
                let pair = if m == Mech::ShmbusPoll {
                    &mut self.poll
                } else {
                    &mut self.wake
                };
                let mut args = pair.args();
                args.extend(extra);
                let role = if m == Mech::ShmbusWait {
                    "shmbus_wait"
                } else {
                    "shmbus_poll"
                };
                let peer = Peer::spawn(role, &args, &[])?;
                let r = measure(iters, budget, |seq| {
                    shmbus_rt(pair, seq, m == Mech::ShmbusWait)
                });
                let _ = pair.publisher.publish(&Frame64::new(u64::MAX));
                peer.finish()?;
                r
            }
            Mech::ShmbusPollBytes => {
                let pair = &mut self.poll_bytes;
                let mut args = pair.args();
                args.extend(extra);
                let peer = Peer::spawn("shmbus_poll_bytes", &args, &[])?;
                let r = measure(iters, budget, |seq| shmbus_rt(pair, seq, false));
                let _ = pair.publisher.publish(&Frame64Bytes::with_seq(u64::MAX));
                peer.finish()?;
                r
            }
            Mech::Unix | Mech::Pipe | Mech::Mqueue => {
                let (mut link, peer) = match m {
                    Mech::Unix => alts::unix(&extra)?,
                    Mech::Pipe => alts::pipes(&extra)?,
                    _ => alts::mqueue(&extra)?,
                };
                let r = measure(iters, budget, |seq| link.rt(seq));
                link.stop();
                peer.finish()?;
                r
            }
            Mech::Iceoryx2 => match &self.iceoryx2 {
                Some(p) => alts::iceoryx2(p, iters, cpus),
                None => Err("no iceoryx2 peer binary given".into()),
            },
        }
    }
}

/// Time round trips `1..` until `iters` are kept (after a short warm-up)
/// or the time budget is spent.
fn measure(
    iters: usize,
    budget_ns: u64,
    mut rt: impl FnMut(u64) -> Result<(), String>,
) -> Result<Rtts, String> {
    let warm = (iters / 10).clamp(5, 200) as u64;
    let mut out = Vec::with_capacity(iters);
    let start = monotonic_ns();
    let mut seq = 0u64;
    while out.len() < iters {
        seq += 1;
        let t0 = monotonic_ns();
        rt(seq)?;
        let t1 = monotonic_ns();
        if seq > warm {
            out.push(t1.saturating_sub(t0) as f64);
        }
        if t1.saturating_sub(start) > budget_ns && out.len() >= 10 {
            break;
        }
    }
    Ok(out)
}

fn shmbus_rt<F: SeqFrame>(pair: &mut Pair<F>, seq: u64, blocking: bool) -> Result<(), String> {
    pair.publisher
        .publish(&F::with_seq(seq))
        .map_err(|e| e.to_string())?;
    loop {
        let s = if blocking {
            pair.sub
                .wait_latest(Duration::from_secs(10))
                .map_err(|e| format!("waiting for the pong: {e}"))?
        } else {
            spin_until(|| pair.sub.has_new())?;
            match pair.sub.latest().map_err(|e| e.to_string())? {
                Some(s) => s,
                None => continue,
            }
        };
        if s.value.seq_of() == seq {
            return Ok(());
        }
    }
}

/// Peer side of the shmbus ping-pong of frames `F`: echo every ping's
/// sequence number on the pong topic, busy-polling or blocking.
pub fn shmbus_peer<F: SeqFrame>(blocking: bool, ping: &Topic, pong: &Topic) -> Result<(), String> {
    let mut sub = Subscriber::<F>::wait_for_topic(ping, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let mut publisher = Publisher::<F>::open(pong).map_err(|e| e.to_string())?;
    println!("ready");
    loop {
        let s = if blocking {
            sub.wait_latest(Duration::from_secs(30))
                .map_err(|e| e.to_string())?
        } else {
            spin_until(|| sub.has_new())?;
            match sub.latest().map_err(|e| e.to_string())? {
                Some(s) => s,
                None => continue,
            }
        };
        let seq = s.value.seq_of();
        if seq == u64::MAX {
            return Ok(());
        }
        publisher
            .publish(&F::with_seq(seq))
            .map_err(|e| e.to_string())?;
    }
}
