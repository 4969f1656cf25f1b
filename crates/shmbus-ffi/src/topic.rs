//! Topic descriptions from C, and the mapping of the Rust API's errors to
//! status codes (the message is the Rust error's text, unchanged).

use core::ffi::c_char;

use shmbus_pub::{LockPolicy, OpenError, Topic};
use shmbus_sub::{ReadError, WaitError};

use crate::cabi;
use crate::status::*;

/// Lock policy "try" (the default): lock the segment in RAM if the kernel
/// allows, open anyway if not.
pub const SHMBUS_LOCK_TRY: i32 = 0;
/// Lock policy "required": fail to open if the segment cannot be locked.
pub const SHMBUS_LOCK_REQUIRED: i32 = 1;
/// Lock policy "off".
pub const SHMBUS_LOCK_OFF: i32 = 2;

/// Topic flag: no futex wake-up after each publish (blocking waits then
/// sleep in short steps). For fast topics nobody blocks on.
pub const SHMBUS_TOPIC_NO_NOTIFY: u32 = 1;
/// Topic flag: subscribers refuse a segment not created and owned by
/// `publisher_uid`, or writable by group or others (anti-spoofing).
pub const SHMBUS_TOPIC_REQUIRE_UID: u32 = 2;
/// Topic flag: the publisher gives the segment the group `group`.
pub const SHMBUS_TOPIC_GROUP: u32 = 4;

/// A topic description. Zero-initialise it and set `name`: every zero
/// field means the default, the same as the Rust API's `Topic::new(name)`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types, reason = "C type name, as the header shows it")]
pub struct shmbus_topic {
    /// Topic name: 1 to 63 bytes of letters, digits and `_ . - /`.
    pub name: *const c_char,
    /// Bus name the key is derived from; NULL means `"shmbus"`.
    pub bus: *const c_char,
    /// System V key; 0 derives it from `bus` and `name` (as `shmbus_key`).
    pub key: u32,
    /// Slots in the ring, a power of two; 0 means 16.
    pub slots: u32,
    /// Permission bits of the segment and the publisher lock; 0 means 0644.
    pub mode: u32,
    /// `SHMBUS_LOCK_TRY` (0), `SHMBUS_LOCK_REQUIRED` or `SHMBUS_LOCK_OFF`.
    pub lock: i32,
    /// `SHMBUS_TOPIC_*` flags, or-ed.
    pub flags: u32,
    /// The uid subscribers require (with `SHMBUS_TOPIC_REQUIRE_UID`).
    pub publisher_uid: u32,
    /// The segment's group (with `SHMBUS_TOPIC_GROUP`).
    pub group: u32,
}

/// The bus a key is derived from: NULL is the default bus; any other name
/// must be one a config or `--bus` accepts (an empty or odd bus would
/// silently derive a key no other tool can name, and `a/b` the keys of
/// bus `a`: [`shmbus_core::topic::validate_bus`]).
fn valid_bus(bus: Option<&str>) -> Result<&str> {
    let Some(bus) = bus else {
        return Ok(shmbus_core::topic::DEFAULT_BUS);
    };
    shmbus_core::topic::validate_bus(bus)
        .map_err(|r| Error::new(SHMBUS_ERR_INVALID, format!("invalid bus: {r}")))?;
    Ok(bus)
}

/// Turn a C topic description into the Rust one, validated.
///
/// # Safety
/// `t` is NULL or points to a `shmbus_topic` whose strings are NULL or
/// NUL-terminated.
pub(crate) unsafe fn topic_from(t: *const shmbus_topic) -> Result<Topic> {
    // SAFETY: the caller's contract.
    let t = unsafe { cabi::arg(t, "topic") }?;
    // SAFETY: the caller's contract.
    let name = unsafe { cabi::text(t.name, "topic->name") }?;
    // SAFETY: the caller's contract.
    let bus = unsafe { cabi::opt_text(t.bus, "topic->bus") }?;
    let mut topic = Topic::on_bus(valid_bus(bus)?, name);
    if t.key != 0 {
        topic = topic.key(t.key as i32);
    }
    if t.slots != 0 {
        topic = topic.slots(t.slots);
    }
    if t.mode != 0 {
        topic = topic.mode(t.mode);
    }
    topic = topic.lock(match t.lock {
        SHMBUS_LOCK_TRY => LockPolicy::Try,
        SHMBUS_LOCK_REQUIRED => LockPolicy::Required,
        SHMBUS_LOCK_OFF => LockPolicy::Off,
        other => {
            return fail(
                SHMBUS_ERR_INVALID,
                format!("topic->lock = {other}: use SHMBUS_LOCK_TRY, SHMBUS_LOCK_REQUIRED or SHMBUS_LOCK_OFF"),
            );
        }
    });
    let known = SHMBUS_TOPIC_NO_NOTIFY | SHMBUS_TOPIC_REQUIRE_UID | SHMBUS_TOPIC_GROUP;
    if t.flags & !known != 0 {
        return fail(
            SHMBUS_ERR_INVALID,
            format!(
                "topic->flags = {:#x} has unknown bits {:#x}",
                t.flags,
                t.flags & !known
            ),
        );
    }
    topic = topic.notify(t.flags & SHMBUS_TOPIC_NO_NOTIFY == 0);
    if t.flags & SHMBUS_TOPIC_REQUIRE_UID != 0 {
        topic = topic.publisher_uid(t.publisher_uid);
    }
    if t.flags & SHMBUS_TOPIC_GROUP != 0 {
        topic = topic.group(t.group);
    }
    topic.validate().map_err(open_error)?;
    Ok(topic)
}

/// The code for an open error; the message is its text.
pub(crate) fn open_error(e: OpenError) -> Error {
    let code = match &e {
        OpenError::NotFound { .. } | OpenError::NotReady { .. } => SHMBUS_ERR_NOT_FOUND,
        OpenError::SchemaMismatch { .. } => SHMBUS_ERR_SCHEMA_MISMATCH,
        OpenError::PublisherActive { .. } => SHMBUS_ERR_PUBLISHER_ACTIVE,
        OpenError::PermissionDenied { .. } => SHMBUS_ERR_PERMISSION,
        OpenError::Removed { .. } => SHMBUS_ERR_REMOVED,
        OpenError::TooLarge { .. }
        | OpenError::SystemLimit { .. }
        | OpenError::SemaphoreLimit { .. }
        | OpenError::OutOfMemory { .. }
        | OpenError::BufferMemory { .. }
        | OpenError::CannotMap { .. }
        | OpenError::LockDenied { .. } => SHMBUS_ERR_SYSTEM_LIMIT,
        OpenError::InvalidTopic { .. } => SHMBUS_ERR_INVALID,
        OpenError::Sys { .. } => SHMBUS_ERR_SYS,
        _ => SHMBUS_ERR_OPEN,
    };
    Error::new(code, e.to_string())
}

/// The code for a read error.
pub(crate) fn read_error(e: ReadError) -> Error {
    Error::new(SHMBUS_ERR_READ, e.to_string())
}

/// The code for a wait error. A lock this process may not read (the
/// topic's own, after its mode or group changed under an attached
/// subscriber, or another user's at the key) is `SHMBUS_ERR_PERMISSION`,
/// as the same denial is when opening: it was `SHMBUS_ERR_SYS` ("another
/// system call failed"), which C code switching on codes (and Python's
/// `PermissionDenied`) did not recognise as a permission problem.
pub(crate) fn wait_error(e: WaitError) -> Error {
    let code = match &e {
        WaitError::Timeout => SHMBUS_ERR_TIMEOUT,
        WaitError::PublisherGone => SHMBUS_ERR_PUBLISHER_GONE,
        WaitError::Removed => SHMBUS_ERR_REMOVED,
        WaitError::Read(_) => SHMBUS_ERR_READ,
        WaitError::LockUnreadable { .. } | WaitError::AccessLost { .. } => SHMBUS_ERR_PERMISSION,
        _ => SHMBUS_ERR_SYS,
    };
    Error::new(code, e.to_string())
}

/// The System V key of topic `name` on bus `bus` (NULL: `"shmbus"`), as
/// publishers and subscribers derive it when `topic.key` is 0.
///
/// # Safety
/// `bus` is NULL or NUL-terminated; `name` is NUL-terminated; `out` points
/// to a writable `uint32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_key(bus: *const c_char, name: *const c_char, out: *mut u32) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        // SAFETY: the caller's contract.
        let name = unsafe { cabi::text(name, "name") }?;
        // SAFETY: the caller's contract.
        let bus = unsafe { cabi::opt_text(bus, "bus") }?;
        shmbus_core::topic::validate_name(name)
            .map_err(|r| Error::new(SHMBUS_ERR_INVALID, format!("invalid topic: {r}")))?;
        *out = shmbus_core::topic::derive_key(valid_bus(bus)?, name) as u32;
        Ok(SHMBUS_OK)
    })
}

/// What a publisher or subscriber knows about its topic.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[allow(non_camel_case_types, reason = "C type name, as the header shows it")]
pub struct shmbus_topic_info {
    /// The topic name, NUL-terminated.
    pub name: [c_char; 64],
    /// System V key.
    pub key: u32,
    /// System V shmid.
    pub shmid: i32,
    /// Slots in the ring.
    pub slots: u32,
    /// Frame capacity in bytes.
    pub frame_capacity: u32,
    /// Schema fingerprint.
    pub fingerprint: u64,
    /// Publisher: 1 if it created the segment, 0 if it reopened one.
    /// Subscriber: 0.
    pub created: i32,
    /// Publisher: 1 locked in RAM, 0 lock refused (policy "try"), -1 not
    /// requested. Subscriber: -1.
    pub locked: i32,
}

impl shmbus_topic_info {
    pub(crate) fn new(name: &str) -> shmbus_topic_info {
        let mut n = [0 as c_char; 64];
        for (d, s) in n.iter_mut().zip(name.bytes().take(63)) {
            *d = s as c_char;
        }
        shmbus_topic_info {
            name: n,
            key: 0,
            shmid: 0,
            slots: 0,
            frame_capacity: 0,
            fingerprint: 0,
            created: 0,
            locked: -1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open error a system limit causes gets the limit code, so a C
    /// caller tells "raise a limit" from "this topic is wrong": a full
    /// `kernel.sem` and a segment this process cannot map got the generic
    /// `SHMBUS_ERR_OPEN`.
    #[test]
    fn every_system_limit_has_the_limit_code() {
        let key = 0x7e00_0042;
        let limits = [
            OpenError::TooLarge { key, size: 1 },
            OpenError::SystemLimit {
                key,
                size: 1,
                limit: "kernel.shmmni (number of segments)",
            },
            OpenError::SemaphoreLimit {
                key,
                field: shmbus_core::sysvipc::SEMOPM_FIELD,
                current: Some([250, 32000, 1, 128]),
            },
            OpenError::OutOfMemory { key, size: 1 },
            OpenError::CannotMap { key, size: 1 << 40 },
            OpenError::LockDenied {
                key,
                size: 1,
                memlock_limit: 0,
                errno: shmbus_core::sys::Errno::EPERM,
            },
        ];
        for e in limits {
            let text = e.to_string();
            let got = open_error(e);
            assert_eq!(got.code, SHMBUS_ERR_SYSTEM_LIMIT, "{text}");
            assert_eq!(got.message, text);
        }
    }

    /// A wait that may no longer read the topic's publisher lock (its mode
    /// narrowed under the subscriber), or finds another user's lock at the
    /// key, is a permission problem: `SHMBUS_ERR_PERMISSION` (Python's
    /// `PermissionDenied`), not the generic `SHMBUS_ERR_SYS`.
    #[test]
    fn a_lock_a_wait_may_not_read_is_a_permission_error() {
        let key = 0x7e00_0043;
        let denied = [
            WaitError::AccessLost {
                key,
                owner: Some((0, 0, 0o600)),
            },
            WaitError::LockUnreadable {
                key,
                creator_uid: Some(1000),
                mode: Some(0o600),
            },
        ];
        for e in denied {
            let text = e.to_string();
            let got = wait_error(e);
            assert_eq!(got.code, SHMBUS_ERR_PERMISSION, "{text}");
            assert_eq!(got.message, text);
        }
    }
}
