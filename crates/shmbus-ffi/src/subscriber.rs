//! Subscribers from C: attach read-only, read the newest frame or every
//! frame in order, block with a timeout, check staleness and liveness.
//!
//! Every read can deliver into a typed frame, a byte buffer or (with the
//! codec) JSON text. An in-order read keeps the frame it read until it is
//! delivered: a buffer that is too small loses nothing (the next call with a
//! larger buffer gets the same frame).

use core::ffi::c_char;
use core::time::Duration;
use std::sync::Arc;

use shmbus_sub::{PublisherStatus, RawNext, RawSubscriber, ReadError, SlotMeta, WaitError};

use crate::cabi;
use crate::frame::{self, shmbus_frame};
use crate::handles::{self, Held, Kind, Object};
use crate::schema::{self, SchemaDef, SchemaHandle, shmbus_schema};
use crate::status::*;
use crate::topic::{self, shmbus_topic, shmbus_topic_info};

/// A subscriber handle (from `shmbus_subscriber_open`). Zero is never a
/// valid handle.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types, reason = "C type name, as the header shows it")]
pub struct shmbus_subscriber {
    /// Opaque id.
    pub id: u64,
}

/// A frame's metadata, filled by every read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(non_camel_case_types, reason = "C type name, as the header shows it")]
pub struct shmbus_sample {
    /// Generation of the frame (publish counter, from 1).
    pub generation: u64,
    /// `CLOCK_MONOTONIC` at publish, ns.
    pub mono_ns: u64,
    /// `CLOCK_REALTIME` at publish, ns since the epoch.
    pub real_ns: u64,
    /// How long ago it was published when it was read, ns (monotonic).
    pub age_ns: u64,
    /// With `SHMBUS_MISSED`: frames lost because the reader fell behind.
    pub missed: u64,
    /// Encoded frame length in bytes.
    pub len: u32,
    /// Zero.
    pub reserved: u32,
}

/// Publisher liveness and topic staleness (`shmbus_subscriber_status`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(non_camel_case_types, reason = "C type name, as the header shows it")]
pub struct shmbus_status {
    /// Generation of the newest frame (0: none yet).
    pub generation: u64,
    /// Time since the newest publish, ns (monotonic); `UINT64_MAX` before
    /// the first frame.
    pub age_ns: u64,
    /// `SHMBUS_PUBLISHER_ALIVE`, `_NOT_RUNNING`, `_NO_LOCK` or `_UNKNOWN`.
    pub publisher: i32,
    /// Pid of the live publisher, else 0.
    pub publisher_pid: i32,
    /// 1 if the topic was removed since this subscriber attached.
    pub removed: i32,
    /// 1 if a frame newer than the last one read was published.
    pub has_new: i32,
}

/// The publisher holds the topic's lock: it is running.
pub const SHMBUS_PUBLISHER_ALIVE: i32 = 1;
/// The lock is free: the publisher is not running (its frames stay
/// readable).
pub const SHMBUS_PUBLISHER_NOT_RUNNING: i32 = 2;
/// The topic has no lock (removed, or never had a publisher).
pub const SHMBUS_PUBLISHER_NO_LOCK: i32 = 3;
/// The lock could not be read (permission).
pub const SHMBUS_PUBLISHER_UNKNOWN: i32 = 0;

/// A subscriber, the topic's schema, and the frame read but not yet
/// delivered.
#[derive(Debug)]
pub struct Sub {
    /// The subscriber.
    pub raw: RawSubscriber,
    /// The topic's schema, if it decodes.
    pub schema: Result<SchemaHandle>,
    /// Bytes of the last in-order frame read.
    pub buf: Vec<u8>,
    /// The in-order frame in `buf` not yet delivered.
    pub pending: Option<SlotMeta>,
    /// Bytes of the last latest-value read.
    pub lbuf: Vec<u8>,
    /// The newest frame in `lbuf`, read but not yet delivered (a buffer
    /// that was too small): a wait for the latest frame returns at once
    /// while it is there, so a retry with a larger buffer is not left
    /// waiting for a publish that already came.
    pub pending_latest: Option<SlotMeta>,
    /// Metadata of the frame read last (latest or in order), reported with
    /// `SHMBUS_ERR_BUFFER_TOO_SMALL`.
    pub last: Option<SlotMeta>,
    /// Scratch for JSON text.
    pub text: Vec<u8>,
}

fn sub_of(held: &mut Held) -> &mut Sub {
    match held.object() {
        Object::Subscriber(s) => s,
        _ => unreachable!("handles::get checked the kind"),
    }
}

/// Where a read delivers the frame.
pub(crate) enum Dest<'a> {
    /// Nowhere: only the sample (metadata) is wanted.
    None,
    /// Decoded into a typed frame.
    Frame(&'a mut frame::Frame),
    /// Copied as bytes.
    Bytes(&'a mut [u8]),
    /// Rendered as JSON text with a NUL; the length goes to the `usize`.
    Json(&'a mut [u8], &'a mut usize),
}

/// Which of the subscriber's buffers holds the frame to deliver.
#[derive(Clone, Copy)]
enum Buf {
    Next,
    Latest,
}

/// What a read found.
pub(crate) enum Got {
    Frame(SlotMeta),
    Missed(u64),
    Nothing,
}

fn sample_of(m: &SlotMeta) -> shmbus_sample {
    shmbus_sample {
        generation: m.generation,
        mono_ns: m.mono_ns,
        real_ns: m.real_ns,
        age_ns: shmbus_core::sys::monotonic_ns().saturating_sub(m.mono_ns),
        missed: 0,
        len: m.len,
        reserved: 0,
    }
}

impl Sub {
    fn schema(&self) -> Result<&SchemaHandle> {
        self.schema.as_ref().map_err(|e| e.clone())
    }

    /// Check, before anything is read, that `dest` can take a frame of
    /// this topic: a typed frame of the topic's schema, JSON only if the
    /// schema decodes. A read refused here consumes nothing.
    fn check_dest(&self, dest: &Dest<'_>) -> Result<()> {
        match dest {
            Dest::None | Dest::Bytes(_) => Ok(()),
            Dest::Json(..) => self.schema().map(|_| ()),
            Dest::Frame(f) => {
                let schema = self.schema()?;
                if f.schema.fingerprint != schema.fingerprint {
                    return fail(
                        SHMBUS_ERR_WRONG_TYPE,
                        format!(
                            "the frame is a '{}' (schema {:016x}), the topic carries '{}' (schema {:016x}): make the frame from shmbus_subscriber_schema()",
                            f.schema.owned.name,
                            f.schema.fingerprint,
                            schema.owned.name,
                            schema.fingerprint
                        ),
                    );
                }
                Ok(())
            }
        }
    }

    /// Deliver the frame in buffer `which` (metadata `m`) into `dest`
    /// (checked by [`Sub::check_dest`]).
    fn deliver(&mut self, which: Buf, m: &SlotMeta, dest: &mut Dest<'_>) -> Result<()> {
        let bytes = match which {
            Buf::Next => &self.buf,
            Buf::Latest => &self.lbuf,
        };
        match dest {
            Dest::Json(out, len) => {
                let schema = self.schema.as_ref().map_err(|e| e.clone())?;
                crate::json::render(schema, bytes, &mut self.text, out, len)
            }
            Dest::None => Ok(()),
            Dest::Bytes(out) => cabi::copy_out(bytes, out, "the frame"),
            Dest::Frame(f) => {
                let schema = self.schema()?;
                // All or nothing: a frame that does not decode leaves the
                // caller's values as they were.
                f.decode(bytes).map_err(|what| {
                    Error::new(
                        SHMBUS_ERR_READ,
                        format!(
                            "frame {} does not decode as '{}' ({what}): the publisher and the schema disagree",
                            m.generation, schema.owned.name
                        ),
                    )
                })
            }
        }
    }

    /// Read (`how`, a `SHMBUS_READ_*` kind) into the subscriber's own
    /// buffers, delivering nothing yet: a wait holds only the subscriber,
    /// never the caller's frame.
    fn fetch(&mut self, how: i32, timeout_ms: u32) -> Result<Fetched> {
        let timeout = Duration::from_millis(timeout_ms.into());
        match how {
            SHMBUS_READ_LATEST => self.fetch_latest(),
            SHMBUS_READ_WAIT_LATEST if self.pending_latest.is_some() => self.fetch_latest(),
            SHMBUS_READ_WAIT_LATEST => {
                let buf = &mut self.lbuf;
                let m = self
                    .raw
                    .wait_until(timeout, |raw| {
                        if !raw.has_new() {
                            return Ok(None);
                        }
                        raw.latest_bytes(buf)
                    })
                    .map_err(topic::wait_error)?;
                self.pending_latest = Some(m);
                Ok(Fetched::Frame(Buf::Latest, m))
            }
            SHMBUS_READ_NEXT | SHMBUS_READ_WAIT_NEXT if self.pending.is_some() => Ok(self
                .pending
                .map_or(Fetched::Nothing, |m| Fetched::Frame(Buf::Next, m))),
            SHMBUS_READ_NEXT => {
                let got = self.raw.next_bytes(&mut self.buf);
                match got.map_err(|e| self.lost_at_cursor(e))? {
                    RawNext::Frame(m, ()) => {
                        self.pending = Some(m);
                        Ok(Fetched::Frame(Buf::Next, m))
                    }
                    RawNext::Missed(n) => Ok(Fetched::Missed(n)),
                    RawNext::Empty => Ok(Fetched::Nothing),
                }
            }
            SHMBUS_READ_WAIT_NEXT => {
                let buf = &mut self.buf;
                let got = self.raw.wait_until(timeout, |raw| {
                    Ok(match raw.next_bytes(buf)? {
                        RawNext::Frame(m, ()) => Some(Fetched::Frame(Buf::Next, m)),
                        RawNext::Missed(n) => Some(Fetched::Missed(n)),
                        RawNext::Empty => None,
                    })
                });
                let got = got.map_err(|e| match e {
                    WaitError::Read(e) => self.lost_at_cursor(e),
                    e => topic::wait_error(e),
                })?;
                if let Fetched::Frame(_, m) = got {
                    self.pending = Some(m);
                }
                Ok(got)
            }
            other => fail(
                SHMBUS_ERR_INVALID,
                format!("read {other}: use SHMBUS_READ_LATEST, _NEXT, _WAIT_NEXT or _WAIT_LATEST"),
            ),
        }
    }

    /// The code and message of in-order read error `e`. A slot left
    /// mid-write at the cursor (its publisher died, or stopped, while it
    /// overwrote that frame with one a lap newer) means the frame there is
    /// lost whatever the publisher does next, and the frames after it are
    /// whole: the cursor moves past it, as it does past a frame that does
    /// not decode, so the next read returns the frame after it. The Rust
    /// API leaves the cursor there for its caller's `skip()`, which C and
    /// Python do not have: their reads returned this error for ever while
    /// no new publisher started, and never read the frames after it.
    fn lost_at_cursor(&mut self, e: ReadError) -> Error {
        match self.raw.skip_lost(&e) {
            Some(lost) => Error::new(
                SHMBUS_ERR_READ,
                format!(
                    "frame {} of '{}' is lost: {}; the next read returns the frame after it",
                    lost.generation,
                    self.raw.info().name,
                    lost.why
                ),
            ),
            None => topic::read_error(e),
        }
    }

    /// The newest frame into `lbuf`, pending until delivered.
    fn fetch_latest(&mut self) -> Result<Fetched> {
        match self
            .raw
            .latest_bytes(&mut self.lbuf)
            .map_err(topic::read_error)?
        {
            None => Ok(Fetched::Nothing),
            Some(m) => {
                self.pending_latest = Some(m);
                Ok(Fetched::Frame(Buf::Latest, m))
            }
        }
    }

    /// Deliver what [`Sub::fetch`] read into `dest`. A frame is consumed
    /// once delivered, or once it proves undeliverable whatever the buffer
    /// (it does not decode); with `SHMBUS_ERR_BUFFER_TOO_SMALL` it stays
    /// pending, so the next call with a larger buffer gets it.
    fn deliver_fetched(&mut self, fetched: Fetched, dest: &mut Dest<'_>) -> Result<Got> {
        let (which, m) = match fetched {
            Fetched::Frame(which, m) => (which, m),
            Fetched::Missed(n) => return Ok(Got::Missed(n)),
            Fetched::Nothing => return Ok(Got::Nothing),
        };
        self.last = Some(m);
        let r = self.deliver(which, &m, dest);
        if !matches!(&r, Err(e) if e.code == SHMBUS_ERR_BUFFER_TOO_SMALL) {
            match which {
                Buf::Next => self.pending = None,
                Buf::Latest => self.pending_latest = None,
            }
        }
        r.map(|()| Got::Frame(m))
    }

    /// Read `how` into `dest`, checked first (see [`Sub::check_dest`]).
    pub(crate) fn read(&mut self, how: i32, timeout_ms: u32, dest: &mut Dest<'_>) -> Result<Got> {
        self.check_dest(dest)?;
        let fetched = self.fetch(how, timeout_ms)?;
        self.deliver_fetched(fetched, dest)
    }
}

/// What [`Sub::fetch`] read: a frame in one of the buffers, not yet
/// delivered.
enum Fetched {
    Frame(Buf, SlotMeta),
    Missed(u64),
    Nothing,
}

/// Attach `topic`, retrying "not there yet" until the deadline
/// (`RawSubscriber::wait_for_topic`: a topic that appeared while waiting is
/// read from its first frame still in the ring).
fn attach(topic: &shmbus_core::Topic, timeout_ms: u32) -> Result<RawSubscriber> {
    RawSubscriber::wait_for_topic(topic, Duration::from_millis(timeout_ms.into()))
        .map_err(topic::open_error)
}

/// Attach `topic` read-only, waiting up to `timeout_ms` for its publisher
/// to create it (0: do not wait). With a non-zero `expected` schema handle,
/// refuse a topic whose frames are of another type
/// (`SHMBUS_ERR_SCHEMA_MISMATCH`); with `expected.id == 0`, take any type
/// (read its schema with `shmbus_subscriber_schema`).
///
/// The in-order cursor starts after the newest frame (only frames
/// published from now on); `shmbus_subscriber_seek_oldest` moves it back to
/// the oldest frame still in the ring. A topic that appeared while this
/// call waited for it starts at its oldest frame still in the ring, so its
/// first frames are not lost.
///
/// Errors: `SHMBUS_ERR_NOT_FOUND` (no publisher yet), the schema mismatch,
/// `SHMBUS_ERR_PERMISSION`, `SHMBUS_ERR_OPEN` (garbage or foreign segment,
/// spoofing checks), `SHMBUS_ERR_INVALID`.
///
/// # Safety
/// `topic` points to a `shmbus_topic` (strings NUL-terminated or NULL);
/// `out` to a writable `shmbus_subscriber`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_subscriber_open(
    topic: *const shmbus_topic,
    expected: shmbus_schema,
    timeout_ms: u32,
    out: *mut shmbus_subscriber,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        // SAFETY: the caller's contract.
        let t = unsafe { topic::topic_from(topic) }?;
        *out = open(&t, expected, timeout_ms)?;
        Ok(SHMBUS_OK)
    })
}

/// Attach the topic `name` as the board's config declares it (its key and
/// publisher user), as `shmbus_subscriber_open` does otherwise: the same
/// topic a Rust reader or `shmbus echo` finds under that name.
///
/// `config` is the path of the config file; NULL finds it as the `shmbus`
/// tools do (`$SHMBUS_CONFIG`, else `/etc/shmbus/shmbus.toml`, else the
/// built-in demo config). `bus` moves the config's derived keys to another
/// bus (as `--bus`); NULL keeps the config's own.
///
/// Errors: `SHMBUS_ERR_CONFIG` (the file cannot be read, has errors, each
/// `path:line:col: message`, or declares no topic `name`: the message lists
/// those it does and suggests the closest), then those of
/// `shmbus_subscriber_open` (`SHMBUS_ERR_SCHEMA_MISMATCH` if `expected` is
/// not the schema the running publisher publishes).
///
/// # Safety
/// `config` and `bus` are NULL or NUL-terminated; `name` is NUL-terminated;
/// `out` points to a writable `shmbus_subscriber`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_subscriber_open_config(
    config: *const c_char,
    bus: *const c_char,
    name: *const c_char,
    expected: shmbus_schema,
    timeout_ms: u32,
    out: *mut shmbus_subscriber,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        // SAFETY: the caller's contract.
        let t = unsafe { crate::config::topic_of(config, bus, name) }?;
        *out = open(&t, expected, timeout_ms)?;
        Ok(SHMBUS_OK)
    })
}

/// Attach `t` (both entry points).
fn open(
    t: &shmbus_core::Topic,
    expected: shmbus_schema,
    timeout_ms: u32,
) -> Result<shmbus_subscriber> {
    let expected = if expected.id == 0 {
        None
    } else {
        Some(schema::get(expected)?)
    };
    let raw = attach(t, timeout_ms)?;
    let info = raw.info();
    if let Some(want) = &expected {
        if want.fingerprint != info.schema_fingerprint {
            return Err(topic::open_error(shmbus_core::OpenError::SchemaMismatch {
                key: t.key,
                topic: info.name.clone(),
                expected: want.fingerprint,
                found: info.schema_fingerprint,
            }));
        }
    }
    let schema = SchemaDef::from_bytes(&info.schema).map(Arc::new);
    let cap = info.geometry.frame_capacity;
    // Two buffers of up to 16 MiB each: an error, not an abort, when this
    // process has no room for them.
    let buffer = || {
        let mut v = Vec::new();
        v.try_reserve_exact(cap + 4)
            .map_err(|_| {
                topic::open_error(shmbus_core::OpenError::BufferMemory {
                    key: t.key,
                    size: cap as u64 + 4,
                })
            })
            .map(|()| v)
    };
    let sub = Sub {
        raw,
        schema,
        buf: buffer()?,
        pending: None,
        lbuf: buffer()?,
        pending_latest: None,
        last: None,
        text: Vec::new(),
    };
    Ok(shmbus_subscriber {
        id: handles::insert(Object::Subscriber(Box::new(sub)))?,
    })
}

/// Close a subscriber (detach). A second close is `SHMBUS_ERR_CLOSED`.
#[unsafe(no_mangle)]
pub extern "C" fn shmbus_subscriber_close(subscriber: shmbus_subscriber) -> i32 {
    guard(|| {
        drop(handles::remove(subscriber.id, Kind::Subscriber)?);
        Ok(SHMBUS_OK)
    })
}

/// A new schema handle for the topic's schema (to make a frame for
/// typed reads). `SHMBUS_ERR_SCHEMA` if the segment's schema does not
/// decode. Close it with `shmbus_schema_close`.
///
/// # Safety
/// `out` points to a writable `shmbus_schema`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_subscriber_schema(
    subscriber: shmbus_subscriber,
    out: *mut shmbus_schema,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        let mut held = handles::get(subscriber.id, Kind::Subscriber)?;
        let s = sub_of(&mut held).schema()?.clone();
        drop(held);
        *out = schema::insert(s)?;
        Ok(SHMBUS_OK)
    })
}

/// The longest a blocking wait holds its subscriber's handle in one go, ms.
/// A longer wait sleeps in slices of this, letting other calls on the
/// handle in between: a `shmbus_subscriber_close` from another thread
/// returns at once instead of after the wait's timeout (up to 49 days), and
/// the wait then returns `SHMBUS_ERR_CLOSED`.
pub(crate) const WAIT_SLICE_MS: u32 = 100;

/// Run `slice(ms)` until it returns anything but a timeout or `timeout_ms`
/// has passed; each call gets at most [`WAIT_SLICE_MS`] of what is left.
/// A read that does not wait (`how` not a wait kind) runs once.
fn sliced<T>(
    subscriber: shmbus_subscriber,
    how: i32,
    timeout_ms: u32,
    mut slice: impl FnMut(u32) -> Result<T>,
) -> Result<T> {
    if !matches!(how, SHMBUS_READ_WAIT_NEXT | SHMBUS_READ_WAIT_LATEST) {
        return slice(timeout_ms);
    }
    sliced_wait(subscriber, timeout_ms, slice)
}

/// Run the wait `slice(ms)` until it returns anything but a timeout or
/// `timeout_ms` has passed; each call gets at most [`WAIT_SLICE_MS`] of
/// what is left, so that another thread's calls on the same handle (a
/// close) get in between: between two slices, a thread blocked on the
/// handle goes first (`handles::let_others_in`).
fn sliced_wait<T>(
    subscriber: shmbus_subscriber,
    timeout_ms: u32,
    mut slice: impl FnMut(u32) -> Result<T>,
) -> Result<T> {
    if timeout_ms <= WAIT_SLICE_MS {
        return slice(timeout_ms);
    }
    let now = shmbus_core::sys::monotonic_ns;
    let deadline = now().saturating_add(u64::from(timeout_ms) * 1_000_000);
    loop {
        let left_ms = deadline.saturating_sub(now()).div_ceil(1_000_000);
        let ms = left_ms.min(u64::from(WAIT_SLICE_MS)) as u32;
        match slice(ms) {
            Err(e) if e.code == SHMBUS_ERR_TIMEOUT && now() < deadline => {
                handles::let_others_in(subscriber.id, Kind::Subscriber, deadline);
            }
            r => return r,
        }
    }
}

/// Run read `how` on the subscriber `subscriber`, delivering into `frame`
/// (id 0: no typed delivery) and filling `sample`. For a wait, the frame
/// is locked to check its schema, released for the wait (it may take long;
/// another thread may publish with that frame meanwhile), and locked again
/// to deliver; any other read holds it once, throughout. A wait holds the
/// subscriber a slice at a time ([`WAIT_SLICE_MS`]).
fn read(
    subscriber: shmbus_subscriber,
    frame: shmbus_frame,
    how: i32,
    timeout_ms: u32,
    sample: *mut shmbus_sample,
) -> Result<i32> {
    if frame.id == 0 {
        let got = sliced(subscriber, how, timeout_ms, |ms| {
            let mut held = handles::get(subscriber.id, Kind::Subscriber)?;
            sub_of(&mut held).read(how, ms, &mut Dest::None)
        })?;
        return Ok(report(got, sample));
    }
    if !matches!(how, SHMBUS_READ_WAIT_NEXT | SHMBUS_READ_WAIT_LATEST) {
        // A read that does not block holds the frame once, throughout.
        let mut held = handles::get(subscriber.id, Kind::Subscriber)?;
        let mut fheld = frame::held_second(frame, &held)?;
        let mut dest = Dest::Frame(frame::in_held(&mut fheld));
        let got = sub_of(&mut held).read(how, timeout_ms, &mut dest)?;
        return Ok(report(got, sample));
    }
    let (mut held, fetched) = sliced(subscriber, how, timeout_ms, |ms| {
        let mut held = handles::get(subscriber.id, Kind::Subscriber)?;
        {
            let mut fheld = frame::held_second(frame, &held)?;
            sub_of(&mut held).check_dest(&Dest::Frame(frame::in_held(&mut fheld)))?;
        }
        let fetched = sub_of(&mut held).fetch(how, ms)?;
        Ok((held, fetched))
    })?;
    // A frame closed during the wait: the read frame stays pending.
    let mut fheld = frame::held_second(frame, &held)?;
    let mut dest = Dest::Frame(frame::in_held(&mut fheld));
    let got = sub_of(&mut held).deliver_fetched(fetched, &mut dest)?;
    Ok(report(got, sample))
}

/// Fill `sample` (if not NULL) and return the status of a read.
fn report(got: Got, sample: *mut shmbus_sample) -> i32 {
    // SAFETY: `sample` is NULL or writable, by the exported function's
    // contract.
    let out = unsafe { cabi::opt_out(sample) };
    match got {
        Got::Frame(m) => {
            if let Some(o) = out {
                *o = sample_of(&m);
            }
            SHMBUS_OK
        }
        Got::Missed(n) => {
            if let Some(o) = out {
                *o = shmbus_sample {
                    missed: n,
                    ..shmbus_sample::default()
                };
            }
            SHMBUS_MISSED
        }
        Got::Nothing => SHMBUS_NO_FRAME,
    }
}

/// Read the newest frame into `frame` (a frame of the topic's schema, or
/// `{0}` for only the sample). Returns `SHMBUS_OK`, or `SHMBUS_NO_FRAME`
/// before the first publish. Never goes back in time: each call returns
/// the frame it returned before or a newer one.
///
/// # Safety
/// `sample` is NULL or points to a writable `shmbus_sample`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_subscriber_latest(
    subscriber: shmbus_subscriber,
    frame: shmbus_frame,
    sample: *mut shmbus_sample,
) -> i32 {
    guard(|| read(subscriber, frame, SHMBUS_READ_LATEST, 0, sample))
}

/// Read the next frame in publish order into `frame`. Returns `SHMBUS_OK`
/// (a frame), `SHMBUS_NO_FRAME` (nothing new) or `SHMBUS_MISSED` (the
/// reader fell more than a ring behind: `sample->missed` frames are lost
/// and the next call returns the oldest frame still in the ring).
/// `SHMBUS_ERR_READ` for a frame that is lost (its publisher died or
/// stopped while overwriting it, or it does not decode): the cursor has
/// moved past it, so the next call returns the frame after it.
///
/// # Safety
/// `sample` is NULL or points to a writable `shmbus_sample`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_subscriber_next(
    subscriber: shmbus_subscriber,
    frame: shmbus_frame,
    sample: *mut shmbus_sample,
) -> i32 {
    guard(|| read(subscriber, frame, SHMBUS_READ_NEXT, 0, sample))
}

/// Block up to `timeout_ms` for the next frame in publish order (sleeping
/// in the kernel); as `shmbus_subscriber_next`, but never
/// `SHMBUS_NO_FRAME`: `SHMBUS_ERR_TIMEOUT`, `SHMBUS_ERR_PUBLISHER_GONE`
/// (checked every 100 ms) or `SHMBUS_ERR_REMOVED` instead, and
/// `SHMBUS_ERR_CLOSED` when another thread closes the subscriber meanwhile
/// (the wait lets other calls on it in every 100 ms); `SHMBUS_ERR_PERMISSION`
/// when the publisher lock can no longer be read (the topic's mode or group
/// changed since this subscriber attached). A signal does not end the
/// wait.
///
/// # Safety
/// `sample` is NULL or points to a writable `shmbus_sample`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_subscriber_wait_next(
    subscriber: shmbus_subscriber,
    frame: shmbus_frame,
    timeout_ms: u32,
    sample: *mut shmbus_sample,
) -> i32 {
    guard(|| read(subscriber, frame, SHMBUS_READ_WAIT_NEXT, timeout_ms, sample))
}

/// Block up to `timeout_ms` until a frame newer than the last one read is
/// published, then read the newest frame. Ends as
/// `shmbus_subscriber_wait_next` does.
///
/// # Safety
/// `sample` is NULL or points to a writable `shmbus_sample`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_subscriber_wait_latest(
    subscriber: shmbus_subscriber,
    frame: shmbus_frame,
    timeout_ms: u32,
    sample: *mut shmbus_sample,
) -> i32 {
    guard(|| {
        read(
            subscriber,
            frame,
            SHMBUS_READ_WAIT_LATEST,
            timeout_ms,
            sample,
        )
    })
}

/// Read kind for the bytes and JSON reads: as `shmbus_subscriber_latest`.
pub const SHMBUS_READ_LATEST: i32 = 0;
/// Read kind: as `shmbus_subscriber_next`.
pub const SHMBUS_READ_NEXT: i32 = 1;
/// Read kind: as `shmbus_subscriber_wait_next`.
pub const SHMBUS_READ_WAIT_NEXT: i32 = 2;
/// Read kind: as `shmbus_subscriber_wait_latest`.
pub const SHMBUS_READ_WAIT_LATEST: i32 = 3;

/// A read (`how`: a `SHMBUS_READ_*` kind; `timeout_ms` for the waits) that copies
/// the encoded frame into `buf` (`cap` bytes). `sample->len` is the frame's
/// length. `SHMBUS_ERR_BUFFER_TOO_SMALL` if it does not fit (the sample
/// then describes the frame that did not fit, `len` included): an in-order
/// frame is kept for the next call, so nothing is lost; a buffer of the
/// topic's frame capacity always fits.
///
/// # Safety
/// `buf` points to `cap` writable bytes; `sample` is NULL or points to a
/// writable `shmbus_sample`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_subscriber_read_bytes(
    subscriber: shmbus_subscriber,
    how: i32,
    timeout_ms: u32,
    buf: *mut u8,
    cap: usize,
    sample: *mut shmbus_sample,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let buf = unsafe { cabi::buffer(buf, cap, "buf") }?;
        read_into(subscriber, how, timeout_ms, Dest::Bytes(buf), sample)
    })
}

/// Run read `how` into `dest`; with `SHMBUS_ERR_BUFFER_TOO_SMALL`, fill
/// `sample` with the frame that did not fit.
pub(crate) fn read_into(
    subscriber: shmbus_subscriber,
    how: i32,
    timeout_ms: u32,
    mut dest: Dest<'_>,
    sample: *mut shmbus_sample,
) -> Result<i32> {
    let got = sliced(subscriber, how, timeout_ms, |ms| {
        let mut held = handles::get(subscriber.id, Kind::Subscriber)?;
        let s = sub_of(&mut held);
        let got = s.read(how, ms, &mut dest);
        if let Err(e) = &got {
            if e.code == SHMBUS_ERR_BUFFER_TOO_SMALL {
                // SAFETY: `sample` is NULL or writable, by the exported
                // function's contract.
                if let (Some(o), Some(m)) = (unsafe { cabi::opt_out(sample) }, s.last) {
                    *o = sample_of(&m);
                }
            }
        }
        got
    })?;
    Ok(report(got, sample))
}

/// Whether a frame newer than the last one read was published: one atomic
/// load, no system call. Returns 1 or 0 (or a negative error).
#[unsafe(no_mangle)]
pub extern "C" fn shmbus_subscriber_has_new(subscriber: shmbus_subscriber) -> i32 {
    guard(|| {
        let mut held = handles::get(subscriber.id, Kind::Subscriber)?;
        Ok(i32::from(sub_of(&mut held).raw.has_new()))
    })
}

/// After `SHMBUS_ERR_PUBLISHER_GONE`: block up to `timeout_ms` until the
/// topic is published again, then read on (its frames come to the same
/// segment). `SHMBUS_OK` when a publisher holds the topic's lock again (the
/// same one restarted, or another), or when a frame was published although
/// none holds it (a publisher whose lock alone was removed, `ipcrm -s`,
/// still publishes). `publisher` (may be NULL) receives the publisher's
/// state then: `SHMBUS_PUBLISHER_ALIVE`, or `SHMBUS_PUBLISHER_NO_LOCK` for
/// frames without a lock.
///
/// A frame ends the wait at once; a publisher that comes back without
/// publishing is seen within 100 ms. Otherwise `SHMBUS_ERR_TIMEOUT`,
/// `SHMBUS_ERR_REMOVED` (the segment was removed; frames published before
/// the removal are reported first, as `SHMBUS_OK`, and stay readable), or
/// `SHMBUS_ERR_CLOSED` when another thread closes the subscriber. A signal
/// does not end the wait. One call instead of a loop over
/// `shmbus_subscriber_status`; `examples/shmbus-c-subscriber.c` shows it.
///
/// # Safety
/// `publisher` is NULL or points to a writable `int32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_subscriber_wait_publisher(
    subscriber: shmbus_subscriber,
    timeout_ms: u32,
    publisher: *mut i32,
) -> i32 {
    guard(|| {
        // SAFETY: `publisher` is NULL (no state wanted: `None`) or points
        // to a writable `int32_t`, as the `# Safety` section requires; it
        // is written once, after the wait, and not kept.
        let out = unsafe { cabi::opt_out(publisher) };
        let status = sliced_wait(subscriber, timeout_ms, |ms| {
            let mut held = handles::get(subscriber.id, Kind::Subscriber)?;
            sub_of(&mut held)
                .raw
                .wait_for_publisher(Duration::from_millis(ms.into()))
                .map_err(topic::wait_error)
        })?;
        if let Some(o) = out {
            *o = publisher_code(status).0;
        }
        Ok(SHMBUS_OK)
    })
}

/// A publisher state as the C API's `SHMBUS_PUBLISHER_*` code, and its pid
/// (0 unless alive).
fn publisher_code(p: PublisherStatus) -> (i32, i32) {
    match p {
        PublisherStatus::Alive { pid } => (SHMBUS_PUBLISHER_ALIVE, pid),
        PublisherStatus::NotRunning => (SHMBUS_PUBLISHER_NOT_RUNNING, 0),
        PublisherStatus::NoLock => (SHMBUS_PUBLISHER_NO_LOCK, 0),
        _ => (SHMBUS_PUBLISHER_UNKNOWN, 0),
    }
}

/// Staleness and liveness: the newest generation, its age, whether the
/// publisher is alive (two system calls) and whether the topic was removed
/// (one system call).
///
/// # Safety
/// `out` points to a writable `shmbus_status`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_subscriber_status(
    subscriber: shmbus_subscriber,
    out: *mut shmbus_status,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        let mut held = handles::get(subscriber.id, Kind::Subscriber)?;
        let raw = &sub_of(&mut held).raw;
        let (publisher, pid) = publisher_code(raw.publisher());
        *out = shmbus_status {
            generation: raw.generation(),
            age_ns: raw.age().map_or(u64::MAX, |a| {
                a.as_nanos().min(u128::from(u64::MAX - 1)) as u64
            }),
            publisher,
            publisher_pid: pid,
            removed: i32::from(raw.is_removed()),
            has_new: i32::from(raw.has_new()),
        };
        Ok(SHMBUS_OK)
    })
}

/// Move the in-order cursor to the oldest frame still in the ring (drops a
/// pending frame).
#[unsafe(no_mangle)]
pub extern "C" fn shmbus_subscriber_seek_oldest(subscriber: shmbus_subscriber) -> i32 {
    guard(|| {
        let mut held = handles::get(subscriber.id, Kind::Subscriber)?;
        let s = sub_of(&mut held);
        s.pending = None;
        s.raw.seek_oldest();
        Ok(SHMBUS_OK)
    })
}

/// The topic's name, key, shmid, geometry and schema fingerprint.
///
/// # Safety
/// `out` points to a writable `shmbus_topic_info`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_subscriber_info(
    subscriber: shmbus_subscriber,
    out: *mut shmbus_topic_info,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        let mut held = handles::get(subscriber.id, Kind::Subscriber)?;
        let raw = &sub_of(&mut held).raw;
        let info = raw.info();
        let mut i = shmbus_topic_info::new(&info.name);
        i.key = raw.segment().key() as u32;
        i.shmid = raw.segment().shmid();
        i.slots = info.geometry.slot_count;
        i.frame_capacity = info.geometry.frame_capacity as u32;
        i.fingerprint = info.schema_fingerprint;
        *out = i;
        Ok(SHMBUS_OK)
    })
}
