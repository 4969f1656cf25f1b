//! # shmbus-bench: what a publish, a poll and a handoff cost
//!
//! The engine of `shmbus bench`. In one run, with the mechanisms
//! interleaved in rounds (A B C A B C ...) so that machine drift hits all of
//! them alike, it measures:
//!
//! - two-process handoff latency (one way = round trip / 2, see
//!   [`handoff`]) for shmbus busy-poll and blocking wait, next to the
//!   hand-written floors ([`floors`]: atomic word, bare seqlock, raw futex)
//!   and the alternatives ([`alts`]: Unix datagram socket, pipe, POSIX
//!   message queue, iceoryx2), pinned to two different CPUs and unpinned;
//! - in-process costs ([`micro`]): publish (64 B, 256 B, 1 KiB, notify on
//!   and off), poll-nothing-new against a bare load, read per new frame,
//!   postcard encoding of typical messages;
//! - fan-out ([`fanout`]): publish and read cost with 1..64 subscriber
//!   processes.
//!
//! Peers are this executable run again (`<exe> bench --peer ROLE ...`,
//! behind `SHMBUS_TEST_RUNNER` when set). Results: a table, JSON
//! (`--json`) and an SVG plot (`--plot`). Every System V object the run
//! creates is removed at the end, also when a measurement fails.
#![warn(missing_docs)]

pub mod alts;
pub mod fanout;
pub mod floors;
pub mod frames;
pub mod handoff;
pub mod micro;
pub mod opts;
pub mod os;
pub mod plot;
pub mod report;
pub mod stats;

use std::process::ExitCode;
use std::time::Duration;

use handoff::{Handoff, Mech};
use opts::{BenchArgs, Opts};
use report::{Dist, Report};

/// Run `shmbus bench` with parsed arguments; `command` is the command line
/// as typed, kept in the report. `bench --peer ROLE ...` is the peer side
/// of a measurement (internal).
pub fn run(args: &BenchArgs, command: &[String]) -> ExitCode {
    if !args.peer.is_empty() {
        return match peer(&args.peer) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shmbus bench peer: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let opts = args.opts();
    let mut keys = Keys::new();
    remove_on_stop(&keys);
    let result = run_opts(&opts, command, &mut keys);
    if result.is_err() && shmbus_toolbox::stop::requested() {
        // The error is the interrupt's doing (the watcher removes the run's
        // topics, so a measurement finds its topic gone): the watcher
        // reports the interrupt and exits 130 once its cleanup is done.
        loop {
            std::thread::park();
        }
    }
    drop(keys);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmbus bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// System V keys for the run's topics: `0x62` ('b') in the top byte, 16
/// bits from the pid, then a counter. A key is handed out only if nothing
/// is at it, or a topic an earlier bench of this user left (killed), which
/// is removed first; any other program's memory or semaphore at a key of
/// the range (`ftok(path, 'b')` makes keys with that top byte) is skipped
/// and never touched. When this is dropped (or the run is interrupted),
/// the run's own topics at the keys it handed out are removed, and nothing
/// else.
#[derive(Debug)]
pub struct Keys {
    base: i32,
    /// The offset of the next key to try (1 to 255).
    next: i32,
    /// The keys handed out, shared with the stop watcher.
    used: std::sync::Arc<std::sync::Mutex<Vec<i32>>>,
}

impl Keys {
    /// Keys for this process.
    pub fn new() -> Keys {
        Keys::for_pid(std::process::id())
    }

    /// The keys a bench process with this pid uses (tests check that
    /// none is left behind).
    pub fn for_pid(pid: u32) -> Keys {
        let h = (pid ^ (pid >> 16)).wrapping_mul(0x9e37_79b1) >> 16;
        Keys {
            base: (0x6200_0000 | ((h & 0xffff) << 8)) as i32,
            next: 1,
            used: Default::default(),
        }
    }

    /// The range of keys handed out by [`Keys::take`] (at most 255).
    pub fn range(&self) -> core::ops::RangeInclusive<i32> {
        self.base + 1..=self.base + 255
    }

    /// The next free key of the range (see the type's docs). An error
    /// when every key left in the range is another program's.
    pub fn take(&mut self) -> Result<i32, String> {
        while self.next <= 255 {
            let k = self.base + self.next;
            self.next += 1;
            if claim(k) {
                lock_ignoring_poison(&self.used).push(k);
                return Ok(k);
            }
        }
        Err(format!(
            "no free System V key left in 0x{:08x}..=0x{:08x}: other programs' shared memory or semaphores are at them (`ipcs -m -s`)",
            self.base + 1,
            self.base + 255
        ))
    }

    /// The keys handed out so far.
    pub fn used(&self) -> Vec<i32> {
        lock_ignoring_poison(&self.used).clone()
    }
}

fn lock_ignoring_poison<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether key `k` may be this run's: nothing is at it, or only a topic
/// an earlier bench of this user left, removed now.
fn claim(k: i32) -> bool {
    let absent = |r: Result<i32, shmbus_core::sys::SysError>| matches!(r, Err(e) if e.errno == shmbus_core::sys::Errno::ENOENT);
    let free =
        |k| absent(shmbus_core::sys::shmget(k, 0, 0)) && absent(shmbus_core::sys::sem_lookup(k));
    free(k) || (remove_bench_topic(k, false) && free(k))
}

/// Remove what a bench left at `key`: the segment, only if it is a shmbus
/// topic named `bench/...` that this user created and whose publisher is
/// gone (or is this process, when `this_run`), with its lock
/// ([`shmbus_toolbox::cleanup::remove_idle_topic`]); with no segment, the
/// lock alone when the key is one this run handed out (it was free then,
/// so the lock is the run's). Anything else at the key is another
/// program's and stays. Returns whether a segment went or none was there.
fn remove_bench_topic(key: i32, this_run: bool) -> bool {
    use shmbus_core::sys;
    use shmbus_toolbox::cleanup::remove_idle_topic;
    let me = nix::unistd::geteuid().as_raw();
    let own = this_run.then(|| std::process::id() as i32);
    match sys::shmget(key, 0, 0) {
        Ok(id) => {
            let ours = sys::shm_stat(id).is_ok_and(|st| st.cuid == me)
                && shmbus_core::Segment::attach_shmid(id, key)
                    .is_ok_and(|s| s.info().name.starts_with("bench/"));
            ours && remove_idle_topic(Some(id), key, me, own)
        }
        Err(e) if e.errno == sys::Errno::ENOENT => {
            if this_run {
                remove_idle_topic(None, key, me, own);
            }
            true
        }
        Err(_) => false,
    }
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new()
    }
}

/// What may make System V objects at the run's keys: a topic opened by
/// this process, or a peer started (a peer opens its topics before it says
/// `ready`). The stop watcher must remove the run's topics after the last
/// of them, not while one is under way: it sets `stopping`, after which no
/// new one starts ([`Creations::run`] parks its thread for good), then
/// waits until none is in flight. A fixed pause did this before: 50 ms,
/// and an open under `qemu-arm` took longer, so the run's first two topics
/// were made after their removal and left behind.
///
/// Dekker's pattern on two sequentially consistent atomics: a creation
/// counts itself in, then looks at `stopping`; the watcher sets
/// `stopping`, then looks at the count. One of the two sees the other.
#[derive(Debug, Default)]
pub struct Creations {
    stopping: std::sync::atomic::AtomicBool,
    in_flight: std::sync::atomic::AtomicUsize,
}

impl Creations {
    /// A new set, not stopping.
    pub const fn new() -> Creations {
        Creations {
            stopping: std::sync::atomic::AtomicBool::new(false),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Run `f`, which may make objects at the run's keys, unless the run
    /// is stopping: then park the calling thread for good (the process
    /// exits from the watcher thread).
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        use std::sync::atomic::Ordering::SeqCst;
        self.in_flight.fetch_add(1, SeqCst);
        if self.stopping.load(SeqCst) {
            self.in_flight.fetch_sub(1, SeqCst);
            loop {
                std::thread::park();
            }
        }
        // Counted out also if `f` panics.
        struct Out<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Out<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _out = Out(&self.in_flight);
        f()
    }

    /// Stop new creations, then wait until none is in flight, for at most
    /// `limit`. False if one still was at the limit.
    pub fn stop(&self, limit: Duration) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.stopping.store(true, SeqCst);
        let start = std::time::Instant::now();
        while self.in_flight.load(SeqCst) != 0 {
            if start.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

/// The bench's own: see [`Creations`].
static CREATIONS: Creations = Creations::new();

/// Run `f`, which opens a topic at one of the run's keys or starts a peer,
/// so that an interrupt's cleanup comes after it ([`Creations`]).
pub(crate) fn creating<R>(f: impl FnOnce() -> R) -> R {
    CREATIONS.run(f)
}

/// Ctrl-C or `kill` (SIGINT, SIGTERM, SIGHUP) used to end the bench
/// before `Keys` was dropped, leaving six segments and six semaphore sets
/// per interrupted run. The measurement loops do not look at a flag, so a
/// watcher thread does what the drop would, in an order that leaves
/// nothing: it stops new topics and peers and waits for the ones under
/// way ([`Creations`]), kills the peers (a peer can create a topic at one
/// of the run's keys) and waits until they are dead, removes the run's
/// topics at the keys it handed out, then exits (130). Other programs'
/// objects in the key range stay.
fn remove_on_stop(keys: &Keys) {
    let used = keys.used.clone();
    let watcher = std::thread::Builder::new().spawn(move || {
        while !shmbus_toolbox::stop::requested() {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !CREATIONS.stop(Duration::from_secs(30)) {
            eprintln!(
                "shmbus bench: a topic or peer was still being made 30 s after the interrupt; removing the run's topics anyway"
            );
        }
        kill_children(Duration::from_secs(10));
        for k in lock_ignoring_poison(&used).clone() {
            remove_bench_topic(k, true);
        }
        eprintln!("shmbus bench: interrupted; the run's topics were removed");
        std::process::exit(130);
    });
    // Catch the signals only if the watcher runs: without it (a process
    // limit) they keep their default action, and Ctrl-C still ends the
    // bench (leaving its topics, as a SIGKILL does).
    if watcher.is_ok() {
        let _ = shmbus_toolbox::stop::install();
    }
}

/// SIGKILL every live child of this process (the peers) until none is
/// left alive, for at most `limit`. Only our own unreaped children are
/// found (`/proc/*/stat` with our pid as parent), so no pid can have been
/// reused by another process.
fn kill_children(limit: Duration) {
    let me = std::process::id();
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        let mut alive = 0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces and ')'.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let mut f = rest.split_whitespace();
            let (state, ppid) = (f.next(), f.next().and_then(|p| p.parse::<u32>().ok()));
            if ppid == Some(me) && state != Some("Z") && state != Some("X") {
                alive += 1;
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if alive == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        for k in self.used() {
            remove_bench_topic(k, true);
        }
    }
}

fn peer(args: &[String]) -> Result<(), String> {
    let role = args.first().ok_or("--peer needs a role")?.as_str();
    os::inherit_spin_limit();
    // A peer never outlives the bench that started it.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let arg = |k: &str| -> Result<String, String> {
        args[1..]
            .iter()
            .find_map(|a| a.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .map(str::to_string)
            .ok_or_else(|| format!("peer role {role} needs {k}=..."))
    };
    if let Ok(cpu) = arg("cpu") {
        os::pin_to(cpu.parse().map_err(|_| "cpu= wants a number")?)?;
    }
    let scratch = || -> Result<os::Scratch, String> {
        os::Scratch::attach(arg("shmid")?.parse().map_err(|_| "shmid= wants a number")?)
    };
    let ready = || println!("ready");
    match role {
        "atomic" => {
            let s = scratch()?;
            ready();
            floors::atomic_peer(&s)?;
        }
        "seqlock" => {
            let s = scratch()?;
            ready();
            floors::seqlock_peer(&s)?;
        }
        "layout" => {
            let s = scratch()?;
            ready();
            floors::layout_peer(&s)?;
        }
        "futex" => {
            let s = scratch()?;
            ready();
            floors::futex_peer(&s)?;
        }
        "shmbus_poll" | "shmbus_wait" => {
            let ping = handoff::parse_topic(&arg("ping")?)?;
            let pong = handoff::parse_topic(&arg("pong")?)?;
            handoff::shmbus_peer::<frames::Frame64>(role == "shmbus_wait", &ping, &pong)?;
        }
        "shmbus_poll_bytes" => {
            let ping = handoff::parse_topic(&arg("ping")?)?;
            let pong = handoff::parse_topic(&arg("pong")?)?;
            handoff::shmbus_peer::<frames::Frame64Bytes>(false, &ping, &pong)?;
        }
        "shmbus_raw" | "shmbus_raw_at" | "shmbus_raw_fixed" => {
            let ping = handoff::parse_topic(&arg("ping")?)?;
            let pong = handoff::parse_topic(&arg("pong")?)?;
            let mode = handoff::RawMode::of_role(role).ok_or("not a raw role")?;
            handoff::raw_peer(&ping, &pong, mode)?;
        }
        "unix" | "pipe" | "mq" => alts::peer(role, arg)?,
        "fanout_sub" => fanout::subscriber(&arg("topic")?, arg("mode")? == "wait")?,
        other => return Err(format!("unknown peer role '{other}'")),
    }
    Ok(())
}

fn progress(opts: &Opts, msg: &str) {
    if !opts.json {
        eprintln!("shmbus bench: {msg}");
    }
}

fn run_opts(opts: &Opts, args: &[String], keys: &mut Keys) -> Result<(), String> {
    let cpus = os::Cpus::get();
    os::set_spin_limit(cpus.count());
    let clock_ns = stats::clock_overhead_ns();
    let mut rep = Report::new(opts, args, clock_ns, cpus.count());
    let pair = if opts.pin { cpus.pair() } else { None };
    if pair.is_none() {
        rep.skipped.push(if opts.pin {
            format!("pinned variants: only {} CPU available", cpus.count())
        } else {
            "pinned variants: --no-pin".to_string()
        });
    }
    if let Some(f) = &opts.peer_json {
        let text =
            std::fs::read_to_string(f).map_err(|e| format!("--peer-json {}: {e}", f.display()))?;
        let pinned = text.contains("\"pinned\":true");
        let mut rtt = alts::parse_iceoryx2(&text)?;
        rep.add_handoff(
            Mech::Iceoryx2,
            pinned,
            &mut rtt,
            &[],
            "merged from --peer-json (not interleaved)",
        );
    }
    let budget = Duration::from_millis(if opts.quick { 400 } else { 1500 });
    let mut h = Handoff::new(keys, opts.iceoryx2.clone(), budget)?;
    let modes: Vec<Option<(usize, usize)>> = match pair {
        Some(p) => vec![Some(p), None],
        None => vec![None],
    };
    let mechs: Vec<Mech> = Mech::ALL
        .iter()
        .copied()
        .filter(|m| h.available(*m))
        .collect();
    if !h.available(Mech::Iceoryx2) && opts.peer_json.is_none() {
        rep.skipped
            .push("iceoryx2: no peer binary (--iceoryx2 PATH; see bench/run.sh)".into());
    }
    let mut dists: Vec<Dist> = Vec::new();
    let mut failed: Vec<(Mech, bool)> = Vec::new();
    let handoff_rounds = if opts.runs("handoff") { opts.rounds } else { 0 };
    for round in 0..handoff_rounds {
        progress(
            opts,
            &format!("handoff round {}/{}", round + 1, opts.rounds),
        );
        for mode in &modes {
            cpus.pin(mode.map(|(a, _)| a));
            for &m in &mechs {
                let pinned = mode.is_some();
                if failed.contains(&(m, pinned)) {
                    continue;
                }
                match h.batch(m, opts.iters, *mode) {
                    Ok(rtt) => report::push_samples(&mut dists, m, pinned, round, rtt),
                    Err(e) => {
                        rep.skipped.push(format!(
                            "{} ({}): {e}",
                            m.label(),
                            if pinned { "pinned" } else { "unpinned" }
                        ));
                        failed.push((m, pinned));
                    }
                }
            }
            cpus.pin(None);
        }
    }
    for d in &mut dists {
        rep.add_handoff(d.mech, d.pinned, &mut d.samples, &d.rounds, "");
    }
    drop(h);

    progress(opts, "in-process costs");
    let mut items = if opts.runs("micro") {
        micro::items(keys, clock_ns)?
    } else {
        Vec::new()
    };
    let per_round = opts.micro_samples.div_ceil(opts.rounds).max(1);
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); items.len()];
    for _ in 0..opts.rounds {
        for (it, s) in items.iter_mut().zip(samples.iter_mut()) {
            for _ in 0..per_round {
                s.push((it.run)());
            }
        }
    }
    for (it, s) in items.iter().zip(samples.iter_mut()) {
        rep.add_micro(it.key, it.label, s, per_round);
    }
    drop(items);

    // Fan-out: space publishes by N x the measured futex round trip so
    // woken subscribers get back to sleep (scales itself under emulation).
    let futex_rtt = rep
        .handoff_median("futex", false)
        .map(|one_way| 2.0 * one_way + clock_ns)
        .unwrap_or(50_000.0);
    let fanout_counts: &[usize] = if opts.runs("fanout") {
        &opts.fanout
    } else {
        &[]
    };
    // The polling ways also pinned (publisher and subscribers on two
    // different CPUs) when possible; see `fanout::Way::all`.
    let fanout_ways = fanout::Way::all(pair.is_some());
    for &n in fanout_counts {
        for &way in &fanout_ways {
            progress(
                opts,
                &format!("fan-out: {n} subscribers, notify {}", way.label()),
            );
            let cpu_pair = pair.filter(|_| way.pinned);
            cpus.pin(cpu_pair.map(|(a, _)| a));
            let floor = if way.waiting { 200_000.0 } else { 1_000_000.0 };
            let period = Duration::from_nanos((futex_rtt * n as f64).max(floor) as u64);
            match fanout::point(
                keys,
                n,
                way,
                opts.fanout_frames,
                period,
                clock_ns,
                cpu_pair.map(|(_, b)| b),
            ) {
                Ok(p) => rep.fanout.push(p),
                Err(e) => rep.skipped.push(format!("fan-out {n} subscribers: {e}")),
            }
            cpus.pin(None);
        }
    }
    rep.finish();

    let text = rep.table();
    let json = serde_json::to_string_pretty(&rep).map_err(|e| e.to_string())?;
    let svg = plot::svg(&rep, &dists);
    if opts.json {
        println!("{json}");
    } else {
        print!("{text}");
    }
    if let Some(p) = &opts.plot {
        std::fs::write(p, &svg).map_err(|e| format!("--plot {}: {e}", p.display()))?;
    }
    if let Some(dir) = &opts.out {
        std::fs::create_dir_all(dir).map_err(|e| format!("--out {}: {e}", dir.display()))?;
        for (name, body) in [
            ("bench.txt", &text),
            ("bench.json", &json),
            ("bench.svg", &svg),
        ] {
            std::fs::write(dir.join(name), body)
                .map_err(|e| format!("--out {}: {e}", dir.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// An interrupt's cleanup waits for a topic open (or peer start) under
    /// way, however long it takes, and one that starts after the stop
    /// never runs. The 50 ms pause this replaced lost to a slow open
    /// under `qemu-arm`: the open made its topic after the removal.
    /// A thread inside `c.run`, held there (as a slow open would be)
    /// until the sender is used or dropped: returned once it is inside.
    fn held_creation(c: &'static Creations) -> (std::thread::JoinHandle<()>, mpsc::Sender<()>) {
        let (inside_tx, inside_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let creator = std::thread::spawn(move || {
            c.run(|| {
                inside_tx.send(()).unwrap();
                let _ = go_rx.recv();
            })
        });
        inside_rx.recv().unwrap();
        (creator, go_tx)
    }

    #[test]
    fn the_cleanup_waits_for_a_creation_under_way_and_stops_new_ones() {
        static C: Creations = Creations::new();
        let (creator, go_tx) = held_creation(&C);
        let (stopped_tx, stopped_rx) = mpsc::channel();
        let stopper = std::thread::spawn(move || {
            stopped_tx.send(C.stop(Duration::from_secs(300))).unwrap();
        });
        // Still in flight: the stop has not returned (it waits for as long
        // as the creation lasts, up to its limit).
        assert!(
            stopped_rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "the stop returned while a creation was under way"
        );
        go_tx.send(()).unwrap();
        creator.join().unwrap();
        assert_eq!(stopped_rx.recv_timeout(Duration::from_secs(300)), Ok(true));
        stopper.join().unwrap();
        // After the stop, a new creation never runs: its thread parks.
        let (ran_tx, ran_rx) = mpsc::channel();
        std::thread::spawn(move || C.run(|| ran_tx.send(()).unwrap()));
        assert!(ran_rx.recv_timeout(Duration::from_millis(200)).is_err());
        // And the stop, asked again, finds nothing in flight.
        assert!(C.stop(Duration::ZERO) || C.stop(Duration::from_secs(300)));
    }

    /// A stop whose creation never ends gives up at its limit, and says so.
    #[test]
    fn the_cleanup_gives_up_on_a_creation_at_its_limit() {
        static C: Creations = Creations::new();
        let (creator, go_tx) = held_creation(&C);
        assert!(!C.stop(Duration::from_millis(50)));
        go_tx.send(()).unwrap();
        creator.join().unwrap();
    }
}
