//! Shared pieces of the shmbus fuzz targets: realistic frame types and a
//! helper that turns arbitrary bytes into a real System V segment.

use core::sync::atomic::AtomicU32;

use postcard::experimental::max_size::MaxSize;
use postcard_schema::Schema;
use serde::{Deserialize, Serialize};
use shmbus_core::layout::{HEADER_FIXED_SIZE, fnv1a64};
use shmbus_core::sys::{self, Errno, WriteAttachment};

/// An IMU sample (the shape of `shmbus-sensors`' frames).
#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, PartialEq)]
pub struct Imu {
    pub t_us: u64,
    pub acc: [f32; 3],
    pub gyro: [f32; 3],
    pub frame: heapless::String<8>,
}

/// GNSS fix quality: an enum with unit, tuple and struct variants.
#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, PartialEq)]
pub enum Fix {
    None,
    TwoD(u8),
    ThreeD { sats: u8, hdop: f32 },
}

/// A GNSS frame: options, nested enums, doubles.
#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, PartialEq)]
pub struct Gnss {
    pub fix: Fix,
    pub lat: f64,
    pub lon: f64,
    pub alt: Option<f32>,
    pub receiver: Option<heapless::String<16>>,
}

/// A power-monitor frame: a variable-length vector and signed varints.
#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, PartialEq)]
pub struct Power {
    pub cells_mv: heapless::Vec<u16, 16>,
    pub temps_dc: [i16; 4],
    pub current_ma: i32,
    pub flags: u32,
    pub label: heapless::String<32>,
}

/// The test kit's self-checking frame (`shmbus_testkit::Check`), same shape.
#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, PartialEq)]
pub struct Check {
    pub seq: u64,
    pub words: [u64; 7],
    pub tag: heapless::String<8>,
}

/// A frame with byte arrays as `shmbus_core::Bytes` (decoded in one copy
/// by the typed decoder), among other fields and inside an option.
#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, PartialEq)]
pub struct Blob {
    pub id: u16,
    pub mac: shmbus_core::Bytes<6>,
    pub key: Option<shmbus_core::Bytes<16>>,
    pub raw: [u8; 3],
    pub tail: shmbus_core::Bytes<1>,
}

/// Little-endian 32-bit words holding `bytes` (zero-padded).
pub fn words_of(bytes: &[u8]) -> Vec<AtomicU32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut b = [0u8; 4];
            b[..c.len()].copy_from_slice(c);
            AtomicU32::new(u32::from_le_bytes(b))
        })
        .collect()
}

/// Make the header's schema fingerprint (offset 40) match the schema bytes
/// the header claims (offset 256, length at offset 52), so the fuzzer gets
/// past the checksum to the code behind it.
pub fn fix_fingerprint(bytes: &mut [u8]) {
    if bytes.len() < HEADER_FIXED_SIZE {
        return;
    }
    let len = u32::from_le_bytes(bytes[52..56].try_into().unwrap()) as usize;
    if let Some(schema) = bytes.get(HEADER_FIXED_SIZE..HEADER_FIXED_SIZE.saturating_add(len)) {
        let fp = fnv1a64(schema);
        bytes[40..48].copy_from_slice(&fp.to_le_bytes());
    }
}

/// A System V segment of exactly `bytes.len()` bytes holding `bytes` (the
/// last `len % 4` bytes stay zero: the mapping is written in whole words),
/// at a key private to this process; removed on drop.
pub struct FuzzSegment {
    pub key: i32,
    pub shmid: i32,
}

impl FuzzSegment {
    pub fn new(bytes: &[u8]) -> FuzzSegment {
        let key = 0x7d00_0000 | (std::process::id() as i32 & 0x00ff_ffff);
        let size = bytes.len().max(1);
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | 0o600;
        let shmid = match sys::shmget(key, size, flags) {
            Ok(id) => id,
            Err(e) if e.errno == Errno::EEXIST => {
                // Left by an earlier run with our pid: remove and retry.
                let old = sys::shmget(key, 0, 0).expect("shmget old");
                sys::shm_remove(old).expect("remove old");
                sys::shmget(key, size, flags).expect("shmget")
            }
            Err(e) => panic!("shmget: {e}"),
        };
        let att = WriteAttachment::read_write(shmid).expect("attach");
        let words = att.atomic_words(0, bytes.len() / 4).expect("words");
        shmbus_core::codec::store_bytes(words, &bytes[..words.len() * 4]);
        FuzzSegment { key, shmid }
    }
}

impl Drop for FuzzSegment {
    fn drop(&mut self) {
        let _ = sys::shm_remove(self.shmid);
    }
}
