//! Differential tests: `shmbus_core::decode::from_bytes` against
//! `postcard::from_bytes`, and `shmbus_core::encode::to_slice` against
//! `postcard::to_slice` (postcard 1.1).
//!
//! The contract under test: for every type and every input, our decoder gives
//! exactly what postcard gives: `Ok` with an equal value, or `Err` with the
//! same `postcard::Error` variant. Trailing bytes after a complete value are
//! ignored, as postcard ignores them. Likewise for every value and every
//! buffer length, our encoder gives `Ok` with exactly postcard's bytes, or
//! `Err` with the same variant (the buffer's contents after an error are not
//! compared).
//!
//! Each type in the serde data model gets four generated tests (random round
//! trips; every prefix, random mutations and trailing garbage of valid
//! encodings; biased random byte strings; random values encoded into buffers
//! of every length), and hand-written vectors pin the edge cases of
//! postcard's wire format, for both directions. A tiny seeded PRNG keeps
//! every run identical; set `POSTCARD_COMPAT_SEED` to explore other inputs.
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
use shmbus_core::{Bytes, decode, encode};

/// `n` random cases, scaled down under emulation: `SHMBUS_STRESS_SCALE`
/// below 1 (the armv7 suite under qemu-arm, where this binary spent 130 s
/// of debug code on cases whose outcome does not depend on the CPU) keeps
/// that share of them, at least 50. The host runs every case.
/// (`shmbus_testkit::stress_scale`'s rule, read here because shmbus-core's
/// tests do not depend on the testkit, which depends on shmbus-core.)
fn cases(n: usize) -> usize {
    let scale = std::env::var("SHMBUS_STRESS_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| *s > 0.0 && *s < 1.0)
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(50).min(n)
}

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
/// Random values per type encoded into buffers of every length.
const ENCODED_VALUES: usize = 500;
/// Buffer for the whole encoding of a random value (the largest, a
/// `Vec<String>` of long strings, is under 19 KiB).
const ENCODE_BUF: usize = 1 << 16;

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

/// Encodes `ours_v` with `encode::to_slice` into `ours` and `theirs_v` with
/// `postcard::to_slice` into `theirs` (buffers of the same length) and
/// compares the results: they agree if both are `Ok` with equal bytes at the
/// start of the buffer, or both `Err` with the same variant. Returns
/// postcard's result (the length it wrote) if they agree, else a description
/// of the disagreement. The two values are separate so a `Serialize` with
/// state can get a fresh one per encoder; `what` describes them. A panic in
/// our encoder is reported with the type, value and buffer length before it
/// propagates.
fn compare_encoders<A, B>(
    ours_v: &A,
    theirs_v: &B,
    what: &dyn Debug,
    ours: &mut [u8],
    theirs: &mut [u8],
) -> Result<postcard::Result<usize>, String>
where
    A: Serialize + ?Sized,
    B: Serialize + ?Sized,
{
    // A closure that returns the buffer it was given must be `FnOnce`.
    fn once<R, F: FnOnce() -> R>(f: F) -> F {
        f
    }
    assert_eq!(ours.len(), theirs.len(), "compare_encoders: buffer lengths");
    let buf_len = ours.len();
    let start = ours.as_ptr();
    let ours_r = match catch_unwind(AssertUnwindSafe(once(move || {
        encode::to_slice(ours_v, ours)
    }))) {
        Ok(r) => r.map(|s| (s.as_ptr(), &*s)),
        Err(panic) => {
            eprintln!(
                "encode::to_slice::<{}> panicked on {what:?} with a buffer of {buf_len} bytes",
                type_name::<A>(),
            );
            resume_unwind(panic)
        }
    };
    let theirs_r = postcard::to_slice(theirs_v, theirs).map(|s| &*s);
    let same = match (&ours_r, &theirs_r) {
        (Ok((ptr, a)), Ok(b)) => *ptr == start && a == b,
        (Err(a), Err(b)) => a == b,
        _ => false,
    };
    if same {
        return Ok(theirs_r.map(<[u8]>::len));
    }
    let show = |r: Result<&[u8], &E>| match r {
        Ok(bytes) => format!("Ok({})", hex(bytes)),
        Err(e) => format!("Err({e:?})"),
    };
    let at_start = match &ours_r {
        Ok((ptr, _)) if *ptr != start => " (not at the start of the buffer)",
        _ => "",
    };
    Err(format!(
        "encode::to_slice::<{}> disagrees with postcard on {what:?} with a buffer of \
         {buf_len} bytes\n  ours:     {}{at_start}\n  postcard: {}",
        type_name::<A>(),
        show(ours_r.as_ref().map(|(_, s)| *s)),
        show(theirs_r.as_ref().copied()),
    ))
}

/// [`compare_encoders`], asserting that the encoders agree; returns the
/// length postcard wrote, or its error.
#[track_caller]
fn encode_agree_with<A, B>(
    ours_v: &A,
    theirs_v: &B,
    what: &dyn Debug,
    ours: &mut [u8],
    theirs: &mut [u8],
) -> postcard::Result<usize>
where
    A: Serialize + ?Sized,
    B: Serialize + ?Sized,
{
    match compare_encoders(ours_v, theirs_v, what, ours, theirs) {
        Ok(r) => r,
        Err(disagreement) => panic!("{disagreement}"),
    }
}

/// [`encode_agree_with`] for one stateless value.
#[track_caller]
fn encode_agree<T: Serialize + Debug + ?Sized>(
    v: &T,
    ours: &mut [u8],
    theirs: &mut [u8],
) -> postcard::Result<usize> {
    encode_agree_with(v, v, &v, ours, theirs)
}

/// Buffer lengths tried, from 0 up, for a value that does not encode even
/// into the whole buffer.
const FAILING_LENGTHS: usize = 24;

/// Encodes `v` with both encoders into the whole of `ours` and `theirs`,
/// then into every prefix of them from empty to the encoded length, and
/// asserts that they agree each time; returns postcard's result for the whole
/// buffers (the encoded length). The exact-length encoding runs twice, over
/// 0x00 and over 0xff, so a byte our encoder leaves unwritten cannot pass for
/// one it wrote. If the value does not encode at all, the prefixes tried are
/// those up to `FAILING_LENGTHS` bytes.
#[track_caller]
fn encode_agree_at_every_length<T: Serialize + Debug + ?Sized>(
    v: &T,
    ours: &mut [u8],
    theirs: &mut [u8],
) -> postcard::Result<usize> {
    let whole = encode_agree(v, ours, theirs);
    let last = match whole {
        Ok(len) => len,
        Err(_) => FAILING_LENGTHS.min(ours.len()),
    };
    for n in 0..=last {
        ours[..n].fill(0xff);
        let _ = encode_agree(v, &mut ours[..n], &mut theirs[..n]);
    }
    if let Ok(len) = whole {
        ours[..len].fill(0x00);
        let _ = encode_agree(v, &mut ours[..len], &mut theirs[..len]);
    }
    whole
}

/// Buffer size for the hand-written encoder checks.
const HAND_BUF: usize = 1024;

/// [`encode_agree_at_every_length`] with fresh buffers of `HAND_BUF` bytes;
/// returns postcard's encoding (or error).
#[track_caller]
fn encode_everywhere<T: Serialize + Debug + ?Sized>(v: &T) -> postcard::Result<Vec<u8>> {
    let mut ours = vec![0; HAND_BUF];
    let mut theirs = vec![0; HAND_BUF];
    encode_agree_at_every_length(v, &mut ours, &mut theirs).map(|len| theirs[..len].to_vec())
}

/// Asserts that both encoders agree on `v` at every buffer length and that
/// the result for a large buffer is `want` (which documents what postcard
/// itself does).
#[track_caller]
fn expect_encoding<T: Serialize + Debug + ?Sized>(v: &T, want: postcard::Result<&[u8]>) {
    let got = encode_everywhere(v);
    assert!(
        got.as_deref().map_err(Clone::clone) == want,
        "postcard encodes {} {v:?} as {:?}, this test expected {:?}",
        type_name::<T>(),
        got.as_deref().map(hex),
        want.map(hex),
    );
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

/// `Frame64` with its arrays as [`Bytes`]: the same wire, decoded in one
/// copy per field by our decoder.
#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Frame64Bytes {
    a: Bytes<32>,
    b: Bytes<32>,
}

impl Arb for Frame64Bytes {
    fn arb(rng: &mut Rng) -> Self {
        Frame64Bytes {
            a: Arb::arb(rng),
            b: Arb::arb(rng),
        }
    }
}

/// `Bytes` among other fields, inside an option and a sequence.
#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct WithBytes {
    id: u16,
    empty: Bytes<0>,
    one: Bytes<1>,
    tag: Bytes<3>,
    maybe: Option<Bytes<2>>,
    list: Vec<Bytes<4>>,
    end: bool,
}

impl Arb for WithBytes {
    fn arb(rng: &mut Rng) -> Self {
        WithBytes {
            id: Arb::arb(rng),
            empty: Arb::arb(rng),
            one: Arb::arb(rng),
            tag: Arb::arb(rng),
            maybe: Arb::arb(rng),
            list: (0..rng.below(5)).map(|_| Arb::arb(rng)).collect(),
            end: Arb::arb(rng),
        }
    }
}

impl<const N: usize> Arb for Bytes<N> {
    fn arb(rng: &mut Rng) -> Self {
        Bytes(Arb::arb(rng))
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
                for _ in 0..cases(ROUND_TRIPS) {
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
                for _ in 0..cases(MUTATED_VALUES) {
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
                "Random `", stringify!($owned), "` values encode with `encode::to_slice` to ",
                "postcard's bytes in a large buffer and in a buffer of every length from 0 to ",
                "the encoded length (shorter ones fail with postcard's error), and our ",
                "encoding decodes as `", stringify!($de), "` to the same value through both ",
                "decoders."
            )]
            #[test]
            fn random_values_encode_to_postcards_bytes_for_every_buffer_length() {
                let mut rng = Rng::for_test(concat!(stringify!($module), "/encode"));
                let mut ours = vec![0u8; ENCODE_BUF];
                let mut theirs = vec![0u8; ENCODE_BUF];
                for _ in 0..cases(ENCODED_VALUES) {
                    let v = <$owned as Arb>::arb(&mut rng);
                    let len = encode_agree_at_every_length(&v, &mut ours, &mut theirs)
                        .unwrap_or_else(|e| panic!("postcard cannot encode {v:?}: {e:?}"));
                    expect_decodes_to::<$de, $owned>(&ours[..len], &v);
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
                for _ in 0..cases(RANDOM_INPUTS) {
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
suite!(bytes32_values: Bytes<32>);
suite!(bytes0_values: Bytes<0>);
suite!(frame64_bytes_values: Frame64Bytes);
suite!(with_bytes_values: WithBytes);
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
    for _ in 0..cases(RANDOM_INPUTS) {
        all_probes_agree(&rng.biased_bytes(MAX_RANDOM_LEN));
    }
    for _ in 0..cases(ROUND_TRIPS) {
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
    for _ in 0..cases(RANDOM_INPUTS) {
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

// ---------------------------------------------------------------------------
// Hand-written encoder vectors

/// Serializes its items as a sequence (or a map from index to item) through
/// `serialize_seq(None)` / `serialize_map(None)`: no length up front.
#[derive(Debug)]
struct UnknownLength {
    map: bool,
    items: Vec<u8>,
}

impl Serialize for UnknownLength {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        if self.map {
            let mut m = s.serialize_map(None)?;
            for (i, b) in self.items.iter().enumerate() {
                m.serialize_entry(&i, b)?;
            }
            m.end()
        } else {
            let mut q = s.serialize_seq(None)?;
            for b in &self.items {
                q.serialize_element(b)?;
            }
            q.end()
        }
    }
}

/// Serializes the non-zero items through serde's `collect_seq` or
/// `collect_map`, whose iterator (a `Filter`) has no exact size hint.
#[derive(Debug)]
struct Filtered {
    map: bool,
    items: Vec<u8>,
}

impl Serialize for Filtered {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let nonzero = self.items.iter().filter(|b| **b != 0);
        if self.map {
            s.collect_map(nonzero.map(|b| (b, b)))
        } else {
            s.collect_seq(nonzero)
        }
    }
}

/// A sequence or map whose `Serialize` gives no length is
/// `SerializeSeqLengthUnknown` at every buffer length (even an empty buffer:
/// the length is needed before anything is written), unless bytes before it
/// already ran out of room; serde's `collect_seq` and `collect_map` over a
/// filtered iterator of some items fail the same way.
#[test]
fn sequences_and_maps_of_unknown_length_fail_with_seq_length_unknown() {
    for map in [false, true] {
        for items in [vec![], vec![1], vec![1, 0, 2, 3]] {
            let unknown = UnknownLength {
                map,
                items: items.clone(),
            };
            expect_encoding(&unknown, Err(E::SerializeSeqLengthUnknown));
            expect_encoding(&(7u8, &unknown), Err(E::SerializeSeqLengthUnknown));
            expect_encoding(&Some(&unknown), Err(E::SerializeSeqLengthUnknown));
            expect_encoding(&vec![&unknown], Err(E::SerializeSeqLengthUnknown));
            // A filter over no items knows its length: (0, Some(0)).
            let want = if items.is_empty() {
                Ok(&[0][..])
            } else {
                Err(E::SerializeSeqLengthUnknown)
            };
            expect_encoding(&Filtered { map, items }, want);
        }
    }
    let unknown = UnknownLength {
        map: false,
        items: vec![1],
    };
    let mut ours = [0; 4];
    let mut theirs = [0; 4];
    assert_eq!(
        encode_agree(&(7u8, &unknown), &mut ours[..0], &mut theirs[..0]),
        Err(E::SerializeBufferFull),
        "the u8 before the sequence does not fit an empty buffer",
    );
    assert_eq!(
        encode_agree(&unknown, &mut ours[..0], &mut theirs[..0]),
        Err(E::SerializeSeqLengthUnknown),
    );
}

/// A `Serialize` that fails with a serde custom error.
#[derive(Debug)]
struct Fails;

impl Serialize for Fails {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("x"))
    }
}

/// A custom error from a `Serialize` impl is `SerdeSerCustom`, at any depth
/// and at every buffer length long enough for the bytes before it.
#[test]
fn custom_serialize_errors_are_serde_ser_custom() {
    #[derive(Serialize, Debug)]
    struct Holder {
        a: u16,
        f: Fails,
        b: u8,
    }
    expect_encoding(&Fails, Err(E::SerdeSerCustom));
    expect_encoding(&(300u16, Fails), Err(E::SerdeSerCustom));
    expect_encoding(&Some(Fails), Err(E::SerdeSerCustom));
    expect_encoding(&vec![Fails], Err(E::SerdeSerCustom));
    expect_encoding(&[(); 0].map(|()| Fails), Ok(&[]));
    expect_encoding(
        &Holder {
            a: 300,
            f: Fails,
            b: 1,
        },
        Err(E::SerdeSerCustom),
    );
    let mut ours = [0; 4];
    let mut theirs = [0; 4];
    for n in 0..2 {
        assert_eq!(
            encode_agree(&(300u16, Fails), &mut ours[..n], &mut theirs[..n]),
            Err(E::SerializeBufferFull),
            "the u16 before the failing value does not fit {n} bytes",
        );
    }
    assert_eq!(
        encode_agree(&(300u16, Fails), &mut ours[..2], &mut theirs[..2]),
        Err(E::SerdeSerCustom),
    );
}

/// `Debug` and `Display`, so a `&dyn` of it can be serialized and printed.
trait DebugDisplay: Debug + fmt::Display {}
impl<T: Debug + fmt::Display + ?Sized> DebugDisplay for T {}

/// Serializes its `Display` through `Serializer::collect_str`.
#[derive(Debug)]
struct Collect<D: ?Sized>(D);

impl<D: fmt::Display + ?Sized> Serialize for Collect<D> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&&self.0)
    }
}

/// Displays as its pieces, written one `write_str` call each.
#[derive(Debug)]
struct Pieces(&'static [&'static str]);

impl fmt::Display for Pieces {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.iter().try_for_each(|p| f.write_str(p))
    }
}

/// Writes its pieces, then fails with `fmt::Error`.
#[derive(Debug)]
struct FailsAfter(&'static [&'static str]);

impl fmt::Display for FailsAfter {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Display::fmt(&Pieces(self.0), f)?;
        Err(fmt::Error)
    }
}

/// Displays through `write!` with padding and hex: many pieces of text.
#[derive(Debug)]
struct Formatted;

impl fmt::Display for Formatted {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{:>8}|{:<4}|{:x}", "r", 'é', u128::MAX)
    }
}

/// `collect_str` writes the same bytes as postcard, which are the bytes of
/// `serialize_str` of the displayed text: whole strings, text written in
/// several pieces (empty ones and multi-byte chars included), std `Display`
/// impls that pad and write in pieces, empty text, and text of 128 bytes and
/// more (a two-byte length). A length that does not fit is
/// `SerializeBufferFull`, but text that does not fit after its length is
/// `CollectStrError` in postcard, and in ours.
#[test]
fn collect_str_writes_the_bytes_postcard_writes() {
    const LONG: [&str; 13] = ["0123456789"; 13];
    let cases: [&dyn DebugDisplay; 13] = [
        &"",
        &"hello",
        &"é😀",
        &Pieces(&[]),
        &Pieces(&["", ""]),
        &Pieces(&["ab", "", "é", "😀", "z"]),
        &Pieces(&LONG),
        &Pieces(&LONG[..12]),
        &12345u64,
        &-1.5f64,
        &Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0xff00, 0x42, 0x8329),
        &Formatted,
        &Duration::from_millis(1500).as_secs_f32(),
    ];
    for d in cases {
        let want = encode(&d.to_string());
        expect_encoding(&Collect(d), Ok(&want));
        let mut nested = vec![0xaa];
        nested.extend_from_slice(&want);
        nested.push(7);
        expect_encoding(&(0xaau8, Collect(d), 7u8), Ok(&nested));
    }
    expect_encoding(&Collect(Pieces(&LONG)), Ok(&encode(&LONG.concat())));
    assert_eq!(encode(&LONG.concat())[..2], [0x82, 0x01]);

    // [0xaa, 3, 'h', 0xc3, 0xa9, 7]: which error each short buffer gives.
    let v = (0xaau8, Collect("hé"), 7u8);
    let mut ours = [0; 8];
    let mut theirs = [0; 8];
    let want = [
        Err(E::SerializeBufferFull),
        Err(E::SerializeBufferFull),
        Err(E::CollectStrError),
        Err(E::CollectStrError),
        Err(E::CollectStrError),
        Err(E::SerializeBufferFull),
        Ok(6),
        Ok(6),
    ];
    for (n, want) in want.into_iter().enumerate() {
        assert_eq!(
            encode_agree(&v, &mut ours[..n], &mut theirs[..n]),
            want,
            "{v:?} in a buffer of {n} bytes",
        );
    }
}

/// A `Display` that writes a different text on each call, or fails on one
/// call; the state lives in a `Cell`, so each encoder gets a fresh one.
#[derive(Debug)]
struct PerCall {
    calls: std::cell::Cell<usize>,
    /// The text of each call; a call past the end fails.
    texts: &'static [&'static str],
}

impl PerCall {
    fn new(texts: &'static [&'static str]) -> Self {
        PerCall {
            calls: std::cell::Cell::new(0),
            texts,
        }
    }
}

impl fmt::Display for PerCall {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let call = self.calls.get();
        self.calls.set(call + 1);
        match self.texts.get(call) {
            Some(t) => f.write_str(t),
            None => Err(fmt::Error),
        }
    }
}

/// A `Display` whose `fmt` returns `fmt::Error` makes `collect_str` fail
/// with `CollectStrError` at every buffer length (it is measured before
/// anything is written), after bytes before it unless they did not fit, and
/// also when it fails only after writing some pieces, or only on the second
/// (writing) pass. A `Display` whose text changes between the two passes
/// gets the first pass's length and the second pass's text, in both.
#[test]
fn collect_str_with_a_failing_or_inconsistent_display_fails_like_postcard() {
    expect_encoding(&Collect(FailsAfter(&[])), Err(E::CollectStrError));
    expect_encoding(
        &Collect(FailsAfter(&["abc", "", "d"])),
        Err(E::CollectStrError),
    );
    expect_encoding(&(1u8, Collect(FailsAfter(&["x"]))), Err(E::CollectStrError));
    expect_encoding(&vec![Collect(FailsAfter(&[]))], Err(E::CollectStrError));
    let mut ours = [0; 4];
    let mut theirs = [0; 4];
    assert_eq!(
        encode_agree(
            &(1u8, Collect(FailsAfter(&[]))),
            &mut ours[..0],
            &mut theirs[..0]
        ),
        Err(E::SerializeBufferFull),
    );
    assert_eq!(
        encode_agree(&Collect(FailsAfter(&[])), &mut ours[..0], &mut theirs[..0]),
        Err(E::CollectStrError),
    );

    // (texts per call, postcard's result in a large buffer)
    let stateful: [(&'static [&'static str], postcard::Result<&[u8]>); 4] = [
        (&["abc"], Err(E::CollectStrError)),
        (&["ab", "abcd"], Ok(b"\x02abcd")),
        (&["abcd", "ab"], Ok(b"\x04ab")),
        (&["", "😀"], Ok(b"\x00\xf0\x9f\x98\x80")),
    ];
    let mut ours = vec![0; HAND_BUF];
    let mut theirs = vec![0; HAND_BUF];
    for (texts, want) in stateful {
        let fresh = || Collect(PerCall::new(texts));
        let whole = encode_agree_with(&fresh(), &fresh(), &fresh(), &mut ours, &mut theirs);
        assert_eq!(
            whole
                .as_ref()
                .map(|&len| &theirs[..len])
                .map_err(Clone::clone),
            want,
            "postcard's collect_str of a Display writing {texts:?}",
        );
        for n in 0..=FAILING_LENGTHS {
            let _ = encode_agree_with(
                &fresh(),
                &fresh(),
                &fresh(),
                &mut ours[..n],
                &mut theirs[..n],
            );
        }
    }
}

/// Chars of one to four UTF-8 bytes, at the edges of each width, encode as
/// their UTF-8 bytes after a length, and decode back through both decoders.
#[test]
fn chars_of_one_to_four_utf8_bytes_encode_as_length_prefixed_utf8() {
    let chars = [
        '\0',
        'a',
        '\u{7f}',
        '\u{80}',
        'é',
        '\u{7ff}',
        '\u{800}',
        '€',
        '\u{d7ff}',
        '\u{e000}',
        '\u{ffff}',
        '\u{10000}',
        '😀',
        '\u{10ffff}',
    ];
    let mut widths = [false; 4];
    for c in chars {
        let mut utf8 = [0; 4];
        let utf8 = c.encode_utf8(&mut utf8).as_bytes();
        widths[utf8.len() - 1] = true;
        let mut want = vec![utf8.len() as u8];
        want.extend_from_slice(utf8);
        expect_encoding(&c, Ok(&want));
        expect_decodes_to::<char, char>(&want, &c);
        let mut nested = want.clone();
        nested.insert(0, 9);
        nested.push(9);
        expect_encoding(&(9u8, c, 9u8), Ok(&nested));
    }
    assert_eq!(widths, [true; 4]);
}

/// i128 and u128 at their extremes and at varint byte boundaries encode like
/// postcard (19 bytes at most) and decode back through both decoders.
#[test]
fn i128_and_u128_extremes_encode_like_postcard() {
    let ff = |first: u8, n: usize, last: u8| {
        let mut v = vec![first];
        v.extend(std::iter::repeat_n(0xff, n));
        v.push(last);
        v
    };
    expect_encoding(&u128::MAX, Ok(&ff(0xff, 17, 0x03)));
    expect_encoding(&(u128::MAX - 1), Ok(&ff(0xfe, 17, 0x03)));
    expect_encoding(&i128::MIN, Ok(&ff(0xff, 17, 0x03)));
    expect_encoding(&i128::MAX, Ok(&ff(0xfe, 17, 0x03)));
    expect_encoding(&0u128, Ok(&[0]));
    expect_encoding(&0i128, Ok(&[0]));
    expect_encoding(&-1i128, Ok(&[1]));
    let mut top = vec![0x80; 18];
    top.push(0x02);
    expect_encoding(&(1u128 << 127), Ok(&top));
    for k in 1..=19u32 {
        let p = 1u128.checked_shl(7 * k).unwrap_or(0);
        for u in [p.wrapping_sub(1), p, p.wrapping_add(1)] {
            let i = u as i128;
            for v in [i, i.wrapping_neg(), !i] {
                let bytes = encode_everywhere(&v).unwrap();
                assert!(bytes.len() <= 19, "{v} is {}", hex(&bytes));
                expect_decodes_to::<i128, i128>(&bytes, &v);
            }
            let bytes = encode_everywhere(&u).unwrap();
            assert!(bytes.len() <= 19, "{u} is {}", hex(&bytes));
            expect_decodes_to::<u128, u128>(&bytes, &u);
        }
    }
}

/// Empty strings, byte strings, sequences and maps are a zero length byte
/// (unsized `str` and `[u8]` included); zero-sized values are no bytes at
/// all and encode into an empty buffer.
#[test]
fn empty_strings_bytes_and_sequences_are_a_zero_length() {
    expect_encoding("", Ok(&[0]));
    expect_encoding(&String::new(), Ok(&[0]));
    expect_encoding(&OwnedBytes(vec![]), Ok(&[0]));
    expect_encoding::<[u8]>(&[], Ok(&[0]));
    expect_encoding(&Vec::<u8>::new(), Ok(&[0]));
    expect_encoding(&Vec::<String>::new(), Ok(&[0]));
    expect_encoding(&Vec::<()>::new(), Ok(&[0]));
    expect_encoding(&BTreeMap::<u8, u8>::new(), Ok(&[0]));
    expect_encoding(&HashMap::<String, u32>::new(), Ok(&[0]));
    expect_encoding(&heapless::Vec::<u8, 16>::new(), Ok(&[0]));
    expect_encoding(&heapless::String::<8>::new(), Ok(&[0]));
    expect_encoding(&Some(String::new()), Ok(&[1, 0]));
    expect_encoding(&(String::new(), Vec::<u8>::new()), Ok(&[0, 0]));
    expect_encoding(&vec![(); 3], Ok(&[3]));
    expect_encoding(&[0u8; 0], Ok(&[]));
    expect_encoding(&(), Ok(&[]));
    expect_encoding(&UnitStruct, Ok(&[]));
    expect_encoding(&((), UnitStruct, [(); 4]), Ok(&[]));
    expect_decodes_to::<&str, &str>(&[0], &"");
    expect_decodes_to::<BorrowedBytes, OwnedBytes>(&[0], &OwnedBytes(vec![]));
    expect_decodes_to::<Vec<String>, Vec<String>>(&[0], &vec![]);
}

/// `Option<()>` is its tag alone: `None` is 0 and `Some(())` is 1, at any
/// nesting, and decodes back through both decoders.
#[test]
fn options_of_unit_are_their_tag_alone() {
    let cases: [(Option<Option<()>>, &[u8]); 3] = [
        (None, &[0]),
        (Some(None), &[1, 0]),
        (Some(Some(())), &[1, 1]),
    ];
    for (v, want) in cases {
        expect_encoding(&v, Ok(want));
        expect_decodes_to::<Option<Option<()>>, _>(want, &v);
    }
    expect_encoding(&None::<()>, Ok(&[0]));
    expect_encoding(&Some(()), Ok(&[1]));
    expect_encoding(&Some(UnitStruct), Ok(&[1]));
    expect_encoding(&vec![Some(()), None, Some(())], Ok(&[3, 1, 0, 1]));
    expect_decodes_to::<Option<()>, _>(&[1], &Some(()));
}

/// The kind of variant a [`Variant`] serializes as.
#[derive(Debug, Clone, Copy, PartialEq)]
enum VariantKind {
    Unit,
    Newtype,
    Tuple,
    Struct,
}

/// A variant of enum `E` with any index, serialized by hand (a derived enum
/// numbers its variants from 0): unit; newtype of `0x42u8`; tuple of
/// `(-1i16, 300i16)`; struct of `{ x: 1i16, y: -2i16, z: 300i16 }`.
#[derive(Debug)]
struct Variant {
    kind: VariantKind,
    index: u32,
}

impl Variant {
    /// What postcard writes after the variant index.
    fn payload(&self) -> Vec<u8> {
        match self.kind {
            VariantKind::Unit => vec![],
            VariantKind::Newtype => encode(&0x42u8),
            VariantKind::Tuple => encode(&(-1i16, 300i16)),
            VariantKind::Struct => encode(&(1i16, -2i16, 300i16)),
        }
    }
}

impl Serialize for Variant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeStructVariant, SerializeTupleVariant};
        let i = self.index;
        match self.kind {
            VariantKind::Unit => s.serialize_unit_variant("E", i, "V"),
            VariantKind::Newtype => s.serialize_newtype_variant("E", i, "V", &0x42u8),
            VariantKind::Tuple => {
                let mut t = s.serialize_tuple_variant("E", i, "V", 2)?;
                t.serialize_field(&-1i16)?;
                t.serialize_field(&300i16)?;
                t.end()
            }
            VariantKind::Struct => {
                let mut t = s.serialize_struct_variant("E", i, "V", 3)?;
                t.serialize_field("x", &1i16)?;
                t.serialize_field("y", &-2i16)?;
                t.serialize_field("z", &300i16)?;
                t.end()
            }
        }
    }
}

/// Unit, newtype, tuple and struct variants with indices up to 2^32 - 1
/// write the index as a u32 varint (300 is `ac 02`, 2^32 - 1 is
/// `ff ff ff ff 0f`) and then their fields, as postcard does; both decoders
/// read two of them back the same.
#[test]
fn variants_with_large_indices_write_the_index_as_a_u32_varint() {
    let kinds = [
        VariantKind::Unit,
        VariantKind::Newtype,
        VariantKind::Tuple,
        VariantKind::Struct,
    ];
    let indices = [
        0,
        1,
        127,
        128,
        300,
        16_383,
        16_384,
        1 << 21,
        1 << 28,
        u32::MAX - 1,
        u32::MAX,
    ];
    for kind in kinds {
        for index in indices {
            let v = Variant { kind, index };
            let mut want = encode(&index);
            want.extend(v.payload());
            expect_encoding(&v, Ok(&want));
            expect_encoding(
                &(0xaau8, &v, Some(&v)),
                Ok(&encode(&(0xaau8, &v, Some(&v)))),
            );
        }
    }
    let unit = Variant {
        kind: VariantKind::Unit,
        index: 300,
    };
    expect_encoding(&unit, Ok(&[0xac, 0x02]));
    let bytes = encode_everywhere(&unit).unwrap();
    expect(&bytes, Ok(ProbeEnum("variant 300: unit".into())));
    let strukt = Variant {
        kind: VariantKind::Struct,
        index: u32::MAX,
    };
    let bytes = encode_everywhere(&strukt).unwrap();
    assert_eq!(
        bytes,
        [0xff, 0xff, 0xff, 0xff, 0x0f, 0x02, 0x03, 0xd8, 0x04]
    );
    expect(
        &bytes,
        Ok(ProbeEnum(
            "variant 4294967295: seq hint=Some(3) [1, -2, 300]".into(),
        )),
    );
}

/// The encoder comparison itself is not vacuous: different bytes, different
/// error variants, and `Ok` against `Err` (including a value that fits the
/// 8-byte buffer against one that does not) are disagreements; equal bytes
/// from different types, and equal errors, are not.
#[test]
fn the_encoder_comparison_rejects_different_bytes_and_different_errors() {
    fn agrees<A: Serialize + Debug, B: Serialize + Debug>(a: &A, b: &B) -> bool {
        compare_encoders(a, b, &(a, b), &mut [0; 8], &mut [0; 8]).is_ok()
    }
    assert!(!agrees(&1u8, &2u8));
    assert!(!agrees(&200u8, &200u16));
    assert!(!agrees(&Fails, &Collect(FailsAfter(&[]))));
    assert!(!agrees(&1u8, &Fails));
    assert!(!agrees(&Fails, &1u8));
    assert!(!agrees(&[1u8; 9], &[1u8; 8]));
    assert!(agrees(&1u8, &1u16));
    assert!(agrees(&Fails, &Fails));
    assert!(agrees(&[1u8; 9], &[2u8; 9]));
}

// ---------------------------------------------------------------------------
// `Bytes<N>` is a `[u8; N]` on the wire

/// A `Frame64` of arrays and a `Frame64Bytes` of the same bytes encode to
/// the same frame with both encoders, and each type decodes the other's
/// frames (and every prefix of them, to the same error) with both decoders.
#[test]
fn bytes_and_arrays_share_one_wire_format() {
    let mut rng = Rng::for_test("bytes_and_arrays_share_one_wire_format");
    for _ in 0..500 {
        let arrays = Frame64::arb(&mut rng);
        let bytes = Frame64Bytes {
            a: Bytes(arrays.a),
            b: Bytes(arrays.b),
        };
        let wire = postcard::to_allocvec(&arrays).unwrap();
        assert_eq!(postcard::to_allocvec(&bytes).unwrap(), wire);
        let mut buf = [0u8; 64];
        assert_eq!(encode::to_slice(&bytes, &mut buf).unwrap(), &wire[..]);
        for n in 0..=wire.len() {
            let input = &wire[..n];
            let ours = decode::from_bytes::<Frame64Bytes>(input);
            let theirs = postcard::from_bytes::<Frame64Bytes>(input);
            let as_arrays = postcard::from_bytes::<Frame64>(input);
            assert_eq!(ours, theirs, "prefix {n}");
            match (ours, as_arrays) {
                (Ok(b), Ok(a)) => assert_eq!((b.a.0, b.b.0), (a.a, a.b)),
                (Err(e1), Err(e2)) => assert_eq!(e1, e2, "prefix {n}"),
                (b, a) => panic!("prefix {n}: {b:?} against {a:?}"),
            }
        }
    }
}
