//! The typed publish path's postcard encoder: [`to_slice`] writes the bytes
//! `postcard::to_slice` writes, for every value and every buffer (the same
//! bytes, or the same [`postcard::Error`] variant), in fewer instructions.
//!
//! The twin of [`crate::decode`], for the same reason: serde serializes a
//! `[u8; 32]` as 32 calls to `SerializeTuple::serialize_element`, and each
//! byte went through postcard's flavor `try_push`. Here the element, byte
//! and varint writes are inlined into the caller's loop, and each write
//! takes its bytes off the front of the part of the buffer not written
//! yet (an index into the whole buffer, stored back after every byte, was
//! 1.8x slower than postcard on the board's armv7 build). Two `[u8; 32]`:
//! 36 to 16 ns on x86_64, 83 to 59 ns under qemu-arm; the bench's `Imu`:
//! 12.7 to 6.5 ns on x86_64, even with postcard under qemu-arm.
//!
//! Compatibility is checked, not assumed: `tests/postcard_compat.rs`
//! compares the bytes both encoders write for every type of the serde data
//! model, and the error both give for every buffer too short to hold them.

use core::fmt::Write as _;

use postcard::Error;
use serde::ser::{self, Serialize};

type Result<T> = core::result::Result<T, Error>;

/// Encode `value` into `buf` as postcard does; returns the used part. A
/// buffer too short is [`Error::SerializeBufferFull`] (`buf` then holds
/// an unspecified part of the encoding).
#[inline]
pub fn to_slice<'b, T: Serialize + ?Sized>(value: &T, buf: &'b mut [u8]) -> Result<&'b mut [u8]> {
    let total = buf.len();
    let mut e = Encoder { out: &mut *buf };
    value.serialize(&mut e)?;
    let used = total - e.out.len();
    Ok(&mut buf[..used])
}

/// The output not written yet: each write takes bytes off its front.
struct Encoder<'b> {
    out: &'b mut [u8],
}

/// Writes one unsigned LEB128 varint of type `$t`: seven bits per byte,
/// low bits first, the top bit set on every byte but the last.
macro_rules! varint {
    ($name:ident, $t:ty) => {
        #[inline]
        fn $name(&mut self, mut v: $t) -> Result<()> {
            while v >= 0x80 {
                self.push((v as u8) | 0x80)?;
                v >>= 7;
            }
            self.push(v as u8)
        }
    };
}

impl Encoder<'_> {
    /// One byte, or `SerializeBufferFull`.
    #[inline(always)]
    fn push(&mut self, b: u8) -> Result<()> {
        match core::mem::take(&mut self.out).split_first_mut() {
            Some((first, rest)) => {
                *first = b;
                self.out = rest;
                Ok(())
            }
            None => Err(Error::SerializeBufferFull),
        }
    }

    /// Some bytes, all or nothing, or `SerializeBufferFull`.
    #[inline(always)]
    fn extend(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.len() > self.out.len() {
            return Err(Error::SerializeBufferFull);
        }
        let (head, rest) = core::mem::take(&mut self.out).split_at_mut(bytes.len());
        head.copy_from_slice(bytes);
        self.out = rest;
        Ok(())
    }

    varint!(varint_u16, u16);
    varint!(varint_u32, u32);
    varint!(varint_u64, u64);
    varint!(varint_u128, u128);

    /// A length: postcard's `usize` varint.
    #[inline]
    fn varint_usize(&mut self, n: usize) -> Result<()> {
        self.varint_u64(n as u64)
    }
}

impl ser::Serializer for &mut Encoder<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline(always)]
    fn serialize_bool(self, v: bool) -> Result<()> {
        self.push(u8::from(v))
    }

    #[inline(always)]
    fn serialize_i8(self, v: i8) -> Result<()> {
        self.push(v as u8)
    }

    #[inline]
    fn serialize_i16(self, v: i16) -> Result<()> {
        self.varint_u16(((v << 1) ^ (v >> 15)) as u16)
    }

    #[inline]
    fn serialize_i32(self, v: i32) -> Result<()> {
        self.varint_u32(((v << 1) ^ (v >> 31)) as u32)
    }

    #[inline]
    fn serialize_i64(self, v: i64) -> Result<()> {
        self.varint_u64(((v << 1) ^ (v >> 63)) as u64)
    }

    #[inline]
    fn serialize_i128(self, v: i128) -> Result<()> {
        self.varint_u128(((v << 1) ^ (v >> 127)) as u128)
    }

    #[inline(always)]
    fn serialize_u8(self, v: u8) -> Result<()> {
        self.push(v)
    }

    #[inline]
    fn serialize_u16(self, v: u16) -> Result<()> {
        self.varint_u16(v)
    }

    #[inline]
    fn serialize_u32(self, v: u32) -> Result<()> {
        self.varint_u32(v)
    }

    #[inline]
    fn serialize_u64(self, v: u64) -> Result<()> {
        self.varint_u64(v)
    }

    #[inline]
    fn serialize_u128(self, v: u128) -> Result<()> {
        self.varint_u128(v)
    }

    #[inline(always)]
    fn serialize_f32(self, v: f32) -> Result<()> {
        self.extend(&v.to_bits().to_le_bytes())
    }

    #[inline(always)]
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.extend(&v.to_bits().to_le_bytes())
    }

    /// A char is the string of its UTF-8 bytes.
    fn serialize_char(self, v: char) -> Result<()> {
        self.serialize_str(v.encode_utf8(&mut [0u8; 4]))
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result<()> {
        self.varint_usize(v.len())?;
        self.extend(v.as_bytes())
    }

    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.varint_usize(v.len())?;
        self.extend(v)
    }

    #[inline]
    fn serialize_none(self) -> Result<()> {
        self.push(0)
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        self.push(1)?;
        value.serialize(self)
    }

    #[inline]
    fn serialize_unit(self) -> Result<()> {
        Ok(())
    }

    #[inline]
    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        Ok(())
    }

    #[inline]
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
    ) -> Result<()> {
        self.varint_u32(variant_index)
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<()> {
        value.serialize(self)
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<()> {
        self.varint_u32(variant_index)?;
        value.serialize(self)
    }

    /// A sequence must know its length up front (postcard writes it first).
    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self> {
        self.varint_usize(len.ok_or(Error::SerializeSeqLengthUnknown)?)?;
        Ok(self)
    }

    #[inline]
    fn serialize_tuple(self, _len: usize) -> Result<Self> {
        Ok(self)
    }

    #[inline]
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self> {
        self.varint_u32(variant_index)?;
        Ok(self)
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self> {
        self.varint_usize(len.ok_or(Error::SerializeSeqLengthUnknown)?)?;
        Ok(self)
    }

    #[inline]
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        variant_index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self> {
        self.varint_u32(variant_index)?;
        Ok(self)
    }

    /// As postcard: measure the text once, write its length, then write it.
    fn collect_str<T: core::fmt::Display + ?Sized>(self, value: &T) -> Result<()> {
        struct Count(usize);
        impl core::fmt::Write for Count {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                self.0 += s.len();
                Ok(())
            }
        }
        struct Out<'e, 'b>(&'e mut Encoder<'b>);
        impl core::fmt::Write for Out<'_, '_> {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                self.0.extend(s.as_bytes()).map_err(|_| core::fmt::Error)
            }
        }
        let mut count = Count(0);
        write!(count, "{value}").map_err(|_| Error::CollectStrError)?;
        self.varint_usize(count.0)?;
        write!(Out(self), "{value}").map_err(|_| Error::CollectStrError)
    }
}

/// The compound parts of a value: each element, field, key or value in
/// order, nothing before or after (counts and variant indices were written
/// when the compound began).
macro_rules! compound {
    ($trait:ident, $method:ident) => {
        impl ser::$trait for &mut Encoder<'_> {
            type Ok = ();
            type Error = Error;

            #[inline(always)]
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
                value.serialize(&mut **self)
            }

            #[inline(always)]
            fn end(self) -> Result<()> {
                Ok(())
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);

impl ser::SerializeMap for &mut Encoder<'_> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        key.serialize(&mut **self)
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut **self)
    }

    #[inline]
    fn end(self) -> Result<()> {
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Encoder<'_> {
    type Ok = ();
    type Error = Error;

    #[inline(always)]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _key: &'static str,
        value: &T,
    ) -> Result<()> {
        value.serialize(&mut **self)
    }

    #[inline(always)]
    fn end(self) -> Result<()> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Encoder<'_> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _key: &'static str,
        value: &T,
    ) -> Result<()> {
        value.serialize(&mut **self)
    }

    #[inline]
    fn end(self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes are postcard's, and a buffer one byte short fails the same
    /// way.
    #[test]
    fn writes_what_postcard_writes() {
        let v = (u64::MAX, -3i32, [7u8; 5], "imu0", Some(1.5f32), [0u16, 300]);
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        let ours = to_slice(&v, &mut a).unwrap().to_vec();
        let theirs = postcard::to_slice(&v, &mut b).unwrap().to_vec();
        assert_eq!(ours, theirs);
        let short = ours.len() - 1;
        assert_eq!(
            to_slice(&v, &mut a[..short]).map(|s| s.len()),
            postcard::to_slice(&v, &mut b[..short]).map(|s| s.len())
        );
    }
}
