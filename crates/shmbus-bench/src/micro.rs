//! In-process costs: publish, poll, read and encode, next to the bare
//! operations they are made of. Each sample is the mean of a batch of
//! operations timed together (one op is too short to time alone); the
//! batches of all items are interleaved in rounds like the handoffs.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use postcard::experimental::max_size::MaxSize;
use postcard_schema::Schema;
use serde::Serialize;
use shmbus_core::schema::schema_bytes;
use shmbus_core::sys::monotonic_ns;
use shmbus_pub::{Publisher, RawPublisher};
use shmbus_sub::{Next, RawSubscriber, Subscriber};

use crate::frames::{Frame64, Frame64Bytes, Imu, SeqFrame, typical};
use crate::handoff::topic;
use crate::os::Scratch;
use crate::stats::per_op;
use crate::{Keys, floors};

/// Operations per batch.
const OPS: u32 = 1000;

/// Subscribers that read each new frame in the `next()`/`latest()` rows.
const READERS: usize = 64;

/// One in-process measurement: produces one batch-mean sample per call.
pub struct Item {
    /// Stable key.
    pub key: &'static str,
    /// Human label.
    pub label: &'static str,
    /// Take one sample (ns per operation).
    pub run: Box<dyn FnMut() -> f64>,
}

fn item(key: &'static str, label: &'static str, run: impl FnMut() -> f64 + 'static) -> Item {
    Item {
        key,
        label,
        run: Box::new(run),
    }
}

/// 256 bytes of postcard.
type Frame256 = [[u8; 32]; 8];
/// 1 KiB of postcard.
type Frame1k = [[u8; 32]; 32];

fn raw_publisher<T: Schema + MaxSize + serde::de::DeserializeOwned>(
    keys: &mut Keys,
    name: &str,
    notify: bool,
) -> Result<RawPublisher, String> {
    let schema = schema_bytes::<T>().map_err(|e| e.to_string())?;
    let key = keys.take()?;
    crate::creating(|| RawPublisher::open(&topic(key, name, notify), &schema, T::POSTCARD_MAX_SIZE))
        .map_err(|e| e.to_string())
}

fn publish_item(
    keys: &mut Keys,
    key: &'static str,
    label: &'static str,
    size: usize,
    notify: bool,
) -> Result<Item, String> {
    let name = format!("bench/{key}");
    let mut p = match size {
        64 => raw_publisher::<Frame64>(keys, &name, notify)?,
        256 => raw_publisher::<Frame256>(keys, &name, notify)?,
        _ => raw_publisher::<Frame1k>(keys, &name, notify)?,
    };
    let frame = vec![0x5a_u8; size];
    Ok(item(key, label, move || {
        per_op(OPS, |i| {
            let _ = black_box(p.publish_bytes_at(black_box(&frame), u64::from(i), 7));
        })
    }))
}

/// postcard's own encoder, as [`encode_item`] calls it.
fn pc_encode<T: Serialize>(v: &T, buf: &mut [u8]) -> postcard::Result<usize> {
    postcard::to_slice(v, buf).map(|s| s.len())
}

/// shmbus's encoder (the typed publisher's), as [`encode_item`] calls it.
fn sb_encode<T: Serialize>(v: &T, buf: &mut [u8]) -> postcard::Result<usize> {
    shmbus_core::encode::to_slice(v, buf).map(|s| s.len())
}

/// `encode` (postcard's own, or shmbus's: what the typed publisher uses)
/// of `v` into a stack buffer; it returns the encoded length.
fn encode_item<T: 'static>(
    key: &'static str,
    label: &'static str,
    v: T,
    encode: impl Fn(&T, &mut [u8]) -> postcard::Result<usize> + 'static,
) -> Item {
    let mut buf = [0u8; 256];
    item(key, label, move || {
        per_op(OPS, |_| {
            let _ = black_box(encode(black_box(&v), &mut buf));
        })
    })
}

/// `decode` (postcard's own, or shmbus's: what the typed subscriber uses)
/// of `v`'s postcard bytes, from a slice.
fn decode_item<T: Serialize + 'static>(
    key: &'static str,
    label: &'static str,
    v: &T,
    decode: impl Fn(&[u8]) -> postcard::Result<T> + 'static,
) -> Result<Item, String> {
    let bytes = postcard::to_allocvec(v).map_err(|e| e.to_string())?;
    Ok(item(key, label, move || {
        per_op(OPS, |_| {
            let _ = black_box(decode(black_box(&bytes)));
        })
    }))
}

/// `latest()` of an unchanged frame `v` on a topic of its own (the
/// publisher stays open for the run).
fn latest_item<T>(
    keys: &mut Keys,
    name: &str,
    key: &'static str,
    label: &'static str,
    v: T,
) -> Result<Item, String>
where
    T: Serialize + serde::de::DeserializeOwned + Schema + MaxSize + 'static,
{
    let t = topic(keys.take()?, name, false);
    let mut publisher = crate::creating(|| Publisher::<T>::open(&t)).map_err(|e| e.to_string())?;
    publisher.publish(&v).map_err(|e| e.to_string())?;
    let mut sub = Subscriber::<T>::attach(&t).map_err(|e| e.to_string())?;
    Ok(item(key, label, move || {
        let _keep = &publisher;
        per_op(OPS, |_| {
            let _ = black_box(sub.latest());
        })
    }))
}

/// Build every in-process item. The topics get keys from `keys` (removed
/// at the end of the run by the caller's guard).
pub fn items(keys: &mut Keys, clock_ns: f64) -> Result<Vec<Item>, String> {
    let scratch = std::rc::Rc::new(Scratch::create(floors::SCRATCH_SIZE)?);
    let mut v = Vec::new();

    // Poll when nothing is new, against a bare acquire load.
    let s = scratch.clone();
    v.push(item(
        "bare_acquire_load",
        "floor: bare acquire load",
        move || {
            let w: &AtomicU32 = &s.words(0, 1)[0];
            per_op(OPS * 10, |_| {
                black_box(black_box(w).load(Ordering::Acquire));
            })
        },
    ));
    let key = keys.take()?;
    let mut poll_pub =
        crate::creating(|| Publisher::<Frame64>::open(&topic(key, "bench/poll-idle", false)))
            .map_err(|e| e.to_string())?;
    poll_pub
        .publish(&Frame64::new(1))
        .map_err(|e| e.to_string())?;
    let mut poll_sub =
        Subscriber::<Frame64>::attach(&topic(poll_pub.raw().key(), "bench/poll-idle", false))
            .map_err(|e| e.to_string())?;
    let _ = poll_sub.latest();
    v.push(item(
        "poll_nothing_new",
        "shmbus has_new(), nothing new",
        move || {
            let _keep = &poll_pub;
            per_op(OPS * 10, |_| {
                black_box(black_box(&poll_sub).has_new());
            })
        },
    ));

    // Publish: bare seqlock, then shmbus pre-encoded frames.
    let s = scratch.clone();
    v.push(item(
        "seqlock_publish_64",
        "floor: bare seqlock publish 64 B",
        move || {
            let slot = s.words(floors::PING_SLOT, 17);
            per_op(OPS, |i| {
                floors::seqlock_write(black_box(slot), u64::from(i))
            })
        },
    ));
    // The same with a real frame copied in: the floor of any layout.
    let s = scratch.clone();
    let frame64 = [0x5a_u8; 64];
    v.push(item(
        "seqlock_copy_publish_64",
        "floor: bare seqlock publish, 64 B frame copied",
        move || {
            let slot = s.words(floors::PING_SLOT, 17);
            per_op(OPS, |_| {
                floors::seqlock_copy_write(black_box(slot), black_box(&frame64))
            })
        },
    ));
    // The same publish's stores alone, in shmbus's layout.
    let s = scratch.clone();
    let live: Box<[AtomicU64; 3]> = Box::default();
    v.push(item(
        "layout_publish_64",
        "floor: the layout's stores for a 64 B publish",
        move || {
            let w = s.words(2048, 25);
            let (slot, notify) = match (w[..24].try_into(), w.get(24)) {
                (Ok(slot), Some(n)) => (slot, n),
                _ => unreachable!("25 words were asked for"),
            };
            per_op(OPS, |i| {
                floors::layout_publish(
                    black_box(slot),
                    black_box(&live),
                    notify,
                    black_box(&frame64),
                    u64::from(i),
                )
            })
        },
    ));
    // The same publish in a layout v2 candidate (no header stamps, one
    // live word): what a new layout version would save.
    let s = scratch.clone();
    let generation: Box<AtomicU64> = Box::default();
    v.push(item(
        "layout_v2_publish_64",
        "floor: a layout v2 candidate's stores, 64 B",
        move || {
            let slot = match s.words(2048, 24).try_into() {
                Ok(slot) => slot,
                Err(_) => unreachable!("24 words were asked for"),
            };
            per_op(OPS, |i| {
                floors::layout_v2_publish(
                    black_box(slot),
                    black_box(&generation),
                    black_box(&frame64),
                    u64::from(i),
                )
            })
        },
    ));
    for (key, label, size, notify) in [
        (
            "publish_64",
            "shmbus publish 64 B (pre-encoded, notify off)",
            64,
            false,
        ),
        (
            "publish_256",
            "shmbus publish 256 B (pre-encoded, notify off)",
            256,
            false,
        ),
        (
            "publish_1k",
            "shmbus publish 1 KiB (pre-encoded, notify off)",
            1024,
            false,
        ),
        (
            "publish_64_notify",
            "shmbus publish 64 B (notify on, no waiter)",
            64,
            true,
        ),
        (
            "publish_256_notify",
            "shmbus publish 256 B (notify on, no waiter)",
            256,
            true,
        ),
        (
            "publish_1k_notify",
            "shmbus publish 1 KiB (notify on, no waiter)",
            1024,
            true,
        ),
    ] {
        v.push(publish_item(keys, key, label, size, notify)?);
    }
    // The same 64 B frame through the fixed-length entry (`[u8; 64]`).
    let mut fixed = raw_publisher::<Frame64>(keys, "bench/publish_64_array", false)?;
    let array64 = [0x5a_u8; 64];
    v.push(item(
        "publish_64_array",
        "shmbus publish_array 64 B (fixed length, notify off)",
        move || {
            per_op(OPS, |i| {
                let _ = black_box(fixed.publish_array_at(black_box(&array64), u64::from(i), 7));
            })
        },
    ));
    // The frame copy inside every publish, alone (core's `store_bytes`).
    let s = scratch.clone();
    let bytes64 = [0x5a_u8; 64];
    v.push(item(
        "store_bytes_64",
        "core store_bytes 64 B (the copy in publish)",
        move || {
            let words = s.words(1024, 16);
            per_op(OPS, |_| {
                shmbus_core::codec::store_bytes(black_box(words), black_box(&bytes64))
            })
        },
    ));
    let mut clocked = raw_publisher::<Frame64>(keys, "bench/publish-clocked", false)?;
    let frame = [0x5a_u8; 64];
    v.push(item(
        "clock_read",
        "floor: one clock_gettime(CLOCK_MONOTONIC)",
        move || {
            per_op(OPS, |_| {
                black_box(monotonic_ns());
            })
        },
    ));
    v.push(item(
        "publish_64_clocks",
        "shmbus publish_bytes() 64 B, clock read incl.",
        move || {
            per_op(OPS, |_| {
                let _ = black_box(clocked.publish_bytes(black_box(&frame)));
            })
        },
    ));
    let (imu, gnss, power) = typical();
    let key = keys.take()?;
    let mut typed64 =
        crate::creating(|| Publisher::<Frame64>::open(&topic(key, "bench/publish-t64", false)))
            .map_err(|e| e.to_string())?;
    let f64v = Frame64::new(7);
    v.push(item(
        "publish_64_typed",
        "shmbus publish Frame64 (encode + word copy)",
        move || {
            per_op(OPS, |i| {
                let _ = black_box(typed64.publish_at(black_box(&f64v), u64::from(i), 7));
            })
        },
    ));
    let key = keys.take()?;
    let mut typed =
        crate::creating(|| Publisher::<Imu>::open(&topic(key, "bench/publish-imu", false)))
            .map_err(|e| e.to_string())?;
    v.push(item(
        "publish_imu_typed",
        "shmbus publish Imu (encode + word copy)",
        move || {
            per_op(OPS, |i| {
                let _ = black_box(typed.publish_at(black_box(&imu), u64::from(i), 7));
            })
        },
    ));

    // Encoding cost of typical messages (postcard into a stack buffer).
    // Encoding and decoding cost: postcard's own, then what the typed
    // publisher and subscriber use (`shmbus_core::encode`/`decode`).
    v.push(encode_item(
        "encode_imu",
        "postcard encode Imu (41 B)",
        imu,
        pc_encode,
    ));
    v.push(encode_item(
        "encode_gnss",
        "postcard encode Gnss",
        gnss,
        pc_encode,
    ));
    v.push(encode_item(
        "encode_power",
        "postcard encode Power",
        power,
        pc_encode,
    ));
    v.push(encode_item(
        "encode_imu_shmbus",
        "shmbus encode Imu (41 B)",
        imu,
        sb_encode,
    ));
    let f64 = Frame64::new(7);
    v.push(encode_item(
        "encode_64",
        "postcard encode Frame64",
        f64,
        pc_encode,
    ));
    v.push(encode_item(
        "encode_64_shmbus",
        "shmbus encode Frame64",
        f64,
        sb_encode,
    ));
    v.push(encode_item(
        "encode_64_bytes",
        "shmbus encode Frame64Bytes",
        Frame64Bytes::with_seq(7),
        sb_encode,
    ));
    v.push(decode_item(
        "decode_64",
        "postcard decode Frame64 from a slice",
        &f64,
        |b| postcard::from_bytes(b),
    )?);
    v.push(decode_item(
        "decode_64_shmbus",
        "shmbus decode Frame64 from a slice",
        &f64,
        |b| shmbus_core::decode::from_bytes(b),
    )?);
    let f64b = Frame64Bytes::with_seq(7);
    v.push(decode_item(
        "decode_64_bytes",
        "shmbus decode Frame64Bytes from a slice",
        &f64b,
        |b| shmbus_core::decode::from_bytes(b),
    )?);
    v.push(decode_item(
        "decode_imu",
        "postcard decode Imu from a slice",
        &imu,
        |b| postcard::from_bytes(b),
    )?);
    v.push(decode_item(
        "decode_imu_shmbus",
        "shmbus decode Imu from a slice",
        &imu,
        |b| shmbus_core::decode::from_bytes(b),
    )?);

    // Read cost per new frame: bare seqlock read, then shmbus next/latest.
    let s = scratch.clone();
    v.push(item(
        "seqlock_read_64",
        "floor: bare seqlock read 64 B",
        move || {
            let slot = s.words(floors::PONG_SLOT, 17);
            floors::seqlock_write(slot, 1);
            per_op(OPS, |_| {
                let mut last = 1;
                black_box(floors::seqlock_read_new(black_box(slot), &mut last));
            })
        },
    ));
    // A batch is one ring of next() calls between two clock reads; the
    // cost of a clock read (measured at start-up) is taken off each batch,
    // so next() is timed like the other rows, whose batches of 1000 make the
    // clock's share negligible.
    let t = topic(keys.take()?, "bench/read", false).slots(64);
    let mut read_pub =
        crate::creating(|| Publisher::<Frame64>::open(&t)).map_err(|e| e.to_string())?;
    let mut read_sub = Subscriber::<Frame64>::attach(&t).map_err(|e| e.to_string())?;
    let slots = t.slots as u64;
    v.push(item(
        "read_next_64",
        "shmbus next() per new 64 B frame (copy + decode)",
        move || {
            let mut total = 0u64;
            let mut n = 0u64;
            while n < u64::from(OPS) {
                for g in 0..slots {
                    let _ = read_pub.publish_at(&Frame64::new(g), g, 7);
                }
                let t0 = monotonic_ns();
                for _ in 0..slots {
                    if let Ok(Next::Frame(s)) = read_sub.next() {
                        black_box(s);
                    }
                }
                total += (monotonic_ns().saturating_sub(t0) as f64 - clock_ns).max(0.0) as u64;
                n += slots;
            }
            total as f64 / n as f64
        },
    ));
    // The same new frame read by `next()` and by `latest()`: one publish
    // (not timed), then READERS subscribers each read it, timed as one
    // batch. Every reader finds the frame new, in the same slot, in the
    // same cache state, so the two rows differ only in the call.
    for (key, label, in_order) in [
        (
            "read_next_new_64",
            "shmbus next() of a new 64 B frame (64 readers)",
            true,
        ),
        (
            "read_latest_new_64",
            "shmbus latest() of a new 64 B frame (64 readers)",
            false,
        ),
    ] {
        let t = topic(keys.take()?, "bench/read-new", false);
        let mut publisher =
            crate::creating(|| Publisher::<Frame64>::open(&t)).map_err(|e| e.to_string())?;
        let mut readers = (0..READERS)
            .map(|_| Subscriber::<Frame64>::attach(&t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let mut g = 0u64;
        v.push(item(key, label, move || {
            let mut total = 0u64;
            let mut n = 0u64;
            while n < u64::from(OPS) {
                g += 1;
                let _ = publisher.publish_at(&Frame64::new(g), g, 7);
                let t0 = monotonic_ns();
                for r in readers.iter_mut() {
                    if in_order {
                        if let Ok(Next::Frame(s)) = r.next() {
                            black_box(s);
                        }
                    } else if let Ok(Some(s)) = r.latest() {
                        black_box(s);
                    }
                }
                total += (monotonic_ns().saturating_sub(t0) as f64 - clock_ns).max(0.0) as u64;
                n += READERS as u64;
            }
            total as f64 / n as f64
        }));
    }
    v.push(latest_item(
        keys,
        "bench/read-latest",
        "read_latest_64",
        "shmbus latest() 64 B frame (copy + decode)",
        Frame64::new(1),
    )?);
    v.push(latest_item(
        keys,
        "bench/read-latest-bytes",
        "read_latest_64_bytes",
        "shmbus latest() Frame64Bytes (copy + decode)",
        Frame64Bytes::with_seq(1),
    )?);
    let mut raw_pub = raw_publisher::<Frame64>(keys, "bench/read-raw", false)?;
    raw_pub
        .publish_bytes(&[0x5a; 64])
        .map_err(|e| e.to_string())?;
    let mut raw_sub = RawSubscriber::attach(&topic(raw_pub.key(), "bench/read-raw", false))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(64);
    v.push(item(
        "read_latest_bytes_64",
        "shmbus latest_bytes() 64 B (copy, no decode)",
        move || {
            let _keep = &raw_pub;
            per_op(OPS, |_| {
                let _ = black_box(raw_sub.latest_bytes(&mut out));
            })
        },
    ));
    // One whole hop in one process, shmbus's and the layout floor's: the
    // same publish, poll and read as a handoff without the second CPU, so
    // the cache lines stay put and the cost is instructions alone.
    let s = scratch.clone();
    v.push(item(
        "layout_hop_64",
        "floor: a hop in shmbus's layout, one process",
        move || {
            floors::reset(&s);
            per_op(OPS, |i| {
                black_box(floors::layout_hop(&s, u64::from(i) + 1));
            })
        },
    ));
    let mut hop_pub = raw_publisher::<Frame64>(keys, "bench/hop", false)?;
    let mut hop_sub = RawSubscriber::attach(&topic(hop_pub.key(), "bench/hop", false))
        .map_err(|e| e.to_string())?;
    let mut hop_out = Vec::with_capacity(64);
    let hop_frame = [0x5a_u8; 64];
    v.push(item(
        "raw_hop_64",
        "shmbus raw hop, one process",
        move || {
            per_op(OPS, |i| {
                let t = u64::from(i);
                let _ = black_box(hop_pub.publish_bytes_at(black_box(&hop_frame), t, t));
                black_box(hop_sub.has_new());
                let _ = black_box(hop_sub.latest_bytes(&mut hop_out));
            })
        },
    ));
    // The same hop with fixed-length frames on both sides: no length to
    // loop over in the publish or in the read, no heap buffer.
    let mut fix_pub = raw_publisher::<Frame64>(keys, "bench/hop-fixed", false)?;
    let mut fix_sub = RawSubscriber::attach(&topic(fix_pub.key(), "bench/hop-fixed", false))
        .map_err(|e| e.to_string())?;
    let mut fix_out = [0u8; 64];
    v.push(item(
        "raw_hop_64_fixed",
        "shmbus raw hop, fixed length, one process",
        move || {
            per_op(OPS, |i| {
                let t = u64::from(i);
                let _ = black_box(fix_pub.publish_array_at(black_box(&hop_frame), t, t));
                black_box(fix_sub.has_new());
                let _ = black_box(fix_sub.latest_into(&mut fix_out));
            })
        },
    ));
    v.push(latest_item(
        keys,
        "bench/read-imu",
        "read_latest_imu",
        "shmbus latest() Imu (copy + decode)",
        imu,
    )?);
    Ok(v)
}
