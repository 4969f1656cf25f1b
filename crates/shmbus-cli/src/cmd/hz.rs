//! `shmbus hz TOPIC`: rate, intervals, lost frames, staleness, liveness.
//!
//! Reads every frame's metadata in order (not the frame bytes): intervals
//! come from the publisher's own timestamps, so they do not depend on how
//! promptly this process was scheduled. The rate is the generation delta
//! over the report interval. Lost frames are frames this reader saw
//! overwritten before it got to them; unreadable frames (corrupt, or in a
//! slot a stuck or dead writer left mid-write) are counted apart and
//! described once on stderr, then as a count at most once a second.
//! `--count` and `--duration` hold on every path: each wait ends at the
//! report's end. A wait also ends within a second to see whether standard
//! output still has a reader ([`out::reader_gone`]): `hz --interval 60 |
//! head -1` ends with `head`, not at the next report a minute later.
//!
//! On a terminal the report is one line redrawn in place, with no newline
//! after it until the command ends. Ctrl-C (SIGINT, SIGTERM, SIGHUP) ends
//! it like `--count`: the line is finished and the exit code is 0. It was
//! the signal's default action, which left the line open, so the shell's
//! prompt was drawn after the last report. Every other end (a removed
//! topic, an error) finishes the line too before its message.

use std::time::Duration;

use shmbus_core::sys::monotonic_ns;
use shmbus_core::{ReadError, WaitError};
use shmbus_sub::{RawNext, RawSubscriber};

use shmbus_toolbox::liveness::{Liveness, Watch};
use shmbus_toolbox::repeats::Repeats;

use crate::args::HzArgs;
use crate::discover;
use crate::out::{self, CmdResult, Fail, human_ns};

/// Statistics over one report interval.
///
/// The intervals are summed up as they come (count, min, max, and mean and
/// variance by Welford's method), not kept: a report of `--interval 3600`
/// on a 10 kHz topic kept 36 million of them (288 MB, twice that while
/// the list grew).
#[derive(Debug, Default)]
pub struct Window {
    /// Frames read.
    pub frames: u64,
    /// Frames lost.
    pub lost: u64,
    /// Frames that could not be read.
    pub unreadable: u64,
    intervals: Intervals,
    last: Option<(u64, u64)>,
}

/// Running statistics of intervals, ns.
#[derive(Debug, Default)]
struct Intervals {
    n: u64,
    min: u64,
    max: u64,
    mean: f64,
    /// Sum of squared differences from the mean.
    m2: f64,
}

impl Intervals {
    fn add(&mut self, x: u64) {
        if self.n == 0 {
            (self.min, self.max) = (x, x);
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.n += 1;
        let d = x as f64 - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x as f64 - self.mean);
    }
}

impl Window {
    /// Record frame `generation` published at `mono_ns`.
    pub fn frame(&mut self, generation: u64, mono_ns: u64) {
        if let Some((g, t)) = self.last {
            if g.checked_add(1) == Some(generation) && mono_ns >= t {
                self.intervals.add(mono_ns - t);
            }
        }
        self.last = Some((generation, mono_ns));
        self.frames += 1;
    }

    /// (min, max, mean, standard deviation) of the intervals, ns.
    pub fn stats(&self) -> Option<(u64, u64, f64, f64)> {
        let i = &self.intervals;
        if i.n == 0 {
            return None;
        }
        let var = (i.m2 / i.n as f64).max(0.0);
        Some((i.min, i.max, i.mean, var.sqrt()))
    }

    /// Start the next interval, keeping the last frame for continuity.
    pub fn reset(&mut self) {
        self.frames = 0;
        self.lost = 0;
        self.unreadable = 0;
        self.intervals = Intervals::default();
    }
}

/// The longest a wait sleeps before it looks at standard output again, ns.
const STEP_NS: u64 = 1_000_000_000;

/// Sleep until the next publish, or until `until` (monotonic ns).
fn sleep_on(sub: &mut RawSubscriber, until: u64) {
    let now = monotonic_ns();
    super::sleep_until_publish(sub, Duration::from_nanos(until.saturating_sub(now)));
}

/// A report line drawn in place on a terminal and not yet ended: ended
/// (a newline) when the command ends, however it ends, before anything
/// else is printed on the terminal.
struct OpenLine {
    open: bool,
}

impl OpenLine {
    /// End the line, if one is open.
    fn end(&mut self) -> Result<(), Fail> {
        if std::mem::take(&mut self.open) {
            out::line("")?;
        }
        Ok(())
    }
}

impl Drop for OpenLine {
    fn drop(&mut self) {
        // An error or a closed output: the line is ended if the terminal
        // still takes it, and nothing more can be done if not.
        let _ = self.end();
    }
}

/// Run `shmbus hz`.
pub fn run(a: &HzArgs, bus: Option<&str>) -> CmdResult {
    out::refuse_closed_stdout("the rates would be shown to no one, so nothing is measured")?;
    shmbus_toolbox::stop::install().map_err(Fail::error)?;
    let interval = a.interval;
    let stop_at = a.duration.map(|d| monotonic_ns() + d.as_nanos() as u64);
    let (_, seg) = discover::attach("hz", &a.topic, bus)?;
    let name = seg.info().name.clone();
    // Followed when the topic is removed and created again.
    let (key, mut shmid) = (seg.key(), seg.shmid());
    let mut sub = RawSubscriber::from_segment(seg);
    // Redrawn in place only on a terminal that can move its cursor.
    let tty = shmbus_toolbox::term::stdout_can_redraw();
    let mut line = OpenLine { open: false };
    let mut w = Window::default();
    let mut reports: u64 = 0;
    let mut total_lost: u64 = 0;
    let mut notes = Repeats::new("shmbus: ");
    // Whether a topic without a lock still moves: a first look now, so the
    // first report can tell.
    let mut watch = Watch::new();
    watch.look(sub.publisher(), sub.generation(), sub.age(), monotonic_ns());
    // The next look at standard output ([`out::reader_gone`]).
    let mut look = monotonic_ns() + STEP_NS;
    loop {
        let t0 = monotonic_ns();
        let mut g0 = sub.generation();
        let mut end = t0 + interval.as_nanos() as u64;
        if let Some(s) = stop_at {
            end = end.min(s);
        }
        loop {
            if shmbus_toolbox::stop::requested() {
                line.end()?;
                notes.flush();
                return Ok(out::OK);
            }
            let now = monotonic_ns();
            if now >= end {
                break;
            }
            if now >= look {
                look = now + STEP_NS;
                if out::reader_gone() {
                    return Err(Fail::pipe());
                }
            }
            // Each wait ends by the next look at standard output.
            let until = end.min(look);
            let r = sub.wait_until(Duration::from_nanos(until - now), |s| {
                Ok(match s.next_with(|m, _| m.mono_ns)? {
                    RawNext::Frame(m, t) => Some(Ok((m.generation, t))),
                    RawNext::Missed(n) => Some(Err(n)),
                    RawNext::Empty => None,
                })
            });
            // No publisher: back to reading when one runs again or frames
            // come without one (a lock removed under a live publisher);
            // its other ends are the wait's own.
            let r = match r {
                Err(WaitError::PublisherGone) => {
                    let left = Duration::from_nanos(until.saturating_sub(monotonic_ns()));
                    match sub.wait_for_publisher(left) {
                        Ok(_) | Err(WaitError::Timeout) => continue,
                        Err(e) => Err(e),
                    }
                }
                r => r,
            };
            match r {
                Ok(Ok((g, t))) => w.frame(g, t),
                Ok(Err(n)) => w.lost = w.lost.saturating_add(n),
                Err(WaitError::Timeout) => {}
                // A sensor recreates its removed topic within half a
                // second: measured on (it used to end here, telling the
                // reader to start a publisher that already ran again).
                Err(WaitError::Removed) => {
                    line.end()?;
                    notes.flush();
                    crate::out::notice(&format!(
                        "topic '{name}' was removed (`shmbus rm` or its publisher); waiting for it to be created again"
                    ));
                    match discover::attach_again(&name, key, shmid, stop_at)? {
                        Some(seg) => {
                            shmid = seg.shmid();
                            crate::out::notice(&format!(
                                "topic '{name}' was created again (shmid {shmid}): measuring on"
                            ));
                            sub = RawSubscriber::from_segment(seg);
                            g0 = sub.generation();
                            watch = Watch::new();
                            watch.look(
                                sub.publisher(),
                                sub.generation(),
                                sub.age(),
                                monotonic_ns(),
                            );
                        }
                        None if shmbus_toolbox::stop::requested() => return Ok(out::OK),
                        None => {
                            return Err(Fail::not_found(format!(
                                "topic '{name}' was removed and not created again before the end of --duration"
                            )));
                        }
                    }
                }
                Err(WaitError::Read(e)) => {
                    w.unreadable += 1;
                    let (key, label) = match e {
                        ReadError::PublisherDied => ("died", "reads of a slot left mid-write"),
                        ReadError::WriterStuck { .. } => {
                            ("stuck", "reads of a slot stuck mid-write")
                        }
                        ReadError::Overwritten { .. } => {
                            ("overwritten", "reads of a slot rewritten while read")
                        }
                        _ => ("corrupt", "unreadable frames"),
                    };
                    line.end()?;
                    notes.note(key, label, || format!("'{name}': {e}"));
                    if !matches!(e, ReadError::WriterStuck { .. }) {
                        // Move past it (and what is in the ring behind it).
                        let before = sub.cursor();
                        sub.seek_latest();
                        w.lost = w
                            .lost
                            .saturating_add(sub.cursor().saturating_sub(before).saturating_sub(1));
                    }
                    // Sleep until something is published (or the report
                    // ends) before reading again.
                    sleep_on(&mut sub, until);
                }
                Err(e) => return Err(Fail::error(format!("waiting for frames failed: {e}"))),
            }
        }
        let dt = monotonic_ns().saturating_sub(t0).max(1) as f64 / 1e9;
        let rate = sub.generation().saturating_sub(g0) as f64 / dt;
        total_lost = total_lost.saturating_add(w.lost);
        let stats = match w.stats() {
            Some((min, max, mean, sd)) => format!(
                "interval mean {} min {} max {} sd {}",
                human_ns(mean as u64),
                human_ns(min),
                human_ns(max),
                human_ns(sd as u64)
            ),
            None => "interval -".into(),
        };
        let age = sub.age().map_or("no frame yet".into(), |a| {
            format!("age {}", human_ns(a.as_nanos() as u64))
        });
        let publisher =
            match watch.look(sub.publisher(), sub.generation(), sub.age(), monotonic_ns()) {
                // Nothing this interval from a live publisher: say if it is
                // stopped or stuck in the kernel.
                Liveness::Alive { pid } => {
                    match (rate == 0.0)
                        .then(|| shmbus_toolbox::process::held_up(pid))
                        .flatten()
                    {
                        Some(why) => format!("publisher alive (pid {pid}) but {why}"),
                        None => format!("publisher alive (pid {pid})"),
                    }
                }
                // Its lock removed (`ipcrm -s`, logind's `RemoveIPC`) and
                // frames still coming: it said NOT RUNNING beside the rate.
                Liveness::NoLockPublishing => "publisher running WITHOUT ITS LOCK".into(),
                Liveness::NotRunning | Liveness::NoLock => "publisher NOT RUNNING".into(),
                Liveness::Unknown => "publisher unknown".into(),
            };
        let unreadable = if w.unreadable > 0 {
            format!("  unreadable {}", w.unreadable)
        } else {
            String::new()
        };
        let text = format!(
            "{name}: {rate:.1} Hz  {stats}  lost {} (total {total_lost}){unreadable}  {age}  {publisher}",
            w.lost
        );
        if tty {
            out::raw_after("\r\x1b[K", &text)?;
            line.open = true;
        } else {
            out::line(&text)?;
        }
        w.reset();
        reports += 1;
        let done =
            a.count.is_some_and(|c| reports >= c) || stop_at.is_some_and(|s| monotonic_ns() >= s);
        if done {
            line.end()?;
            notes.flush();
            return Ok(out::OK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_statistics_use_consecutive_frames_only() {
        let mut w = Window::default();
        w.frame(1, 1_000);
        w.frame(2, 2_000);
        w.frame(3, 4_000);
        w.frame(7, 10_000); // a gap: not an interval
        w.frame(8, 11_000);
        let (min, max, mean, _) = w.stats().unwrap();
        assert_eq!((min, max), (1_000, 2_000));
        assert!((mean - 4_000.0 / 3.0).abs() < 1e-6);
        assert_eq!(w.frames, 5);
        w.reset();
        assert!(w.stats().is_none());
        w.frame(9, 12_000);
        assert_eq!(w.stats().unwrap().0, 1_000, "continuity across reports");
    }

    #[test]
    fn window_statistics_are_those_of_the_whole_list() {
        // Intervals 1..=1000 us in a scrambled order, and a jitter of ±1 ns
        // around 1 ms on a clock near 2^62 (where f64 sums lose digits).
        let mut w = Window::default();
        let mut t = 0u64;
        w.frame(0, t);
        for i in 0..1000u64 {
            t += ((i * 617) % 1000 + 1) * 1000;
            w.frame(i + 1, t);
        }
        let (min, max, mean, sd) = w.stats().unwrap();
        assert_eq!((min, max), (1_000, 1_000_000));
        assert!((mean - 500_500.0).abs() < 1e-6, "{mean}");
        // Population standard deviation of 1..=1000, times 1000.
        let want = ((1000.0f64 * 1000.0 - 1.0) / 12.0).sqrt() * 1000.0;
        assert!((sd - want).abs() < 1e-3, "{sd} {want}");
        let mut w = Window::default();
        let mut t = 1u64 << 62;
        w.frame(5, t);
        for i in 0..10_000u64 {
            t += 1_000_000 + (i % 3) - 1;
            w.frame(6 + i, t);
        }
        let (min, max, mean, sd) = w.stats().unwrap();
        assert_eq!((min, max), (999_999, 1_000_001));
        assert!((mean - 1_000_000.0).abs() < 1e-3, "{mean}");
        assert!((sd - (2.0f64 / 3.0).sqrt()).abs() < 1e-3, "{sd}");
        // A generation at the end of the counter is not an overflow.
        w.frame(u64::MAX, t);
        w.frame(0, t);
    }

    /// Heap bytes allocated and not freed by the current thread (this test
    /// binary's allocator counts them; tests run on threads of their own).
    mod heap {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static LIVE: Cell<isize> = const { Cell::new(0) };
        }

        fn count(d: isize) {
            let _ = LIVE.try_with(|l| l.set(l.get() + d));
        }

        pub struct Counting;

        // SAFETY: every call is passed to the system allocator unchanged;
        // the counting touches only a thread-local integer.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                count(layout.size() as isize);
                // SAFETY: the caller's contract for `alloc` holds.
                unsafe { System.alloc(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                count(-(layout.size() as isize));
                // SAFETY: the caller's contract for `dealloc` holds.
                unsafe { System.dealloc(ptr, layout) }
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
                count(new as isize - layout.size() as isize);
                // SAFETY: the caller's contract for `realloc` holds.
                unsafe { System.realloc(ptr, layout, new) }
            }
        }

        #[global_allocator]
        static COUNTING: Counting = Counting;

        pub fn live() -> isize {
            LIVE.with(Cell::get)
        }
    }

    /// A report's memory does not grow with its frames: `hz --interval
    /// 3600` on a fast topic kept every interval (8 bytes a frame, 288 MB
    /// for an hour at 10 kHz).
    #[test]
    fn a_window_takes_no_memory_per_frame() {
        let mut w = Window::default();
        let before = heap::live();
        for g in 0..1_000_000u64 {
            w.frame(g, g * 100);
        }
        let grown = heap::live() - before;
        assert!(
            grown < 4096,
            "a window of 1,000,000 frames holds {grown} heap bytes"
        );
        assert_eq!(w.stats().map(|s| (s.0, s.1)), Some((100, 100)));
    }
}
