//! Writes the seed corpus in `fuzz/corpus/<target>/` from real data: real
//! segments made by a real publisher (dumped byte for byte), the schema
//! bytes of real frame types, and real postcard frames.
//!
//! Run from `fuzz/`: `cargo run --example make_corpus`.

use std::path::Path;

use postcard::experimental::max_size::MaxSize;
use postcard_schema::Schema;
use serde::Serialize;
use shmbus_core::layout::{HeaderInfo, copy_from_words};
use shmbus_core::sys::Attachment;
use shmbus_core::{LockPolicy, Topic};
use shmbus_fuzz::{Check, Fix, Gnss, Imu, Power};
use shmbus_pub::Publisher;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// Publish `frames` on a fresh topic and return the whole segment's bytes.
fn segment_of<T: Serialize + serde::de::DeserializeOwned + MaxSize + Schema>(
    name: &str,
    slots: u32,
    frames: &[T],
) -> (Vec<u8>, usize) {
    let key = 0x7c00_0000 | (std::process::id() as i32 & 0xffff) << 4 | slots as i32;
    let topic = Topic::new(name).key(key).slots(slots).lock(LockPolicy::Off);
    let mut p = Publisher::<T>::open(&topic).expect("open");
    for f in frames {
        p.publish(f).expect("publish");
    }
    let id = p.raw().shmid();
    let att = Attachment::read_only(id).unwrap();
    let info = HeaderInfo::read(&att, key).unwrap();
    let mut out = Vec::new();
    copy_from_words(att.words(0, att.len() / 4).unwrap(), att.len(), &mut out);
    p.remove().unwrap();
    (out, info.geometry.slot_offset(0))
}

fn seeds<T: Serialize + serde::de::DeserializeOwned + MaxSize + Schema>(name: &str, slots: u32, frames: &[T]) {
    let (seg, slot0) = segment_of(name, slots, frames);
    write(
        "segment",
        &format!("{name}-{slots}"),
        &[[0u8].as_slice(), &seg].concat(),
    );
    write(
        "segment",
        &format!("{name}-{slots}-fix"),
        &[[1u8].as_slice(), &seg].concat(),
    );
    // The same segment with slot 0 left mid-write (odd sequence), as a
    // publisher killed during a publish leaves it.
    let mut torn = seg.clone();
    torn[slot0] |= 1;
    write(
        "segment",
        &format!("{name}-{slots}-torn"),
        &[[0u8].as_slice(), &torn].concat(),
    );
    let schema = shmbus_core::schema::schema_bytes::<T>().unwrap();
    write("schema", name, &schema);
    // The same schema as declaration text (the target parses text too).
    let t = shmbus_core::schema::decode_schema(&schema).unwrap();
    write(
        "schema",
        &format!("{name}.txt"),
        shmbus_codec::text::render(&t).as_bytes(),
    );
    for (i, f) in frames.iter().enumerate() {
        let frame = postcard::to_allocvec(f).unwrap();
        write(
            "frame",
            &format!("{name}-{i}"),
            &[[0x3fu8].as_slice(), &frame].concat(),
        );
        let n = (schema.len() as u16).to_le_bytes();
        write(
            "dyn_frame",
            &format!("{name}-{i}"),
            &[n.as_slice(), &schema, &frame].concat(),
        );
    }
}

fn main() {
    let imu = |t| Imu {
        t_us: t,
        acc: [0.1, -0.2, 9.81],
        gyro: [0.0, 0.01, -0.02],
        frame: heapless::String::from("imu0"),
    };
    seeds("imu", 4, &[imu(1), imu(2), imu(3)]);
    seeds(
        "gnss",
        2,
        &[
            Gnss {
                fix: Fix::None,
                lat: 0.0,
                lon: 0.0,
                alt: None,
                receiver: None,
            },
            Gnss {
                fix: Fix::ThreeD { sats: 9, hdop: 0.8 },
                lat: 48.85,
                lon: 2.35,
                alt: Some(35.0),
                receiver: Some(heapless::String::from("ublox-m8")),
            },
            Gnss {
                fix: Fix::TwoD(4),
                lat: -33.9,
                lon: 151.2,
                alt: None,
                receiver: Some(heapless::String::from("")),
            },
        ],
    );
    seeds(
        "power",
        1,
        &[Power {
            cells_mv: heapless::Vec::from_slice(&[3700, 3710, 3695, 4200]).unwrap(),
            temps_dc: [250, -40, 310, 0],
            current_ma: -1500,
            flags: 0x8000_0001,
            label: heapless::String::from("pack-a"),
        }],
    );
    let check = |seq: u64| {
        let mut words = [0; 7];
        for (i, w) in words.iter_mut().enumerate() {
            *w = seq.wrapping_mul(i as u64 + 1);
        }
        Check {
            seq,
            words,
            tag: heapless::String::from("00000001"),
        }
    };
    seeds("check", 16, &[check(1), check(u64::MAX)]);
}
