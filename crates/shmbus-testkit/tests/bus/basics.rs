//! Single-process basics: publish, read latest and in order, second publisher, missing topic.

use super::*;

#[test]
fn publish_then_read_latest_and_in_order() {
    watchdog(
        "publish_then_read_latest_and_in_order",
        Duration::from_secs(60),
    );
    let (topic, _guard) = unique_topic("roundtrip");
    let topic = topic.slots(4);
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    assert!(sub.latest().unwrap().is_none());
    assert!(!sub.has_new());
    assert_eq!(sub.next().unwrap(), Next::Empty);
    for g in 1..=3 {
        assert_eq!(publisher.publish(&Check::new(g)).unwrap(), g);
    }
    assert!(sub.has_new());
    let s = sub.latest().unwrap().unwrap();
    assert_eq!(s.generation, 3);
    assert_eq!(s.value, Check::new(3));
    assert!(!sub.has_new());
    for g in 1..=3 {
        match sub.next().unwrap() {
            Next::Frame(s) => assert_eq!((s.generation, s.value.seq), (g, g)),
            other => panic!("expected frame {g}, got {other:?}"),
        }
    }
    assert_eq!(sub.next().unwrap(), Next::Empty);
    // Fall behind by more than the ring: 10 frames into 4 slots.
    for g in 4..=13 {
        publisher.publish(&Check::new(g)).unwrap();
    }
    assert_eq!(sub.next().unwrap(), Next::Missed(6));
    for g in 10..=13 {
        match sub.next().unwrap() {
            Next::Frame(s) => assert_eq!(s.value, Check::new(g)),
            other => panic!("expected frame {g}, got {other:?}"),
        }
    }
    assert!(sub.age().unwrap() < Duration::from_secs(60));
    assert!(sub.publisher().is_alive());
    drop(publisher);
    assert!(!sub.publisher().is_alive());
    // A new publisher carries on from the newest generation.
    let mut again = Publisher::<Check>::open(&topic).unwrap();
    assert!(!again.raw().created());
    assert_eq!(again.publish(&Check::new(14)).unwrap(), 14);
    assert!(matches!(sub.next().unwrap(), Next::Frame(s) if s.generation == 14));
}

#[test]
fn second_publisher_is_refused_with_the_live_pid() {
    let (topic, _guard) = unique_topic("second-publisher");
    let _first = Publisher::<Check>::open(&topic).unwrap();
    match Publisher::<Check>::open(&topic) {
        Err(OpenError::PublisherActive { pid, .. }) => assert_eq!(pid as u32, std::process::id()),
        other => panic!("expected PublisherActive, got {other:?}"),
    }
}

/// A tool that removes a topic (`shmbus rm`) takes the publisher lock as
/// a publisher does: while it holds it no publisher opens the topic (before,
/// `rm` only looked at the lock, so a publisher starting between the look
/// and the removal adopted the segment about to go, or created a new one
/// whose lock `rm` then removed from under it). The removal removes the set
/// it holds, by semid; a hold dropped without removal releases the lock;
/// a live publisher's lock is not taken.
#[test]
fn a_lock_held_for_removal_keeps_publishers_out_until_the_topic_is_gone() {
    use shmbus_core::lock::{RemovalHold, hold_for_removal};
    let (topic, _guard) = unique_topic("held-for-removal");
    let me = std::process::id() as i32;
    // A live publisher: its lock is not taken, and it keeps it.
    let mut live = Publisher::<Check>::open(&topic).unwrap();
    assert!(matches!(hold_for_removal(topic.key), RemovalHold::Alive { pid } if pid == me));
    live.publish(&Check::new(1)).unwrap();
    drop(live);
    assert!(matches!(
        Publisher::<Check>::open(&topic),
        Ok(p) if !p.raw().created()
    ));
    // A hold dropped unused releases the lock.
    let RemovalHold::Held(held) = hold_for_removal(topic.key) else {
        panic!("the lock of a topic without a publisher is taken");
    };
    drop(held);
    drop(Publisher::<Check>::open(&topic).expect("the lock was released"));
    // Held: no publisher opens the topic, the segment goes, then the lock.
    let RemovalHold::Held(held) = hold_for_removal(topic.key) else {
        panic!("the lock of a topic without a publisher is taken");
    };
    let semid = held.semid();
    match Publisher::<Check>::open(&topic) {
        Err(OpenError::PublisherActive { pid, .. }) => assert_eq!(pid, me),
        other => panic!("a publisher opened a topic held for removal: {other:?}"),
    }
    let shmid = Segment::attach(&topic).unwrap().shmid();
    sys::shm_remove(shmid).unwrap();
    held.remove().unwrap();
    assert_eq!(
        sys::sem_stat(semid).map_err(|e| e.errno),
        Err(sys::Errno::EINVAL),
        "the held set is removed"
    );
    // Gone: the next publisher creates the topic afresh.
    let p = Publisher::<Check>::open(&topic).unwrap();
    assert!(p.raw().created());
    assert!(matches!(hold_for_removal(topic.key), RemovalHold::Alive { pid } if pid == me));
}

#[test]
fn second_publisher_in_another_process_names_the_live_child() {
    watchdog(
        "second_publisher_in_another_process",
        Duration::from_secs(120),
    );
    let (topic, _guard) = unique_topic("second-publisher-xproc");
    let mut child = KillOnDrop(spawn("hold-pub", &topic_args(&topic)));
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let l = line(&mut out);
    assert_eq!(field(&l, "pid"), u64::from(child.0.id()), "{l}");
    match Publisher::<Check>::open(&topic) {
        Err(e @ OpenError::PublisherActive { .. }) => {
            let OpenError::PublisherActive { pid, .. } = e else {
                unreachable!()
            };
            assert_eq!(pid as u32, child.0.id());
            let msg = e.to_string();
            assert!(msg.contains(&format!("pid {}", child.0.id())), "{msg}");
        }
        other => panic!("expected PublisherActive, got {other:?}"),
    }
    // The kernel releases the lock when the holder dies: we can take over.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let p = Publisher::<Check>::open(&topic).unwrap();
    assert!(!p.raw().created());
}

#[test]
fn missing_topic_is_not_found_and_wait_times_out() {
    let (topic, _guard) = unique_topic("missing");
    assert!(matches!(
        Subscriber::<Check>::attach(&topic),
        Err(OpenError::NotFound { .. })
    ));
    let t = Instant::now();
    let r = Subscriber::<Check>::wait_for_topic(&topic, Duration::from_millis(200));
    assert!(matches!(r, Err(OpenError::NotFound { .. })));
    assert!(t.elapsed() >= Duration::from_millis(200));
}

/// A subscriber that waited for its topic reads it from its first frame:
/// frames the publisher wrote before the poll found the topic are not lost
/// (they were, without a `Missed`, when the cursor started "from now").
/// One that found the topic at once starts after its newest frame.
#[test]
fn waiting_for_a_topic_reads_it_from_its_first_frame() {
    watchdog(
        "waiting_for_a_topic_reads_it_from_its_first_frame",
        Duration::from_secs(120),
    );
    let (topic, _guard) = unique_topic("appears");
    let topic = topic.slots(8);
    let t = topic.clone();
    let publisher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let mut p = Publisher::<Check>::open(&t).unwrap();
        for g in 1..=3 {
            p.publish(&Check::new(g)).unwrap();
        }
        p
    });
    // No timeout at all (`Duration::MAX` panicked adding it to the clock):
    // the watchdog bounds the test.
    let mut sub = Subscriber::<Check>::wait_for_topic(&topic, Duration::MAX).unwrap();
    let mut p = publisher.join().unwrap();
    p.publish(&Check::new(4)).unwrap();
    for g in 1..=4 {
        match sub.wait_next(Duration::from_secs(30)).unwrap() {
            Next::Frame(s) => assert_eq!((s.generation, s.value.seq), (g, g)),
            other => panic!("expected frame {g}, got {other:?}"),
        }
    }
    assert_eq!(sub.next().unwrap(), Next::Empty);
    // The topic is there now: a second wait attaches at once, from now.
    let mut late = Subscriber::<Check>::wait_for_topic(&topic, Duration::MAX).unwrap();
    assert_eq!(late.next().unwrap(), Next::Empty);
    p.publish(&Check::new(5)).unwrap();
    match late.next().unwrap() {
        Next::Frame(s) => assert_eq!(s.generation, 5),
        other => panic!("expected frame 5, got {other:?}"),
    }
    // A poll index that no `peek_index` gave (the public index methods take
    // any `usize`): past the mapping, never an overflow.
    let seg = late.raw().segment();
    for index in [usize::MAX, usize::MAX - 1, usize::MAX / 2] {
        let next = seg.next_peek_index(index);
        assert!(!seg.is_older_at(next, 1), "{index} -> {next}");
    }
}

/// A `u32` whose `Serialize` panics on [`Boom::PANIC`]: a caller's type that
/// fails in the middle of a publish, after the slot's sequence went odd.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Deserialize,
    postcard_schema::Schema,
    postcard::experimental::max_size::MaxSize,
)]
struct Boom(u32);

impl Boom {
    const PANIC: u32 = 0xdead;
}

impl Serialize for Boom {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert_ne!(self.0, Boom::PANIC, "Serialize panics mid-publish");
        s.serialize_newtype_struct("Boom", &self.0)
    }
}

#[derive(
    Debug,
    Clone,
    PartialEq,
    Serialize,
    Deserialize,
    postcard_schema::Schema,
    postcard::experimental::max_size::MaxSize,
)]
struct Flaky {
    seq: u64,
    boom: Boom,
}

/// A `Serialize` that panics mid-publish (caught with `catch_unwind`) leaves
/// no slot odd: `Publisher::publish` encodes into its own buffer before the
/// slot's write begins, so the slot is untouched (it still holds frame 1)
/// and the generation is not advanced. The next publish gets the same
/// generation, and every reader carries on: a reader that had read up to the
/// newest frame misses nothing, one behind it is told the frame that publish
/// overwrote is missed. (An encoder that panics inside a slot write is the
/// write guard's case: `shmbus_core::seqlock` and `segment` test it.)
#[test]
fn a_panicking_serialize_leaves_no_slot_mid_write() {
    watchdog("a_panicking_serialize", Duration::from_secs(60));
    let (topic, _guard) = unique_topic("panic-serialize");
    let topic = topic.slots(2);
    let mut publisher = Publisher::<Flaky>::open(&topic).unwrap();
    let mut ahead = Subscriber::<Flaky>::attach(&topic).unwrap();
    let mut behind = Subscriber::<Flaky>::attach(&topic).unwrap();
    let frame = |seq| Flaky {
        seq,
        boom: Boom(seq as u32),
    };
    for g in 1..=2 {
        assert_eq!(publisher.publish(&frame(g)).unwrap(), g);
    }
    match ahead.next().unwrap() {
        Next::Frame(s) => assert_eq!(s.value, frame(1)),
        other => panic!("{other:?}"),
    }
    behind.raw().seek_oldest();
    assert_eq!(behind.raw().cursor(), 1);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        publisher.publish(&Flaky {
            seq: 3,
            boom: Boom(Boom::PANIC),
        })
    }));
    assert!(r.is_err(), "the Serialize should have panicked");

    // Slot 3 % 2 = 1 still holds frame 1, even; the generation is 2.
    let seg = Segment::attach(&topic).unwrap();
    assert_eq!(seg.slot_sequence(3) % 2, 0, "slot left mid-write");
    assert_eq!(seg.generation(), 2);
    let (meta, ()) = seg
        .read_slot(3, Duration::from_secs(1), |_, _| ())
        .expect("the slot reads");
    assert_eq!(meta.generation, 1, "the failed publish touched the slot");
    assert_eq!(ahead.latest().unwrap().unwrap().value, frame(2));
    assert!(!ahead.has_new());

    // The next publish takes generation 3 and everyone reads on.
    assert_eq!(publisher.publish(&frame(3)).unwrap(), 3);
    for want in [2, 3] {
        match ahead.next().unwrap() {
            Next::Frame(s) => assert_eq!(s.value, frame(want)),
            other => panic!("ahead, frame {want}: {other:?}"),
        }
    }
    let mut got = Vec::new();
    loop {
        match behind.next().unwrap() {
            Next::Frame(s) => got.push(s.value.seq),
            Next::Missed(n) => got.push(1000 + n),
            Next::Empty => break,
        }
    }
    // Frame 1 was overwritten by frame 3, then frames 2 and 3.
    assert_eq!(got, vec![1001, 2, 3]);
    assert_eq!(behind.latest().unwrap().unwrap().value, frame(3));
}

/// A slot left mid-write by a publisher that is gone: an in-order read of it
/// fails with `PublisherDied` and leaves the cursor there (every time, never
/// a hang); `skip` counts that frame as missed and the reader goes on.
#[test]
fn a_dead_writers_slot_fails_reads_until_skipped() {
    watchdog("dead writer's slot", Duration::from_secs(60));
    let (topic, _guard) = unique_topic("dead-slot");
    let topic = topic.slots(2);
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    sub.raw().seek_oldest();
    for g in 1..=2 {
        publisher.publish(&Check::new(g)).unwrap();
    }
    drop(publisher); // the lock is free: no publisher lives
    // Frame 1's slot, left odd as by a publisher killed while overwriting it.
    let (att, offset) = slot_of(topic.key, 1);
    let seq = att.atomic_word(offset).unwrap();
    seq.store(seq.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    for _ in 0..3 {
        assert_eq!(sub.next(), Err(ReadError::PublisherDied));
        assert_eq!(sub.raw().cursor(), 1);
    }
    assert_eq!(sub.raw().skip(), 1);
    match sub.next().unwrap() {
        Next::Frame(s) => assert_eq!(s.value, Check::new(2)),
        other => panic!("{other:?}"),
    }
}

/// A slot whose sequence another process keeps changing while no publisher
/// holds the lock (a topic of mode 0666 lets any local user map it
/// read-write): every read returns within the stuck bound, `Overwritten`
/// when it could not read the slot, never "stuck" or "died". A read
/// retried for as long as the writes went on (here until the 100 s cap,
/// past the watchdog).
#[test]
fn a_slot_rewritten_during_every_read_fails_the_read_instead_of_hanging() {
    use shmbus_pub::RawPublisher;
    use shmbus_sub::RawSubscriber;
    watchdog("rewritten slot", Duration::from_secs(60));
    let (topic, _guard) = unique_topic("rewritten-slot");
    let topic = topic.slots(1);
    // 1 MiB frames: copying one takes far longer than the writer below
    // takes to change the sequence word again.
    let size = 1 << 20;
    let mut publisher = RawPublisher::open(&topic, b"bytes", size).unwrap();
    publisher.publish_bytes(&vec![7u8; size]).unwrap();
    drop(publisher); // the lock is free: no publisher lives
    let mut sub = RawSubscriber::attach(&topic).unwrap();
    let (att, offset) = slot_of(topic.key, 1);
    let first = att.atomic_word(offset).unwrap().load(Ordering::Relaxed);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let seq = att.atomic_word(offset).unwrap();
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(100) {
                // Even to even: never mid-write, always a new version.
                seq.fetch_add(2, Ordering::Relaxed);
            }
        })
    };
    // Reads start once the writer does. (A read may still succeed while
    // the writer is off its CPU: `SlotWatch`'s unit tests pin the verdicts
    // down; this one checks that a read ends.)
    let (watch, _) = slot_of(topic.key, 1);
    let seq = watch.atomic_word(offset).unwrap();
    shmbus_testkit::settled(|| seq.load(Ordering::Relaxed), |s| *s != first);
    let mut out = Vec::new();
    for _ in 0..5 {
        match sub.latest_bytes(&mut out) {
            Ok(_) | Err(ReadError::Overwritten { .. }) => {}
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                panic!("{e}");
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

/// `seek_after(g)`: the next in-order frame is `g + 1` while it is in the
/// ring, the oldest one when `g + 1` was overwritten, and nothing when `g`
/// is the newest or beyond it (never a cursor past the newest + 1).
#[test]
fn seek_after_clamps_to_what_the_ring_holds() {
    watchdog("seek_after_clamps", Duration::from_secs(60));
    let (topic, _guard) = unique_topic("seek-after");
    let topic = topic.slots(4);
    let mut publisher = Publisher::<Check>::open(&topic).unwrap();
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    for g in 1..=10 {
        publisher.publish(&Check::new(g)).unwrap();
    }
    // The ring holds 7..=10.
    for (after, cursor) in [
        (0, 7),
        (3, 7),
        (6, 7),
        (8, 9),
        (10, 11),
        (99, 11),
        (u64::MAX, 11),
    ] {
        sub.raw().seek_after(after);
        assert_eq!(sub.raw().cursor(), cursor, "seek_after({after})");
    }
    sub.raw().seek_after(8);
    match sub.next().unwrap() {
        Next::Frame(s) => assert_eq!(s.generation, 9),
        other => panic!("expected frame 9, got {other:?}"),
    }
    sub.raw().seek_after(10);
    assert_eq!(sub.next().unwrap(), Next::Empty);
    publisher.publish(&Check::new(11)).unwrap();
    match sub.next().unwrap() {
        Next::Frame(s) => assert_eq!(s.generation, 11),
        other => panic!("expected frame 11, got {other:?}"),
    }
}

/// `publish_array`, the fixed-length publish, leaves a slot word for word
/// as `publish_bytes` leaves it, zero padding of a 13-byte frame's last
/// word included, over slots that held longer frames before; and a frame
/// over the capacity is refused and touches nothing.
#[test]
fn publish_array_writes_what_publish_bytes_writes_and_refuses_what_does_not_fit() {
    use shmbus_pub::RawPublisher;
    watchdog("publish_array_writes", Duration::from_secs(60));
    let (topic, _guard) = unique_topic("publish-array");
    let topic = topic.slots(4);
    let (schema, cap) = {
        let p = Publisher::<Check>::open(&topic).unwrap();
        (p.raw().schema().to_vec(), p.raw().frame_capacity())
    };
    let mut raw = RawPublisher::open(&topic, &schema, cap).unwrap();
    let seg = Segment::attach(&topic).unwrap();
    // Every slot first holds a longer frame of 0xff bytes.
    for _ in 0..4 {
        raw.publish_bytes_at(&[0xff; 16], 1, 2).unwrap();
    }
    let mut frame = [0u8; 13];
    for (i, b) in frame.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(29).wrapping_add(3);
    }
    let g1 = raw.publish_bytes_at(&frame, 100, 200).unwrap();
    let g2 = raw.publish_array_at(&frame, 100, 200).unwrap();
    assert_eq!((g1, g2), (5, 6));
    let slot = |g: u64| {
        seg.read_slot(g, Duration::from_secs(10), |m, w| {
            let words: Vec<u32> = (0..4).map(|i| w.load(i)).collect();
            (m.len, m.mono_ns, m.real_ns, words)
        })
        .unwrap()
    };
    let ((m1, a), (m2, b)) = (slot(g1), slot(g2));
    assert_eq!((m1.generation, m2.generation), (g1, g2));
    assert_eq!(a, b);
    assert_eq!(a.0, 13);
    assert_eq!((a.1, a.2), (100, 200));
    // The last word holds byte 12 and three zero bytes, not the 0xff of
    // the frame that was in the slot before.
    assert_eq!(a.3[3], u32::from(frame[12]));

    // With the clock read: stamped now, read back whole.
    let before = sys::monotonic_ns();
    let g3 = raw.publish_array(&frame).unwrap();
    let (m3, (len, mono, _, _)) = slot(g3);
    assert_eq!((m3.generation, len), (7, 13));
    assert!(mono >= before && mono <= sys::monotonic_ns(), "{mono}");

    // Over the capacity: refused, the generation and every slot unchanged.
    let seqs = |seg: &Segment| -> Vec<u32> { (0..4).map(|i| seg.slot_sequence(i)).collect() };
    let seq_before = seqs(&seg);
    let big = [0x5a_u8; 4096];
    assert!(cap < big.len(), "capacity {cap}");
    match raw.publish_array_at(&big, 300, 400) {
        Err(shmbus_pub::PublishError::TooLarge { len, capacity }) => {
            assert_eq!((len, capacity), (4096, cap))
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(raw.next_generation(), 8);
    assert_eq!(seg.generation(), 7);
    assert_eq!(seqs(&seg), seq_before);
    let (_, kept) = slot(7);
    assert_eq!((kept.0, kept.1, &kept.3), (13, mono, &a.3));
    // The handle stays usable.
    assert_eq!(raw.publish_array_at(&frame, 5, 6).unwrap(), 8);
}

/// The fixed-buffer reads: nothing before the first frame; a frame of the
/// buffer's size whole; a shorter frame after it with the rest zeroed (no
/// byte of the earlier frame left); a longer one cut, its `len` whole; and
/// `next_into` in publish order with the same bytes, then empty.
#[test]
fn latest_into_and_next_into_fill_a_fixed_buffer_cut_or_zeroed() {
    use shmbus_pub::RawPublisher;
    use shmbus_sub::RawSubscriber;
    watchdog("latest_into", Duration::from_secs(60));
    let (topic, _guard) = unique_topic("latest-into");
    let topic = topic.slots(4);
    let mut raw = RawPublisher::open(&topic, b"bytes", 64).unwrap();
    let mut sub = RawSubscriber::attach(&topic).unwrap();
    let mut seq = RawSubscriber::attach(&topic).unwrap();
    let mut out = [0xee_u8; 16];
    assert_eq!(sub.latest_into(&mut out).unwrap(), None);
    assert_eq!(seq.next_into(&mut out).unwrap(), RawNext::Empty);
    let frame = |len: usize, salt: u8| -> Vec<u8> {
        (0..len as u8).map(|i| i.wrapping_mul(31) ^ salt).collect()
    };
    let frames = [frame(16, 1), frame(5, 2), frame(40, 3), frame(0, 4)];
    for (i, f) in frames.iter().enumerate() {
        let g = raw.publish_bytes_at(f, 10 + i as u64, 20).unwrap();
        let mut expect = [0u8; 16];
        let n = f.len().min(16);
        expect[..n].copy_from_slice(&f[..n]);
        let m = sub.latest_into(&mut out).unwrap().unwrap();
        assert_eq!(
            (m.generation, m.len as usize, m.mono_ns),
            (g, f.len(), 10 + i as u64)
        );
        assert_eq!(out, expect, "latest_into of frame {g} ({} bytes)", f.len());
        let mut out2 = [0x77_u8; 16];
        match seq.next_into(&mut out2).unwrap() {
            RawNext::Frame(m2, ()) => assert_eq!((m2.generation, m2.len), (g, m.len)),
            other => panic!("expected frame {g}, got {other:?}"),
        }
        assert_eq!(out2, expect, "next_into of frame {g}");
    }
    assert_eq!(seq.next_into(&mut out).unwrap(), RawNext::Empty);
    // Nothing new: the newest frame again, the same bytes.
    let m = sub.latest_into(&mut out).unwrap().unwrap();
    assert_eq!((m.generation, out), (4, [0u8; 16]));
}

/// Frames across the 32-bit boundary of the generation: the low words
/// (`notify`, a slot's `gen_lo`) wrap to 0 while the 64-bit generation
/// goes on. `has_new`, `latest`, `next` and both waits see every frame, in
/// order, none missed, none twice, on a one-slot and a four-slot ring.
#[test]
fn frames_across_the_32_bit_wrap_are_all_seen() {
    watchdog("32-bit wrap", Duration::from_secs(120));
    for slots in [1u32, 4] {
        let (topic, _guard) = unique_topic("wrap32");
        let topic = topic.slots(slots);
        let start = (1u64 << 32) - 3;
        {
            let p = Publisher::<Check>::open(&topic).unwrap();
            let w = WriteAttachment::read_write(p.raw().shmid()).unwrap();
            let h = w.raw_header().unwrap();
            h.generation.store(start, Ordering::Release);
            h.notify.store(start as u32, Ordering::Release);
        }
        let mut p = Publisher::<Check>::open(&topic).unwrap();
        assert_eq!(p.raw().next_generation(), start + 1);
        let mut polled = Subscriber::<Check>::attach(&topic).unwrap();
        let mut in_order = Subscriber::<Check>::attach(&topic).unwrap();
        let mut waiting = Subscriber::<Check>::attach(&topic).unwrap();
        let mut waiting_latest = Subscriber::<Check>::attach(&topic).unwrap();
        assert!(!polled.has_new());
        for g in start + 1..start + 8 {
            assert_eq!(p.publish(&Check::new(g)).unwrap(), g);
            assert!(polled.has_new(), "slots {slots}: frame {g:#x}");
            let s = polled.latest().unwrap().unwrap();
            assert_eq!(s.generation, g);
            assert!(!is_torn(&s));
            assert!(!polled.has_new(), "slots {slots}: after frame {g:#x}");
            match in_order.next().unwrap() {
                Next::Frame(s) => assert_eq!(s.generation, g, "slots {slots}"),
                other => panic!("slots {slots}: frame {g:#x}: {other:?}"),
            }
            assert_eq!(in_order.next().unwrap(), Next::Empty);
            match waiting.wait_next(Duration::from_secs(30)).unwrap() {
                Next::Frame(s) => assert_eq!(s.generation, g, "slots {slots}"),
                other => panic!("slots {slots}: frame {g:#x}: {other:?}"),
            }
            let s = waiting_latest.wait_latest(Duration::from_secs(30)).unwrap();
            assert_eq!(s.generation, g, "slots {slots}");
        }
    }
}
