//! The publish loop every sensor shares: config, topic, rate, stop rules.

use std::collections::HashSet;
use std::process::ExitCode;

use postcard::experimental::max_size::MaxSize;
use postcard_schema::Schema;
use serde::Serialize;
use shmbus_config::{Config, TopicConfig};
use shmbus_core::sys::{monotonic_ns, realtime_ns};
use shmbus_pub::{LockOutcome, Publisher};

use crate::SensorKind;
use crate::args::Args;

/// A sensor: something that can be sampled into a message.
pub trait Source {
    /// The message type it publishes.
    type Msg: Serialize + serde::de::DeserializeOwned + MaxSize + Schema;
    /// Take one sample at `t_ns` (`CLOCK_MONOTONIC`). Problems (a missing
    /// device, an unreadable file) go to `warn`, which prints each once.
    fn sample(&mut self, t_ns: u64, warn: &mut Warn) -> Self::Msg;
}

/// Distinct warnings a sensor prints; past these it says once that it
/// prints no more.
pub const MAX_WARNINGS: usize = 32;

/// Prints each distinct warning once on stderr, prefixed with the program,
/// up to [`MAX_WARNINGS`] of them.
///
/// A warning that quotes a value (`'x7f3' is not an integer`) is new each
/// time the value changes: a flaky attribute that returns different
/// garbage at every read printed a line per frame, for as long as the
/// sensor ran, and kept each one in memory to recognise it.
#[derive(Debug)]
pub struct Warn {
    program: &'static str,
    seen: HashSet<String>,
    /// Distinct warnings not printed (past [`MAX_WARNINGS`]).
    dropped: u64,
}

impl Warn {
    /// Warnings for `program`.
    pub fn new(program: &'static str) -> Warn {
        Warn {
            program,
            seen: HashSet::new(),
            dropped: 0,
        }
    }

    /// Print `msg` unless it was printed before. Returns true if printed.
    pub fn once(&mut self, msg: impl Into<String>) -> bool {
        let msg = msg.into();
        if self.seen.contains(&msg) {
            return false;
        }
        if self.seen.len() >= MAX_WARNINGS {
            if self.dropped == 0 {
                shmbus_toolbox::say!(
                    "{}: {MAX_WARNINGS} different warnings printed; further new ones are not",
                    self.program
                );
            }
            self.dropped = self.dropped.saturating_add(1);
            return false;
        }
        shmbus_toolbox::say!("{}: {msg}", self.program);
        self.seen.insert(msg);
        true
    }

    /// Number of distinct warnings printed.
    pub fn count(&self) -> usize {
        self.seen.len()
    }

    /// Number of warnings not printed because [`MAX_WARNINGS`] were
    /// (each time a new one came).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// How often a sensor looks whether its topic was removed under it.
const REMOVED_CHECK_NS: u64 = 500_000_000;

/// How many ticks a late wake-up may leave due and still have published
/// at once: a quarter of the topic's ring (at least one), so that the
/// catch-up never laps a reader that keeps up with the rate.
pub fn catch_up_ticks(slots: u32) -> u64 {
    u64::from(slots / 4).max(1)
}

/// The deadline of the next frame, after the frame due at `due` was
/// published at `t` (`CLOCK_MONOTONIC` ns), at `period` ns a frame.
///
/// The schedule is kept: a wake-up a little late (a busy core, another
/// process's time slice) publishes the ticks it left due at once, up to
/// `catch_up` of them. Only a sensor further behind (suspended, stopped,
/// an overloaded core) skips the missed ticks and starts again from `t`,
/// instead of publishing a burst. The schedule was given up as soon as a
/// wake-up came two periods late: at 1 kHz any 2 ms of scheduling delay
/// lost ticks for good, and the demo's 1 kHz IMU published 870 to 960
/// frames a second on a busy two-core machine.
pub fn next_due(due: u64, t: u64, period: u64, catch_up: u64) -> u64 {
    let next = due.saturating_add(period);
    if t.saturating_sub(next) > period.saturating_mul(catch_up) {
        t.saturating_add(period)
    } else {
        next
    }
}

/// Load the config the arguments name, on the bus they name.
pub fn load_config(args: &Args) -> Result<Config, String> {
    let mut config = if args.demo_config {
        Config::builtin_demo()
    } else {
        Config::find(args.config.as_deref())
            .map_err(|e| e.to_string())?
            .0
    };
    if let Some(bus) = &args.bus {
        config.rebus(bus).map_err(|e| e.to_string())?;
    }
    Ok(config)
}

/// The topic `kind` publishes: `--topic`, else the topic whose `publisher`
/// is this program, else the topic named like the sensor.
pub fn pick_topic<'c>(
    config: &'c Config,
    kind: SensorKind,
    args: &Args,
) -> Result<&'c TopicConfig, String> {
    let program = kind.program();
    match &args.topic {
        Some(name) => {
            let tc = config.require_topic(name)?;
            // The topic of another sensor: its frames are another type,
            // so this sensor created (or failed to open) a segment the
            // topic's own sensor and its readers then refused.
            match tc.publisher.as_deref().and_then(SensorKind::from_name) {
                Some(other) if other != kind => Err(format!(
                    "{}: topic `{}` is published by {} (its `publisher`), not by {program}: pass the topic of this sensor, or none",
                    config.path_shown(),
                    tc.name,
                    other.program()
                )),
                _ => Ok(tc),
            }
        }
        None => config
            .topics
            .iter()
            .find(|t| t.publisher.as_deref() == Some(program))
            .or_else(|| config.topic(kind.name()))
            .ok_or_else(|| {
                format!(
                    "{}: no topic has publisher = \"{program}\" or is named `{}`: pass --topic NAME",
                    config.path_shown(),
                    kind.name()
                )
            }),
    }
}

/// Run sensor `kind` until a stop rule: load the config, open the topic,
/// build the source with `make(rate_hz)`, publish at that rate. Returns the
/// process exit code (2: bad config or topic, 1: publish failed).
pub fn run_source<S: Source>(
    kind: SensorKind,
    args: &Args,
    make: impl FnOnce(f64) -> S,
) -> ExitCode {
    let program = kind.program();
    let fail = |msg: String| {
        shmbus_toolbox::say!("{program}: {msg}");
        ExitCode::from(2)
    };
    if let Some(ppid) = args.parent {
        // A `--parent` that is not the parent already (a typo, a pid from
        // another shell, the demo dead before the sensor started) made the
        // sensor create its topic, remove it 100 ms later and exit 0
        // without a word.
        let actual = nix::unistd::getppid().as_raw();
        if actual != ppid {
            return fail(format!(
                "--parent {ppid} is not this process's parent ({actual}): the sensor would remove its topic at once; --parent is for the program that starts the sensor (the demo passes its own pid)"
            ));
        }
    }
    let config = match load_config(args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let tc = match pick_topic(&config, kind, args) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let topic = match tc.to_topic() {
        Ok(t) => t,
        Err(e) => return fail(e.to_string()),
    };
    let rate = args
        .rate_hz
        .or(tc.rate_hz)
        .unwrap_or(kind.default_rate_hz());
    // The open and every publish run inside `stop::deferred` (no system
    // call per frame; its first call, the open, takes the signals over):
    // `systemctl stop` (SIGTERM), Ctrl-C and SIGHUP end
    // the sensor as before, by their default action, but between two frames,
    // never with a slot left mid-write (read by every subscriber as a
    // publisher that died mid-publish until the next start repairs it), nor
    // between the creation of the session's waiter segment and its removal
    // mark (a 128-byte segment nobody can tell from another program's, left
    // until reboot).
    let mut publisher = match shmbus_toolbox::stop::deferred(|| Publisher::<S::Msg>::open(&topic)) {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot open topic `{}`: {e}", topic.name)),
    };
    if let LockOutcome::Refused(e) = publisher.raw().lock_outcome() {
        shmbus_toolbox::say!(
            "{program}: note: topic `{}` is not locked in RAM: {}",
            topic.name,
            e.unlocked_note()
        );
    }
    let mut source = make(rate);
    let mut warn = Warn::new(program);
    let period_ns = shmbus_toolbox::parse::period(rate).as_nanos() as u64;
    let start = monotonic_ns();
    let end = args
        .duration
        .map(|d| start.saturating_add(d.as_nanos() as u64));
    let mut next = start;
    let mut published = 0u64;
    let mut last_parent_check = start;
    let mut last_removed_check = start;
    let mut orphaned = false;
    // The clock read of the frame just published, standing in for "now" in
    // the next pass (which only decides to sleep): on the board a clock read
    // is a system call (core's `sys::monotonic_ns`), so a frame costs one
    // monotonic read, not four.
    let mut carried: Option<u64> = None;
    loop {
        if args.count.is_some_and(|c| published >= c) {
            break;
        }
        let fresh = carried.is_none();
        let now = carried.take().unwrap_or_else(monotonic_ns);
        if end.is_some_and(|e| now >= e) {
            break;
        }
        if let Some(ppid) = args.parent {
            if now - last_parent_check >= 100_000_000 {
                last_parent_check = now;
                if nix::unistd::getppid().as_raw() != ppid {
                    orphaned = true;
                    break;
                }
            }
        }
        if now.saturating_sub(last_removed_check) >= REMOVED_CHECK_NS {
            last_removed_check = now;
            let removed = publisher.raw().is_removed();
            if removed || publisher.raw().lock_removed() {
                // `shmbus rm --force` or `ipcrm` under a live sensor: its
                // frames went into a segment that no subscriber can find
                // any more, for as long as it ran, and the topic never came
                // back. Open the topic again (a new segment and lock) and
                // publish at once, as a restart of the sensor would.
                // The same for its lock alone (`ipcrm -s`): nothing kept
                // a second publisher out, and readers called this one gone.
                // Reopening takes a new lock, or fails (exit 1) naming the
                // publisher that took it first.
                if removed {
                    shmbus_toolbox::say!(
                        "{program}: topic `{}` was removed while publishing (shmbus rm --force, ipcrm): creating it again",
                        topic.name
                    );
                } else {
                    shmbus_toolbox::say!(
                        "{program}: the publisher lock of topic `{}` was removed while publishing (ipcrm -s): taking it again",
                        topic.name
                    );
                }
                drop(publisher);
                publisher =
                    match shmbus_toolbox::stop::deferred(|| Publisher::<S::Msg>::open(&topic)) {
                        Ok(p) => p,
                        Err(e) => {
                            shmbus_toolbox::say!(
                                "{program}: cannot create topic `{}` again: {e}",
                                topic.name
                            );
                            return ExitCode::FAILURE;
                        }
                    };
                next = now;
            }
        }
        if next > now {
            let mut wake = end.map_or(next, |e| next.min(e));
            if args.parent.is_some() {
                // Look at the parent every 100 ms, also between the frames
                // of a slow topic: at `rate_hz = 0.01` a sensor whose demo
                // was killed kept its topic for up to 100 s more.
                wake = wake.min(now.saturating_add(100_000_000));
            }
            // And at its topic every half a second: between the frames of
            // a slow topic too (at 0.01 Hz a removed topic came back only
            // at the next frame, up to 100 s later).
            wake = wake.min(last_removed_check.saturating_add(REMOVED_CHECK_NS));
            // An absolute sleep: no clock read to turn `wake` into a length.
            shmbus_core::sys::sleep_until_monotonic(wake);
            continue;
        }
        // A frame is due. Its stamp is a clock read taken now: `now` when it
        // was (after a sleep, or at the start), a new one when `now` is the
        // last frame's (a sensor behind its schedule publishes back to back,
        // and two frames must not share a stamp).
        let t = if fresh { now } else { monotonic_ns() };
        let msg = source.sample(t, &mut warn);
        if let Err(e) =
            shmbus_toolbox::stop::deferred(|| publisher.publish_at(&msg, t, realtime_ns()))
        {
            shmbus_toolbox::say!("{program}: publish on `{}` failed: {e}", topic.name);
            return ExitCode::FAILURE;
        }
        published += 1;
        next = next_due(next, t, period_ns, catch_up_ticks(topic.slots));
        carried = Some(t);
    }
    if orphaned {
        // The process that started us (the demo) died without its cleanup
        // (`kill -9`): nobody else will remove this topic, and its segment
        // stays locked in RAM until reboot. Remove it, as the demo would.
        let parent = args.parent.unwrap_or(0);
        match publisher.remove() {
            Ok(()) => shmbus_toolbox::say!(
                "{program}: parent {parent} is gone: removed topic `{}` and stopped",
                topic.name
            ),
            Err(e) => shmbus_toolbox::say!(
                "{program}: parent {parent} is gone; cannot remove topic `{}`: {e}",
                topic.name
            ),
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config path with control characters reached the terminal raw in
    /// the two messages of `pick_topic` (`ESC[31m` coloured the line); it
    /// is shown escaped, as every config message shows it.
    #[test]
    fn a_config_path_in_a_topic_message_is_shown_escaped() {
        let path = "a\u{1b}[31mx\nforged.toml";
        let config = Config::parse(
            "[[topic]]\nname = \"other\"\n[[topic]]\nname = \"imu\"\npublisher = \"shmbus-sensor-imu\"\n",
            path,
        )
        .unwrap();
        for args in [vec![], vec!["--topic".to_string(), "imu".to_string()]] {
            let args = Args::parse(&args).unwrap();
            let e = pick_topic(&config, SensorKind::System, &args).unwrap_err();
            assert!(e.starts_with("a\\u001b[31mx\\u000aforged.toml: "), "{e}");
            assert!(!e.contains('\u{1b}') && !e.contains('\n'), "{e:?}");
        }
    }

    /// Frames a sensor publishes in `secs` simulated seconds at `hz`, when
    /// every `every`-th wake-up comes `late_ns` late (another process ran).
    fn simulated_frames(hz: u64, secs: u64, every: u64, late_ns: u64, slots: u32) -> u64 {
        let period = 1_000_000_000 / hz;
        let end = secs * 1_000_000_000;
        let (mut now, mut next, mut frames, mut wakes) = (0u64, 0u64, 0u64, 0u64);
        while now < end {
            if next > now {
                wakes += 1;
                // A sleep ends a little after its deadline, sometimes a lot.
                now = next + if wakes % every == 0 { late_ns } else { 50_000 };
                continue;
            }
            frames += 1;
            next = next_due(next, now, period, catch_up_ticks(slots));
            now += 5_000; // the sample and the publish
        }
        frames
    }

    /// A 1 kHz sensor whose wake-up comes 2.5 ms late now and then (a busy
    /// core) keeps its rate: it publishes the ticks left due at once. It
    /// gave the schedule up at every such wake-up, so the demo's IMU
    /// published 870 to 960 frames a second on a busy machine.
    #[test]
    fn a_late_wake_up_keeps_the_rate() {
        let frames = simulated_frames(1000, 10, 50, 2_500_000, 64);
        assert!(frames >= 9_990, "{frames} frames in 10 s at 1 kHz");
        // The 16-slot topics (50 Hz and slower) too.
        let frames = simulated_frames(50, 100, 7, 45_000_000, 16);
        assert!(frames >= 4_990, "{frames} frames in 100 s at 50 Hz");
    }

    /// Further behind than a quarter of the ring (a suspend, a stopped
    /// process): the missed ticks are skipped, not published in a burst
    /// that laps the readers.
    #[test]
    fn a_long_stall_skips_the_missed_ticks() {
        let period = 1_000_000;
        let ring = 64;
        // Due at 1 s, woken at 11 s: the next is one period on, not 1 s.
        let t = 11_000_000_000;
        assert_eq!(
            next_due(1_000_000_000, t, period, catch_up_ticks(ring)),
            t + period
        );
        // 10 ticks late: kept, so they are published at once.
        let due = 5_000_000;
        assert_eq!(
            next_due(due, due + 10 * period, period, catch_up_ticks(ring)),
            due + period
        );
        assert_eq!(catch_up_ticks(64), 16);
        assert_eq!(catch_up_ticks(2), 1);
        // Saturating at the clock's end: no overflow panic.
        assert_eq!(next_due(u64::MAX - 1, u64::MAX, period, 16), u64::MAX);
    }

    /// A sensor whose attribute returns different garbage at every read
    /// printed (and kept) a new warning per frame; it stops at
    /// MAX_WARNINGS and counts the rest.
    #[test]
    fn warnings_that_quote_changing_values_stay_bounded() {
        let mut w = Warn::new("test");
        for i in 0..10_000 {
            w.once(format!("'{i}x' is not an integer"));
            w.once("the same problem");
        }
        assert_eq!(w.count(), MAX_WARNINGS);
        assert_eq!(w.dropped(), 10_000 - (MAX_WARNINGS as u64 - 1));
        // What was printed before the limit is still recognised.
        assert!(!w.once("the same problem"));
    }
}
