//! Refusals: wrong type, garbage, short segments, unknown versions, all-zero and foreign segments, and a write through a read-only mapping.

use super::*;
use shmbus_core::segment::MAX_SANE_GENERATION;

#[derive(
    Serialize,
    Deserialize,
    Debug,
    postcard::experimental::max_size::MaxSize,
    postcard_schema::Schema,
)]
struct Other {
    x: f32,
}

#[test]
fn subscriber_of_the_wrong_type_gets_schema_mismatch() {
    let (topic, _guard) = unique_topic("wrong-type");
    let _p = Publisher::<Check>::open(&topic).unwrap();
    match Subscriber::<Other>::attach(&topic) {
        Err(OpenError::SchemaMismatch {
            expected,
            found,
            topic: name,
            ..
        }) => {
            assert_eq!(
                found,
                shmbus_core::schema::fingerprint_of::<Check>().unwrap()
            );
            assert_eq!(
                expected,
                shmbus_core::schema::fingerprint_of::<Other>().unwrap()
            );
            assert_eq!(name, topic.name);
        }
        other => panic!("expected SchemaMismatch, got {other:?}"),
    }
    // And a publisher of the wrong type on an existing topic: its message
    // says how to make room for a type that changed on purpose (the Rust
    // message only said to check the type; the C library added the fix).
    drop(_p);
    let e = Publisher::<Other>::open(&topic).err();
    assert!(matches!(e, Some(OpenError::SchemaMismatch { .. })), "{e:?}");
    let msg = e.unwrap().to_string();
    assert!(
        msg.contains("check the message type")
            && msg.contains(&format!(
                "remove the old topic first (`shmbus rm 0x{:08x}`",
                topic.key as u32
            )),
        "{msg}"
    );
}

#[test]
fn random_garbage_is_refused_without_panic() {
    let mut rng = Rng::seeded(1);
    for round in 0..200 {
        let key = unique_key("garbage");
        let _g = Guard(key);
        let size = 256 + 4 * rng.below(2048) as usize;
        let att = raw_segment(key, size);
        let words: Vec<u32> = (0..size / 4).map(|_| rng.next() as u32).collect();
        store_words(&att, &words);
        let topic = Topic::new("garbage").key(key);
        match Subscriber::<Check>::attach(&topic) {
            Err(OpenError::NotShmbus { magic, .. }) => {
                assert_eq!(magic, u64::from(words[0]) | u64::from(words[1]) << 32)
            }
            other => panic!("round {round}: expected NotShmbus, got {other:?}"),
        }
        // Magic and version right, everything else random.
        att.atomic_words(0, 3).unwrap()[0].store(MAGIC_U64 as u32, Ordering::Relaxed);
        att.atomic_words(0, 3).unwrap()[1].store((MAGIC_U64 >> 32) as u32, Ordering::Relaxed);
        att.atomic_words(0, 3).unwrap()[2].store(1, Ordering::Relaxed);
        match Subscriber::<Check>::attach(&topic) {
            Err(OpenError::Corrupt { .. } | OpenError::SizeMismatch { .. }) => {}
            other => panic!("round {round}: expected Corrupt or SizeMismatch, got {other:?}"),
        }
    }
}

/// Every header word of a valid segment replaced by boundary or random
/// values, one at a time: attach and read never panic, and an accepted
/// segment still reads frames or reports an error.
#[test]
fn mutated_headers_and_slots_never_panic() {
    watchdog(
        "mutated_headers_and_slots_never_panic",
        Duration::from_secs(300),
    );
    let (src, _g0) = unique_topic("mutate-src");
    let src = src.slots(2);
    let image = valid_image(&src);
    let mut rng = Rng::seeded(2);
    let (mut refused, mut accepted) = (0, 0);
    for i in 0..image.len() {
        for v in [
            0,
            1,
            2,
            0xffff_ffff,
            0x8000_0000,
            image[i] ^ 1,
            rng.next() as u32,
        ] {
            let key = unique_key("mutate");
            let _g = Guard(key);
            let att = raw_segment(key, image.len() * 4);
            let mut m = image.clone();
            m[i] = v;
            store_words(&att, &m);
            let topic = src.clone().key(key);
            match Subscriber::<Check>::attach(&topic) {
                Err(_) => refused += 1,
                Ok(mut sub) => {
                    accepted += 1;
                    let _ = sub.latest();
                    sub.raw().seek_oldest();
                    for _ in 0..4 {
                        let _ = sub.next();
                    }
                }
            }
        }
    }
    assert!(
        refused > 0 && accepted > 0,
        "refused {refused}, accepted {accepted}"
    );
    // A copy of the valid image at another key is a valid topic: the layout
    // holds offsets only, no pointers.
    let key = unique_key("mutate-copy");
    let _g = Guard(key);
    store_words(&raw_segment(key, image.len() * 4), &image);
    let mut sub = Subscriber::<Check>::attach(&src.clone().key(key)).unwrap();
    assert_eq!(sub.latest().unwrap().unwrap().value, Check::new(3));
    // A frame length beyond the capacity in an even (complete) slot is
    // reported, not trusted.
    let info = sub.raw().info().clone();
    let slot3 = info.geometry.slot_offset(3) / 4;
    let key = unique_key("mutate-len");
    let _g = Guard(key);
    let mut m = image.clone();
    m[slot3 + 1] = 0xffff;
    store_words(&raw_segment(key, image.len() * 4), &m);
    let mut sub = Subscriber::<Check>::attach(&src.clone().key(key)).unwrap();
    assert!(matches!(
        sub.latest(),
        Err(ReadError::Corrupt { generation: 3, .. })
    ));
}

#[test]
fn short_segment_is_size_mismatch() {
    let (src, _g0) = unique_topic("short-src");
    let image = valid_image(&src);
    let key = unique_key("short");
    let _g = Guard(key);
    let short = image.len() * 4 - 64;
    let att = raw_segment(key, short);
    store_words(&att, &image[..short / 4]);
    match Subscriber::<Check>::attach(&src.clone().key(key)) {
        Err(OpenError::SizeMismatch {
            expected, found, ..
        }) => {
            assert_eq!(expected as usize, image.len() * 4);
            assert_eq!(found as usize, short);
        }
        other => panic!("expected SizeMismatch, got {other:?}"),
    }
    // Smaller than the fixed header: Corrupt.
    let key = unique_key("tiny");
    let _g = Guard(key);
    store_words(&raw_segment(key, 128), &image[..32]);
    assert!(matches!(
        Subscriber::<Check>::attach(&src.clone().key(key)),
        Err(OpenError::Corrupt { .. })
    ));
}

/// A reader given a description no publisher can create (key 0, which is
/// `IPC_PRIVATE`; a name with characters no topic name has) is told so at
/// once, as the publisher is. It was `NotFound` ("start its publisher
/// first (or wait for it)"), and `wait_for_topic` waited out its whole
/// timeout for a topic that can never appear: with `Duration::MAX`, for
/// ever.
#[test]
fn a_reader_of_a_topic_no_publisher_can_create_is_told_at_once() {
    watchdog(
        "a_reader_of_a_topic_no_publisher_can_create_is_told_at_once",
        Duration::from_secs(120),
    );
    let cases = [
        (Topic::new("key-zero").key(0), "key 0 is IPC_PRIVATE"),
        (Topic::new("a b"), "contains ' '"),
        (Topic::new(""), "must be 1 to 63 bytes"),
        (Topic::new("imu-é"), "contains"),
    ];
    for (topic, says) in cases {
        // Nothing is created at these keys: the publisher refuses first.
        let p = Publisher::<Check>::open(&topic).err();
        assert!(
            matches!(p, Some(OpenError::InvalidTopic { .. })),
            "{topic:?}: {p:?}"
        );
        let readers = [
            ("attach", Subscriber::<Check>::attach(&topic).err()),
            (
                "wait_for_topic(0)",
                Subscriber::<Check>::wait_for_topic(&topic, Duration::ZERO).err(),
            ),
            (
                "Segment::attach",
                shmbus_core::Segment::attach(&topic).err(),
            ),
        ];
        // The wait for ever comes last: it hung the old code (the
        // watchdog ends it), after the calls above had failed the test.
        let waits = || {
            (
                "RawSubscriber::wait_for_topic(MAX)",
                shmbus_sub::RawSubscriber::wait_for_topic(&topic, Duration::MAX).err(),
            )
        };
        for (how, e) in readers.into_iter().chain(std::iter::once_with(waits)) {
            match e {
                Some(OpenError::InvalidTopic { reason }) => {
                    assert!(reason.contains(says), "{how} {topic:?}: {reason}")
                }
                other => panic!("{how} {topic:?}: expected InvalidTopic, got {other:?}"),
            }
        }
    }
    // The fix is named for key 0.
    let e = Subscriber::<Check>::attach(&Topic::new("key-zero").key(0))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("derive it from the topic's name"), "{e}");
}

/// A frame capacity or schema the layout cannot hold is named with its
/// limit and what to change, before any System V object is made. It was
/// "frame capacity N or schema of M bytes exceeds the layout's limits",
/// also of a capacity of 0, which exceeds nothing. And a kernel out of
/// memory for a segment says what to do, not only that it happened.
#[test]
fn sizes_the_layout_cannot_hold_are_named_with_their_limit() {
    use shmbus_core::layout::{MAX_FRAME_CAPACITY, MAX_SCHEMA_LEN};
    let key = unique_key("layout-limits");
    let _g = Guard(key);
    let topic = Topic::new("layout-limits").key(key);
    let cases: Vec<(Vec<u8>, usize, String)> = vec![
        (
            Vec::new(),
            0,
            "frame capacity 0: a topic's frames hold at least 1 byte".into(),
        ),
        (
            Vec::new(),
            MAX_FRAME_CAPACITY + 1,
            format!(
                "frames of up to {} bytes exceed the layout's {MAX_FRAME_CAPACITY} bytes (16 MiB) per frame: declare smaller capacities",
                MAX_FRAME_CAPACITY + 1
            ),
        ),
        (
            vec![0; MAX_SCHEMA_LEN + 1],
            8,
            format!(
                "the message type's schema is {} bytes, over the layout's {MAX_SCHEMA_LEN}",
                MAX_SCHEMA_LEN + 1
            ),
        ),
    ];
    for (schema, capacity, says) in cases {
        match shmbus_pub::RawPublisher::open(&topic, &schema, capacity) {
            Err(OpenError::InvalidTopic { reason }) => {
                assert!(reason.contains(&says), "capacity {capacity}: {reason}")
            }
            other => panic!("capacity {capacity}: expected InvalidTopic, got {other:?}"),
        }
        assert!(
            matches!(
                sys::shmget(key, 0, 0),
                Err(e) if e.errno == nix::errno::Errno::ENOENT
            ),
            "a refused topic left a segment"
        );
    }
    let oom = OpenError::OutOfMemory { key, size: 1 << 40 }.to_string();
    assert!(
        oom.contains("free memory") && oom.contains("fewer slots or a smaller message type"),
        "{oom}"
    );
}

/// A publisher of another topic whose key collides with a live topic's
/// is told the keys collide, not to stop that topic's publisher. It was
/// `PublisherActive` ("already has a live publisher (pid N); only one
/// publisher per topic: stop it first"): following it stopped an
/// unrelated sensor, and only then came `NameMismatch`. The same topic
/// with a live publisher is still `PublisherActive`.
#[test]
fn a_key_collision_with_a_live_topic_is_named_not_its_publisher() {
    let (topic, _guard) = unique_topic("collide-live");
    let mut live = Publisher::<Check>::open(&topic).unwrap();
    live.publish(&Check::new(1)).unwrap();
    let other = Topic::new("collide-other").key(topic.key);
    match Publisher::<Check>::open(&other) {
        Err(OpenError::NameMismatch {
            expected, found, ..
        }) => {
            assert_eq!(expected, other.name);
            assert_eq!(found, topic.name);
        }
        r => panic!("expected NameMismatch, got {:?}", r.err()),
    }
    match Publisher::<Check>::open(&topic) {
        Err(OpenError::PublisherActive { pid, .. }) => {
            assert_eq!(pid as u32, std::process::id())
        }
        r => panic!("expected PublisherActive, got {:?}", r.err()),
    }
    // The live topic was not touched: its publisher goes on.
    assert_eq!(live.publish(&Check::new(2)).unwrap(), 2);
    let mut s = Subscriber::<Check>::attach(&topic).unwrap();
    assert_eq!(s.latest().unwrap().unwrap().value, Check::new(2));
}

/// Frames of a wider type than [`Check`]: a topic of them needs a larger
/// segment than a `Check` topic of as many slots.
#[derive(
    Serialize,
    Deserialize,
    Debug,
    postcard::experimental::max_size::MaxSize,
    postcard_schema::Schema,
)]
struct Wider {
    x: [u64; 32],
}

/// A publisher whose topic needs a larger segment than the whole shmbus
/// topic at its key is told what differs, as one that needs a smaller
/// segment is: more slots is `GeometryMismatch` with both shapes, a wider
/// type `SchemaMismatch`, another topic at the key `NameMismatch`. Each
/// was a bare "segment is N bytes, the topic needs M; remove it with
/// `shmbus rm`" (`SizeMismatch`), which for a key collision told the user
/// to remove the other topic. Nothing is written to the segment.
#[test]
fn a_topic_that_grew_is_told_what_differs_as_one_that_shrank() {
    let (topic, _guard) = unique_topic("grew");
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    p.publish(&Check::new(1)).unwrap();
    drop(p);
    let shmid = sys::shmget(topic.key, 0, 0).unwrap();
    let att = Attachment::read_only(shmid).unwrap();
    let before = snapshot(&att);
    let key = format!("0x{:08x}", topic.key as u32);

    // The same topic, twice the slots: a larger segment.
    let e = Publisher::<Check>::open(&topic.clone().slots(topic.slots * 2)).unwrap_err();
    match &e {
        OpenError::GeometryMismatch { what, .. } => assert!(
            what.contains(&format!("segment has {} slots", topic.slots))
                && what.contains(&format!("topic wants {} slots", topic.slots * 2)),
            "{what}"
        ),
        other => panic!("more slots: expected GeometryMismatch, got {other:?}"),
    }
    assert!(e.to_string().contains(&format!("shmbus rm {key}")), "{e}");
    // And half the slots (a smaller segment), as it was before.
    let e = Publisher::<Check>::open(&topic.clone().slots(topic.slots / 2)).unwrap_err();
    assert!(
        matches!(e, OpenError::GeometryMismatch { .. }),
        "fewer slots: {e:?}"
    );

    // The same topic, a wider type.
    match Publisher::<Wider>::open(&topic) {
        Err(OpenError::SchemaMismatch {
            expected,
            found,
            topic: name,
            ..
        }) => {
            assert_eq!(
                expected,
                shmbus_core::schema::fingerprint_of::<Wider>().unwrap()
            );
            assert_eq!(
                found,
                shmbus_core::schema::fingerprint_of::<Check>().unwrap()
            );
            assert_eq!(name, topic.name);
        }
        other => panic!("wider type: expected SchemaMismatch, got {other:?}"),
    }

    // Another topic, of the wider type, whose name leads to the same key:
    // the key is shared, and the fix is another key, never removing the
    // topic that is there.
    let other = Topic::new("grew-other").key(topic.key);
    let e = Publisher::<Wider>::open(&other).unwrap_err();
    match &e {
        OpenError::NameMismatch {
            expected, found, ..
        } => {
            assert_eq!(expected, "grew-other");
            assert_eq!(found, &topic.name);
        }
        other => panic!("key collision: expected NameMismatch, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("another key") && !msg.contains("shmbus rm"),
        "{msg}"
    );

    assert_eq!(snapshot(&att), before, "a refused open wrote the segment");
    // The topic is still whole and readable.
    let mut s = Subscriber::<Check>::attach(&topic).unwrap();
    assert_eq!(s.latest().unwrap().unwrap().value, Check::new(1));
}

#[test]
fn unknown_layout_version_is_refused() {
    let (src, _g0) = unique_topic("version-src");
    let mut image = valid_image(&src);
    image[2] = 2;
    let key = unique_key("version");
    let _g = Guard(key);
    store_words(&raw_segment(key, image.len() * 4), &image);
    match Subscriber::<Check>::attach(&src.clone().key(key)) {
        Err(OpenError::UnsupportedLayout {
            found: 2,
            supported: 1,
            ..
        }) => {}
        other => panic!("expected UnsupportedLayout, got {other:?}"),
    }
    // Version 0 under a valid magic was never written by any build: the
    // segment is damaged, not of a version to upgrade to.
    let mut zero = image.clone();
    zero[2] = 0;
    let key = unique_key("version0");
    let _g = Guard(key);
    store_words(&raw_segment(key, zero.len() * 4), &zero);
    match Subscriber::<Check>::attach(&src.clone().key(key)) {
        Err(e @ OpenError::Corrupt { .. }) => {
            assert!(e.to_string().contains("layout_version 0"), "{e}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Zeros with no publisher lock at the key are another program's memory
/// (fresh System V memory is all zeros): not a topic being created, so
/// neither waited for nor retried.
#[test]
fn all_zero_segment_without_a_lock_is_not_a_topic() {
    let key = unique_key("zero");
    let _g = Guard(key);
    let _att = raw_segment(key, 4096);
    let topic = Topic::new("zero").key(key);
    match Subscriber::<Check>::attach(&topic) {
        Err(e @ OpenError::NotShmbus { magic: 0, .. }) => {
            assert!(e.to_string().contains("no shmbus publisher lock"), "{e}");
        }
        other => panic!("expected NotShmbus, got {other:?}"),
    }
    // Not retried: a wait for the topic ends with the refusal.
    let r = Subscriber::<Check>::wait_for_topic(&topic, Duration::from_secs(600));
    assert!(
        matches!(r, Err(OpenError::NotShmbus { magic: 0, .. })),
        "{r:?}"
    );
}

/// What a publisher killed between `shmget` and storing the magic leaves:
/// its lock (the semaphore it created first) and a segment of zeros.
/// Readers wait for it; the next publisher of the topic finishes it; one
/// of another geometry is refused and left alone.
#[test]
fn a_half_created_topic_is_not_ready_until_its_next_publisher_finishes_it() {
    let (src, _g0) = unique_topic("half-src");
    let exact = valid_image(&src).len() * 4;
    for (size, adopt) in [(exact, true), (exact + 4096, false)] {
        let key = unique_key("half");
        let _g = Guard(key);
        let topic = src.clone().key(key);
        // The dead creator's lock: created, then released (as SEM_UNDO
        // releases it when the process dies), and left behind.
        let mut lock = shmbus_core::lock::PublisherLock::acquire(key, 0o600, None).unwrap();
        lock.keep();
        let att = raw_segment(key, size);
        // While the lock is held its creator is at work.
        assert!(matches!(
            Subscriber::<Check>::attach(&topic),
            Err(OpenError::NotReady {
                publisher_alive: true,
                ..
            })
        ));
        drop(lock);
        assert!(matches!(
            Subscriber::<Check>::attach(&topic),
            Err(OpenError::NotReady { .. })
        ));
        let t = Instant::now();
        let r = Subscriber::<Check>::wait_for_topic(&topic, Duration::from_millis(100));
        assert!(matches!(r, Err(OpenError::NotReady { .. })), "{r:?}");
        assert!(t.elapsed() >= Duration::from_millis(100));
        // Its creator is dead (the lock is free): the error says so and
        // what finishes the topic, not "retry in a moment", which never
        // helps.
        let msg = r.err().unwrap().to_string();
        assert!(
            msg.contains("died") && msg.contains("start its publisher again"),
            "{msg}"
        );
        let before = snapshot(&att);
        match Publisher::<Check>::open(&topic) {
            Ok(mut p) if adopt => {
                p.publish(&Check::new(1)).unwrap();
                let mut s = Subscriber::<Check>::attach(&topic).unwrap();
                let got = s.latest().unwrap().unwrap();
                assert_eq!(got.generation, 1);
                assert!(!is_torn(&got));
            }
            Err(OpenError::SizeMismatch {
                expected, found, ..
            }) if !adopt => {
                assert_eq!((expected, found), (exact as u64, size as u64));
                assert_eq!(snapshot(&att), before, "a refused segment was written");
            }
            other => panic!("size {size}: unexpected {other:?}"),
        }
    }
}

/// A creator killed between `shmget` and giving the segment the topic's
/// group leaves a half-created segment with its creation mode and the
/// creator's group. The next publisher adopted it (initialised it) without
/// giving it the topic's mode and group, as it does on every other reopen:
/// readers of the topic's group were refused for the life of the segment.
#[test]
fn an_adopted_half_created_segment_gets_the_topics_mode_and_group() {
    let (src, _g0) = unique_topic("half-mode-src");
    let exact = valid_image(&src).len() * 4;
    let key = unique_key("half-mode");
    let _g = Guard(key);
    // Root may give any group; another user one of its own.
    let group = if nix::unistd::geteuid().is_root() {
        64100
    } else {
        nix::unistd::getegid().as_raw()
    };
    let topic = src.clone().key(key).mode(0o640).group(group);
    let mut lock = shmbus_core::lock::PublisherLock::acquire(key, 0o600, None).unwrap();
    lock.keep();
    drop(lock);
    // What the killed creator left: zeros, mode 0600, its own group.
    let att = raw_segment(key, exact);
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    p.publish(&Check::new(1)).unwrap();
    let st = sys::shm_stat(att.shmid()).unwrap();
    assert_eq!((st.perms(), st.gid), (0o640, group), "{st:?}");
}

/// A publisher never adopts or overwrites a segment at its key that it did
/// not create as this topic: it fails with the reason, leaving every byte.
#[test]
fn publisher_leaves_foreign_segments_untouched() {
    let mut rng = Rng::seeded(3);
    let (src, _g0) = unique_topic("foreign-src");
    let image = valid_image(&src);
    let mut other_version = image.clone();
    other_version[2] = 7;
    let random: Vec<u32> = (0..1024).map(|_| rng.next() as u32).collect();
    let mut other_name = image.clone();
    other_name[16] ^= 0x20; // first bytes of the name: another topic
    let cases: Vec<(&str, Vec<u32>, usize)> = vec![
        ("random bytes", random.clone(), 4096),
        ("random bytes, too small", random[..64].to_vec(), 256),
        ("other layout version", other_version, image.len() * 4),
        ("other topic", other_name, image.len() * 4),
        // Another program's memory of exactly the topic's size that starts
        // with zeros: no lock was at the key, so no publisher began it.
        (
            "zeros first, exact size",
            [0, 0].into_iter().chain([0xaaaa_aaaa; 4]).collect(),
            image.len() * 4,
        ),
    ];
    for (what, words, size) in cases {
        let key = unique_key("foreign");
        let _g = Guard(key);
        let att = raw_segment(key, size);
        store_words(&att, &words);
        let before = snapshot(&att);
        let r = Publisher::<Check>::open(&src.clone().key(key));
        match (&r, what) {
            (Err(OpenError::NotShmbus { .. }), "random bytes") => {}
            // Another program's memory, named as such: `shmbus rm` refuses
            // it, so a size mismatch (whose fix is `shmbus rm`) was wrong.
            (Err(OpenError::NotShmbus { .. }), "random bytes, too small") => {}
            (Err(OpenError::UnsupportedLayout { found: 7, .. }), "other layout version") => {}
            (Err(OpenError::NameMismatch { .. }), "other topic") => {}
            (Err(OpenError::NotShmbus { magic: 0, .. }), "zeros first, exact size") => {}
            _ => panic!("{what}: unexpected {r:?}"),
        }
        assert_eq!(
            snapshot(&att),
            before,
            "{what}: the publisher wrote to a foreign segment"
        );
        // The lock this refused open created is not left behind either.
        assert_eq!(
            shmbus_core::lock::publisher_status(key),
            shmbus_core::PublisherStatus::NoLock,
            "{what}"
        );
    }
    // Created by (or given to) another user: NotOwner, untouched.
    if nix::unistd::geteuid().is_root() {
        let key = unique_key("foreign-uid");
        let _g = Guard(key);
        let att = raw_segment(key, image.len() * 4);
        store_words(&att, &image);
        let before = snapshot(&att);
        set_shm_uid(att.shmid(), 65534);
        match Publisher::<Check>::open(&src.clone().key(key)) {
            Err(OpenError::NotOwner {
                owner_uid: 65534, ..
            }) => {}
            other => panic!("expected NotOwner, got {other:?}"),
        }
        assert_eq!(snapshot(&att), before);
    }
}

/// `shmctl(IPC_SET)` to hand a segment to another uid (root only).
fn set_shm_uid(shmid: i32, uid: u32) {
    // SAFETY: shmid_ds is plain old data; all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a valid shmid_ds for the kernel to fill, then read.
    unsafe {
        assert_eq!(libc::shmctl(shmid, libc::IPC_STAT, &mut ds), 0);
        ds.shm_perm.uid = uid;
        assert_eq!(libc::shmctl(shmid, libc::IPC_SET, &mut ds), 0);
    }
}

/// The safe API has no store on a subscriber's mapping (a `compile_fail`
/// doc test in `shmbus_core::view` shows it); the kernel refuses one too: a
/// raw store through an `SHM_RDONLY` attachment of the topic is killed by
/// SIGSEGV and changes nothing.
#[test]
fn writing_through_a_read_only_mapping_is_killed_by_sigsegv() {
    use std::os::unix::process::ExitStatusExt;
    watchdog(
        "writing_through_a_read_only_mapping",
        Duration::from_secs(120),
    );
    let (topic, _guard) = unique_topic("read-only");
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    p.publish(&Check::new(1)).unwrap();
    let mut child = KillOnDrop(spawn("ro-writer", &[topic.key.to_string()]));
    let (out, status) = output_and_exit(&mut child.0, Duration::from_secs(60), "ro-writer");
    assert!(out.contains("@@ attached"), "child output: {out:?}");
    assert!(
        !out.contains("@@ survived"),
        "the write went through: {out:?}"
    );
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "status {status:?}");
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    assert_eq!(sub.raw().segment().notify_word().load(), 1);
}

/// Generations at the ends of the u64 range, in the header and in the slots,
/// never overflow a cursor (found by `shmbus info` on a real leftover
/// segment whose header generation was all ones). Since the plausibility
/// check moved into core, a header generation above 2^62 is refused at
/// attach, and one that turns impossible after attach (or an impossible
/// slot generation) makes every read a `Corrupt` error: never a stream of
/// "missed" frames (the recorder once reported one missed frame forever).
#[test]
fn extreme_generations_never_overflow() {
    let (src, _g0) = unique_topic("extreme-gen");
    let src = src.slots(2);
    let image = valid_image(&src);
    let header_gen = 192 / 4;
    let geometry = shmbus_core::layout::Geometry::new(
        shmbus_core::schema::schema_bytes::<Check>().unwrap().len(),
        2,
        <Check as postcard::experimental::max_size::MaxSize>::POSTCARD_MAX_SIZE,
    )
    .unwrap();
    let sane = |lo: u32, hi: u32| (u64::from(hi) << 32 | u64::from(lo)) <= MAX_SANE_GENERATION;
    for (lo, hi) in [
        (u32::MAX, u32::MAX),
        (u32::MAX - 1, u32::MAX),
        (0, 0x4000_0001),
        (1, 0),
        (0, 0),
    ] {
        for slot_gen in [(u32::MAX, u32::MAX), (1, 0), (2, 0), (0, 0)] {
            let key = unique_key("extreme-gen");
            let _g = Guard(key);
            let mut m = image.clone();
            m[header_gen] = lo;
            m[header_gen + 1] = hi;
            for s in 0..2u64 {
                let w = geometry.slot_offset(s) / 4;
                m[w + 2] = slot_gen.0;
                m[w + 3] = slot_gen.1;
            }
            let att = raw_segment(key, image.len() * 4);
            store_words(&att, &m);
            let topic = src.clone().key(key);
            if !sane(lo, hi) {
                match Subscriber::<Check>::attach(&topic) {
                    Err(OpenError::Corrupt { what, .. }) => {
                        assert!(what.contains("generation is impossible"), "{what}")
                    }
                    other => panic!("header generation {hi:x}{lo:08x}: {other:?}"),
                }
                continue;
            }
            let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
            let _ = sub.has_new();
            let _ = sub.latest();
            for _ in 0..3 {
                let r = sub.next();
                if slot_gen == (u32::MAX, u32::MAX) && lo > 0 {
                    assert!(
                        matches!(r, Err(ReadError::Corrupt { .. }) | Ok(Next::Empty)),
                        "impossible slot generation: {r:?}"
                    );
                }
            }
            sub.raw().seek_oldest();
            sub.raw().seek_latest();
            for _ in 0..3 {
                let _ = sub.next();
            }
            // The header turns impossible after attach: every read says
            // Corrupt, and the cursor does not move.
            let w = att.atomic_words(192, 2).unwrap();
            w[0].store(u32::MAX, Ordering::Relaxed);
            w[1].store(u32::MAX, Ordering::Relaxed);
            let cursor = sub.raw().cursor();
            for _ in 0..3 {
                assert!(matches!(sub.next(), Err(ReadError::Corrupt { .. })));
                assert!(matches!(sub.latest(), Err(ReadError::Corrupt { .. })));
            }
            assert_eq!(sub.raw().cursor(), cursor);
            sub.raw().seek_oldest();
            sub.raw().seek_latest();
        }
    }
}

/// A publisher handle copied by `fork()` (a sensor that opens its topic,
/// then forks a worker or daemonizes): the child's copy published a second
/// frame with the parent's next generation (two writers on one seqlock),
/// and its drop released the parent's lock (`semop(-1, SEM_UNDO)`), so a
/// second publisher could open the topic while the parent still published;
/// its `remove()` removed the parent's topic. Now the child's publish is
/// refused with `ForkedChild` naming the opener, its drop leaves the lock
/// to the parent, and its `remove()` is `EPERM` and removes nothing.
#[test]
fn a_publisher_copied_by_fork_writes_nothing_and_keeps_the_lock_in_the_parent() {
    watchdog(
        "a_publisher_copied_by_fork_writes_nothing_and_keeps_the_lock_in_the_parent",
        Duration::from_secs(60),
    );
    let (topic, _guard) = unique_topic("fork-publisher");
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    assert_eq!(p.publish(&Check::new(1)).unwrap(), 1);
    let me = std::process::id();
    let parent_still_owns_it = |p: &mut Publisher<Check>, g: u64| {
        match Publisher::<Check>::open(&topic) {
            Err(OpenError::PublisherActive { pid, .. }) => assert_eq!(pid as u32, me),
            other => panic!("a second publisher opened after the child's drop: {other:?}"),
        }
        assert_eq!(p.publish(&Check::new(g)).unwrap(), g);
        let mut s = Subscriber::<Check>::attach(&topic).unwrap();
        let got = s.latest().unwrap().expect("a frame");
        assert_eq!((got.generation, got.value.seq), (g, g));
        assert!(!s.is_removed());
    };
    // A child that publishes, then drops its copy.
    let child = fork();
    if child == 0 {
        let refused = matches!(
            p.publish(&Check::new(99)),
            Err(shmbus_pub::PublishError::ForkedChild { opener_pid }) if opener_pid == me
        );
        drop(p);
        exit_child(if refused { 0 } else { 1 });
    }
    assert_eq!(
        exit_code(child),
        0,
        "the child published on the parent's handle"
    );
    parent_still_owns_it(&mut p, 2);
    // A child that removes the topic through its copy.
    let child = fork();
    if child == 0 {
        let eperm = matches!(p.remove(), Err(e) if e.errno == sys::Errno::EPERM);
        exit_child(if eperm { 0 } else { 1 });
    }
    assert_eq!(
        exit_code(child),
        0,
        "the child's remove() did not say EPERM"
    );
    parent_still_owns_it(&mut p, 3);
}

/// `fork()`: 0 in the child, the child's pid in the parent.
///
/// The child of a test process that has other threads: it must only make
/// system calls and use atomics (a publish, a drop, a remove), then leave
/// with [`exit_child`].
fn fork() -> i32 {
    // SAFETY: fork() has no memory-safety preconditions; the child keeps
    // to what is safe after a fork of a threaded process (above).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", nix::errno::Errno::last());
    pid
}

/// End a `fork()` child with `code`, without the test harness's exit path.
fn exit_child(code: i32) -> ! {
    // SAFETY: _exit ends the process at once; nothing runs after it.
    unsafe { libc::_exit(code) }
}

/// Wait for child `pid`; its exit status (panics if it was killed).
fn exit_code(pid: i32) -> i32 {
    match nix::sys::wait::waitpid(Pid::from_raw(pid), None).expect("waitpid") {
        nix::sys::wait::WaitStatus::Exited(_, code) => code,
        other => panic!("the fork child ended as {other:?}"),
    }
}

/// A reader with no memory for its frame buffer (a topic of 16 MB frames,
/// a process under `ulimit -v`) gets an error naming the buffer, from the
/// typed attach and from `latest_bytes` of a 12 MB frame into an empty
/// buffer: never an abort ("memory allocation failed"), which it was.
#[test]
fn a_reader_with_no_room_for_its_frame_buffer_gets_an_error_not_an_abort() {
    watchdog("buffer memory test", Duration::from_secs(120));
    let key = unique_key("buffer-memory");
    let _g = Guard(key);
    let t = Topic::new("test/buffer-memory")
        .key(key)
        .slots(1)
        .lock(shmbus_core::LockPolicy::Off);
    let schema = shmbus_core::schema::schema_bytes::<Check>().unwrap();
    let mut p = shmbus_pub::RawPublisher::open(&t, &schema, 16_000_000).unwrap();
    // A 12 MB frame: the raw reader's buffer grows to it (a small frame
    // would need only a small buffer).
    p.publish_bytes(&vec![7u8; 12_000_000]).unwrap();
    let seg_bytes = shmbus_core::layout::Geometry::new(schema.len(), 1, 16_000_000)
        .unwrap()
        .segment_size;
    // glibc's malloc asks the kernel for every block over 128 KiB (no
    // dynamic threshold, one arena): the buffer cannot come from address
    // space reserved before the limit.
    let mut child =
        shmbus_testkit::child("short-of-memory", &args_with(&t, &[&seg_bytes.to_string()]))
            .env(
                "GLIBC_TUNABLES",
                "glibc.malloc.mmap_threshold=131072:glibc.malloc.arena_max=1",
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the reader");
    let (out, status) = output_and_exit(
        &mut child,
        Duration::from_secs(60),
        "short-of-memory reader",
    );
    assert!(status.success(), "{status:?}: {out}");
    if out.contains("@@ limit=not enforced") {
        // Only under emulation: qemu-user ignores a guest's RLIMIT_AS.
        assert!(
            std::env::var_os("SHMBUS_TEST_RUNNER").is_some(),
            "RLIMIT_AS is not enforced on this machine: {out}"
        );
        eprintln!(
            "note: RLIMIT_AS is not enforced under the test runner; the host suite checks this"
        );
        return;
    }
    let typed = result_line(&out, "typed=");
    assert!(
        typed.starts_with("typed=BufferMemory: out of memory for this reader's"),
        "{out}"
    );
    let raw = result_line(&out, "raw=");
    assert!(
        raw.starts_with("raw=BufferMemory: out of memory for a buffer of frame 1's 12000000 bytes"),
        "{out}"
    );
}

/// A complete slot whose generation no publisher writes (above 2^62: the
/// segment was overwritten) is emptied when a publisher reopens the topic,
/// like a slot a dead publisher left mid-write, and the count goes on from
/// the newest real frame. Before, the reopen took it as the newest frame:
/// every later frame got an impossible generation, readers refused the
/// topic as corrupt for good, and the publish reported success. An
/// impossible generation in the header is set back the same way.
#[test]
fn a_reopening_publisher_empties_a_slot_of_impossible_generation() {
    watchdog(
        "impossible generation repair test",
        Duration::from_secs(120),
    );
    for header_too in [false, true] {
        let key = unique_key("impossible-gen");
        let _g = Guard(key);
        let t = Topic::new("test/impossible-gen").key(key).slots(8);
        {
            let mut p = Publisher::<Check>::open(&t).unwrap();
            for g in 1..=5 {
                p.publish(&Check::new(g)).unwrap();
            }
        }
        let seg = Segment::attach(&t).unwrap();
        let geo = seg.info().geometry;
        let att = WriteAttachment::read_write(seg.shmid()).unwrap();
        let bad = (1u64 << 62) + 16;
        // Frame 3's slot: an even sequence (complete) and a wild generation.
        let slot = att.atomic_words(geo.slot_offset(3), 4).unwrap();
        slot[2].store(bad as u32, Ordering::Relaxed);
        slot[3].store((bad >> 32) as u32, Ordering::Relaxed);
        if header_too {
            let h = att.raw_header().unwrap();
            h.generation.store(bad, Ordering::Relaxed);
        }
        let mut p = Publisher::<Check>::open(&t).unwrap();
        assert_eq!(p.raw().repaired_slots(), 1, "header too: {header_too}");
        assert_eq!(p.raw().next_generation(), 6, "header too: {header_too}");
        assert_eq!(p.publish(&Check::new(6)).unwrap(), 6);
        let mut sub = Subscriber::<Check>::attach(&t).unwrap();
        let s = sub.latest().unwrap().expect("the newest frame reads");
        assert_eq!((s.generation, s.value), (6, Check::new(6)));
    }
}
