//! What an independent client (mosquitto_sub) sees: retained schema and
//! latest value, publisher status and staleness, birth and last will; and
//! a topic removed and created again.

use serde_json::Value;

use crate::harness::{Board, Broker, Dir, LONG, Proc, SHORT, retained, retained_bytes};
use crate::{KEY, TICK_TEXT, config_a, wait_retained};

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn retained_schema_latest_value_status_and_last_will() {
    let dir = Dir::new("liveness");
    let broker = Broker::start(&dir, "broker", "");
    let mut a = Board::new("a");
    a.start_bridge(&broker.url(), &config_a(&dir, "a.toml", ""), &[])
        .wait_line("connected to", LONG);
    assert_eq!(
        retained(broker.port, "shmbus/a/$state").as_deref(),
        Some("online")
    );
    // Before the topic exists.
    wait_retained(
        broker.port,
        "shmbus/a/tick/$status",
        |s| json(s)["state"] == "absent",
        SHORT,
    );

    let mut p = a.probe(
        "pub",
        &[
            "pub",
            "--key",
            KEY,
            "--count",
            "50",
            "--rate",
            "100",
            "--wait-subs",
            "1",
            "--linger-ms",
            "1500",
        ],
    );
    p.wait_line("DONE", LONG);
    // The schema, three ways. The postcard-schema bytes are those of the
    // declared type (the same bytes a ground station can decode with).
    let schema = retained_bytes(broker.port, "shmbus/a/tick/$schema", 30).expect("$schema");
    let declared = shmbus_codec::Codec::parse(TICK_TEXT).unwrap();
    assert_eq!(schema, declared.schema_bytes());
    let js = json(&retained(broker.port, "shmbus/a/tick/$jsonschema").expect("$jsonschema"));
    assert_eq!(js["type"], "object", "{js}");
    assert!(js["properties"]["epoch"].is_object(), "{js}");
    let text =
        String::from_utf8(retained_bytes(broker.port, "shmbus/a/tick/$schematext", 30).unwrap())
            .unwrap();
    assert_eq!(text, TICK_TEXT);
    // The retained latest value is the last frame; live and fresh.
    let latest = json(&wait_retained(
        broker.port,
        "shmbus/a/tick",
        |s| json(s)["value"]["seq"] == 49,
        SHORT,
    ));
    assert_eq!(latest["generation"], 50);
    assert_eq!(latest["value"]["value"], 24.5);
    assert_eq!(latest["value"]["epoch"], 1);
    let status = json(&retained(broker.port, "shmbus/a/tick/$status").unwrap());
    assert_eq!(status["state"], "alive", "{status}");
    // The publisher lingers without publishing: older than max_age_ms =
    // 500 the topic turns stale while its publisher is still alive.
    let stale = json(&wait_retained(
        broker.port,
        "shmbus/a/tick/$status",
        |s| json(s)["stale"] == true,
        SHORT,
    ));
    assert_eq!(stale["state"], "alive", "{stale}");
    p.finish(LONG);
    let stopped = json(&wait_retained(
        broker.port,
        "shmbus/a/tick/$status",
        |s| json(s)["state"] == "stopped",
        SHORT,
    ));
    assert_eq!(stopped["generation"], 50, "{stopped}");

    // kill -9: no goodbye, the broker sends the last will.
    a.bridge().signal(libc::SIGKILL);
    a.bridge().wait(SHORT);
    wait_retained(broker.port, "shmbus/a/$state", |s| s == "offline", SHORT);
    // The latest value stays retained after the board is gone.
    assert_eq!(
        json(&retained(broker.port, "shmbus/a/tick").unwrap())["value"]["seq"],
        49
    );

    // A clean stop says goodbye itself (a last will is not sent then).
    a.start_bridge(&broker.url(), &config_a(&dir, "a.toml", ""), &[])
        .wait_line("connected to", LONG);
    wait_retained(broker.port, "shmbus/a/$state", |s| s == "online", SHORT);
    let (st, _) = a.bridge().stop(SHORT);
    assert!(st.success(), "{st}");
    assert_eq!(
        retained(broker.port, "shmbus/a/$state").as_deref(),
        Some("offline")
    );
}

/// A clean stop waits (bounded) for the broker's acknowledgements of what
/// is in flight before it disconnects: every stop reported one message
/// (its own `offline`, QoS 1) "handed to the MQTT link but never
/// confirmed", as the connection loop ended at the DISCONNECT, before the
/// PUBACK the broker had sent was read.
#[test]
fn a_clean_stop_leaves_nothing_unconfirmed() {
    let dir = Dir::new("unconfirmed");
    let broker = Broker::start(&dir, "broker", "");
    let mut a = Board::new("a");
    a.start_bridge(&broker.url(), &config_a(&dir, "a.toml", ""), &[])
        .wait_line("connected to", LONG);
    wait_retained(broker.port, "shmbus/a/$state", |s| s == "online", SHORT);
    let (st, stats) = a.bridge().stop(SHORT);
    assert!(st.success(), "{st}");
    assert_eq!(stats["out"]["unconfirmed"], 0, "{stats}");
    let line = a.bridge().wait_line("stopped: ", SHORT);
    assert!(
        line.contains(" 0 handed to the MQTT link but never confirmed"),
        "{line}"
    );
    assert_eq!(
        retained(broker.port, "shmbus/a/$state").as_deref(),
        Some("offline")
    );
}

#[test]
fn a_topic_removed_and_created_again_is_followed_with_its_new_schema() {
    let dir = Dir::new("recreate");
    let broker = Broker::start(&dir, "broker", "");
    let mut a = Board::new("a");
    a.start_bridge(&broker.url(), &config_a(&dir, "a.toml", ""), &[])
        .wait_line("connected to", LONG);
    // Everything the broker gets about the topic, in order.
    let mut watch = Proc::spawn("mosquitto_sub", {
        let mut c = std::process::Command::new("mosquitto_sub");
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port.to_string(),
            "-t",
            "shmbus/a/tick/#",
            "-t",
            "shmbus/a/tick",
            "-v",
            "-W",
            "60",
        ]);
        c
    });
    // Subscribed once it prints the topic's retained status ("absent": no
    // publisher yet). A fixed 500 ms was no promise on a loaded machine:
    // a watcher that subscribed later missed the first "alive", got a
    // later state as the retained one, and the sequence below fell apart.
    watch.wait_line("out: shmbus/a/tick/$status ", LONG);
    let mut p1 = a.probe(
        "pub1",
        &[
            "pub",
            "--key",
            KEY,
            "--count",
            "20",
            "--rate",
            "100",
            "--wait-subs",
            "1",
            "--remove",
        ],
    );
    p1.finish(LONG);
    // The same key again, another type, another publisher.
    wait_retained(
        broker.port,
        "shmbus/a/tick/$status",
        |s| json(s)["state"] != "alive",
        SHORT,
    );
    let mut p2 = a.probe(
        "pub2",
        &[
            "pub",
            "--key",
            KEY,
            "--count",
            "30",
            "--rate",
            "100",
            "--v2",
            "--epoch",
            "2",
            "--linger-ms",
            "1000",
        ],
    );
    p2.finish(LONG);
    let text = wait_retained(
        broker.port,
        "shmbus/a/tick/$schematext",
        |s| s.starts_with("struct TickV2"),
        SHORT,
    );
    assert!(text.starts_with("struct TickV2"));
    let latest = json(&wait_retained(
        broker.port,
        "shmbus/a/tick",
        |s| json(s)["value"]["seq"] == 29,
        SHORT,
    ));
    assert_eq!(
        latest["generation"], 30,
        "the new segment counts from 1 again: {latest}"
    );
    assert_eq!(latest["value"]["extra"], 7);
    a.bridge().stop(SHORT);
    watch.signal(libc::SIGTERM);
    watch.wait(SHORT);
    // The status went alive -> removed/absent -> alive.
    let states: Vec<String> = watch
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("out: shmbus/a/tick/$status "))
        .map(|p| json(p)["state"].as_str().unwrap().to_string())
        .collect();
    let i = states.iter().position(|s| s == "alive").expect("alive");
    let j = i + states[i..]
        .iter()
        .position(|s| s == "removed" || s == "absent")
        .expect("removed");
    assert!(states[j..].iter().any(|s| s == "alive"), "{states:?}");
    println!("status sequence of a removed and recreated topic: {states:?}");
}
