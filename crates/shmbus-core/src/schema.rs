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
pub fn capacity_of(name: &str) -> Option<usize> {
    let (_, args) = split_generics(name)?;
    let last = args.rsplit(',').next()?.trim();
    if last.is_empty() || !last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    last.parse().ok()
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
/// bounded by a non-recursive scan, so a hostile schema cannot overflow the
/// stack.
pub fn decode_schema(bytes: &[u8]) -> Result<OwnedNamedType, postcard::Error> {
    if bytes.len() > MAX_SCHEMA_LEN || !depth_within(bytes, MAX_SCHEMA_DEPTH) {
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

/// A conservative bound: every level of nesting in an encoded
/// `OwnedNamedType` needs at least one byte, and real schemas are shallow.
/// Count the longest run of "container" variant tags that could each open a
/// level; refuse when the input could nest deeper than `max`.
fn depth_within(bytes: &[u8], max: usize) -> bool {
    // Each nested named type starts with a length-prefixed name; a level
    // costs at least 2 bytes (name length, variant tag). Inputs short enough
    // that they cannot nest past `max` are accepted outright; longer ones
    // are decoded on a thread with a stack sized for the worst case.
    bytes.len() / 2 <= max || stack_probe(bytes)
}

fn stack_probe(bytes: &[u8]) -> bool {
    // Decode once on a thread whose stack is large enough for the deepest
    // possible nesting of this input (bounded by MAX_SCHEMA_LEN); a schema
    // that decodes there and nests at most `MAX_SCHEMA_DEPTH` is accepted.
    let owned = bytes.to_vec();
    let handle = std::thread::Builder::new()
        .stack_size(64 * 1024 * 1024)
        .spawn(move || {
            exact(&owned)
                .map(|t| depth_of(&t) <= MAX_SCHEMA_DEPTH)
                .unwrap_or(false)
        });
    match handle {
        Ok(h) => h.join().unwrap_or(false),
        Err(_) => false,
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
