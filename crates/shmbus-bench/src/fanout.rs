//! Fan-out: one publisher, N subscriber processes.
//!
//! For each N, three ways to read: a topic with notify on whose
//! subscribers sleep in the kernel (`wait_until`: they register in the
//! waiter segment, and every publish pays one `FUTEX_WAKE` that wakes all of
//! them); the same topic with subscribers that poll `has_new()` on a 200 µs
//! timer (like a 5 kHz control loop: nobody sleeps on the futex, so the
//! publish makes no system call); and a topic with notify off, polled the
//! same way. This process publishes frames at a fixed period and times each
//! publish; every subscriber times its `latest()` after it saw the frame
//! (read cost) and reports the delivery latency from the publish timestamp
//! to its read (`CLOCK_MONOTONIC` in both processes, so this one is a real
//! one-way figure, wake-up included).
//!
//! The polling ways run twice when there are two CPUs: unpinned, and with
//! this process alone on one CPU and every subscriber on the other, which
//! takes the sharing of the publisher's CPU and caches with 64 subscriber
//! processes out of the figure. (On the development VM that did not make
//! it flat: `docs/BENCHMARKS.md`, issue 14's fourth pass.)
//!
//! The notify-on polling way also runs as a *control* (unpinned, and
//! pinned when the polling ways are): the timed publishes alternate
//! between the topic the N subscribers read and a second topic nobody
//! reads. Both sets of samples share every condition (the same N processes
//! waking 5000 times a second, the same moment of the run), so "publish to
//! the read topic / to the unread one" is what being read costs the
//! publisher, the machine's load divided out pair by pair.

use std::time::Duration;

use serde::Serialize;
use shmbus_core::sys::monotonic_ns;
use shmbus_pub::Publisher;
use shmbus_sub::Subscriber;

use crate::Keys;
use crate::frames::Frame64;
use crate::handoff::{parse_topic, topic};
use crate::os::Peer;
use crate::stats::Summary;

/// How often a subscriber of a notify-off topic polls.
pub const POLL_PERIOD: Duration = Duration::from_micros(200);

/// How a fan-out point's processes read, and where they run (in the JSON,
/// its fields are the point's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Way {
    /// Topic notify flag.
    pub notify: bool,
    /// Subscribers sleep on the futex (else they poll every 200 µs).
    pub waiting: bool,
    /// The publisher runs alone on one CPU and every subscriber on another.
    pub pinned: bool,
    /// The control: the timed publishes alternate between the topic the N
    /// subscribers read and one nobody reads.
    pub control: bool,
}

impl Way {
    /// The ways of one fan-out count, in the order they run; the pinned
    /// ones only when there are two CPUs to pin to.
    pub fn all(pin: bool) -> Vec<Way> {
        let w = |notify, waiting, pinned, control| Way {
            notify,
            waiting,
            pinned,
            control,
        };
        let mut v = vec![
            w(true, true, false, false),
            w(true, false, false, false),
            w(false, false, false, false),
            w(true, false, false, true),
        ];
        if pin {
            v.extend([
                w(true, false, true, false),
                w(false, false, true, false),
                w(true, false, true, true),
            ]);
        }
        v
    }

    /// The way's name in tables and ratios.
    pub fn label(self) -> &'static str {
        match (self.notify, self.waiting, self.pinned, self.control) {
            (true, true, _, _) => "on, asleep",
            (true, false, false, false) => "on, polling",
            (true, false, true, false) => "on, polling, pinned",
            (true, false, false, true) => "on, control",
            (true, false, true, true) => "on, control, pinned",
            (false, _, false, _) => "off, polling",
            (false, _, true, _) => "off, polling, pinned",
        }
    }
}

/// One fan-out point.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Subscriber processes.
    pub subscribers: usize,
    /// How they read and where they ran; with `control`, every other timed
    /// publish went to a second topic, which nobody reads ([`Point::unread`]).
    #[serde(flatten)]
    pub way: Way,
    /// Publisher cost per frame (to the topic the subscribers read).
    pub publish: Summary,
    /// The control only: publisher cost per frame to the second topic,
    /// which nobody reads, timed between the publishes of `publish`.
    pub unread: Option<Summary>,
    /// Subscriber `latest()` cost per new frame (all subscribers).
    pub read: Summary,
    /// Publish-to-read latency (all subscribers).
    pub latency: Summary,
    /// Frames published.
    pub frames: usize,
}

/// Measure one point. `period` spaces the publishes so that woken
/// subscribers can go back to sleep; `subscriber_cpu`: where the
/// subscribers run when `way.pinned` (the caller pins this process).
pub fn point(
    keys: &mut Keys,
    subscribers: usize,
    way: Way,
    frames: usize,
    period: Duration,
    clock_ns: f64,
    subscriber_cpu: Option<usize>,
) -> Result<Point, String> {
    let Way {
        notify, waiting, ..
    } = way;
    let name = |what: &str| {
        format!(
            "bench/fanout-{subscribers}-{}{}{}{}{what}",
            u8::from(notify),
            u8::from(waiting),
            u8::from(way.pinned),
            u8::from(way.control)
        )
    };
    let t = topic(keys.take()?, &name(""), notify);
    let mut publisher =
        crate::creating(|| Publisher::<Frame64>::open(&t)).map_err(|e| e.to_string())?;
    // The control's second topic, which nobody reads: every other timed
    // publish goes there, interleaved with those to `t`.
    let mut unread_pub = match way.control {
        true => {
            let key = keys.take()?;
            Some(
                crate::creating(|| {
                    Publisher::<Frame64>::open(&topic(key, &name("-unread"), notify))
                })
                .map_err(|e| e.to_string())?,
            )
        }
        false => None,
    };
    let mut args = vec![
        format!("topic={}:{}:{}", t.key, u8::from(notify), t.name),
        format!("mode={}", if waiting { "wait" } else { "poll" }),
    ];
    if let Some(cpu) = subscriber_cpu {
        args.push(format!("cpu={cpu}"));
    }
    let mut peers = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        peers.push(Peer::spawn("fanout_sub", &args, &[])?);
    }
    // Each peer said "ready" (attached). Sleeping subscribers also register
    // in the waiter segment just before they sleep: wait for all of them,
    // so "asleep" means asleep however slowly the machine starts them.
    if waiting && notify {
        wait_for(Duration::from_secs(60), || {
            publisher
                .raw()
                .sleep_registrations()
                .is_none_or(|n| n as usize >= subscribers)
        })
        .map_err(|()| "the fan-out subscribers did not go to sleep in 60 s".to_string())?;
    }
    // Let every subscriber reach its wait.
    std::thread::sleep(Duration::from_millis(30) + period * 4);
    let (mut publish, mut unread) = (Vec::with_capacity(frames), Vec::new());
    let period_ns = period.as_nanos() as u64;
    let mut next = monotonic_ns();
    for seq in 1..=frames as u64 {
        while monotonic_ns() < next {
            std::thread::yield_now();
        }
        // The control times every even frame on the unread topic.
        let (p, samples) = match &mut unread_pub {
            Some(u) if seq % 2 == 0 => (u, &mut unread),
            _ => (&mut publisher, &mut publish),
        };
        let t0 = monotonic_ns();
        p.publish_at(&Frame64::new(seq), t0, 0)
            .map_err(|e| e.to_string())?;
        let t1 = monotonic_ns();
        samples.push((t1.saturating_sub(t0) as f64 - clock_ns).max(0.0));
        next = t1 + period_ns;
    }
    // Before the stop frame, every subscriber has read a frame: one that
    // the timed frames all passed by (descheduled on a loaded machine, or
    // slow to start under emulation) is given more, untimed, until it
    // says so. Otherwise it would see only the stop frame and report no
    // sample at all.
    let mut extra = frames as u64;
    for p in &mut peers {
        let give_up = monotonic_ns() + 60_000_000_000;
        loop {
            match p.line_within(period.max(Duration::from_millis(5)))? {
                Some(l) if l == "read" => break,
                Some(l) => return Err(format!("fan-out subscriber said '{l}'")),
                None if monotonic_ns() > give_up => {
                    return Err("a fan-out subscriber read no frame in 60 s".into());
                }
                None => {
                    extra += 1;
                    publisher
                        .publish(&Frame64::new(extra))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }
    publisher
        .publish(&Frame64::new(u64::MAX))
        .map_err(|e| e.to_string())?;
    let (mut read, mut latency) = (Vec::new(), Vec::new());
    for mut p in peers {
        let line = p.line()?;
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| format!("fan-out subscriber said '{line}': {e}"))?;
        let list = |k: &str| -> Vec<f64> {
            v.get(k)
                .and_then(|a| a.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
                .unwrap_or_default()
        };
        read.extend(list("read_ns").into_iter().map(|x| (x - clock_ns).max(0.0)));
        latency.extend(list("lat_ns"));
        p.finish()?;
    }
    drop(publisher);
    drop(unread_pub);
    Ok(Point {
        subscribers,
        way,
        publish: Summary::of(&mut publish),
        unread: way.control.then(|| Summary::of(&mut unread)),
        read: Summary::of(&mut read),
        latency: Summary::of(&mut latency),
        frames,
    })
}

/// Subscriber process: wait (sleeping, or polling every [`POLL_PERIOD`])
/// for frames until the stop frame, timing each `latest()`; say `read`
/// after the first, and print the samples as one JSON line at the end.
pub fn subscriber(topic_arg: &str, waiting: bool) -> Result<(), String> {
    let t = parse_topic(topic_arg)?;
    let mut sub = Subscriber::<Frame64>::wait_for_topic(&t, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    println!("ready");
    let (mut read, mut lat) = (Vec::new(), Vec::new());
    loop {
        if waiting {
            sub.raw()
                .wait_until(Duration::from_secs(60), |raw| {
                    Ok(raw.has_new().then_some(()))
                })
                .map_err(|e| e.to_string())?;
        } else {
            let give_up = monotonic_ns() + 60_000_000_000;
            while !sub.has_new() {
                if monotonic_ns() > give_up {
                    return Err("no frame for 60 s".into());
                }
                std::thread::sleep(POLL_PERIOD);
            }
        }
        let t0 = monotonic_ns();
        let s = sub.latest().map_err(|e| e.to_string())?;
        let t1 = monotonic_ns();
        let Some(s) = s else { continue };
        if s.value.seq() == u64::MAX {
            break;
        }
        if read.is_empty() {
            // The publisher waits for this before its stop frame.
            println!("read");
        }
        read.push(t1.saturating_sub(t0));
        lat.push(t0.saturating_sub(s.mono_ns));
    }
    let out = serde_json::json!({ "read_ns": read, "lat_ns": lat });
    println!("{out}");
    Ok(())
}

/// Wait until `done()`, checking every millisecond, for at most `limit`.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> Result<(), ()> {
    let give_up = monotonic_ns() + limit.as_nanos() as u64;
    while !done() {
        if monotonic_ns() > give_up {
            return Err(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
