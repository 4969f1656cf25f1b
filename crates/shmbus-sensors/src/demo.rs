//! `shmbus demo`: start the demo bus's sensor publishers as separate
//! processes, watch every topic, show a live table, clean up.
//!
//! ## What it does
//! 1. Loads the config: the built-in demo config (`configs/demo.toml`), or
//!    `--config FILE`. Topics whose keys are derived move to the bus
//!    `<bus>-<pid>`, so two demos (or a demo and a board's own bus) never
//!    share a key; explicit keys stay as written.
//!    Before its sensors start, it removes what earlier demos of that bus
//!    left when they were killed together with their sensors (SIGKILL to
//!    the whole group): topics of this user at `<bus>-<P>` keys whose demo
//!    pid P is dead (no process, or one started after the topic was made),
//!    that nobody has attached and whose lock is free,
//!    and says so in its notes.
//! 2. Starts one process per topic that names a known `publisher`, through
//!    the launcher it is given (`shmbus __sensor NAME ...` for the CLI),
//!    with `--bus`, `--topic` and `--parent <demo pid>` (a sensor exits when
//!    the demo is gone, even after `kill -9`).
//! 3. Subscribes to every topic (typed [`shmbus_sub::Subscriber`]s, one
//!    thread each, blocking in `wait_next`: no sleep-polling for frames) and
//!    counts frames, lost frames and the publish rate.
//! 4. On a terminal, redraws a table in place four times a second (with
//!    the terminal's autowrap off, so a line wider than the terminal is
//!    clipped instead of taking two rows) until
//!    Ctrl-C or `--duration`; otherwise prints a summary at the end. The
//!    duration counts from the moment every topic has its first frame
//!    (start-up under an emulator can take seconds), or from
//!    [`STARTUP_LIMIT`] at the latest.
//! 5. Stops the children (SIGTERM, then SIGKILL after 2 s) and removes the
//!    segments and publisher locks this run created (`ipcs -m -s` is left as
//!    it was), also on Ctrl-C. Objects at the demo's keys that this run did
//!    not create (a squatter's, as root too) are left alone and reported.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postcard_schema::Schema;
use serde::de::DeserializeOwned;
use shmbus_config::{Config, TopicConfig};
use shmbus_core::sys::{self, monotonic_ns};
use shmbus_core::sysvipc;
use shmbus_core::{OpenError, PublisherStatus, Topic, WaitError};
use shmbus_sub::{Next, Subscriber};
use shmbus_toolbox::printable::printable;

use crate::SensorKind;
use crate::msg::{Accel, Imu, Net, Power, System, Thermal};
use crate::summary::Summary;

/// How long the demo waits for every sensor's first frame before its
/// `duration` starts counting anyway.
pub const STARTUP_LIMIT: Duration = Duration::from_secs(15);

/// Terminal control: automatic wrap off (DECAWM reset) and on again.
const AUTOWRAP_OFF: &str = "\x1b[?7l";
const AUTOWRAP_ON: &str = "\x1b[?7h";

/// Builds the command that runs sensor `kind` with `args`.
/// Arguments are `OsString`s: a `--config` path need not be UTF-8.
pub type Launcher<'a> = &'a dyn Fn(SensorKind, &[OsString]) -> Command;

/// What the demo is asked to do.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Stop after this long, counted from the first frame of every topic
    /// (or [`STARTUP_LIMIT`]); else run until Ctrl-C / SIGTERM.
    pub duration: Option<Duration>,
    /// A config file instead of the built-in demo config.
    pub config: Option<PathBuf>,
    /// Redraw a live table (a terminal); else print only the summary.
    pub live: bool,
}

/// What one topic did during the demo.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicReport {
    /// Topic name.
    pub topic: String,
    /// Its key on the demo's bus.
    pub key: i32,
    /// The sensor started for it (`None`: its `publisher` is not one of ours).
    pub sensor: Option<SensorKind>,
    /// Frames received.
    pub frames: u64,
    /// Frames lost (overwritten before the demo read them).
    pub lost: u64,
    /// Publish rate over the last frames, Hz.
    pub rate_hz: f64,
    /// Summary of the newest frame.
    pub latest: String,
    /// How the publisher ended, or a problem attaching the topic.
    pub status: String,
    /// Its sensor ended before the demo stopped it (crashed, killed,
    /// failed to publish): the run failed.
    pub ended_early: bool,
}

/// The outcome of a demo run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The bus the demo ran on.
    pub bus: String,
    /// One entry per topic.
    pub topics: Vec<TopicReport>,
    /// Keys at which a segment or publisher lock the demo created was still
    /// found after cleanup (should be empty).
    pub leftover_keys: Vec<i32>,
    /// Objects at the demo's keys that the demo did not create (a
    /// squatter's, another program's): left alone, never removed.
    pub not_ours: Vec<String>,
    /// What the sensors said on stderr (missing sensors...).
    pub notes: Vec<String>,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Report {
    /// True if the demo had a sensor for at least one topic, every
    /// started sensor's topic received frames, no sensor ended before the
    /// demo stopped it, and nothing was left behind. (A config whose
    /// topics name no sensor of the demo's, a misspelt `publisher` for
    /// each, ran nothing and was called a success.)
    pub fn ok(&self) -> bool {
        self.leftover_keys.is_empty()
            && self.topics.iter().any(|t| t.sensor.is_some())
            && self
                .topics
                .iter()
                .all(|t| t.sensor.is_none() || (t.frames > 0 && !t.ended_early))
    }

    /// The topics the demo has no sensor for (their `publisher` is none
    /// of its programs): not started, so not part of the result.
    fn without_sensor(&self) -> Vec<&str> {
        self.topics
            .iter()
            .filter(|t| t.sensor.is_none())
            .map(|t| t.topic.as_str())
            .collect()
    }

    /// The plain-text summary (for logs and CI).
    pub fn summary(&self) -> String {
        let mut s = format!(
            "shmbus demo: bus {}, {} topics, ran {:.1} s\n",
            self.bus,
            self.topics.len(),
            self.elapsed.as_secs_f64()
        );
        for t in &self.topics {
            // A topic without a frame said `latest: ` and nothing.
            let latest = if t.latest.is_empty() {
                "none"
            } else {
                &t.latest
            };
            // With fewer than two frames there is no rate (the live table
            // shows "-"): "0.0 Hz" read as a sensor that stopped.
            let hz = if t.frames < 2 {
                "-".to_string()
            } else {
                format!("{:.1}", t.rate_hz)
            };
            s += &format!(
                "  {:<10} key 0x{:08x}  {:>7} frames  {:>5} lost  {hz:>8} Hz  {}  latest: {latest}\n",
                t.topic, t.key as u32, t.frames, t.lost, t.status
            );
        }
        for n in &self.notes {
            s += &format!("  note: {n}\n");
        }
        for n in &self.not_ours {
            s += &format!(
                "cleanup: left alone, not created by this demo (a squatter?): {n}; `shmbus list` shows it\n"
            );
        }
        if self.leftover_keys.is_empty() {
            s += "cleanup: every segment and publisher lock of the demo was removed\n";
        } else {
            let keys: Vec<String> = self
                .leftover_keys
                .iter()
                .map(|k| format!("0x{:08x}", *k as u32))
                .collect();
            s += &format!(
                "cleanup: left behind at keys {} (remove with ipcrm -M KEY -S KEY)\n",
                keys.join(" ")
            );
        }
        let unstarted = self.without_sensor();
        if self.ok() && unstarted.is_empty() {
            s += "result: every topic received frames\n";
        } else if self.ok() {
            s += &format!(
                "result: every topic with a sensor of the demo received frames; not started (no sensor of the demo's): {}\n",
                unstarted.join(", ")
            );
        } else {
            let mut why: Vec<String> = Vec::new();
            // One reason per topic, with how its sensor ended: a sensor
            // that failed at its start gave two ("no frames on imu; the
            // sensor of imu ended during the run") and neither said how.
            for t in self.topics.iter().filter(|t| t.sensor.is_some()) {
                match (t.frames, t.ended_early) {
                    (0, true) => why.push(format!(
                        "the sensor of {} ended before its first frame ({})",
                        t.topic, t.status
                    )),
                    (_, true) => why.push(format!(
                        "the sensor of {} ended during the run ({})",
                        t.topic, t.status
                    )),
                    (0, false) => why.push(format!("no frames on {}", t.topic)),
                    _ => {}
                }
            }
            if !self.topics.iter().any(|t| t.sensor.is_some()) {
                why.push(format!(
                    "no topic has a sensor of the demo's, so nothing ran (not started: {})",
                    unstarted.join(", ")
                ));
            }
            if !self.leftover_keys.is_empty() {
                why.push("objects left behind".into());
            }
            s += &format!("result: FAILED: {}\n", why.join("; "));
        }
        // Names and values from the sensors (interface, supply, zone and
        // device names), their messages and the topics' errors come from
        // outside: their control characters must not drive the terminal.
        printable(&s).into_owned()
    }
}

/// Why the demo starts nothing for topic `tc`: its `publisher` is none of
/// the demo's sensor programs (which it names), or it has none.
fn not_a_sensor(tc: &TopicConfig) -> String {
    let ours: Vec<&str> = SensorKind::ALL.iter().map(|k| k.program()).collect();
    match tc.publisher.as_deref() {
        Some(p) => format!(
            "topic `{}`: publisher \"{p}\" is not one of the demo's sensors ({}): not started",
            tc.name,
            ours.join(", ")
        ),
        None => format!(
            "topic `{}` names no publisher: the demo starts one of its sensors ({}) only for a topic whose `publisher` is that program: not started",
            tc.name,
            ours.join(", ")
        ),
    }
}

/// Watch state shared by a topic's subscriber thread and the display.
#[derive(Debug, Default)]
struct Row {
    frames: u64,
    lost: u64,
    last_mono: u64,
    stamps: VecDeque<u64>,
    latest: String,
    problem: Option<String>,
}

/// The rate is over the frames of the last 2 s (at least the last two, at
/// most 1024).
const RATE_WINDOW_NS: u64 = 2_000_000_000;

impl Row {
    /// Count a frame published at `mono` into the rate window. The two
    /// newest stamps always stay: a topic slower than one frame per window
    /// (`rate_hz = 0.2`) had one stamp left after each frame, so no rate.
    fn stamp(&mut self, mono: u64) {
        while self.stamps.len() >= 1024
            || (self.stamps.len() >= 2
                && self
                    .stamps
                    .front()
                    .is_some_and(|t| mono.saturating_sub(*t) > RATE_WINDOW_NS))
        {
            self.stamps.pop_front();
        }
        self.stamps.push_back(mono);
    }

    /// Frames per second over the window, as of `now`: 0 once the newest
    /// frame is older than the window and than three of its intervals (the
    /// publisher stopped; a dead sensor kept its last rate, 1000 Hz, for
    /// good).
    fn rate(&self, now: u64) -> f64 {
        let (Some(&a), Some(&b)) = (self.stamps.front(), self.stamps.back()) else {
            return 0.0;
        };
        if b <= a {
            return 0.0;
        }
        let n = (self.stamps.len() - 1) as f64;
        let span = (b - a) as f64;
        if now.saturating_sub(b) as f64 > (RATE_WINDOW_NS as f64).max(3.0 * span / n) {
            return 0.0;
        }
        n * 1e9 / span
    }
}

type Shared = Arc<Mutex<Row>>;

fn lock(row: &Shared) -> std::sync::MutexGuard<'_, Row> {
    // A watcher that panicked leaves a usable row: take it anyway.
    row.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read `topic` in order until `quit`, counting into `row`. A topic
/// removed under its live sensor (`shmbus rm --force`, `ipcrm`) is
/// attached again when the sensor creates it anew: the demo stopped
/// watching it, and showed a live sensor's topic at 0 Hz with its last
/// value for the rest of the run.
///
/// `sensor`: the pid of the demo's sensor of the topic. A segment it
/// created holds every frame it published there from generation 1, so the
/// frames already overwritten when the watcher attaches (a sensor that
/// starts slowly: the watcher looks for the topic every 100 ms at most,
/// and a 1 kHz IMU laps its 64 slots in 64 ms) count as lost: they were
/// neither frames nor lost, and the summary's counts fell short of what
/// was published without a word. A segment someone else created (a
/// config's explicit key where a topic already was) keeps its older
/// frames out of the counts.
fn watch<T: DeserializeOwned + Schema + Summary>(
    topic: Topic,
    row: Shared,
    quit: Arc<AtomicBool>,
    sensor: Option<i32>,
) {
    // After `seek_oldest`: the frames before the cursor, if the demo's
    // sensor made this segment.
    let lost_before = |sub: &mut Subscriber<T>| -> u64 {
        let made_by_sensor = sensor.is_some_and(|pid| {
            sys::shm_stat(sub.raw().segment().shmid()).is_ok_and(|st| st.cpid == pid)
        });
        if made_by_sensor {
            sub.raw().cursor().saturating_sub(1)
        } else {
            0
        }
    };
    let mut newest: Option<T> = None;
    let mut summarized = 0u64;
    let mut record = |next: Next<T>, newest: &mut Option<T>| {
        let mut r = lock(&row);
        match next {
            Next::Frame(s) => {
                r.frames += 1;
                r.last_mono = s.mono_ns;
                r.stamp(s.mono_ns);
                // Formatting every frame of a 1 kHz topic is waste: ten a second.
                if s.mono_ns.saturating_sub(summarized) >= 100_000_000 {
                    summarized = s.mono_ns;
                    r.latest = s.value.summary();
                    *newest = None;
                } else {
                    *newest = Some(s.value);
                }
            }
            Next::Missed(n) => r.lost += n,
            Next::Empty => {}
        }
    };
    // The frames a subscriber has not read yet, up to a lap and a bit
    // (its publisher has stopped, or is being stopped).
    let drain = |sub: &mut Subscriber<T>,
                 record: &mut dyn FnMut(Next<T>, &mut Option<T>),
                 newest: &mut Option<T>| {
        for _ in 0..=sub
            .raw()
            .segment()
            .info()
            .geometry
            .slot_count
            .saturating_mul(2)
        {
            match sub.next() {
                Ok(n @ (Next::Frame(_) | Next::Missed(_))) => record(n, newest),
                _ => break,
            }
        }
    };
    let mut attached = false;
    'attach: while !quit.load(Ordering::Relaxed) {
        let mut sub = match Subscriber::<T>::wait_for_topic(&topic, Duration::from_millis(200)) {
            Ok(s) => s,
            Err(OpenError::NotFound { .. } | OpenError::NotReady { .. }) => continue,
            Err(e) => {
                lock(&row).problem = Some(e.to_string());
                break;
            }
        };
        attached = true;
        // Count what was published before we attached, too.
        sub.raw().seek_oldest();
        let lost = lost_before(&mut sub);
        lock(&row).lost += lost;
        while !quit.load(Ordering::Relaxed) {
            match sub.wait_next(Duration::from_millis(200)) {
                Ok(n) => record(n, &mut newest),
                Err(WaitError::Timeout) => {}
                Err(WaitError::Removed) => {
                    // Take the frames it left. Its sensor creates it again
                    // (or the demo ends).
                    drain(&mut sub, &mut record, &mut newest);
                    continue 'attach;
                }
                Err(WaitError::PublisherGone) => {
                    // Take the frames it left, then wait for frames again:
                    // a sensor whose lock was removed (`ipcrm -s`) publishes
                    // on, and takes a new lock within half a second. The
                    // watcher stopped here, and showed a slow sensor that
                    // lost its lock at 0 Hz for the rest of the run. (A
                    // sensor that ended is waited for until the demo ends:
                    // whole slices, a few wake-ups a second.)
                    drain(&mut sub, &mut record, &mut newest);
                    while !quit.load(Ordering::Relaxed) {
                        match sub.wait_for_publisher(Duration::from_millis(200)) {
                            Ok(_) => break,
                            Err(WaitError::Timeout) => {}
                            Err(WaitError::Removed) => continue 'attach,
                            Err(e) => {
                                lock(&row).problem = Some(e.to_string());
                                break 'attach;
                            }
                        }
                    }
                }
                Err(e) => {
                    lock(&row).problem = Some(e.to_string());
                    break 'attach;
                }
            }
        }
        // Stopped: the demo stops the sensors first, so what they published
        // since this thread last ran is still in the ring. Count it.
        drain(&mut sub, &mut record, &mut newest);
    }
    if !attached {
        // Stopped before this thread ever got its topic (a loaded machine
        // that did not run it in time): the frames are there all the same.
        if let Ok(mut sub) = Subscriber::<T>::attach(&topic) {
            sub.raw().seek_oldest();
            let lost = lost_before(&mut sub);
            lock(&row).lost += lost;
            drain(&mut sub, &mut record, &mut newest);
        }
    }
    if let Some(v) = newest {
        lock(&row).latest = v.summary();
    }
}

fn spawn_watcher(
    kind: SensorKind,
    topic: Topic,
    row: Shared,
    quit: Arc<AtomicBool>,
    sensor: Option<i32>,
) -> Option<JoinHandle<()>> {
    let r = row.clone();
    let spawned = std::thread::Builder::new().spawn(move || match kind {
        SensorKind::System => watch::<System>(topic, r, quit, sensor),
        SensorKind::Thermal => watch::<Thermal>(topic, r, quit, sensor),
        SensorKind::Power => watch::<Power>(topic, r, quit, sensor),
        SensorKind::Net => watch::<Net>(topic, r, quit, sensor),
        SensorKind::Iio => watch::<Accel>(topic, r, quit, sensor),
        SensorKind::Imu => watch::<Imu>(topic, r, quit, sensor),
    });
    match spawned {
        Ok(h) => Some(h),
        Err(e) => {
            lock(&row).problem = Some(format!(
                "cannot start a thread to watch it ({e}): raise the process limit (`ulimit -u`)"
            ));
            None
        }
    }
}

/// One topic of the running demo.
struct Entry {
    tc: TopicConfig,
    kind: Option<SensorKind>,
    row: Shared,
    child: Option<Child>,
    exit: Option<String>,
    /// The child ended before the demo stopped it.
    ended_early: bool,
    /// When the demo found the child ended, and the signal that ended it.
    ended_by: Option<(Instant, i32)>,
}

/// The publisher column of `e`'s row; `had_frames`: the row counted frames
/// (the caller holds the row's lock, so it is not taken here).
fn publisher_text(e: &Entry, had_frames: bool) -> String {
    if let Some(x) = &e.exit {
        return x.clone();
    }
    match shmbus_core::lock::publisher_status(e.tc.key) {
        PublisherStatus::Alive { pid } => format!("alive {pid}"),
        PublisherStatus::NotRunning => "not running".into(),
        // The demo's sensors take their lock before they publish, and a
        // new one within half a second if it is removed (`ipcrm -s`).
        PublisherStatus::NoLock if had_frames => "no lock".into(),
        PublisherStatus::NoLock => "starting".into(),
        PublisherStatus::Unknown => "unknown".into(),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn table(bus: &str, entries: &[Entry], notes: &[String], elapsed: Duration, until: &str) -> String {
    let width: usize = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(120);
    let mut s = format!(
        "shmbus demo · bus {bus} · {:.1} s · {until} · `shmbus list` or `shmbus top` in another terminal shows these topics\n\n",
        elapsed.as_secs_f64()
    );
    s += &format!(
        "{:<10} {:<10} {:>8} {:>8} {:>6} {:>8} {:<13} {}\n",
        "TOPIC", "KEY", "RATE Hz", "FRAMES", "LOST", "AGE", "PUBLISHER", "LATEST"
    );
    let now = monotonic_ns();
    for e in entries {
        let r = lock(&e.row);
        let age = if r.frames == 0 {
            "-".to_string()
        } else {
            shmbus_toolbox::units::duration_ns(now.saturating_sub(r.last_mono))
        };
        let stale = r.frames > 0
            && e.tc
                .is_stale(Duration::from_nanos(now.saturating_sub(r.last_mono)));
        let latest = match (&r.problem, e.kind) {
            (Some(p), _) => p.clone(),
            (None, None) => format!(
                "(no sensor for publisher {:?})",
                e.tc.publisher.as_deref().unwrap_or("")
            ),
            (None, Some(_)) if r.frames == 0 => "waiting for the first frame".into(),
            (None, Some(_)) => r.latest.clone(),
        };
        let rate = if r.stamps.len() < 2 {
            "-".to_string()
        } else {
            format!("{:.1}", r.rate(now))
        };
        let line = format!(
            "{:<10} 0x{:08x} {:>8} {:>8} {:>6} {:>8} {:<13} {}{}",
            truncate(&e.tc.name, 10),
            e.tc.key as u32,
            rate,
            r.frames,
            r.lost,
            age,
            truncate(&publisher_text(e, r.frames > 0), 13),
            if stale { "STALE " } else { "" },
            latest
        );
        s += &truncate(&line, width.max(40));
        s.push('\n');
    }
    if !notes.is_empty() {
        s.push('\n');
        for n in notes.iter().rev().take(6).rev() {
            s += &truncate(&format!("note: {n}"), width.max(40));
            s.push('\n');
        }
    }
    // As in the summary: what the sensors send is escaped.
    printable(&s).into_owned()
}

/// Run the demo until `stop` is set or the duration passes, writing the
/// live table to `out` if `opts.live`. Returns the report; the caller
/// prints [`Report::summary`].
pub fn run(
    opts: &Options,
    launch: Launcher<'_>,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> Result<Report, String> {
    let started = Instant::now();
    let started_s = (sys::realtime_ns() / 1_000_000_000) as i64;
    let pid = std::process::id();
    let (mut config, config_args) = match &opts.config {
        Some(p) => (
            Config::load(p).map_err(|e| e.to_string())?,
            // The path as given: `display()` made a path that is not
            // UTF-8 another, missing file for every sensor.
            vec![OsString::from("--config"), p.as_os_str().to_os_string()],
        ),
        None => (
            Config::builtin_demo(),
            vec![OsString::from("--demo-config")],
        ),
    };
    let bus = demo_bus(&config.bus, pid);
    let sensor_topics: Vec<&str> = config
        .topics
        .iter()
        .filter(|t| {
            t.key_derived
                && t.publisher
                    .as_deref()
                    .and_then(SensorKind::from_name)
                    .is_some()
        })
        .map(|t| t.name.as_str())
        .collect();
    let earlier = remove_dead_demos(&config.bus, &sensor_topics, pid);
    config.rebus(&bus).map_err(|e| e.to_string())?;

    let notes = Arc::new(Mutex::new(Notes::default()));
    for note in earlier {
        lock_notes(&notes).push(note);
    }
    let quit = Arc::new(AtomicBool::new(false));
    let mut entries = Vec::new();
    let mut threads = Vec::new();
    // Sensors' stderr pipes that no thread reads (see below), kept open.
    let mut unread = Vec::new();
    for tc in &config.topics {
        let kind = tc.publisher.as_deref().and_then(SensorKind::from_name);
        if kind.is_none() {
            lock_notes(&notes).push(not_a_sensor(tc));
        }
        let row: Shared = Arc::default();
        let topic = tc.to_topic().map_err(|e| e.to_string())?;
        let mut child = None;
        let mut exit = None;
        if let Some(kind) = kind {
            if let Some(note) = remove_stale(tc) {
                lock_notes(&notes).push(note);
            }
            let mut args = config_args.clone();
            args.extend(
                [
                    "--bus".to_string(),
                    bus.clone(),
                    "--topic".into(),
                    tc.name.clone(),
                    "--parent".into(),
                    pid.to_string(),
                ]
                .map(OsString::from),
            );
            if let Some(d) = opts.duration {
                args.extend(["--duration".to_string(), safety_net(d)].map(OsString::from));
            }
            let mut cmd = launch(kind, &args);
            // Own process group: a terminal's Ctrl-C reaches the demo only,
            // which then stops each sensor in order (and they still exit by
            // themselves if the demo dies: --parent).
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            match cmd.spawn() {
                Ok(mut c) => {
                    if let Some(err) = c.stderr.take() {
                        let notes2 = notes.clone();
                        // The pipe stays open either way: a sensor whose
                        // messages nobody reads blocks only after 64 KiB,
                        // one whose pipe is closed dies writing to it.
                        let fd = std::os::fd::OwnedFd::from(err);
                        let held = fd.try_clone().ok();
                        let err = std::fs::File::from(fd);
                        match std::thread::Builder::new().spawn(move || read_notes(err, &notes2)) {
                            Ok(h) => threads.push(h),
                            Err(e) => {
                                lock_notes(&notes).push(format!(
                                    "cannot read the messages of {} ({e})",
                                    kind.program()
                                ));
                                unread.extend(held);
                            }
                        }
                    }
                    child = Some(c);
                }
                Err(e) => {
                    lock_notes(&notes).push(format!("cannot start {}: {e}", kind.program()));
                    // Nothing to wait for: the run's clock need not wait
                    // STARTUP_LIMIT for this topic's first frame.
                    exit = Some("not started".to_string());
                }
            }
            let sensor = child.as_ref().map(|c: &Child| c.id() as i32);
            threads.extend(spawn_watcher(
                kind,
                topic,
                row.clone(),
                quit.clone(),
                sensor,
            ));
        }
        entries.push(Entry {
            tc: tc.clone(),
            kind,
            row,
            child,
            exit,
            ended_early: false,
            ended_by: None,
        });
    }

    let mut drawn_lines = 0usize;
    // `duration` counts from the moment every sensor's topic has its first
    // frame, so that a slow start (an emulator, a loaded core) does not eat
    // the run; after STARTUP_LIMIT it counts anyway.
    let mut clock: Option<Instant> = None;
    loop {
        let elapsed = started.elapsed();
        if clock.is_none() {
            let all_up = entries
                .iter()
                .all(|e| e.kind.is_none() || e.exit.is_some() || lock(&e.row).frames > 0);
            if all_up || elapsed >= STARTUP_LIMIT {
                clock = Some(Instant::now());
            }
        }
        let ran = clock.map_or(Duration::ZERO, |c| c.elapsed());
        let done = stop.load(Ordering::Relaxed)
            || opts.duration.is_some_and(|d| clock.is_some() && ran >= d);
        for e in &mut entries {
            if let (Some(c), None) = (&mut e.child, &e.exit) {
                if let Ok(Some(st)) = c.try_wait() {
                    e.exit = Some(format!("exited ({st})").replace("exit status: ", "code "));
                    e.ended_early = true;
                    e.ended_by = std::os::unix::process::ExitStatusExt::signal(&st)
                        .map(|sig| (Instant::now(), sig));
                }
            }
        }
        // A demo in the background of its terminal (`shmbus demo &`, or
        // `bg` after Ctrl-Z) draws nothing: its table went over the
        // foreground program's screen (`shmbus top`, the example in
        // `shmbus demo --help`), four times a second. Back in the
        // foreground it starts a new table below what is on the screen.
        let draw = opts.live && shmbus_toolbox::term::stdout_in_foreground();
        if opts.live && !draw {
            drawn_lines = 0;
        }
        if draw {
            let until = match (opts.duration, clock) {
                (Some(d), Some(_)) => {
                    format!(
                        "stops at {:.0} s",
                        (elapsed + d.saturating_sub(ran)).as_secs_f64()
                    )
                }
                (Some(_), None) => "starting the sensors".to_string(),
                (None, _) => "Ctrl-C stops".to_string(),
            };
            let shown = lock_notes(&notes).shown();
            let text = table(&bus, &entries, &shown, elapsed, &until);
            // Autowrap off while the table is drawn (DECAWM), and on again
            // at the end of each drawing: a line wider than the terminal
            // is clipped, so each line of the table takes one row and the
            // cursor-up lands on its first. Wrapped, a narrower terminal
            // than the table (80 columns, a serial console that does not
            // know its width) got a new copy of the table's top at every
            // redraw. Turned on only at the end of the run, it stayed off
            // in the shell after Ctrl-Z (or `kill -STOP`): every long line
            // the user then typed or listed was cut at the right edge.
            let mut frame = String::from(AUTOWRAP_OFF);
            if drawn_lines > 0 {
                // Back to the top of the previous table, and clear below.
                frame += &format!("\x1b[{drawn_lines}A\x1b[J");
            }
            frame += &text;
            frame += AUTOWRAP_ON;
            drawn_lines = text.lines().count();
            let _ = out.write_all(frame.as_bytes());
            let _ = out.flush();
        }
        if done {
            if stop.load(Ordering::Relaxed) {
                stopped_with_the_demo(&mut entries, Instant::now());
            }
            break;
        }
        // The display's tick (the watcher threads block on the topics).
        let tick = if clock.is_some() {
            Duration::from_millis(250)
        } else {
            Duration::from_millis(50)
        };
        let left = match (opts.duration, clock) {
            (Some(d), Some(_)) => d.saturating_sub(ran).min(tick),
            _ => tick,
        };
        std::thread::sleep(left.max(Duration::from_millis(1)));
    }

    // The rates are as of now, not after the stopping below (up to 2 s a
    // sensor that ignores SIGTERM), which would make live topics look dead.
    let stopped_at = monotonic_ns();
    // Stop: children first (their frames stay readable), then watchers.
    let children: Vec<i32> = entries
        .iter()
        .filter_map(|e| e.child.as_ref().map(|c| c.id() as i32))
        .collect();
    for e in &mut entries {
        if let Some(c) = &mut e.child {
            stop_child(c, &mut e.exit);
        }
    }
    quit.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let cleaned = cleanup(&entries, &children, started_s);
    let leftover_keys = cleaned.left;
    let not_ours = cleaned.not_ours;
    let notes = lock_notes(&notes).shown();
    let topics = entries
        .iter()
        .map(|e| {
            let r = lock(&e.row);
            TopicReport {
                topic: e.tc.name.clone(),
                key: e.tc.key,
                sensor: e.kind,
                frames: r.frames,
                lost: r.lost,
                rate_hz: r.rate(stopped_at),
                latest: r.latest.clone(),
                status: r
                    .problem
                    .clone()
                    .or_else(|| e.exit.clone())
                    .unwrap_or_else(|| "not started".into()),
                ended_early: e.ended_early,
            }
        })
        .collect();
    Ok(Report {
        bus,
        topics,
        leftover_keys,
        not_ours,
        notes,
        elapsed: started.elapsed(),
    })
}

/// How long before the demo sees its own stop signal a sensor's death by
/// one still counts as stopped with the demo.
const STOPPED_TOGETHER: Duration = Duration::from_secs(2);

/// The sensors that a stop signal (SIGTERM, SIGINT, SIGHUP) ended at most
/// [`STOPPED_TOGETHER`] before `now`, when the demo itself was stopped by
/// one, were stopped with the demo, not ended early: `systemctl stop` (its
/// default `KillMode=control-group`), `pkill shmbus` or `kill 0` send
/// SIGTERM to every process at once, the sensors die of it at once, and
/// the demo called the clean stop "FAILED: the sensor of imu ended during
/// the run", exit 1, a failed unit.
fn stopped_with_the_demo(entries: &mut [Entry], now: Instant) {
    use nix::sys::signal::Signal;
    for e in entries {
        let Some((at, sig)) = e.ended_by else {
            continue;
        };
        let stop_signal = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP]
            .iter()
            .any(|s| *s as i32 == sig);
        if e.ended_early && stop_signal && now.saturating_duration_since(at) <= STOPPED_TOGETHER {
            e.ended_early = false;
            let name = Signal::try_from(sig).map_or("a stop signal", |s| s.as_str());
            e.exit = Some(format!("stopped with the demo ({name})"));
        }
    }
}

/// The bus of the demo with pid `pid`: `<bus>-<pid>`, the config's bus
/// cut so that the whole is still a valid name (at most
/// `shmbus_core::layout::MAX_NAME_LEN` bytes; names are ASCII). A config
/// whose bus was valid but long (58 to 63 bytes) made the demo refuse to
/// start, blaming a "topic name" 66 bytes long that the user never wrote.
fn demo_bus(bus: &str, pid: u32) -> String {
    let suffix = format!("-{pid}");
    let keep = shmbus_core::layout::MAX_NAME_LEN.saturating_sub(suffix.len());
    let stem = bus.get(..keep.min(bus.len())).unwrap_or(bus);
    format!("{stem}{suffix}")
}

/// The `--duration` a sensor gets when the demo runs for `d`: a safety
/// net, so that it stops by itself shortly after the demo would have. At
/// most what a sensor accepts ([`shmbus_toolbox::parse::MAX_SECS`]): the
/// longest `shmbus demo --duration` plus the margin was refused by every
/// sensor, and the demo ran with none of them.
fn safety_net(d: Duration) -> String {
    let limit = d.as_secs_f64() + (STARTUP_LIMIT + Duration::from_secs(10)).as_secs_f64();
    format!("{}", limit.min(shmbus_toolbox::parse::MAX_SECS))
}

fn lock_notes(n: &Mutex<Notes>) -> std::sync::MutexGuard<'_, Notes> {
    n.lock().unwrap_or_else(|e| e.into_inner())
}

/// Distinct messages the demo keeps (the summary lists them all).
const MAX_NOTES: usize = 64;
/// Bytes of one message kept.
const MAX_NOTE_LEN: usize = 512;

/// The sensors' messages as the demo keeps them: each distinct line once,
/// with how many times it came, at most [`MAX_NOTES`] of them (in the
/// order they first came), and a count of the lines past that. A sensor
/// that repeats a warning, or quotes a file whose content keeps changing,
/// for as long as the demo runs costs a counter, not memory: the demo kept
/// every line, and printed every one in its summary.
#[derive(Debug, Default)]
struct Notes {
    lines: Vec<(String, u64)>,
    not_kept: u64,
}

impl Notes {
    fn push(&mut self, mut line: String) {
        if line.len() > MAX_NOTE_LEN {
            let mut cut = MAX_NOTE_LEN;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str("...");
        }
        if let Some((_, n)) = self.lines.iter_mut().find(|(l, _)| *l == line) {
            *n += 1;
        } else if self.lines.len() < MAX_NOTES {
            self.lines.push((line, 1));
        } else {
            self.not_kept += 1;
        }
    }

    /// The messages as the table and the summary show them.
    fn shown(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .lines
            .iter()
            .map(|(l, n)| {
                if *n > 1 {
                    format!("{l} ({n} times)")
                } else {
                    l.clone()
                }
            })
            .collect();
        if self.not_kept > 0 {
            v.push(format!(
                "{} more messages not kept (the demo keeps the first {MAX_NOTES} different ones)",
                self.not_kept
            ));
        }
        v
    }
}

/// The most of one line of a sensor's stderr the demo reads at a time;
/// the rest of a longer line is skipped ([`Notes`] keeps 512 bytes).
const MAX_LINE_READ: u64 = 4096;

/// Read a sensor's stderr into `notes`, line by line, until it closes.
///
/// A line that is not UTF-8 is kept lossily, and a line longer than
/// [`MAX_LINE_READ`] is cut. `BufRead::lines` stopped at the first line
/// that was not UTF-8, so every later message of that sensor was lost
/// (and its pipe closed under it), and it held a line of any length in
/// memory.
fn read_notes(err: impl std::io::Read, notes: &Mutex<Notes>) {
    let mut r = BufReader::new(err);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = match std::io::Read::take(&mut r, MAX_LINE_READ).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let whole = line.last() == Some(&b'\n');
        if whole {
            line.pop();
        }
        lock_notes(notes).push(String::from_utf8_lossy(&line).into_owned());
        if !whole && n as u64 == MAX_LINE_READ {
            // Skip the rest of the long line.
            loop {
                line.clear();
                match std::io::Read::take(&mut r, MAX_LINE_READ).read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line.last() == Some(&b'\n') => break,
                    Ok(_) => {}
                }
            }
        }
    }
}

/// SIGTERM, wait up to 2 s, then SIGKILL.
fn stop_child(c: &mut Child, exit: &mut Option<String>) {
    if exit.is_none() {
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        *exit = Some("stopped by the demo".into());
    }
    let _ = c.wait();
}

/// Remove the topic at one of this demo's own keys, before its sensor
/// starts, if an earlier demo left it: the key is derived from the bus
/// `<bus>-<pid>` of this demo's pid, the segment was made by this user and
/// its publisher is not running. Returns what to say.
///
/// A demo killed together with its sensors (`kill -9` of them all, an OOM
/// kill of their cgroup) leaves its topics, and pids repeat: in a
/// container's pid namespace the demo has the same pid at every start,
/// and on a 32-bit board pids wrap at 32768. The next demo with that pid
/// has the same keys; its sensors reopened the old segments, their old
/// frames were counted as this run's, and the cleanup left them, locked
/// in RAM, as "not created by this demo (a squatter?)", at every run. A
/// segment of another user or with a live publisher is left as before.
fn remove_stale(tc: &TopicConfig) -> Option<String> {
    if !tc.key_derived {
        return None;
    }
    let id = sys::shmget(tc.key, 0, 0).ok()?;
    let st = sys::shm_stat(id).ok()?;
    let me = nix::unistd::geteuid().as_raw();
    if st.cuid != me {
        return None;
    }
    // Only a shmbus topic of this very name: another program's memory at
    // the key (an `ftok` key made with 'S' falls among the derived ones),
    // even this user's, is never removed; its sensor then says what is
    // there. Was: any segment of this user's at the key went.
    let named =
        shmbus_core::Segment::attach_shmid(id, tc.key).is_ok_and(|s| s.info().name == tc.name);
    if !named {
        return None;
    }
    shmbus_toolbox::cleanup::remove_idle_topic(Some(id), tc.key, me, None).then_some(())?;
    Some(format!(
        "removed topic `{}` (key 0x{:08x}, shmid {id}): an earlier demo with this pid left it (killed with its sensors?)",
        tc.name, tc.key as u32
    ))
}

/// The largest pid Linux gives (`PID_MAX_LIMIT` on 64-bit machines).
const PID_MAX_LIMIT: u32 = 4_194_304;

/// How many pids before its sensor's pid a demo's pid may be: the demo
/// starts its sensors right after it starts, so only the forks of other
/// programs in those milliseconds come between.
const SENSOR_PID_WINDOW: u32 = 4096;

/// How much later than a topic's creation a process must have started to
/// be surely not the demo that created it (clock ticks, `btime` in whole
/// seconds).
const STARTED_AFTER_MARGIN_S: u64 = 2;

/// A segment that may be a topic a dead demo left.
struct Left {
    shmid: i32,
    key: i32,
    name: String,
    created_s: u64,
}

/// Remove the topics that earlier demos of this config's bus left behind,
/// before this demo (pid `me`) starts its sensors; `topics`: the names of
/// the config's sensor topics with derived keys. Returns what to say, one
/// line per topic removed.
///
/// A demo killed together with its sensors (SIGKILL to the whole group, an
/// OOM kill of their cgroup) cannot clean up, and its topics, locked in
/// RAM, stayed until `shmbus rm`: [`remove_stale`] removes them only when
/// the next demo happens to have the same pid. Here the topics of a demo
/// pid P go when all of this holds, else they stay:
/// - this user created each segment, and nobody has it attached (no
///   publisher, no demo watching it, no `shmbus echo`), and its publisher
///   lock is not held;
/// - each is a shmbus topic whose header carries one of `topics`, at the
///   key that name derives to on the bus `<bus>-<P>`, and P is at most
///   [`SENSOR_PID_WINDOW`] pids before the pid that created the segment
///   (the demo's sensor, started right after the demo);
/// - at least two of the demo's topics are there for P (all of them, if
///   the config has one): a demo leaves every sensor's topic, and two
///   24-bit keys matching one pid by chance do not happen, so a stopped
///   publisher's own topic of the same name is never taken for a demo's;
/// - every pid P that fits (in the window, keys collide) is dead: no such
///   process, or one that started after the topic was made (the pid was
///   reused by a later process, which cannot be the demo that made it). A
///   live process that may be that demo leaves it.
///
/// The lock goes with it only if this user made it, through core's
/// `lock::remove_lock` (which leaves another program's semaphore set).
fn remove_dead_demos(bus: &str, topics: &[&str], me: u32) -> Vec<String> {
    let uid = nix::unistd::geteuid().as_raw();
    let Ok(all) = sysvipc::segments() else {
        return Vec::new();
    };
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(PID_MAX_LIMIT)
        .clamp(2, PID_MAX_LIMIT);
    // By demo pid: the segments that could be that demo's topics, and
    // whether every pid that fits one of them is gone.
    let mut by_pid: std::collections::BTreeMap<u32, Vec<Left>> = Default::default();
    let mut alive_fits = std::collections::BTreeSet::new();
    for e in &all {
        let key = e.key();
        if e.creator_uid() != uid || (key as u32) >> 24 != 0x53 || e.get("nattch") != Some(0) {
            continue;
        }
        let Some(cpid) = e.get("cpid").and_then(|c| u32::try_from(c).ok()) else {
            continue;
        };
        let Ok(seg) = shmbus_core::Segment::attach_shmid(e.id(), key) else {
            continue;
        };
        let info = seg.info();
        if !topics.contains(&info.name.as_str()) {
            continue;
        }
        let created_s = info.created_real_ns / 1_000_000_000;
        let fits = demo_pids_before(bus, &info.name, key, cpid, pid_max);
        if fits.is_empty() {
            continue;
        }
        let gone = fits.iter().all(|&p| p != me && demo_gone(p, created_s));
        for &p in &fits {
            if !gone {
                alive_fits.insert(p);
            }
            by_pid.entry(p).or_default().push(Left {
                shmid: e.id(),
                key,
                name: info.name.clone(),
                created_s,
            });
        }
    }
    let need = topics.len().min(2);
    let mut said = Vec::new();
    for (p, left) in by_pid {
        if alive_fits.contains(&p) || left.len() < need {
            continue;
        }
        for l in left {
            if let Some(line) = remove_left(&l, p, uid) {
                said.push(line);
            }
        }
    }
    said
}

/// Remove one topic a dead demo (pid `demo`) left, checked once more just
/// before (a publisher or a reader may have come since the list was
/// read). Returns what to say.
fn remove_left(l: &Left, demo: u32, uid: u32) -> Option<String> {
    let st = sys::shm_stat(l.shmid).ok()?;
    if st.cuid != uid || st.nattch != 0 || st.key != l.key {
        return None;
    }
    shmbus_toolbox::cleanup::remove_idle_topic(Some(l.shmid), l.key, uid, None).then_some(())?;
    Some(format!(
        "removed topic `{}` (key 0x{:08x}, shmid {}) that an earlier demo left (demo pid {demo}, no longer running; made at {} UTC: killed with its sensors?)",
        printable(&l.name),
        l.key as u32,
        l.shmid,
        shmbus_toolbox::units::utc(l.created_s as i64)
    ))
}

/// The pids P at most [`SENSOR_PID_WINDOW`] before `cpid` (pids wrap at
/// `pid_max`) whose demo bus `<bus>-<P>` gives topic `name` the key `key`.
fn demo_pids_before(bus: &str, name: &str, key: i32, cpid: u32, pid_max: u32) -> Vec<u32> {
    (1..=SENSOR_PID_WINDOW.min(pid_max - 1))
        .map(|back| {
            // `cpid - back`, wrapping below 1 to the top of the pid range
            // (pid 0 is never a process's).
            let p = i64::from(cpid) - i64::from(back);
            if p >= 1 {
                p as u32
            } else {
                (p + i64::from(pid_max) - 1) as u32
            }
        })
        .filter(|&p| p >= 1 && shmbus_core::topic::derive_key(&demo_bus(bus, p), name) == key)
        .collect()
}

/// Whether the demo with pid `pid` that may have made a topic at
/// `created_s` (seconds since the epoch) is surely gone: no process has
/// that pid, or the one that has it started after the topic was made (a
/// pid reused by a later process). A process that started before, or
/// whose start cannot be read, may be that demo: not gone. A zombie is
/// gone.
fn demo_gone(pid: u32, created_s: u64) -> bool {
    let Ok(p) = i32::try_from(pid).map(nix::unistd::Pid::from_raw) else {
        return false;
    };
    // ESRCH: no such process; EPERM: one of another user's.
    if nix::sys::signal::kill(p, None) == Err(nix::errno::Errno::ESRCH) {
        return true;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // A zombie (killed, not reaped yet) runs no more.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, Some('Z' | 'X')) {
        return true;
    }
    process_started_after(&stat, created_s + STARTED_AFTER_MARGIN_S).unwrap_or(false)
}

/// Whether the process of `/proc/PID/stat` text `stat` started after
/// `after_s` (seconds since the epoch), from its start time in clock ticks
/// since boot and the boot time in `/proc/stat`. `None` if unreadable.
fn process_started_after(stat: &str, after_s: u64) -> Option<bool> {
    // The command name, in parentheses, may hold spaces and parentheses:
    // the fields after it start after its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // Field 22 (starttime) is the 20th after the name.
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let btime: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&h| h > 0)? as u64;
    Some(btime + ticks / hz > after_s)
}

/// What cleanup found: keys where something of the demo's is still there,
/// and objects at the demo's keys that the demo did not create.
struct Cleanup {
    left: Vec<i32>,
    not_ours: Vec<String>,
}

/// Remove what this run created, and only that: a segment is the demo's if
/// one of its children created it (`shm_cpid`) as this user (`shm_cuid`); a
/// publisher lock if this user created it and one of the children was the
/// last to use it (`GETPID`) or it was made after the demo started. Anything
/// else at the demo's keys (a squatter's segment or lock, another program's
/// memory) is left alone as evidence and reported, never removed.
fn cleanup(entries: &[Entry], children: &[i32], started_s: i64) -> Cleanup {
    let me = nix::unistd::geteuid().as_raw();
    let mut c = Cleanup {
        left: Vec::new(),
        not_ours: Vec::new(),
    };
    for e in entries.iter().filter(|e| e.child.is_some()) {
        let key = e.tc.key;
        let mut ours_left = false;
        // Whether the segment at the key is this demo's (`None`: none).
        let mut segment_ours = None;
        if let Ok(id) = sys::shmget(key, 0, 0) {
            match sys::shm_stat(id) {
                Ok(st) if st.cuid == me && children.contains(&st.cpid) => {
                    segment_ours = Some(true);
                    ours_left |= sys::shm_remove(id).is_err();
                }
                Ok(st) => {
                    segment_ours = Some(false);
                    c.not_ours.push(format!(
                        "segment at key 0x{:08x} (shmid {id}, created by {} pid {})",
                        key as u32,
                        shmbus_toolbox::units::user(st.cuid),
                        st.cpid
                    ))
                }
                Err(_) => {}
            }
        }
        if let Some(p) = sysvipc::semaphore_by_key(key) {
            let semid = p.id();
            // The lock goes with the topic: the demo's when the demo made
            // the segment, or, with no segment, when it was made during
            // the demo. A topic the demo's sensor only reopened (a config
            // key where one already was) keeps its lock, though the
            // sensor was the last to use it (removing it because of that
            // took another topic's lock).
            let made_since = p.get("ctime").is_some_and(|t| t >= started_s);
            let ours = match segment_ours {
                Some(ours) => ours,
                None => made_since,
            };
            if p.creator_uid() == me && ours {
                ours_left |= sys::sem_remove(semid).is_err();
            } else {
                c.not_ours.push(format!(
                    "publisher lock at key 0x{:08x} (semid {semid}, created by {})",
                    key as u32,
                    shmbus_toolbox::units::user(p.creator_uid())
                ));
            }
        }
        if ours_left {
            c.left.push(key);
        }
    }
    c
}

/// A command that runs `program` with `args`, behind `SHMBUS_TEST_RUNNER`
/// when that is set (a qemu-user process cannot exec a foreign binary;
/// `shmbus_toolbox::process::command`).
pub fn command<A: AsRef<std::ffi::OsStr>>(program: &std::path::Path, args: &[A]) -> Command {
    let mut c = shmbus_toolbox::process::command(program);
    c.args(args);
    c
}

/// `shmbus demo` as the `shmbus` program runs it: each sensor is this
/// same program with the hidden subcommand `__sensor NAME ARGS...`, which
/// must call [`crate::run_sensor`]. One `cargo run -p shmbus-cli -- demo`
/// thus builds everything the demo starts.
///
/// `shmbus __sensor` takes its arguments as the system gives them
/// ([`crate::run_sensor_os`]), so a `--config` path that is not UTF-8
/// reaches every sensor unchanged.
pub fn main_self(duration: Option<Duration>, config: Option<PathBuf>) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            shmbus_toolbox::say!(
                "shmbus demo: cannot locate this program to start the sensors: {e}"
            );
            return ExitCode::from(2);
        }
    };
    let launch = |kind: SensorKind, args: &[OsString]| {
        let mut all = vec![OsString::from(SENSOR_SUBCOMMAND), kind.name().into()];
        all.extend_from_slice(args);
        command(&exe, &all)
    };
    main(duration, config, &launch)
}

/// The hidden subcommand that runs a sensor in-process: `shmbus __sensor
/// NAME ARGS...` → `run_sensor(NAME, ARGS)`.
pub const SENSOR_SUBCOMMAND: &str = "__sensor";

/// The whole `shmbus demo` command: signals, live table on a terminal,
/// summary, exit code (0: every topic received frames, no sensor ended
/// before the demo stopped it and nothing was left behind; 1: not; 2: the
/// config could not be loaded).
pub fn main(duration: Option<Duration>, config: Option<PathBuf>, launch: Launcher<'_>) -> ExitCode {
    if let Err(e) = shmbus_toolbox::stop::install() {
        shmbus_toolbox::say!("shmbus demo: {e}");
        return ExitCode::from(2);
    }
    let mut stdout = std::io::stdout();
    let opts = Options {
        duration,
        config,
        live: shmbus_toolbox::term::stdout_can_redraw(),
    };
    match run(&opts, launch, shmbus_toolbox::stop::flag(), &mut stdout) {
        Ok(report) => {
            let code = if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
            let text = format!("{}{}", if opts.live { "\n" } else { "" }, report.summary());
            let mut o = stdout.lock();
            match o.write_all(text.as_bytes()).and_then(|()| o.flush()) {
                Ok(()) => code,
                // Nobody reads the summary (`| head -1`, `| true`): the
                // cleanup is done, so end quietly with the run's own code
                // (`print!` panicked here: exit 101 and a backtrace).
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
                Err(e) => {
                    shmbus_toolbox::say!("shmbus demo: cannot write the summary: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Err(e) => {
            shmbus_toolbox::say!("shmbus demo: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Args;

    /// A system frame stamped `t_ns`, for the watcher tests.
    fn system_frame(t_ns: u64) -> System {
        System {
            t_ns,
            cpu_pct: Some(1.0),
            cpus: 1,
            load: None,
            tasks: None,
            mem: None,
        }
    }

    /// A watcher stopped before it read its topic's newest frames (or
    /// before it ever ran: a loaded machine) left them uncounted, and the
    /// summary said "no frames" of a topic that had them. The demo stops
    /// the sensors first, so those frames are still in the ring: a
    /// stopped watcher now reads them.
    #[test]
    fn a_watcher_stopped_before_it_read_counts_the_frames_left() {
        let (topic, _g) = shmbus_testkit::unique_topic("demo-watch-left");
        let topic = topic.slots(8);
        let mut p = shmbus_pub::Publisher::<System>::open(&topic).unwrap();
        for t in 1..=5 {
            p.publish(&system_frame(t)).unwrap();
        }
        // Never ran before the stop: it attaches only to count.
        let row: Shared = Arc::default();
        watch::<System>(
            topic.clone(),
            row.clone(),
            Arc::new(AtomicBool::new(true)),
            None,
        );
        assert_eq!(lock(&row).frames, 5);
        // Ran, read, then more frames came just before the stop.
        let row: Shared = Arc::default();
        let quit = Arc::new(AtomicBool::new(false));
        let w = {
            let (topic, row, quit) = (topic.clone(), row.clone(), quit.clone());
            std::thread::spawn(move || watch::<System>(topic, row, quit, None))
        };
        let end = std::time::Instant::now() + Duration::from_secs(60);
        while lock(&row).frames < 5 {
            assert!(std::time::Instant::now() < end, "the watcher never read");
            std::thread::sleep(Duration::from_millis(5));
        }
        // The demo stops the sensor, then the watcher: whether the watcher
        // read these before it saw the stop or after, each counts once.
        for t in 6..=12 {
            p.publish(&system_frame(t)).unwrap();
        }
        quit.store(true, Ordering::Relaxed);
        w.join().unwrap();
        let r = lock(&row);
        assert_eq!((r.frames, r.lost), (12, 0), "{:?}", *r);
    }

    /// A watcher that attaches after its sensor lapped the ring (a slow
    /// start: the watcher looks for the topic every 100 ms at most) counts
    /// the frames already overwritten as lost: frames + lost is what the
    /// sensor published. They were counted as neither. A segment that
    /// someone else made keeps its older frames out of the counts.
    #[test]
    fn frames_overwritten_before_the_watcher_attached_are_lost() {
        shmbus_testkit::watchdog("demo_watch_late", Duration::from_secs(60));
        let (topic, _g) = shmbus_testkit::unique_topic("demo-watch-late");
        let topic = topic.slots(8);
        let mut p = shmbus_pub::Publisher::<System>::open(&topic).unwrap();
        for t in 1..=20 {
            p.publish(&system_frame(t)).unwrap();
        }
        // This process made the segment: it is the topic's sensor here.
        let me = std::process::id() as i32;
        let row: Shared = Arc::default();
        watch::<System>(
            topic.clone(),
            row.clone(),
            Arc::new(AtomicBool::new(true)),
            Some(me),
        );
        let r = lock(&row);
        assert_eq!((r.frames, r.lost), (8, 12), "{:?}", *r);
        drop(r);
        // Another sensor's segment: only what the watcher saw.
        let row: Shared = Arc::default();
        watch::<System>(
            topic.clone(),
            row.clone(),
            Arc::new(AtomicBool::new(true)),
            Some(me + 1),
        );
        let r = lock(&row);
        assert_eq!((r.frames, r.lost), (8, 0), "{:?}", *r);
    }

    /// A sensor whose lock is removed (`ipcrm -s`) and that is quiet for a
    /// moment publishes on: the watcher counts its later frames. It
    /// stopped watching at `PublisherGone`, so a slow sensor that lost its
    /// lock stood at 0 Hz for the rest of the demo.
    #[test]
    fn a_watcher_counts_on_after_the_lock_is_removed_under_a_quiet_sensor() {
        let (topic, _g) = shmbus_testkit::unique_topic("demo-watch-nolock");
        let mut p = shmbus_pub::Publisher::<System>::open(&topic).unwrap();
        let row: Shared = Arc::default();
        let quit = Arc::new(AtomicBool::new(false));
        let w = {
            let (topic, row, quit) = (topic.clone(), row.clone(), quit.clone());
            std::thread::spawn(move || watch::<System>(topic, row, quit, None))
        };
        p.publish(&system_frame(1)).unwrap();
        let until = |n: u64, what: &str| {
            let end = std::time::Instant::now() + Duration::from_secs(60);
            while lock(&row).frames < n {
                assert!(std::time::Instant::now() < end, "{what}: {:?}", *lock(&row));
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        until(1, "the watcher never read the first frame");
        // The lock goes, and nothing comes for longer than a liveness
        // check (100 ms): the watcher's wait ends `PublisherGone`.
        assert!(shmbus_core::lock::remove_lock(topic.key).unwrap());
        std::thread::sleep(Duration::from_millis(500));
        for t in 2..=4 {
            p.publish(&system_frame(t)).unwrap();
        }
        until(4, "the frames after the quiet moment were not counted");
        quit.store(true, Ordering::Relaxed);
        w.join().unwrap();
        let r = lock(&row);
        assert_eq!((r.frames, r.lost), (4, 0), "{:?}", *r);
    }

    #[test]
    fn every_demo_duration_gives_the_sensors_a_duration_they_accept() {
        for secs in [0.001, 3.0, 1e6, shmbus_toolbox::parse::MAX_SECS] {
            let d = Duration::from_secs_f64(secs);
            let arg = safety_net(d);
            let a = Args::parse(&["--duration".to_string(), arg.clone()])
                .unwrap_or_else(|e| panic!("--duration {secs}: the sensor refuses {arg}: {e}"));
            assert!(a.duration.unwrap() >= d, "{secs}: {arg}");
        }
    }

    #[test]
    fn rates_of_slow_topics_and_of_stopped_publishers() {
        let s = 1_000_000_000u64;
        // One frame every 5 s: a rate, not "-".
        let mut slow = Row::default();
        for i in 1..=4 {
            slow.stamp(i * 5 * s);
        }
        assert_eq!(slow.stamps.len(), 2);
        assert!((slow.rate(20 * s) - 0.2).abs() < 1e-9);
        assert!(
            (slow.rate(30 * s) - 0.2).abs() < 1e-9,
            "a late frame is not a stop"
        );
        assert_eq!(slow.rate(36 * s), 0.0, "three periods without a frame");
        // 1 kHz for a second, then nothing: 0 Hz after 2 s of silence.
        let mut fast = Row::default();
        for i in 1..=1000 {
            fast.stamp(i * 1_000_000);
        }
        assert!((fast.rate(s) - 1000.0).abs() < 1e-6);
        assert!((fast.rate(2 * s) - 1000.0).abs() < 1e-6);
        assert_eq!(fast.rate(4 * s), 0.0);
        // A stamp older than the newest (a squatter's frame) is no panic.
        fast.stamp(5);
        assert_eq!(fast.stamps.len(), 1001);
    }

    /// A demo's pid is found from its sensor's pid, a few pids later,
    /// also across the wrap of pids; a pid after the sensor's, or further
    /// back than the window, is not.
    #[test]
    fn demo_pids_are_found_shortly_before_the_sensors_pid() {
        let key = |p: u32| shmbus_core::topic::derive_key(&demo_bus("demo", p), "imu");
        assert_eq!(
            demo_pids_before("demo", "imu", key(4321), 4330, 32_768),
            [4321]
        );
        assert_eq!(
            demo_pids_before("demo", "imu", key(32_766), 3, 32_768),
            [32_766]
        );
        assert!(demo_pids_before("demo", "imu", key(4331), 4330, 32_768).is_empty());
        assert!(
            demo_pids_before(
                "demo",
                "imu",
                key(100),
                100 + SENSOR_PID_WINDOW + 1,
                4_194_304
            )
            .is_empty()
        );
        assert!(
            demo_pids_before("demo", "imu", key(4321), 4330, 32_768)
                .iter()
                .all(|&p| key(p) == key(4321))
        );
    }

    /// A pid is a gone demo's when no process has it, or when the process
    /// that has it started after the topic was made (a reused pid); a
    /// process that started before may be that demo.
    #[test]
    fn a_demo_is_gone_when_its_pid_is_free_or_reused_later() {
        let now_s = sys::realtime_ns() / 1_000_000_000;
        let mut live = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let pid = live.id();
        // Made long before the process started: the pid was reused.
        assert!(demo_gone(pid, now_s - 3600));
        // Made after it started: it may be the demo.
        assert!(!demo_gone(pid, now_s + 3600));
        assert!(!demo_gone(std::process::id(), now_s));
        live.kill().unwrap();
        live.wait().unwrap();
        assert!(demo_gone(pid, now_s + 3600), "a free pid");
        // A command name with spaces and parentheses does not shift the
        // fields: starttime is field 22.
        let stat = "7 (a) b (c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 0 20";
        assert_eq!(process_started_after(stat, 0), Some(true));
        assert_eq!(process_started_after(stat, u64::MAX / 2), Some(false));
        assert_eq!(process_started_after("7 (x", 0), None);
    }

    #[test]
    fn a_long_bus_name_still_gives_a_valid_demo_bus() {
        use shmbus_core::layout::MAX_NAME_LEN;
        use shmbus_core::topic::validate_name;
        assert_eq!(demo_bus("demo", 42), "demo-42");
        let long = "b".repeat(MAX_NAME_LEN);
        let mut config = Config::builtin_demo();
        for pid in [1, 4_194_304] {
            let bus = demo_bus(&long, pid);
            validate_name(&bus).unwrap();
            assert!(bus.ends_with(&format!("-{pid}")), "{bus}");
            config.rebus(&bus).unwrap();
        }
        assert_ne!(demo_bus(&long, 1), demo_bus(&long, 2));
    }

    /// A frame's names (a USB battery's `hid-<serial>-battery`, an
    /// interface, an IIO device) and a sensor's messages reach the screen
    /// escaped: an `ESC ] 0 ;` in one retitled the terminal, an `ESC [ 2 J`
    /// cleared it.
    /// What the summary says of a sensor that failed: one reason per
    /// topic, with how the sensor ended, and `latest: none` for a topic
    /// without a frame. A sensor that failed at its start gave two
    /// reasons that did not say how it ended, and `latest: ` with nothing.
    #[test]
    fn the_summary_says_how_a_failed_sensor_ended() {
        let topic = |name: &str, frames: u64, status: &str, ended_early: bool| TopicReport {
            topic: name.into(),
            key: 1,
            sensor: Some(SensorKind::Imu),
            frames,
            lost: 0,
            rate_hz: 0.0,
            latest: if frames > 0 {
                "acc [0 0 0]".into()
            } else {
                String::new()
            },
            status: status.into(),
            ended_early,
        };
        let report = Report {
            bus: "demo-1".into(),
            topics: vec![
                topic("imu", 0, "exited (code 2)", true),
                topic("net", 5, "exited (signal: 9 (SIGKILL))", true),
                topic("power", 0, "stopped by the demo", false),
                topic("system", 5, "stopped by the demo", false),
            ],
            leftover_keys: vec![],
            not_ours: vec![],
            notes: vec![],
            elapsed: Duration::from_secs(1),
        };
        let text = report.summary();
        assert!(
            text.contains(
                "result: FAILED: the sensor of imu ended before its first frame (exited (code 2)); \
                 the sensor of net ended during the run (exited (signal: 9 (SIGKILL))); \
                 no frames on power\n"
            ),
            "{text}"
        );
        assert!(!text.contains("no frames on imu"), "{text}");
        let imu_row = text
            .lines()
            .find(|l| l.trim_start().starts_with("imu"))
            .unwrap();
        assert!(imu_row.ends_with("exited (code 2)  latest: none"), "{text}");
        // No rate without two frames; "0.0 Hz" with five (stopped).
        assert!(imu_row.contains("  - Hz  "), "{text}");
        let net_row = text
            .lines()
            .find(|l| l.trim_start().starts_with("net"))
            .unwrap();
        assert!(net_row.contains("  0.0 Hz  "), "{text}");
    }

    #[test]
    fn names_and_messages_from_sensors_are_escaped_on_screen() {
        let evil = "bat\x1b]0;owned\x07\x1b[2J\u{202e}";
        let report = Report {
            bus: "demo-1".into(),
            topics: vec![TopicReport {
                topic: "power".into(),
                key: 1,
                sensor: Some(SensorKind::Power),
                frames: 1,
                lost: 0,
                rate_hz: 1.0,
                latest: evil.into(),
                status: evil.into(),
                ended_early: false,
            }],
            leftover_keys: vec![],
            not_ours: vec![],
            notes: vec![evil.into()],
            elapsed: Duration::from_secs(1),
        };
        let text = report.summary();
        assert!(
            !text.contains('\x1b') && !text.contains('\u{202e}'),
            "{text:?}"
        );
        assert!(text.contains("bat\\u001b]0;owned\\u0007"), "{text}");
        let tc = Config::builtin_demo().topics[0].clone();
        let row: Shared = Arc::default();
        {
            let mut r = lock(&row);
            r.frames = 1;
            r.latest = evil.into();
        }
        let entries = [Entry {
            tc,
            kind: Some(SensorKind::Power),
            row,
            child: None,
            exit: Some(evil.into()),
            ended_early: false,
            ended_by: None,
        }];
        let screen = table("demo-1", &entries, &[evil.into()], Duration::ZERO, "x");
        assert!(!screen.contains('\x1b'), "{screen:?}");
        assert!(screen.contains("bat\\u001b]0;owned"), "{screen}");
    }

    /// The publisher column of a topic without a lock: `no lock` once the
    /// row counted frames (a sensor whose lock was removed), `starting`
    /// before. The table holds the row's lock while it asks: a first
    /// version that locked the row again to look hung the live table.
    #[test]
    fn the_table_says_no_lock_for_a_topic_that_had_frames() {
        shmbus_testkit::watchdog("demo_table_no_lock", Duration::from_secs(60));
        let (topic, _g) = shmbus_testkit::unique_topic("demo-no-lock");
        let _p = shmbus_pub::Publisher::<System>::open(&topic).unwrap();
        assert!(shmbus_core::lock::remove_lock(topic.key).unwrap());
        let mut tc = Config::builtin_demo().topics[0].clone();
        tc.key = topic.key;
        let screen = |frames| {
            let row: Shared = Arc::default();
            lock(&row).frames = frames;
            let entries = [Entry {
                tc: tc.clone(),
                kind: Some(SensorKind::System),
                row,
                child: None,
                exit: None,
                ended_early: false,
                ended_by: None,
            }];
            table("demo-1", &entries, &[], Duration::ZERO, "x")
        };
        let s = screen(1);
        assert!(s.contains("no lock") && !s.contains("starting"), "{s}");
        let s = screen(0);
        assert!(s.contains("starting") && !s.contains("no lock"), "{s}");
    }

    /// A sensor that warns for as long as the demo runs (the same line
    /// again, or a new line at every change of a file) costs the demo a
    /// counter: it kept and printed every line.
    #[test]
    fn the_notes_of_a_chatty_sensor_stay_bounded() {
        let mut n = Notes::default();
        for _ in 0..10_000 {
            n.push("thermal: zone0 reads 'garbage'".into());
        }
        for i in 0..10_000 {
            n.push(format!("power: BAT0 status changed to '{i}'"));
        }
        n.push("x".repeat(100_000));
        assert_eq!(n.lines.len(), MAX_NOTES);
        assert_eq!(n.not_kept, 10_000 - (MAX_NOTES as u64 - 1) + 1);
        let shown = n.shown();
        assert_eq!(shown.len(), MAX_NOTES + 1);
        assert_eq!(shown[0], "thermal: zone0 reads 'garbage' (10000 times)");
        assert_eq!(shown[1], "power: BAT0 status changed to '0'");
        assert!(
            shown[MAX_NOTES].starts_with("9938 more messages not kept"),
            "{}",
            shown[MAX_NOTES]
        );
        let total: usize = shown.iter().map(String::len).sum();
        assert!(total < 64 * 1024, "{total} bytes kept");

        let mut n = Notes::default();
        n.push("é".repeat(1000));
        assert!(n.lines[0].0.len() <= MAX_NOTE_LEN + 3);
        assert!(n.lines[0].0.ends_with("..."));
    }
}
