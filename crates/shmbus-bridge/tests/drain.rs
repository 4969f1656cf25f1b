//! A stopping bridge sends what its readers still hold: the whole run
//! (`shmbus_bridge::run`), in this process, against a minimal broker on
//! loopback that records every byte it is sent. Its own test binary: it
//! raises SIGTERM, which `run` turns into its stop flag. Keys: 0x7b top byte
//! (the bridge tests' range) plus a hash of the pid; every segment is
//! removed by a Guard, even when the test fails.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};
use shmbus_bridge::mqtt::{MqttOverrides, MqttSettings};
use shmbus_bridge::settings::{Overrides, Settings};
use shmbus_core::Topic;
use shmbus_pub::Publisher;
use shmbus_testkit::Guard;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, MaxSize, postcard_schema::Schema)]
struct Level {
    seq: u32,
}

fn key(i: u32) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in std::process::id()
        .to_le_bytes()
        .into_iter()
        .chain((0xd7a1_0000 + i).to_le_bytes())
    {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    (0x7b00_0000 | (h & 0x00ff_ffff)) as i32
}

/// A broker that accepts one client, answers its CONNECT and keeps every
/// byte it is sent (nothing else is answered: the bridge needs no more).
fn broker(listener: std::net::TcpListener, got: Arc<Mutex<Vec<u8>>>, done: Arc<AtomicBool>) {
    let Ok((mut sock, _)) = listener.accept() else {
        return;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = vec![0; 1 << 16];
    let mut acked = false;
    while !done.load(Ordering::Relaxed) {
        match sock.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                got.lock().unwrap().extend_from_slice(&buf[..n]);
                if !acked {
                    acked = true;
                    if sock.write_all(&[0x20, 2, 0, 0]).is_err() {
                        return;
                    }
                }
            }
            Err(_) => {}
        }
    }
}

fn contains(got: &Mutex<Vec<u8>>, what: &str) -> bool {
    got.lock()
        .unwrap()
        .windows(what.len())
        .any(|w| w == what.as_bytes())
}

/// Three topics sent at most every 10 s: each one's newest frame is
/// published while its reader rests, then the bridge is stopped. Every
/// one of those frames must reach the broker (the docs: a clean stop sends
/// what the rings still hold). The watcher used to end the run as soon as
/// the outbox was empty, before the readers had put their last frames in
/// it: the pump then took at most one more, and the others were lost
/// (counted as still queued at the stop).
#[test]
fn a_clean_stop_sends_every_readers_last_frame() {
    const N: u32 = 3;
    let keys: Vec<i32> = (0..N).map(key).collect();
    let _guards: Vec<Guard> = keys.iter().map(|&k| Guard(k)).collect();
    let mut text = String::from("bus = \"drain\"\n");
    for (i, k) in keys.iter().enumerate() {
        text.push_str(&format!(
            "[[topic]]\nname = \"t{i}\"\nkey = 0x{:08x}\nslots = 8\n",
            *k as u32
        ));
    }
    text.push_str("[bridge]\nboard_id = \"b\"\n");
    for i in 0..N {
        text.push_str(&format!(
            "[[bridge.out]]\ntopic = \"t{i}\"\nrate_hz = 0.1\n"
        ));
    }
    let config = shmbus_config::Config::parse(&text, "drain.toml").unwrap();
    let mut pubs: Vec<Publisher<Level>> = (0..N as usize)
        .map(|i| {
            Publisher::<Level>::open(&Topic::new(&format!("t{i}")).key(keys[i]).slots(8)).unwrap()
        })
        .collect();
    for p in &mut pubs {
        p.publish(&Level { seq: 1 }).unwrap();
    }

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let b = {
        let (got, done) = (got.clone(), done.clone());
        std::thread::spawn(move || broker(listener, got, done))
    };
    let settings = Settings::resolve(&config, &Overrides::default()).unwrap();
    let mqtt = MqttSettings::resolve(
        &settings.table.mqtt,
        &MqttOverrides {
            broker: Some(format!("127.0.0.1:{port}")),
            ..MqttOverrides::default()
        },
        &config.path,
        &settings.board_id,
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(shmbus_bridge::run(settings, mqtt, None));
    });

    // Each reader sent its first frame at attach and rests for 10 s.
    let watchdog = Instant::now() + Duration::from_secs(120);
    for i in 0..N {
        let first = format!("{{\"topic\":\"t{i}\",\"generation\":1,");
        while !contains(&got, &first) {
            assert!(Instant::now() < watchdog, "t{i}'s first frame never came");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for p in &mut pubs {
        p.publish(&Level { seq: 2 }).unwrap();
    }
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).unwrap();
    let r = rx.recv_timeout(Duration::from_secs(60));
    done.store(true, Ordering::Relaxed);
    let _ = b.join();
    let summary = r.expect("the bridge did not stop within 60 s").unwrap();
    for i in 0..N {
        let last = format!("{{\"topic\":\"t{i}\",\"generation\":2,");
        assert!(
            contains(&got, &last),
            "t{i}'s last frame never reached the broker; summary {summary}"
        );
    }
    assert_eq!(summary["queue"]["len"], 0, "{summary}");
}
