//! `shmbus echo --json`, the recorder's JSON channel, `shmbus cat --json`
//! and the codec itself give the same JSON for the same frames, over every
//! kind of schema node a message type can have (docs/JSON.md).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use postcard::experimental::max_size::MaxSize;
use postcard_schema::Schema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shmbus_codec::Codec;
use shmbus_pub::Publisher;
use shmbus_testkit::{unique_topic, watchdog};

#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, Clone, PartialEq)]
enum Inner {
    Off,
    Level(i8),
}

#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, Clone, PartialEq)]
enum Mode {
    Idle,
    Fix(u8),
    Pair(i16, bool),
    Pos { lat: f64, lon: f64 },
    Nested(Option<Inner>),
}

#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, Clone, PartialEq)]
struct Unit;

#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, Clone, PartialEq)]
struct Meters(f32);

#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, Clone, PartialEq)]
struct Every {
    b: bool,
    u8_: u8,
    i8_: i8,
    u16_: u16,
    i32_: i32,
    u64_: u64,
    i64_: i64,
    u128_: u128,
    i128_: i128,
    f: f32,
    d: f64,
    c: char,
    name: heapless::String<12>,
    acc: [f32; 3],
    list: heapless::Vec<u16, 3>,
    opt: Option<u32>,
    opt_opt: Option<Option<u8>>,
    unit: (),
    unit_struct: Unit,
    m: Meters,
    pair: (u8, heapless::String<4>),
    modes: [Mode; 2],
}

fn frames() -> Vec<Every> {
    let base = Every {
        b: true,
        u8_: 255,
        i8_: -128,
        u16_: 65535,
        i32_: i32::MIN,
        u64_: u64::MAX,
        i64_: i64::MIN,
        u128_: u128::MAX,
        i128_: i128::MIN,
        f: f32::NAN,
        d: f64::INFINITY,
        c: 'é',
        name: "full\n\"12 b\"".into(),
        acc: [f32::NEG_INFINITY, -0.0, 9.81],
        list: heapless::Vec::from_slice(&[1, 2, 3]).unwrap(),
        opt: Some(7),
        opt_opt: Some(None),
        unit: (),
        unit_struct: Unit,
        m: Meters(1e-45),
        pair: (1, "four".into()),
        modes: [
            Mode::Pos {
                lat: 52.5,
                lon: -1e300,
            },
            Mode::Nested(Some(Inner::Level(-3))),
        ],
    };
    let empty = Every {
        b: false,
        u64_: (1 << 53) + 1,
        i64_: -(1 << 53) - 1,
        f: 0.1,
        d: f64::NAN,
        c: '\u{10ffff}',
        name: "".into(),
        list: heapless::Vec::new(),
        opt: None,
        opt_opt: None,
        modes: [Mode::Idle, Mode::Nested(None)],
        ..base.clone()
    };
    let other = Every {
        opt_opt: Some(Some(0)),
        modes: [Mode::Fix(9), Mode::Pair(-300, false)],
        ..empty.clone()
    };
    vec![base, empty, other]
}

fn shmbus(args: &[&str]) -> std::process::Output {
    shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run shmbus")
}

fn lines(o: &std::process::Output) -> Vec<Value> {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn echo_record_cat_and_the_codec_agree_on_every_schema_type() {
    watchdog("json-agreement", Duration::from_secs(180));
    let (topic, _g) = unique_topic("json-agreement");
    let topic = topic.slots(8);
    let frames = frames();
    let mut p = Publisher::<Every>::open(&topic).unwrap();
    for f in &frames {
        p.publish(f).unwrap();
    }
    let key = format!("0x{:08x}", topic.key as u32);

    // The codec, from the schema the segment carries.
    let codec = Codec::of::<Every>().unwrap();
    let want: Vec<String> = frames
        .iter()
        .map(|f| codec.to_json(&postcard::to_allocvec(f).unwrap()).unwrap())
        .collect();
    assert!(want[0].contains(r#""f":"NaN""#) && want[0].contains(r#""d":"inf""#));
    assert!(want[0].contains(r#""u64_":18446744073709551615,"i64_":-9223372036854775808"#));
    assert!(want[0].contains(r#""u128_":"340282366920938463463374607431768211455""#));
    assert!(want[0].contains(r#""acc":["-inf",-0.0,9.81]"#));
    assert!(want[1].contains(r#""u64_":9007199254740993,"i64_":-9007199254740993"#));
    assert!(want[1].contains(r#""list":[],"opt":null,"opt_opt":null"#));
    assert!(want[0].contains(r#""opt_opt":[null]"#));
    assert!(want[2].contains(r#""opt_opt":[0]"#));

    // shmbus echo.
    let n = frames.len().to_string();
    let echo = lines(&shmbus(&[
        "echo",
        &key,
        "--json",
        "--all",
        "--from-oldest",
        "--count",
        &n,
    ]));
    assert_eq!(echo.len(), frames.len());
    for (e, w) in echo.iter().zip(&want) {
        assert_eq!(e["value"].to_string(), *w, "echo and the codec differ");
    }

    // shmbus record: the JSON channel's messages, byte for byte.
    let tmp = shmbus_testkit::TempDir::new("json");
    let file = tmp.join("out.mcap");
    let path = file.to_str().unwrap();
    let o = shmbus(&[
        "record",
        "--key",
        &key,
        "--backlog",
        "--duration",
        "8",
        "-o",
        path,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&file).unwrap();
    let mut view = Vec::new();
    for m in mcap::MessageStream::new(&bytes).unwrap() {
        let m = m.unwrap();
        if m.channel.metadata.get("shmbus.role").map(String::as_str) == Some("view") {
            view.push(String::from_utf8(m.data.to_vec()).unwrap());
        }
    }
    assert_eq!(
        view, want,
        "the recorder's JSON channel and the codec differ"
    );

    // shmbus cat --json decodes the lossless channel.
    let cat = lines(&shmbus(&["cat", path, "--json"]));
    let values: Vec<String> = cat.iter().map(|l| l["value"].to_string()).collect();
    assert_eq!(values, want, "cat and the codec differ");

    // And each JSON goes back to the very frame.
    let by_name: BTreeMap<usize, Vec<u8>> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (i, postcard::to_allocvec(f).unwrap()))
        .collect();
    for (i, w) in want.iter().enumerate() {
        let v: Value = serde_json::from_str(w).unwrap();
        let again = codec.encode(&v).unwrap();
        let typed: Every = postcard::from_bytes(&again).unwrap();
        if i == 0 {
            assert!(typed.f.is_nan());
        } else {
            assert_eq!(again, by_name[&i]);
        }
    }
}
