//! The server in-process against a WebSocket client (tungstenite's), with a
//! real publisher: subscriptions and frames, both subprotocols, topics that
//! appear and go, a client that never reads. Topics use keys with the top
//! byte 0x7a and the server is told to serve only those keys, so other
//! tests and programs on the machine are never seen. Runs natively and
//! under qemu-arm (the one child process, a publisher to suspend, runs
//! behind `SHMBUS_TEST_RUNNER` as the others crates' children do).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmbus_codec::Codec;
use shmbus_foxglove::{Config, Selector, Server, Summary};
use shmbus_pub::{Publisher, Topic};
use shmbus_testkit::steady::{Steady, widest_gap};
use shmbus_testkit::{Guard, KillOnDrop, child, role, unique_key, watchdog, ws};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};

#[derive(
    Serialize,
    Deserialize,
    Debug,
    Clone,
    PartialEq,
    postcard::experimental::max_size::MaxSize,
    postcard_schema::Schema,
)]
struct Sample {
    seq: u32,
    value: f32,
    label: heapless::String<8>,
}

fn sample(seq: u32) -> Sample {
    let mut label = heapless::String::new();
    let _ = core::fmt::Write::write_fmt(&mut label, format_args!("s{}", seq % 1000));
    Sample {
        seq,
        value: if seq % 5 == 0 {
            f32::NAN
        } else {
            seq as f32 * 0.5
        },
        label,
    }
}

/// A key of this test family (top byte 0x7a) and a guard that removes it.
/// The key is in the name too, as in `shmbus_testkit::unique_topic`: the
/// server resolves names, and two runs of these tests at once (two
/// checkouts on one machine) each had a live `fox-test/suspended` away from
/// its name's key, so neither resolved (ambiguous) and each server showed
/// its topic as `fox-test/suspended@0x7a...`: the tests that wait for the
/// plain name timed out.
fn key_for(test: &str) -> (Topic, Guard) {
    let key = shmbus_testkit::unique_key_family(0x7a, test);
    (
        Topic::new(&format!("fox-test/{test}-{:08x}", key as u32))
            .key(key)
            .slots(64),
        Guard(key),
    )
}

/// A server on 127.0.0.1:0 in its own thread, serving only `keys`.
struct Running {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Summary>>,
}

impl Running {
    fn start(keys: &[i32], tweak: impl FnOnce(&mut Config) + Send + 'static) -> Running {
        let mut cfg = Config {
            bind: "127.0.0.1:0".parse().unwrap(),
            topics: keys.iter().map(|k| Selector::Key(*k)).collect(),
            scan_interval: Duration::from_millis(100),
            quiet: true,
            ..Config::default()
        };
        tweak(&mut cfg);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let server = Server::bind(cfg).expect("bind");
            tx.send(server.local_addr()).unwrap();
            server.run(&s)
        });
        // Generous: under qemu-arm on a busy machine, a server of 32 wide
        // topics (debug build) took over 30 s to compile their schemas.
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("server started");
        Running {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Summary {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("server thread")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

fn connect(addr: SocketAddr, protocols: &str) -> (Ws, Option<String>) {
    let mut req = format!("ws://{addr}/").into_client_request().unwrap();
    if !protocols.is_empty() {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(protocols).unwrap(),
        );
    }
    let (ws, resp) = tungstenite::connect(req).expect("connect");
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    let p = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_string());
    (ws, p)
}

/// What a client saw.
#[derive(Default)]
struct Seen {
    channels: Vec<serde_json::Value>,
    unadvertised: Vec<u64>,
    statuses: Vec<serde_json::Value>,
    frames: Vec<(u32, u64, String)>,
}

/// Read until `done(seen)` or the deadline (panics then).
fn read_until(
    ws: &mut Ws,
    seen: &mut Seen,
    what: &str,
    limit: Duration,
    mut done: impl FnMut(&Seen) -> bool,
) {
    let end = Instant::now() + limit;
    while !done(seen) {
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}: {} frames, {} statuses {:?}",
            seen.frames.len(),
            seen.statuses.len(),
            seen.statuses.last()
        );
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                match v["op"].as_str().unwrap() {
                    "advertise" => seen
                        .channels
                        .extend(v["channels"].as_array().unwrap().iter().cloned()),
                    "unadvertise" => seen.unadvertised.extend(
                        v["channelIds"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|i| i.as_u64().unwrap()),
                    ),
                    "status" | "removeStatus" => seen.statuses.push(v),
                    "serverInfo" => {}
                    other => panic!("unexpected op {other}"),
                }
            }
            Ok(Message::Binary(b)) => {
                assert_eq!(b[0], 1, "Message Data");
                let sub = u32::from_le_bytes(b[1..5].try_into().unwrap());
                let ts = u64::from_le_bytes(b[5..13].try_into().unwrap());
                seen.frames
                    .push((sub, ts, String::from_utf8(b[13..].to_vec()).unwrap()));
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// Read until the server has advertised a channel (30 s at most); the
/// first channel's id.
fn advertised(ws: &mut Ws, seen: &mut Seen) -> u64 {
    read_until(ws, seen, "the advertise", Duration::from_secs(30), |s| {
        !s.channels.is_empty()
    });
    seen.channels[0]["id"].as_u64().unwrap()
}

/// The status messages the server sent this client that answer no
/// particular message (errors of ops it refused), in order.
fn answers(seen: &Seen) -> Vec<String> {
    seen.statuses
        .iter()
        .filter(|v| v["op"] == "status" && v["id"].is_null())
        .filter_map(|v| v["message"].as_str().map(str::to_string))
        .collect()
}

/// Send a message the server answers with an error naming it, and read
/// until that error: everything sent before it has been handled.
fn after_marker(ws: &mut Ws, seen: &mut Seen) {
    ws.send(Message::text(r#"{"op":"marker"}"#)).unwrap();
    read_until(
        ws,
        seen,
        "the marker's error",
        Duration::from_secs(30),
        |s| {
            s.statuses
                .iter()
                .any(|v| v["message"].as_str().unwrap_or("").contains("'marker'"))
        },
    );
}

fn subscribe(ws: &mut Ws, sub: u32, channel: u64) {
    ws.send(Message::text(format!(
        r#"{{"op":"subscribe","subscriptions":[{{"id":{sub},"channelId":{channel}}}]}}"#
    )))
    .unwrap();
}

#[test]
fn frames_reach_a_subscriber_as_the_codecs_json_with_their_publish_time() {
    watchdog("frames_reach_a_subscriber", Duration::from_secs(120));
    let (topic, _g) = key_for("frames");
    let mut publisher = Publisher::<Sample>::open(&topic).unwrap();
    let server = Running::start(&[topic.key], |_| {});
    let (mut ws, proto) = connect(server.addr, "foxglove.websocket.v1");
    assert_eq!(proto.as_deref(), Some("foxglove.websocket.v1"));
    let mut seen = Seen::default();
    advertised(&mut ws, &mut seen);
    let ch = &seen.channels[0];
    assert_eq!(ch["topic"], topic.name.as_str());
    assert_eq!(ch["encoding"], "json");
    assert_eq!(ch["schemaEncoding"], "jsonschema");
    assert_eq!(ch["schemaName"], "Sample");
    let codec = Codec::of::<Sample>().unwrap();
    let schema: serde_json::Value = serde_json::from_str(ch["schema"].as_str().unwrap()).unwrap();
    assert_eq!(schema, codec.viewer_schema());
    assert_eq!(schema["type"], "object");
    let id = ch["id"].as_u64().unwrap();
    subscribe(&mut ws, 7, id);
    // The subscription is live once a frame published now arrives.
    let mut n = 0;
    read_until(
        &mut ws,
        &mut seen,
        "a first frame",
        Duration::from_secs(30),
        |s| {
            if s.frames.is_empty() {
                publisher.publish(&sample(n)).unwrap();
                n += 1;
            }
            !s.frames.is_empty()
        },
    );
    let first = n;
    for seq in first..first + 50 {
        publisher.publish(&sample(seq)).unwrap();
    }
    read_until(
        &mut ws,
        &mut seen,
        "50 frames",
        Duration::from_secs(30),
        |s| {
            s.frames
                .iter()
                .any(|(_, _, j)| j.contains(&format!("\"seq\":{}", first + 49)))
        },
    );
    let tail: Vec<_> = seen
        .frames
        .iter()
        .filter(|(_, _, j)| {
            serde_json::from_str::<serde_json::Value>(j).unwrap()["seq"]
                .as_u64()
                .unwrap()
                >= u64::from(first)
        })
        .collect();
    assert_eq!(tail.len(), 50, "every frame, once, in order");
    let mut last_ts = 0;
    for (i, (sub, ts, json)) in tail.iter().enumerate() {
        assert_eq!(*sub, 7);
        assert!(*ts >= last_ts, "publish times in order");
        last_ts = *ts;
        let frame = postcard::to_allocvec(&sample(first + i as u32)).unwrap();
        assert_eq!(
            json,
            &codec.to_json(&frame).unwrap(),
            "the codec's JSON, byte for byte"
        );
    }
    // The publish time is CLOCK_REALTIME: within a minute of now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(now.abs_diff(last_ts) < 60_000_000_000, "{now} vs {last_ts}");
    drop(ws);
    let summary = server.stop();
    assert_eq!(summary.clients, 1);
}

#[test]
fn both_subprotocols_are_accepted_and_others_refused() {
    watchdog("both_subprotocols", Duration::from_secs(60));
    // A key where nothing is. No keys at all (as this test had) is every
    // topic on the machine: the 96 wide topics of the welcome tests
    // running beside it (their schemas compiled, 5 MB of channels in each
    // of its six welcomes) and anything another program published, which
    // overran the watchdog under load.
    let (topic, _g) = key_for("subprotocols");
    let server = Running::start(&[topic.key], |_| {});
    for (offer, agreed) in [
        ("foxglove.websocket.v1", "foxglove.websocket.v1"),
        ("foxglove.sdk.v1", "foxglove.sdk.v1"),
        ("foxglove.sdk.v1, foxglove.websocket.v1", "foxglove.sdk.v1"),
        (
            "foxglove.websocket.v1, foxglove.sdk.v1",
            "foxglove.websocket.v1",
        ),
    ] {
        let (_ws, p) = connect(server.addr, offer);
        assert_eq!(p.as_deref(), Some(agreed), "offer {offer}");
    }
    for offer in ["", "chat"] {
        let mut req = format!("ws://{}/", server.addr)
            .into_client_request()
            .unwrap();
        if !offer.is_empty() {
            req.headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("chat"));
        }
        match tungstenite::connect(req) {
            Err(tungstenite::Error::Http(r)) => {
                assert_eq!(r.status().as_u16(), 400);
                let body =
                    String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).to_string();
                assert!(
                    body.contains("offer the subprotocol foxglove.websocket.v1 or foxglove.sdk.v1"),
                    "{body}"
                );
            }
            other => panic!("offer '{offer}' was not refused: {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn topics_that_appear_and_go_are_advertised_and_unadvertised() {
    watchdog("topics_appear_and_go", Duration::from_secs(120));
    let (topic, _g) = key_for("appear");
    let server = Running::start(&[topic.key], |c| c.stale_after = Duration::from_millis(500));
    let (mut ws, _) = connect(server.addr, "foxglove.sdk.v1");
    let mut seen = Seen::default();
    let publisher = Publisher::<Sample>::open(&topic).unwrap();
    read_until(
        &mut ws,
        &mut seen,
        "the topic advertised",
        Duration::from_secs(30),
        |s| s.channels.iter().any(|c| c["topic"] == topic.name.as_str()),
    );
    let id = seen.channels[0]["id"].as_u64().unwrap();
    // Alive but never published: a warning with the topic's status id.
    let sid = format!("shmbus/{}", topic.name);
    read_until(
        &mut ws,
        &mut seen,
        "a staleness warning",
        Duration::from_secs(30),
        |s| {
            s.statuses
                .iter()
                .any(|v| v["id"] == sid.as_str() && v["level"] == 1)
        },
    );
    publisher.remove().unwrap();
    read_until(
        &mut ws,
        &mut seen,
        "the unadvertise",
        Duration::from_secs(30),
        |s| s.unadvertised.contains(&id),
    );
}

/// The lock removed (`ipcrm -s`, logind's `RemoveIPC`) under a publisher
/// that goes on publishing (as `shmbus pub --rate` and `replay` do): a
/// warning that it runs without its lock. It was the error "no publisher
/// is running" while the client got the frames. Once nothing comes, that
/// error again.
#[test]
fn a_publisher_without_its_lock_is_a_warning_not_no_publisher() {
    watchdog("fox_no_lock", Duration::from_secs(240));
    let (topic, _g) = key_for("no-lock");
    let mut p = Publisher::<Sample>::open(&topic).unwrap();
    p.publish(&sample(1)).unwrap();
    let server = Running::start(&[topic.key], |_| {});
    let (mut ws, _) = connect(server.addr, "foxglove.sdk.v1");
    let mut seen = Seen::default();
    advertised(&mut ws, &mut seen);
    assert!(shmbus_core::lock::remove_lock(topic.key).unwrap());
    let sid = format!("shmbus/{}", topic.name);
    let is = |v: &serde_json::Value, level: u64, text: &str| {
        v["op"] == "status"
            && v["id"] == sid.as_str()
            && v["level"] == level
            && v["message"].as_str().is_some_and(|m| m.contains(text))
    };
    // One frame per read of the socket (at most 200 ms apart): frames come
    // at every health check, whatever the machine's load.
    let mut seq = 2;
    read_until(
        &mut ws,
        &mut seen,
        "a warning that the publisher runs without its lock",
        Duration::from_secs(60),
        |s| {
            p.publish(&sample(seq)).unwrap();
            seq += 1;
            s.statuses
                .iter()
                .any(|v| is(v, 1, "the publisher runs without its lock"))
        },
    );
    // Nothing published any more: no publisher.
    read_until(
        &mut ws,
        &mut seen,
        "the error that no publisher runs",
        Duration::from_secs(60),
        |s| {
            let warned = s
                .statuses
                .iter()
                .position(|v| is(v, 1, "without its lock"))
                .unwrap_or(usize::MAX);
            s.statuses
                .iter()
                .skip(warned)
                .any(|v| is(v, 2, "no publisher is running"))
        },
    );
}

/// A server that finds a topic whose lock is already gone while frames
/// come: its first health status for it is the warning. The first check
/// had nothing to compare the generation with, so it sent the error "no
/// publisher is running" and the warning only a second later.
#[test]
fn a_lockless_publisher_found_while_frames_come_is_a_warning_at_the_first_check() {
    watchdog("fox_no_lock_first", Duration::from_secs(240));
    let (topic, _g) = key_for("no-lock-first");
    let server = Running::start(&[topic.key], |_| {});
    let (mut ws, _) = connect(server.addr, "foxglove.sdk.v1");
    let mut seen = Seen::default();
    // The topic appears while the client is connected: one frame, the lock
    // removed, then a frame every 5 ms from another thread.
    let opened = Instant::now();
    let mut p = Publisher::<Sample>::open(&topic).unwrap();
    p.publish(&sample(1)).unwrap();
    assert!(shmbus_core::lock::remove_lock(topic.key).unwrap());
    let publisher = Steady::start((p, 1), Duration::from_millis(5), |(p, seq)| {
        *seq += 1;
        p.publish(&sample(*seq)).unwrap();
    });
    let sid = format!("shmbus/{}", topic.name);
    let first = |s: &Seen| {
        s.statuses
            .iter()
            .find(|v| v["op"] == "status" && v["id"] == sid.as_str())
            .cloned()
    };
    read_until(
        &mut ws,
        &mut seen,
        "a health status for the topic",
        Duration::from_secs(60),
        |s| first(s).is_some(),
    );
    let seen_at = Instant::now();
    let (_, mut times) = publisher.stop();
    times.insert(0, opened);
    // The server's first look came after the topic was opened and before
    // the status was read, so the newest frame it saw was younger than the
    // widest gap between those moments. A publishing thread held off the
    // CPU for a second (a loaded machine) makes "no publisher" right: then
    // this cannot be asserted.
    let widest = widest_gap(&times, seen_at);
    let status = first(&seen).unwrap();
    if widest < Duration::from_millis(950) {
        assert_eq!(status["level"], 1, "{status}");
        assert!(
            status["message"]
                .as_str()
                .is_some_and(|m| m.contains("the publisher runs without its lock")),
            "{status}"
        );
    } else {
        eprintln!(
            "publishes were {widest:?} apart (a loaded machine): the first status is not checked"
        );
    }
}

#[test]
fn a_topic_that_goes_takes_its_health_status_with_it() {
    watchdog("status_goes_with_topic", Duration::from_secs(120));
    let (topic, _g) = key_for("status-goes");
    let server = Running::start(&[topic.key], |c| c.stale_after = Duration::from_millis(500));
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen = Seen::default();
    let publisher = Publisher::<Sample>::open(&topic).unwrap();
    let sid = format!("shmbus/{}", topic.name);
    read_until(
        &mut ws,
        &mut seen,
        "a staleness warning",
        Duration::from_secs(30),
        |s| s.statuses.iter().any(|v| v["id"] == sid.as_str()),
    );
    let id = seen.channels[0]["id"].as_u64().unwrap();
    // The topic goes while its warning stands: the warning must go too,
    // or the problems panel shows it for a topic that is not there.
    publisher.remove().unwrap();
    read_until(
        &mut ws,
        &mut seen,
        "the unadvertise and the status removed",
        Duration::from_secs(30),
        |s| {
            s.unadvertised.contains(&id)
                && s.statuses.iter().any(|v| {
                    v["op"] == "removeStatus"
                        && v["statusIds"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|i| i == sid.as_str()))
                })
        },
    );
}

#[test]
fn a_burst_of_client_messages_is_answered_in_full() {
    watchdog("burst_answered", Duration::from_secs(120));
    let (topic, _g) = key_for("burst");
    let server = Running::start(&[topic.key], |_| {});
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen = Seen::default();
    // 200 messages of 16 bytes in one write: one read of the socket takes
    // them all, more than the server handles per client and turn (64).
    // Each gets an error status.
    const N: usize = 200;
    for _ in 0..N {
        ws.write(Message::text(r#"{"op":"x"}"#)).unwrap();
    }
    ws.flush().unwrap();
    read_until(
        &mut ws,
        &mut seen,
        "an answer to every message",
        Duration::from_secs(60),
        |s| s.statuses.len() >= N,
    );
    assert!(
        seen.statuses.iter().all(|v| v["message"]
            .as_str()
            .unwrap()
            .contains("'x' is not supported")),
        "{:?}",
        seen.statuses.first()
    );
}

/// 32 topics whose channels together are more than 1 MiB of JSON: each
/// has 250 one-byte fields with 120-character names, a schema of about
/// 31 KiB (the header holds 32), advertised as about 50 KB of JSON.
fn wide_topics(test: &str) -> (Vec<i32>, Vec<Guard>) {
    use postcard_schema::Schema as _;
    use postcard_schema::schema::owned::{OwnedDataModelType, OwnedNamedType, OwnedNamedValue};
    let fields = (0..250)
        .map(|i| OwnedNamedValue {
            name: format!("field_{i:03}_{}", "x".repeat(110)),
            ty: OwnedNamedType::from(u8::SCHEMA),
        })
        .collect();
    let schema = postcard::to_allocvec(&OwnedNamedType {
        name: "Wide".into(),
        ty: OwnedDataModelType::Struct(fields),
    })
    .unwrap();
    assert!(schema.len() <= 32 * 1024, "{}", schema.len());
    let mut keys = Vec::new();
    let mut guards = Vec::new();
    for i in 0..32 {
        let (topic, g) = key_for(&format!("{test}-{i}"));
        drop(shmbus_pub::RawPublisher::open(&topic, &schema, 256).unwrap());
        keys.push(topic.key);
        guards.push(g);
    }
    (keys, guards)
}

#[test]
fn a_welcome_larger_than_the_control_budget_is_sent_whole() {
    watchdog("big_welcome", Duration::from_secs(400));
    // Their channels alone are more than the 1 MiB of control messages a
    // client may have waiting.
    let (keys, _guards) = wide_topics("big-welcome");
    let server = Running::start(&keys, |_| {});
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen = Seen::default();
    read_until(
        &mut ws,
        &mut seen,
        "every channel advertised",
        Duration::from_secs(60),
        |s| s.channels.len() >= keys.len(),
    );
    let bytes: usize = seen.channels.iter().map(|c| c.to_string().len()).sum();
    assert!(bytes > 1024 * 1024, "the welcome was only {bytes} bytes");
    // The connection still works: a subscribe is answered (no publisher
    // runs, so an unknown channel's error is the answer to wait for).
    subscribe(&mut ws, 1, 999_999);
    read_until(
        &mut ws,
        &mut seen,
        "the error status",
        Duration::from_secs(30),
        |s| {
            s.statuses
                .iter()
                .any(|v| v["message"].as_str().unwrap_or("").contains("999999"))
        },
    );
}

#[test]
fn a_refused_schema_reaches_the_terminal_without_control_characters() {
    use postcard_schema::schema::owned::{OwnedDataModelType, OwnedNamedType, OwnedNamedValue};
    watchdog("refused_schema_printable", Duration::from_secs(60));
    let (topic, _g) = key_for("evil-schema");
    // A field whose name retitles the terminal, holding a type the codec
    // refuses: the refusal names the path to it.
    let schema = postcard::to_allocvec(&OwnedNamedType {
        name: "Evil".into(),
        ty: OwnedDataModelType::Struct(vec![OwnedNamedValue {
            name: "a\u{1b}]0;owned\u{7}\u{9b}2J".into(),
            ty: OwnedNamedType {
                name: "x".into(),
                ty: OwnedDataModelType::Schema,
            },
        }]),
    })
    .unwrap();
    drop(shmbus_pub::RawPublisher::open(&topic, &schema, 16).unwrap());
    let server = Server::bind(Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        topics: vec![Selector::Key(topic.key)],
        quiet: true,
        ..Config::default()
    })
    .unwrap();
    let u = server.unserved();
    assert_eq!(u.len(), 1, "{u:?}");
    // This text is what `shmbus: warning:` and the refusal line print.
    assert!(u[0].why.contains("embedded schema"), "{}", u[0].why);
    assert!(
        !u[0].why.chars().any(shmbus_toolbox::printable::is_unsafe),
        "{:?}",
        u[0].why
    );
    assert!(u[0].why.contains("\\u001b]0;owned"), "{}", u[0].why);
}

#[test]
fn unsubscribing_a_channel_that_went_is_no_error() {
    watchdog("unsubscribe_gone", Duration::from_secs(120));
    let (topic, _g) = key_for("unsub-gone");
    let publisher = Publisher::<Sample>::open(&topic).unwrap();
    let server = Running::start(&[topic.key], |_| {});
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen = Seen::default();
    let id = advertised(&mut ws, &mut seen);
    subscribe(&mut ws, 7, id);
    publisher.remove().unwrap();
    read_until(
        &mut ws,
        &mut seen,
        "the unadvertise",
        Duration::from_secs(30),
        |s| s.unadvertised.contains(&id),
    );
    // What Foxglove and Lichtblick do on an unadvertise: unsubscribe each
    // subscription of the channel. Then a message that gets an error, to
    // know the unsubscribe was handled.
    ws.send(Message::text(
        r#"{"op":"unsubscribe","subscriptionIds":[7]}"#,
    ))
    .unwrap();
    after_marker(&mut ws, &mut seen);
    let complaints: Vec<_> = seen
        .statuses
        .iter()
        .filter(|v| {
            v["message"]
                .as_str()
                .unwrap_or("")
                .contains("no subscription")
        })
        .collect();
    assert!(complaints.is_empty(), "{complaints:?}");
    // A subscription id the client never had is still an error.
    ws.send(Message::text(
        r#"{"op":"unsubscribe","subscriptionIds":[7]}"#,
    ))
    .unwrap();
    read_until(
        &mut ws,
        &mut seen,
        "the warning",
        Duration::from_secs(30),
        |s| {
            s.statuses.iter().any(|v| {
                v["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("no subscription with id 7")
            })
        },
    );
}

#[test]
fn a_topic_named_like_a_server_status_keeps_its_own_status_id() {
    watchdog("status_id_clash", Duration::from_secs(120));
    // `refused/0` is a valid topic name; served under its own name (at
    // the key it derives from on this test's bus), its health status id
    // is `shmbus/refused/0`.
    let bus = format!("fox-clash-{}", std::process::id());
    let name = "refused/0";
    let key = shmbus_core::topic::derive_key(&bus, name);
    let _g = Guard(key);
    drop(Publisher::<Sample>::open(&Topic::new(name).key(key).slots(8)).unwrap());
    // And the server's first refused-topic note.
    let (bad, _gb) = key_for("status-clash-bad");
    drop(shmbus_pub::RawPublisher::open(&bad, b"\xff\xfe not a schema", 16).unwrap());
    let b = bus.clone();
    let server = Running::start(&[key, bad.key], move |c| c.bus = Some(b));
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen = Seen::default();
    let health = |s: &Seen| {
        s.statuses
            .iter()
            .find(|v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("refused/0: no publisher"))
            })
            .cloned()
    };
    let note = |s: &Seen| {
        s.statuses
            .iter()
            .find(|v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("cannot be shown"))
            })
            .cloned()
    };
    read_until(
        &mut ws,
        &mut seen,
        "the health status and the note",
        Duration::from_secs(30),
        |s| health(s).is_some() && note(s).is_some(),
    );
    let (h, n) = (health(&seen).unwrap(), note(&seen).unwrap());
    assert_eq!(h["id"], "shmbus/refused/0", "{h}");
    // Same id: the one sent later would replace the other in the panel.
    assert_ne!(h["id"], n["id"], "{h} {n}");
}

#[test]
fn a_client_reading_a_big_welcome_slowly_is_not_taken_for_stuck() {
    watchdog("slow_big_welcome", Duration::from_secs(400));
    let (keys, _guards) = wide_topics("slow-welcome");
    // The default stall timeout, 10 s.
    let server = Running::start(&keys, |_| {});
    // A small receive buffer, read 4 KiB every 25 ms: the 4 KiB window
    // holds the transfer to about 40 KB/s (20 KB/s under a busy qemu-arm),
    // so the welcome's one message of over 1 MiB takes 30 s or more, three
    // stall timeouts, to go out, while the client takes bytes all along.
    // (The server sees that progress in the bytes the kernel holds for the
    // client; `a_client_reading_at_10_kb_per_second_is_not_taken_for_stuck`
    // tests that with a short timeout. Before, it saw progress only when
    // the socket turned writable, after about 98 KB had drained: every
    // 2.5 s here, 5 s under a busy qemu-arm.)
    read_paced(
        server.addr,
        || {
            let stream = TcpStream::connect(server.addr).unwrap();
            nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::RcvBuf, &4096)
                .unwrap();
            stream
        },
        4096,
        Duration::from_millis(25),
        1024 * 1024,
        Duration::from_secs(10),
    );
}

/// A Foxglove handshake on a stream from `connect`, then `total` bytes
/// read `chunk` at a time with `pause` after each read, as a slow client
/// takes a big welcome; panics if the server closes or resets the
/// connection first while this client never went `stall / 2` without
/// reading.
///
/// A client that did go that long without a read (a loaded machine did
/// not run this thread, or the server's) may rightly be taken for stuck
/// by a server with stall timeout `stall`: then the whole read is tried
/// again on a new connection, up to 5 times. A server that drops a client
/// reading on time fails at once, and one that drops every client fails
/// after the 5 tries.
fn read_paced(
    addr: SocketAddr,
    connect: impl Fn() -> TcpStream,
    chunk: usize,
    pause: Duration,
    total: usize,
    stall: Duration,
) {
    let mut excused = Vec::new();
    for _ in 0..5 {
        let (got, longest, why) = match read_paced_once(addr, connect(), chunk, pause, total) {
            Ok(()) => return,
            Err(e) => e,
        };
        assert!(
            longest >= stall / 2,
            "after {got} bytes: {why}; this client never went more than {longest:?} between two reads (stall timeout {stall:?})"
        );
        eprintln!(
            "read_paced: after {got} bytes: {why}, with {longest:?} between two reads (stall timeout {stall:?}): tried again"
        );
        excused.push(format!("{got} bytes, {longest:?}: {why}"));
    }
    panic!(
        "5 connections dropped, each after a pause of at least half the stall timeout: {excused:?}"
    );
}

/// One connection of [`read_paced`]: Err((bytes read, longest time
/// between two reads' returns, what ended it)) if the server closed or
/// reset it first.
fn read_paced_once(
    addr: SocketAddr,
    stream: TcpStream,
    chunk: usize,
    pause: Duration,
    total: usize,
) -> Result<(), (usize, Duration, String)> {
    let mut req = format!("ws://{addr}/").into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("foxglove.websocket.v1"),
    );
    let (mut ws, _) = tungstenite::client::client(req, stream).expect("handshake");
    let raw = ws.get_mut();
    // A watchdog: the server always has more of the welcome to send.
    raw.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; chunk];
    let mut last = Instant::now();
    let mut longest = Duration::ZERO;
    while got < total {
        let r = raw.read(&mut buf);
        longest = longest.max(last.elapsed());
        last = Instant::now();
        match r {
            Ok(0) => {
                return Err((got, longest, "the server closed the connection".to_string()));
            }
            Ok(n) => got += n,
            Err(e) => return Err((got, longest, e.to_string())),
        }
        std::thread::sleep(pause);
    }
    Ok(())
}

/// A client on a slow link: about 10 KB/s, with a 3 s stall timeout.
/// The socket turns writable again only after some 98 KB have drained,
/// 10 s at this rate, so the server must see the reads in the bytes the
/// kernel still holds for the client (`SIOCOUTQ`), which fall at every
/// TCP window update. Before it looked there, this client was reset as
/// stuck 3 s into the welcome.
#[test]
fn a_client_reading_at_10_kb_per_second_is_not_taken_for_stuck() {
    watchdog("slow_reader_10kbs", Duration::from_secs(400));
    let (keys, _guards) = wide_topics("slow-reader");
    let server = Running::start(&keys, |c| {
        c.stall_timeout = Duration::from_secs(3);
    });
    // The receive buffer is set before connecting, so the connection's
    // window is small from its first segment on, as behind a slow link.
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, socket, sockopt};
    let SocketAddr::V4(v4) = server.addr else {
        panic!("the server listens on {}", server.addr)
    };
    let connect = || {
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        nix::sys::socket::setsockopt(&fd, sockopt::RcvBuf, &4096).unwrap();
        nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(v4))
            .unwrap();
        TcpStream::from(fd)
    };
    // 160 KB: past the first 98 KB step, 16 s at this rate. A client this
    // thread left 3 s without a read is stuck, rightly: the bound must
    // stay under the 10 s the socket takes to turn writable, or the test
    // shows nothing, so such a connection is tried again (`read_paced`).
    read_paced(
        server.addr,
        connect,
        1024,
        Duration::from_millis(100),
        160 * 1024,
        Duration::from_secs(3),
    );
}

#[test]
fn a_client_that_never_reads_is_dropped_and_the_others_get_every_frame() {
    watchdog("a_client_that_never_reads", Duration::from_secs(180));
    let (topic, _g) = key_for("stuck");
    let topic = topic.slots(1024);
    let mut publisher = Publisher::<Sample>::open(&topic).unwrap();
    let server = Running::start(&[topic.key], |c| {
        c.client_queue = 64 * 1024;
        c.stall_timeout = Duration::from_secs(2);
    });
    let (mut good, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen = Seen::default();
    let id = advertised(&mut good, &mut seen);
    subscribe(&mut good, 1, id);
    // The subscription is live once a frame published now arrives.
    let mut seq = 0u32;
    read_until(
        &mut good,
        &mut seen,
        "a first frame",
        Duration::from_secs(30),
        |s| {
            if s.frames.is_empty() {
                publisher.publish(&sample(seq)).unwrap();
                seq += 1;
            }
            !s.frames.is_empty()
        },
    );
    // Frames published from here on must all arrive.
    let first = seq;
    read_until(
        &mut good,
        &mut seen,
        "the probe frames",
        Duration::from_secs(30),
        |s| {
            s.frames
                .last()
                .is_some_and(|(_, _, j)| j.contains(&format!("\"seq\":{},", first - 1)))
        },
    );
    seen.frames.clear();

    // The stuck client: a handshake by hand, a subscription, then silence.
    let mut stuck = TcpStream::connect(server.addr).unwrap();
    // A small receive buffer, so the kernel stops taking data for it soon.
    nix::sys::socket::setsockopt(&stuck, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
    ws::handshake(&mut stuck, "stuck");
    let text = format!(r#"{{"op":"subscribe","subscriptions":[{{"id":1,"channelId":{id}}}]}}"#);
    let mut frame = vec![0x81, 0x80 | text.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(text.as_bytes()); // mask of zeros: payload as is
    stuck.write_all(&frame).unwrap();

    // Publish until the server gives up on the stuck client; the good
    // client reads along and must see every frame. A close frame sent now
    // and then on the stuck connection fails once the server has closed it.
    let start = Instant::now();
    stuck.set_nonblocking(true).unwrap();
    let ping = [0x89u8, 0x80, 0, 0, 0, 0]; // masked ping, empty, mask of zeros
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the stuck client was never dropped"
        );
        for _ in 0..50 {
            publisher.publish(&sample(seq)).unwrap();
            seq += 1;
        }
        read_until(
            &mut good,
            &mut seen,
            "the good client keeping up",
            Duration::from_secs(30),
            |s| s.frames.len() + 50 >= (seq - first) as usize,
        );
        match stuck.write(&ping) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    read_until(
        &mut good,
        &mut seen,
        &format!("every frame ({seq})"),
        Duration::from_secs(30),
        |s| s.frames.len() == (seq - first) as usize,
    );
    for (i, (_, _, j)) in seen.frames.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(j).unwrap();
        assert_eq!(
            v["seq"].as_u64(),
            Some(u64::from(first) + i as u64),
            "the good client lost or reordered a frame"
        );
    }
    drop(good);
    let summary = server.stop();
    assert_eq!(summary.clients, 2);
    assert!(
        summary.dropped_frames > 0,
        "the stuck client's frames were dropped, not kept"
    );
}

/// A client that floods pings and reads nothing: tungstenite answers each
/// ping it reads, and while the client's socket is full it keeps every
/// pong in its write buffer, which has no bound. With no subscription the
/// server had nothing queued for it, so neither the stall timeout nor the
/// control budget applied: it read on, and grew by what the client sent
/// (1.2 GB in 16 s over loopback, `shmbus foxglove` in release). The
/// pongs owed now count against the control budget.
#[test]
fn a_client_that_floods_pings_and_never_reads_is_dropped() {
    watchdog("ping_flood", Duration::from_secs(300));
    // A key where nothing is: the server has nothing to send but pongs.
    let (topic, _g) = key_for("ping-flood");
    let server = Running::start(&[topic.key], |_| {});
    // The default receive buffer: with a tiny one the kernel itself soon
    // stops the flow both ways, and the server is never sent the flood.
    let mut flood = TcpStream::connect(server.addr).unwrap();
    ws::handshake(&mut flood, "flood");
    // Pings of 125 bytes (the most a control frame holds), masked with
    // zeros, 512 to a write.
    let mut ping = vec![0x89u8, 0x80 | 125, 0, 0, 0, 0];
    ping.extend_from_slice(&[b'p'; 125]);
    let batch = ping.repeat(512);
    // A watchdog: a server that stops reading shows as a timeout.
    flood
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // Far more than the budget and every kernel buffer on the way.
    let limit = 64usize << 20;
    let mut sent = 0usize;
    let ended = loop {
        if sent >= limit {
            break None;
        }
        match flood.write_all(&batch) {
            Ok(()) => sent += batch.len(),
            Err(e) => break Some(e),
        }
    };
    let e = ended.unwrap_or_else(|| {
        panic!(
            "the server read {sent} bytes of pings from a client that reads no pong, and kept it"
        )
    });
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "not dropped by the server ({e}) after {sent} bytes"
    );
    // The server still serves others.
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < end, "no serverInfo for the next client");
        match ws.read() {
            Ok(Message::Text(t)) if t.as_str().contains("\"serverInfo\"") => break,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("the next client: {e}"),
        }
    }
    drop(ws);
    let summary = server.stop();
    assert_eq!(summary.clients, 2);
}

#[test]
fn the_loop_sleeps_between_ticks_even_with_a_silent_connection() {
    watchdog("the_loop_sleeps", Duration::from_secs(60));
    let (topic, _g) = key_for("sleeps");
    let _publisher = Publisher::<Sample>::open(&topic).unwrap();
    let server = Running::start(&[topic.key], |_| {});
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen = Seen::default();
    advertised(&mut ws, &mut seen);
    // Subscribed (10 ms ticks), nothing published, and a connection that
    // never sends its handshake.
    subscribe(&mut ws, 1, seen.channels[0]["id"].as_u64().unwrap());
    let _silent = TcpStream::connect(server.addr).unwrap();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let summary = server.stop();
    let secs = start.elapsed().as_secs_f64() + 1.0;
    // 100 ticks a second, a turn or two per scan, health check and client
    // message; a loop that spun (a writable socket polled, a 0 ms wait
    // before a tick) would turn thousands of times a second.
    assert!(
        (summary.turns as f64) < secs * 150.0 + 50.0,
        "{} turns in about {secs:.1} s",
        summary.turns
    );
}

#[test]
fn a_client_cannot_advertise_client_channels_without_end() {
    watchdog("advertise_without_end", Duration::from_secs(120));
    let (topic, _g) = key_for("adverts");
    let _publisher = Publisher::<Sample>::open(&topic).unwrap();
    let server = Running::start(&[topic.key], |c| c.allow_publish = true);
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen = Seen::default();
    advertised(&mut ws, &mut seen);
    let advertise = |ids: std::ops::Range<u32>| {
        let chans: Vec<serde_json::Value> = ids
            .map(|id| {
                serde_json::json!({"id": id, "topic": topic.name, "encoding": "json", "schemaName": "Sample"})
            })
            .collect();
        Message::text(serde_json::json!({"op": "advertise", "channels": chans}).to_string())
    };
    let limit = shmbus_foxglove::publish::MAX_ADVERTS_PER_CLIENT as u32;
    ws.send(advertise(0..limit + 40)).unwrap();
    // One answer for the message: the first refusal and how many more.
    let refusals = |s: &Seen| -> Vec<String> {
        s.statuses
            .iter()
            .filter_map(|v| v["message"].as_str())
            .filter(|m| m.contains("client channels advertised; unadvertise some first"))
            .map(str::to_string)
            .collect()
    };
    read_until(
        &mut ws,
        &mut seen,
        "the refusals",
        Duration::from_secs(30),
        |s| refusals(s).len() == 1,
    );
    let first = &refusals(&seen)[0];
    assert!(
        first.starts_with(&format!("cannot advertise channel {limit} "))
            && first.ends_with("(and 39 more errors in the same 'advertise' message)"),
        "{first}"
    );
    // Advertising an id again is no new channel; after an unadvertise there
    // is room for one more.
    ws.send(advertise(0..1)).unwrap();
    ws.send(Message::text(r#"{"op":"unadvertise","channelIds":[5]}"#))
        .unwrap();
    ws.send(advertise(limit + 100..limit + 102)).unwrap();
    read_until(
        &mut ws,
        &mut seen,
        "one more refusal",
        Duration::from_secs(30),
        |s| refusals(s).len() == 2,
    );
    let last = refusals(&seen)[1].clone();
    assert!(
        last.contains(&format!("channel {} ", limit + 101)) && !last.contains("more error"),
        "{last}"
    );
    drop(ws);
    server.stop();
}

#[test]
fn sockets_that_never_speak_do_not_lock_real_clients_out() {
    watchdog("never_speak", Duration::from_secs(120));
    let (topic, _g) = key_for("never-speak");
    let _publisher = Publisher::<Sample>::open(&topic).unwrap();
    let server = Running::start(&[topic.key], |_| {});
    // More silent connections than handshakes are kept at once (16).
    let silent: Vec<TcpStream> = (0..24)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    // A real client gets in: before, a full table refused it outright.
    let (mut ws, proto) = connect(server.addr, "foxglove.websocket.v1");
    assert_eq!(proto.as_deref(), Some("foxglove.websocket.v1"));
    let mut seen = Seen::default();
    advertised(&mut ws, &mut seen);
    // It got in because the oldest silent sockets made room (24 + 1 for
    // 16 places: the 9 oldest closed by the server), not by outwaiting the
    // 10 s handshake timeout. That was a timed assertion (in under 5 s),
    // which a loaded machine could break; the closed sockets say it
    // whatever the scheduling.
    for (i, s) in silent.iter().take(9).enumerate() {
        let mut s = s;
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        match s.read(&mut [0u8; 1]) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("silent socket {i} was not closed to make room: {other:?}"),
        }
    }
    drop(silent);
    drop(ws);
    server.stop();
}

#[test]
fn notes_about_refused_topics_are_bounded() {
    watchdog("notes_bounded", Duration::from_secs(240));
    let (topic, _g) = key_for("refused-notes");
    let server = Running::start(&[topic.key], |_| {});
    let (mut first, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen = Seen::default();
    let refusals = |s: &Seen| {
        s.statuses
            .iter()
            .filter(|v| {
                v["op"] == "status"
                    && v["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("cannot be shown"))
            })
            .count()
    };
    // A publisher that keeps coming back with an unusable schema: a new
    // segment (a new shmid) each time, each refused with a note.
    let rounds = shmbus_foxglove::server::MAX_NOTES + 8;
    for i in 0..rounds {
        let p = shmbus_pub::RawPublisher::open(&topic, b"\xff\xfe not a schema", 16).unwrap();
        read_until(
            &mut first,
            &mut seen,
            "a refusal",
            Duration::from_secs(30),
            |s| refusals(s) == i + 1,
        );
        p.remove().unwrap();
    }
    let removed = seen
        .statuses
        .iter()
        .filter(|v| v["op"] == "removeStatus")
        .count();
    assert_eq!(removed, 8);
    // A client that connects now is sent the newest MAX_NOTES only.
    let (mut late, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen_late = Seen::default();
    let end = Instant::now() + Duration::from_secs(2);
    read_until(
        &mut late,
        &mut seen_late,
        "the notes",
        Duration::from_secs(30),
        |s| refusals(s) >= shmbus_foxglove::server::MAX_NOTES && Instant::now() > end,
    );
    assert_eq!(refusals(&seen_late), shmbus_foxglove::server::MAX_NOTES);
    drop((first, late));
    server.stop();
}

/// Topics named as every command names them (a key, `shmid:N`, a name):
/// the server serves the usable ones and says, for each named topic it
/// cannot serve, which and why (another program's segment; nothing there).
#[test]
fn named_topics_that_cannot_be_served_are_reported_with_why() {
    watchdog("fox-unserved", Duration::from_secs(60));
    let (topic, _g) = key_for("unserved");
    let mut p = Publisher::<Sample>::open(&topic).unwrap();
    p.publish(&sample(1)).unwrap();
    let shmid = shmbus_core::sys::shmget(topic.key, 0, 0).unwrap();
    let foreign_key = shmbus_testkit::unique_key_family(0x7a, "unserved-foreign");
    let _fg = Guard(foreign_key);
    // Another program's segment: zeros, no publisher lock (IPC_CREAT | IPC_EXCL | 0600).
    shmbus_core::sys::shmget(foreign_key, 4096, 0o1000 | 0o2000 | 0o600).unwrap();
    let missing = format!(
        "fox-test/missing-{:08x}",
        unique_key("unserved-missing") as u32
    );
    // A shmid no segment has (checked now): it can never appear.
    let gone = (0..1000)
        .map(|i| i32::MAX - i)
        .find(|id| shmbus_core::sys::shm_stat(*id).is_err())
        .unwrap();
    let cfg = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        topics: vec![
            Selector::Shmid(shmid),
            Selector::Key(foreign_key),
            Selector::parse(&missing).unwrap(),
            Selector::Shmid(gone),
        ],
        quiet: true,
        ..Config::default()
    };
    let server = Server::bind(cfg).expect("bind");
    assert_eq!(server.topic_count(), 1, "served by shmid");
    let u = server.unserved();
    assert_eq!(u.len(), 3, "{u:?}");
    assert_eq!(u[0].index, 1);
    assert!(!u[0].not_found && !u[0].may_appear, "{u:?}");
    assert!(u[0].why.contains("not a shmbus topic"), "{u:?}");
    assert_eq!(u[1].index, 2);
    assert!(u[1].not_found && u[1].may_appear, "{u:?}");
    assert_eq!(u[1].label, format!("topic '{missing}'"));
    // Missing, but a shmid: never served, and not said to be waited for.
    assert_eq!(u[2].index, 3);
    assert!(u[2].not_found && !u[2].may_appear, "{u:?}");
}

/// A name whose key holds another program's segment (not a shmbus topic,
/// large enough to be probed) is there but unusable: named as a squat, with
/// the fix, as `shmbus info` says it, and not waited for. It was "not
/// found: ... it is served once it appears", and `shmbus foxglove NAME`
/// served nothing and exited 0.
#[test]
fn a_name_whose_key_holds_a_foreign_segment_is_named_a_squat() {
    watchdog("fox-squat", Duration::from_secs(60));
    let bus = "fox-test-squat";
    let name = format!("fox-test/squat-{:08x}", unique_key("fox-squat") as u32);
    let key = shmbus_core::topic::derive_key(bus, &name);
    let _g = Guard(key);
    // Another program's segment at the name's key: 4096 bytes, not zeros
    // (zeros are a half-created topic).
    let id = shmbus_core::sys::shmget(key, 4096, 0o1000 | 0o2000 | 0o600).unwrap();
    let att = shmbus_core::sys::WriteAttachment::read_write(id).unwrap();
    shmbus_core::codec::store_bytes(att.atomic_words(0, 64).unwrap(), &[0x5au8; 256]);
    drop(att);
    let cfg = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        topics: vec![Selector::parse(&name).unwrap()],
        bus: Some(bus.to_string()),
        quiet: true,
        ..Config::default()
    };
    let server = Server::bind(cfg).expect("bind");
    assert_eq!(server.topic_count(), 0);
    let u = server.unserved();
    assert_eq!(u.len(), 1, "{u:?}");
    assert!(!u[0].not_found && !u[0].may_appear, "{u:?}");
    let k = format!("0x{:08x}", key as u32);
    assert!(
        u[0].why.contains("not a shmbus topic")
            && u[0].why.contains("squatted?")
            && u[0].why.contains(&format!("ipcrm -M {k}")),
        "{u:?}"
    );
}

/// A frame larger than a client's whole queue is dropped however fast the
/// client reads: the client is told that, and which option to raise, not
/// that its connection is too slow (which pointed at the wrong cause).
#[test]
fn frames_larger_than_the_client_queue_are_named_as_such() {
    watchdog("frames_larger_than_the_queue", Duration::from_secs(120));
    let (topic, _g) = key_for("oversize");
    let mut publisher = Publisher::<Sample>::open(&topic).unwrap();
    // 8 bytes: every frame's JSON is larger.
    let server = Running::start(&[topic.key], |c| c.client_queue = 8);
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen = Seen::default();
    let id = advertised(&mut ws, &mut seen);
    subscribe(&mut ws, 1, id);
    let mut seq = 0;
    read_until(
        &mut ws,
        &mut seen,
        "the frame-too-large notice",
        Duration::from_secs(60),
        |s| {
            publisher.publish(&sample(seq)).unwrap();
            seq += 1;
            s.statuses
                .iter()
                .any(|v| v["id"] == "shmbus:frame-too-large")
        },
    );
    let notice = seen
        .statuses
        .iter()
        .find(|v| v["id"] == "shmbus:frame-too-large")
        .unwrap();
    let text = notice["message"].as_str().unwrap();
    assert!(
        text.contains("larger than this connection's whole queue")
            && text.contains("--client-queue"),
        "{text}"
    );
    assert_eq!(notice["level"], 2, "{notice}");
    assert!(seen.frames.is_empty(), "no frame fits the queue");
    assert!(
        !seen
            .statuses
            .iter()
            .any(|v| v["id"] == "shmbus:slow-client"),
        "told it was too slow: {:?}",
        seen.statuses
    );
}

/// A client message of many entries (an unsubscribe of 40,000 ids, a
/// subscribe of 8,000 unknown channels, an advertise of 3,000 channels
/// with publishing off) gets one status back, the first error and how
/// many more: one per entry was megabytes of answers per message, and the
/// client was dropped as "not reading" for what it had asked.
#[test]
fn one_client_message_gets_one_answer_however_many_entries_it_holds() {
    watchdog("one_answer_per_message", Duration::from_secs(120));
    let (topic, _g) = key_for("one-answer");
    let mut publisher = Publisher::<Sample>::open(&topic).unwrap();
    let server = Running::start(&[topic.key], |_| {});
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen = Seen::default();
    let id = advertised(&mut ws, &mut seen);
    let ids: Vec<String> = (0..40_000).map(|i| i.to_string()).collect();
    let unsubscribe = format!(
        r#"{{"op":"unsubscribe","subscriptionIds":[{}]}}"#,
        ids.join(",")
    );
    assert!(unsubscribe.len() < shmbus_foxglove::server::MAX_CLIENT_MESSAGE);
    ws.send(Message::text(unsubscribe)).unwrap();
    let subs: Vec<String> = (0..8_000)
        .map(|i| format!(r#"{{"id":{i},"channelId":999999}}"#))
        .collect();
    let subscribe_many = format!(
        r#"{{"op":"subscribe","subscriptions":[{}]}}"#,
        subs.join(",")
    );
    assert!(subscribe_many.len() < shmbus_foxglove::server::MAX_CLIENT_MESSAGE);
    ws.send(Message::text(subscribe_many)).unwrap();
    let chans: Vec<serde_json::Value> = (0..3_000)
        .map(|i| serde_json::json!({"id": i, "topic": "nope", "encoding": "json"}))
        .collect();
    ws.send(Message::text(
        serde_json::json!({"op": "advertise", "channels": chans}).to_string(),
    ))
    .unwrap();
    // Still served: a subscription made now streams.
    subscribe(&mut ws, 1, id);
    let mut n = 0;
    read_until(
        &mut ws,
        &mut seen,
        "a frame after the big messages",
        Duration::from_secs(60),
        |s| {
            if s.frames.is_empty() {
                publisher.publish(&sample(n)).unwrap();
                n += 1;
            }
            !s.frames.is_empty()
        },
    );
    ws.send(Message::text(r#"{"op":"marker"}"#)).unwrap();
    read_until(
        &mut ws,
        &mut seen,
        "the marker's error",
        Duration::from_secs(30),
        |s| answers(s).iter().any(|m| m.contains("'marker'")),
    );
    let got = answers(&seen);
    assert_eq!(got.len(), 4, "one answer per message: {got:?}");
    assert_eq!(
        got[0],
        "no subscription with id 0 to unsubscribe (and 39999 more errors in the same 'unsubscribe' message)"
    );
    assert_eq!(
        got[1],
        "channel 999999 was never advertised on this connection (and 7999 more errors in the same 'subscribe' message)"
    );
    assert!(
        got[2].starts_with("cannot publish on 'nope': publishing is off")
            && got[2].ends_with("(and 2999 more errors in the same 'advertise' message)"),
        "{}",
        got[2]
    );
    drop(ws);
    server.stop();
}

/// Read until the server's close frame; its code and reason. Panics on a
/// connection that ends without one (an abnormal closure, 1006, to a
/// browser).
fn close_frame(ws: &mut Ws, what: &str) -> (u16, String) {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < end, "{what}: no close frame in 30 s");
        match ws.read() {
            Ok(Message::Close(Some(f))) => return (f.code.into(), f.reason.to_string()),
            Ok(Message::Close(None)) => panic!("{what}: a close frame without a code"),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{what}: the connection ended without a close frame: {e}"),
        }
    }
}

/// A server that stops (Ctrl-C, SIGTERM, `--duration`) closes each
/// connection with a close frame, 1001 "going away" and why: the TCP
/// connection was just shut, which a browser reports as an abnormal
/// closure (1006), the same as a network failure.
#[test]
fn a_server_that_stops_says_so_in_a_close_frame() {
    watchdog("stop_close_frame", Duration::from_secs(120));
    let (topic, _g) = key_for("stop-close");
    let mut publisher = Publisher::<Sample>::open(&topic).unwrap();
    let server = Running::start(&[topic.key], |_| {});
    let (mut idle, _) = connect(server.addr, "foxglove.sdk.v1");
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen = Seen::default();
    let id = advertised(&mut ws, &mut seen);
    subscribe(&mut ws, 1, id);
    let mut n = 0;
    read_until(
        &mut ws,
        &mut seen,
        "a frame",
        Duration::from_secs(30),
        |s| {
            if s.frames.is_empty() {
                publisher.publish(&sample(n)).unwrap();
                n += 1;
            }
            !s.frames.is_empty()
        },
    );
    let summary = server.stop();
    assert_eq!(summary.clients, 2);
    for (ws, what) in [(&mut ws, "subscribed client"), (&mut idle, "idle client")] {
        let (code, reason) = close_frame(ws, what);
        assert_eq!(code, 1001, "{what}: going away");
        assert_eq!(reason, "shmbus foxglove stopped", "{what}");
    }
}

/// A client that breaks the protocol or sends a message over the limit is
/// told why in the close frame (1009 message too big, 1007 not UTF-8),
/// not just disconnected.
#[test]
fn a_client_dropped_for_what_it_sent_is_told_why_in_the_close_frame() {
    watchdog("bad_client_close_frame", Duration::from_secs(120));
    // A key where nothing is: no topic of the machine is served.
    let (topic, _g) = key_for("bad-client-close");
    let server = Running::start(&[topic.key], |_| {});
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    let big = "x".repeat(shmbus_foxglove::server::MAX_CLIENT_MESSAGE + 1);
    // The server may close while the rest is still being written.
    let _ = ws.send(Message::text(big));
    let (code, reason) = close_frame(&mut ws, "a message over the limit");
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.starts_with("message too large"), "{reason}");
    // Text that is not UTF-8: a raw text frame, masked as a client's must be.
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    let payload = [0xffu8, 0xfe, b'{'];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8, 1, 2, 3, 4];
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
    );
    match ws.get_mut() {
        MaybeTlsStream::Plain(s) => s.write_all(&frame).unwrap(),
        _ => unreachable!(),
    }
    let (code, reason) = close_frame(&mut ws, "text that is not UTF-8");
    assert_eq!(code, 1007, "{reason}");
    assert_eq!(reason, "text message is not UTF-8");
    drop(ws);
    server.stop();
}

/// A subscriber gets every frame published before its topic went, all
/// before the unadvertise, none after; the topic coming back at the same
/// key is a new channel that streams again. The scan runs every
/// millisecond, so it often sees the removal before the next tick reads
/// the last frames: they were dropped with the topic, and frames already
/// queued were purged rather than sent.
#[test]
fn a_subscriber_gets_the_last_frames_before_its_topic_goes() {
    watchdog("last_frames_before_rm", Duration::from_secs(240));
    let (topic, _g) = key_for("last-frames");
    let server = Running::start(&[topic.key], |c| {
        c.scan_interval = Duration::from_millis(1);
    });
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen = Seen::default();
    for round in 0..5u32 {
        let mut publisher = Publisher::<Sample>::open(&topic).unwrap();
        let name = topic.name.clone();
        read_until(
            &mut ws,
            &mut seen,
            "the topic advertised again",
            Duration::from_secs(30),
            |s| {
                s.channels.iter().any(|c| {
                    c["topic"] == name.as_str()
                        && !s.unadvertised.contains(&c["id"].as_u64().unwrap())
                })
            },
        );
        let id = seen
            .channels
            .iter()
            .map(|c| c["id"].as_u64().unwrap())
            .filter(|i| !seen.unadvertised.contains(i))
            .max()
            .unwrap();
        let sub = round + 1;
        subscribe(&mut ws, sub, id);
        let mut n = 0;
        read_until(
            &mut ws,
            &mut seen,
            "a first frame",
            Duration::from_secs(30),
            |s| {
                if !s.frames.iter().any(|f| f.0 == sub) {
                    publisher.publish(&sample(n)).unwrap();
                    n += 1;
                }
                s.frames.iter().any(|f| f.0 == sub)
            },
        );
        let last: Vec<u32> = (1..=20).map(|i| 1_000_000 * sub + i).collect();
        for seq in &last {
            publisher.publish(&sample(*seq)).unwrap();
        }
        publisher.remove().unwrap();
        let mut at_unadvertise = None;
        read_until(
            &mut ws,
            &mut seen,
            "the unadvertise",
            Duration::from_secs(30),
            |s| {
                if s.unadvertised.contains(&id) {
                    at_unadvertise.get_or_insert(s.frames.len());
                }
                at_unadvertise.is_some()
            },
        );
        ws.send(Message::text(format!(r#"{{"op":"marker{round}"}}"#)))
            .unwrap();
        let marker = format!("'marker{round}'");
        read_until(
            &mut ws,
            &mut seen,
            "the marker's error",
            Duration::from_secs(30),
            |s| {
                s.statuses
                    .iter()
                    .any(|v| v["message"].as_str().unwrap_or("").contains(&marker))
            },
        );
        let seqs = |frames: &[(u32, u64, String)]| -> Vec<u32> {
            frames
                .iter()
                .filter(|f| f.0 == sub)
                .map(|f| {
                    serde_json::from_str::<serde_json::Value>(&f.2).unwrap()["seq"]
                        .as_u64()
                        .unwrap() as u32
                })
                .filter(|s| *s >= 1_000_000)
                .collect()
        };
        let cut = at_unadvertise.unwrap();
        assert_eq!(
            seqs(&seen.frames[..cut]),
            last,
            "round {round}: every frame published before the removal, in order, before the unadvertise"
        );
        assert!(
            seen.frames[cut..].iter().all(|f| f.0 != sub),
            "round {round}: a frame of the ended subscription after the unadvertise"
        );
    }
    drop(ws);
    // Nothing is served at the end, but the five segments' counts stay in
    // the summary under the topic's name: it used to list only the topics
    // still served, so a topic whose publisher came back, or went, lost
    // what it counted (the frames missed at a crash).
    let summary = server.stop();
    assert_eq!(
        summary.topics,
        [(topic.name.clone(), seen.frames.len() as u64, 0, 0)],
        "every frame the server read, in all five rounds"
    );
}

/// A subscribe sent just before the client saw its channel's unadvertise
/// (the two cross on the wire: a panel opened as the topic restarts) is
/// no error, nor is the unsubscribe that follows: each was a status
/// without an id, in the problems panel until the connection ends. A
/// channel that was never advertised to the client is still an error.
#[test]
fn a_subscribe_that_crosses_the_unadvertise_is_no_error() {
    watchdog("subscribe_crosses_unadvertise", Duration::from_secs(120));
    let (topic, _g) = key_for("crossing");
    let publisher = Publisher::<Sample>::open(&topic).unwrap();
    let server = Running::start(&[topic.key], |_| {});
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen = Seen::default();
    let id = advertised(&mut ws, &mut seen);
    publisher.remove().unwrap();
    read_until(
        &mut ws,
        &mut seen,
        "the unadvertise",
        Duration::from_secs(30),
        |s| s.unadvertised.contains(&id),
    );
    // What the client sent before the unadvertise reached it, then its
    // unsubscribe on seeing it.
    subscribe(&mut ws, 3, id);
    ws.send(Message::text(
        r#"{"op":"unsubscribe","subscriptionIds":[3]}"#,
    ))
    .unwrap();
    // Channel 0 is never advertised (ids start at 1).
    subscribe(&mut ws, 4, 0);
    after_marker(&mut ws, &mut seen);
    let answers = answers(&seen);
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(
        answers[0],
        "channel 0 was never advertised on this connection"
    );
    assert!(answers[1].contains("'marker'"), "{answers:?}");
    drop(ws);
    server.stop();
}

/// A channel that went before a client connected was never advertised to
/// it: subscribing to it is the same error as for any id it never had.
/// The server took every id from the welcome's lowest up as "advertised,
/// then went", so a client welcomed with channels 1 and 3 had channel 2
/// taken quietly, while 999 was an error.
#[test]
fn a_channel_that_went_before_the_client_connected_was_never_advertised_to_it() {
    watchdog("went_before_connect", Duration::from_secs(120));
    let (ta, _ga) = key_for("before-a");
    let (tb, _gb) = key_for("before-b");
    let (tc, _gc) = key_for("before-c");
    let _pa = Publisher::<Sample>::open(&ta).unwrap();
    let server = Running::start(&[ta.key, tb.key, tc.key], |_| {});
    let (mut first, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen = Seen::default();
    let a = advertised(&mut first, &mut seen);
    // b after a: its id is above a's.
    let pb = Publisher::<Sample>::open(&tb).unwrap();
    let id_of = |s: &Seen, name: &str| {
        s.channels
            .iter()
            .find(|c| c["topic"] == name)
            .and_then(|c| c["id"].as_u64())
    };
    read_until(
        &mut first,
        &mut seen,
        "b's advertise",
        Duration::from_secs(30),
        |s| id_of(s, &tb.name).is_some(),
    );
    let b = id_of(&seen, &tb.name).unwrap();
    assert!(b > a, "{a} {b}");
    pb.remove().unwrap();
    read_until(
        &mut first,
        &mut seen,
        "b's unadvertise",
        Duration::from_secs(30),
        |s| s.unadvertised.contains(&b),
    );
    let _pc = Publisher::<Sample>::open(&tc).unwrap();
    read_until(
        &mut first,
        &mut seen,
        "c's advertise",
        Duration::from_secs(30),
        |s| id_of(s, &tc.name).is_some(),
    );
    let c = id_of(&seen, &tc.name).unwrap();
    // A client connecting now is advertised a and c only.
    let (mut late, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen_late = Seen::default();
    read_until(
        &mut late,
        &mut seen_late,
        "the welcome",
        Duration::from_secs(30),
        |s| s.channels.len() == 2,
    );
    let mut ids: Vec<u64> = seen_late
        .channels
        .iter()
        .filter_map(|c| c["id"].as_u64())
        .collect();
    ids.sort();
    assert_eq!(ids, [a, c]);
    subscribe(&mut late, 1, b);
    subscribe(&mut late, 2, 999);
    after_marker(&mut late, &mut seen_late);
    let late_answers = answers(&seen_late);
    assert_eq!(late_answers.len(), 3, "{late_answers:?}");
    assert_eq!(
        late_answers[0],
        format!("channel {b} was never advertised on this connection")
    );
    assert_eq!(
        late_answers[1],
        "channel 999 was never advertised on this connection"
    );
    // The first client saw b go: its crossing subscribe stays quiet.
    subscribe(&mut first, 7, b);
    after_marker(&mut first, &mut seen);
    let first_answers = answers(&seen);
    assert_eq!(first_answers.len(), 1, "{first_answers:?}");
    drop((first, late));
    server.stop();
}

/// A message the client sends right before its close, read in the same
/// turn, is still handled: a script that publishes one message and
/// closes gets it published.
#[test]
fn a_message_sent_with_the_close_is_still_handled() {
    watchdog("message_with_close", Duration::from_secs(120));
    let (topic, _g) = key_for("with-close");
    // The topic exists, with no live publisher: the server may write it.
    drop(Publisher::<Sample>::open(&topic).unwrap());
    let server = Running::start(&[topic.key], |c| c.allow_publish = true);
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen = Seen::default();
    advertised(&mut ws, &mut seen);
    ws.send(Message::text(format!(
        r#"{{"op":"advertise","channels":[{{"id":5,"topic":"{}","encoding":"json"}}]}}"#,
        topic.name
    )))
    .unwrap();
    // An error answered after the advertise: it was handled.
    after_marker(&mut ws, &mut seen);
    let mut m = vec![1u8, 5, 0, 0, 0];
    m.extend_from_slice(br#"{"seq":42,"value":1.5,"label":"x"}"#);
    // One write: the publish and the close reach the server together.
    ws.write(Message::binary(m)).unwrap();
    ws.close(None).unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        assert!(Instant::now() < end, "the close was not answered");
    }
    let summary = server.stop();
    assert_eq!(summary.published, 1, "the message sent with the close");
}

/// Publishing never creates a topic: one removed since the server's last
/// scan (`ipcrm -M`, `shmbus rm`) is refused with a status saying so, and
/// nothing is left at its key. The server reopened it as its publisher,
/// which created a new segment (and lock) at the key that outlived it.
#[test]
fn publishing_to_a_removed_topic_is_refused_and_creates_nothing() {
    watchdog("publish_removed", Duration::from_secs(120));
    let (topic, _g) = key_for("publish-removed");
    // The topic exists, with no live publisher: the server may write it.
    drop(Publisher::<Sample>::open(&topic).unwrap());
    // No scan after the first: the server still serves the topic when it
    // is removed, as in the second before its next scan.
    let server = Running::start(&[topic.key], |c| {
        c.allow_publish = true;
        c.scan_interval = Duration::from_secs(3600);
    });
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    let mut seen = Seen::default();
    advertised(&mut ws, &mut seen);
    ws.send(Message::text(format!(
        r#"{{"op":"advertise","channels":[{{"id":1,"topic":"{}","encoding":"json"}}]}}"#,
        topic.name
    )))
    .unwrap();
    let message = || {
        let mut m = vec![1u8, 1, 0, 0, 0];
        m.extend_from_slice(br#"{"seq":7,"value":1.5,"label":"x"}"#);
        Message::binary(m)
    };
    let marker = |ws: &mut Ws, seen: &mut Seen, n: usize| {
        ws.send(Message::text(r#"{"op":"marker"}"#)).unwrap();
        read_until(
            ws,
            seen,
            "the marker's error",
            Duration::from_secs(30),
            |s| answers(s).iter().filter(|m| m.contains("'marker'")).count() == n,
        );
    };
    // Published while the topic is there.
    ws.send(message()).unwrap();
    marker(&mut ws, &mut seen, 1);
    assert_eq!(answers(&seen).len(), 1, "{:?}", answers(&seen));
    // Removed, segment and lock, as `shmbus rm` does.
    shmbus_testkit::remove_key(topic.key);
    for _ in 0..3 {
        ws.send(message()).unwrap();
    }
    marker(&mut ws, &mut seen, 2);
    let got = answers(&seen);
    let refused: Vec<&String> = got
        .iter()
        .filter(|m| m.contains("the topic was removed"))
        .collect();
    assert_eq!(refused.len(), 3, "one status for each message: {got:?}");
    assert_eq!(got.len(), 3 + 2, "{got:?}");
    assert!(
        refused[0].contains(&topic.name) && refused[0].contains("never creates"),
        "{got:?}"
    );
    drop(ws);
    let summary = server.stop();
    assert_eq!(summary.published, 1, "only the message before the removal");
    let segment = shmbus_core::sys::shmget(topic.key, 0, 0);
    assert!(segment.is_err(), "a segment at the key: {segment:?}");
    let lock = shmbus_core::sys::sem_lookup(topic.key);
    assert!(lock.is_err(), "a lock at the key: {lock:?}");
}

/// `--max-clients` holds for handshakes in progress: connections accepted
/// while there was room, whose requests come later, are refused (503)
/// once the server is full. The count was taken at `accept`, so up to
/// max + 16 (the pending handshakes) got in.
#[test]
fn max_clients_holds_for_handshakes_in_progress() {
    watchdog("max_clients_pending", Duration::from_secs(120));
    let (topic, _g) = key_for("max-clients-pending");
    let server = Running::start(&[topic.key], |c| c.max_clients = 2);
    let mut socks: Vec<TcpStream> = (0..6)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    // Let the server accept them all before any speaks (on old code this
    // is what let them all in; the fix holds either way).
    std::thread::sleep(Duration::from_millis(500));
    for s in &mut socks {
        s.write_all(ws::UPGRADE_REQUEST).unwrap();
    }
    let mut upgraded = 0;
    let mut refused = 0;
    for (i, s) in socks.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let head = ws::read_head(s).unwrap_or_else(|e| panic!("connection {i}: no answer: {e}"));
        if head.starts_with("HTTP/1.1 101") {
            upgraded += 1;
        } else {
            assert!(head.starts_with("HTTP/1.1 503"), "connection {i}: {head}");
            refused += 1;
        }
    }
    assert_eq!((upgraded, refused), (2, 4));
    drop(socks);
    server.stop();
}

/// Child roles. `publish NAME KEY`: publish a `Sample` every 10 ms until
/// killed, printing "ready" after the first.
#[test]
fn child_role_entry() {
    let Some((role, args)) = role() else { return };
    assert_eq!(role, "publish", "unknown role {role}");
    let topic = Topic::new(&args[0]).key(args[1].parse().unwrap()).slots(64);
    let mut p = Publisher::<Sample>::open(&topic).unwrap();
    p.publish(&sample(0)).unwrap();
    println!("\nready");
    for seq in 1.. {
        std::thread::sleep(Duration::from_millis(10));
        p.publish(&sample(seq)).unwrap();
    }
}

/// A stale topic whose publisher is suspended (SIGSTOP) is reported with
/// that reason, not only "alive but silent": the viewer's problems panel
/// says what to do.
#[test]
fn a_suspended_publisher_is_reported_as_suspended() {
    use std::io::BufRead;
    watchdog("suspended_publisher", Duration::from_secs(180));
    let (topic, _g) = key_for("suspended");
    let mut c = KillOnDrop(
        child("publish", &[topic.name.clone(), topic.key.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the publisher"),
    );
    let mut out = std::io::BufReader::new(c.0.stdout.take().unwrap());
    let mut line = String::new();
    while line.trim() != "ready" {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the publisher exited before it was ready"
        );
    }
    // Not quiet: the server's line says why it dropped a client. This test
    // once saw its connection reset under heavy load (2026-12-04): its
    // topic was not advertised under its name within 30 s, and the
    // keepalive's ping then had the quiet client taken for stuck
    // (`a_quiet_client_that_reads_is_pinged_not_taken_for_stuck`).
    let server = Running::start(&[topic.key], |c| {
        c.stale_after = Duration::from_millis(500);
        c.quiet = false;
    });
    let (mut ws, _) = connect(server.addr, "foxglove.sdk.v1");
    let mut seen = Seen::default();
    read_until(
        &mut ws,
        &mut seen,
        "the topic advertised",
        Duration::from_secs(30),
        |s| s.channels.iter().any(|c| c["topic"] == topic.name.as_str()),
    );
    // Continued when the test ends, also if it fails.
    let _stopped = shmbus_testkit::Suspended::stop(c.0.id()).unwrap();
    let want = "is alive but suspended (SIGSTOP; SIGCONT resumes it))";
    read_until(
        &mut ws,
        &mut seen,
        "a warning that says suspended",
        Duration::from_secs(60),
        |s| {
            s.statuses.iter().any(|v| {
                v["level"] == 1 && v["message"].as_str().is_some_and(|m| m.ends_with(want))
            })
        },
    );
}

/// A client that reads but says nothing, and is sent nothing for longer
/// than the stall timeout (here no topic at all; in use, topics nobody
/// subscribed to and no health change), is pinged when the keepalive
/// comes, answers, and stays. Before, the ping queued after that quiet
/// spell was taken for output the client had not taken for the whole
/// spell: "stuck: took no data for 5 s with 0 KiB waiting", and the
/// connection was reset. With the defaults (keepalive 30 s, stall timeout
/// 10 s) every such viewer was reset 30 s after its last word: the
/// suspended-publisher test's "Connection reset by peer" when its topic
/// was not advertised within 30 s.
#[test]
fn a_quiet_client_that_reads_is_pinged_not_taken_for_stuck() {
    watchdog("quiet_client", Duration::from_secs(300));
    let (topic, _g) = key_for("quiet");
    // The keepalive longer than the stall timeout, as by default; 5 s for
    // an answer, so that a reading client whose thread does not run for a
    // second on a loaded machine still answers in time.
    let server = Running::start(&[topic.key], |c| {
        c.keepalive = Duration::from_secs(6);
        c.stall_timeout = Duration::from_secs(5);
        c.quiet = false;
    });
    let (mut ws, _) = connect(server.addr, "foxglove.websocket.v1");
    // Two keepalive rounds: each ping is answered (tungstenite sends the
    // pong at the next read) and the connection stays.
    let mut pings = 0;
    let end = Instant::now() + Duration::from_secs(120);
    while pings < 2 {
        assert!(
            Instant::now() < end,
            "no second ping within 120 s ({pings} so far)"
        );
        match ws.read() {
            Ok(Message::Ping(_)) => pings += 1,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("a quiet client that reads was dropped after {pings} ping(s): {e}"),
        }
    }
    drop(ws);
    assert_eq!(server.stop().clients, 1);
}

/// A connection that answers nothing (a viewer's laptop asleep, a network
/// or tunnel dropped without closing: here a socket that never reads) is
/// pinged once it has been silent for `keepalive` and dropped when nothing
/// answers within the stall timeout, which frees its client slot. A client
/// that reads (tungstenite answers pings by itself, as browsers and
/// Foxglove's libraries do) keeps its connection through several pings.
/// Before, such a connection held its slot for the life of the server, and
/// `max_clients` of them locked every viewer out.
#[test]
fn a_connection_that_answers_no_ping_frees_its_slot() {
    watchdog("keepalive", Duration::from_secs(300));
    let (topic, _g) = key_for("keepalive");
    // The stall timeout is how long a ping may go unanswered: 5 s, not
    // 1 s, so that the reading client below is not dropped when its
    // thread does not run for a second on a loaded machine.
    let server = Running::start(&[topic.key], |c| {
        c.keepalive = Duration::from_millis(500);
        c.stall_timeout = Duration::from_secs(5);
        c.max_clients = 1;
    });
    // The one slot, taken by a client that completes its handshake and
    // then never reads. Until a viewer has been refused it sends an
    // unsolicited pong (masked, empty) every 100 ms from a thread of its
    // own, which the server takes as a word from it: otherwise the first
    // viewer had to be refused within the 0.5 s + 1 s the keepalive
    // leaves the silent one, and a test thread that did not run for that
    // long saw the slot free at once ("the slot was never taken").
    let mut silent = TcpStream::connect(server.addr).unwrap();
    ws::handshake(&mut silent, "silent");
    let speaking = Arc::new(AtomicBool::new(true));
    let heartbeat = {
        let mut s = silent.try_clone().unwrap();
        let speaking = speaking.clone();
        std::thread::spawn(move || {
            // Bounded by the watchdog: the test clears `speaking`, or fails.
            while speaking.load(Ordering::Relaxed) {
                if s.write_all(&[0x8a, 0x80, 0, 0, 0, 0]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // A viewer is refused while the silent one holds the slot, and gets
    // in once the keepalive has dropped it, after it fell silent (60 s: a
    // loaded machine).
    let end = Instant::now() + Duration::from_secs(60);
    let mut refused = 0;
    let mut ws = loop {
        let mut req = format!("ws://{}/", server.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("foxglove.websocket.v1"),
        );
        match tungstenite::connect(req) {
            Ok((ws, _)) => break ws,
            Err(tungstenite::Error::Http(r)) if r.status().as_u16() == 503 => {
                refused += 1;
                // From now on it says nothing.
                speaking.store(false, Ordering::Relaxed);
            }
            Err(e) => panic!("connect: {e}"),
        }
        assert!(
            Instant::now() < end,
            "the silent connection still holds the only slot after 60 s ({refused} refusals)"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    speaking.store(false, Ordering::Relaxed);
    heartbeat.join().unwrap();
    assert!(
        refused > 0,
        "the slot was never taken: the test shows nothing"
    );
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
    }
    // The reading client stays through at least three keepalive rounds
    // (0.5 s of silence each, then its pong).
    let stay = Instant::now() + Duration::from_secs(4);
    while Instant::now() < stay {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("a client that answers pings was dropped: {e}"),
        }
    }
    // And the silent one was really disconnected, not just outnumbered.
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    match silent.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}
