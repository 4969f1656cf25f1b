//! iceoryx2 as a peer of `shmbus bench`: a two-process ping-pong over two
//! iceoryx2 publish-subscribe services with a 64-byte payload, busy-polling
//! on both sides, measured the way shmbus-bench measures its own
//! mechanisms: the initiating process reads `CLOCK_MONOTONIC` before the
//! ping and after the matching pong, and reports every raw round trip.
//! `shmbus bench` turns round trips into one-way figures (round trip / 2,
//! minus its own calibrated clock overhead), exactly as for shmbus.
//!
//! Usage: `iceoryx2-peer [--iters N] [--warmup N] [--cpus A,B]`
//! prints one JSON object on stdout:
//! `{"mechanism":..,"version":..,"pinned":..,"rtt_ns":[..]}`.
//!
//! Written from the iceoryx2 API documentation (docs.rs/iceoryx2); this file
//! is the only place that touches iceoryx2, and it lives outside the shmbus
//! workspace because iceoryx2 0.10 needs Rust 1.89.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iceoryx2::prelude::*;

/// 64 bytes: the payload size every mechanism of the bench moves.
type Payload = [u64; 8];

const STOP: u64 = u64::MAX;

struct Opts {
    iters: usize,
    warmup: usize,
    cpus: Option<(usize, usize)>,
    echo: Option<String>,
    cpu: Option<usize>,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        iters: 20_000,
        warmup: 2_000,
        cpus: None,
        echo: None,
        cpu: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--iters" => {
                o.iters = val("--iters")?
                    .parse()
                    .map_err(|e| format!("--iters: {e}"))?
            }
            "--warmup" => {
                o.warmup = val("--warmup")?
                    .parse()
                    .map_err(|e| format!("--warmup: {e}"))?
            }
            "--cpus" => {
                let v = val("--cpus")?;
                let (a, b) = v
                    .split_once(',')
                    .ok_or("--cpus wants A,B (two cpu numbers)")?;
                o.cpus = Some((
                    a.parse().map_err(|e| format!("--cpus: {e}"))?,
                    b.parse().map_err(|e| format!("--cpus: {e}"))?,
                ));
            }
            "--echo" => o.echo = Some(val("--echo")?),
            "--cpu" => o.cpu = Some(val("--cpu")?.parse().map_err(|e| format!("--cpu: {e}"))?),
            other => {
                return Err(format!(
                    "unknown argument '{other}' (try --iters N --warmup N --cpus A,B)"
                ))
            }
        }
    }
    Ok(o)
}

fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes inside `set`; `cpu` is checked against its size.
    unsafe { libc::CPU_SET(cpu % (8 * std::mem::size_of::<libc::cpu_set_t>()), &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size we pass.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        eprintln!("iceoryx2-peer: sched_setaffinity({cpu}) failed; running unpinned");
    }
}

type Pub = iceoryx2::port::publisher::Publisher<ipc::Service, Payload, ()>;
type Sub = iceoryx2::port::subscriber::Subscriber<ipc::Service, Payload, ()>;

fn ports(
    node: &Node<ipc::Service>,
    send: &str,
    recv: &str,
) -> Result<(Pub, Sub), Box<dyn std::error::Error>> {
    let tx = node
        .service_builder(&send.try_into()?)
        .publish_subscribe::<Payload>()
        .open_or_create()?;
    let rx = node
        .service_builder(&recv.try_into()?)
        .publish_subscribe::<Payload>()
        .open_or_create()?;
    Ok((
        tx.publisher_builder().create()?,
        rx.subscriber_builder().create()?,
    ))
}

fn send(publisher: &Pub, seq: u64) -> Result<(), Box<dyn std::error::Error>> {
    let sample = publisher.loan_uninit()?;
    let sample = sample.write_payload([seq; 8]);
    sample.send()?;
    Ok(())
}

fn echo(tag: &str) -> Result<(), Box<dyn std::error::Error>> {
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let (tx, rx) = ports(
        &node,
        &format!("shmbus-bench/{tag}/pong"),
        &format!("shmbus-bench/{tag}/ping"),
    )?;
    println!("ready");
    std::io::stdout().flush()?;
    loop {
        if let Some(s) = rx.receive()? {
            let seq = s.payload()[0];
            drop(s);
            if seq == STOP {
                return Ok(());
            }
            send(&tx, seq)?;
        } else {
            core::hint::spin_loop();
        }
    }
}

/// One round trip: ping `seq`, busy-poll for the pong carrying `seq`.
/// `None` if no pong came within `limit` (lost during connection set-up).
fn round_trip(
    tx: &Pub,
    rx: &Sub,
    seq: u64,
    limit: Duration,
) -> Result<Option<u64>, Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    send(tx, seq)?;
    loop {
        if let Some(s) = rx.receive()? {
            if s.payload()[0] == seq {
                return Ok(Some(t0.elapsed().as_nanos() as u64));
            }
        } else if t0.elapsed() > limit {
            return Ok(None);
        }
    }
}

fn run(o: &Opts) -> Result<(), Box<dyn std::error::Error>> {
    let tag = format!("p{}", std::process::id());
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let (tx, rx) = ports(
        &node,
        &format!("shmbus-bench/{tag}/ping"),
        &format!("shmbus-bench/{tag}/pong"),
    )?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["--echo", &tag])
        .stdout(Stdio::piped())
        .stdin(Stdio::null());
    if let Some((a, b)) = o.cpus {
        pin(a);
        cmd.args(["--cpu", &b.to_string()]);
    }
    let mut child = cmd.spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no child stdout")?).read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = child.kill();
        return Err("echo process did not start".into());
    }
    // Connection set-up: retry until pongs flow, then warm up.
    let mut seq = 0u64;
    let start = Instant::now();
    let mut ok = 0;
    while ok < o.warmup.max(1) {
        seq += 1;
        match round_trip(&tx, &rx, seq, Duration::from_millis(50))? {
            Some(_) => ok += 1,
            None if start.elapsed() > Duration::from_secs(10) => {
                let _ = child.kill();
                return Err("no pong from the echo process within 10 s".into());
            }
            None => {}
        }
    }
    let mut rtt = Vec::with_capacity(o.iters);
    while rtt.len() < o.iters {
        seq += 1;
        if let Some(ns) = round_trip(&tx, &rx, seq, Duration::from_secs(1))? {
            rtt.push(ns);
        }
    }
    send(&tx, STOP)?;
    let _ = child.wait();
    let list: Vec<String> = rtt.iter().map(u64::to_string).collect();
    println!(
        "{{\"mechanism\":\"iceoryx2 busy-poll handoff\",\"version\":\"0.10\",\"pinned\":{},\"payload_bytes\":64,\"rtt_ns\":[{}]}}",
        o.cpus.is_some(),
        list.join(",")
    );
    Ok(())
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("iceoryx2-peer: {e}");
            std::process::exit(2);
        }
    };
    let r = match o.echo.clone() {
        Some(tag) => {
            if let Some(c) = o.cpu {
                pin(c);
            }
            echo(&tag)
        }
        None => run(&o),
    };
    if let Err(e) = r {
        eprintln!("iceoryx2-peer: {e}");
        std::process::exit(1);
    }
}
