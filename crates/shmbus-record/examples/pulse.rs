//! A steady publisher for measuring the recorder: publishes an IMU-like
//! frame at a fixed rate.
//!
//! How to run (two terminals):
//! ```text
//! cargo run --release -p shmbus-record --example pulse -- pulse 1000 30
//! cargo run --release -p shmbus-record --bin shmbus-record -- record pulse -o /tmp/pulse.mcap --duration 20
//! ```
//! Arguments: topic name (default `pulse`), rate in Hz (default 1000),
//! seconds (default 30).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmbus_pub::{Publisher, Topic};

#[derive(
    Serialize, Deserialize, postcard::experimental::max_size::MaxSize, postcard_schema::Schema,
)]
struct Imu {
    t_us: u64,
    acc: [f32; 3],
    gyro: [f32; 3],
    temp_c: f32,
    frame: heapless::String<8>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "pulse".into());
    let hz: f64 = args.next().map_or(Ok(1000.0), |s| s.parse())?;
    let secs: f64 = args.next().map_or(Ok(30.0), |s| s.parse())?;
    let topic = Topic::new(&name).slots(64);
    let mut publisher = Publisher::<Imu>::open(&topic)?;
    eprintln!(
        "publishing '{name}' (key 0x{:08x}) at {hz} Hz for {secs} s",
        topic.key as u32
    );
    let period = Duration::from_secs_f64(1.0 / hz);
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed().as_secs_f64() < secs {
        let t = n as f32 * 0.001;
        let mut frame = heapless::String::new();
        let _ = frame.push_str("imu0");
        publisher.publish(&Imu {
            t_us: start.elapsed().as_micros() as u64,
            acc: [t.sin(), t.cos(), 9.81],
            gyro: [0.01, -0.02, 0.03],
            temp_c: 21.5,
            frame,
        })?;
        n += 1;
        let due = start + period.mul_f64(n as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
    eprintln!("published {n} frames");
    publisher.remove()?;
    Ok(())
}
