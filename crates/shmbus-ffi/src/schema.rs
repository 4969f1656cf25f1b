//! Schemas: what a topic's frames look like, as C sees it.
//!
//! A schema handle holds a decoded `postcard_schema` `OwnedNamedType`, its
//! canonical bytes (what a segment stores), their fingerprint, and the
//! flattened [`Layout`] when the typed field functions cover the shape.

use core::ffi::c_char;
use std::sync::{Arc, Mutex};

/// A schema's codec, or why it has none.
pub type CodecResult = core::result::Result<Arc<shmbus_codec::Codec>, String>;

use postcard_schema::schema::owned::OwnedNamedType;
use shmbus_core::layout::fnv1a64;

use crate::cabi;
use crate::handles::{self, Kind, Object};
use crate::layout::Layout;
use crate::status::*;

/// A schema handle (from `shmbus_schema_parse`, `shmbus_schema_from_bytes`
/// or `shmbus_subscriber_schema`). Zero is never a valid handle.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types, reason = "C type name, as the header shows it")]
pub struct shmbus_schema {
    /// Opaque id.
    pub id: u64,
}

/// A schema and everything derived from it.
#[derive(Debug)]
pub struct SchemaDef {
    /// The decoded schema.
    pub owned: OwnedNamedType,
    /// Its canonical postcard encoding (as stored in a segment).
    pub bytes: Vec<u8>,
    /// FNV-1a 64 of `bytes`: the schema fingerprint.
    pub fingerprint: u64,
    /// The flattened layout, or why the typed field functions cannot cover
    /// this schema.
    pub layout: Result<Layout>,
    /// The shared codec (JSON, declaration text), made when first needed
    /// (`json::codec`). A mutex taken only with `try_lock`, not a
    /// `OnceLock`: a `fork()` while a thread of the parent was making it
    /// left the `OnceLock` "being initialised" in the child for ever, and
    /// the child's first use of the schema blocked.
    pub codec: Mutex<Option<CodecResult>>,
}

impl SchemaDef {
    /// Build from a decoded schema.
    pub fn new(owned: OwnedNamedType) -> Result<SchemaDef> {
        let bytes = postcard::to_allocvec(&owned)
            .map_err(|e| Error::new(SHMBUS_ERR_SCHEMA, format!("cannot encode the schema: {e}")))?;
        Ok(SchemaDef {
            fingerprint: fnv1a64(&bytes),
            layout: Layout::new(&owned),
            codec: Mutex::new(None),
            owned,
            bytes,
        })
    }

    /// Build from the bytes a segment stores (untrusted: depth- and
    /// size-checked before decoding).
    pub fn from_bytes(bytes: &[u8]) -> Result<SchemaDef> {
        let owned = shmbus_core::schema::decode_schema(bytes).map_err(|e| {
            Error::new(
                SHMBUS_ERR_SCHEMA,
                format!("the schema bytes do not decode as a postcard-schema OwnedNamedType ({e})"),
            )
        })?;
        SchemaDef::new(owned)
    }

    /// The largest encoded frame, or an error naming the unbounded field.
    /// From the layout when the typed field functions cover the schema,
    /// else from the codec: a schema with an enum, an `Option`, a map... is
    /// published with the JSON or bytes functions, and its topic gets the
    /// frame capacity a Rust publisher of the type would give it.
    pub fn max_size(&self) -> Result<usize> {
        let max = match &self.layout {
            Ok(l) => l.max_size,
            Err(_) => crate::json::codec(self)?.max_size(),
        };
        max.ok_or_else(|| {
            Error::new(
                SHMBUS_ERR_SCHEMA,
                format!(
                    "schema '{}' has a string or list without a capacity, so its frames have no maximum size: declare it as heapless::String<N> or heapless::Vec<T, N>",
                    self.owned.name
                ),
            )
        })
    }
}

/// What a schema handle holds.
pub type SchemaHandle = Arc<SchemaDef>;

#[cfg(test)]
impl SchemaDef {
    /// A small schema for tests that need any schema.
    pub fn for_tests() -> SchemaDef {
        SchemaDef::new(OwnedNamedType::from(
            <u32 as postcard_schema::Schema>::SCHEMA,
        ))
        .unwrap()
    }
}

/// Test helper.
#[cfg(test)]
pub(crate) trait ForTests {
    fn for_tests() -> Self;
}
#[cfg(test)]
impl ForTests for SchemaHandle {
    fn for_tests() -> Self {
        Arc::new(SchemaDef::for_tests())
    }
}

/// The schema behind a handle (a shared reference; the handle may be
/// closed afterwards).
pub(crate) fn get(s: shmbus_schema) -> Result<SchemaHandle> {
    let mut held = handles::get(s.id, Kind::Schema)?;
    match held.object() {
        Object::Schema(def) => Ok(def.clone()),
        _ => unreachable!("handles::get checked the kind"),
    }
}

pub(crate) fn insert(def: SchemaHandle) -> Result<shmbus_schema> {
    Ok(shmbus_schema {
        id: handles::insert(Object::Schema(def))?,
    })
}

/// Make a schema handle from the postcard encoding of a `postcard_schema`
/// `OwnedNamedType` (the bytes a segment stores, `docs/LAYOUT.md`).
///
/// # Safety
/// `bytes` points to `len` readable bytes; `out` to a writable
/// `shmbus_schema`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_schema_from_bytes(
    bytes: *const u8,
    len: usize,
    out: *mut shmbus_schema,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        // SAFETY: the caller's contract.
        let b = unsafe { cabi::bytes(bytes, len, "bytes") }?;
        *out = insert(Arc::new(SchemaDef::from_bytes(b)?))?;
        Ok(SHMBUS_OK)
    })
}

/// Close a schema handle. Frames, publishers and subscribers made from it
/// keep working.
#[unsafe(no_mangle)]
pub extern "C" fn shmbus_schema_close(schema: shmbus_schema) -> i32 {
    guard(|| {
        drop(handles::remove(schema.id, Kind::Schema)?);
        Ok(SHMBUS_OK)
    })
}

/// The schema's fingerprint (FNV-1a 64 of its canonical bytes): equal
/// fingerprints mean the same message type, Rust or C.
///
/// # Safety
/// `out` points to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_schema_fingerprint(schema: shmbus_schema, out: *mut u64) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        *out = get(schema)?.fingerprint;
        Ok(SHMBUS_OK)
    })
}

/// The largest encoded frame of this schema, in bytes (the frame capacity
/// of a topic created with it). `SHMBUS_ERR_SCHEMA` if a string or list has
/// no capacity.
///
/// # Safety
/// `out` points to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_schema_max_size(schema: shmbus_schema, out: *mut usize) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { cabi::out(out, "out") }?;
        *out = get(schema)?.max_size()?;
        Ok(SHMBUS_OK)
    })
}

/// The schema's canonical bytes into `buf` (`cap` bytes); `*len` is set to
/// their length, also when the buffer is too small
/// (`SHMBUS_ERR_BUFFER_TOO_SMALL`).
///
/// # Safety
/// `buf` points to `cap` writable bytes (or is NULL with `cap` 0); `len`
/// to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_schema_bytes(
    schema: shmbus_schema,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's contract.
        let len = unsafe { cabi::out(len, "len") }?;
        // SAFETY: the caller's contract.
        let buf = unsafe { cabi::buffer(buf, cap, "buf") }?;
        let def = get(schema)?;
        *len = def.bytes.len();
        cabi::copy_out(&def.bytes, buf, "the schema")?;
        Ok(SHMBUS_OK)
    })
}

/// The schema's name (e.g. `Imu`) into `buf` with a NUL; `*len` is its
/// length without the NUL.
///
/// # Safety
/// `buf` points to `cap` writable bytes; `len` to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmbus_schema_name(
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
        let def = get(schema)?;
        *len = def.owned.name.len();
        cabi::copy_str_out(def.owned.name.as_bytes(), buf, "the schema name")?;
        Ok(SHMBUS_OK)
    })
}
