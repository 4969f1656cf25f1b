//! `shmbus echo TOPIC`: decoded frames as they arrive.
//!
//! Latest-value mode prints the newest frame, then each newer one (frames
//! published in between are skipped, as a control loop would). `--all`
//! prints every frame in publish order and reports frames it missed (the
//! ring was overwritten before it read them) on standard error.
//!
//! Waiting sleeps in the kernel (futex on the topic's notify word). A
//! publisher that stops is waited for; a removed topic ends the command.

use std::time::Duration;

use serde_json::json;
use shmbus_codec::Codec;
use shmbus_core::sys::{self, monotonic_ns};
use shmbus_core::{PublisherStatus, ReadError, SlotMeta, WaitError};
use shmbus_sub::{RawNext, RawSubscriber};

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
    fn frame(&self, m: &SlotMeta, bytes: &[u8]) -> Result<bool, Fail> {
        let v = match self.codec.decode(bytes) {
            Ok(v) => v,
            Err(e) => {
                out::notice(&format!(
                    "frame {} of '{}' does not decode with the topic's schema ({e}); {} bytes: {}",
                    m.generation,
                    self.name,
                    bytes.len(),
                    hex(bytes)
                ));
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

/// Sleep until the topic has a live publisher or a new frame again, or is
/// removed, or `deadline` passes. Futex waits in steps, so a new
/// publisher's first frame wakes us at once.
fn wait_for_publisher(sub: &RawSubscriber, deadline: Option<u64>) -> Result<(), WaitError> {
    let start_gen = sub.generation();
    loop {
        if sub.is_removed() {
            return Err(WaitError::Removed);
        }
        if sub.publisher().is_alive() || sub.generation() != start_gen {
            return Ok(());
        }
        let now = monotonic_ns();
        let mut step = Duration::from_millis(500);
        if let Some(d) = deadline {
            if now >= d {
                return Err(WaitError::Timeout);
            }
            step = step.min(Duration::from_nanos(d - now));
        }
        let word = sub.segment().notify_word();
        let _ = sys::futex_wait(word, word.load_acquire(), step);
    }
}

/// Run `shmbus echo`.
pub fn run(a: &EchoArgs, bus: Option<&str>) -> CmdResult {
    let (entry, seg) = discover::attach(&a.topic, bus)?;
    let codec = Codec::from_schema_bytes(&seg.info().schema).map_err(|e| {
        Fail::error(format!(
            "the schema in topic '{}' ({}) cannot be used ({e}); the segment may be corrupt: check `shmbus info {}`",
            seg.info().name,
            key_hex(entry.key),
            key_hex(entry.key)
        ))
    })?;
    let timeout = match a.timeout {
        Some(t) => Some(super::secs("--timeout", t)?),
        None => None,
    };
    let p = Printer {
        name: seg.info().name.clone(),
        codec: &codec,
        json: a.json,
    };
    let mut sub = RawSubscriber::from_segment(seg);
    if a.from_oldest {
        sub.seek_oldest();
    }
    let want = a.count.unwrap_or(u64::MAX);
    let mut shown: u64 = 0;
    let mut missed: u64 = 0;
    let mut buf = Vec::new();
    if want == 0 {
        return Ok(out::OK);
    }
    if !a.all {
        match sub.latest_bytes(&mut buf) {
            Ok(Some(m)) => {
                if p.frame(&m, &buf)? {
                    shown += 1;
                }
            }
            Ok(None) => {}
            Err(e) => out::notice(&e.to_string()),
        }
    }
    let mut said_gone = false;
    let mut last_frame = monotonic_ns();
    while shown < want {
        let deadline = timeout.map(|t| last_frame + t.as_nanos() as u64);
        let slice = match deadline {
            Some(d) => Duration::from_nanos(d.saturating_sub(monotonic_ns())),
            None => Duration::from_secs(3600),
        };
        let all = a.all;
        let r = sub.wait_until(slice, |s| {
            if all {
                Ok(match s.next_bytes(&mut buf)? {
                    RawNext::Frame(m, ()) => Some(Event::Frame(m)),
                    RawNext::Missed(n) => Some(Event::Missed(n)),
                    RawNext::Empty => None,
                })
            } else if s.has_new() {
                Ok(s.latest_bytes(&mut buf)?.map(Event::Frame))
            } else {
                Ok(None)
            }
        });
        match r {
            Ok(Event::Frame(m)) => {
                said_gone = false;
                last_frame = monotonic_ns();
                if p.frame(&m, &buf)? {
                    shown += 1;
                }
            }
            Ok(Event::Missed(n)) => {
                missed += n;
                out::notice(&format!(
                    "missed {n} frames of '{}' (the ring holds {}; {missed} missed so far): the reader fell behind; read faster or give the topic more slots",
                    p.name,
                    sub.info().geometry.slot_count
                ));
            }
            Err(WaitError::Timeout) => {
                if deadline.is_some_and(|d| monotonic_ns() >= d) {
                    return Err(Fail::not_found(format!(
                        "no frame on '{}' for {:?}; {}",
                        p.name,
                        timeout.unwrap_or_default(),
                        liveness_hint(&sub)
                    )));
                }
            }
            Err(WaitError::PublisherGone) => {
                if !said_gone {
                    out::notice(&format!(
                        "the publisher of '{}' is not running; waiting for it to come back (Ctrl-C to stop)",
                        p.name
                    ));
                    said_gone = true;
                }
                match wait_for_publisher(&sub, deadline) {
                    Ok(()) => {}
                    Err(WaitError::Removed) => return Err(removed(&p.name)),
                    Err(_) => {
                        return Err(Fail::not_found(format!(
                            "no frame on '{}' for {:?}: its publisher is not running",
                            p.name,
                            timeout.unwrap_or_default()
                        )));
                    }
                }
            }
            Err(WaitError::Removed) => return Err(removed(&p.name)),
            Err(WaitError::Read(ReadError::PublisherDied)) => {
                out::notice(&format!(
                    "the publisher of '{}' died in the middle of a publish; that frame is lost",
                    p.name
                ));
                if a.all {
                    let before = sub.cursor();
                    sub.seek_latest();
                    missed += sub.cursor().saturating_sub(before);
                }
                if let Err(WaitError::Removed) = wait_for_publisher(&sub, deadline) {
                    return Err(removed(&p.name));
                }
            }
            Err(WaitError::Read(e @ ReadError::Corrupt { .. })) => {
                out::notice(&format!("{e}; skipping to the newest frame"));
                sub.seek_latest();
            }
            Err(WaitError::Read(e)) => out::notice(&e.to_string()),
            Err(WaitError::Sys(e)) => {
                return Err(Fail::error(format!("waiting for frames failed: {e}")));
            }
            Err(e) => return Err(Fail::error(e.to_string())),
        }
    }
    Ok(out::OK)
}

fn removed(name: &str) -> Fail {
    Fail::not_found(format!(
        "topic '{name}' was removed (`shmbus rm` or its publisher); start its publisher again and re-run"
    ))
}

fn liveness_hint(sub: &RawSubscriber) -> String {
    match sub.publisher() {
        PublisherStatus::Alive { pid } => {
            format!("its publisher (pid {pid}) is alive but not publishing")
        }
        PublisherStatus::NotRunning | PublisherStatus::NoLock => {
            "its publisher is not running".into()
        }
        PublisherStatus::Unknown => "its publisher's state is unknown".into(),
    }
}
