//! The typed paths' codec against postcard: arbitrary bytes decoded as
//! realistic frame types (byte arrays as `shmbus_core::Bytes` among them) by `shmbus_core::decode` (what `Subscriber` uses)
//! and by `postcard::from_bytes` must give the same value or the same
//! error; whatever decodes is encoded again by `shmbus_core::encode` (what
//! `Publisher` uses) and `postcard::to_slice`, which must write the same
//! bytes. Never a panic.
#![no_main]
use core::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use shmbus_fuzz::{Blob, Check, Gnss, Imu, Power};

fn agree<T: DeserializeOwned + Serialize + Debug>(data: &[u8]) {
    let ours = shmbus_core::decode::from_bytes::<T>(data);
    let theirs = postcard::from_bytes::<T>(data);
    // Values are compared by their encodings: a float NaN is not equal to
    // itself, its bits are.
    let bits = |r: &postcard::Result<T>| match r {
        Ok(v) => Ok(postcard::to_allocvec(v).expect("a decoded value encodes")),
        Err(e) => Err(e.clone()),
    };
    assert_eq!(bits(&ours), bits(&theirs), "decoders disagree on {data:02x?}");
    if let Ok(v) = ours {
        let (mut a, mut b) = ([0u8; 512], [0u8; 512]);
        let ea = shmbus_core::encode::to_slice(&v, &mut a).map(|s| s.to_vec());
        let eb = postcard::to_slice(&v, &mut b).map(|s| s.to_vec());
        assert_eq!(ea, eb, "encoders disagree on {v:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    agree::<Imu>(data);
    agree::<Gnss>(data);
    agree::<Power>(data);
    agree::<Check>(data);
    agree::<Blob>(data);
});
