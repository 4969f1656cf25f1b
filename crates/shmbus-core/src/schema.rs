//! The schema a segment carries: a postcard-encoded `postcard_schema`
//! `OwnedNamedType`, so tools can decode frames without the Rust type.
//!
//! The schema of a Rust type is postcard-schema's, with one addition: the
//! capacity of every bounded string, byte array, sequence and map is
//! written into its node's name (`heapless::String<16>` where
//! postcard-schema says `heapless::String<N>`), so tools can refuse values a
//! typed subscriber would refuse, and the fingerprint tells a
//! `heapless::String<8>` from a `heapless::String<16>`. The capacities are
//! found by asking the type's own `Deserialize` (`docs/JSON.md` §3); the
//! naming rule is [`capacity_of`] / [`name_with_capacity`] (`docs/LAYOUT.md`
//! §8).

mod probe;

use postcard_schema::Schema;
use postcard_schema::schema::owned::OwnedNamedType;
use serde::de::DeserializeOwned;

pub use probe::{MAX_PROBED_BYTES, MAX_PROBED_ELEMENTS};

use crate::layout::{MAX_SCHEMA_LEN, fnv1a64};

/// The schema of frames of type `T`, with capacities (see the module doc).
///
/// Costs one deserialization of `T` from defaults per probe: a few per
/// bounded string or list (about 2 log2(N) for a string of capacity N),
/// done once when a publisher opens or a subscriber attaches.
pub fn named_type_of<T: Schema + DeserializeOwned>() -> OwnedNamedType {
    let mut t = OwnedNamedType::from(T::SCHEMA);
    probe::write_capacities::<T>(&mut t);
    t
}

/// The schema bytes stored in a segment for frames of type `T`.
pub fn schema_bytes<T: Schema + DeserializeOwned>() -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(&named_type_of::<T>())
}

/// The fingerprint (FNV-1a 64 of the schema bytes) for type `T`.
pub fn fingerprint_of<T: Schema + DeserializeOwned>() -> Result<u64, postcard::Error> {
    Ok(fnv1a64(&schema_bytes::<T>()?))
}

/// The capacity that a schema node's name declares: the last generic
/// argument of the name when it is a decimal number.
///
/// `heapless::String<16>` holds at most 16 bytes, `heapless::Vec<T, 16>` at
/// most 16 elements. A name without such an argument (`String`, `Vec<T>`,
/// or postcard-schema's own `heapless::String<N>`) declares no capacity: the
/// value is bounded only by the frame capacity. See `docs/LAYOUT.md` §8.
///
/// A declared number too large for this machine's `usize` (any number over
/// 2^32 - 1 on a 32-bit board) reads as `usize::MAX`: a capacity no frame
/// can hold, so it is refused as too large, never taken for "no capacity".
pub fn capacity_of(name: &str) -> Option<usize> {
    let (_, args) = split_generics(name)?;
    let last = args.rsplit(',').next()?.trim();
    if last.is_empty() || !last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(last.parse().unwrap_or(usize::MAX))
}

/// `name` with its capacity written in: the last generic argument `N` (or
/// an earlier number) becomes `capacity`; a name without generic arguments
/// gets `<capacity>`, one whose last argument is something else gets
/// `, capacity` appended. Inverse of [`capacity_of`].
pub fn name_with_capacity(name: &str, capacity: usize) -> String {
    match split_generics(name) {
        Some((head, args)) => {
            let (keep, last) = match args.rfind(',') {
                Some(i) => (&args[..=i], &args[i + 1..]),
                None => ("", args),
            };
            let t = last.trim();
            if t == "N" || (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())) {
                let space = if keep.is_empty() { "" } else { " " };
                format!("{head}<{keep}{space}{capacity}>")
            } else {
                format!("{head}<{args}, {capacity}>")
            }
        }
        None => format!("{name}<{capacity}>"),
    }
}

/// Split `Head<args>` at its outermost trailing generic list.
fn split_generics(name: &str) -> Option<(&str, &str)> {
    let body = name.strip_suffix('>')?;
    let mut depth = 0usize;
    for (i, c) in body.char_indices().rev() {
        match c {
            '>' => depth += 1,
            '<' if depth == 0 => return Some((&name[..i], &body[i + 1..])),
            '<' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Maximum nesting depth accepted when decoding a schema from a segment.
pub const MAX_SCHEMA_DEPTH: usize = 64;

/// Decode schema bytes read from a segment.
///
/// The bytes are untrusted: they are size-limited and, before postcard
/// (which recurses once per nesting level) sees them, their nesting depth is
/// measured by a scan that does not recurse ([`encoded_depth`]), so a
/// hostile schema cannot overflow the stack. No thread, no allocation
/// beyond the decoded tree: it works the same under a tight address-space
/// limit (`ulimit -v`, strict overcommit on a small board).
pub fn decode_schema(bytes: &[u8]) -> Result<OwnedNamedType, postcard::Error> {
    if bytes.len() > MAX_SCHEMA_LEN || encoded_depth(bytes, MAX_SCHEMA_DEPTH).is_none() {
        return Err(postcard::Error::DeserializeBadEncoding);
    }
    exact(bytes)
}

/// Decode, requiring that every byte is used: trailing bytes mean the
/// length field and the schema disagree.
fn exact(bytes: &[u8]) -> Result<OwnedNamedType, postcard::Error> {
    match postcard::take_from_bytes::<OwnedNamedType>(bytes)? {
        (t, []) => Ok(t),
        _ => Err(postcard::Error::DeserializeBadEncoding),
    }
}

/// One pending item of [`encoded_depth`]'s walk; `level` is the number of
/// container types above it.
#[derive(Clone, Copy)]
enum Pending {
    /// An `OwnedNamedType`: name, then an `OwnedDataModelType`.
    Type { level: usize },
    /// `n` more `OwnedNamedType`s (a tuple's elements).
    Types { n: u64, level: usize },
    /// `n` more `OwnedNamedValue`s: name, then an `OwnedNamedType`.
    Values { n: u64, level: usize },
    /// `n` more `OwnedNamedVariant`s: name, then an `OwnedDataModelVariant`.
    Variants { n: u64, level: usize },
}

/// The nesting depth (as [`depth_of`] counts it) of a postcard-encoded
/// `OwnedNamedType`, found by walking the encoding with an explicit stack
/// instead of recursion; `None` if it is deeper than `max` or is not a
/// well-formed encoding of the tree's shape (names are skipped, not checked
/// as UTF-8: postcard checks them afterwards).
///
/// The walk visits the bytes in the order postcard's decoder does, so
/// postcard never recurses deeper than this walk has allowed. Every pending
/// item consumes at least one byte, so the walk ends after at most
/// `bytes.len()` steps; the stack holds at most two items per level.
pub fn encoded_depth(bytes: &[u8], max: usize) -> Option<usize> {
    let mut r = Reader { bytes, at: 0 };
    let mut stack = vec![Pending::Type { level: 0 }];
    let mut deepest = 0;
    while let Some(item) = stack.pop() {
        match item {
            Pending::Type { level } => {
                r.skip_str()?;
                let inner = level + 1;
                // Tag order of `OwnedDataModelType`: 0..=17 the primitives
                // (Bool .. ByteArray), 18 Option, 19 Unit, 20 UnitStruct,
                // 21 NewtypeStruct, 22 Seq, 23 Tuple, 24 TupleStruct,
                // 25 Map, 26 Struct, 27 Enum, 28 Schema.
                let tag = r.varint()?;
                if matches!(tag, 18 | 21..=27) {
                    if inner > max {
                        return None;
                    }
                    deepest = deepest.max(inner);
                }
                match tag {
                    0..=17 | 19 | 20 | 28 => {}
                    18 | 21 | 22 => stack.push(Pending::Type { level: inner }),
                    23 | 24 => stack.push(Pending::Types {
                        n: r.varint()?,
                        level: inner,
                    }),
                    25 => {
                        stack.push(Pending::Type { level: inner });
                        stack.push(Pending::Type { level: inner });
                    }
                    26 => stack.push(Pending::Values {
                        n: r.varint()?,
                        level: inner,
                    }),
                    27 => stack.push(Pending::Variants {
                        n: r.varint()?,
                        level: inner,
                    }),
                    _ => return None,
                }
            }
            Pending::Types { n, level } if n > 0 => {
                stack.push(Pending::Types { n: n - 1, level });
                stack.push(Pending::Type { level });
            }
            Pending::Values { n, level } if n > 0 => {
                stack.push(Pending::Values { n: n - 1, level });
                r.skip_str()?;
                stack.push(Pending::Type { level });
            }
            Pending::Variants { n, level } if n > 0 => {
                stack.push(Pending::Variants { n: n - 1, level });
                r.skip_str()?;
                // `OwnedDataModelVariant`: 0 Unit, 1 Newtype, 2 Tuple,
                // 3 Struct. A variant adds no level of its own.
                match r.varint()? {
                    0 => {}
                    1 => stack.push(Pending::Type { level }),
                    2 => stack.push(Pending::Types {
                        n: r.varint()?,
                        level,
                    }),
                    3 => stack.push(Pending::Values {
                        n: r.varint()?,
                        level,
                    }),
                    _ => return None,
                }
            }
            Pending::Types { .. } | Pending::Values { .. } | Pending::Variants { .. } => {}
        }
    }
    Some(deepest)
}

/// A cursor over schema bytes for [`encoded_depth`].
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    /// A postcard varint of up to 64 bits (lengths are `usize`, tags
    /// `u32`); the value only steers the walk, postcard checks it again.
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// A length-prefixed string, skipped.
    fn skip_str(&mut self) -> Option<()> {
        let len = usize::try_from(self.varint()?).ok()?;
        let end = self.at.checked_add(len)?;
        if end > self.bytes.len() {
            return None;
        }
        self.at = end;
        Some(())
    }
}

/// Nesting depth of a decoded schema.
pub fn depth_of(t: &OwnedNamedType) -> usize {
    use postcard_schema::schema::owned::{OwnedDataModelType as D, OwnedDataModelVariant as V};
    fn ty(d: &D) -> usize {
        match d {
            D::Option(n) | D::NewtypeStruct(n) | D::Seq(n) => 1 + depth_of(n),
            D::Tuple(v) | D::TupleStruct(v) => 1 + v.iter().map(depth_of).max().unwrap_or(0),
            D::Map { key, val } => 1 + depth_of(key).max(depth_of(val)),
            D::Struct(fields) => 1 + fields.iter().map(|f| depth_of(&f.ty)).max().unwrap_or(0),
            D::Enum(vars) => {
                1 + vars
                    .iter()
                    .map(|v| match &v.ty {
                        V::UnitVariant => 0,
                        V::NewtypeVariant(n) => depth_of(n),
                        V::TupleVariant(v) => v.iter().map(depth_of).max().unwrap_or(0),
                        V::StructVariant(f) => f.iter().map(|f| depth_of(&f.ty)).max().unwrap_or(0),
                    })
                    .max()
                    .unwrap_or(0)
            }
            _ => 0,
        }
    }
    ty(&t.ty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Schema)]
    struct Imu {
        t: u64,
        acc: [f32; 3],
        frame: heapless::String<8>,
    }

    #[test]
    fn schema_round_trips_and_fingerprint_is_stable() {
        let b = schema_bytes::<Imu>().unwrap();
        let t = decode_schema(&b).unwrap();
        assert_eq!(t.name, "Imu");
        assert_eq!(fingerprint_of::<Imu>().unwrap(), fnv1a64(&b));
        assert!(depth_of(&t) >= 1);
    }

    #[allow(dead_code, reason = "the types are only deserialized by the probe")]
    mod probe_types {
        use postcard_schema::Schema;
        use postcard_schema::schema::{DataModelType, NamedType};
        use serde::{Deserialize, Deserializer};

        #[derive(Deserialize, Schema)]
        pub struct Zone {
            pub name: heapless::String<16>,
            pub id: core::num::NonZeroU8,
        }

        #[derive(Deserialize, Schema)]
        pub enum Event {
            Idle,
            Note(heapless::String<5>),
            Pair(u8, heapless::Vec<u16, 3>),
            Named { who: Option<heapless::String<7>> },
        }

        /// A map with a capacity, with a hand-written schema.
        #[derive(Deserialize)]
        #[serde(transparent)]
        pub struct Tags(pub heapless::LinearMap<u8, u8, 3>);

        impl Schema for Tags {
            const SCHEMA: &'static NamedType = &NamedType {
                name: "Tags",
                ty: &DataModelType::Map {
                    key: u8::SCHEMA,
                    val: u8::SCHEMA,
                },
            };
        }

        #[derive(Deserialize, Schema)]
        pub struct All {
            pub zones: [Zone; 3],
            pub list: heapless::Vec<heapless::String<4>, 6>,
            pub nested: heapless::Vec<heapless::Vec<u8, 2>, 9>,
            pub std_s: String,
            pub std_v: Vec<u8>,
            pub events: heapless::Vec<Event, 2>,
            pub tags: Tags,
            pub maybe: Option<Zone>,
        }

        /// A field that refuses the probe's defaults: nothing can be learnt.
        #[derive(Schema)]
        pub struct Picky(pub u8);

        impl<'de> Deserialize<'de> for Picky {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = u8::deserialize(d)?;
                if v == 42 {
                    Ok(Picky(v))
                } else {
                    Err(serde::de::Error::custom("only 42"))
                }
            }
        }

        #[derive(Deserialize, Schema)]
        pub struct WithPicky {
            pub p: Picky,
            pub s: heapless::String<8>,
        }

        #[derive(Deserialize, Schema)]
        pub struct Narrow {
            pub s: heapless::String<8>,
        }

        #[derive(Deserialize, Schema)]
        #[serde(rename = "Narrow")]
        pub struct Wide {
            pub s: heapless::String<16>,
        }
    }

    #[test]
    fn capacities_are_written_into_the_schema() {
        use postcard_schema::schema::owned::OwnedDataModelType as D;
        let t = named_type_of::<probe_types::All>();
        let D::Struct(f) = &t.ty else { panic!("{t:?}") };
        let D::Tuple(zones) = &f[0].ty.ty else {
            panic!()
        };
        for z in zones {
            let D::Struct(zf) = &z.ty else { panic!() };
            assert_eq!(zf[0].ty.name, "heapless::String<16>");
            assert_eq!(zf[1].ty.name, "NonZeroU8");
        }
        assert_eq!(f[1].ty.name, "heapless::Vec<T, 6>");
        let D::Seq(inner) = &f[1].ty.ty else { panic!() };
        assert_eq!(inner.name, "heapless::String<4>");
        assert_eq!(f[2].ty.name, "heapless::Vec<T, 9>");
        let D::Seq(inner) = &f[2].ty.ty else { panic!() };
        assert_eq!(inner.name, "heapless::Vec<T, 2>");
        assert_eq!(f[3].ty.name, "String");
        assert_eq!(f[4].ty.name, "Vec<T>");
        assert_eq!(f[5].ty.name, "heapless::Vec<T, 2>");
        let D::Seq(ev) = &f[5].ty.ty else { panic!() };
        let D::Enum(vars) = &ev.ty else { panic!() };
        let names: Vec<String> = vars.iter().map(|v| format!("{:?}", v.ty)).collect();
        assert!(names[1].contains("heapless::String<5>"), "{names:?}");
        assert!(names[2].contains("heapless::Vec<T, 3>"), "{names:?}");
        assert!(names[3].contains("heapless::String<7>"), "{names:?}");
        assert_eq!(f[6].ty.name, "Tags<3>");
        let D::Option(z) = &f[7].ty.ty else { panic!() };
        assert!(format!("{z:?}").contains("heapless::String<16>"));
        // The bytes decode like any schema.
        let b = schema_bytes::<probe_types::All>().unwrap();
        assert_eq!(decode_schema(&b).unwrap(), t);
    }

    #[test]
    fn a_type_that_refuses_the_defaults_keeps_postcard_schemas_names() {
        let t = named_type_of::<probe_types::WithPicky>();
        assert_eq!(t, OwnedNamedType::from(probe_types::WithPicky::SCHEMA));
    }

    #[test]
    fn the_fingerprint_covers_capacities() {
        // Same name, same fields, capacities 8 and 16.
        assert_eq!(
            OwnedNamedType::from(probe_types::Narrow::SCHEMA),
            OwnedNamedType::from(probe_types::Wide::SCHEMA),
            "postcard-schema alone cannot tell them apart"
        );
        assert_ne!(
            fingerprint_of::<probe_types::Narrow>().unwrap(),
            fingerprint_of::<probe_types::Wide>().unwrap()
        );
    }

    #[test]
    fn capacity_names_round_trip() {
        assert_eq!(capacity_of("heapless::String<16>"), Some(16));
        assert_eq!(capacity_of("heapless::Vec<T, 16>"), Some(16));
        assert_eq!(
            capacity_of("heapless::Vec<heapless::Vec<T, 4>, 8>"),
            Some(8)
        );
        for none in [
            "String",
            "Vec<T>",
            "heapless::String<N>",
            "[T; N]",
            "x<>",
            "<3",
            "",
        ] {
            assert_eq!(capacity_of(none), None, "{none}");
        }
        for (name, want) in [
            ("heapless::String<N>", "heapless::String<16>"),
            ("heapless::Vec<T, N>", "heapless::Vec<T, 16>"),
            ("heapless::Vec<T, 8>", "heapless::Vec<T, 16>"),
            ("Names", "Names<16>"),
            ("Ring<T>", "Ring<T, 16>"),
        ] {
            let got = name_with_capacity(name, 16);
            assert_eq!(got, want);
            assert_eq!(capacity_of(&got), Some(16));
        }
    }

    /// `levels` nested containers of kind `tag` around a `bool`, encoded as
    /// postcard encodes an `OwnedNamedType` (every name empty).
    fn nested(tag: u8, levels: usize) -> Vec<u8> {
        let open: &[u8] = match tag {
            18 | 21 | 22 => &[0, tag],
            // A tuple of one element, a struct of one (unnamed) field, an
            // enum of one newtype variant.
            23 | 24 => &[0, tag, 1],
            26 => &[0, 26, 1, 0],
            27 => &[0, 27, 1, 0, 1],
            // A map whose key is a bool and whose value nests.
            25 => &[0, 25, 0, 0],
            _ => unreachable!(),
        };
        let mut b = open.repeat(levels);
        b.extend_from_slice(&[0, 0]);
        b
    }

    #[test]
    fn the_depth_scan_agrees_with_the_decoded_tree() {
        for bytes in [
            schema_bytes::<Imu>().unwrap(),
            schema_bytes::<probe_types::All>().unwrap(),
            schema_bytes::<probe_types::WithPicky>().unwrap(),
        ] {
            let t = decode_schema(&bytes).unwrap();
            assert_eq!(encoded_depth(&bytes, 64), Some(depth_of(&t)));
        }
        for tag in [18, 21, 22, 23, 24, 25, 26, 27] {
            let b = nested(tag, MAX_SCHEMA_DEPTH);
            let t = decode_schema(&b).unwrap_or_else(|e| panic!("tag {tag}: {e}"));
            assert_eq!(depth_of(&t), MAX_SCHEMA_DEPTH, "tag {tag}");
            assert_eq!(encoded_depth(&b, 64), Some(MAX_SCHEMA_DEPTH), "tag {tag}");
            assert!(decode_schema(&nested(tag, MAX_SCHEMA_DEPTH + 1)).is_err());
        }
    }

    #[test]
    fn deep_schemas_are_refused_on_the_callers_stack() {
        // As deep as 32 KiB allows, for every container kind: refused by
        // the scan, on this thread, without a thread of its own (a 64 MiB
        // helper stack failed under `ulimit -v` and strict overcommit and
        // turned every schema over 128 bytes into "undecodable").
        for tag in [18, 21, 22, 23, 24, 25, 26, 27] {
            let levels = (MAX_SCHEMA_LEN - 2) / nested(tag, 1).len().saturating_sub(2);
            let b = nested(tag, levels);
            assert!(b.len() <= MAX_SCHEMA_LEN);
            assert_eq!(encoded_depth(&b, MAX_SCHEMA_DEPTH), None, "tag {tag}");
            assert!(decode_schema(&b).is_err());
        }
        // Truncated, and lengths that claim more than there is.
        let good = schema_bytes::<probe_types::All>().unwrap();
        for n in 0..good.len() {
            assert!(decode_schema(&good[..n]).is_err(), "prefix {n}");
        }
        let huge = [
            0u8, 23, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(encoded_depth(&huge, 64), None);
        assert_eq!(encoded_depth(&[0, 23, 0x80, 0x80], 64), None);
        assert_eq!(
            encoded_depth(
                &[
                    0x85, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80
                ],
                64
            ),
            None
        );
    }

    #[test]
    fn hostile_schema_bytes_are_refused_without_crashing() {
        // A long run of "Seq of Seq of ..." style bytes.
        for byte in [0u8, 1, 0x0f, 0x10, 0x11, 0x14, 0x16, 0xff] {
            let junk = vec![byte; 30_000];
            assert!(decode_schema(&junk).is_err());
        }
        assert!(decode_schema(&[]).is_err());
        assert!(decode_schema(&vec![0; MAX_SCHEMA_LEN + 1]).is_err());
    }
}
