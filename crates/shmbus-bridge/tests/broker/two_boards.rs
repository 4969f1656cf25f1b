//! Two boards through one broker: frames published on board A are read on
//! board B, with the same schema.

use serde_json::Value;

use crate::harness::{Board, Broker, Dir, LONG, SHORT, retained_bytes};
use crate::{KEY, TICK_TEXT, config_a, config_b, env_num, wait_retained};

fn n(v: &Value, p: &str) -> u64 {
    v.pointer(p)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no {p} in {v}"))
}

#[test]
fn frames_from_board_a_are_read_on_board_b_with_the_same_schema() {
    let frames = env_num("SHMBUS_BRIDGE_FRAMES", 10_000);
    let rate = env_num("SHMBUS_BRIDGE_RATE", 1000);
    let dir = Dir::new("two-boards");
    let broker = Broker::start(&dir, "broker", "");
    let go = dir.path("go");

    // Board A: the bridge, then a publisher that waits for the bridge's
    // reader and for the go file.
    let mut a = Board::new("a");
    a.start_bridge(&broker.url(), &config_a(&dir, "a.toml", ""), &[])
        .wait_line("connected to", LONG);
    let count = frames.to_string();
    let rate_s = rate.to_string();
    let mut publisher = a.probe(
        "pub",
        &[
            "pub",
            "--key",
            KEY,
            "--count",
            &count,
            "--rate",
            &rate_s,
            "--wait-subs",
            "1",
            "--go",
            go.to_str().unwrap(),
        ],
    );
    publisher.wait_line("WAITING", LONG);

    // Board B is set up from what board A's bridge put on the broker: the
    // schema text of `tick` (retained), as a [[bridge.in]] declaration.
    wait_retained(
        broker.port,
        "shmbus/a/tick/$schematext",
        |s| s.starts_with("struct"),
        SHORT,
    );
    let schema = retained_bytes(broker.port, "shmbus/a/tick/$schematext", 30).expect("schema text");
    let schema = String::from_utf8(schema).unwrap();
    assert_eq!(schema, TICK_TEXT);
    let mut b = Board::new("b");
    b.start_bridge(&broker.url(), &config_b(&dir, "b.toml", &schema, ""), &[])
        .wait_line("subscribed to 1 broker topic", LONG);
    let mut sub = b.probe(
        "sub",
        &[
            "sub",
            "--key",
            KEY,
            "--count",
            &count,
            "--timeout-s",
            &(frames / rate + 120).to_string(),
            "--idle-s",
            "20",
        ],
    );
    sub.wait_line("READY", LONG);

    std::fs::write(&go, "").unwrap();
    let got = sub.finish(std::time::Duration::from_secs(frames / rate + 180));
    publisher.finish(LONG);
    let (sa, a_stats) = a.bridge().stop(SHORT);
    let (sb, b_stats) = b.bridge().stop(SHORT);
    assert!(sa.success() && sb.success(), "bridges: {sa} {sb}");
    println!(
        "two boards: {frames} frames at {rate} Hz: board B read {} ({} lost, {} duplicate); latency A publish -> B read: p50 {} us, p99 {} us, max {} us",
        n(&got, "/unique"),
        n(&got, "/lost"),
        n(&got, "/dup"),
        n(&got, "/lat_us/p50"),
        n(&got, "/lat_us/p99"),
        n(&got, "/lat_us/max"),
    );
    println!("board A bridge: {a_stats}");
    println!("board B bridge: {b_stats}");

    // Every frame B read is one A published, decoded with A's schema (the
    // typed subscriber on B refuses any other), with the right values.
    assert_eq!(n(&got, "/bad"), 0, "{got}");
    assert_eq!(n(&got, "/dup"), 0, "{got}");
    assert_eq!(n(&got, "/unique") + n(&got, "/lost"), frames);
    // Losses are accounted for: A read and sent every frame (none missed
    // in its ring, none dropped from its outbox); B published every message
    // it got, and its subscriber read every one it published.
    let lost = n(&got, "/lost");
    assert_eq!(
        n(&a_stats, "/out/missed") + n(&a_stats, "/out/dropped"),
        0,
        "{a_stats}"
    );
    assert_eq!(n(&a_stats, "/topics/tick/sent"), frames, "{a_stats}");
    // A sends `tick` at QoS 1: Mosquitto acknowledged every frame (and
    // the QoS 1 state messages), and `delivered` counts the acknowledged
    // ones, not what was handed to rumqttc.
    assert!(
        n(&a_stats, "/out/acknowledged") >= frames
            && n(&a_stats, "/out/delivered") >= n(&a_stats, "/out/acknowledged")
            && n(&a_stats, "/out/written") >= n(&a_stats, "/out/delivered"),
        "{a_stats}"
    );
    assert_eq!(
        n(&b_stats, "/in/bad") + n(&b_stats, "/in/refused"),
        0,
        "{b_stats}"
    );
    assert_eq!(
        n(&b_stats, "/in/published"),
        n(&b_stats, "/in/received"),
        "{b_stats}"
    );
    assert_eq!(n(&got, "/ring_missed"), 0, "{got}");
    assert_eq!(
        n(&b_stats, "/in/published"),
        n(&got, "/unique"),
        "{b_stats} {got}"
    );
    // With the broker up the whole time, on one machine, nothing is lost.
    assert_eq!(lost, 0, "frames lost between A and B: {got}");
}
