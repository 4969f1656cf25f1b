//! Blocking waits: timeout, EINTR, publisher killed, segment removed, cross-process ping-pong.

use super::*;

#[test]
fn wait_times_out_after_at_least_the_timeout() {
    watchdog("wait_times_out", Duration::from_secs(60));
    let (topic, _guard) = unique_topic("wait-timeout");
    let _p = Publisher::<Check>::open(&topic).unwrap();
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    for ms in [0, 1, 30, 250] {
        let t = Instant::now();
        assert_eq!(
            sub.wait_next(Duration::from_millis(ms)),
            Err(WaitError::Timeout)
        );
        assert!(
            t.elapsed() >= Duration::from_millis(ms),
            "{ms} ms: {:?}",
            t.elapsed()
        );
        let t = Instant::now();
        assert_eq!(
            sub.wait_latest(Duration::from_millis(ms)),
            Err(WaitError::Timeout)
        );
        assert!(t.elapsed() >= Duration::from_millis(ms));
    }
}

static SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn signals_do_not_end_a_wait_early() {
    watchdog("signals_do_not_end_a_wait_early", Duration::from_secs(60));
    let (topic, _guard) = unique_topic("wait-eintr");
    let _p = Publisher::<Check>::open(&topic).unwrap();
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    // No SA_RESTART: the futex wait returns EINTR on every signal.
    let action = SigAction::new(
        SigHandler::Handler(count_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only touches an atomic (async-signal-safe).
    unsafe { signal::sigaction(Signal::SIGUSR1, &action) }.unwrap();
    let me = nix::sys::pthread::pthread_self();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    let pinger = std::thread::spawn(move || {
        while !d.load(Ordering::Relaxed) {
            nix::sys::pthread::pthread_kill(me, Signal::SIGUSR1).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    // Waits until at least 5 signals arrived during them: how many arrive
    // in one wait depends on how often the pinger gets the CPU (a loaded
    // machine gave it none for the whole 400 ms), so the test counts what
    // arrived and waits again, each wait held to its full timeout.
    let timeout = Duration::from_millis(400);
    let end = Instant::now() + Duration::from_secs(40);
    let (mut got, mut waits) = (0, 0);
    while got < 5 {
        assert!(
            Instant::now() < end,
            "only {got} signals arrived during {waits} waits"
        );
        let before = SIGNALS.load(Ordering::Relaxed);
        let t = Instant::now();
        let r = sub.wait_next(timeout);
        let elapsed = t.elapsed();
        got += SIGNALS.load(Ordering::Relaxed) - before;
        waits += 1;
        assert_eq!(r, Err(WaitError::Timeout), "wait {waits}");
        assert!(elapsed >= timeout, "wait {waits}: {elapsed:?}");
    }
    done.store(true, Ordering::Relaxed);
    pinger.join().unwrap();
}

#[test]
fn publisher_killed_while_subscribers_wait_is_publisher_gone() {
    watchdog("publisher_killed_while_waiting", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("wait-killed");
    let mut child = KillOnDrop(spawn("hold-pub", &topic_args(&topic)));
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    line(&mut out);
    // Attached here, before the kill: a waiter thread that attached only
    // after it (a loaded machine ran none of them in the 300 ms the test
    // used to sleep) met a dead publisher at attach time instead.
    let (tids, tid_rx) = std::sync::mpsc::channel();
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
            let tids = tids.clone();
            std::thread::spawn(move || {
                tids.send(nix::unistd::gettid().as_raw()).unwrap();
                let t = Instant::now();
                let r = if i % 2 == 0 {
                    sub.wait_next(Duration::from_secs(30)).map(|_| ())
                } else {
                    sub.wait_latest(Duration::from_secs(30)).map(|_| ())
                };
                (r, t.elapsed())
            })
        })
        .collect();
    // Killed once every waiter sleeps in its wait (a fixed 300 ms was no
    // promise that any had started on a loaded machine).
    for _ in 0..3 {
        let tid = tid_rx.recv_timeout(Duration::from_secs(60)).unwrap();
        shmbus_testkit::wait_thread_asleep(tid).unwrap();
    }
    signal::kill(Pid::from_raw(child.0.id() as i32), Signal::SIGKILL).unwrap();
    child.0.wait().unwrap();
    for w in waiters {
        let (r, elapsed) = w.join().unwrap();
        assert_eq!(r, Err(WaitError::PublisherGone));
        // Far below the 30 s timeout: the liveness check ended it.
        assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    }
    // What the reader prints says what to do (it said only "the topic's
    // publisher is not running").
    let msg = WaitError::PublisherGone.to_string();
    assert!(
        msg.contains("start it again") && msg.contains("wait_for_publisher"),
        "{msg}"
    );
}

/// A frame published just before the topic is removed, between a wait's
/// check for frames and its check for removal, is still returned: the
/// wait looks for frames once more before it says `Removed`. It said
/// `Removed` at once, and `shmbus record` lost the last frames of a
/// recreated topic on a loaded machine. The publish and the removal are
/// made from inside the wait's own check, which is exactly that window.
#[test]
fn a_frame_published_just_before_removal_is_returned_by_the_wait() {
    watchdog("removed_after_publish", Duration::from_secs(60));
    let (topic, _guard) = unique_topic("wait-removed-late-frame");
    let mut publisher = Some(Publisher::<Check>::open(&topic).unwrap());
    let mut sub = shmbus_sub::RawSubscriber::attach(&topic).unwrap();
    let shmid = sub.segment().shmid();
    let mut frame = Vec::new();
    let mut checks = 0;
    let r = sub.wait_until(Duration::from_secs(30), |s| {
        checks += 1;
        match s.next_bytes(&mut frame)? {
            shmbus_sub::RawNext::Frame(meta, ()) => Ok(Some(meta.generation)),
            _ => {
                if let Some(mut p) = publisher.take() {
                    p.publish(&Check::new(1)).unwrap();
                    drop(p);
                    sys::shm_remove(shmid).unwrap();
                }
                Ok(None)
            }
        }
    });
    assert_eq!(r, Ok(1), "after {checks} checks");
    assert!(sub.is_removed());
}

#[test]
fn segment_removed_while_waiting_is_removed() {
    watchdog("segment_removed_while_waiting", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("wait-removed");
    let mut child = KillOnDrop(spawn("hold-pub", &topic_args(&topic)));
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    line(&mut out);
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    let shmid = sub.raw().segment().shmid();
    // Removed once this thread sleeps in its wait, not after a fixed
    // 200 ms that a loaded machine may spend before the wait begins.
    let me = nix::unistd::gettid().as_raw();
    let remover = std::thread::spawn(move || {
        shmbus_testkit::wait_thread_asleep(me).unwrap();
        sys::shm_remove(shmid).unwrap(); // what `ipcrm -m` does
    });
    let t = Instant::now();
    assert_eq!(
        sub.wait_next(Duration::from_secs(30)).map(|_| ()),
        Err(WaitError::Removed)
    );
    assert!(t.elapsed() < Duration::from_secs(20));
    remover.join().unwrap();
    assert!(sub.is_removed());
    // The mapping stays valid: reads still work, nothing crashes.
    assert_eq!(sub.latest().unwrap(), None);
}

#[test]
fn ping_pong_across_processes_loses_no_wake_up() {
    let rounds = scaled(5000, 100);
    watchdog("ping_pong", Duration::from_secs(60 + rounds / 10));
    let (a, _ga) = unique_topic("ping");
    let (b, _gb) = unique_topic("pong");
    let mut pa = Publisher::<Check>::open(&a).unwrap();
    let mut args = topic_args(&a);
    args.extend(topic_args(&b));
    args.push(rounds.to_string());
    let mut child = KillOnDrop(spawn("pong", &args));
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    assert_eq!(line(&mut out), "ready");
    let mut sb = Subscriber::<Check>::wait_for_topic(&b, Duration::from_secs(30)).unwrap();
    let t = Instant::now();
    for i in 1..=rounds {
        pa.publish(&Check::new(i)).unwrap();
        match sb.wait_next(Duration::from_secs(20)) {
            Ok(Next::Frame(s)) => assert_eq!(s.value, Check::new(i)),
            other => panic!("ping round {i}: {other:?} (a lost wake-up times out here)"),
        }
    }
    let elapsed = t.elapsed();
    let st = wait_exit(&mut child.0, Duration::from_secs(30), "pong");
    assert!(st.success(), "{st:?}");
    println!(
        "ping-pong: {rounds} round trips in {elapsed:?} ({:?} per round trip)",
        elapsed / rounds as u32
    );
}

/// `shmbus rm` of a topic, then a new publisher at its key (the type
/// changed, say): a subscriber still attached to the removed segment asked
/// `publisher()` and got `Alive` with the new publisher's pid, a process
/// that never writes its segment. The lock at the key speaks for a removed
/// segment only if its holder is the pid that opened that segment (the
/// header's `publisher_pid`); otherwise `NoLock`. A segment removed
/// (`ipcrm -m`) under its live publisher is still `Alive`.
#[test]
fn a_removed_segment_is_not_credited_with_the_next_publisher_at_its_key() {
    use shmbus_core::PublisherStatus;
    watchdog("removed_segment_new_publisher", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("removed-new-pub");
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    p.publish(&Check::new(1)).unwrap();
    let mut sub = Subscriber::<Check>::attach(&topic).unwrap();
    sys::shm_remove(p.raw().shmid()).unwrap();
    assert!(sub.is_removed());
    let me = std::process::id() as i32;
    assert_eq!(sub.publisher(), PublisherStatus::Alive { pid: me });
    // The topic is gone (segment and lock), a new publisher at the key.
    drop(p);
    shmbus_core::lock::remove_lock(topic.key).unwrap();
    let mut child = KillOnDrop(spawn("hold-pub", &topic_args(&topic)));
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    assert!(line(&mut out).starts_with("open"));
    assert!(shmbus_core::lock::publisher_status(topic.key).is_alive());
    assert_eq!(sub.publisher(), PublisherStatus::NoLock);
    assert_eq!(sub.latest().unwrap().unwrap().generation, 1);
    assert_eq!(
        sub.wait_next(Duration::from_secs(30)),
        Err(WaitError::Removed)
    );
}

/// The lock removed (`ipcrm -s`, logind's `RemoveIPC`) under a publisher
/// that keeps publishing: a wait reads on. It said `PublisherGone` at its
/// next liveness check, and a reader that then waited for the publisher to
/// be alive again (the examples, in Rust, C and Python) read nothing until
/// the publisher took a new lock, up to half a second: about 400 frames
/// lost at 1 kHz. Here each call of the wait's own check publishes one
/// frame, so every liveness check (100 ms apart) has frames published
/// since the one before, whatever the machine's load. Once nothing more
/// is published, the topic without a lock is `PublisherGone` again.
#[test]
fn a_wait_reads_on_when_the_lock_is_removed_under_a_live_publisher() {
    use shmbus_core::PublisherStatus;
    use shmbus_sub::RawNext;
    watchdog("wait_lock_removed_live", Duration::from_secs(120));
    let (topic, _guard) = unique_topic("wait-lock-removed-live");
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    p.publish(&Check::new(1)).unwrap();
    let mut sub = shmbus_sub::RawSubscriber::attach(&topic).unwrap();
    assert!(shmbus_core::lock::remove_lock(topic.key).unwrap());
    assert_eq!(sub.publisher(), PublisherStatus::NoLock);

    let mut frame = Vec::new();
    let mut published = 1u64;
    let mut read = 0u64;
    let mut checks = 0u32;
    let start = Instant::now();
    // 500 ms of the wait's own time: four or more liveness checks.
    let r = sub.wait_until(Duration::from_secs(60), |s| {
        checks += 1;
        while let RawNext::Frame(meta, ()) = s.next_bytes(&mut frame)? {
            read = meta.generation;
        }
        if start.elapsed() < Duration::from_millis(500) {
            published += 1;
            p.publish(&Check::new(published)).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            Ok(None)
        } else {
            Ok(Some(read))
        }
    });
    assert_eq!(r, Ok(published), "after {checks} checks");

    // Nothing published any more: gone, within a check or two.
    let t = Instant::now();
    let r = sub.wait_until(Duration::from_secs(30), |s| {
        match s.next_bytes(&mut frame)? {
            RawNext::Frame(meta, ()) => Ok(Some(meta.generation)),
            _ => Ok(None),
        }
    });
    assert_eq!(r, Err(WaitError::PublisherGone));
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}

/// `wait_for_publisher`, the one loop every long-running reader runs after
/// `PublisherGone`: it returns when frames come although no publisher
/// holds the lock (a lock removed under a publisher that publishes on),
/// once, not again for the same frames; when a publisher takes the lock
/// again; with frames published before a removal first, then `Removed`.
/// Every publish and removal comes while the waiting thread sleeps.
#[test]
fn wait_for_publisher_returns_on_frames_a_new_lock_or_removal() {
    use shmbus_core::PublisherStatus;
    use shmbus_sub::RawNext;
    watchdog("wait_for_publisher", Duration::from_secs(240));
    let (topic, _guard) = unique_topic("wait-for-publisher");
    let p = Publisher::<Check>::open(&topic).unwrap();
    let mut sub = shmbus_sub::RawSubscriber::attach(&topic).unwrap();
    let shmid = sub.segment().shmid();
    assert!(shmbus_core::lock::remove_lock(topic.key).unwrap());
    let mut frame = Vec::new();
    assert_eq!(wait_frame(&mut sub), Err(WaitError::PublisherGone));
    // Nothing published since: it waits, and says so at its timeout.
    let t = Instant::now();
    assert_eq!(
        sub.wait_for_publisher(Duration::from_millis(300)),
        Err(WaitError::Timeout)
    );
    assert!(t.elapsed() >= Duration::from_millis(300));

    // A frame from the publisher without its lock, published while this
    // thread sleeps in the wait.
    let me = nix::unistd::gettid().as_raw();
    let publisher = std::thread::spawn(move || {
        let mut p = p;
        shmbus_testkit::wait_thread_asleep(me).unwrap();
        p.publish(&Check::new(2)).unwrap();
        p
    });
    assert_eq!(
        sub.wait_for_publisher(Duration::from_secs(60)),
        Ok(PublisherStatus::NoLock)
    );
    let p = publisher.join().unwrap();
    assert!(matches!(sub.next_bytes(&mut frame), Ok(RawNext::Frame(m, ())) if m.generation == 1));
    // The same frame does not end the next call.
    assert_eq!(
        sub.wait_for_publisher(Duration::from_millis(300)),
        Err(WaitError::Timeout)
    );

    // That publisher exits; a new one takes the lock (and publishes
    // nothing) while this thread sleeps.
    drop(p);
    let p = restart_while_asleep(&topic, &mut sub);

    // A frame, then the removal, while this thread sleeps: the frame
    // first, then `Removed`.
    assert!(shmbus_core::lock::remove_lock(topic.key).unwrap());
    assert_eq!(wait_frame(&mut sub), Err(WaitError::PublisherGone));
    let remover = std::thread::spawn(move || {
        let mut p = p;
        shmbus_testkit::wait_thread_asleep(me).unwrap();
        p.publish(&Check::new(3)).unwrap();
        drop(p);
        sys::shm_remove(shmid).unwrap();
    });
    let r = sub.wait_for_publisher(Duration::from_secs(60));
    remover.join().unwrap();
    // Whether the wait woke on the frame or at the removal, the frame was
    // published first: it is reported, and read, before `Removed`.
    assert_eq!(r, Ok(PublisherStatus::NoLock));
    assert!(matches!(sub.next_bytes(&mut frame), Ok(RawNext::Frame(m, ())) if m.generation == 2));
    assert_eq!(
        sub.wait_for_publisher(Duration::from_secs(60)),
        Err(WaitError::Removed)
    );
}
/// Called without a `PublisherGone` first (a reader that read every frame
/// of a publisher that has since exited), `wait_for_publisher` waits for a
/// new publisher or a new frame. It returned at once, with the dead
/// publisher's status, for frames the reader had already read: "frames
/// came although nobody holds the lock", which was not so (seen as a
/// `PublisherGone` right after it in the CLI's restart test under
/// qemu-arm).
#[test]
fn wait_for_publisher_does_not_return_for_frames_already_read() {
    use shmbus_sub::RawNext;
    watchdog("wait_for_publisher_already_read", Duration::from_secs(240));
    let (topic, _guard) = unique_topic("wait-for-publisher-read");
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    let mut sub = shmbus_sub::RawSubscriber::attach(&topic).unwrap();
    let mut frame = Vec::new();
    for i in 1..=3 {
        p.publish(&Check::new(i)).unwrap();
    }
    for g in 1..=3 {
        assert!(
            matches!(sub.next_bytes(&mut frame), Ok(RawNext::Frame(m, ())) if m.generation == g)
        );
    }
    drop(p);
    assert_eq!(
        sub.wait_for_publisher(Duration::from_millis(300)),
        Err(WaitError::Timeout)
    );
    // A new publisher, taking the lock while this thread sleeps: `Alive`.
    restart_while_asleep(&topic, &mut sub);
}

/// A stopped topic (its publisher exited, so its session's waiter segment
/// is gone) costs about ten wake-ups a second, not a hundred, both in a
/// loop of reads' waits that each end `PublisherGone` (as `shmbus record`
/// reads) and in `wait_for_publisher`, whether the publisher left its lock
/// free or had lost it (`ipcrm -s`) before it exited. The failed
/// registration made them poll every 10 ms for as long as the topic stayed
/// stopped (strace of `shmbus echo` on such a topic: 490 sleeps and about
/// 1,500 System V calls in 5 s). The wait still ends when a new publisher
/// takes the lock. Counted with the thread's voluntary context switches,
/// one per sleep: a loaded machine makes sleeps longer, so fewer.
#[test]
fn waits_on_a_stopped_topic_sleep_whole_slices() {
    use shmbus_core::PublisherStatus;
    watchdog("waits_on_a_stopped_topic", Duration::from_secs(240));
    let (topic, _guard) = unique_topic("wait-stopped");
    let mut p = Publisher::<Check>::open(&topic).unwrap();
    p.publish(&Check::new(1)).unwrap();
    let mut sub = shmbus_sub::RawSubscriber::attach(&topic).unwrap();
    let mut frame = Vec::new();
    assert!(sub.latest_bytes(&mut frame).unwrap().is_some());
    assert!(
        p.raw().waiter_shmid().is_some(),
        "the topic registers waiters"
    );
    drop(p);
    assert_eq!(sub.publisher(), PublisherStatus::NotRunning);
    // Whole 100 ms slices: about 10 sleeps a second. Polling: over 90.
    let (sleeps, waits) = sleeps_in(|| {
        let t = Instant::now();
        let mut waits = 0;
        while t.elapsed() < Duration::from_secs(1) {
            assert_eq!(wait_frame(&mut sub), Err(WaitError::PublisherGone));
            waits += 1;
        }
        waits
    });
    assert!(
        sleeps <= 30,
        "{sleeps} sleeps in 1 s of {waits} waits for the next frame of a stopped topic"
    );
    let (sleeps, r) = sleeps_in(|| sub.wait_for_publisher(Duration::from_secs(1)));
    assert_eq!(r, Err(WaitError::Timeout));
    assert!(
        sleeps <= 30,
        "{sleeps} sleeps in 1 s of waiting for a stopped topic's publisher"
    );
    // A gone waiter segment is not a failure to register: nothing to report.
    assert_eq!(sub.waiter_error(), None);

    // A new publisher takes the lock while this thread sleeps.
    let p = restart_while_asleep(&topic, &mut sub);

    // Its lock is removed, then it exits: no lock, and no session.
    assert!(shmbus_core::lock::remove_lock(topic.key).unwrap());
    drop(p);
    assert_eq!(sub.publisher(), PublisherStatus::NoLock);
    let (sleeps, r) = sleeps_in(|| sub.wait_for_publisher(Duration::from_secs(1)));
    assert_eq!(r, Err(WaitError::Timeout));
    assert!(
        sleeps <= 30,
        "{sleeps} sleeps in 1 s of waiting for the publisher of a topic without a lock"
    );
}

/// A new publisher of `topic` (this process) takes the lock, and publishes
/// nothing, while this thread sleeps in `wait_for_publisher`, which then
/// says it is alive.
fn restart_while_asleep(topic: &Topic, sub: &mut shmbus_sub::RawSubscriber) -> Publisher<Check> {
    let me = nix::unistd::gettid().as_raw();
    let t = topic.clone();
    let restart = std::thread::spawn(move || {
        shmbus_testkit::wait_thread_asleep(me).unwrap();
        Publisher::<Check>::open(&t).unwrap()
    });
    let r = sub.wait_for_publisher(Duration::from_secs(60));
    let p = restart.join().unwrap();
    assert_eq!(
        r,
        Ok(shmbus_core::PublisherStatus::Alive {
            pid: std::process::id() as i32
        })
    );
    p
}

/// The voluntary context switches of this thread while `f` runs (each
/// sleep is one), and what `f` returned.
fn sleeps_in<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let switches = || shmbus_testkit::voluntary_switches().unwrap();
    let before = switches();
    let r = f();
    (switches() - before, r)
}

/// Wait up to 30 s for the next frame in order; its generation.
fn wait_frame(sub: &mut shmbus_sub::RawSubscriber) -> Result<u64, WaitError> {
    let mut frame = Vec::new();
    sub.wait_until(Duration::from_secs(30), |s| {
        match s.next_bytes(&mut frame)? {
            shmbus_sub::RawNext::Frame(m, ()) => Ok(Some(m.generation)),
            _ => Ok(None),
        }
    })
}
