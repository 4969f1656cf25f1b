//! Schema declarations and JSON through the shared codec (`shmbus-codec`):
//! the same declaration language as `shmbus info` prints, the same JSON
//! mapping as `shmbus echo --json` and the bridges.

use core::ffi::c_char;
use std::sync::Arc;

use shmbus_codec::Codec;

use crate::cabi;
use crate::handles::{self, Kind};
use crate::publisher::{Pub, pub_of};
use crate::schema::{self, SchemaDef, shmbus_schema};
use crate::status::*;
use crate::subscriber::{self, Dest, shmbus_sample, shmbus_subscriber};

/// The codec of a schema, made when first needed.
pub(crate) fn codec(def: &SchemaDef) -> Result<Arc<Codec>> {
    let made = match def.codec.try_lock() {
        Ok(mut cached) => cached.get_or_insert_with(|| make(def)).clone(),
        // Another thread is making it (or made it and still holds the
        // lock a moment), or, in a `fork()` child, a thread of the parent
        // was making it at the fork and will never finish here: make a
        // copy for this call rather than wait, which could be for ever.
        Err(std::sync::TryLockError::WouldBlock) => make(def),
        Err(std::sync::TryLockError::Poisoned(p)) => {
            let mut cached = p.into_inner();
            cached.get_or_insert_with(|| make(def)).clone()
        }
    };
    made.map_err(|e| {
        Error::new(
            SHMBUS_ERR_SCHEMA,
            format!("schema '{}': {e}", def.owned.name),
        )
    })
}

fn make(def: &SchemaDef) -> crate::schema::CodecResult {
    Codec::new(def.owned.clone())
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// Render frame `bytes` of `def` as JSON text plus a NUL into `out`;
/// `*len` is the text's length (without the NUL), also when it does not fit.
pub(crate) fn render(
    def: &SchemaDef,
    bytes: &[u8],
    scratch: &mut Vec<u8>,
    out: &mut [u8],
    len: &mut usize,
) -> Result<()> {
    let c = codec(def)?;
    scratch.clear();
    c.write_json(bytes, scratch).map_err(|e| {
        Error::new(
            SHMBUS_ERR_READ,
            format!("the frame does not decode as '{}': {e}", def.owned.name),
        )
    })?;
    *len = scratch.len();
    cabi::copy_str_out(scratch, out, "the frame as JSON")
}

/// Parse a schema declaration, e.g. `"struct Imu { t_us: u64, acc: [f32;
/// 3], frame_id: heapless::String<16> }"` (the language `shmbus info`
/// prints, `docs/JSON.md`). The schema is the one the equivalent Rust type
/// puts in its segment: same names, capacities and fingerprint, so Rust
/// subscribers of that type accept the C publisher's topic.
/// `SHMBUS_ERR_SCHEMA` with `line:col: message` when it does not parse.
///
/// # Safety
/// `decl` is a NUL-terminated string; `out` points to a writable
/// `shmbus_schema`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_schema_parse(decl: *const c_char, out: *mut shmbus_schema) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        // SAFETY: the caller's contract.
        let text = unsafe { cabi::text(decl, "decl") }?;
        let c = Codec::parse(text)
            .map_err(|e| Error::new(SHMBUS_ERR_SCHEMA, format!("schema declaration {e}")))?;
        let def = SchemaDef::new(c.schema().clone())?;
        *out = schema::insert(Arc::new(def))?;
        Ok(SHMBUS_OK)
    })
}

/// The schema as declaration text (what `shmbus_schema_parse` reads back)
/// and a NUL into `buf`; `*len` is the text's length without the NUL, also
/// when the buffer is too small.
///
/// # Safety
/// `buf` points to `cap` writable bytes (or is NULL with `cap` 0); `len`
/// to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_schema_text(
    schema: shmbus_schema,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let len = unsafe { cabi::out(len, "len") }?;
        // SAFETY: the caller's contract.
        let buf = unsafe { cabi::buffer(buf.cast(), cap, "buf") }?;
        let def = schema::get(schema)?;
        let c = codec(&def)?;
        let text = c.text();
        *len = text.len();
        cabi::copy_str_out(text.as_bytes(), buf, "the schema text")?;
        Ok(SHMBUS_OK)
    })
}

/// Encode `json` (a value of the topic's schema in the JSON mapping of
/// `docs/JSON.md`) and publish it. `SHMBUS_ERR_JSON` names the field that
/// does not fit (`.name: 13 bytes exceed heapless::String<8>`);
/// `SHMBUS_ERR_TOO_LARGE` beyond the frame capacity. Allocates (it parses
/// text); for 1 kHz use typed frames.
///
/// # Safety
/// `json` is a NUL-terminated string; `generation` is NULL or points to a
/// writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_publish_json(
    publisher: crate::publisher::shmbus_publisher,
    json: *const c_char,
    generation: *mut u64,
) -> i32 {
    guard_local(|| {
        // SAFETY: the caller's contract.
        let text = unsafe { cabi::text(json, "json") }?;
        // The handle first: a closed publisher is SHMBUS_ERR_CLOSED
        // whatever the text.
        let mut held = handles::get(publisher.id, Kind::Publisher)?;
        // And the process: a fork child's copy of the handle never
        // publishes, whatever the text.
        pub_of(&mut held).check_process()?;
        let value: serde_json::Value = shmbus_codec::parse_json(text.as_bytes())
            .map_err(|e| Error::new(SHMBUS_ERR_JSON, format!("{}: {e}", json_fault(&e))))?;
        let p: &mut Pub = pub_of(&mut held);
        let frame = codec(&p.schema)?
            .encode_within(&value, p.raw.frame_capacity())
            .map_err(|e| {
                let code = if e.path.is_empty() && e.to_string().contains("capacity") {
                    SHMBUS_ERR_TOO_LARGE
                } else {
                    SHMBUS_ERR_JSON
                };
                Error::new(code, format!("value for topic '{}': {e}", p.raw.name()))
            })?;
        let g = p
            .raw
            .publish_bytes(&frame)
            .map_err(|e| Error::new(SHMBUS_ERR_TOO_LARGE, e.to_string()))?;
        // SAFETY: the caller's contract.
        if let Some(out) = unsafe { cabi::opt_out(generation) } {
            *out = g;
        }
        Ok(SHMBUS_OK)
    })
}

/// A read (`how`: a `SHMBUS_READ_*` kind; `timeout_ms` for the waits) that
/// renders the frame as JSON text with a NUL into `buf` (`cap` bytes).
/// `*len` is the text's length without the NUL. `SHMBUS_ERR_BUFFER_TOO_SMALL`
/// when it does not fit (`*len + 1` bytes are needed): an in-order frame is
/// kept for the next call, so nothing is lost.
///
/// # Safety
/// `buf` points to `cap` writable bytes; `len` to a writable `size_t`;
/// `sample` is NULL or points to a writable `shmbus_sample`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_subscriber_read_json(
    subscriber: shmbus_subscriber,
    how: i32,
    timeout_ms: u32,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
    sample: *mut shmbus_sample,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let len = unsafe { cabi::out(len, "len") }?;
        // SAFETY: the caller's contract.
        let buf = unsafe { cabi::buffer(buf.cast(), cap, "buf") }?;
        *len = 0;
        subscriber::read_into(subscriber, how, timeout_ms, Dest::Json(buf, len), sample)
    })
}

/// How a message names a `parse_json` error: JSON that no frame takes, or
/// text that is not JSON.
fn json_fault(e: &serde_json::Error) -> &'static str {
    if shmbus_codec::json_refused(e) {
        "JSON refused"
    } else {
        "not JSON"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SchemaDef;

    /// The codec is made without waiting for a thread that holds the
    /// schema's codec lock: in a `fork()` child that thread is a parent's
    /// that will never let go (a `OnceLock` mid-initialisation blocked the
    /// child's first use of the schema for ever). Held here by this thread,
    /// as a dead holder would hold it: the call returns a codec at once,
    /// and once the lock is free the next call caches one.
    #[test]
    fn the_codec_is_made_without_waiting_for_a_held_lock() {
        shmbus_testkit::watchdog("codec lock test", std::time::Duration::from_secs(60));
        let def = SchemaDef::for_tests();
        {
            let held = def.codec.lock().unwrap();
            let c = codec(&def).expect("a codec while the lock is held");
            assert!(c.text().contains("u32"), "{}", c.text());
            assert!(held.is_none(), "nothing cached under another's lock");
        }
        let a = codec(&def).unwrap();
        let b = codec(&def).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "cached once the lock is free");
    }
}
