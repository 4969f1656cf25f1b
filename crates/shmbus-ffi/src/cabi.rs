//! Checked conversions of C arguments: NULL pointers, strings that are not
//! UTF-8 and buffers become status codes, never undefined behaviour on the
//! Rust side. What cannot be checked (a non-NULL pointer to too little or
//! freed memory, a string without its NUL, pointer arguments of one call
//! that overlap) is the caller's contract, stated in each function's
//! `# Safety` section and at the top of `shmbus.h`: the references these
//! helpers make of one call's arguments (a `&str`, a `&mut [u8]`, a
//! `&mut usize`) are sound because that contract keeps them apart.

use core::ffi::{CStr, c_char};

use crate::status::*;

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid and
/// unchanged for `'a`.
pub(crate) unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return fail(SHMBUS_ERR_NULL, format!("{what} is NULL"));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    if c.to_bytes().is_ascii() {
        // SAFETY: ASCII is valid UTF-8 (a fast path for field paths,
        // which are ASCII in practice; from_utf8 costs more on short text).
        return Ok(unsafe { core::str::from_utf8_unchecked(c.to_bytes()) });
    }
    c.to_str().map_err(|e| {
        Error::new(
            SHMBUS_ERR_INVALID,
            format!(
                "{what} is not valid UTF-8 (byte {} is wrong)",
                e.valid_up_to()
            ),
        )
    })
}

/// An optional string argument: NULL is `None`.
///
/// # Safety
/// As for [`text`].
pub(crate) unsafe fn opt_text<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: the caller's contract, forwarded.
        unsafe { text(p, what) }.map(Some)
    }
}

/// A pointer to a value the function reads.
///
/// # Safety
/// `p` is NULL or points to a valid, aligned `T` for `'a`.
pub(crate) unsafe fn arg<'a, T>(p: *const T, what: &str) -> Result<&'a T> {
    // SAFETY: valid and aligned when non-NULL, by the caller's contract.
    unsafe { p.as_ref() }.ok_or_else(|| Error::new(SHMBUS_ERR_NULL, format!("{what} is NULL")))
}

/// A pointer to where the function writes its result.
///
/// # Safety
/// `p` is NULL or points to a valid, aligned, writable `T` for `'a`.
pub(crate) unsafe fn out<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T> {
    // SAFETY: valid, aligned and writable when non-NULL, by the caller's
    // contract.
    unsafe { p.as_mut() }.ok_or_else(|| Error::new(SHMBUS_ERR_NULL, format!("{what} is NULL")))
}

/// An optional out-pointer: NULL means the caller does not want the value.
///
/// # Safety
/// As for [`out`].
pub(crate) unsafe fn opt_out<'a, T>(p: *mut T) -> Option<&'a mut T> {
    // SAFETY: the caller's contract.
    unsafe { p.as_mut() }
}

/// Input bytes: `len` bytes at `p` (NULL allowed only when `len` is 0).
///
/// # Safety
/// `p` is NULL or points to `len` readable bytes for `'a`.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return fail(SHMBUS_ERR_NULL, format!("{what} is NULL"));
    }
    if len > isize::MAX as usize {
        return fail(
            SHMBUS_ERR_INVALID,
            format!("{what}: length {len} is too large"),
        );
    }
    // SAFETY: `len` readable bytes at non-NULL `p`, by the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts(p, len) })
}

/// An output buffer of `cap` bytes (NULL allowed only when `cap` is 0).
///
/// # Safety
/// `p` is NULL or points to `cap` writable bytes for `'a`.
pub(crate) unsafe fn buffer<'a>(p: *mut u8, cap: usize, what: &str) -> Result<&'a mut [u8]> {
    if cap == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return fail(SHMBUS_ERR_NULL, format!("{what} is NULL"));
    }
    if cap > isize::MAX as usize {
        return fail(
            SHMBUS_ERR_INVALID,
            format!("{what}: capacity {cap} is too large"),
        );
    }
    // SAFETY: `cap` writable bytes at non-NULL `p`, by the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts_mut(p, cap) })
}

/// Copy `src` into `dst`, or say how much room it needs. `what` is only
/// formatted on failure (no allocation on the way that succeeds).
pub(crate) fn copy_out(src: &[u8], dst: &mut [u8], what: impl core::fmt::Display) -> Result<()> {
    if dst.len() < src.len() {
        return fail(
            SHMBUS_ERR_BUFFER_TOO_SMALL,
            format!(
                "{what} needs {}, the buffer has {}: call again with a larger buffer",
                shmbus_core::plural::count(src.len(), "byte"),
                dst.len()
            ),
        );
    }
    dst[..src.len()].copy_from_slice(src);
    Ok(())
}

/// Copy `s` and a NUL into `dst`, or say how much room it needs.
pub(crate) fn copy_str_out(s: &[u8], dst: &mut [u8], what: impl core::fmt::Display) -> Result<()> {
    if dst.len() < s.len() + 1 {
        return fail(
            SHMBUS_ERR_BUFFER_TOO_SMALL,
            format!(
                "{what} needs {} with its NUL, the buffer has {}: call again with a larger buffer",
                shmbus_core::plural::count(s.len() + 1, "byte"),
                dst.len()
            ),
        );
    }
    dst[..s.len()].copy_from_slice(s);
    dst[s.len()] = 0;
    Ok(())
}
