//! Fan-out: one publisher, N subscriber processes.
//!
//! For each N and for a topic with notify on (subscribers block in the
//! kernel in `wait_until`, every publish pays `FUTEX_WAKE`) and off
//! (subscribers poll `has_new()` on a 200 µs timer, like a 5 kHz control
//! loop, and the publish pays nothing for them): this process publishes
//! frames at a fixed period and times each publish; every subscriber times
//! its `latest()` after a wake-up (read cost) and reports the delivery
//! latency from the publish timestamp to its read (`CLOCK_MONOTONIC` in
//! both processes, so this one is a real one-way figure, wake-up included).

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

/// One fan-out point.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Subscriber processes.
    pub subscribers: usize,
    /// Topic notify flag (true: subscribers sleep on the futex).
    pub notify: bool,
    /// Publisher cost per frame.
    pub publish: Summary,
    /// Subscriber `latest()` cost per new frame (all subscribers).
    pub read: Summary,
    /// Publish-to-read latency (all subscribers).
    pub latency: Summary,
    /// Frames published.
    pub frames: usize,
}

/// Measure one point. `period` spaces the publishes so that woken
/// subscribers can go back to sleep.
pub fn point(
    keys: &mut Keys,
    subscribers: usize,
    notify: bool,
    frames: usize,
    period: Duration,
    clock_ns: f64,
) -> Result<Point, String> {
    let t = topic(
        keys.take(),
        &format!("bench/fanout-{subscribers}-{}", u8::from(notify)),
        notify,
    );
    let mut publisher = Publisher::<Frame64>::open(&t).map_err(|e| e.to_string())?;
    let arg = format!("topic={}:{}:{}", t.key, u8::from(notify), t.name);
    let mut peers = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        peers.push(Peer::spawn("fanout_sub", std::slice::from_ref(&arg), &[])?);
    }
    // Let every subscriber reach its wait.
    std::thread::sleep(Duration::from_millis(30) + period * 4);
    let mut publish = Vec::with_capacity(frames);
    let period_ns = period.as_nanos() as u64;
    let mut next = monotonic_ns();
    for seq in 1..=frames as u64 {
        while monotonic_ns() < next {
            std::thread::yield_now();
        }
        let t0 = monotonic_ns();
        publisher
            .publish_at(&Frame64::new(seq), t0, 0)
            .map_err(|e| e.to_string())?;
        let t1 = monotonic_ns();
        publish.push((t1.saturating_sub(t0) as f64 - clock_ns).max(0.0));
        next = t1 + period_ns;
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
    Ok(Point {
        subscribers,
        notify,
        publish: Summary::of(&mut publish),
        read: Summary::of(&mut read),
        latency: Summary::of(&mut latency),
        frames,
    })
}

/// Subscriber process: wait for frames until the stop frame, timing each
/// `latest()`, then print the samples as one JSON line.
pub fn subscriber(topic_arg: &str) -> Result<(), String> {
    let t = parse_topic(topic_arg)?;
    let mut sub = Subscriber::<Frame64>::wait_for_topic(&t, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    println!("ready");
    let (mut read, mut lat) = (Vec::new(), Vec::new());
    loop {
        sub.raw()
            .wait_until(Duration::from_secs(60), |raw| {
                Ok(raw.has_new().then_some(()))
            })
            .map_err(|e| e.to_string())?;
        let t0 = monotonic_ns();
        let s = sub.latest().map_err(|e| e.to_string())?;
        let t1 = monotonic_ns();
        let Some(s) = s else { continue };
        if s.value.seq() == u64::MAX {
            break;
        }
        read.push(t1.saturating_sub(t0));
        lat.push(t0.saturating_sub(s.mono_ns));
    }
    let out = serde_json::json!({ "read_ns": read, "lat_ns": lat });
    println!("{out}");
    Ok(())
}
