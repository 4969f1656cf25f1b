//! The roles this binary plays when re-executed: `pub`, `sub`, `intrude`.
//! Each prints `key=value` report lines on stdout for the scenario that
//! started it (and for ci/mixed-arch.sh, which runs them across
//! architectures).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use shmbus_core::{LockPolicy, OpenError, Topic};
use shmbus_pub::Publisher;
use shmbus_sub::{Next, ReadError, Subscriber, WaitError};

use crate::cpu;
use crate::frame::Beat;
use crate::spawn::Args;

/// The topic described by a role's `--key --name --mode --group --lock
/// --notify` arguments.
pub fn topic_from(a: &Args) -> Result<Topic, String> {
    let key = a.str("key", "");
    if key.is_empty() {
        return Err("--key is required: the topic's key, decimal or 0x-hex".into());
    }
    let key =
        parse_key(&key).ok_or_else(|| format!("--key '{key}': give a decimal or 0x-hex key"))?;
    let mode = u32::from_str_radix(&a.str("mode", "644"), 8).map_err(|e| format!("--mode: {e}"))?;
    let lock = match a.str("lock", "try").as_str() {
        "required" => LockPolicy::Required,
        "try" => LockPolicy::Try,
        "off" => LockPolicy::Off,
        other => return Err(format!("--lock {other}: use required, try or off")),
    };
    let slots: u32 = a.get("slots", 16)?;
    if !slots.is_power_of_two() {
        return Err(format!("--slots {slots}: use a power of two"));
    }
    let mut t = Topic::new(&a.str("name", "board/beat"))
        .key(key)
        .slots(slots)
        .mode(mode)
        .lock(lock)
        .notify(a.get("notify", true)?);
    let group: i64 = a.get("group", -1)?;
    if group >= 0 {
        t = t.group(group as u32);
    }
    Ok(t)
}

/// A key in decimal or `0x` hex.
pub fn parse_key(s: &str) -> Option<i32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok().map(|k| k as i32),
        None => s.parse().ok(),
    }
}

/// Dispatch `role` with its arguments. Returns the process exit code.
pub fn run(role: &str, args: &[String]) -> i32 {
    let result = Args::parse(args).and_then(|a| match role {
        "pub" => publisher(&a),
        "sub" => subscriber(&a),
        "intrude" => intrude(&a),
        other => Err(format!("unknown role '{other}'")),
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            // On stdout only: the console of the board must keep whole lines.
            println!("ERROR {e}");
            1
        }
    }
}

/// `pub`: open the topic (printing `OPEN ...`), wait for `--wait-subs N`
/// attachments, print `START`, publish `--count` frames (0: until killed) at
/// `--rate` Hz (0: as fast as possible), the last one flagged, then print
/// `DONE ...` and linger `--linger-ms` so late readers find it alive.
/// `--memlock BYTES` lowers its RLIMIT_MEMLOCK first.
fn publisher(a: &Args) -> Result<(), String> {
    let topic = topic_from(a)?;
    let epoch: u32 = a.get("epoch", 1)?;
    let rate: f64 = a.get("rate", 0.0)?;
    let count: u32 = a.get("count", 0)?;
    let wait_subs: u64 = a.get("wait-subs", 0)?;
    let memlock: i64 = a.get("memlock", -1)?;
    if memlock >= 0 {
        // Lowering a limit needs no privilege. rlim_t is 32-bit on armv7.
        let lim = memlock as libc::rlim_t;
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK, lim, lim)
            .map_err(|e| format!("setrlimit(RLIMIT_MEMLOCK, {memlock}): {e}"))?;
    }
    let mut p = Publisher::<Beat>::open(&topic).map_err(|e| format!("open: {e}"))?;
    let raw = p.raw();
    let st = shmbus_core::sys::shm_stat(raw.shmid()).map_err(|e| e.to_string())?;
    println!(
        "OPEN created={} repaired={} next_gen={} locked={} lock_outcome={:?} uid={} size={}",
        raw.created(),
        raw.repaired_slots(),
        raw.next_generation(),
        st.locked(),
        format!("{:?}", raw.lock_outcome()).replace(' ', "_"),
        nix::unistd::getuid(),
        st.size
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while shmbus_core::sys::shm_stat(raw.shmid())
        .map_err(|e| e.to_string())?
        .nattch
        < 1 + wait_subs
    {
        if Instant::now() > deadline {
            return Err(format!(
                "fewer than {wait_subs} subscribers attached within 30 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("START");
    let cpu0 = cpu::self_cpu_ms();
    let period = if rate > 0.0 {
        Some(Duration::from_secs_f64(1.0 / rate))
    } else {
        None
    };
    let t0 = Instant::now();
    let (mut late, mut max_late) = (0u32, Duration::ZERO);
    let mut seq: u32 = 0;
    loop {
        if let Some(period) = period {
            let due = t0 + period * seq;
            let now = Instant::now();
            if now < due {
                std::thread::sleep(due - now);
            } else if now - due > period {
                late += 1;
                max_late = max_late.max(now - due);
            }
        }
        let last = count != 0 && seq + 1 == count;
        p.publish(&Beat::new(epoch, seq, last))
            .map_err(|e| format!("publish: {e}"))?;
        seq = seq.wrapping_add(1);
        if last {
            break;
        }
    }
    println!(
        "DONE published={seq} late={late} max_late_us={} elapsed_ms={} cpu_ms={}",
        max_late.as_micros(),
        t0.elapsed().as_millis(),
        cpu::self_cpu_ms() - cpu0
    );
    std::thread::sleep(Duration::from_millis(a.get("linger-ms", 300)?));
    Ok(())
}

/// What a subscriber saw.
#[derive(Default)]
struct Tally {
    frames: u64,
    missed: u64,
    torn: u64,
    corrupt: u64,
    died: u64,
    gone: u64,
    stuck: u64,
    out_of_order: u64,
    last_seen: Option<(u32, u32)>,
    epochs: BTreeSet<u32>,
    done: bool,
}

impl Tally {
    /// Count frame `b`; true if it is the first whole frame of its epoch
    /// (the caller reports it: the scenario waits for it).
    fn frame(&mut self, b: &Beat) -> bool {
        self.frames += 1;
        if !b.is_whole() {
            self.torn += 1;
            return false;
        }
        if let Some(prev) = self.last_seen {
            if (b.epoch, b.seq) <= prev {
                self.out_of_order += 1;
            }
        }
        self.last_seen = Some((b.epoch, b.seq));
        self.done |= b.last;
        self.epochs.insert(b.epoch)
    }

    fn read_error(&mut self, e: &ReadError) {
        match e {
            ReadError::PublisherDied => self.died += 1,
            ReadError::WriterStuck { .. } | ReadError::Overwritten { .. } => self.stuck += 1,
            _ => self.corrupt += 1,
        }
    }
}

/// `sub`: attach (waiting up to 10 s for the topic), print `READY`, read
/// from the oldest frame in the ring
/// until a frame flagged last or `--timeout-ms`, then print `RESULT ...`.
/// Prints `EPOCH n` at the first frame of each publisher instance.
/// `--how next` (wait_next: every frame in order), `latest` (wait_latest),
/// or `busy` (spin on the non-blocking `next`, never sleeping: the
/// one-core anti-pattern, as a baseline).
fn subscriber(a: &Args) -> Result<(), String> {
    let topic = topic_from(a)?;
    let how = a.str("how", "next");
    let limit = Duration::from_millis(a.get("timeout-ms", 20_000)?);
    let mut sub = Subscriber::<Beat>::wait_for_topic(&topic, Duration::from_secs(10))
        .map_err(|e| format!("attach: {e}"))?;
    // From the oldest frame still in the ring, not the next one: a publisher
    // that waits for N attachments (`--wait-subs`) may see this one attached a
    // moment before its cursor is set, and its first frames must not vanish.
    sub.raw().seek_oldest();
    println!("READY");
    let deadline = Instant::now() + limit;
    let mut t = Tally::default();
    let step = Duration::from_millis(500);
    // `EPOCH n` once per publisher instance, at its first frame read here:
    // a scenario that replaces publishers waits for it (kill-and-replace).
    let frame = |t: &mut Tally, b: &Beat| {
        if t.frame(b) {
            println!("EPOCH {}", b.epoch);
        }
    };
    while !t.done && Instant::now() < deadline {
        match how.as_str() {
            "next" => match sub.wait_next(step) {
                Ok(Next::Frame(s)) => frame(&mut t, &s.value),
                Ok(Next::Missed(n)) => t.missed += n,
                Ok(Next::Empty) => {}
                Err(e) => wait_error(&mut t, &e)?,
            },
            "latest" => match sub.wait_latest(step) {
                Ok(s) => frame(&mut t, &s.value),
                Err(e) => wait_error(&mut t, &e)?,
            },
            "busy" => match sub.next() {
                Ok(Next::Frame(s)) => frame(&mut t, &s.value),
                Ok(Next::Missed(n)) => t.missed += n,
                Ok(Next::Empty) => std::hint::spin_loop(),
                Err(e) => t.read_error(&e),
            },
            other => return Err(format!("--how {other}: use next, latest or busy")),
        }
    }
    let epochs: Vec<String> = t.epochs.iter().map(u32::to_string).collect();
    let (le, ls) = t.last_seen.unwrap_or((0, 0));
    println!(
        "RESULT frames={} missed={} torn={} corrupt={} died={} gone={} stuck={} out_of_order={} last_epoch={le} last_seq={ls} epochs={} done={} cpu_ms={}",
        t.frames,
        t.missed,
        t.torn,
        t.corrupt,
        t.died,
        t.gone,
        t.stuck,
        t.out_of_order,
        if epochs.is_empty() {
            "-".to_string()
        } else {
            epochs.join(",")
        },
        t.done,
        cpu::self_cpu_ms()
    );
    Ok(())
}

fn wait_error(t: &mut Tally, e: &WaitError) -> Result<(), String> {
    match e {
        WaitError::Timeout => {}
        // The publisher was killed: its replacement reopens the same segment.
        WaitError::PublisherGone => {
            t.gone += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        WaitError::Read(r) => {
            t.read_error(r);
            std::thread::sleep(Duration::from_millis(5));
        }
        other => return Err(format!("wait: {other}")),
    }
    Ok(())
}

/// `intrude`: try to attach as a subscriber and to open as a publisher;
/// print `SUB refused|attached|error <message>` and the same for `PUB`.
fn intrude(a: &Args) -> Result<(), String> {
    let topic = topic_from(a)?;
    let verdict = |r: Result<(), OpenError>| match r {
        Err(e @ OpenError::PermissionDenied { .. }) => format!("refused {e}"),
        Err(e) => format!("error {e}"),
        Ok(()) => "attached".to_string(),
    };
    println!(
        "SUB {}",
        verdict(Subscriber::<Beat>::attach(&topic).map(|_| ()))
    );
    println!(
        "PUB {}",
        verdict(Publisher::<Beat>::open(&topic).map(|_| ()))
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_in_hex_and_decimal() {
        assert_eq!(parse_key("0x7e000001"), Some(0x7e00_0001));
        assert_eq!(parse_key("0xffffffff"), Some(-1));
        assert_eq!(parse_key("-5"), Some(-5));
        assert_eq!(parse_key("zz"), None);
    }

    #[test]
    fn a_tally_catches_torn_and_reordered_frames() {
        let mut t = Tally::default();
        // True at the first whole frame of each epoch only.
        assert!(t.frame(&Beat::new(1, 0, false)));
        assert!(!t.frame(&Beat::new(1, 1, false)));
        assert!(!t.frame(&Beat::new(1, 1, false)));
        let mut torn = Beat::new(3, 2, false);
        torn.words[0] ^= 1;
        assert!(!t.frame(&torn));
        assert!(t.frame(&Beat::new(2, 0, true)));
        assert_eq!((t.frames, t.torn, t.out_of_order), (5, 1, 1));
        assert!(t.done);
        assert_eq!(t.epochs.len(), 2);
    }
}
