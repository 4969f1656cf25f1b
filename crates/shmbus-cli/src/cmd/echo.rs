//! `shmbus echo TOPIC`: decoded frames as they arrive.
//!
//! Latest-value mode prints the newest frame, then each newer one (frames
//! published in between are skipped, as a control loop would). `--all`
//! prints every frame in publish order and reports frames it missed (the
//! ring was overwritten before it read them) on standard error.
//!
//! Waiting sleeps in the kernel (futex on the topic's notify word). A
//! publisher that stops is waited for. A removed topic is waited for too,
//! until it is created again at its key (a sensor restarted after `shmbus
//! rm`, or one that recreates its topic when it is removed): echo attaches
//! the new segment, with its schema, and reads on. It used to end there,
//! telling the reader to start a publisher that already ran again.
//! A wait wakes at least once a second to see whether standard output
//! still has a reader ([`out::reader_gone`]): `shmbus echo imu | head -1`
//! on a quiet topic ends when `head` does (exit 0), not at the next frame.
//!
//! ## Bounds
//! `--count N` stops after N frames reached, whether they were shown or
//! could not be (undecodable, corrupt: reported on stderr, exit 2 at the
//! end). `--timeout S` stops (exit 1) when no frame has arrived for S
//! seconds, on every path: waiting for a publisher, a writer stuck
//! mid-write, a ring of corrupt frames. A frame that cannot be read is
//! never read again: the reader moves past it and sleeps until something
//! new is published. A problem that repeats is printed once, then as a
//! count at most once a second.

use std::time::Duration;

use serde_json::json;
use shmbus_codec::Codec;
use shmbus_core::plural::count;
use shmbus_core::sys::monotonic_ns;
use shmbus_core::{PublisherStatus, ReadError, SlotMeta, WaitError};
use shmbus_sub::{RawNext, RawSubscriber};
use shmbus_toolbox::repeats::Repeats;

use crate::args::EchoArgs;
use crate::discover;
use crate::out::{self, CmdResult, Fail, human_ns, key_hex};
use crate::pretty;

enum Event {
    Frame(SlotMeta),
    Missed(u64),
}

struct Printer<'a> {
    name: String,
    codec: &'a Codec,
    json: bool,
}

impl Printer<'_> {
    /// Print frame `m`; `false` (reported through `notes`) if it does not
    /// decode.
    fn frame(&self, m: &SlotMeta, bytes: &[u8], notes: &mut Repeats) -> Result<bool, Fail> {
        let v = match self.codec.decode(bytes) {
            Ok(v) => v,
            Err(e) => {
                notes.note("undecodable", "frames that do not decode", || {
                    format!(
                        "frame {} of '{}' does not decode with the topic's schema ({e}); {} bytes: {}",
                        m.generation,
                        self.name,
                        bytes.len(),
                        hex(bytes)
                    )
                });
                return Ok(false);
            }
        };
        if self.json {
            let o = json!({"topic": self.name, "generation": m.generation, "real_ns": m.real_ns,
                           "mono_ns": m.mono_ns, "value": v});
            out::line(&o.to_string())?;
        } else {
            let age = human_ns(monotonic_ns().saturating_sub(m.mono_ns));
            out::line(&format!("--- {} #{}  ({age} old)", self.name, m.generation))?;
            out::line(&pretty::render(&v))?;
        }
        Ok(true)
    }
}

fn hex(b: &[u8]) -> String {
    let mut s: String = b.iter().take(64).map(|x| format!("{x:02x}")).collect();
    if b.len() > 64 {
        s.push_str("...");
    }
    s
}

/// The longest a wait sleeps before it looks at standard output again.
const STEP: Duration = Duration::from_secs(1);

/// What is left until `deadline` (monotonic ns), at most [`STEP`].
fn left(deadline: Option<u64>) -> Duration {
    deadline
        .map_or(STEP, |d| {
            Duration::from_nanos(d.saturating_sub(monotonic_ns()))
        })
        .min(STEP)
}

/// Run `shmbus echo`.
pub fn run(a: &EchoArgs, bus: Option<&str>) -> CmdResult {
    out::refuse_closed_stdout("the frames would be shown to no one, so none is read")?;
    let (_, mut seg) = discover::attach("echo", &a.topic, bus)?;
    let (name, key) = (seg.info().name.clone(), seg.key());
    let mut tally = Tally {
        last_frame: monotonic_ns(),
        ..Tally::default()
    };
    let mut notes = Repeats::new("shmbus: ");
    let mut first = true;
    loop {
        let codec = Codec::from_schema_bytes(&seg.info().schema).map_err(|e| {
            Fail::error(format!(
                "the schema in topic '{name}' ({}) cannot be used ({e}); the segment may be corrupt: check `shmbus info {}`",
                key_hex(key),
                key_hex(key)
            ))
        })?;
        let p = Printer {
            name: name.clone(),
            codec: &codec,
            json: a.json,
        };
        let shmid = seg.shmid();
        let mut sub = RawSubscriber::from_segment(seg);
        // A topic created again is read from its first frame with --all
        // (every frame in order), as a new topic.
        if a.from_oldest || (a.all && !first) {
            sub.seek_oldest();
        }
        first = false;
        let r = echo(a, &p, &mut sub, &mut notes, &mut tally);
        notes.flush();
        match r? {
            Ended::Done => break,
            Ended::Removed => {
                out::notice(&format!(
                    "topic '{name}' was removed (`shmbus rm` or its publisher); waiting for it to be created again (Ctrl-C to stop)"
                ));
                let deadline = a
                    .timeout
                    .map(|t| tally.last_frame.saturating_add(t.as_nanos() as u64));
                match discover::attach_again(&name, key, shmid, deadline)? {
                    Some(s) => {
                        out::notice(&format!(
                            "topic '{name}' was created again (shmid {}): reading on",
                            s.shmid()
                        ));
                        seg = s;
                    }
                    None => {
                        return Err(Fail::not_found(format!(
                            "no frame on '{name}' for {:?}: the topic was removed and not created again",
                            a.timeout.unwrap_or_default()
                        )));
                    }
                }
            }
        }
    }
    let Tally { reached, shown, .. } = tally;
    if shown < reached {
        return Err(Fail::error(format!(
            "{} of {} of '{name}' could not be shown (see above)",
            reached - shown,
            count(reached, "frame"),
        )));
    }
    Ok(out::OK)
}

/// What `echo` counted, over every segment of the topic it read.
#[derive(Default)]
struct Tally {
    reached: u64,
    shown: u64,
    missed: u64,
    /// When the last frame arrived (monotonic ns): `--timeout` counts
    /// from it.
    last_frame: u64,
}

/// How a segment's [`echo`] loop ended.
enum Ended {
    /// `--count` frames were reached.
    Done,
    /// The segment was removed.
    Removed,
}

/// The loop of `echo` on one segment of the topic.
fn echo(
    a: &EchoArgs,
    p: &Printer<'_>,
    sub: &mut RawSubscriber,
    notes: &mut Repeats,
    tally: &mut Tally,
) -> Result<Ended, Fail> {
    let want = a.count.unwrap_or(u64::MAX);
    let Tally {
        reached,
        shown,
        missed,
        last_frame,
    } = tally;
    // Latest-value mode: the newest generation already handled (shown or
    // reported), so a frame that cannot be read is not read again.
    let mut handled: u64 = 0;
    let mut buf = Vec::new();
    let mut said_gone = false;
    // Nothing printed since the last look at standard output.
    let mut idle = false;
    while *reached < want {
        if idle && out::reader_gone() {
            return Err(Fail::pipe());
        }
        idle = true;
        let deadline = a
            .timeout
            .map(|t| last_frame.saturating_add(t.as_nanos() as u64));
        let now = monotonic_ns();
        if let Some(d) = deadline {
            if now >= d {
                return Err(Fail::not_found(format!(
                    "no frame on '{}' for {:?}; {}",
                    p.name,
                    a.timeout.unwrap_or_default(),
                    liveness_hint(sub)
                )));
            }
        }
        let slice = deadline.map_or(STEP, |d| Duration::from_nanos(d - now).min(STEP));
        let all = a.all;
        let r = sub.wait_until(slice, |s| {
            if all {
                Ok(match s.next_bytes(&mut buf)? {
                    RawNext::Frame(m, ()) => Some(Event::Frame(m)),
                    RawNext::Missed(n) => Some(Event::Missed(n)),
                    RawNext::Empty => None,
                })
            } else if s.generation() > handled {
                Ok(s.latest_bytes(&mut buf)?.map(Event::Frame))
            } else {
                Ok(None)
            }
        });
        match r {
            Ok(Event::Frame(m)) => {
                idle = false;
                said_gone = false;
                *last_frame = monotonic_ns();
                *reached += 1;
                handled = handled.max(m.generation);
                if p.frame(&m, &buf, notes)? {
                    *shown += 1;
                }
            }
            Ok(Event::Missed(n)) => {
                *missed = missed.saturating_add(n);
                let slots = sub.info().geometry.slot_count;
                let so_far = *missed;
                notes.note("missed", "missed-frame reports", || {
                    format!(
                        "missed {} of '{}' (the ring holds {slots}; {so_far} missed so far): the reader fell behind; read faster or give the topic more slots",
                        count(n, "frame"),
                        p.name
                    )
                });
            }
            Err(WaitError::Timeout) => {}
            Err(WaitError::PublisherGone) => {
                if !said_gone {
                    out::notice(&format!(
                        "the publisher of '{}' is not running; waiting for it to come back (Ctrl-C to stop)",
                        p.name
                    ));
                    said_gone = true;
                }
                match sub.wait_for_publisher(left(deadline)) {
                    Ok(_) | Err(WaitError::Timeout) => {}
                    Err(WaitError::Removed) => return Ok(Ended::Removed),
                    Err(e) => return Err(Fail::error(format!("waiting for frames failed: {e}"))),
                }
            }
            Err(WaitError::Removed) => return Ok(Ended::Removed),
            Err(WaitError::Read(ReadError::PublisherDied)) => {
                notes.note("died", "reads of a slot left mid-write", || {
                    format!(
                        "the publisher of '{}' died in the middle of a publish; that frame is lost",
                        p.name
                    )
                });
                skip_to_newest(sub, missed, &mut handled);
                match sub.wait_for_publisher(left(deadline)) {
                    Ok(_) | Err(WaitError::Timeout) => {}
                    Err(WaitError::Removed) => return Ok(Ended::Removed),
                    Err(e) => return Err(Fail::error(format!("waiting for frames failed: {e}"))),
                }
            }
            Err(WaitError::Read(e @ ReadError::Corrupt { generation, .. })) => {
                // A frame reached that cannot be read: it counts, and is
                // never read again.
                *reached += 1;
                handled = handled.max(generation);
                notes.note("corrupt", "corrupt frames", || {
                    format!("{e}; skipping to the newest frame")
                });
                skip_to_newest(sub, missed, &mut handled);
            }
            Err(WaitError::Read(e @ ReadError::WriterStuck { .. })) => {
                notes.note("stuck", "reads of a slot stuck mid-write", || {
                    format!("'{}': {e}; waiting for it", p.name)
                });
                // The reader retried for the stuck bound already; sleep
                // until something is published before retrying.
                super::sleep_until_publish(sub, left(deadline).min(Duration::from_millis(500)));
            }
            Err(WaitError::Read(e)) => {
                notes.note("read", "read errors", || e.to_string());
                skip_to_newest(sub, missed, &mut handled);
            }
            Err(WaitError::Sys(e)) => {
                return Err(Fail::error(format!("waiting for frames failed: {e}")));
            }
            Err(e) => return Err(Fail::error(e.to_string())),
        }
    }
    Ok(Ended::Done)
}

/// Move past everything published so far (a frame that cannot be read and
/// whatever follows it in the ring); in-order frames skipped count as missed.
fn skip_to_newest(sub: &mut RawSubscriber, missed: &mut u64, handled: &mut u64) {
    let before = sub.cursor();
    sub.seek_latest();
    *missed = missed.saturating_add(sub.cursor().saturating_sub(before));
    *handled = (*handled).max(sub.generation());
}

fn liveness_hint(sub: &RawSubscriber) -> String {
    match sub.publisher() {
        PublisherStatus::Alive { pid } => format!(
            "its publisher (pid {pid}) is alive but {}",
            shmbus_toolbox::process::held_up(pid).unwrap_or_else(|| "not publishing".into())
        ),
        PublisherStatus::NotRunning => "its publisher is not running".into(),
        // Its lock removed (`ipcrm -s`, logind's `RemoveIPC`): no frame
        // came for the timeout, so no publisher runs; the age says since when.
        PublisherStatus::NoLock => format!(
            "its publisher is not running: the topic has {}",
            shmbus_toolbox::liveness::no_lock_text(sub.age())
        ),
        PublisherStatus::Unknown => "its publisher's state is unknown".into(),
    }
}
