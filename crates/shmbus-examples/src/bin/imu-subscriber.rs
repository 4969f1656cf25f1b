//! Print IMU samples from a topic as they are published, with their lag and
//! the topic's staleness; exit 0 after `--count` frames.
//!
//! ```text
//! imu-subscriber [--name imu] [--key KEY] [--count 10] [--timeout SECS]
//!                [--wait SECS] [--mode next|latest]
//! ```
//! `--mode next` (default) prints every frame in publish order and says
//! when it fell behind the ring; `--mode latest` prints only the newest
//! frame each time one arrives. Both sleep in the kernel between frames.
//!
//! A frame that does not decode as `Imu` (a typeless tool published a value
//! the type cannot hold) is reported on its own line and skipped; the
//! subscriber goes on with the next frame.
//!
//! A publisher that stops (a crash, a restart) or a topic that is removed
//! and created again (`shmbus rm --force`, `ipcrm`, systemd-logind's
//! `RemoveIPC`) is said on its own line, and the subscriber waits up to
//! `--wait` seconds for it to come back, attaching the new segment if there
//! is one, as a long-running reader on a board should.

use shmbus_examples::{Imu, Options, out, say, seconds};
use shmbus_sub::{Next, PublisherStatus, ReadError, Sample, Subscriber, WaitError};

const USAGE: &str = "usage: imu-subscriber [--name imu] [--key KEY] [--count N] [--timeout SECS] [--wait SECS] [--mode next|latest]";

fn main() {
    if let Err(e) = run() {
        if e.is_empty() {
            let _ = out(format_args!("{USAGE}"));
            return;
        }
        say(format_args!("imu-subscriber: {e}"));
        std::process::exit(1);
    }
}

/// A line on stdout; `Ok(false)` when nobody reads it any more (`| head`):
/// the subscriber then ends quietly, exit 0, as `shmbus echo` does.
/// `println!` panicked there (exit 101 and a backtrace).
fn line(text: std::fmt::Arguments<'_>) -> Result<bool, String> {
    match out(text) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(format!("cannot write to stdout: {e}")),
    }
}

/// [`line()`], returning from the calling function when the reader is gone.
macro_rules! line {
    ($($t:tt)*) => {
        if !line(format_args!($($t)*))? {
            return Ok(());
        }
    };
}

fn run() -> Result<(), String> {
    let o = Options::parse(std::env::args().skip(1))?;
    o.only(&["count", "timeout", "wait", "mode"])?;
    let count: u64 = o.get("count", 10)?;
    let timeout = seconds("timeout", o.get("timeout", 5.0)?)?;
    let wait = seconds("wait", o.get("wait", 10.0)?)?;
    let mode: String = o.get("mode", "next".to_string())?;
    if mode != "next" && mode != "latest" {
        return Err(format!("--mode {mode}: expected next or latest"));
    }

    let mut sub = Subscriber::<Imu>::wait_for_topic(&o.topic, wait).map_err(|e| e.to_string())?;
    let info = sub.raw().info().clone();
    line!(
        "subscribed to '{}' at key 0x{:08x}: {} slots, frame capacity {} bytes, {}",
        info.name,
        o.topic.key,
        info.geometry.slot_count,
        info.geometry.frame_capacity,
        match sub.publisher() {
            PublisherStatus::Alive { pid } => format!("publisher pid {pid} alive"),
            PublisherStatus::NotRunning | PublisherStatus::NoLock =>
                "publisher not running".to_string(),
            PublisherStatus::Unknown => "publisher status unknown".to_string(),
        }
    );
    let (mut received, mut missed, mut skipped) = (0u64, 0u64, 0u64);
    while received < count {
        let r = if mode == "next" {
            sub.wait_next(timeout)
        } else {
            sub.wait_latest(timeout).map(Next::Frame)
        };
        let r = match r {
            // One bad frame: say so and read on (the cursor is past it).
            Err(WaitError::Read(e @ ReadError::Undecodable { .. })) => {
                skipped += 1;
                line!("skipped: {e}");
                continue;
            }
            // The publisher stopped: the same segment carries its frames
            // once it (or a restart of it) runs again.
            Err(WaitError::PublisherGone) => {
                line!(
                    "the publisher is not running; waiting up to {:.1} s for it to come back",
                    wait.as_secs_f64()
                );
                // Back when it runs again, or when a frame comes anyway (a
                // publisher whose lock alone was removed still publishes).
                match sub.wait_for_publisher(wait) {
                    // Removed: the next wait says so.
                    Ok(_) | Err(WaitError::Removed) => continue,
                    Err(WaitError::Timeout) => {
                        return Err(format!(
                            "after {received} frames: the publisher did not come back within {:.1} s",
                            wait.as_secs_f64()
                        ));
                    }
                    Err(e) => return Err(format!("after {received} frames: {e}")),
                }
            }
            // The segment was removed: this handle never sees a new frame.
            // Attach the topic again once its publisher has created it.
            Err(WaitError::Removed) => {
                line!(
                    "the topic was removed; waiting up to {:.1} s for it to be created again",
                    wait.as_secs_f64()
                );
                sub = Subscriber::<Imu>::wait_for_topic(&o.topic, wait)
                    .map_err(|e| format!("after {received} frames: {e}"))?;
                line!("attached the topic again");
                continue;
            }
            other => other,
        };
        match r.map_err(|e| format!("after {received} frames: {e}"))? {
            Next::Frame(s) => {
                received += 1;
                if !print_frame(&mut sub, &s)? {
                    return Ok(());
                }
            }
            Next::Missed(n) => {
                missed += n;
                line!("missed {n} frames (fell behind the ring)");
            }
            Next::Empty => {}
        }
    }
    if skipped > 0 {
        line!("received {received} frames, missed {missed}, skipped {skipped}");
    } else {
        line!("received {received} frames, missed {missed}");
    }
    Ok(())
}

/// Print one frame's line; `Ok(false)` when nobody reads stdout any more.
fn print_frame(sub: &mut Subscriber<Imu>, s: &Sample<Imu>) -> Result<bool, String> {
    let v = &s.value;
    // Lag: publish to now, for this frame. Staleness: how old the topic's
    // newest frame is (what a control loop checks before trusting it).
    let lag_us = s.age().as_secs_f64() * 1e6;
    let stale_us = sub.age().map_or(f64::NAN, |a| a.as_secs_f64() * 1e6);
    let behind = sub.raw().generation().saturating_sub(s.generation);
    line(format_args!(
        "frame gen={} seq={} t_us={} frame_id={} acc=[{:.3} {:.3} {:.3}] gyro=[{:.4} {:.4} {:.4}] temp_c={:.2} lag_us={lag_us:.0} stale_us={stale_us:.0} behind={behind}",
        s.generation,
        v.seq,
        v.t_us,
        v.frame_id,
        v.acc[0],
        v.acc[1],
        v.acc[2],
        v.gyro[0],
        v.gyro[1],
        v.gyro[2],
        v.temp_c,
    ))
}
