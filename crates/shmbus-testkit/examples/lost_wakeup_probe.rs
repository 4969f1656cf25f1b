//! How often a subscriber blocked in `wait_next` counts a lost wake-up
//! when every wake-up was in fact sent: one publisher thread at a fixed
//! period close to the subscriber's 100 ms sleep slice (so frames keep
//! landing at the end of a slice), one subscriber thread.
//!
//! `cargo run --release -p shmbus-testkit --example lost_wakeup_probe -- SECS PERIOD_US [STAMP_AGE_US]`
//! (defaults 20 s, 100100 us, 0). With a stamp age, every frame is
//! published with `publish_at` and a time that much before the publish, as
//! a sensor that reads its clock before a slow device does. Prints the
//! frames read, the lost wake-ups counted and the publisher's `FUTEX_WAKE`
//! calls: with nobody rewinding the waiter word, every count is a false
//! one. A measurement, not a test.

use std::time::{Duration, Instant};

use shmbus_pub::Publisher;
use shmbus_sub::{Next, Subscriber};
use shmbus_testkit::{Check, unique_topic};

fn main() {
    // `run` holds the topic's guard: it removes the topic before the exit.
    std::process::exit(run());
}

fn run() -> i32 {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(20);
    let period_us: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_100);
    let stamp_age_ns: u64 = args
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        .saturating_mul(1_000);
    let (t, _guard) = unique_topic("lost-wakeup-probe");
    let mut p = match Publisher::<Check>::open(&t) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("lost_wakeup_probe: cannot open the topic: {e}");
            return 1;
        }
    };
    let reader = {
        let t = t.clone();
        std::thread::spawn(move || -> Result<(u64, u64), String> {
            let mut s = Subscriber::<Check>::wait_for_topic(&t, Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            let mut frames = 0;
            loop {
                match s.wait_next(Duration::from_secs(5)) {
                    // seq 0 ends the run.
                    Ok(Next::Frame(f)) if f.value.seq == 0 => break,
                    Ok(Next::Frame(_)) => frames += 1,
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok((frames, s.raw().lost_wakeups()))
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    let mut due = start;
    let mut seq = 1;
    while start.elapsed() < Duration::from_secs(secs) {
        due += Duration::from_micros(period_us);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let published = if stamp_age_ns == 0 {
            p.publish(&Check::new(seq))
        } else {
            let sampled = shmbus_core::sys::monotonic_ns().saturating_sub(stamp_age_ns);
            p.publish_at(&Check::new(seq), sampled, shmbus_core::sys::realtime_ns())
        };
        if let Err(e) = published {
            eprintln!("lost_wakeup_probe: publish: {e}");
            return 1;
        }
        seq += 1;
    }
    let _ = p.publish(&Check::new(0));
    match reader.join() {
        Ok(Ok((frames, lost))) => {
            println!(
                "period {period_us} us, stamps {} us old, {secs} s: {frames} frames, {lost} lost wake-ups counted, {} FUTEX_WAKE calls",
                stamp_age_ns / 1_000,
                p.raw().wakes()
            );
            0
        }
        Ok(Err(e)) => {
            eprintln!("lost_wakeup_probe: subscriber: {e}");
            1
        }
        Err(_) => {
            eprintln!("lost_wakeup_probe: the subscriber thread panicked");
            1
        }
    }
}
