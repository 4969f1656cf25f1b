//! `shmbus-bridge-probe`: the bus side of the bridge's broker tests
//! (feature `broker-tests`; never installed). Each mode prints progress
//! lines and ends with one `RESULT {json}` line on stdout.
//!
//! - `pub`: publish `Tick` frames on a topic (`--key --name --count --rate
//!   --epoch --slots --wait-subs --linger-ms --remove`).
//! - `sub`: read `Tick` frames in order with the typed subscriber (so a
//!   topic of another schema is refused), count lost and duplicate frames,
//!   check every value, measure the latency from the publish on the first
//!   board (`t_ns`, `CLOCK_MONOTONIC`) to this read (`--key --name --count
//!   --timeout-s --idle-s`).
//! - `big`: publish `--count` frames of `Big` (declared below), whose JSON
//!   is about 1.2 MB: over the bridge's broker link limit, once a reader
//!   has attached (`--key --name --count`).
//! - `board`: publish the demo-like topics `imu`, `system`, `thermal`, `net`
//!   of a config at fixed rates for `--duration-s` (a fleet board).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};
use shmbus_core::Topic;
use shmbus_core::sys::monotonic_ns;
use shmbus_pub::Publisher;
use shmbus_sensors::msg::{self, Iface, Imu, Net, System, Temp, Thermal};
use shmbus_sub::{Next, Subscriber, WaitError};

/// The frame of the two-board tests: every field is derived from `seq`
/// (and the publisher's `epoch`), so a reader can check each one.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, MaxSize, postcard_schema::Schema)]
struct Tick {
    seq: u32,
    t_ns: u64,
    value: f32,
    epoch: u16,
}

/// A second schema, for a topic recreated with another type.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, MaxSize, postcard_schema::Schema)]
struct TickV2 {
    seq: u32,
    t_ns: u64,
    value: f64,
    epoch: u16,
    extra: u8,
}

impl Tick {
    fn new(epoch: u32, seq: u32) -> Tick {
        Tick {
            seq,
            t_ns: monotonic_ns(),
            value: seq as f32 * 0.5,
            epoch: epoch as u16,
        }
    }
    fn is_right(&self, epoch: u32) -> bool {
        self.value == self.seq as f32 * 0.5 && u32::from(self.epoch) == epoch
    }
}

struct Args(HashMap<String, String>);

impl Args {
    fn parse(v: &[String]) -> Result<Args, String> {
        let mut m = HashMap::new();
        let mut it = v.iter();
        while let Some(k) = it.next() {
            let k = k
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected {k}"))?;
            if k == "remove" || k == "v2" {
                m.insert(k.to_string(), "true".to_string());
                continue;
            }
            let v = it.next().ok_or_else(|| format!("--{k} needs a value"))?;
            m.insert(k.to_string(), v.clone());
        }
        Ok(Args(m))
    }
    fn get<T: std::str::FromStr>(&self, k: &str, default: T) -> Result<T, String> {
        match self.0.get(k) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{k} {v}: not a valid value")),
        }
    }
    fn key(&self) -> Result<i32, String> {
        let s = self.0.get("key").ok_or("--key is required")?;
        let h = s.strip_prefix("0x").ok_or("--key: write 0x...")?;
        u32::from_str_radix(h, 16)
            .map(|k| k as i32)
            .map_err(|e| format!("--key {s}: {e}"))
    }
    fn topic(&self) -> Result<Topic, String> {
        Ok(Topic::new(&self.get("name", "tick".to_string())?)
            .key(self.key()?)
            .slots(self.get("slots", 1024)?))
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = argv.split_first() else {
        shmbus_toolbox::say!("usage: shmbus-bridge-probe pub|sub|board --OPTION VALUE ...");
        return ExitCode::from(2);
    };
    let r = Args::parse(rest).and_then(|a| match mode.as_str() {
        "pub" => publisher(&a),
        "sub" => subscriber(&a),
        "board" => board(&a),
        "echo" => echo(&a),
        "big" => big(&a),
        other => Err(format!("unknown mode {other}")),
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("ERROR {e}");
            ExitCode::from(1)
        }
    }
}

/// Sleep until `t0 + i * period`.
fn pace(t0: Instant, i: u64, period: Option<Duration>) {
    if let Some(p) = period {
        let due = t0 + p * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

fn publisher(a: &Args) -> Result<(), String> {
    let topic = a.topic()?;
    let count: u32 = a.get("count", 1000)?;
    let rate: f64 = a.get("rate", 1000.0)?;
    let epoch: u32 = a.get("epoch", 1)?;
    let wait_subs: u64 = a.get("wait-subs", 0)?;
    let linger = Duration::from_millis(a.get("linger-ms", 0)?);
    if a.0.contains_key("v2") {
        return publish_v2(a, &topic, count, rate, epoch);
    }
    let mut p = Publisher::<Tick>::open(&topic).map_err(|e| format!("open: {e}"))?;
    println!("OPEN pid={}", std::process::id());
    wait_readers(p.raw(), wait_subs)?;
    println!("WAITING");
    wait_go(a)?;
    println!("START");
    let period = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    let t0 = Instant::now();
    for seq in 0..count {
        pace(t0, u64::from(seq), period);
        p.publish(&Tick::new(epoch, seq))
            .map_err(|e| format!("publish: {e}"))?;
    }
    println!("DONE n={count} in {:.3} s", t0.elapsed().as_secs_f64());
    std::thread::sleep(linger);
    if a.0.contains_key("remove") {
        p.remove().map_err(|e| format!("remove: {e}"))?;
    }
    println!("RESULT {{\"published\":{count}}}");
    Ok(())
}

/// The declaration of `big`'s frames.
const BIG: &str = "struct Big { seq: u32, data: heapless::Vec<u8, 300000> }";

fn big(a: &Args) -> Result<(), String> {
    let count: u32 = a.get("count", 1)?;
    let codec = shmbus_codec::Codec::parse(BIG).map_err(|e| e.to_string())?;
    let cap = codec.max_size().ok_or("Big has no largest size")?;
    let mut p = shmbus_pub::RawPublisher::open(&a.topic()?.slots(4), &codec.schema_bytes(), cap)
        .map_err(|e| format!("open: {e}"))?;
    println!("OPEN pid={}", std::process::id());
    // The bridge is waiting first, so it reads every frame.
    wait_readers(&p, 1)?;
    for seq in 0..count {
        let v = serde_json::json!({ "seq": seq, "data": vec![255u8; 300_000] });
        let frame = codec.encode_within(&v, cap).map_err(|e| e.to_string())?;
        p.publish_bytes(&frame)
            .map_err(|e| format!("publish: {e}"))?;
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("RESULT {{\"published\":{count}}}");
    Ok(())
}

/// Wait (at most 60 s) until `n` readers are attached and, if `n > 0`,
/// one of them has gone to sleep waiting for a frame. Attaching alone is
/// not enough: a reader is counted in `nattch` from its `shmat`, before it
/// fixes where it reads from, and a frame published in between would be
/// before its cursor. A reader registers to sleep only after that (and
/// again every time it sleeps), so a change of the waiter word says it is
/// ready. A topic without a waiter segment falls back to `nattch`.
fn wait_readers(p: &shmbus_pub::RawPublisher, n: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = p.sleep_registrations();
    loop {
        let st = shmbus_core::sys::shm_stat(p.shmid()).map_err(|e| e.to_string())?;
        let asleep = n == 0 || first.is_none() || p.sleep_registrations() != first;
        if st.nattch > n && asleep {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "fewer than {n} readers attached and waiting within 60 s (nattch {}, a reader asleep: {asleep})",
                st.nattch
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `--go FILE`: wait (at most 120 s) until FILE exists.
fn wait_go(a: &Args) -> Result<(), String> {
    let Some(go) = a.0.get("go") else {
        return Ok(());
    };
    let end = Instant::now() + Duration::from_secs(120);
    while !std::path::Path::new(go).exists() {
        if Instant::now() > end {
            return Err(format!("{go} did not appear within 120 s"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn publish_v2(a: &Args, topic: &Topic, count: u32, rate: f64, epoch: u32) -> Result<(), String> {
    let mut p = Publisher::<TickV2>::open(topic).map_err(|e| format!("open: {e}"))?;
    println!("OPEN pid={}", std::process::id());
    wait_go(a)?;
    let period = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    let t0 = Instant::now();
    for seq in 0..count {
        pace(t0, u64::from(seq), period);
        let t = Tick::new(epoch, seq);
        p.publish(&TickV2 {
            seq,
            t_ns: t.t_ns,
            value: f64::from(t.value),
            epoch: t.epoch,
            extra: 7,
        })
        .map_err(|e| format!("publish: {e}"))?;
    }
    std::thread::sleep(Duration::from_millis(a.get("linger-ms", 0)?));
    if a.0.contains_key("remove") {
        p.remove().map_err(|e| format!("remove: {e}"))?;
    }
    println!("RESULT {{\"published\":{count}}}");
    Ok(())
}

/// Any topic, typeless: each frame as a JSON line (the shared codec).
fn echo(a: &Args) -> Result<(), String> {
    let topic = a.topic()?;
    let count: u64 = a.get("count", 1)?;
    let timeout = Duration::from_secs_f64(a.get("timeout-s", 30.0)?);
    let end = Instant::now() + Duration::from_secs(60);
    let mut sub = loop {
        match shmbus_sub::RawSubscriber::attach(&topic) {
            Ok(s) => break s,
            Err(e) if Instant::now() > end => return Err(format!("attach: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let codec =
        shmbus_codec::Codec::from_schema_bytes(&sub.info().schema).map_err(|e| e.to_string())?;
    println!("READY");
    let start = Instant::now();
    let mut n = 0u64;
    let mut frame = Vec::new();
    while n < count && start.elapsed() < timeout {
        match sub.wait_until(Duration::from_millis(200), |raw| {
            match raw.next_bytes(&mut frame)? {
                shmbus_sub::RawNext::Frame(m, ()) => Ok(Some(m)),
                _ => Ok(None),
            }
        }) {
            Ok(m) => {
                n += 1;
                println!(
                    "FRAME {} {}",
                    m.generation,
                    codec.to_json(&frame).map_err(|e| e.to_string())?
                );
            }
            Err(WaitError::Timeout | WaitError::PublisherGone) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    println!("RESULT {{\"frames\":{n}}}");
    Ok(())
}

fn subscriber(a: &Args) -> Result<(), String> {
    let topic = a.topic()?;
    let count: u32 = a.get("count", 1000)?;
    let epoch: u32 = a.get("epoch", 1)?;
    let timeout = Duration::from_secs_f64(a.get("timeout-s", 120.0)?);
    let idle = Duration::from_secs_f64(a.get("idle-s", 10.0)?);
    let mut sub = Subscriber::<Tick>::wait_for_topic(&topic, Duration::from_secs(60))
        .map_err(|e| format!("attach: {e}"))?;
    println!("READY");
    let start = Instant::now();
    let mut seen = vec![false; count as usize];
    let (mut received, mut dup, mut bad, mut ring_missed) = (0u64, 0u64, 0u64, 0u64);
    let mut lat_us: Vec<u64> = Vec::with_capacity(count as usize);
    let mut last_frame = Instant::now();
    let mut last_seq = None;
    while start.elapsed() < timeout {
        if received > 0 && last_frame.elapsed() > idle {
            break;
        }
        match sub.wait_next(Duration::from_millis(200)) {
            Ok(Next::Frame(s)) => {
                let now = monotonic_ns();
                last_frame = Instant::now();
                received += 1;
                let t = s.value;
                if !t.is_right(epoch) || t.seq >= count {
                    bad += 1;
                    continue;
                }
                lat_us.push(now.saturating_sub(t.t_ns) / 1000);
                let slot = &mut seen[t.seq as usize];
                if *slot {
                    dup += 1;
                }
                *slot = true;
                last_seq = Some(t.seq);
                if t.seq == count - 1 {
                    break;
                }
            }
            Ok(Next::Missed(n)) => ring_missed += n,
            Ok(Next::Empty) | Err(WaitError::Timeout | WaitError::PublisherGone) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let unique = seen.iter().filter(|s| **s).count() as u64;
    lat_us.sort_unstable();
    let pct = |p: f64| {
        lat_us
            .get(((lat_us.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let mean = if lat_us.is_empty() {
        0
    } else {
        lat_us.iter().sum::<u64>() / lat_us.len() as u64
    };
    println!(
        "RESULT {{\"received\":{received},\"unique\":{unique},\"lost\":{},\"dup\":{dup},\"bad\":{bad},\"ring_missed\":{ring_missed},\"last_seq\":{},\"lat_us\":{{\"p50\":{},\"p99\":{},\"max\":{},\"mean\":{mean}}}}}",
        u64::from(count) - unique,
        last_seq.map_or(-1, i64::from),
        pct(0.5),
        pct(0.99),
        lat_us.last().copied().unwrap_or(0),
    );
    Ok(())
}

/// A fleet board: `imu` at `--imu-hz`, `system` 2 Hz, `thermal` 1 Hz, `net`
/// 2 Hz, from the topics of `--config`, for `--duration-s`.
fn board(a: &Args) -> Result<(), String> {
    let path: String = a.get("config", String::new())?;
    let cfg =
        shmbus_config::Config::load(std::path::Path::new(&path)).map_err(|e| e.to_string())?;
    let topic = |n: &str| -> Result<Topic, String> {
        cfg.require_topic(n)?.to_topic().map_err(|e| e.to_string())
    };
    let imu_hz: f64 = a.get("imu-hz", 100.0)?;
    let duration = Duration::from_secs_f64(a.get("duration-s", 30.0)?);
    let mut imu = Publisher::<Imu>::open(&topic("imu")?).map_err(|e| e.to_string())?;
    let mut system = Publisher::<System>::open(&topic("system")?).map_err(|e| e.to_string())?;
    let mut thermal = Publisher::<Thermal>::open(&topic("thermal")?).map_err(|e| e.to_string())?;
    let mut net = Publisher::<Net>::open(&topic("net")?).map_err(|e| e.to_string())?;
    println!("START");
    let t0 = Instant::now();
    let period = Duration::from_secs_f64(1.0 / imu_hz);
    let mut i: u64 = 0;
    let mut counts = [0u64; 4];
    while t0.elapsed() < duration {
        pace(t0, i, Some(period));
        let t_ns = monotonic_ns();
        let x = i as f32 * 0.01;
        imu.publish(&Imu {
            t_ns,
            seq: i,
            acc: [x.sin(), x.cos(), 9.81],
            gyro: [0.1, -0.2, 0.3 * x.sin()],
            temp_c: 35.0,
        })
        .map_err(|e| e.to_string())?;
        counts[0] += 1;
        // The slow topics on the IMU's clock.
        let every = |hz: f64| (imu_hz / hz).round().max(1.0) as u64;
        if i % every(2.0) == 0 {
            system
                .publish(&System {
                    t_ns,
                    cpu_pct: Some(12.5),
                    cpus: 1,
                    load: Some([0.5, 0.4, 0.3]),
                    tasks: Some([1, 80]),
                    mem: Some(msg::Memory {
                        total_kib: 524_288,
                        available_kib: 300_000 - (i % 1000),
                        swap_total_kib: 0,
                        swap_free_kib: 0,
                    }),
                })
                .map_err(|e| e.to_string())?;
            counts[1] += 1;
            let mut ifaces = heapless::Vec::new();
            for (n, rate) in [("eth0", 1200.0), ("wlan0", 80.0)] {
                let _ = ifaces.push(Iface {
                    name: msg::name(n),
                    rx_bytes: i * 600,
                    rx_packets: i,
                    rx_errors: 0,
                    rx_dropped: 0,
                    tx_bytes: i * 300,
                    tx_packets: i / 2,
                    tx_errors: 0,
                    tx_dropped: 0,
                    rx_bytes_per_s: rate,
                    tx_bytes_per_s: rate / 2.0,
                });
            }
            net.publish(&Net { t_ns, ifaces })
                .map_err(|e| e.to_string())?;
            counts[3] += 1;
        }
        if i % every(1.0) == 0 {
            let mut temps = heapless::Vec::new();
            for (n, c) in [("cpu-thermal", 48_000), ("pmic", 41_500), ("board", 36_250)] {
                let _ = temps.push(Temp {
                    name: msg::name(n),
                    milli_c: c + (i % 100) as i32,
                });
            }
            thermal
                .publish(&Thermal { t_ns, temps })
                .map_err(|e| e.to_string())?;
            counts[2] += 1;
        }
        i += 1;
    }
    println!(
        "RESULT {{\"imu\":{},\"system\":{},\"thermal\":{},\"net\":{}}}",
        counts[0], counts[1], counts[2], counts[3]
    );
    Ok(())
}
