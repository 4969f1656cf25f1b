//! Figures, not speed limits (nothing here asserts a time): a fleet of
//! boards into one broker; the bridge's CPU per 1,000 frames/s; its memory
//! while the broker is away. Run by ci/bridge-test.sh (release build); the
//! numbers go to docs/BRIDGE.md. Each test still checks its accounting.
//!
//! Env: SHMBUS_FLEET_BOARDS (50), SHMBUS_FLEET_SECONDS (30),
//! SHMBUS_FLEET_IMU_HZ (100), SHMBUS_CPU_SECONDS (10).

#[path = "harness/mod.rs"]
mod harness;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::{Board, Broker, Dir, LONG, SHORT, cpu_time, memory_kib};
use serde_json::Value;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn n(v: &Value, p: &str) -> u64 {
    v.pointer(p)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no {p} in {v}"))
}

/// What the ground station saw of one (board, topic).
#[derive(Default)]
struct Seen {
    messages: u64,
    bytes: u64,
    last_gen: u64,
    gaps: u64,
}

/// A ground station: every data message of every board, with latency from
/// the publish on the board (`mono_ns`) to its arrival here.
struct Ground {
    seen: Arc<Mutex<HashMap<(String, String), Seen>>>,
    lat_us: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ground {
    fn start(port: u16) -> Ground {
        let seen = Arc::new(Mutex::new(HashMap::<(String, String), Seen>::new()));
        let lat_us = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut o = rumqttc::MqttOptions::new("ground", "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = rumqttc::Client::new(o, 64);
        client
            .subscribe("shmbus/+/+", rumqttc::QoS::AtMostOnce)
            .unwrap();
        let (s, l, st) = (seen.clone(), lat_us.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let _client = client;
            while !st.load(Ordering::Relaxed) {
                let Ok(ev) = conn.recv_timeout(Duration::from_millis(200)) else {
                    continue;
                };
                let Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p))) = ev else {
                    continue;
                };
                let now = shmbus_core::sys::monotonic_ns();
                let mut parts = p.topic.split('/');
                let (Some(_), Some(board), Some(topic)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                if topic.starts_with('$') || p.retain {
                    continue; // state and stats, and the retained values of the connect
                }
                let Ok(v) = serde_json::from_slice::<Value>(&p.payload) else {
                    continue;
                };
                let (Some(g), Some(mono)) = (v["generation"].as_u64(), v["mono_ns"].as_u64())
                else {
                    continue;
                };
                l.lock().unwrap().push(now.saturating_sub(mono) / 1000);
                let mut seen = s.lock().unwrap();
                let e = seen
                    .entry((board.to_string(), topic.to_string()))
                    .or_default();
                if e.last_gen != 0 && g > e.last_gen + 1 {
                    e.gaps += g - e.last_gen - 1;
                }
                e.last_gen = e.last_gen.max(g);
                e.messages += 1;
                e.bytes += p.payload.len() as u64;
            }
        });
        Ground {
            seen,
            lat_us,
            stop,
            thread: Some(thread),
        }
    }

    fn total(&self) -> u64 {
        self.seen.lock().unwrap().values().map(|s| s.messages).sum()
    }

    fn bytes(&self) -> u64 {
        self.seen.lock().unwrap().values().map(|s| s.bytes).sum()
    }
}

impl Drop for Ground {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(0)
}

const BOARD_TOPICS: &str = "[[topic]]\nname = \"imu\"\nkey = 0x7b000011\nslots = 64\nrate_hz = 100\n\
[[topic]]\nname = \"system\"\nkey = 0x7b000012\nrate_hz = 2\n\
[[topic]]\nname = \"thermal\"\nkey = 0x7b000013\nrate_hz = 1\n\
[[topic]]\nname = \"net\"\nkey = 0x7b000014\nrate_hz = 2\n";

#[test]
fn a_fleet_of_boards_into_one_broker() {
    let boards = env_num("SHMBUS_FLEET_BOARDS", 50) as usize;
    let secs = env_num("SHMBUS_FLEET_SECONDS", 30);
    let imu_hz = env_num("SHMBUS_FLEET_IMU_HZ", 100);
    let dir = Dir::new("fleet");
    let broker = Broker::start(&dir, "broker", "");
    // Every board: the IMU's latest value at 10 Hz, the slow topics every frame.
    let cfg = dir.write(
        "board.toml",
        &format!("{BOARD_TOPICS}\n[bridge]\nstats_interval_s = 10\n[[bridge.out]]\ntopic = \"imu\"\nrate_hz = 10\n"),
        0o644,
    );
    let ground = Ground::start(broker.port);
    let started = Instant::now();
    let mut fleet: Vec<Board> = (0..boards)
        .map(|i| {
            let mut b = Board::new(&format!("f{i:03}"));
            b.start_bridge(
                &broker.url(),
                &cfg,
                &["--board-id", &format!("board-{i:03}")],
            );
            b
        })
        .collect();
    for b in &mut fleet {
        b.bridge().wait_line("connected to", LONG);
    }
    let setup = started.elapsed();
    let warm = 3;
    let mut probes: Vec<_> = fleet
        .iter()
        .map(|b| {
            b.probe(
                "board",
                &[
                    "board",
                    "--config",
                    cfg.to_str().unwrap(),
                    "--imu-hz",
                    &imu_hz.to_string(),
                    "--duration-s",
                    &(secs + warm + 2).to_string(),
                ],
            )
        })
        .collect();
    std::thread::sleep(Duration::from_secs(warm));
    let pids: Vec<u32> = fleet.iter_mut().map(|b| b.bridge().pid()).collect();
    let cpu0: Vec<Duration> = pids.iter().map(|p| cpu_time(*p)).collect();
    let pub0: Vec<Duration> = probes.iter().map(|p| cpu_time(p.pid())).collect();
    let broker0 = cpu_time(broker.pid());
    let msgs0 = ground.total();
    let bytes0 = ground.bytes();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let wall = t0.elapsed().as_secs_f64();
    let cpu: Vec<f64> = pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c)| (cpu_time(*p) - *c).as_secs_f64() / wall * 100.0)
        .collect();
    let pubs: Vec<f64> = probes
        .iter()
        .zip(&pub0)
        .map(|(p, c)| (cpu_time(p.pid()) - *c).as_secs_f64() / wall * 100.0)
        .collect();
    let broker_cpu = (cpu_time(broker.pid()) - broker0).as_secs_f64() / wall * 100.0;
    let rate = (ground.total() - msgs0) as f64 / wall;
    let byte_rate = (ground.bytes() - bytes0) as f64 / wall;
    let rss: Vec<u64> = pids.iter().map(|p| memory_kib(*p).0).collect();
    let broker_rss = memory_kib(broker.pid()).0;
    for p in &mut probes {
        p.finish(LONG);
    }
    std::thread::sleep(Duration::from_secs(1));
    let stats: Vec<Value> = fleet.iter_mut().map(|b| b.bridge().stop(SHORT).1).collect();
    let mut lat = ground.lat_us.lock().unwrap().clone();
    let (p50, p99, max) = (
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        lat.last().copied().unwrap_or(0),
    );
    let seen = ground.seen.lock().unwrap();
    let gaps: u64 = seen
        .iter()
        .filter(|((_, t), _)| t != "imu")
        .map(|(_, s)| s.gaps)
        .sum();
    let missed: u64 = stats.iter().map(|s| n(s, "/out/missed")).sum();
    let dropped: u64 = stats.iter().map(|s| n(s, "/out/dropped")).sum();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let maxf = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    println!(
        "FLEET boards={boards} imu_hz={imu_hz} window_s={secs} setup_s={:.1}",
        setup.as_secs_f64()
    );
    println!(
        "FLEET broker_in_msgs_per_s={rate:.0} per_board_msgs_per_s={:.1} per_board_payload_bytes_per_s={:.0} mean_payload_bytes={:.0}",
        rate / boards as f64,
        byte_rate / boards as f64,
        byte_rate / rate
    );
    println!(
        "FLEET bridge_cpu_pct mean={:.2} max={:.2} rss_kib mean={} max={}",
        mean(&cpu),
        maxf(&cpu),
        rss.iter().sum::<u64>() / rss.len() as u64,
        rss.iter().max().unwrap()
    );
    println!("FLEET publisher_cpu_pct mean={:.2}", mean(&pubs));
    println!(
        "FLEET broker_cpu_pct={broker_cpu:.1} broker_rss_kib={broker_rss} broker_us_per_msg={:.1}",
        broker_cpu / 100.0 * 1e6 / (2.0 * rate)
    );
    println!(
        "FLEET latency_ms p50={:.2} p99={:.2} max={:.2} ({} messages)",
        p50 as f64 / 1e3,
        p99 as f64 / 1e3,
        max as f64 / 1e3,
        lat.len()
    );
    println!(
        "FLEET lost: every-frame topics {gaps} (generation gaps at the ground station), bridge ring missed {missed}, outbox dropped {dropped}"
    );
    // Every board reached the ground station on every topic.
    for i in 0..boards {
        for t in ["imu", "system", "thermal", "net"] {
            let s = seen.get(&(format!("board-{i:03}"), t.to_string()));
            assert!(
                s.is_some_and(|s| s.messages > 0),
                "nothing from board-{i:03}/{t}"
            );
        }
    }
    // And none of the every-frame topics lost a frame on the way.
    assert_eq!((gaps, missed, dropped), (0, 0, 0));
}

/// One board, one topic at 1,000 frames/s, every frame as JSON.
#[test]
fn bridge_cpu_per_thousand_frames_per_second() {
    let secs = env_num("SHMBUS_CPU_SECONDS", 10);
    let dir = Dir::new("cpu");
    let broker = Broker::start(&dir, "broker", "");
    let cfg = dir.write(
        "a.toml",
        "[[topic]]\nname = \"tick\"\nkey = 0x7b000001\nslots = 1024\n[bridge]\nboard_id = \"a\"\nstats_interval_s = 0\n",
        0o644,
    );
    let mut a = Board::new("a");
    a.start_bridge(&broker.url(), &cfg, &[])
        .wait_line("connected to", LONG);
    let count = (secs + 4) * 1000;
    let mut p = a.probe(
        "pub",
        &[
            "pub",
            "--key",
            "0x7b000001",
            "--count",
            &count.to_string(),
            "--rate",
            "1000",
            "--wait-subs",
            "1",
        ],
    );
    p.wait_line("START", LONG);
    std::thread::sleep(Duration::from_secs(2));
    let pid = a.bridge().pid();
    let (c0, b0, p0, t0) = (
        cpu_time(pid),
        cpu_time(broker.pid()),
        cpu_time(p.pid()),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(secs));
    let wall = t0.elapsed().as_secs_f64();
    let bridge = (cpu_time(pid) - c0).as_secs_f64() / wall * 100.0;
    let brk = (cpu_time(broker.pid()) - b0).as_secs_f64() / wall * 100.0;
    let publ = (cpu_time(p.pid()) - p0).as_secs_f64() / wall * 100.0;
    let (rss, hwm) = memory_kib(pid);
    p.finish(LONG);
    let (_, stats) = a.bridge().stop(SHORT);
    let under = std::env::var("SHMBUS_BRIDGE_UNDER_TEST").unwrap_or_else(|_| "native".into());
    println!(
        "CPU bridge={bridge:.2}% of one core per 1000 frames/s (JSON, QoS 0) rss_kib={rss} hwm_kib={hwm} broker={brk:.2}% publisher={publ:.2}% [{under}]"
    );
    assert_eq!(
        n(&stats, "/out/missed") + n(&stats, "/out/dropped"),
        0,
        "{stats}"
    );
    assert_eq!(n(&stats, "/topics/tick/sent"), count, "{stats}");
}

/// The broker is away: the outbox fills to its bound and stays there,
/// dropping (and counting) the oldest frames; memory stays flat.
#[test]
fn memory_while_the_broker_is_away() {
    let dir = Dir::new("away");
    let closed = harness::free_port(); // nothing listens there
    let cfg = dir.write(
        "a.toml",
        "[[topic]]\nname = \"tick\"\nkey = 0x7b000001\nslots = 1024\n[bridge]\nboard_id = \"a\"\nstats_interval_s = 0\nreconnect_max_ms = 500\n",
        0o644,
    );
    let mut a = Board::new("a");
    a.start_bridge(&format!("127.0.0.1:{closed}"), &cfg, &[])
        .wait_line("retrying in", LONG);
    let count: u64 = 8000;
    let mut p = a.probe(
        "pub",
        &[
            "pub",
            "--key",
            "0x7b000001",
            "--count",
            &count.to_string(),
            "--rate",
            "2000",
            "--wait-subs",
            "1",
        ],
    );
    p.wait_line("START", LONG);
    let pid = a.bridge().pid();
    let before = memory_kib(pid).0;
    // Half way (the outbox of 1000 is full by then) and at the end.
    std::thread::sleep(Duration::from_secs(2));
    let half = memory_kib(pid).0;
    p.finish(LONG);
    let (end, hwm) = memory_kib(pid);
    let (st, stats) = a.bridge().stop(SHORT);
    assert!(st.success(), "{st}");
    println!(
        "AWAY rss_kib before={before} half={half} end={end} hwm={hwm} queue={} dropped={} (outbox 1000 messages / 1 MiB)",
        stats["queue"],
        n(&stats, "/out/dropped")
    );
    // Every frame read is either still queued or dropped and counted.
    assert_eq!(n(&stats, "/out/delivered"), 0, "{stats}");
    assert_eq!(n(&stats, "/queue/len"), 1000, "{stats}");
    assert_eq!(
        n(&stats, "/out/dropped") + n(&stats, "/queue/len"),
        n(&stats, "/topics/tick/sent"),
        "{stats}"
    );
    assert_eq!(n(&stats, "/topics/tick/sent"), count, "{stats}");
}
