//! [`Bytes<N>`]: a `[u8; N]` that the typed read path decodes in one copy.
//!
//! serde decodes a `[u8; N]` as a tuple of N separate `u8`s: its visitor
//! asks for every byte through `SeqAccess::next_element` and builds the
//! array from N results, whatever the decoder does (two `[u8; 32]` cost
//! 52 ns on x86_64, where copying the 64 bytes costs under 20). serde has
//! no specialisation, so a plain array cannot get faster; this type opts
//! in. Its wire format, its schema and its `MaxSize` are exactly those of
//! `[u8; N]` (N raw bytes, no length), so changing a field from `[u8; N]`
//! to `Bytes<N>` changes nothing a reader of the topic sees: the topic's
//! schema hash, the C header, Python and the CLI stay the same, and a
//! subscriber built with either type reads a publisher built with the other.
//!
//! How it is faster: its `Deserialize` asks for a tuple struct named
//! [`BYTES_NAME`]. [`crate::decode::from_bytes`] (the decoder of
//! `shmbus_sub::Subscriber`) recognises that name and hands the visitor the
//! N bytes as one slice; any other deserializer (postcard's own, JSON)
//! sees an ordinary tuple of N `u8`s and the visitor reads them one by one,
//! with the same result.

use core::fmt;
use core::ops::{Deref, DerefMut};

use postcard::experimental::max_size::MaxSize;
use postcard_schema::Schema;
use postcard_schema::schema::NamedType;
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTupleStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The tuple-struct name [`Bytes`] serializes under; the typed decoder
/// reads a tuple struct of this name as its length in raw bytes. No other
/// type may use it.
pub const BYTES_NAME: &str = "shmbus::Bytes";

/// `N` bytes, on the wire exactly a `[u8; N]` (see the module docs):
/// decoded in one copy by `shmbus_sub::Subscriber`.
///
/// ```
/// use shmbus_core::bytes::Bytes;
/// let b = Bytes([1u8, 2, 3, 4]);
/// let mut buf = [0u8; 4];
/// let wire = postcard::to_slice(&b, &mut buf).unwrap();
/// assert_eq!(wire, &[1, 2, 3, 4]); // as a [u8; 4]
/// let back: Bytes<4> = shmbus_core::decode::from_bytes(wire).unwrap();
/// assert_eq!(back, b);
/// assert_eq!(*back, [1, 2, 3, 4]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Bytes<const N: usize>(pub [u8; N]);

impl<const N: usize> Default for Bytes<N> {
    fn default() -> Self {
        Bytes([0; N])
    }
}

impl<const N: usize> fmt::Debug for Bytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<const N: usize> Deref for Bytes<N> {
    type Target = [u8; N];
    fn deref(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> DerefMut for Bytes<N> {
    fn deref_mut(&mut self) -> &mut [u8; N] {
        &mut self.0
    }
}

impl<const N: usize> From<[u8; N]> for Bytes<N> {
    fn from(a: [u8; N]) -> Self {
        Bytes(a)
    }
}

impl<const N: usize> From<Bytes<N>> for [u8; N] {
    fn from(b: Bytes<N>) -> Self {
        b.0
    }
}

impl<const N: usize> AsRef<[u8]> for Bytes<N> {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl<const N: usize> AsMut<[u8]> for Bytes<N> {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl<const N: usize> Schema for Bytes<N> {
    const SCHEMA: &'static NamedType = <[u8; N] as Schema>::SCHEMA;
}

impl<const N: usize> MaxSize for Bytes<N> {
    const POSTCARD_MAX_SIZE: usize = N;
}

impl<const N: usize> Serialize for Bytes<N> {
    #[inline]
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple_struct(BYTES_NAME, N)?;
        for b in &self.0 {
            t.serialize_field(b)?;
        }
        t.end()
    }
}

impl<'de, const N: usize> Deserialize<'de> for Bytes<N> {
    #[inline]
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_tuple_struct(BYTES_NAME, N, BytesVisitor::<N>)
    }
}

struct BytesVisitor<const N: usize>;

impl<'de, const N: usize> Visitor<'de> for BytesVisitor<N> {
    type Value = Bytes<N>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{N} bytes")
    }

    /// The typed decoder's path: all N bytes at once.
    #[inline]
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes<N>, E> {
        match <[u8; N]>::try_from(v) {
            Ok(a) => Ok(Bytes(a)),
            Err(_) => Err(E::invalid_length(v.len(), &self)),
        }
    }

    /// Every other deserializer's path: N `u8` elements, as `[u8; N]`.
    #[inline]
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes<N>, A::Error> {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = match seq.next_element()? {
                Some(b) => b,
                None => return Err(de::Error::invalid_length(i, &self)),
            };
        }
        Ok(Bytes(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_schema_and_max_size_are_those_of_the_array() {
        let a = [7u8, 0, 255, 128, 1];
        let mut x = [0u8; 8];
        let mut y = [0u8; 8];
        assert_eq!(
            postcard::to_slice(&Bytes(a), &mut x).unwrap(),
            postcard::to_slice(&a, &mut y).unwrap()
        );
        assert_eq!(Bytes::<5>::SCHEMA, <[u8; 5] as Schema>::SCHEMA);
        assert_eq!(Bytes::<5>::POSTCARD_MAX_SIZE, <[u8; 5]>::POSTCARD_MAX_SIZE);
    }

    mod with_array {
        #[derive(serde::Serialize, serde::Deserialize, postcard_schema::Schema)]
        pub struct Msg {
            pub id: u32,
            pub mac: [u8; 6],
        }
    }
    mod with_bytes {
        #[derive(serde::Serialize, serde::Deserialize, postcard_schema::Schema)]
        pub struct Msg {
            pub id: u32,
            pub mac: super::Bytes<6>,
        }
    }

    #[test]
    fn a_field_changed_to_bytes_keeps_the_topics_schema_and_frames() {
        use crate::schema::{fingerprint_of, schema_bytes};
        assert_eq!(
            schema_bytes::<with_array::Msg>().unwrap(),
            schema_bytes::<with_bytes::Msg>().unwrap()
        );
        assert_eq!(
            fingerprint_of::<with_array::Msg>().unwrap(),
            fingerprint_of::<with_bytes::Msg>().unwrap()
        );
        let old = with_array::Msg {
            id: 300,
            mac: [1, 2, 3, 4, 5, 6],
        };
        let wire = postcard::to_allocvec(&old).unwrap();
        let new: with_bytes::Msg = crate::decode::from_bytes(&wire).unwrap();
        assert_eq!((new.id, new.mac.0), (old.id, old.mac));
        assert_eq!(postcard::to_allocvec(&new).unwrap(), wire);
    }

    #[test]
    fn both_decoders_read_it_and_a_short_input_is_the_same_error() {
        let wire = [9u8, 8, 7, 6];
        let ours: Bytes<4> = crate::decode::from_bytes(&wire).unwrap();
        let theirs: Bytes<4> = postcard::from_bytes(&wire).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours.0, wire);
        for n in 0..4 {
            let e1 = crate::decode::from_bytes::<Bytes<4>>(&wire[..n]).unwrap_err();
            let e2 = postcard::from_bytes::<Bytes<4>>(&wire[..n]).unwrap_err();
            assert_eq!(e1, e2);
            assert_eq!(e1, postcard::Error::DeserializeUnexpectedEnd);
        }
    }

    #[test]
    fn the_typed_decoder_takes_the_one_copy_path() {
        // A visitor that only accepts `visit_bytes` proves which path the
        // decoder took for the magic name (and that other tuple structs
        // still go element by element).
        struct OnlyBytes;
        impl<'de> Visitor<'de> for OnlyBytes {
            type Value = usize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<usize, E> {
                Ok(v.len())
            }
        }
        struct Magic(usize);
        impl<'de> Deserialize<'de> for Magic {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_tuple_struct(BYTES_NAME, 3, OnlyBytes)
                    .map(Magic)
            }
        }
        struct Other;
        impl<'de> Deserialize<'de> for Other {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_tuple_struct("Other", 3, OnlyBytes)
                    .map(|_| Other)
            }
        }
        let wire = [1u8, 2, 3, 4];
        let m: Magic = crate::decode::from_bytes(&wire).unwrap();
        assert_eq!(m.0, 3);
        assert!(crate::decode::from_bytes::<Other>(&wire).is_err());
        // postcard's decoder knows nothing of the name.
        assert!(postcard::from_bytes::<Magic>(&wire).is_err());
    }
}
