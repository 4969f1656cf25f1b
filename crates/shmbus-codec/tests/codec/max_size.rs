//! `Codec::max_size` equals postcard's `MaxSize` of the Rust type, so a
//! topic created from a declaration gets the frame capacity a Rust
//! publisher of that type would give it.

use postcard::experimental::max_size::MaxSize;
use postcard_schema::Schema;
use serde::{Deserialize, Serialize};
use shmbus_codec::Codec;

#[derive(Serialize, Deserialize, Schema, MaxSize)]
enum Kind {
    Off,
    Level(u16),
    Point {
        x: f32,
        y: f32,
        tag: heapless::String<5>,
    },
}

#[derive(Serialize, Deserialize, Schema, MaxSize)]
struct Wide {
    b: bool,
    small: (u8, i8),
    ints: (u16, i16, u32, i32, u64, i64),
    wide: (u128, i128),
    floats: (f32, f64),
    c: char,
    name: heapless::String<16>,
    long: heapless::String<200>,
    samples: heapless::Vec<u16, 200>,
    acc: [f32; 3],
    maybe: Option<u32>,
    unit: (),
    kind: Kind,
    kinds: heapless::Vec<Kind, 4>,
}

/// `Wide` declared as text, capacities written out (what a `[[bridge.in]]`
/// or a C program declares).
const WIDE: &str = "struct Wide {
    b: bool,
    small: (u8, i8),
    ints: (u16, i16, u32, i32, u64, i64),
    wide: (u128, i128),
    floats: (f32, f64),
    c: char,
    name: heapless::String<16>,
    long: heapless::String<200>,
    samples: heapless::Vec<u16, 200>,
    acc: [f32; 3],
    maybe: Option<u32>,
    unit: (),
    kind: enum Kind { Off, Level(u16), Point { x: f32, y: f32, tag: heapless::String<5> } },
    kinds: heapless::Vec<enum Kind { Off, Level(u16), Point { x: f32, y: f32, tag: heapless::String<5> } }, 4>,
}";

#[test]
fn max_size_of_a_declaration_matches_postcard_for_the_rust_type() {
    assert_eq!(
        Codec::parse(WIDE).unwrap().max_size(),
        Some(Wide::POSTCARD_MAX_SIZE)
    );
    let kind = "enum Kind { Off, Level(u16), Point { x: f32, y: f32, tag: heapless::String<5> } }";
    assert_eq!(
        Codec::parse(kind).unwrap().max_size(),
        Some(Kind::POSTCARD_MAX_SIZE)
    );
    assert_eq!(Codec::parse("u8").unwrap().max_size(), Some(1));
    assert_eq!(
        Codec::parse("heapless::String<0>").unwrap().max_size(),
        Some(1)
    );
}

#[test]
fn unbounded_strings_and_lists_have_no_max_size() {
    for text in [
        "struct S { s: String }",
        "struct S { v: Vec<u8> }",
        "struct S { s: heapless::String<N> }",
        "BTreeMap<u8, u8>",
    ] {
        assert_eq!(Codec::parse(text).unwrap().max_size(), None, "{text}");
    }
}

/// Capacities whose frame would not fit in memory saturate: the size says
/// "too large", never "no capacity", on a 32-bit board as on a 64-bit one.
#[test]
fn capacities_beyond_memory_saturate_to_usize_max() {
    let huge = format!(
        "heapless::Vec<heapless::Vec<u64, {}>, {}>",
        usize::MAX / 4,
        usize::MAX / 4
    );
    assert_eq!(Codec::parse(&huge).unwrap().max_size(), Some(usize::MAX));
    for text in [
        "heapless::String<18446744073709551615>",
        "struct S { v: heapless::Vec<u8, 99999999999999999999999> }",
    ] {
        assert_eq!(
            Codec::parse(text).unwrap().max_size(),
            Some(usize::MAX),
            "{text}"
        );
    }
    // Within u64 but beyond a 32-bit usize: exact on 64-bit, saturated on 32.
    let big = Codec::parse("struct S { v: heapless::Vec<u8, 4000000000000> }").unwrap();
    let want = usize::try_from(4_000_000_000_006u64).unwrap_or(usize::MAX);
    assert_eq!(big.max_size(), Some(want));
}
