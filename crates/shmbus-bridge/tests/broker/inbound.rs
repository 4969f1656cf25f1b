//! Broker to board: bad payloads are counted and never published; a live
//! local publisher is never fought.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{Board, Broker, Dir, LONG, SHORT, args, mqtt_pub, on_board, retained};
use crate::{KEY, TICK_TEXT, config_b, wait_retained};

const SETPOINT: &str = "struct Setpoint { speed: f32, mode: u8, label: heapless::String<8> }";

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn bad_inbound_payloads_are_counted_and_never_published() {
    let dir = Dir::new("inbound-bad");
    let broker = Broker::start(&dir, "broker", "");
    let cfg = dir.write(
        "b.toml",
        &format!(
            "[[topic]]\nname = \"setpoint\"\nkey = {KEY}\n\n[bridge]\nboard_id = \"b\"\nstats_interval_s = 1\n\n[[bridge.in]]\nfrom = \"ground/b/setpoint\"\ntopic = \"setpoint\"\nschema = \"{SETPOINT}\"\n"
        ),
        0o644,
    );
    let mut b = Board::new("b");
    b.start_bridge(&broker.url(), &cfg, &[])
        .wait_line("subscribed to 1 broker topic", LONG);
    let mut echo = b.probe(
        "echo",
        &[
            "echo",
            "--key",
            KEY,
            "--name",
            "setpoint",
            "--count",
            "1",
            "--timeout-s",
            "60",
        ],
    );
    echo.wait_line("READY", LONG);
    let t = "ground/b/setpoint";
    for bad in [
        &b"not json"[..],
        br#"{"speed":"fast","mode":1,"label":"x"}"#,
        br#"{"speed":1.5,"mode":300,"label":"x"}"#,
        br#"{"speed":1.5,"mode":1,"label":"much-too-long"}"#,
        br#"{"speed":1.5,"mode":1}"#,
        br#"{"speed":1e39,"mode":1,"label":"x"}"#,
    ] {
        mqtt_pub(broker.port, t, bad, false);
    }
    mqtt_pub(
        broker.port,
        t,
        br#"{"speed":2.5,"mode":3,"label":"ok"}"#,
        false,
    );
    let r = echo.finish(LONG);
    assert_eq!(r["frames"], 1);
    let frame = echo
        .text()
        .lines()
        .find(|l| l.starts_with("out: FRAME"))
        .unwrap()
        .to_string();
    assert!(
        frame.ends_with(r#"{"speed":2.5,"mode":3,"label":"ok"}"#),
        "{frame}"
    );
    let report = json(&wait_retained(
        broker.port,
        "shmbus/b/$in/setpoint",
        |s| json(s)["received"] == 7,
        SHORT,
    ));
    assert_eq!(
        (report["bad"].as_u64(), report["published"].as_u64()),
        (Some(6), Some(1)),
        "{report}"
    );
    assert_eq!(report["state"], "publishing", "{report}");
    let (st, stats) = b.bridge().stop(SHORT);
    assert!(st.success());
    assert_eq!(
        (
            stats["in"]["bad"].as_u64(),
            stats["in"]["published"].as_u64()
        ),
        (Some(6), Some(1)),
        "{stats}"
    );
    // The first bad payload is printed, with the reason; the others counted.
    let text = b.bridge().text();
    assert_eq!(
        b.bridge().count_lines("bad payload, not published"),
        1,
        "{text}"
    );
    assert!(text.contains("not JSON"), "{text}");
}

#[test]
fn a_topic_with_a_live_local_publisher_is_not_fought() {
    let dir = Dir::new("inbound-refuse");
    let broker = Broker::start(&dir, "broker", "");
    let mut b = Board::new("b");
    // A local process publishes `tick` first (the same type the bridge declares).
    let mut local = b.probe(
        "local",
        &["pub", "--key", KEY, "--count", "100000", "--rate", "10"],
    );
    let open = local.wait_line("OPEN pid=", LONG);
    let pid: u64 = open.rsplit('=').next().unwrap().trim().parse().unwrap();
    b.start_bridge(&broker.url(), &config_b(&dir, "b.toml", TICK_TEXT, ""), &[])
        .wait_line("subscribed to 1 broker topic", LONG);
    assert!(
        b.bridge().text().contains(&format!(
            "has a live local publisher (pid {pid}); the bridge does not fight it"
        )),
        "{}",
        b.bridge().text()
    );
    let msg =
        br#"{"topic":"tick","generation":1,"value":{"seq":1,"t_ns":5,"value":0.5,"epoch":1}}"#;
    mqtt_pub(broker.port, "shmbus/a/tick", msg, false);
    let report = json(&wait_retained(
        broker.port,
        "shmbus/b/$in/tick",
        |s| json(s)["received"] == 1,
        SHORT,
    ));
    assert_eq!(report["state"], "refused", "{report}");
    assert_eq!(
        (report["refused"].as_u64(), report["holder_pid"].as_u64()),
        (Some(1), Some(pid)),
        "{report}"
    );
    // Once the local publisher is gone, the bridge takes the topic (it tries
    // again at most once a second).
    local.signal(libc::SIGKILL);
    local.wait(SHORT);
    std::thread::sleep(Duration::from_millis(1100));
    mqtt_pub(broker.port, "shmbus/a/tick", msg, false);
    let report = json(&wait_retained(
        broker.port,
        "shmbus/b/$in/tick",
        |s| json(s)["received"] == 2,
        SHORT,
    ));
    assert_eq!(
        (report["state"].as_str(), report["published"].as_u64()),
        (Some("publishing"), Some(1)),
        "{report}"
    );
    let (st, stats) = b.bridge().stop(SHORT);
    assert!(st.success());
    assert_eq!(
        (
            stats["in"]["refused"].as_u64(),
            stats["in"]["published"].as_u64()
        ),
        (Some(1), Some(1)),
        "{stats}"
    );
    let _ = retained;
}

/// A retained message over the bridge's 1 MiB limit on a `[[bridge.in]]`
/// topic breaks the connection inside rumqttc and comes back on every
/// connect: the bridge pauses its inbound subscriptions instead of flapping
/// the whole link, and says why.
#[test]
fn an_oversized_retained_inbound_message_does_not_take_the_link_down() {
    let dir = Dir::new("inbound-huge");
    let broker = Broker::start(&dir, "broker", "");
    let t = "ground/b/setpoint";
    mqtt_pub(broker.port, t, &vec![b'x'; 2 << 20], true);
    let cfg = dir.write(
        "b.toml",
        &format!(
            "[[topic]]\nname = \"setpoint\"\nkey = {KEY}\n\n[bridge]\nboard_id = \"b\"\nstats_interval_s = 1\nreconnect_min_ms = 100\nreconnect_max_ms = 200\n\n[[bridge.in]]\nfrom = \"{t}\"\ntopic = \"setpoint\"\nschema = \"{SETPOINT}\"\n"
        ),
        0o644,
    );
    let mut b = Board::new("b");
    b.start_bridge(&broker.url(), &cfg, &[])
        .wait_line("over the bridge's limit", LONG);
    let ok = |s: &str| json(s)["connected"] == true && json(s)["in"]["oversized"] == 1;
    wait_retained(broker.port, "shmbus/b/$stats", ok, SHORT);
    // Unpaused, the bridge reconnected every ~0.3 s for as long as the
    // message stayed retained.
    std::thread::sleep(Duration::from_secs(3));
    let stats = json(&wait_retained(broker.port, "shmbus/b/$stats", ok, SHORT));
    assert_eq!(
        (stats["connections"].as_u64(), stats["link_errors"].as_u64()),
        (Some(2), Some(1)),
        "{stats}"
    );
    assert_eq!(
        retained(broker.port, "shmbus/b/$state").as_deref(),
        Some("online")
    );
    let report = json(&retained(broker.port, "shmbus/b/$in/setpoint").unwrap());
    assert_eq!(report["state"], "paused", "{report}");
    let why = report["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("2097") && why.contains("mosquitto_pub -r -n"),
        "{report}"
    );
    let (st, _) = b.bridge().stop(SHORT);
    assert!(st.success());
}

/// A `[[bridge.in]]` topic removed on the board between broker messages
/// (`shmbus rm --force`, systemd-logind's `RemoveIPC`), segment and lock,
/// is created again within about half a second, and the ground station's
/// retained value is published on it again, with no new message from the
/// ground: it used to stay gone until the next one.
#[test]
fn a_removed_inbound_topic_comes_back_with_the_retained_value() {
    let dir = Dir::new("inbound-removed");
    let broker = Broker::start(&dir, "broker", "");
    let t = "ground/b/setpoint";
    mqtt_pub(
        broker.port,
        t,
        br#"{"speed":2.5,"mode":3,"label":"kept"}"#,
        true,
    );
    let cfg = dir.write(
        "b.toml",
        &format!(
            "[[topic]]\nname = \"setpoint\"\nkey = {KEY}\n\n[bridge]\nboard_id = \"b\"\nstats_interval_s = 1\n\n[[bridge.in]]\nfrom = \"{t}\"\ntopic = \"setpoint\"\nschema = \"{SETPOINT}\"\n"
        ),
        0o644,
    );
    let mut b = Board::new("b");
    b.start_bridge(&broker.url(), &cfg, &[])
        .wait_line("subscribed to 1 broker topic", LONG);
    wait_retained(
        broker.port,
        "shmbus/b/$in/setpoint",
        |s| json(s)["published"] == 1,
        SHORT,
    );
    // Both objects at the key, as `shmbus rm --force` removes them.
    let pid = b.bridge().pid();
    for what in ["-M", "-S"] {
        let st = on_board(pid, &args(&["ipcrm", what, KEY]))
            .status()
            .expect("ipcrm");
        assert!(st.success(), "ipcrm {what} {KEY}");
    }
    let report = json(&wait_retained(
        broker.port,
        "shmbus/b/$in/setpoint",
        |s| json(s)["published"] == 2,
        SHORT,
    ));
    assert_eq!(
        (
            report["state"].as_str(),
            report["recreated"].as_u64(),
            report["received"].as_u64()
        ),
        (Some("publishing"), Some(1), Some(2)),
        "{report}"
    );
    // The segment is there again at the key (its frame: the core test).
    let ipcs = on_board(pid, &args(&["ipcs", "-m"]))
        .output()
        .expect("ipcs");
    let ipcs = String::from_utf8_lossy(&ipcs.stdout).into_owned();
    assert!(ipcs.contains(KEY), "{ipcs}");
    let (st, stats) = b.bridge().stop(SHORT);
    assert!(st.success());
    assert_eq!(stats["in"]["recreated"].as_u64(), Some(1), "{stats}");
}
