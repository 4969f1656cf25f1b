//! Child-process roles, dispatched by `child_role_entry`.

use super::*;

/// Open the topic, say so, wait until the parent creates the go file (every
/// subscriber has attached and set its cursor), then publish `n`
/// self-checking frames as fast as possible.
///
/// Waiting for the segment's attach count is not enough: a subscriber is
/// attached before it reads the generation its cursor starts from, and a
/// frame published in between would be neither delivered nor missed.
pub(super) fn stress_publisher(args: &[String]) {
    let topic = topic_from(args);
    let n: u64 = args[4].parse().unwrap();
    let go = PathBuf::from(&args[5]);
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    say!("ready");
    let end = Instant::now() + Duration::from_secs(120);
    while !go.exists() {
        assert!(Instant::now() < end, "subscribers never attached");
        std::thread::sleep(Duration::from_millis(1));
    }
    let t = Instant::now();
    for g in 1..=n {
        assert_eq!(p.publish(&Check::new(g)).unwrap(), g);
    }
    say!("published n={n} us={}", t.elapsed().as_micros());
}

/// Read the stress topic until frame `n` was seen, in one of four ways, and
/// report what was accepted.
pub(super) fn stress_subscriber(args: &[String]) {
    let topic = topic_from(args);
    let kind = args[4].as_str();
    let n: u64 = args[5].parse().unwrap();
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    // The cursor is set: the parent lets the publisher start once every
    // subscriber has said this.
    say!("attached cursor={}", sub.raw().cursor());
    let (mut accepted, mut torn, mut missed, mut disorder) = (0u64, 0u64, 0u64, 0u64);
    let mut stuck = 0u64;
    let mut none_after_new = 0u64;
    let mut last = 0u64;
    let t = Instant::now();
    let wait = Duration::from_secs(30);
    let mut note =
        |generation: u64, is_torn: bool, in_order: bool, missed_before: u64, last: &mut u64| {
            accepted += 1;
            torn += u64::from(is_torn);
            let ok = if in_order {
                generation == *last + 1 + missed_before
            } else {
                generation > *last
            };
            disorder += u64::from(!ok);
            *last = generation;
        };
    let mut accept =
        |s: &shmbus_sub::Sample<Check>, in_order: bool, missed_before: u64, last: &mut u64| {
            note(s.generation, is_torn(s), in_order, missed_before, last)
        };
    match kind {
        // The fixed-buffer raw reads: into 64 bytes, shorter than almost
        // every frame (seven pseudo-random u64 varints: the unrolled copy,
        // frames cut), or into 96, longer than any (89 at most: the copy
        // by length, the rest zeroed). A frame is whole when
        // its bytes are those of `Check::new(generation)`, up to the
        // buffer's end, and zeros after it.
        "latest_into" | "next_into" => {
            fn whole<const N: usize>(meta: &shmbus_sub::SlotMeta, out: &[u8; N]) -> bool {
                let expect = postcard::to_allocvec(&Check::new(meta.generation)).unwrap();
                let n = expect.len().min(N);
                meta.len as usize == expect.len()
                    && out[..n] == expect[..n]
                    && out[n..].iter().all(|&b| b == 0)
            }
            let raw = sub.raw();
            let (mut cut, mut padded) = ([0u8; 64], [0u8; 96]);
            let mut pending_missed = 0;
            while last + pending_missed < n {
                if kind == "latest_into" {
                    if !raw.has_new() {
                        sys::yield_now();
                        continue;
                    }
                    match raw.latest_into(&mut cut) {
                        Ok(Some(m)) => note(m.generation, !whole(&m, &cut), false, 0, &mut last),
                        Ok(None) => none_after_new += 1,
                        Err(ReadError::WriterStuck { .. } | ReadError::Overwritten { .. }) => {
                            stuck += 1
                        }
                        Err(e) => panic!("{kind}: {e}"),
                    }
                } else {
                    match raw.next_into(&mut padded) {
                        Ok(RawNext::Frame(m, ())) => {
                            note(
                                m.generation,
                                !whole(&m, &padded),
                                true,
                                pending_missed,
                                &mut last,
                            );
                            pending_missed = 0;
                        }
                        Ok(RawNext::Missed(k)) => {
                            missed += k;
                            pending_missed += k;
                        }
                        Ok(RawNext::Empty) => sys::yield_now(),
                        Err(ReadError::WriterStuck { .. } | ReadError::Overwritten { .. }) => {
                            stuck += 1
                        }
                        Err(e) => panic!("{kind}: {e}"),
                    }
                }
            }
            if kind == "latest_into" {
                missed = n - accepted;
            }
        }
        "next" | "wait_next" => {
            let mut pending_missed = 0;
            while last + pending_missed < n {
                let r = if kind == "next" {
                    sub.next().map_err(WaitError::Read)
                } else {
                    sub.wait_next(wait)
                };
                match r {
                    Ok(Next::Frame(s)) => {
                        accept(&s, true, pending_missed, &mut last);
                        pending_missed = 0;
                    }
                    Ok(Next::Missed(k)) => {
                        missed += k;
                        pending_missed += k;
                    }
                    Ok(Next::Empty) => sys::yield_now(),
                    // The publisher was preempted mid-write for longer than
                    // the stuck limit (a loaded machine): retry the frame.
                    Err(WaitError::Read(
                        ReadError::WriterStuck { .. } | ReadError::Overwritten { .. },
                    )) => stuck += 1,
                    Err(e) => panic!("{kind}: {e}"),
                }
            }
        }
        "latest" => {
            while last < n {
                if sub.has_new() {
                    match sub.latest() {
                        Ok(Some(s)) => accept(&s, false, 0, &mut last),
                        // `has_new` said a frame was there.
                        Ok(None) => none_after_new += 1,
                        Err(ReadError::WriterStuck { .. } | ReadError::Overwritten { .. }) => {
                            stuck += 1
                        }
                        Err(e) => panic!("{kind}: {e}"),
                    }
                } else {
                    sys::yield_now();
                }
            }
            missed = n - accepted;
        }
        "wait_latest" => {
            while last < n {
                match sub.wait_latest(wait) {
                    Ok(s) => accept(&s, false, 0, &mut last),
                    Err(WaitError::Read(
                        ReadError::WriterStuck { .. } | ReadError::Overwritten { .. },
                    )) => stuck += 1,
                    Err(e) => panic!("{kind}: {e}"),
                }
            }
            missed = n - accepted;
        }
        _ => panic!("unknown reader kind {kind}"),
    }
    say!(
        "RESULT kind={kind} accepted={accepted} torn={torn} missed={missed} disorder={} stuck={stuck} last={last} us={}",
        disorder + none_after_new,
        t.elapsed().as_micros()
    );
}

/// Reopen the topic (repairing what a killed predecessor left), report, and
/// publish as fast as possible until killed.
pub(super) fn kill_publisher(args: &[String]) {
    let topic = topic_from(args);
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    // tid: the thread that publishes (libtest runs a test on a thread of
    // its own), the one a test holds mid-write.
    say!(
        "open repaired={} next={} created={} tid={}",
        p.raw().repaired_slots(),
        p.raw().next_generation(),
        u8::from(p.raw().created()),
        shmbus_testkit::thread_id()
    );
    let mut g = p.raw().next_generation();
    loop {
        assert_eq!(p.publish(&Check::new(g)).unwrap(), g);
        g += 1;
    }
}

/// Read while publishers are being killed, until the stop file appears;
/// then drain and report.
pub(super) fn kill_reader(args: &[String]) {
    let topic = topic_from(args);
    let kind = args[4].as_str();
    let stop = PathBuf::from(&args[5]);
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    let first = sub.raw().cursor();
    let (mut accepted, mut torn, mut missed, mut disorder) = (0u64, 0u64, 0u64, 0u64);
    let (mut died, mut stuck, mut corrupt) = (0u64, 0u64, 0u64);
    let mut last = 0u64;
    let mut expect = first;
    let mut idle = 0u32;
    let mut stopping = false;
    let mut read_error = |e: &ReadError| match e {
        ReadError::PublisherDied => {
            died += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
        ReadError::WriterStuck { .. } | ReadError::Overwritten { .. } => stuck += 1,
        _ => corrupt += 1,
    };
    loop {
        let mut empty = false;
        match kind {
            "next" | "wait_next" => {
                let r = if kind == "next" {
                    sub.next().map_err(WaitError::Read)
                } else {
                    sub.wait_next(Duration::from_millis(20))
                };
                match r {
                    Ok(Next::Frame(s)) => {
                        accepted += 1;
                        torn += u64::from(is_torn(&s));
                        disorder += u64::from(s.generation != expect);
                        expect = s.generation + 1;
                    }
                    Ok(Next::Missed(k)) => {
                        missed += k;
                        expect += k;
                    }
                    Ok(Next::Empty) | Err(WaitError::Timeout | WaitError::PublisherGone) => {
                        empty = true
                    }
                    Err(WaitError::Read(e)) => read_error(&e),
                    Err(e) => panic!("unexpected wait error: {e}"),
                }
            }
            "latest" => match sub.latest() {
                Ok(Some(s)) if s.generation != last => {
                    accepted += 1;
                    torn += u64::from(is_torn(&s));
                    disorder += u64::from(s.generation < last);
                    last = s.generation;
                }
                Ok(_) => empty = true,
                Err(e) => read_error(&e),
            },
            _ => panic!("unknown reader kind {kind}"),
        }
        if empty {
            if stopping {
                break;
            }
            idle += 1;
            sys::yield_now();
            if idle % 64 == 0 && stop.exists() {
                // The parent has repaired the ring and stopped publishing:
                // drain what is left, then stop at the next empty read.
                stopping = true;
            }
        }
    }
    say!(
        "RESULT kind={kind} first={first} cursor={} accepted={accepted} torn={torn} missed={missed} disorder={disorder} died={died} stuck={stuck} corrupt={corrupt}",
        sub.raw().cursor()
    );
}

/// Open the topic and hold it until killed.
pub(super) fn hold_publisher(args: &[String]) {
    let topic = topic_from(args);
    let _p = Publisher::<Check>::open(&topic).unwrap();
    say!("open pid={}", std::process::id());
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Attach the topic read-only (`shmat` with `SHM_RDONLY`, as a subscriber
/// does) and store through the raw pointer: no safe API offers a store, so
/// this takes `unsafe`. The kernel refuses the page write and kills the
/// process with SIGSEGV.
pub(super) fn read_only_writer(args: &[String]) {
    let key: i32 = args[0].parse().unwrap();
    let id = sys::shmget(key, 0, 0).unwrap();
    // SAFETY: a plain shmat of an existing segment; the result is checked.
    let p = unsafe { libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY) };
    assert_ne!(p as isize, -1, "shmat: {}", std::io::Error::last_os_error());
    say!("attached");
    // SAFETY: deliberately not safe: the mapping is read-only and this store
    // must fault. The notify word is at offset 200, inside the segment.
    unsafe { std::ptr::write_volatile(p.cast::<u8>().add(200).cast::<u32>(), 0xdead_beef) };
    say!("survived");
}

/// The far end of the ping-pong: wait for frame i on topic A, publish frame i
/// on topic B.
pub(super) fn pong(args: &[String]) {
    let a = topic_from(&args[0..4]);
    let b = topic_from(&args[4..8]);
    let rounds: u64 = args[8].parse().unwrap();
    let mut sub = Subscriber::<Check>::attach(&a).unwrap();
    let mut p = Publisher::<Check>::open(&b).unwrap();
    say!("ready");
    for i in 1..=rounds {
        match sub.wait_next(Duration::from_secs(20)) {
            Ok(Next::Frame(s)) => assert_eq!(s.value, Check::new(i)),
            other => panic!("pong round {i}: {other:?}"),
        }
        p.publish(&Check::new(i)).unwrap();
    }
}

/// A sensor-like publisher of big frames on a one-slot ring: a frame of
/// `cap` bytes (every 8-byte word its generation), then 1 ms of sleep,
/// until killed. A big frame keeps the slot mid-write long enough for a
/// reader to land inside the write often.
pub(super) fn steady_publisher(args: &[String]) {
    let topic = topic_from(args);
    let cap: usize = args[4].parse().unwrap();
    let schema = shmbus_core::schema::schema_bytes::<Check>().unwrap();
    let mut p = shmbus_pub::RawPublisher::open(&topic, &schema, cap).unwrap();
    say!("ready pid={}", std::process::id());
    let mut frame = vec![0u8; cap];
    loop {
        let g = p.next_generation();
        for w in frame.chunks_exact_mut(8) {
            w.copy_from_slice(&g.to_le_bytes());
        }
        assert_eq!(p.publish_bytes(&frame).unwrap(), g);
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A control-loop-like reader: after the go file appears, `n` times: sleep
/// 1 ms, then `latest`. Counts what the reads returned, and how many of
/// them began with the slot mid-write (`midwrite`). If none did, it reads
/// on the same way until one does (for at most 60 s more): whether a
/// read meets a write is up to how the two sleeps fall, and the test
/// needs one that did. `reads` says how many it made.
pub(super) fn periodic_latest_reader(args: &[String]) {
    let topic = topic_from(args);
    let n: u64 = args[4].parse().unwrap();
    let go = PathBuf::from(&args[5]);
    let mut sub = shmbus_sub::RawSubscriber::attach(&topic).unwrap();
    // A bound far beyond any write's length, also on a loaded machine (the
    // armv7 suite under qemu-arm, the machine busy with builds, once saw a
    // 1 MiB write outlast the default 200 ms). A reader that spins at a
    // higher real-time priority starves the publisher for however long
    // the bound is, so it still reports stuck; one that sleeps lets the
    // write finish.
    sub.set_stuck_after(Duration::from_secs(5));
    say!("ready");
    let end = Instant::now() + Duration::from_secs(120);
    while !go.exists() {
        assert!(Instant::now() < end, "never told to go");
        std::thread::sleep(Duration::from_millis(1));
    }
    let (mut ok, mut torn, mut stuck, mut died, mut other, mut midwrite) = (0, 0, 0, 0, 0, 0);
    let mut buf = Vec::new();
    let mut reads = 0u64;
    let mut more_until = None;
    while reads < n || midwrite == 0 {
        if reads >= n {
            let until = *more_until.get_or_insert_with(|| Instant::now() + Duration::from_secs(60));
            if Instant::now() >= until {
                break;
            }
        }
        reads += 1;
        std::thread::sleep(Duration::from_millis(1));
        midwrite += u64::from(sub.segment().slot_sequence(0) & 1 == 1);
        match sub.latest_bytes(&mut buf) {
            Ok(Some(m)) => {
                ok += 1;
                let whole = buf.len() >= 8
                    && buf
                        .chunks_exact(8)
                        .all(|w| w == m.generation.to_le_bytes().as_slice());
                torn += u64::from(!whole);
            }
            Err(ReadError::WriterStuck { .. }) => {
                // The verdict: a starving reader would find the next
                // write stuck too, 5 s each.
                stuck += 1;
                break;
            }
            Err(ReadError::PublisherDied) => died += 1,
            r => {
                eprintln!("periodic-latest: unexpected {r:?}");
                other += 1;
            }
        }
    }
    say!(
        "RESULT reads={reads} ok={ok} torn={torn} stuck={stuck} died={died} other={other} midwrite={midwrite}"
    );
}

/// Role `short-of-memory`: attach the topic in `args` with this process's
/// address space limited to what it maps now, plus the segment, plus 4 MiB:
/// room to map the segment but not for a frame buffer of its 16 MB
/// frames. Prints what each reader got: `typed=` the typed attach's error,
/// `raw=` the raw attach and then `latest_bytes` into an empty buffer.
pub fn short_of_memory_reader(args: &[String]) {
    let t = topic_from(args);
    let seg_bytes: u64 = args[4].parse().unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let vm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize");
    let limit = vm_kib * 1024 + seg_bytes + (4 << 20);
    let lim = libc::rlimit {
        rlim_cur: limit as libc::rlim_t,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: sets this process's own limit from a valid struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) }, 0);
    // Is it enforced? qemu-user ignores a guest's RLIMIT_AS (it would
    // limit qemu itself): then the segment plus 8 MiB more still maps.
    let probe_len = seg_bytes as usize + (8 << 20);
    // SAFETY: a fresh private anonymous mapping, unmapped at once.
    let probe = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            probe_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if probe != libc::MAP_FAILED {
        // SAFETY: the mapping made just above.
        unsafe { libc::munmap(probe, probe_len) };
        println!("@@ limit=not enforced");
        return;
    }
    let typed = match Subscriber::<Check>::attach(&t) {
        Ok(_) => "attached".to_string(),
        Err(e @ OpenError::BufferMemory { .. }) => format!("BufferMemory: {e}"),
        Err(e) => format!("other: {e}"),
    };
    println!("@@ typed={typed}");
    let raw = match shmbus_sub::RawSubscriber::attach(&t) {
        Ok(mut r) => match r.latest_bytes(&mut Vec::new()) {
            Ok(m) => format!("read {:?}", m.map(|m| m.len)),
            Err(e @ ReadError::BufferMemory { .. }) => format!("BufferMemory: {e}"),
            Err(e) => format!("other: {e}"),
        },
        Err(e) => format!("attach failed: {e}"),
    };
    println!("@@ raw={raw}");
}
