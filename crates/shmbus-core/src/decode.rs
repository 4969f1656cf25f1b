//! The typed read path's postcard decoder: [`from_bytes`] gives what
//! `postcard::from_bytes` gives, for every type and every input (the same
//! value, or the same [`postcard::Error`] variant), in fewer instructions.
//!
//! Why a second decoder: a subscriber copies a frame out of its slot (a
//! word at a time, inside the seqlock window) and then decodes the private
//! copy, and postcard's decode cost several times that copy. serde's
//! visitors fetch each element of an array, tuple or struct through
//! `SeqAccess::next_element`, which the compiler kept as an out-of-line
//! call per element. Here the element fetch and the byte, float and varint
//! reads are inlined into the visitor, and a tuple's or struct's read
//! position lives in the visitor's registers. A frame of numbers (the
//! bench's `Imu`: a `u64`, six `f32`, an `i16`, a `bool`) decodes 4.6x
//! faster (20 to 4.4 ns on x86_64; 230 to 81 ns under qemu-arm). A
//! `[u8; N]` does not get faster: serde's visitor asks for its N bytes one
//! at a time and builds the array from N separate results whatever the
//! decoder does (two `[u8; 32]`: 52 ns either way). A
//! [`Bytes<N>`](crate::bytes::Bytes), wire-identical, decodes in one copy.
//! `docs/BENCHMARKS.md` has the figures.
//!
//! The wire format is postcard 1's (its specification, and
//! `docs/LAYOUT.md` section 8): this module only reads it. Compatibility
//! is checked, not assumed: `tests/postcard_compat.rs` compares both
//! decoders on every type of the serde data model with round trips, every
//! prefix of valid frames, mutated and random input. Like postcard's
//! `from_bytes`, bytes after a complete value are ignored, and nothing is
//! allocated beyond what the decoded type's own `Deserialize` allocates
//! (sequence lengths pass through serde's cautious size hint, as in
//! postcard).

use postcard::Error;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

type Result<T> = core::result::Result<T, Error>;

/// Decode a `T` from postcard bytes: the same answer as
/// `postcard::from_bytes::<T>(bytes)`, faster (see the module docs).
#[inline]
pub fn from_bytes<'de, T: de::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T> {
    T::deserialize(&mut Decoder {
        input: bytes,
        empty_left: MAX_EMPTY_ELEMENTS,
    })
}

/// How many elements of sequences and maps one decode may read that take
/// no bytes (`()`, unit structs, empty arrays). Every other element takes
/// at least one byte of the frame, so this bounds a decode's work by the
/// frame's length plus this count, whatever lengths the frame claims.
/// postcard has no such bound: a `Vec<()>` of claimed length 2^63 (a
/// one-word varint) keeps it looping for centuries; here it is
/// [`Error::DeserializeBadEncoding`] after a millisecond.
pub const MAX_EMPTY_ELEMENTS: u32 = 1 << 20;

/// The bytes not decoded yet, and how many more elements may take none.
struct Decoder<'de> {
    input: &'de [u8],
    empty_left: u32,
}

/// Reads one unsigned LEB128 varint of type `$t`, at most `$max` bytes, as
/// postcard does: a continuation bit on the last allowed byte, or a last
/// byte with bits above the type's width, is `DeserializeBadVarint`.
macro_rules! varint {
    ($name:ident, $t:ty) => {
        #[inline]
        fn $name(&mut self) -> Result<$t> {
            const BITS: usize = <$t>::BITS as usize;
            const MAX: usize = BITS.div_ceil(7);
            const LAST_MAX: u8 = ((1u32 << (BITS % 7)) - 1) as u8;
            let first = self.pop()?;
            if first < 0x80 {
                return Ok(<$t>::from(first));
            }
            let mut out = <$t>::from(first & 0x7f);
            for i in 1..MAX {
                let b = self.pop()?;
                out |= <$t>::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    if i == MAX - 1 && b > LAST_MAX {
                        return Err(Error::DeserializeBadVarint);
                    }
                    return Ok(out);
                }
            }
            Err(Error::DeserializeBadVarint)
        }
    };
}

impl<'de> Decoder<'de> {
    /// One byte, or `DeserializeUnexpectedEnd`.
    #[inline(always)]
    fn pop(&mut self) -> Result<u8> {
        match self.input.split_first() {
            Some((&b, rest)) => {
                self.input = rest;
                Ok(b)
            }
            None => Err(Error::DeserializeUnexpectedEnd),
        }
    }

    /// The next `n` bytes, or `DeserializeUnexpectedEnd`.
    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        if n > self.input.len() {
            return Err(Error::DeserializeUnexpectedEnd);
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    /// `N` bytes as an array (the fixed-width floats).
    #[inline(always)]
    fn take_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        match self.input.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.input = rest;
                Ok(*head)
            }
            None => Err(Error::DeserializeUnexpectedEnd),
        }
    }

    varint!(varint_u16, u16);
    varint!(varint_u32, u32);
    varint!(varint_u64, u64);
    varint!(varint_u128, u128);

    /// A length: postcard's `usize` varint, as wide as this machine's
    /// `usize` (so a length above 2^32 - 1 is `DeserializeBadVarint` on a
    /// 32-bit board, as with postcard).
    #[inline]
    fn varint_usize(&mut self) -> Result<usize> {
        #[cfg(target_pointer_width = "64")]
        let v = self.varint_u64()? as usize;
        #[cfg(target_pointer_width = "32")]
        let v = self.varint_u32()? as usize;
        #[cfg(target_pointer_width = "16")]
        let v = self.varint_u16()? as usize;
        Ok(v)
    }
}

/// The elements of a sequence, tuple or struct: `len` more to read.
///
/// The read position is the sequence's own (`input`), written back to the
/// decoder when the visitor drops the sequence, also on an error. A visitor
/// owns its sequence, so while it reads the elements the position lives in
/// its registers: each byte of an array is a compare, a load and an
/// increment, where a position behind the decoder's `&mut` was stored back
/// to memory after every byte (which cost as much as postcard's call per
/// element).
///
/// `WIRE`: the count came from the frame (a sequence), not from the type
/// (a tuple, array or struct, whose count is a constant of the program):
/// only then are elements that take no bytes charged to
/// [`MAX_EMPTY_ELEMENTS`], and only then is the check compiled in.
struct Seq<'a, 'de, const WIRE: bool> {
    de: &'a mut Decoder<'de>,
    input: &'de [u8],
    empty_left: u32,
    len: usize,
}

impl<'a, 'de, const WIRE: bool> Seq<'a, 'de, WIRE> {
    #[inline(always)]
    fn new(de: &'a mut Decoder<'de>, len: usize) -> Self {
        let (input, empty_left) = (de.input, de.empty_left);
        Seq {
            de,
            input,
            empty_left,
            len,
        }
    }

    /// One element, decoded from this sequence's position; one that took
    /// no bytes is charged to [`MAX_EMPTY_ELEMENTS`].
    #[inline(always)]
    fn element<T>(&mut self, decode: impl FnOnce(&mut Decoder<'de>) -> Result<T>) -> Result<T> {
        let before = self.input.len();
        let mut d = Decoder {
            input: self.input,
            empty_left: self.empty_left,
        };
        let r = decode(&mut d);
        self.input = d.input;
        self.empty_left = d.empty_left;
        if WIRE && r.is_ok() && self.input.len() == before {
            self.empty_left = match self.empty_left.checked_sub(1) {
                Some(n) => n,
                None => return Err(Error::DeserializeBadEncoding),
            };
        }
        r
    }
}

impl<const WIRE: bool> Drop for Seq<'_, '_, WIRE> {
    #[inline(always)]
    fn drop(&mut self) {
        self.de.input = self.input;
        self.de.empty_left = self.empty_left;
    }
}

impl<'de, const WIRE: bool> de::SeqAccess<'de> for Seq<'_, 'de, WIRE> {
    type Error = Error;

    #[inline(always)]
    fn next_element_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>> {
        if self.len == 0 {
            return Ok(None);
        }
        self.len -= 1;
        self.element(|d| seed.deserialize(d)).map(Some)
    }

    /// Overridden only to be inlined: serde's array visitors call this once
    /// per element, and the provided method was kept out of line.
    #[inline(always)]
    fn next_element<T: de::Deserialize<'de>>(&mut self) -> Result<Option<T>> {
        if self.len == 0 {
            return Ok(None);
        }
        self.len -= 1;
        self.element(|d| T::deserialize(d)).map(Some)
    }

    /// As postcard: no hint when the input is shorter than the count (a
    /// hostile length never sizes an allocation).
    fn size_hint(&self) -> Option<usize> {
        (self.input.len() >= self.len).then_some(self.len)
    }
}

/// The entries of a map: `len` more keys, each followed by its value.
struct Map<'a, 'de> {
    de: &'a mut Decoder<'de>,
    len: usize,
    /// The input left when the current entry's key began.
    key_start: usize,
}

impl<'de> de::MapAccess<'de> for Map<'_, 'de> {
    type Error = Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.len == 0 {
            return Ok(None);
        }
        self.len -= 1;
        self.key_start = self.de.input.len();
        seed.deserialize(&mut *self.de).map(Some)
    }

    /// An entry whose key and value took no bytes is charged to
    /// [`MAX_EMPTY_ELEMENTS`].
    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let v = seed.deserialize(&mut *self.de)?;
        if self.de.input.len() == self.key_start {
            self.de.empty_left = self
                .de
                .empty_left
                .checked_sub(1)
                .ok_or(Error::DeserializeBadEncoding)?;
        }
        Ok(v)
    }

    /// As postcard: the count itself (serde's maps cap what they reserve).
    fn size_hint(&self) -> Option<usize> {
        Some(self.len)
    }
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = Error;

    fn is_human_readable(&self) -> bool {
        false
    }

    /// postcard is not self-describing.
    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(Error::WontImplement)
    }

    #[inline]
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.pop()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            _ => Err(Error::DeserializeBadBool),
        }
    }

    #[inline(always)]
    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i8(self.pop()? as i8)
    }

    #[inline]
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let n = self.varint_u16()?;
        visitor.visit_i16((n >> 1) as i16 ^ -((n & 1) as i16))
    }

    #[inline]
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let n = self.varint_u32()?;
        visitor.visit_i32((n >> 1) as i32 ^ -((n & 1) as i32))
    }

    #[inline]
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let n = self.varint_u64()?;
        visitor.visit_i64((n >> 1) as i64 ^ -((n & 1) as i64))
    }

    #[inline]
    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let n = self.varint_u128()?;
        visitor.visit_i128((n >> 1) as i128 ^ -((n & 1) as i128))
    }

    #[inline(always)]
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u8(self.pop()?)
    }

    #[inline]
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u16(self.varint_u16()?)
    }

    #[inline]
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u32(self.varint_u32()?)
    }

    #[inline]
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u64(self.varint_u64()?)
    }

    #[inline]
    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u128(self.varint_u128()?)
    }

    #[inline(always)]
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f32(f32::from_le_bytes(self.take_array()?))
    }

    #[inline(always)]
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f64(f64::from_le_bytes(self.take_array()?))
    }

    /// A char is a string of one character (1 to 4 UTF-8 bytes). As
    /// postcard, only the first character of a valid string is checked.
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let n = self.varint_usize()?;
        if n > 4 {
            return Err(Error::DeserializeBadChar);
        }
        let c = core::str::from_utf8(self.take(n)?)
            .ok()
            .and_then(|s| s.chars().next())
            .ok_or(Error::DeserializeBadChar)?;
        visitor.visit_char(c)
    }

    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let n = self.varint_usize()?;
        let s = core::str::from_utf8(self.take(n)?).map_err(|_| Error::DeserializeBadUtf8)?;
        visitor.visit_borrowed_str(s)
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let n = self.varint_usize()?;
        let s = core::str::from_utf8(self.take(n)?).map_err(|_| Error::DeserializeBadUtf8)?;
        visitor.visit_str(s)
    }

    #[inline]
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let n = self.varint_usize()?;
        visitor.visit_borrowed_bytes(self.take(n)?)
    }

    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let n = self.varint_usize()?;
        visitor.visit_bytes(self.take(n)?)
    }

    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.pop()? {
            0 => visitor.visit_none(),
            1 => visitor.visit_some(self),
            _ => Err(Error::DeserializeBadOption),
        }
    }

    #[inline]
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_unit()
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let len = self.varint_usize()?;
        visitor.visit_seq(Seq::<true>::new(self, len))
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(Seq::<false>::new(self, len))
    }

    /// A [`Bytes<N>`](crate::bytes::Bytes) (a tuple struct named
    /// [`BYTES_NAME`](crate::bytes::BYTES_NAME)) is N raw bytes on the wire,
    /// exactly as its N `u8` elements would be read one by one: its visitor
    /// gets them as one slice. The name comparison folds away at compile
    /// time for every other tuple struct.
    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        if name == crate::bytes::BYTES_NAME {
            return visitor.visit_borrowed_bytes(self.take(len)?);
        }
        visitor.visit_seq(Seq::<false>::new(self, len))
    }

    #[inline]
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let len = self.varint_usize()?;
        visitor.visit_map(Map {
            de: self,
            len,
            key_start: 0,
        })
    }

    /// A struct is the tuple of its fields, in declaration order.
    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_seq(Seq::<false>::new(self, fields.len()))
    }

    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_enum(self)
    }

    /// Binary postcard has no identifiers.
    fn deserialize_identifier<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(Error::WontImplement)
    }

    /// Skipping needs a self-describing format.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
        Err(Error::WontImplement)
    }
}

/// An enum is its variant's index (a `u32` varint), then the variant's
/// content.
impl<'de> de::EnumAccess<'de> for &mut Decoder<'de> {
    type Error = Error;
    type Variant = Self;

    #[inline]
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let index = self.varint_u32()?;
        let de: de::value::U32Deserializer<Error> = index.into_deserializer();
        Ok((seed.deserialize(de)?, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Decoder<'de> {
    type Error = Error;

    #[inline]
    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self)
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(Seq::<false>::new(self, len))
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_seq(Seq::<false>::new(self, fields.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The varint limits are postcard's: the longest encoding of each
    /// width, and one bit too many in its last byte.
    #[test]
    fn varints_stop_where_postcard_stops() {
        assert_eq!(from_bytes::<u16>(&[0xff, 0xff, 0x03]), Ok(u16::MAX));
        assert_eq!(
            from_bytes::<u16>(&[0xff, 0xff, 0x04]),
            Err(Error::DeserializeBadVarint)
        );
        assert_eq!(
            from_bytes::<u16>(&[0x80, 0x80, 0x80]),
            Err(Error::DeserializeBadVarint)
        );
        let mut max64 = [0xff; 10];
        max64[9] = 0x01;
        assert_eq!(from_bytes::<u64>(&max64), Ok(u64::MAX));
        max64[9] = 0x02;
        assert_eq!(from_bytes::<u64>(&max64), Err(Error::DeserializeBadVarint));
        assert_eq!(
            from_bytes::<u32>(&[0x80]),
            Err(Error::DeserializeUnexpectedEnd)
        );
    }

    /// A hostile length of zero-byte elements ends in an error after
    /// [`MAX_EMPTY_ELEMENTS`], where postcard would loop 2^32 times; a
    /// sequence of them up to that many decodes.
    #[test]
    fn claimed_runs_of_empty_elements_are_bounded() {
        // 2^32 - 1 elements: a length every board's `usize` holds.
        let huge = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert_eq!(
            from_bytes::<Vec<()>>(&huge),
            Err(Error::DeserializeBadEncoding)
        );
        assert_eq!(
            from_bytes::<Vec<Vec<()>>>(&[0x02, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x3f]),
            Err(Error::DeserializeBadEncoding)
        );
        assert_eq!(
            from_bytes::<std::collections::BTreeMap<(), ()>>(&huge),
            Err(Error::DeserializeBadEncoding)
        );
        let fine = postcard::to_allocvec(&vec![(); 1000]).unwrap();
        assert_eq!(from_bytes::<Vec<()>>(&fine), Ok(vec![(); 1000]));
        let limit = postcard::to_allocvec(&vec![(); MAX_EMPTY_ELEMENTS as usize]).unwrap();
        assert_eq!(
            from_bytes::<Vec<()>>(&limit).map(|v| v.len()),
            Ok(MAX_EMPTY_ELEMENTS as usize)
        );
    }

    /// A byte array decodes to the same value as postcard's, and a short
    /// one fails the same way.
    #[test]
    fn byte_arrays_decode_as_with_postcard() {
        let v: [u8; 32] = core::array::from_fn(|i| i as u8 * 7);
        let bytes = postcard::to_allocvec(&v).unwrap();
        assert_eq!(from_bytes::<[u8; 32]>(&bytes), Ok(v));
        assert_eq!(
            from_bytes::<[u8; 32]>(&bytes[..31]),
            postcard::from_bytes::<[u8; 32]>(&bytes[..31])
        );
    }
}
