//! Publish simulated IMU samples on a topic at a fixed rate.
//!
//! ```text
//! imu-publisher [--name imu] [--key KEY] [--slots 16] [--rate 100]
//!               [--count N | --duration SECS] [--remove true]
//! ```
//! `--count 0` and no `--duration` publish until killed. `--remove true`
//! removes the topic when done (by default the last frame stays readable).
//! SIGTERM (`systemctl stop`), Ctrl-C and SIGHUP end it between two frames,
//! never in the middle of one ([`shmbus_examples::between_frames`]).
//!
//! Every 0.5 s it looks whether its topic was removed under it (`shmbus rm
//! --force`, `ipcrm`, or systemd-logind's `RemoveIPC` at the user's logout)
//! and, if so, creates it again: without that look, a long-running
//! publisher keeps writing into a segment no reader can find.

use std::time::{Duration, Instant};

use shmbus_examples::{Imu, Options, between_frames, out, say, seconds};
use shmbus_pub::{LockOutcome, Publisher};

const USAGE: &str = "usage: imu-publisher [--name imu] [--key KEY] [--slots 16] [--rate HZ] [--count N | --duration SECS] [--remove true]";

/// How often the publisher looks whether its topic was removed: one system
/// call each (two when the segment is still there), not one per frame.
const REMOVED_CHECK: Duration = Duration::from_millis(500);

/// What was removed under this publisher, if anything, and how that
/// happens: its topic's segment, or its publisher lock alone (readers then
/// see no publisher, and a second one could start).
fn removed(publisher: &Publisher<Imu>) -> Option<(&'static str, &'static str)> {
    let raw = publisher.raw();
    if raw.is_removed() {
        Some((
            "topic",
            "shmbus rm --force, ipcrm, or systemd-logind's RemoveIPC at logout",
        ))
    } else if raw.lock_removed() {
        Some(("publisher lock of the topic", "ipcrm -s"))
    } else {
        None
    }
}

fn main() {
    if let Err(e) = run() {
        if e.is_empty() {
            let _ = out(format_args!("{USAGE}"));
            return;
        }
        say(format_args!("imu-publisher: {e}"));
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let o = Options::parse(std::env::args().skip(1))?;
    o.only(&["rate", "count", "duration", "remove"])?;
    let rate: f64 = o.get("rate", 100.0)?;
    // At least one frame per 1000 s: `--rate 1e-300` made a period that
    // `Duration::from_secs_f64` panicked on.
    if !(0.001..=1e6).contains(&rate) {
        // `{:?}`: 1e300 as `1e300`, not 301 digits.
        return Err(format!("--rate {rate:?}: must be from 0.001 to 1000000 Hz"));
    }
    let count: u64 = o.get("count", 0)?;
    // 0: no limit.
    let duration = seconds("duration", o.get("duration", 0.0)?)?;
    let remove: bool = o.get("remove", false)?;
    // What it prints is for the user; a stdout that cannot be written
    // (`| head -1`) does not stop the publishing, or the removal it was
    // asked for at the end.
    let print = |text: std::fmt::Arguments<'_>| {
        let _ = out(text);
    };

    // The open and every publish: never ended half-way by a stop signal.
    let mut publisher =
        between_frames(|| Publisher::<Imu>::open(&o.topic)).map_err(|e| e.to_string())?;
    let raw = publisher.raw();
    print(format_args!(
        "publishing '{}' at key 0x{:08x} (shmid {}), {rate} Hz, frame capacity {} bytes{}",
        raw.name(),
        raw.key(),
        raw.shmid(),
        raw.frame_capacity(),
        if raw.created() { "" } else { ", reopened" }
    ));
    if let LockOutcome::Refused(e) = raw.lock_outcome() {
        say(format_args!("warning: {}", e.unlocked_note()));
    }

    let period = Duration::from_secs_f64(1.0 / rate);
    let mut last_check = Instant::now();
    let start = Instant::now();
    let end = (!duration.is_zero())
        .then(|| start.checked_add(duration))
        .flatten();
    // Frames published: a u64, and the message's `seq` its low 32 bits. The
    // u32 `seq` paced the deadlines and counted `--count`: after 2^32
    // frames (71 minutes at 1 MHz, 50 days at 1 kHz) it wrapped, every
    // deadline was in the past and the publisher ran flat out for good,
    // and a `--count` above 2^32 never ended it.
    let mut n: u64 = 0;
    loop {
        if count > 0 && n >= count {
            break;
        }
        if end.is_some_and(|e| Instant::now() >= e) {
            break;
        }
        if last_check.elapsed() >= REMOVED_CHECK {
            last_check = Instant::now();
            if let Some((what, how)) = removed(&publisher) {
                say(format_args!(
                    "imu-publisher: the {what} '{}' was removed while publishing ({how}): creating it again",
                    o.topic.name
                ));
                // Closed first, then opened again (a new segment and lock),
                // as a restart would.
                drop(publisher);
                publisher = between_frames(|| Publisher::<Imu>::open(&o.topic))
                    .map_err(|e| format!("cannot create topic '{}' again: {e}", o.topic.name))?;
                let raw = publisher.raw();
                say(format_args!(
                    "imu-publisher: publishing '{}' again at key 0x{:08x} (shmid {})",
                    raw.name(),
                    raw.key(),
                    raw.shmid()
                ));
            }
        }
        let t_us = shmbus_core::sys::monotonic_ns() / 1_000;
        between_frames(|| publisher.publish(&Imu::simulate(n as u32, t_us)))
            .map_err(|e| e.to_string())?;
        n += 1;
        // Absolute deadlines: the rate does not drift with the publish cost.
        let next = start.checked_add(period.mul_f64(n as f64));
        if let Some(d) = next.and_then(|t| t.checked_duration_since(Instant::now())) {
            std::thread::sleep(d);
        }
    }
    print(format_args!(
        "published {n} frames in {:.3} s",
        start.elapsed().as_secs_f64()
    ));
    if remove {
        publisher.remove().map_err(|e| e.to_string())?;
        print(format_args!("removed the topic"));
    }
    Ok(())
}
