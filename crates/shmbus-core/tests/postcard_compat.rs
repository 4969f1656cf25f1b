//! Differential tests: `shmbus_core::decode::from_bytes` against
//! `postcard::from_bytes` (postcard 1.1).
//!
//! The contract under test: for every type and every input, our decoder gives
//! exactly what postcard gives: `Ok` with an equal value, or `Err` with the
//! same `postcard::Error` variant. Trailing bytes after a complete value are
//! ignored, as postcard ignores them.
//!
//! Each type in the serde data model gets three generated tests (random round
//! trips; every prefix, random mutations and trailing garbage of valid
//! encodings; biased random byte strings), and hand-written vectors pin the
//! edge cases of postcard's wire format. A tiny seeded PRNG keeps every run
//! identical; set `POSTCARD_COMPAT_SEED` to explore other inputs.
//!
//! Floats are wrapped in `F32`/`F64`, `#[serde(transparent)]` wrappers that
//! make the same serde calls as bare floats but compare by bits (so NaN equals
//! itself and `0.0` differs from `-0.0`).
#![cfg(not(loom))]

use std::any::type_name;
use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Debug};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::Duration;

use postcard::Error as E;
use serde::de::{DeserializeOwned, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shmbus_core::decode;

/// Random values per type for the round-trip test.
const ROUND_TRIPS: usize = 2_000;
/// Random values per type whose encodings get truncated, mutated and extended.
const MUTATED_VALUES: usize = 1_000;
/// Random single-byte mutations per value.
const MUTATIONS: usize = 4;
/// Random trailing-garbage extensions per value.
const TRAILERS: usize = 2;
/// Random byte strings per type.
const RANDOM_INPUTS: usize = 4_000;
/// Longest random byte string.
const MAX_RANDOM_LEN: usize = 40;

// ---------------------------------------------------------------------------
// PRNG

/// splitmix64: tiny, deterministic, good enough to drive a fuzzer.
struct Rng(u64);

impl Rng {
    /// A generator seeded from the test's name (FNV-1a) and, if set, the
    /// `POSTCARD_COMPAT_SEED` environment variable.
    fn for_test(name: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let extra = std::env::var("POSTCARD_COMPAT_SEED")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        Rng(h ^ extra)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next_u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// A byte, often one that sits on a boundary of postcard's format.
    fn interesting_byte(&mut self) -> u8 {
        const B: [u8; 18] = [
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x0f, 0x10, 0x1f, 0x7f, 0x80, 0x81, 0xc0, 0xc3,
            0xed, 0xf0, 0xfe, 0xff,
        ];
        if self.chance(1, 2) {
            self.pick(&B)
        } else {
            self.byte()
        }
    }

    /// A varint terminator: high bit clear, often at the limit of a width's
    /// last byte (u16: 0x03, u32: 0x0f, u64: 0x01, u128: 0x03).
    fn varint_last_byte(&mut self) -> u8 {
        const B: [u8; 9] = [0x00, 0x01, 0x02, 0x03, 0x04, 0x0f, 0x10, 0x1f, 0x7f];
        if self.chance(3, 4) {
            self.pick(&B)
        } else {
            self.byte() & 0x7f
        }
    }

    /// A continuation byte (high bit set).
    fn varint_continuation(&mut self) -> u8 {
        match self.below(3) {
            0 => 0x80,
            1 => 0xff,
            _ => 0x80 | self.byte(),
        }
    }

    /// Length `0..=max_len`, biased toward what trips a postcard decoder:
    /// boundary bytes, long and overlong varints, varints of exactly the
    /// maximum length of each width, and short length-prefixed text.
    fn biased_bytes(&mut self, max_len: usize) -> Vec<u8> {
        let target = self.index(max_len + 1);
        let mut out = Vec::with_capacity(target + 24);
        while out.len() < target {
            match self.below(7) {
                0 | 1 => out.push(self.interesting_byte()),
                2 => {
                    // A run of continuation bytes, long enough to overflow
                    // any width, then a terminator.
                    for _ in 0..1 + self.below(20) {
                        out.push(self.varint_continuation());
                    }
                    out.push(self.varint_last_byte());
                }
                3 => {
                    // A varint of exactly the maximum length for u16, u32,
                    // u64 (usize) or u128.
                    let width = self.pick(&[3usize, 5, 10, 19]);
                    for _ in 0..width - 1 {
                        out.push(self.varint_continuation());
                    }
                    out.push(self.varint_last_byte());
                }
                4 => {
                    // An overlong encoding of a small number.
                    out.push(0x80 | self.below(4) as u8);
                    let zeros = self.index(3);
                    out.extend(std::iter::repeat_n(0x80, zeros));
                    out.push(0x00);
                }
                5 => {
                    // A length prefix (sometimes off by one) and text,
                    // sometimes with invalid UTF-8.
                    let s: String = (0..self.below(4)).map(|_| char::arb(self)).collect();
                    let mut b = s.into_bytes();
                    if self.chance(1, 4) && !b.is_empty() {
                        let i = self.index(b.len());
                        b[i] = self.pick(&[0x80, 0xc0, 0xed, 0xf5, 0xff]);
                    }
                    let len = match self.below(4) {
                        0 => b.len().saturating_sub(1),
                        1 => b.len() + 1,
                        _ => b.len(),
                    };
                    out.push(len as u8);
                    out.extend_from_slice(&b);
                }
                _ => out.push(self.byte()),
            }
        }
        out.truncate(target);
        out
    }
}

// ---------------------------------------------------------------------------
// Agreement helpers

fn hex(bytes: &[u8]) -> String {
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("[{}] ({} bytes)", parts.join(" "), bytes.len())
}

/// Decodes `bytes` as `T` with both decoders, asserts they agree (equal `Ok`
/// values or equal `Err` variants) and returns postcard's result. A panic in
/// our decoder is reported with the type and input before it propagates.
#[track_caller]
fn agree<'de, T: Deserialize<'de> + PartialEq + Debug>(bytes: &'de [u8]) -> postcard::Result<T> {
    let ours = match catch_unwind(AssertUnwindSafe(|| decode::from_bytes::<T>(bytes))) {
        Ok(r) => r,
        Err(panic) => {
            eprintln!(
                "decode::from_bytes::<{}> panicked on {}",
                type_name::<T>(),
                hex(bytes)
            );
            resume_unwind(panic)
        }
    };
    let theirs = postcard::from_bytes::<T>(bytes);
    assert!(
        ours == theirs,
        "decode::from_bytes::<{}> disagrees with postcard on {}\n  ours:     {:?}\n  postcard: {:?}",
        type_name::<T>(),
        hex(bytes),
        ours,
        theirs,
    );
    theirs
}

/// Asserts that both decoders agree on `bytes` and that the result is `want`
/// (which documents what postcard itself does with these bytes).
#[track_caller]
fn expect<'de, T: Deserialize<'de> + PartialEq + Debug>(
    bytes: &'de [u8],
    want: postcard::Result<T>,
) {
    let got = agree::<T>(bytes);
    assert!(
        got == want,
        "postcard decodes {} from {} as {:?}, this test expected {:?}",
        type_name::<T>(),
        hex(bytes),
        got,
        want,
    );
}

fn encode<V: Serialize + Debug>(v: &V) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap_or_else(|e| panic!("postcard cannot encode {v:?}: {e:?}"))
}

/// Asserts that `bytes` decodes (with both decoders, in agreement) as `D` to a
/// value equal to `v`.
#[track_caller]
fn expect_decodes_to<'de, D, V>(bytes: &'de [u8], v: &V)
where
    D: Deserialize<'de> + PartialEq<V> + PartialEq + Debug,
    V: Debug,
{
    match agree::<D>(bytes) {
        Ok(d) if d == *v => {}
        other => panic!(
            "{} encoded as {} decodes to {:?}, expected Ok({:?})",
            type_name::<V>(),
            hex(bytes),
            other,
            v,
        ),
    }
}

/// Encodes `v` with postcard, asserts that both decoders give it back, and
/// returns the encoding.
#[track_caller]
fn roundtrip<T: Serialize + DeserializeOwned + PartialEq + Debug>(v: &T) -> Vec<u8> {
    let bytes = encode(v);
    expect_decodes_to::<T, T>(&bytes, v);
    bytes
}

// ---------------------------------------------------------------------------
// Random values

/// Random values of a type, biased toward the edges of its encoding.
trait Arb: Sized {
    fn arb(rng: &mut Rng) -> Self;
}

/// Mostly short, sometimes around the 127/128 boundary of a one-byte varint.
fn arb_len(rng: &mut Rng) -> usize {
    if rng.chance(1, 16) {
        120 + rng.index(16)
    } else {
        rng.index(8)
    }
}

macro_rules! arb_int {
    ($($t:ty),*) => {$(
        impl Arb for $t {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            fn arb(rng: &mut Rng) -> Self {
                match rng.below(8) {
                    0 => rng.pick(&[<$t>::MIN, <$t>::MAX, <$t>::MIN.wrapping_add(1), <$t>::MAX - 1]),
                    1 => rng.below(300) as $t,
                    2 => {
                        // Around a varint byte boundary (2^7k), either sign.
                        let k = 1 + rng.below(19) as u32;
                        let base = 1u128.checked_shl(7 * k).unwrap_or(0);
                        let x = base.wrapping_add(u128::from(rng.below(3))).wrapping_sub(1);
                        (if rng.chance(1, 2) { x.wrapping_neg() } else { x }) as $t
                    }
                    3 => (rng.next_u128() >> rng.below(128)) as $t,
                    _ => rng.next_u128() as $t,
                }
            }
        }
    )*};
}
arb_int!(
    u8, i8, u16, i16, u32, i32, u64, i64, u128, i128, usize, isize
);

impl Arb for bool {
    fn arb(rng: &mut Rng) -> Self {
        rng.chance(1, 2)
    }
}

impl Arb for () {
    fn arb(_: &mut Rng) -> Self {}
}

impl Arb for char {
    fn arb(rng: &mut Rng) -> Self {
        const EDGES: [char; 11] = [
            '\0',
            '\u{7f}',
            '\u{80}',
            '\u{7ff}',
            '\u{800}',
            '\u{d7ff}',
            '\u{e000}',
            '\u{ffff}',
            '\u{10000}',
            '\u{10ffff}',
            '\u{1f600}',
        ];
        let range = match rng.below(6) {
            0 => return rng.pick(&EDGES),
            1 | 2 => 0x20..0x7f,
            3 => 0x80..0x800,
            4 => 0x800..0x1_0000,
            _ => 0x1_0000..0x11_0000,
        };
        loop {
            let c = range.start + rng.below(range.end - range.start);
            if let Some(c) = char::from_u32(c as u32) {
                return c;
            }
        }
    }
}

impl Arb for String {
    fn arb(rng: &mut Rng) -> Self {
        let n = arb_len(rng);
        if n > 100 {
            // Long ASCII, so the byte length straddles the varint boundary.
            (0..n)
                .map(|_| (b'a' + rng.below(26) as u8) as char)
                .collect()
        } else {
            (0..n).map(|_| char::arb(rng)).collect()
        }
    }
}

impl<T: Arb> Arb for Vec<T> {
    fn arb(rng: &mut Rng) -> Self {
        (0..arb_len(rng)).map(|_| T::arb(rng)).collect()
    }
}

impl<T: Arb> Arb for Option<T> {
    fn arb(rng: &mut Rng) -> Self {
        if rng.chance(1, 3) {
            None
        } else {
            Some(T::arb(rng))
        }
    }
}

impl<T: Arb, const N: usize> Arb for [T; N] {
    fn arb(rng: &mut Rng) -> Self {
        std::array::from_fn(|_| T::arb(rng))
    }
}

macro_rules! arb_tuple {
    ($($name:ident),+) => {
        impl<$($name: Arb),+> Arb for ($($name,)+) {
            fn arb(rng: &mut Rng) -> Self {
                ($($name::arb(rng),)+)
            }
        }
    };
}
arb_tuple!(A);
arb_tuple!(A, B);
arb_tuple!(A, B, C);
arb_tuple!(A, B, C, D);

impl<K: Arb + Eq + Hash, V: Arb> Arb for HashMap<K, V> {
    fn arb(rng: &mut Rng) -> Self {
        (0..rng.below(6))
            .map(|_| (K::arb(rng), V::arb(rng)))
            .collect()
    }
}

impl<K: Arb + Ord, V: Arb> Arb for BTreeMap<K, V> {
    fn arb(rng: &mut Rng) -> Self {
        (0..rng.below(6))
            .map(|_| (K::arb(rng), V::arb(rng)))
            .collect()
    }
}

impl<const N: usize> Arb for heapless::Vec<u8, N> {
    fn arb(rng: &mut Rng) -> Self {
        let n = rng.index(N + 1);
        (0..n).map(|_| u8::arb(rng)).collect()
    }
}

impl<const N: usize> Arb for heapless::String<N> {
    fn arb(rng: &mut Rng) -> Self {
        let mut s = heapless::String::new();
        for _ in 0..rng.index(N + 1) {
            // A char that no longer fits is skipped.
            let _ = s.push(char::arb(rng));
        }
        s
    }
}

impl Arb for Duration {
    fn arb(rng: &mut Rng) -> Self {
        Duration::new(u64::arb(rng), rng.below(1_000_000_000) as u32)
    }
}

impl Arb for IpAddr {
    fn arb(rng: &mut Rng) -> Self {
        if rng.chance(1, 2) {
            IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(rng.next_u128()))
        }
    }
}

impl Arb for NonZeroU32 {
    fn arb(rng: &mut Rng) -> Self {
        NonZeroU32::new(u32::arb(rng)).unwrap_or(NonZeroU32::MIN)
    }
}

// ---------------------------------------------------------------------------
// Types under test

/// `f32` that compares by bits.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
#[serde(transparent)]
struct F32(f32);

impl PartialEq for F32 {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Arb for F32 {
    fn arb(rng: &mut Rng) -> Self {
        const SPECIAL: [f32; 10] = [
            0.0,
            -0.0,
            1.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::MIN,
            f32::EPSILON,
        ];
        F32(match rng.below(4) {
            0 => rng.pick(&SPECIAL),
            1 => f32::from_bits(rng.next_u64() as u32),
            _ => (rng.next_u64() as i32 as f32) / 1000.0,
        })
    }
}

/// `f64` that compares by bits.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
#[serde(transparent)]
struct F64(f64);

impl PartialEq for F64 {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Arb for F64 {
    fn arb(rng: &mut Rng) -> Self {
        const SPECIAL: [f64; 9] = [
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            5e-324,
        ];
        F64(match rng.below(4) {
            0 => rng.pick(&SPECIAL),
            1 => f64::from_bits(rng.next_u64()),
            _ => (rng.next_u64() as i64 as f64) / 1e6,
        })
    }
}

/// Bytes borrowed from the input through `deserialize_bytes`; the visitor
/// accepts only `visit_borrowed_bytes`, so a decoder that copies fails here.
#[derive(Debug, PartialEq, Clone, Copy)]
struct BorrowedBytes<'a>(&'a [u8]);

impl<'de: 'a, 'a> Deserialize<'de> for BorrowedBytes<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = &'de [u8];
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("borrowed bytes")
            }
            fn visit_borrowed_bytes<Er>(self, v: &'de [u8]) -> Result<&'de [u8], Er> {
                Ok(v)
            }
        }
        d.deserialize_bytes(V).map(BorrowedBytes)
    }
}

impl PartialEq<OwnedBytes> for BorrowedBytes<'_> {
    fn eq(&self, other: &OwnedBytes) -> bool {
        self.0 == other.0.as_slice()
    }
}

/// Owned bytes: serialized with `serialize_bytes`, deserialized through
/// `deserialize_byte_buf` by a visitor that accepts any bytes callback.
#[derive(Debug, PartialEq, Clone)]
struct OwnedBytes(Vec<u8>);

impl Serialize for OwnedBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for OwnedBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<Er>(self, v: &[u8]) -> Result<Vec<u8>, Er> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<Er>(self, v: Vec<u8>) -> Result<Vec<u8>, Er> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(V).map(OwnedBytes)
    }
}

impl Arb for OwnedBytes {
    fn arb(rng: &mut Rng) -> Self {
        OwnedBytes(Vec::arb(rng))
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct UnitStruct;

impl Arb for UnitStruct {
    fn arb(_: &mut Rng) -> Self {
        UnitStruct
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Newtype(u32);

impl Arb for Newtype {
    fn arb(rng: &mut Rng) -> Self {
        Newtype(u32::arb(rng))
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct TupleStruct(i16, bool, F32, char);

impl Arb for TupleStruct {
    fn arb(rng: &mut Rng) -> Self {
        TupleStruct(i16::arb(rng), bool::arb(rng), F32::arb(rng), char::arb(rng))
    }
}

/// Every kind of enum variant.
#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum Shape {
    Empty,
    Circle(F64),
    Point(i32, i32),
    Rect { w: u16, h: u16, label: String },
    Wrapped(Newtype),
    Maybe(Option<u8>),
}

/// Number of variants of `Shape`.
const SHAPE_VARIANTS: u32 = 6;

impl Arb for Shape {
    fn arb(rng: &mut Rng) -> Self {
        match rng.below(u64::from(SHAPE_VARIANTS)) {
            0 => Shape::Empty,
            1 => Shape::Circle(F64::arb(rng)),
            2 => Shape::Point(i32::arb(rng), i32::arb(rng)),
            3 => Shape::Rect {
                w: u16::arb(rng),
                h: u16::arb(rng),
                label: String::arb(rng),
            },
            4 => Shape::Wrapped(Newtype::arb(rng)),
            _ => Shape::Maybe(Option::arb(rng)),
        }
    }
}

/// A C-like enum.
#[derive(Serialize, Deserialize, Debug, PartialEq, Clone, Copy)]
enum Mode {
    Idle,
    Run,
    Fault,
}

impl Arb for Mode {
    fn arb(rng: &mut Rng) -> Self {
        rng.pick(&[Mode::Idle, Mode::Run, Mode::Fault])
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Inner {
    a: i8,
    b: (u16, char),
    c: [u16; 5],
    mode: Mode,
}

impl Arb for Inner {
    fn arb(rng: &mut Rng) -> Self {
        Inner {
            a: i8::arb(rng),
            b: Arb::arb(rng),
            c: Arb::arb(rng),
            mode: Mode::arb(rng),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Outer {
    id: u64,
    name: String,
    shape: Shape,
    tags: Vec<String>,
    inner: Inner,
    maybe: Option<Option<u8>>,
    table: BTreeMap<u8, i32>,
    unit: (),
    marker: UnitStruct,
}

impl Arb for Outer {
    fn arb(rng: &mut Rng) -> Self {
        Outer {
            id: u64::arb(rng),
            name: String::arb(rng),
            shape: Shape::arb(rng),
            tags: (0..rng.below(3)).map(|_| String::arb(rng)).collect(),
            inner: Inner::arb(rng),
            maybe: Arb::arb(rng),
            table: Arb::arb(rng),
            unit: (),
            marker: UnitStruct,
        }
    }
}

/// Field attributes that change what serde asks of the deserializer.
#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct WithAttrs {
    a: u8,
    #[serde(skip)]
    cache: u32,
    #[serde(default)]
    b: Option<u16>,
    #[serde(rename = "z")]
    c: i8,
}

impl Arb for WithAttrs {
    fn arb(rng: &mut Rng) -> Self {
        WithAttrs {
            a: u8::arb(rng),
            cache: 0,
            b: Arb::arb(rng),
            c: i8::arb(rng),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Frame64 {
    a: [u8; 32],
    b: [u8; 32],
}

impl Arb for Frame64 {
    fn arb(rng: &mut Rng) -> Self {
        Frame64 {
            a: Arb::arb(rng),
            b: Arb::arb(rng),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Imu {
    t: u64,
    acc: [F32; 3],
    gyro: [F32; 3],
    temp: i16,
    ok: bool,
}

impl Arb for Imu {
    fn arb(rng: &mut Rng) -> Self {
        Imu {
            t: u64::arb(rng),
            acc: Arb::arb(rng),
            gyro: Arb::arb(rng),
            temp: i16::arb(rng),
            ok: bool::arb(rng),
        }
    }
}

// ---------------------------------------------------------------------------
// The three generated checks, per type

/// `suite!(module: DecodeType)` or `suite!(module: DecodeType, from Owned)`
/// generates the three differential checks for one type. `Owned` is what
/// random values are made of and encoded from (it differs from the decoded
/// type only for borrowed types such as `&str`).
macro_rules! suite {
    ($module:ident: $de:ty) => {
        suite!($module: $de, from $de);
    };
    ($module:ident: $de:ty, from $owned:ty) => {
        mod $module {
            use super::*;

            #[doc = concat!(
                "Random `", stringify!($owned), "` values encoded by postcard decode as `",
                stringify!($de), "` to the same value through both decoders."
            )]
            #[test]
            fn random_values_round_trip_and_agree_with_postcard() {
                let mut rng = Rng::for_test(concat!(stringify!($module), "/round_trip"));
                for _ in 0..ROUND_TRIPS {
                    let v = <$owned as Arb>::arb(&mut rng);
                    let bytes = encode(&v);
                    expect_decodes_to::<$de, $owned>(&bytes, &v);
                }
            }

            #[doc = concat!(
                "Every prefix of a valid `", stringify!($owned), "` encoding, random single-byte ",
                "mutations of it, and it followed by random trailing bytes decode as `",
                stringify!($de), "` the same through both decoders (trailing bytes are ignored)."
            )]
            #[test]
            fn every_prefix_mutation_and_trailing_garbage_of_an_encoding_agrees_with_postcard() {
                let mut rng = Rng::for_test(concat!(stringify!($module), "/mutations"));
                for _ in 0..MUTATED_VALUES {
                    let v = <$owned as Arb>::arb(&mut rng);
                    let bytes = encode(&v);
                    for end in 0..bytes.len() {
                        let _ = agree::<$de>(&bytes[..end]);
                    }
                    if !bytes.is_empty() {
                        for _ in 0..MUTATIONS {
                            let mut m = bytes.clone();
                            let i = rng.index(m.len());
                            m[i] = if rng.chance(1, 2) {
                                m[i] ^ (1 << rng.below(8))
                            } else {
                                rng.interesting_byte()
                            };
                            let _ = agree::<$de>(&m);
                        }
                    }
                    for _ in 0..TRAILERS {
                        let mut t = bytes.clone();
                        for _ in 0..1 + rng.below(8) {
                            t.push(rng.interesting_byte());
                        }
                        expect_decodes_to::<$de, $owned>(&t, &v);
                    }
                }
            }

            #[doc = concat!(
                "Random byte strings of up to ", stringify!(MAX_RANDOM_LEN), " bytes, biased ",
                "toward boundary bytes and long or overflowing varints, decode as `",
                stringify!($de), "` the same through both decoders."
            )]
            #[test]
            fn random_biased_byte_strings_agree_with_postcard() {
                let mut rng = Rng::for_test(concat!(stringify!($module), "/random"));
                for _ in 0..RANDOM_INPUTS {
                    let bytes = rng.biased_bytes(MAX_RANDOM_LEN);
                    let _ = agree::<$de>(&bytes);
                }
            }
        }
    };
}

suite!(bool_values: bool);
suite!(u8_values: u8);
suite!(i8_values: i8);
suite!(u16_values: u16);
suite!(i16_values: i16);
suite!(u32_values: u32);
suite!(i32_values: i32);
suite!(u64_values: u64);
suite!(i64_values: i64);
suite!(u128_values: u128);
suite!(i128_values: i128);
suite!(usize_values: usize);
suite!(isize_values: isize);
suite!(f32_values: F32);
suite!(f64_values: F64);
suite!(char_values: char);
suite!(string_values: String);
suite!(borrowed_str_values: &str, from String);
suite!(borrowed_bytes_values: BorrowedBytes<'_>, from OwnedBytes);
suite!(byte_buf_values: OwnedBytes);
suite!(unit_values: ());
suite!(unit_struct_values: UnitStruct);
suite!(newtype_struct_values: Newtype);
suite!(tuple_struct_values: TupleStruct);
suite!(tuple_values: (u8, i64, bool, Option<char>));
suite!(u8_array_values: [u8; 32]);
suite!(u16_array_values: [u16; 5]);
suite!(f32_array_values: [F32; 3]);
suite!(option_values: Option<u32>);
suite!(nested_option_values: Option<Option<u8>>);
suite!(vec_u8_values: Vec<u8>);
suite!(vec_i64_values: Vec<i64>);
suite!(vec_string_values: Vec<String>);
suite!(vec_tuple_values: Vec<(u16, Option<bool>)>);
suite!(hash_map_values: HashMap<String, u32>);
suite!(btree_map_values: BTreeMap<u8, Vec<i16>>);
suite!(enum_values: Shape);
suite!(unit_enum_values: Mode);
suite!(nested_struct_values: Outer);
suite!(field_attribute_values: WithAttrs);
suite!(heapless_vec_values: heapless::Vec<u8, 16>);
suite!(heapless_string_values: heapless::String<8>);
suite!(frame64_values: Frame64);
suite!(imu_values: Imu);
suite!(duration_values: Duration);
suite!(ip_addr_values: IpAddr);
suite!(non_zero_values: NonZeroU32);

// ---------------------------------------------------------------------------
// Visitor-level parity

/// A visitor that accepts everything and records which callback the
/// deserializer made, and with what, so two deserializers can be compared
/// below the level of a `Deserialize` impl (e.g. `visit_str` versus
/// `visit_borrowed_str`, or the `size_hint` a sequence reports).
struct Log;

impl<'de> Visitor<'de> for Log {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("anything")
    }
    fn visit_bool<Er>(self, v: bool) -> Result<String, Er> {
        Ok(format!("bool {v}"))
    }
    fn visit_i8<Er>(self, v: i8) -> Result<String, Er> {
        Ok(format!("i8 {v}"))
    }
    fn visit_i16<Er>(self, v: i16) -> Result<String, Er> {
        Ok(format!("i16 {v}"))
    }
    fn visit_i32<Er>(self, v: i32) -> Result<String, Er> {
        Ok(format!("i32 {v}"))
    }
    fn visit_i64<Er>(self, v: i64) -> Result<String, Er> {
        Ok(format!("i64 {v}"))
    }
    fn visit_i128<Er>(self, v: i128) -> Result<String, Er> {
        Ok(format!("i128 {v}"))
    }
    fn visit_u8<Er>(self, v: u8) -> Result<String, Er> {
        Ok(format!("u8 {v}"))
    }
    fn visit_u16<Er>(self, v: u16) -> Result<String, Er> {
        Ok(format!("u16 {v}"))
    }
    fn visit_u32<Er>(self, v: u32) -> Result<String, Er> {
        Ok(format!("u32 {v}"))
    }
    fn visit_u64<Er>(self, v: u64) -> Result<String, Er> {
        Ok(format!("u64 {v}"))
    }
    fn visit_u128<Er>(self, v: u128) -> Result<String, Er> {
        Ok(format!("u128 {v}"))
    }
    fn visit_f32<Er>(self, v: f32) -> Result<String, Er> {
        Ok(format!("f32 {:#010x}", v.to_bits()))
    }
    fn visit_f64<Er>(self, v: f64) -> Result<String, Er> {
        Ok(format!("f64 {:#018x}", v.to_bits()))
    }
    fn visit_char<Er>(self, v: char) -> Result<String, Er> {
        Ok(format!("char {v:?}"))
    }
    fn visit_str<Er>(self, v: &str) -> Result<String, Er> {
        Ok(format!("str {v:?}"))
    }
    fn visit_borrowed_str<Er>(self, v: &'de str) -> Result<String, Er> {
        Ok(format!("borrowed_str {v:?}"))
    }
    fn visit_string<Er>(self, v: String) -> Result<String, Er> {
        Ok(format!("string {v:?}"))
    }
    fn visit_bytes<Er>(self, v: &[u8]) -> Result<String, Er> {
        Ok(format!("bytes {v:?}"))
    }
    fn visit_borrowed_bytes<Er>(self, v: &'de [u8]) -> Result<String, Er> {
        Ok(format!("borrowed_bytes {v:?}"))
    }
    fn visit_byte_buf<Er>(self, v: Vec<u8>) -> Result<String, Er> {
        Ok(format!("byte_buf {v:?}"))
    }
    fn visit_none<Er>(self) -> Result<String, Er> {
        Ok("none".into())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        Ok(format!("some({})", d.deserialize_u16(Log)?))
    }
    fn visit_unit<Er>(self) -> Result<String, Er> {
        Ok("unit".into())
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        Ok(format!("newtype({})", d.deserialize_char(Log)?))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<String, A::Error> {
        let hint = seq.size_hint();
        let mut items = Vec::new();
        while let Some(x) = seq.next_element::<i16>()? {
            items.push(x);
        }
        Ok(format!("seq hint={hint:?} {items:?}"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
        let hint = map.size_hint();
        let mut items = Vec::new();
        while let Some(k) = map.next_key::<u8>()? {
            items.push((k, map.next_value::<bool>()?));
        }
        Ok(format!("map hint={hint:?} {items:?}"))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<String, A::Error> {
        let (idx, variant): (u32, _) = data.variant()?;
        let body = match idx % 4 {
            0 => variant.unit_variant().map(|()| "unit".to_string())?,
            1 => format!("{:?}", variant.newtype_variant::<u8>()?),
            2 => variant.tuple_variant(2, Log)?,
            _ => variant.struct_variant(&["x", "y", "z"], Log)?,
        };
        Ok(format!("variant {idx}: {body}"))
    }
}

/// Defines types whose `Deserialize` calls exactly one `Deserializer` method
/// with the `Log` visitor.
macro_rules! probes {
    ($($name:ident => $method:ident($($arg:expr),*);)*) => {
        $(
            #[derive(Debug, PartialEq)]
            struct $name(String);

            impl<'de> Deserialize<'de> for $name {
                fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    d.$method($($arg,)* Log).map($name)
                }
            }
        )*

        /// Checks every probe on `bytes`.
        fn all_probes_agree(bytes: &[u8]) {
            $( let _ = agree::<$name>(bytes); )*
        }
    };
}

probes! {
    ProbeAny => deserialize_any();
    ProbeBool => deserialize_bool();
    ProbeI8 => deserialize_i8();
    ProbeI16 => deserialize_i16();
    ProbeI32 => deserialize_i32();
    ProbeI64 => deserialize_i64();
    ProbeI128 => deserialize_i128();
    ProbeU8 => deserialize_u8();
    ProbeU16 => deserialize_u16();
    ProbeU32 => deserialize_u32();
    ProbeU64 => deserialize_u64();
    ProbeU128 => deserialize_u128();
    ProbeF32 => deserialize_f32();
    ProbeF64 => deserialize_f64();
    ProbeChar => deserialize_char();
    ProbeStr => deserialize_str();
    ProbeString => deserialize_string();
    ProbeBytes => deserialize_bytes();
    ProbeByteBuf => deserialize_byte_buf();
    ProbeOption => deserialize_option();
    ProbeUnit => deserialize_unit();
    ProbeUnitStruct => deserialize_unit_struct("U");
    ProbeNewtypeStruct => deserialize_newtype_struct("N");
    ProbeSeq => deserialize_seq();
    ProbeTuple => deserialize_tuple(3);
    ProbeTupleStruct => deserialize_tuple_struct("T", 2);
    ProbeMap => deserialize_map();
    ProbeStruct => deserialize_struct("S", &["a", "b", "c", "d"]);
    ProbeEnum => deserialize_enum("E", &["A", "B", "C", "D"]);
    ProbeIdentifier => deserialize_identifier();
    ProbeIgnoredAny => deserialize_ignored_any();
}

/// Records `Deserializer::is_human_readable`.
#[derive(Debug, PartialEq)]
struct HumanReadable(bool);

impl<'de> Deserialize<'de> for HumanReadable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(HumanReadable(d.is_human_readable()))
    }
}

/// For every `Deserializer` method, our decoder makes the same visitor
/// callback with the same value as postcard (`visit_borrowed_str` from
/// `deserialize_str` but `visit_str` from `deserialize_string`, the same
/// sequence and map `size_hint`s, `WontImplement` for `deserialize_any`,
/// `deserialize_identifier` and `deserialize_ignored_any`), on random biased
/// byte strings and on valid encodings.
#[test]
fn every_deserializer_method_makes_the_same_visitor_calls_as_postcard() {
    let mut rng = Rng::for_test("probes");
    for _ in 0..RANDOM_INPUTS {
        all_probes_agree(&rng.biased_bytes(MAX_RANDOM_LEN));
    }
    for _ in 0..ROUND_TRIPS {
        all_probes_agree(&encode(&<(u8, u16, Vec<i16>, String)>::arb(&mut rng)));
    }
    expect(&[], Ok(HumanReadable(false)));
}

// ---------------------------------------------------------------------------
// Hand-written vectors

/// Integers at the maximum varint length: the largest legal last byte gives
/// MAX, one more is `DeserializeBadVarint`, a continuation bit there is
/// `DeserializeBadVarint` even with more input, and running out of input
/// first is `DeserializeUnexpectedEnd`.
#[test]
fn varints_of_maximum_length_with_an_overflowing_last_byte_are_bad_varints() {
    fn ff(n: usize, last: &[u8]) -> Vec<u8> {
        let mut v = vec![0xff; n];
        v.extend_from_slice(last);
        v
    }
    expect::<u16>(&ff(2, &[0x03]), Ok(u16::MAX));
    expect::<u16>(&ff(2, &[0x04]), Err(E::DeserializeBadVarint));
    expect::<u16>(&ff(3, &[0x00]), Err(E::DeserializeBadVarint));
    expect::<u16>(&ff(2, &[]), Err(E::DeserializeUnexpectedEnd));
    expect::<u32>(&ff(4, &[0x0f]), Ok(u32::MAX));
    expect::<u32>(&ff(4, &[0x10]), Err(E::DeserializeBadVarint));
    expect::<u32>(&ff(5, &[0x00]), Err(E::DeserializeBadVarint));
    expect::<u32>(&ff(4, &[]), Err(E::DeserializeUnexpectedEnd));
    expect::<u64>(&ff(9, &[0x01]), Ok(u64::MAX));
    expect::<u64>(&ff(9, &[0x02]), Err(E::DeserializeBadVarint));
    expect::<u64>(&ff(10, &[0x00]), Err(E::DeserializeBadVarint));
    expect::<u64>(&ff(9, &[]), Err(E::DeserializeUnexpectedEnd));
    expect::<u128>(&ff(18, &[0x03]), Ok(u128::MAX));
    expect::<u128>(&ff(18, &[0x04]), Err(E::DeserializeBadVarint));
    expect::<u128>(&ff(19, &[0x00]), Err(E::DeserializeBadVarint));
    expect::<u128>(&ff(18, &[]), Err(E::DeserializeUnexpectedEnd));
    #[cfg(target_pointer_width = "64")]
    {
        expect::<usize>(&ff(9, &[0x01]), Ok(usize::MAX));
        expect::<usize>(&ff(9, &[0x02]), Err(E::DeserializeBadVarint));
        expect::<isize>(&ff(9, &[0x01]), Ok(isize::MIN));
    }
    // Signed widths share the unsigned limits (zigzag is applied after).
    expect::<i16>(&ff(2, &[0x04]), Err(E::DeserializeBadVarint));
    expect::<i32>(&ff(4, &[0x10]), Err(E::DeserializeBadVarint));
    expect::<i64>(&ff(9, &[0x02]), Err(E::DeserializeBadVarint));
    expect::<i128>(&ff(18, &[0x04]), Err(E::DeserializeBadVarint));
    // u8 and i8 are raw bytes, not varints.
    expect::<u8>(&[0xff], Ok(255));
    expect::<i8>(&[0xff], Ok(-1));
    expect::<u8>(&[], Err(E::DeserializeUnexpectedEnd));
}

/// postcard accepts non-canonical (overlong) varints as long as they fit the
/// width, so our decoder must accept them too.
#[test]
fn overlong_varints_that_fit_the_width_are_accepted_like_postcard() {
    expect::<u16>(&[0x80, 0x00], Ok(0));
    expect::<u16>(&[0x80, 0x80, 0x00], Ok(0));
    expect::<u16>(&[0x81, 0x80, 0x00], Ok(1));
    expect::<u32>(&[0xff, 0x80, 0x80, 0x80, 0x00], Ok(0x7f));
    expect::<u64>(
        &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
        Ok(0),
    );
    expect::<i32>(&[0x81, 0x00], Ok(-1));
    expect::<Vec<u8>>(&[0x82, 0x00, 7, 8], Ok(vec![7, 8]));
    expect::<String>(&[0x81, 0x80, 0x00, b'x'], Ok("x".into()));
    expect::<Mode>(&[0x82, 0x00], Ok(Mode::Fault));
    expect::<char>(&[0x81, 0x00, b'q'], Ok('q'));
}

/// Zigzag extremes of each signed width have the documented encodings and
/// decode back through both decoders.
#[test]
fn zigzag_extremes_round_trip_with_their_documented_encodings() {
    let ff = |n: usize, first: u8, last: u8| {
        let mut v = vec![first];
        v.extend(std::iter::repeat_n(0xff, n));
        v.push(last);
        v
    };
    assert_eq!(roundtrip(&i16::MIN), ff(1, 0xff, 0x03));
    assert_eq!(roundtrip(&i16::MAX), ff(1, 0xfe, 0x03));
    assert_eq!(roundtrip(&i32::MIN), ff(3, 0xff, 0x0f));
    assert_eq!(roundtrip(&i32::MAX), ff(3, 0xfe, 0x0f));
    assert_eq!(roundtrip(&i64::MIN), ff(8, 0xff, 0x01));
    assert_eq!(roundtrip(&i64::MAX), ff(8, 0xfe, 0x01));
    assert_eq!(roundtrip(&i128::MIN), ff(17, 0xff, 0x03));
    assert_eq!(roundtrip(&i128::MAX), ff(17, 0xfe, 0x03));
    assert_eq!(roundtrip(&-1i64), [0x01]);
    assert_eq!(roundtrip(&1i64), [0x02]);
    assert_eq!(roundtrip(&-64i32), [0x7f]);
    assert_eq!(roundtrip(&64i32), [0x80, 0x01]);
    assert_eq!(roundtrip(&i8::MIN), [0x80]);
}

/// A bool byte other than 0 or 1 is `DeserializeBadBool`.
#[test]
fn bool_bytes_other_than_zero_and_one_are_bad_bools() {
    expect(&[0], Ok(false));
    expect(&[1], Ok(true));
    expect::<bool>(&[2], Err(E::DeserializeBadBool));
    expect::<bool>(&[0xff], Err(E::DeserializeBadBool));
    expect::<bool>(&[], Err(E::DeserializeUnexpectedEnd));
    expect::<Imu>(&[0; 26], Err(E::DeserializeUnexpectedEnd));
    let mut imu = vec![0; 26];
    imu.push(2);
    expect::<Imu>(&imu, Err(E::DeserializeBadBool));
}

/// An option tag other than 0 or 1 is `DeserializeBadOption`, at any depth.
#[test]
fn option_tags_other_than_zero_and_one_are_bad_options() {
    expect::<Option<u8>>(&[2], Err(E::DeserializeBadOption));
    expect::<Option<u8>>(&[0x80], Err(E::DeserializeBadOption));
    expect::<Option<u8>>(&[1], Err(E::DeserializeUnexpectedEnd));
    expect::<Option<Option<u8>>>(&[0], Ok(None));
    expect::<Option<Option<u8>>>(&[1, 0], Ok(Some(None)));
    expect::<Option<Option<u8>>>(&[1, 1, 7], Ok(Some(Some(7))));
    expect::<Option<Option<u8>>>(&[1, 2, 7], Err(E::DeserializeBadOption));
    expect::<Option<Option<u8>>>(&[1, 1], Err(E::DeserializeUnexpectedEnd));
}

/// Invalid UTF-8 is `DeserializeBadUtf8` for `String`, `&str` and
/// `heapless::String`, but a length past the end of input is
/// `DeserializeUnexpectedEnd` first.
#[test]
fn invalid_utf8_in_strings_is_bad_utf8() {
    for bad in [
        &[1, 0xff][..],
        &[2, 0xc0, 0x80],
        &[3, 0xed, 0xa0, 0x80],
        &[1, 0x80],
    ] {
        expect::<String>(bad, Err(E::DeserializeBadUtf8));
        expect::<&str>(bad, Err(E::DeserializeBadUtf8));
        expect::<heapless::String<8>>(bad, Err(E::DeserializeBadUtf8));
    }
    expect::<String>(&[5, b'a'], Err(E::DeserializeUnexpectedEnd));
    expect::<String>(&[5, 0xff], Err(E::DeserializeUnexpectedEnd));
    expect::<&str>(&[0], Ok(""));
    expect::<&str>(&[2, 0xc3, 0xa9], Ok("é"));
    // Nine valid bytes do not fit heapless::String<8>: a serde custom error.
    expect::<heapless::String<8>>(b"\x09abcdefghi", Err(E::SerdeDeCustom));
    expect::<heapless::Vec<u8, 16>>(&[17; 18], Err(E::SerdeDeCustom));
}

/// A char is a length-prefixed UTF-8 string of at most 4 bytes: longer
/// lengths are `DeserializeBadChar` before the input is checked, empty or
/// invalid UTF-8 is `DeserializeBadChar`, and postcard keeps the first char
/// of a string holding several.
#[test]
fn chars_with_bad_lengths_or_several_chars_decode_like_postcard() {
    expect::<char>(&[5], Err(E::DeserializeBadChar));
    expect::<char>(
        &[5, b'a', b'b', b'c', b'd', b'e'],
        Err(E::DeserializeBadChar),
    );
    expect::<char>(&[0x85, 0x00], Err(E::DeserializeBadChar));
    expect::<char>(&[0], Err(E::DeserializeBadChar));
    expect::<char>(&[1, 0x80], Err(E::DeserializeBadChar));
    expect::<char>(&[3, 0xf0, 0x9f, 0x98], Err(E::DeserializeBadChar));
    expect::<char>(&[3, 0xed, 0xa0, 0x80], Err(E::DeserializeBadChar));
    expect::<char>(&[2, b'a', 0xff], Err(E::DeserializeBadChar));
    expect::<char>(&[4, b'a'], Err(E::DeserializeUnexpectedEnd));
    expect::<char>(&[], Err(E::DeserializeUnexpectedEnd));
    expect::<char>(&[0xff; 10], Err(E::DeserializeBadVarint));
    expect(&[2, b'a', b'b'], Ok('a'));
    expect(&[4, b'w', b'x', b'y', b'z'], Ok('w'));
    expect(&[3, 0xc3, 0xa9, b'!'], Ok('é'));
    expect(&[4, 0xf0, 0x9f, 0x98, 0x80], Ok('\u{1f600}'));
}

/// An enum discriminant past the last variant is a serde custom error; one
/// that overflows u32 is `DeserializeBadVarint`.
#[test]
fn enum_discriminants_out_of_range_are_errors() {
    expect::<Shape>(&[0], Ok(Shape::Empty));
    expect::<Shape>(&[SHAPE_VARIANTS as u8], Err(E::SerdeDeCustom));
    expect::<Shape>(&[0x7f], Err(E::SerdeDeCustom));
    expect::<Shape>(&[0xff, 0xff, 0xff, 0xff, 0x0f], Err(E::SerdeDeCustom));
    expect::<Shape>(
        &[0xff, 0xff, 0xff, 0xff, 0x10],
        Err(E::DeserializeBadVarint),
    );
    expect::<Shape>(&[0x80], Err(E::DeserializeUnexpectedEnd));
    expect::<Shape>(&[], Err(E::DeserializeUnexpectedEnd));
    expect::<Mode>(&[3], Err(E::SerdeDeCustom));
    expect::<Shape>(&[2, 0x01], Err(E::DeserializeUnexpectedEnd));
}

/// Sequence, string, byte and map lengths longer than the remaining input are
/// `DeserializeUnexpectedEnd`, immediately.
#[test]
fn lengths_longer_than_the_input_are_errors_not_allocations() {
    expect::<Vec<u8>>(&[5, 1, 2], Err(E::DeserializeUnexpectedEnd));
    expect::<Vec<u64>>(&[0xff, 0xff, 0xff, 0x7f], Err(E::DeserializeUnexpectedEnd));
    expect::<String>(&[0xe8, 0x07, b'a'], Err(E::DeserializeUnexpectedEnd));
    expect::<BorrowedBytes>(&[0xe8, 0x07, 1], Err(E::DeserializeUnexpectedEnd));
    expect::<OwnedBytes>(&[3, 1, 2], Err(E::DeserializeUnexpectedEnd));
    // 2^32 - 1 entries: a count every `usize` holds, 32-bit boards included.
    expect::<HashMap<String, u32>>(
        &[0xff, 0xff, 0xff, 0xff, 0x0f],
        Err(E::DeserializeUnexpectedEnd),
    );
}

/// A length varint of 2^63 (and of u64::MAX) is `DeserializeUnexpectedEnd`
/// for every length-prefixed type, without a huge allocation or a long loop;
/// 2^64 does not fit usize and is `DeserializeBadVarint`.
#[cfg(target_pointer_width = "64")]
#[test]
fn a_length_of_two_to_the_63_is_an_immediate_error() {
    let two_63 = [
        0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 1, 2, 3,
    ];
    let max = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 2, 3,
    ];
    let too_big = [
        0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02, 1, 2, 3,
    ];
    for len in [&two_63, &max] {
        expect::<Vec<u8>>(len, Err(E::DeserializeUnexpectedEnd));
        expect::<Vec<u64>>(len, Err(E::DeserializeUnexpectedEnd));
        expect::<Vec<String>>(len, Err(E::DeserializeUnexpectedEnd));
        expect::<String>(len, Err(E::DeserializeUnexpectedEnd));
        expect::<&str>(len, Err(E::DeserializeUnexpectedEnd));
        expect::<char>(len, Err(E::DeserializeBadChar));
        expect::<BorrowedBytes>(len, Err(E::DeserializeUnexpectedEnd));
        expect::<OwnedBytes>(len, Err(E::DeserializeUnexpectedEnd));
        expect::<BTreeMap<u8, Vec<i16>>>(len, Err(E::DeserializeUnexpectedEnd));
        expect::<HashMap<String, u32>>(len, Err(E::DeserializeUnexpectedEnd));
        expect::<heapless::Vec<u8, 16>>(len, Err(E::DeserializeUnexpectedEnd));
        expect::<heapless::String<8>>(len, Err(E::DeserializeUnexpectedEnd));
    }
    expect::<Vec<u8>>(&too_big, Err(E::DeserializeBadVarint));
    expect::<String>(&too_big, Err(E::DeserializeBadVarint));
}

/// Unit and unit structs are zero bytes; a `Vec<()>` is just its length.
#[test]
fn units_take_no_bytes() {
    expect::<()>(&[], Ok(()));
    expect::<UnitStruct>(&[], Ok(UnitStruct));
    expect::<Vec<()>>(&[3], Ok(vec![(); 3]));
    expect::<Vec<UnitStruct>>(&[2, 0xff], Ok(vec![UnitStruct, UnitStruct]));
    expect::<((), u8, ())>(&[9], Ok(((), 9, ())));
}

/// Bytes after a complete value are ignored by both decoders.
#[test]
fn trailing_bytes_after_a_complete_value_are_ignored() {
    expect::<u8>(&[7, 0xff, 0xff], Ok(7));
    expect::<Option<u8>>(&[0, 1, 2], Ok(None));
    expect::<&str>(&[1, b'a', b'b'], Ok("a"));
    let frame = Frame64 {
        a: std::array::from_fn(|i| i as u8),
        b: [0xff; 32],
    };
    let mut bytes = roundtrip(&frame);
    assert_eq!(
        bytes.len(),
        64,
        "[u8; 32] is 32 raw bytes, no length prefix"
    );
    bytes.extend_from_slice(&[0x80; 9]);
    expect(&bytes, Ok(frame));
}

/// Every prefix of a valid 64-byte frame is `DeserializeUnexpectedEnd` in
/// both decoders; the whole frame decodes.
#[test]
fn every_prefix_of_a_valid_frame_agrees_with_postcard() {
    let frame = Frame64::arb(&mut Rng::for_test("frame"));
    let bytes = roundtrip(&frame);
    for end in 0..bytes.len() {
        expect::<Frame64>(&bytes[..end], Err(E::DeserializeUnexpectedEnd));
    }
}

/// Floats are raw little-endian bits: NaN payloads and the sign of zero come
/// back exactly.
#[test]
fn floats_keep_their_exact_bits() {
    for bits in [0x7fc0_0001u32, 0xffc0_0000, 0x8000_0000, 0x7f80_0001, 1] {
        let bytes = roundtrip(&F32(f32::from_bits(bits)));
        assert_eq!(bytes, bits.to_le_bytes());
        expect::<F32>(&bytes[..3], Err(E::DeserializeUnexpectedEnd));
    }
    for bits in [0x7ff8_0000_0000_0001u64, 0x8000_0000_0000_0000, 1] {
        let bytes = roundtrip(&F64(f64::from_bits(bits)));
        assert_eq!(bytes, bits.to_le_bytes());
        expect::<F64>(&bytes[..7], Err(E::DeserializeUnexpectedEnd));
    }
}

/// `&str` and borrowed bytes point into the input (zero copy), as postcard's
/// do.
#[test]
fn borrowed_str_and_bytes_point_into_the_input() {
    let bytes = [3, b'a', b'b', b'c', 0xff];
    let s: &str = decode::from_bytes(&bytes).unwrap();
    assert_eq!(s.as_ptr(), bytes[1..].as_ptr());
    let b: BorrowedBytes = decode::from_bytes(&bytes).unwrap();
    assert_eq!(b.0.as_ptr(), bytes[1..].as_ptr());
    assert_eq!(b.0, b"abc");
}

/// Internally tagged, untagged and flattened types need a self-describing
/// format; both decoders fail on them the same way on any input.
#[test]
fn self_describing_serde_features_fail_the_same_way_as_postcard() {
    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(tag = "kind")]
    enum Tagged {
        A { x: u8 },
        B { y: u16 },
    }
    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(untagged)]
    enum Untagged {
        A(u8),
        B(String),
    }
    #[derive(Deserialize, Debug, PartialEq)]
    struct Flat {
        a: u8,
        #[serde(flatten)]
        rest: HashMap<String, u8>,
    }

    expect::<Tagged>(&[0, 1], Err(E::WontImplement));
    expect::<Untagged>(&[0, 1], Err(E::WontImplement));
    expect::<Flat>(&[1, 1, b'a', 1], Err(E::WontImplement));
    let mut rng = Rng::for_test("self_describing");
    for _ in 0..RANDOM_INPUTS {
        let bytes = rng.biased_bytes(MAX_RANDOM_LEN);
        let _ = agree::<Tagged>(&bytes);
        let _ = agree::<Untagged>(&bytes);
        let _ = agree::<Flat>(&bytes);
    }
}

/// Standard-library types with non-derived impls (`Duration` checks its
/// nanoseconds, `NonZeroU32` rejects zero) fail the same way.
#[test]
fn std_types_with_validating_impls_fail_like_postcard() {
    expect::<NonZeroU32>(&[0], Err(E::SerdeDeCustom));
    expect::<NonZeroU32>(&[1], Ok(NonZeroU32::MIN));
    // nanos = 1_000_000_000 is normalised into seconds, not rejected...
    expect::<Duration>(
        &[0, 0x80, 0x94, 0xeb, 0xdc, 0x03],
        Ok(Duration::from_secs(1)),
    );
    // ...unless the seconds then overflow.
    let mut overflow = vec![0xff; 9];
    overflow.extend_from_slice(&[0x01, 0x80, 0x94, 0xeb, 0xdc, 0x03]);
    expect::<Duration>(&overflow, Err(E::SerdeDeCustom));
    expect::<IpAddr>(&[0, 127, 0, 0, 1], Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    expect::<IpAddr>(&[2], Err(E::SerdeDeCustom));
}
