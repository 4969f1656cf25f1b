//! A test publisher for the Foxglove server's end-to-end tests and
//! measurements (`ci/foxglove-test.sh`). Kinds of frame:
//! - `rich`: every kind of schema node the JSON mapping has to get right
//!   (enums of every variant kind, Option, char, NaN and infinities, u64
//!   beyond 2^53, bounded strings and lists, tuples, unit);
//! - `plain`: a sensor-like struct whose values all fit the viewer schema
//!   (`docs/JSON.md` §2: finite floats, no `null`, unit-only enums);
//! - `u32`: a bare number (wrapped as `{"value": n}` for Foxglove).
//!
//! ```text
//! fox-test-pub --topic fox/rich --rate 200 --count 400 [--slots 64] [--kind rich|plain|u32]
//!              [--key 0x7a000001] [--wait-go] [--linger SECS] [--remove]
//! fox-test-pub --topic fox/rich --kind rich --print-schema
//! ```
//! Prints `ready <key>` once the topic exists; with `--wait-go` it then
//! waits for a line on stdin before the first frame. Prints `done <n>` at
//! the end. `--print-schema` prints the kind's exact message JSON Schema
//! (the codec's, from the Rust type) and exits.

use std::io::BufRead;
use std::time::{Duration, Instant};

use clap::Parser;
use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};
use shmbus_pub::{Publisher, Topic};

#[derive(Serialize, Deserialize, MaxSize, postcard_schema::Schema, Debug, Clone, Copy)]
enum Mode {
    Idle,
    Run,
    Fault,
}

#[derive(Serialize, Deserialize, MaxSize, postcard_schema::Schema, Debug, Clone, Copy)]
enum Command {
    Stop,
    Speed(f32),
    Turn(i16, i16),
    Goto { x: f32, y: f32 },
}

/// Every kind of node the JSON mapping has a rule for.
#[derive(Serialize, Deserialize, MaxSize, postcard_schema::Schema, Debug, Clone)]
struct Rich {
    seq: u64,
    t: f64,
    acc: [f32; 3],
    name: heapless::String<16>,
    mode: Mode,
    command: Command,
    maybe: Option<u16>,
    list: heapless::Vec<i16, 8>,
    big: u64,
    weird: f32,
    letter: char,
    flag: bool,
    pair: (u8, i32),
    nothing: (),
}

/// A sensor-like frame whose every value the viewer schema describes.
#[derive(Serialize, Deserialize, MaxSize, postcard_schema::Schema, Debug, Clone)]
struct Plain {
    seq: u64,
    t: f64,
    acc: [f32; 3],
    name: heapless::String<16>,
    mode: Mode,
    list: heapless::Vec<i16, 8>,
    flag: bool,
}

impl Plain {
    fn new(i: u64) -> Plain {
        let r = Rich::new(i);
        Plain {
            seq: r.seq,
            t: r.t,
            acc: r.acc,
            name: r.name,
            mode: r.mode,
            list: r.list,
            flag: r.flag,
        }
    }
}

impl Rich {
    fn new(i: u64) -> Rich {
        let x = i as f32 * 0.01;
        let mut name = heapless::String::new();
        let _ = core::fmt::Write::write_fmt(&mut name, format_args!("rich-{}", i % 100_000));
        let mut list = heapless::Vec::new();
        for k in 0..(i % 9) {
            let _ = list.push(k as i16 - 4);
        }
        Rich {
            seq: i,
            t: i as f64 * 1e-3,
            acc: [x.sin(), x.cos(), 9.81],
            name,
            mode: [Mode::Idle, Mode::Run, Mode::Fault][(i % 3) as usize],
            command: match i % 4 {
                0 => Command::Stop,
                1 => Command::Speed(x),
                2 => Command::Turn(i as i16, -(i as i16)),
                _ => Command::Goto { x, y: -x },
            },
            maybe: (i % 3 != 0).then_some(i as u16),
            list,
            big: if i % 2 == 0 { u64::MAX } else { i },
            weird: [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.5][(i % 4) as usize],
            letter: ['a', 'é', '😀'][(i % 3) as usize],
            flag: i % 2 == 0,
            pair: (i as u8, -(i as i32)),
            nothing: (),
        }
    }
}

#[derive(Parser, Debug)]
struct Args {
    /// Topic name (key derived on the default bus).
    #[arg(long)]
    topic: String,
    /// rich, plain or u32.
    #[arg(long, default_value = "rich")]
    kind: String,
    /// Frames per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Frames to publish (0: until killed).
    #[arg(long, default_value_t = 100)]
    count: u64,
    /// Ring slots.
    #[arg(long, default_value_t = 64)]
    slots: u32,
    /// System V key (default: derived from the name on the default bus).
    #[arg(long, value_parser = shmbus_toolbox::parse::key)]
    key: Option<i32>,
    /// Wait for a line on stdin before the first frame.
    #[arg(long)]
    wait_go: bool,
    /// Stay alive (holding the topic, publishing nothing) this long after the last frame.
    #[arg(long, default_value_t = 0.0)]
    linger: f64,
    /// Remove the topic at the end.
    #[arg(long)]
    remove: bool,
    /// Print the kind's exact message JSON Schema and exit.
    #[arg(long)]
    print_schema: bool,
}

trait Sink {
    fn publish(&mut self, i: u64) -> Result<(), String>;
    fn key(&self) -> i32;
    fn remove(self: Box<Self>) -> Result<(), String>;
}

impl Sink for Publisher<Rich> {
    fn publish(&mut self, i: u64) -> Result<(), String> {
        Publisher::publish(self, &Rich::new(i))
            .map(drop)
            .map_err(|e| e.to_string())
    }
    fn key(&self) -> i32 {
        self.raw().key()
    }
    fn remove(self: Box<Self>) -> Result<(), String> {
        Publisher::remove(*self).map_err(|e| e.to_string())
    }
}

impl Sink for Publisher<Plain> {
    fn publish(&mut self, i: u64) -> Result<(), String> {
        Publisher::publish(self, &Plain::new(i))
            .map(drop)
            .map_err(|e| e.to_string())
    }
    fn key(&self) -> i32 {
        self.raw().key()
    }
    fn remove(self: Box<Self>) -> Result<(), String> {
        Publisher::remove(*self).map_err(|e| e.to_string())
    }
}

impl Sink for Publisher<u32> {
    fn publish(&mut self, i: u64) -> Result<(), String> {
        Publisher::publish(self, &(i as u32))
            .map(drop)
            .map_err(|e| e.to_string())
    }
    fn key(&self) -> i32 {
        self.raw().key()
    }
    fn remove(self: Box<Self>) -> Result<(), String> {
        Publisher::remove(*self).map_err(|e| e.to_string())
    }
}

fn main() -> Result<(), String> {
    let a = Args::parse();
    if !(a.rate > 0.0 && a.rate <= 1e6) {
        return Err(format!("--rate {}: use 0 < rate <= 1000000", a.rate));
    }
    if a.print_schema {
        let codec = match a.kind.as_str() {
            "rich" => shmbus_codec::Codec::of::<Rich>(),
            "plain" => shmbus_codec::Codec::of::<Plain>(),
            "u32" => shmbus_codec::Codec::of::<u32>(),
            other => return Err(format!("--kind {other}: use rich, plain or u32")),
        }
        .map_err(|e| e.to_string())?;
        println!("{}", codec.message_schema());
        return Ok(());
    }
    let mut topic = Topic::new(&a.topic).slots(a.slots);
    if let Some(k) = a.key {
        topic = topic.key(k);
    }
    let mut sink: Box<dyn Sink> = match a.kind.as_str() {
        "rich" => Box::new(Publisher::<Rich>::open(&topic).map_err(|e| e.to_string())?),
        "plain" => Box::new(Publisher::<Plain>::open(&topic).map_err(|e| e.to_string())?),
        "u32" => Box::new(Publisher::<u32>::open(&topic).map_err(|e| e.to_string())?),
        other => return Err(format!("--kind {other}: use rich, plain or u32")),
    };
    println!("ready {:#010x}", sink.key());
    if a.wait_go {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    }
    let period = Duration::from_secs_f64(1.0 / a.rate);
    let start = Instant::now();
    let mut i = 0;
    while a.count == 0 || i < a.count {
        // Absolute deadlines: the rate holds on average even when a sleep
        // oversleeps.
        let due = start + period.mul_f64(i as f64);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        sink.publish(i)?;
        i += 1;
    }
    println!("done {i} {:.3}", start.elapsed().as_secs_f64());
    if a.linger > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(a.linger));
    }
    if a.remove {
        sink.remove()?;
    }
    Ok(())
}
