//! Frame decoding: arbitrary bytes in a slot's words, decoded in place
//! (`shmbus_core::codec::decode_in_place`) as realistic frame types, with a
//! scratch buffer of arbitrary size. Must never panic; every failure is an
//! `Err`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shmbus_core::codec::decode_in_place;
use shmbus_fuzz::{Check, Gnss, Imu, Power, words_of};

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let words = words_of(rest);
    // The claimed length may exceed the words (a torn `len`): it is clamped.
    let len = rest.len() + usize::from(head >> 6) * 1000;
    let mut scratch = vec![0u8; usize::from(head & 0x3f)];
    let _ = decode_in_place::<Imu>((&words).into(), len, &mut scratch);
    let _ = decode_in_place::<Gnss>((&words).into(), len, &mut scratch);
    let _ = decode_in_place::<Power>((&words).into(), len, &mut scratch);
    let _ = decode_in_place::<Check>((&words).into(), len, &mut scratch);
    // Round trip: what decodes re-encodes to the bytes it used.
    if let Ok((v, used)) = decode_in_place::<Power>((&words).into(), len, &mut scratch) {
        let again = postcard::to_allocvec(&v).unwrap();
        let again: Power = postcard::from_bytes(&again).unwrap();
        assert_eq!(again, v);
        assert!(used <= words.len() * 4);
    }
});
