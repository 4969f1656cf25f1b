//! `shmbus echo TOPIC`: decoded frames as they arrive.
//!
//! Latest-value mode prints the newest frame, then each newer one (frames
//! published in between are skipped, as a control loop would). `--all`
//! prints every frame in publish order and reports frames it missed (the
//! ring was overwritten before it read them) on standard error.
//!
//! Waiting sleeps in the kernel (futex on the topic's notify word). A
//! publisher that stops is waited for; a removed topic ends the command.
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
    let (entry, seg) = discover::attach("echo", &a.topic, bus)?;
    let codec = Codec::from_schema_bytes(&seg.info().schema).map_err(|e| {
        Fail::error(format!(
            "the schema in topic '{}' ({}) cannot be used ({e}); the segment may be corrupt: check `shmbus info {}`",
            seg.info().name,
            key_hex(entry.key),
            key_hex(entry.key)
        ))
    })?;
    let p = Printer {
        name: seg.info().name.clone(),
        codec: &codec,
        json: a.json,
    };
    let mut sub = RawSubscriber::from_segment(seg);
    if a.from_oldest {
        sub.seek_oldest();
    }
    let mut notes = Repeats::new("shmbus: ");
    let r = echo(a, &p, &mut sub, &mut notes);
    notes.flush();
    let (reached, shown) = r?;
    if shown < reached {
        return Err(Fail::error(format!(
            "{} of {reached} frames of '{}' could not be shown (see above)",
            reached - shown,
            p.name
        )));
    }
    Ok(out::OK)
}

/// The loop of `echo`: (frames reached, frames shown).
fn echo(
    a: &EchoArgs,
    p: &Printer<'_>,
    sub: &mut RawSubscriber,
    notes: &mut Repeats,
) -> Result<(u64, u64), Fail> {
    let want = a.count.unwrap_or(u64::MAX);
    let (mut reached, mut shown, mut missed) = (0u64, 0u64, 0u64);
    // Latest-value mode: the newest generation already handled (shown or
    // reported), so a frame that cannot be read is not read again.
    let mut handled: u64 = 0;
    let mut buf = Vec::new();
    let mut said_gone = false;
    let mut last_frame = monotonic_ns();
    // Nothing printed since the last look at standard output.
    let mut idle = false;
    while reached < want {
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
                last_frame = monotonic_ns();
                reached += 1;
                handled = handled.max(m.generation);
                if p.frame(&m, &buf, notes)? {
                    shown += 1;
                }
            }
            Ok(Event::Missed(n)) => {
                missed = missed.saturating_add(n);
                let slots = sub.info().geometry.slot_count;
                notes.note("missed", "missed-frame reports", || {
                    format!(
                        "missed {n} frames of '{}' (the ring holds {slots}; {missed} missed so far): the reader fell behind; read faster or give the topic more slots",
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
                    Err(WaitError::Removed) => return Err(removed(&p.name)),
                    Err(e) => return Err(Fail::error(format!("waiting for frames failed: {e}"))),
                }
            }
            Err(WaitError::Removed) => return Err(removed(&p.name)),
            Err(WaitError::Read(ReadError::PublisherDied)) => {
                notes.note("died", "reads of a slot left mid-write", || {
                    format!(
                        "the publisher of '{}' died in the middle of a publish; that frame is lost",
                        p.name
                    )
                });
                skip_to_newest(sub, &mut missed, &mut handled);
                match sub.wait_for_publisher(left(deadline)) {
                    Ok(_) | Err(WaitError::Timeout) => {}
                    Err(WaitError::Removed) => return Err(removed(&p.name)),
                    Err(e) => return Err(Fail::error(format!("waiting for frames failed: {e}"))),
                }
            }
            Err(WaitError::Read(e @ ReadError::Corrupt { generation, .. })) => {
                // A frame reached that cannot be read: it counts, and is
                // never read again.
                reached += 1;
                handled = handled.max(generation);
                notes.note("corrupt", "corrupt frames", || {
                    format!("{e}; skipping to the newest frame")
                });
                skip_to_newest(sub, &mut missed, &mut handled);
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
                skip_to_newest(sub, &mut missed, &mut handled);
            }
            Err(WaitError::Sys(e)) => {
                return Err(Fail::error(format!("waiting for frames failed: {e}")));
            }
            Err(e) => return Err(Fail::error(e.to_string())),
        }
    }
    Ok((reached, shown))
}

/// Move past everything published so far (a frame that cannot be read and
/// whatever follows it in the ring); in-order frames skipped count as missed.
fn skip_to_newest(sub: &mut RawSubscriber, missed: &mut u64, handled: &mut u64) {
    let before = sub.cursor();
    sub.seek_latest();
    *missed = missed.saturating_add(sub.cursor().saturating_sub(before));
    *handled = (*handled).max(sub.generation());
}

fn removed(name: &str) -> Fail {
    Fail::not_found(format!(
        "topic '{name}' was removed (`shmbus rm` or its publisher); start its publisher again and re-run"
    ))
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
