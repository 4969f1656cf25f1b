//! Frame reading as a subscriber does it: arbitrary bytes in a slot's
//! words, copied out with `shmbus_core::codec::load_bytes` into a buffer of
//! arbitrary size under an arbitrary claimed length, then decoded with
//! `shmbus_core::decode::from_bytes` as realistic frame types. Must never
//! panic; every failure is an `Err`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shmbus_core::codec::load_bytes;
use shmbus_core::decode::from_bytes;
use shmbus_fuzz::{Check, Gnss, Imu, Power, words_of};

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let words = words_of(rest);
    // The claimed length may exceed the words (a torn `len`): it is clamped.
    let len = rest.len() + usize::from(head >> 6) * 1000;
    // A copy buffer shorter than the frame truncates the copy, never more.
    let mut buf = vec![0u8; usize::from(head & 0x3f) * 4];
    let n = load_bytes((&words).into(), len, &mut buf);
    assert!(n <= buf.len() && n <= words.len() * 4);
    let copy = &buf[..n];
    let _ = from_bytes::<Imu>(copy);
    let _ = from_bytes::<Gnss>(copy);
    let _ = from_bytes::<Check>(copy);
    // Round trip: what decodes encodes again, to a frame that decodes to it.
    if let Ok(v) = from_bytes::<Power>(copy) {
        let mut out = [0u8; 512];
        let again = shmbus_core::encode::to_slice(&v, &mut out).expect("a decoded value encodes");
        let again: Power = from_bytes(again).expect("its encoding decodes");
        assert_eq!(again, v);
    }
});
