//! What the typeless codec costs, against the typed path in the same run.
//!
//! How to run:
//! ```text
//! cargo run --release -p shmbus-codec --example speed
//! ```
//! For each message type: frame to JSON text with the codec
//! (`Codec::write_json`) against the typed baseline (postcard `from_bytes`
//! into the Rust type, then `serde_json::to_writer`), the value tree
//! (`Codec::decode`), and JSON back to a frame (`Codec::encode` of a parsed
//! value against `serde_json::from_slice` into the type plus postcard
//! `to_slice`). Then the one-off cost of the schema with capacities
//! (`schema_bytes`, which probes the type's `Deserialize`) against
//! postcard-schema's plain schema. Medians of 5 runs of about 0.2 s each.

use std::hint::black_box;
use std::time::{Duration, Instant};

use postcard_schema::Schema;
use postcard_schema::schema::owned::OwnedNamedType;
use serde::Serialize;
use serde::de::DeserializeOwned;
use shmbus_codec::Codec;
use shmbus_sensors::msg;

/// Median ns per call of `f`.
fn ns(mut f: impl FnMut()) -> f64 {
    let mut n = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        if t.elapsed() > Duration::from_millis(40) {
            break;
        }
        n *= 2;
    }
    let n = n * 5;
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[2]
}

fn row<T: Serialize + DeserializeOwned + Schema>(name: &str, v: &T) {
    let codec = Codec::of::<T>().unwrap();
    let frame = postcard::to_allocvec(v).unwrap();
    let json = codec.to_json(&frame).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut out = Vec::with_capacity(4096);
    let mut buf = vec![0u8; frame.len() + 64];

    let typed_out = ns(|| {
        out.clear();
        let t: T = postcard::from_bytes(black_box(&frame)).unwrap();
        serde_json::to_writer(&mut out, &t).unwrap();
    });
    let codec_out = ns(|| {
        out.clear();
        codec.write_json(black_box(&frame), &mut out).unwrap();
    });
    let tree = ns(|| {
        black_box(codec.decode(black_box(&frame)).unwrap());
    });
    let typed_in = ns(|| {
        let t: T = serde_json::from_str(black_box(&json)).unwrap();
        black_box(postcard::to_slice(&t, &mut buf).unwrap());
    });
    let codec_in = ns(|| {
        let v: serde_json::Value = serde_json::from_str(black_box(&json)).unwrap();
        black_box(codec.encode(&v).unwrap());
    });
    let encode_only = ns(|| {
        black_box(codec.encode(black_box(&value)).unwrap());
    });
    println!(
        "{name:<10} {:>5} {:>6} | {:>9.0} {:>9.0} {:>6.2} {:>9.0} | {:>9.0} {:>9.0} {:>6.2} {:>9.0}",
        frame.len(),
        json.len(),
        typed_out,
        codec_out,
        codec_out / typed_out,
        tree,
        typed_in,
        codec_in,
        codec_in / typed_in,
        encode_only,
    );
}

fn schema_cost<T: DeserializeOwned + Schema>(name: &str) {
    let plain = ns(|| {
        black_box(postcard::to_allocvec(&OwnedNamedType::from(T::SCHEMA)).unwrap());
    });
    let probed = ns(|| {
        black_box(shmbus_core::schema::schema_bytes::<T>().unwrap());
    });
    println!(
        "{name:<10} {:>10.1} {:>10.1} {:>7.1}",
        plain / 1000.0,
        probed / 1000.0,
        probed / plain
    );
}

fn name(s: &str) -> msg::Name {
    msg::name(s)
}

fn main() {
    let imu = msg::Imu {
        t_ns: 123_456_789_012,
        seq: 42,
        acc: [0.01, -0.02, 9.81],
        gyro: [0.001, 0.002, -0.003],
        temp_c: 36.6,
    };
    let mut thermal = msg::Thermal {
        t_ns: 1,
        temps: heapless::Vec::new(),
    };
    for i in 0..msg::MAX_TEMPS {
        let _ = thermal.temps.push(msg::Temp {
            name: name(&format!("zone:thermal{i}")),
            milli_c: 40_000 + i as i32,
        });
    }
    let mut power = msg::Power {
        t_ns: 1,
        supplies: heapless::Vec::new(),
    };
    for s in ["BAT0", "AC", "usb", "ups"] {
        let _ = power.supplies.push(msg::Supply {
            name: name(s),
            kind: name("Battery"),
            status: name("Discharging"),
            online: Some(true),
            capacity_pct: Some(87),
            voltage_uv: Some(12_100_000),
            current_ua: Some(-1_500_000),
            power_uw: None,
        });
    }
    println!("ns per frame; ratio = codec / typed (same run)");
    println!(
        "{:<10} {:>5} {:>6} | {:>9} {:>9} {:>6} {:>9} | {:>9} {:>9} {:>6} {:>9}",
        "type",
        "bytes",
        "json",
        "typed>js",
        "codec>js",
        "ratio",
        "tree",
        "typed<js",
        "codec<js",
        "ratio",
        "encode"
    );
    row("Imu", &imu);
    row("Thermal", &thermal);
    row("Power", &power);
    println!();
    println!("schema bytes, us per call (once per open/attach)");
    println!(
        "{:<10} {:>10} {:>10} {:>7}",
        "type", "plain", "probed", "ratio"
    );
    schema_cost::<msg::Imu>("Imu");
    schema_cost::<msg::Thermal>("Thermal");
    schema_cost::<msg::Power>("Power");
}
