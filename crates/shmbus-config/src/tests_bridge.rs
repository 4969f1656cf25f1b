//! `[bridge]` tests: a full table, the defaults, and every kind of mistake
//! at its exact `path:line:col`.

use crate::Config;
use crate::bridge::{InFormat, OutFormat, OutSettings, level_problem};

const TOPICS: &str =
    "[[topic]]\nname = \"imu\"\n[[topic]]\nname = \"power\"\n[[topic]]\nname = \"setpoint\"\n";

fn parse(bridge: &str) -> Result<Config, Vec<String>> {
    Config::parse(&format!("{TOPICS}{bridge}"), "t.toml")
        .map_err(|e| e.to_string().lines().map(str::to_string).collect())
}

/// Line numbers below count from the first line of `bridge` (the topics
/// take 6 lines).
fn assert_errors(bridge: &str, expected: &[(usize, usize, &str)]) {
    let got = match parse(bridge) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e,
    };
    assert_eq!(got.len(), expected.len(), "errors: {got:#?}");
    for (g, (line, col, words)) in got.iter().zip(expected) {
        let pos = format!("t.toml:{}:{col}: ", line + 6);
        assert!(g.starts_with(&pos), "expected at {pos}: {g}");
        assert!(g.contains(words), "expected '{words}' in: {g}");
    }
}

#[test]
fn a_full_bridge_table_parses() {
    let c = parse(
        r#"[bridge]
board_id = "board-17"
prefix = "fleet/eu"
topics = ["imu", "power"]
qos = 1
retain = false
format = "both"
queue = 500
queue_bytes = 65536
stats_interval_s = 0
reconnect_min_ms = 100
reconnect_max_ms = 5000
[bridge.mqtt]
broker = "mqtts://127.0.0.1:8883"
client_id = "b17"
keepalive_s = 5
credentials = "bridge.cred"
ca = "/etc/shmbus/ca.pem"
client_cert = "b17.pem"
client_key = "b17.key"
[[bridge.out]]
topic = "imu"
rate_hz = 10
format = "json"
[[bridge.out]]
topic = "power"
every = 4
[[bridge.in]]
from = "ground/board-17/setpoint"
topic = "setpoint"
schema = "struct Setpoint { speed: f32 }"
format = "envelope"
qos = 2
"#,
    )
    .unwrap();
    let b = c.bridge.as_ref().unwrap();
    assert_eq!(b.board_id.as_deref(), Some("board-17"));
    assert_eq!(b.prefix, "fleet/eu");
    let names: Vec<&str> = b
        .topics
        .as_ref()
        .unwrap()
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(names, ["imu", "power"]);
    assert_eq!(
        (b.queue, b.queue_bytes, b.stats_interval_s),
        (500, 65536, 0)
    );
    assert_eq!((b.reconnect_min_ms, b.reconnect_max_ms), (100, 5000));
    let imu = b.out_settings("imu");
    assert_eq!(
        imu,
        OutSettings {
            rate_hz: Some(10.0),
            every: None,
            qos: Some(1),
            retain: Some(false),
            format: Some(OutFormat::Json)
        }
    );
    let power = b.out_settings("power");
    assert_eq!(
        (power.every, power.rate_hz, power.format),
        (Some(4), None, Some(OutFormat::Both))
    );
    let i = &b.inbound[0];
    assert_eq!(
        (i.remote.as_str(), i.topic.as_str(), i.format, i.qos),
        (
            "ground/board-17/setpoint",
            "setpoint",
            InFormat::Envelope,
            2
        )
    );
    assert_eq!(i.schema, "struct Setpoint { speed: f32 }");
    assert_eq!(i.schema_at.to_string(), "t.toml:37:10");
    assert!(b.is_inbound_target("setpoint") && !b.is_inbound_target("imu"));
    let m = &b.mqtt;
    assert_eq!(m.broker.as_ref().unwrap().value, "mqtts://127.0.0.1:8883");
    assert_eq!(
        (m.client_id.as_deref(), m.keepalive_s),
        (Some("b17"), Some(5))
    );
    // Relative paths are taken from the config file's directory.
    let cred = m.credentials.as_ref().unwrap();
    assert_eq!(
        cred.resolve("/etc/shmbus/shmbus.toml"),
        std::path::Path::new("/etc/shmbus/bridge.cred")
    );
    assert_eq!(
        m.ca.as_ref().unwrap().resolve("x/y.toml"),
        std::path::Path::new("/etc/shmbus/ca.pem")
    );
    assert_eq!(cred.at.to_string(), "t.toml:23:15");
    // Renaming the file renames every location in the table.
    let renamed = c.clone().with_path("other.toml");
    let rb = renamed.bridge.unwrap();
    assert_eq!(rb.inbound[0].schema_at.to_string(), "other.toml:37:10");
    assert_eq!(
        rb.mqtt.credentials.unwrap().at.to_string(),
        "other.toml:23:15"
    );
}

#[test]
fn an_empty_bridge_table_takes_the_defaults() {
    let c = parse("[bridge]\n").unwrap();
    let b = c.bridge.unwrap();
    assert_eq!(
        (&b.board_id, b.prefix.as_str(), &b.topics),
        (&None, "shmbus", &None)
    );
    assert_eq!(b.out_settings("imu"), OutSettings::defaults());
    assert_eq!(b.out_settings("imu").format, Some(OutFormat::Json));
    assert_eq!((b.queue, b.queue_bytes), (1000, 1 << 20));
    assert!(b.mqtt.broker.is_none() && b.inbound.is_empty());
    assert!(parse("").unwrap().bridge.is_none());
}

#[test]
fn pacing_from_a_topic_replaces_the_inherited_one() {
    let c = parse("[bridge]\nrate_hz = 5\n[[bridge.out]]\ntopic = \"imu\"\nevery = 2\n").unwrap();
    let b = c.bridge.unwrap();
    assert_eq!(
        (b.out_settings("imu").rate_hz, b.out_settings("imu").every),
        (None, Some(2))
    );
    assert_eq!(
        (
            b.out_settings("power").rate_hz,
            b.out_settings("power").every
        ),
        (Some(5.0), None)
    );
}

#[test]
fn bad_bridge_fields_are_all_reported_where_they_are_written() {
    assert_errors(
        "[bridge]\nboard_id = \"a/b\"\nprefix = \"x//y\"\nqos = 3\nformat = \"xml\"\nrate_hz = 5\nevery = 2\nqueue = 0\nreconect_min_ms = 5\nreconnect_max_ms = 10\n",
        &[
            (2, 12, "board_id = \"a/b\" contains '/'"),
            (3, 10, "level \"\" is empty"),
            (4, 7, "qos = 3 is not an MQTT QoS: use 0"),
            (5, 10, "format = \"xml\" is not a format"),
            (7, 9, "`rate_hz` and `every` cannot both be set"),
            (8, 9, "queue = 0 must be from 1 to 10000000"),
            (
                9,
                1,
                "unknown field `reconect_min_ms` in [bridge]; did you mean `reconnect_min_ms`?",
            ),
            (
                10,
                20,
                "reconnect_max_ms = 10 is below reconnect_min_ms = 250",
            ),
        ],
    );
}

/// `queue_bytes` has one limit on every target: 4 GiB, which wrapped to 0
/// in a 32-bit `usize`, is refused on the host that checks the config too.
#[test]
fn queue_bytes_fits_a_32_bit_board() {
    for (n, ok) in [
        (1023_u64, false),
        (1024, true),
        (1 << 30, true),
        ((1 << 30) + 1, false),
        (u64::from(u32::MAX), false),
        (1 << 32, false),
        (1 << 40, false),
    ] {
        let got = parse(&format!("[bridge]\nqueue_bytes = {n}\n"));
        if ok {
            assert_eq!(got.unwrap().bridge.unwrap().queue_bytes as u64, n);
        } else {
            assert_errors(
                &format!("[bridge]\nqueue_bytes = {n}\n"),
                &[(
                    2,
                    15,
                    &format!(
                        "queue_bytes = {n} must be from 1024 to 1073741824 (1 GiB, the most on every board, 32-bit ones too)"
                    ),
                )],
            );
        }
    }
    assert_errors(
        "[bridge]\nqueue_bytes = -1\n",
        &[(2, 15, "queue_bytes = -1 must be from 1024 to 1073741824")],
    );
}

#[test]
fn bridge_topics_must_be_declared_topics() {
    assert_errors(
        "[bridge]\ntopics = [\"imu\", \"gnss\", \"imu\"]\n[[bridge.out]]\ntopic = \"power\"\n[[bridge.out]]\nrate_hz = 1\n[[bridge.out]]\ntopic = \"imu\"\n[[bridge.out]]\ntopic = \"imu\"\n",
        &[
            (2, 18, "no [[topic]] named `gnss` in this file"),
            (2, 26, "`imu` is listed twice (first at column 11)"),
            (4, 9, "topic `power` is not in [bridge] topics"),
            (5, 1, "this [[bridge.out]] has no `topic`"),
            (
                10,
                9,
                "a second [[bridge.out]] for `imu` (first at line 14)",
            ),
        ],
    );
}

#[test]
fn inbound_mistakes() {
    assert_errors(
        "[bridge]\ntopics = [\"setpoint\"]\n[[bridge.in]]\nfrom = \"a\"\ntopic = \"setpoint\"\nschema = \"u8\"\n[[bridge.in]]\nfrom = \"b\"\ntopic = \"setpoint\"\nschema = \"u8\"\n[[bridge.out]]\ntopic = \"setpoint\"\n",
        &[
            (
                2,
                11,
                "topic `setpoint` is taken in by the [[bridge.in]] at line 10",
            ),
            (
                8,
                8,
                "topic `setpoint` is already taken in from `a` (line 10)",
            ),
            (12, 9, "topic `setpoint` is taken in by a [[bridge.in]]"),
        ],
    );
    assert_errors(
        "[[bridge.in]]\nfrom = \"ground/+/setpoint\"\ntopic = \"setpoint\"\nschema = \"\"\n[[bridge.in]]\nfrom = \"a\"\ntopic = \"setpoint\"\nschema = \"u8\"\nformat = \"xml\"\nqos = -1\n[[bridge.in]]\ntopic = \"nope\"\n",
        &[
            (2, 8, "has a wildcard (+ or #)"),
            (4, 10, "`schema` is empty"),
            (9, 10, "format = \"xml\" is not an inbound format"),
            (10, 7, "qos = -1 is not an MQTT QoS"),
            (
                11,
                1,
                "this [[bridge.in]] has no `from` (from = \"ground/board-1/setpoint\"), no `schema`",
            ),
            (12, 9, "no [[topic]] named `nope`"),
        ],
    );
}

/// The bridge hands a broker message to one route only, so a second
/// [[bridge.in]] from the same broker topic would never receive anything:
/// refused at the second `from`, naming the first one's line.
#[test]
fn two_inbound_routes_from_one_broker_topic_are_refused() {
    assert_errors(
        "[[bridge.in]]\nfrom = \"ground/b1/sp\"\ntopic = \"setpoint\"\nschema = \"u8\"\n[[bridge.in]]\nfrom = \"ground/b1/sp\"\ntopic = \"power\"\nschema = \"u8\"\n",
        &[(
            6,
            8,
            "`ground/b1/sp` is already taken in at line 8 (into topic `setpoint`): a broker topic feeds one local topic; remove this [[bridge.in]]",
        )],
    );
    // Different broker topics into different local topics stay fine.
    let c = parse(
        "[[bridge.in]]\nfrom = \"ground/b1/sp\"\ntopic = \"setpoint\"\nschema = \"u8\"\n[[bridge.in]]\nfrom = \"ground/b1/pw\"\ntopic = \"power\"\nschema = \"u8\"\n",
    )
    .unwrap();
    assert_eq!(c.bridge.unwrap().inbound.len(), 2);
}

#[test]
fn mqtt_table_mistakes() {
    assert_errors(
        "[bridge.mqtt]\nbroker = \"\"\nkeepalive_s = 0\nclient_cert = \"c.pem\"\npassword = \"x\"\n",
        &[
            (2, 10, "`broker` is empty"),
            (3, 15, "keepalive_s = 0 must be from 1 to 65535"),
            (4, 15, "`client_cert` needs `client_key`"),
            (5, 1, "unknown field `password` in [bridge.mqtt]"),
        ],
    );
    let e = Config::parse(&format!("bridge = 5\n{TOPICS}"), "t.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:1:10: `bridge` must be a table ([bridge]), found integer"
    );
    assert_errors(
        "[bridge]\nout = 1\nmqtt = \"x\"\n[bridge.in]\nfrom = \"x\"\n",
        &[
            (2, 7, "`out` must be an array of tables ([[bridge.out]])"),
            (3, 8, "`mqtt` must be a table ([bridge.mqtt])"),
            (4, 1, "`in` is a single table; write [[bridge.in]]"),
        ],
    );
}

#[test]
fn levels_refuse_wildcards_and_separators() {
    assert_eq!(level_problem("board-17.a_b"), None);
    for bad in ["", "a+b", "a#", "$SYS", "a/b", "a b", &"x".repeat(65)] {
        assert!(level_problem(bad).is_some(), "{bad:?} accepted");
    }
}

/// A prefix over 1024 bytes (300 levels of `abc`) passed the file's check
/// (`doctor --config` said OK) and was then refused by `shmbus bridge`
/// with no position. The check refuses it at its `line:col`, cut short;
/// the longest one the bridge takes still passes.
#[test]
fn a_prefix_the_bridge_refuses_is_refused_by_the_check() {
    let long = vec!["abc"; 300].join("/");
    assert_errors(
        &format!("[bridge]\nprefix = \"{long}\"\n"),
        &[(
            2,
            10,
            "prefix = \"abc/abc/abc/abc/abc/abc/abc/abc/abc/abc/... (1199 bytes)\" is longer than 1024 bytes: shorten it",
        )],
    );
    let longest = format!("{}/{}", vec!["a".repeat(64); 15].join("/"), "b".repeat(49));
    assert_eq!(longest.len(), crate::bridge::MAX_PREFIX);
    let c = parse(&format!("[bridge]\nprefix = \"{longest}\"\n")).unwrap();
    assert_eq!(c.bridge.unwrap().prefix, longest);
    let e = parse(&format!("[bridge]\nprefix = \"{longest}b\"\n")).unwrap_err();
    assert!(
        e[0].contains("(1025 bytes)\" is longer than 1024 bytes"),
        "{e:?}"
    );
}
