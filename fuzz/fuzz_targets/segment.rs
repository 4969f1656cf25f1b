//! Header validation and reading from arbitrary segment contents: the input
//! becomes a real System V segment of its size, which is attached
//! read-only and validated (`Segment::attach_shmid` -> `HeaderInfo::read`);
//! if it passes, its schema is decoded and its slots are read the way a
//! subscriber and the CLI do (seqlock reads, in-order and latest reads,
//! typed and typeless decoding with the codec). Input byte 0, bit 0: recompute the schema
//! fingerprint first so mutations reach past the checksum.
#![no_main]
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmbus_core::Segment;
use shmbus_core::layout::copy_from_words;
use shmbus_codec::Codec;
use shmbus_fuzz::{Check, FuzzSegment, Imu, fix_fingerprint};
use shmbus_sub::{RawNext, RawSubscriber};

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    if rest.len() > 1 << 20 {
        return;
    }
    let mut bytes = rest.to_vec();
    if head & 1 == 1 {
        fix_fingerprint(&mut bytes);
    }
    let seg = FuzzSegment::new(&bytes);
    let Ok(s) = Segment::attach_shmid(seg.shmid, seg.key) else {
        return;
    };
    let info = s.info().clone();
    assert!(info.geometry.segment_size <= s.size());
    let codec = Codec::from_schema_bytes(&info.schema).ok();
    let mut buf = Vec::new();
    let slots = u64::from(info.geometry.slot_count.min(8));
    for g in 0..slots {
        let _ = s.read_slot(g, Duration::from_millis(1), |m, w| {
            copy_from_words(w, m.len as usize, &mut buf);
        });
        // The typed decoder and the typeless codec, on the copy.
        let _ = shmbus_core::decode::from_bytes::<Imu>(&buf);
        let _ = shmbus_core::decode::from_bytes::<Check>(&buf);
        if let Some(c) = &codec {
            let _ = c.decode(&buf);
        }
    }
    let _ = s.is_removed();
    let mut sub = RawSubscriber::from_segment(s);
    sub.set_stuck_after(Duration::from_millis(1));
    let _ = sub.has_new();
    let _ = sub.age();
    let _ = sub.latest_bytes(&mut buf);
    sub.seek_oldest();
    for _ in 0..4 {
        match sub.next_bytes(&mut buf) {
            Ok(RawNext::Empty) | Err(_) => break,
            Ok(_) => {}
        }
    }
    drop(sub);
    drop(seg);
});
