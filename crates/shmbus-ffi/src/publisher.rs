//! Publishers from C: open a topic with a schema, publish typed frames,
//! raw bytes or JSON.

use core::ffi::c_char;

use shmbus_pub::{LockOutcome, RawPublisher};

use crate::cabi;
use crate::frame::{self, shmbus_frame};
use crate::handles::{self, Held, Kind, Object};
use crate::schema::{self, SchemaHandle, shmbus_schema};
use crate::status::*;
use crate::topic::{self, shmbus_topic, shmbus_topic_info};

/// A publisher handle (from `shmbus_publisher_open`). Zero is never a
/// valid handle.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types, reason = "C type name, as the header shows it")]
pub struct shmbus_publisher {
    /// Opaque id.
    pub id: u64,
}

/// A publisher and the schema of its frames.
#[derive(Debug)]
pub struct Pub {
    /// The publisher.
    pub raw: RawPublisher,
    /// The topic's schema.
    pub schema: SchemaHandle,
    /// Slots in the ring.
    pub slots: u32,
    /// The process that opened it: it holds the topic's lock (with
    /// `SEM_UNDO`, which a `fork()` child does not inherit).
    pub pid: u32,
}

impl Pub {
    /// Refuse a publish or a removal from a process that did not open the
    /// publisher: a `fork()` child has a copy of the handle, but not the
    /// topic's lock, and a second writer would break the seqlock and the
    /// generation count (two frames numbered 2).
    pub(crate) fn check_process(&self) -> Result<()> {
        let here = handles::process_id();
        if self.pid == here {
            return Ok(());
        }
        fail(
            SHMBUS_ERR_PUBLISHER_ACTIVE,
            format!(
                "topic '{}' is published by process {}, which opened this publisher handle; this process ({here}) is a fork of it and holds a copy of the handle, not the topic's lock: close the handle here, and open the topic in this process once {} has closed it",
                self.raw.name(),
                self.pid,
                self.pid
            ),
        )
    }
}

/// Drop a publisher taken out of its slot. In a process that did not open
/// it (a `fork()` child), the publisher is forgotten instead: dropping it
/// would release the topic's lock, which is the opener's (the child's
/// release would let a second publisher in while the opener still
/// publishes). Its mapping stays until this process exits or execs.
fn dispose(p: Box<Pub>) {
    if p.pid == handles::process_id() {
        drop(p);
    } else {
        std::mem::forget(p);
    }
}

pub(crate) fn pub_of(held: &mut Held) -> &mut Pub {
    match held.object() {
        Object::Publisher(p) => p,
        _ => unreachable!("handles::get checked the kind"),
    }
}

/// Publish `frame` (a frame of the topic's schema) on `p`.
pub(crate) fn publish_frame(
    p: &mut Pub,
    f: &mut frame::Frame,
    mono_ns: u64,
    real_ns: u64,
) -> Result<u64> {
    p.check_process()?;
    if f.schema.fingerprint != p.schema.fingerprint {
        return fail(
            SHMBUS_ERR_WRONG_TYPE,
            format!(
                "the frame is a '{}' (schema {:016x}), topic '{}' carries '{}' (schema {:016x}): make the frame from the publisher's schema",
                f.schema.owned.name,
                f.schema.fingerprint,
                p.raw.name(),
                p.schema.owned.name,
                p.schema.fingerprint
            ),
        );
    }
    let bytes = f.encode();
    p.raw
        .publish_bytes_at(bytes, mono_ns, real_ns)
        .map_err(|e| Error::new(SHMBUS_ERR_TOO_LARGE, e.to_string()))
}

/// Create (or reopen) the topic `topic` for frames of `schema` and become
/// its one publisher. The frame capacity is the schema's maximum frame
/// size, so a Rust publisher of the same type opens the same topic.
///
/// Errors: `SHMBUS_ERR_PUBLISHER_ACTIVE` (another publisher is alive),
/// `SHMBUS_ERR_SCHEMA_MISMATCH` (the topic carries frames of another type:
/// a publisher whose type changed removes the old topic first, as the
/// message says), `SHMBUS_ERR_OPEN` (the segment at the key was made for
/// another shape, or by another user: the message says how to remove it),
/// `SHMBUS_ERR_PERMISSION`, `SHMBUS_ERR_SYSTEM_LIMIT`, `SHMBUS_ERR_INVALID`
/// (topic description), `SHMBUS_ERR_SCHEMA` (a string or list without a
/// capacity).
///
/// # Safety
/// `topic` points to a `shmbus_topic` (strings NUL-terminated or NULL);
/// `out` to a writable `shmbus_publisher`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_publisher_open(
    topic: *const shmbus_topic,
    schema: shmbus_schema,
    out: *mut shmbus_publisher,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        // SAFETY: the caller's contract.
        let topic = unsafe { topic::topic_from(topic) }?;
        *out = open(&topic, schema)?;
        Ok(SHMBUS_OK)
    })
}

/// Open the topic `name` as the board's config declares it (key, slots,
/// mode, group, lock policy, notification) and become its one publisher of
/// frames of `schema`: the same topic a Rust sensor or `shmbus` opens under
/// that name.
///
/// `config` is the path of the config file; NULL finds it as the `shmbus`
/// tools do (`$SHMBUS_CONFIG`, else `/etc/shmbus/shmbus.toml`, else the
/// built-in demo config). `bus` moves the config's derived keys to another
/// bus (as `--bus`); NULL keeps the config's own.
///
/// Errors: `SHMBUS_ERR_CONFIG` (the file cannot be read, has errors, each
/// `path:line:col: message`, or declares no topic `name`: the message lists
/// those it does and suggests the closest), then those of
/// `shmbus_publisher_open` (`SHMBUS_ERR_SCHEMA_MISMATCH` if the topic's
/// segment carries frames of another schema).
///
/// # Safety
/// `config` and `bus` are NULL or NUL-terminated; `name` is NUL-terminated;
/// `out` points to a writable `shmbus_publisher`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_publisher_open_config(
    config: *const c_char,
    bus: *const c_char,
    name: *const c_char,
    schema: shmbus_schema,
    out: *mut shmbus_publisher,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        // SAFETY: the caller's contract.
        let topic = unsafe { crate::config::topic_of(config, bus, name) }?;
        *out = open(&topic, schema)?;
        Ok(SHMBUS_OK)
    })
}

/// Open `topic` for frames of `schema` (both entry points).
fn open(topic: &shmbus_core::Topic, schema: shmbus_schema) -> Result<shmbus_publisher> {
    let schema = schema::get(schema)?;
    let capacity = schema.max_size()?.max(1);
    let raw = RawPublisher::open(topic, &schema.bytes, capacity).map_err(topic::open_error)?;
    let (created, shmid) = (raw.created(), raw.shmid());
    // If no handle can be made (the table is full), a topic this call
    // created is removed again: a failed open leaves nothing behind.
    let id = handles::insert(Object::Publisher(Box::new(Pub {
        raw,
        schema,
        slots: topic.slots,
        pid: handles::process_id(),
    })))
    .inspect_err(|_| {
        if created {
            let _ = shmbus_core::sys::shm_remove(shmid);
            let _ = shmbus_core::lock::remove_lock(topic.key);
        }
    })?;
    Ok(shmbus_publisher { id })
}

/// Publish `frame` now. `*generation` (if not NULL) gets the frame's
/// generation (1 for the first frame ever published on the topic).
/// `SHMBUS_ERR_WRONG_TYPE` if the frame was made from another schema.
///
/// # Safety
/// `generation` is NULL or points to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_publish(
    publisher: shmbus_publisher,
    frame: shmbus_frame,
    generation: *mut u64,
) -> i32 {
    let (mono, real) = (
        shmbus_core::sys::monotonic_ns(),
        shmbus_core::sys::realtime_ns(),
    );
    // SAFETY: the caller's contract, forwarded.
    unsafe { shmbus_publish_at(publisher, frame, mono, real, generation) }
}

/// Publish `frame` with explicit timestamps (`CLOCK_MONOTONIC` and
/// `CLOCK_REALTIME`, ns), e.g. when the sensor took the sample.
///
/// # Safety
/// `generation` is NULL or points to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_publish_at(
    publisher: shmbus_publisher,
    frame: shmbus_frame,
    mono_ns: u64,
    real_ns: u64,
    generation: *mut u64,
) -> i32 {
    guard_local(|| {
        let mut held = handles::get(publisher.id, Kind::Publisher)?;
        let mut fheld = frame::held_second(frame, &held)?;
        let g = publish_frame(
            pub_of(&mut held),
            frame::in_held(&mut fheld),
            mono_ns,
            real_ns,
        )?;
        // SAFETY: the caller's contract.
        if let Some(out) = unsafe { cabi::opt_out(generation) } {
            *out = g;
        }
        Ok(SHMBUS_OK)
    })
}

/// Publish `len` pre-encoded bytes (a postcard frame of the topic's
/// schema) now. `SHMBUS_ERR_TOO_LARGE` beyond the frame capacity.
///
/// # Safety
/// `bytes` points to `len` readable bytes; `generation` is NULL or points
/// to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_publish_bytes(
    publisher: shmbus_publisher,
    bytes: *const u8,
    len: usize,
    generation: *mut u64,
) -> i32 {
    guard_local(|| {
        // SAFETY: the caller's contract.
        let b = unsafe { cabi::bytes(bytes, len, "bytes") }?;
        let mut held = handles::get(publisher.id, Kind::Publisher)?;
        let p = pub_of(&mut held);
        p.check_process()?;
        let g = p
            .raw
            .publish_bytes(b)
            .map_err(|e| Error::new(SHMBUS_ERR_TOO_LARGE, e.to_string()))?;
        // SAFETY: the caller's contract.
        if let Some(out) = unsafe { cabi::opt_out(generation) } {
            *out = g;
        }
        Ok(SHMBUS_OK)
    })
}

/// The topic's name, key, shmid, geometry, fingerprint, whether this
/// publisher created it and whether it is locked in RAM.
///
/// # Safety
/// `out` points to a writable `shmbus_topic_info`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_publisher_info(
    publisher: shmbus_publisher,
    out: *mut shmbus_topic_info,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        let mut held = handles::get(publisher.id, Kind::Publisher)?;
        let p = pub_of(&mut held);
        let mut info = shmbus_topic_info::new(p.raw.name());
        info.key = p.raw.key() as u32;
        info.shmid = p.raw.shmid();
        info.frame_capacity = p.raw.frame_capacity() as u32;
        info.fingerprint = p.schema.fingerprint;
        info.created = i32::from(p.raw.created());
        info.locked = match p.raw.lock_outcome() {
            LockOutcome::Locked => 1,
            LockOutcome::Refused(_) => 0,
            LockOutcome::NotRequested => -1,
        };
        info.slots = p.slots;
        *out = info;
        Ok(SHMBUS_OK)
    })
}

/// Whether the topic is still this publisher's: `SHMBUS_OK`, or
/// `SHMBUS_ERR_REMOVED` if its segment was removed under it (`shmbus rm
/// --force`, `ipcrm`, systemd-logind's `RemoveIPC` at the publishing user's
/// logout: its frames reach no reader any more) or its publisher lock was
/// (`ipcrm -s`: readers call it gone, and a second publisher can start on
/// the topic). `shmbus_last_error()` says which. Either way, close it and
/// open the topic again, which creates it anew (or takes a new lock).
///
/// Two system calls: call it now and then (the Rust sensors look every
/// 0.5 s), not at every publish. In a `fork()` child of the process that
/// opened it, the lock is the opener's: the answer is the opener's too.
#[unsafe(no_mangle)]
pub extern "C" fn shmbus_publisher_check(publisher: shmbus_publisher) -> i32 {
    guard(|| {
        let mut held = handles::get(publisher.id, Kind::Publisher)?;
        let p = pub_of(&mut held);
        let at = format!(
            "topic '{}' (key 0x{:08x})",
            p.raw.name(),
            p.raw.key() as u32
        );
        if p.raw.is_removed() {
            return Err(Error::new(
                SHMBUS_ERR_REMOVED,
                format!(
                    "{at} was removed under this publisher (`shmbus rm`, `ipcrm`, or systemd-logind's RemoveIPC at logout): its frames reach no reader; close it and open the topic again"
                ),
            ));
        }
        if p.raw.lock_removed() {
            return Err(Error::new(
                SHMBUS_ERR_REMOVED,
                format!(
                    "the publisher lock of {at} was removed under this publisher (`ipcrm -s`): readers see no publisher and a second one could start; close it and open the topic again"
                ),
            ));
        }
        Ok(SHMBUS_OK)
    })
}

/// Stop publishing: release the topic (its last frames stay readable; a
/// new publisher reopens it). A second close is `SHMBUS_ERR_CLOSED`. In a
/// `fork()` child of the process that opened it, closing only ends the
/// child's copy of the handle: the topic and its lock stay the opener's.
#[unsafe(no_mangle)]
pub extern "C" fn shmbus_publisher_close(publisher: shmbus_publisher) -> i32 {
    guard(|| {
        let Object::Publisher(p) = handles::remove(publisher.id, Kind::Publisher)? else {
            unreachable!("handles::remove checked the kind")
        };
        dispose(p);
        Ok(SHMBUS_OK)
    })
}

/// Close the publisher and remove the topic (segment and lock). Attached
/// subscribers see it as removed. `SHMBUS_ERR_PUBLISHER_ACTIVE`, with
/// nothing closed or removed, in a `fork()` child of the process that
/// opened it (that process is the topic's publisher).
#[unsafe(no_mangle)]
pub extern "C" fn shmbus_publisher_remove(publisher: shmbus_publisher) -> i32 {
    guard(|| {
        handles::get(publisher.id, Kind::Publisher)
            .and_then(|mut h| pub_of(&mut h).check_process())?;
        let Object::Publisher(p) = handles::remove(publisher.id, Kind::Publisher)? else {
            unreachable!("handles::remove checked the kind")
        };
        p.raw
            .remove()
            .map_err(|e| Error::new(SHMBUS_ERR_SYS, format!("cannot remove the topic: {e}")))?;
        Ok(SHMBUS_OK)
    })
}
