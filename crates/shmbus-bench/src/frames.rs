//! Frame types the bench publishes: fixed-size payloads (64 B, 256 B,
//! 1 KiB of postcard bytes) and typical telemetry messages.

use postcard::experimental::max_size::MaxSize;
use postcard_schema::Schema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shmbus_core::Bytes;

/// 64 bytes on the wire (a `u8` is one postcard byte); the first eight
/// carry a sequence number so a peer can echo it back.
#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, Clone, Copy, PartialEq)]
pub struct Frame64 {
    /// Bytes 0..32 (0..8: the sequence number, little-endian).
    pub a: [u8; 32],
    /// Bytes 32..64.
    pub b: [u8; 32],
}

impl Frame64 {
    /// A frame carrying `seq`.
    pub fn new(seq: u64) -> Frame64 {
        let mut a = [0x5a; 32];
        a[..8].copy_from_slice(&seq.to_le_bytes());
        Frame64 { a, b: [0xa5; 32] }
    }

    /// The sequence number it carries.
    pub fn seq(&self) -> u64 {
        let mut s = [0; 8];
        s.copy_from_slice(&self.a[..8]);
        u64::from_le_bytes(s)
    }
}

/// [`Frame64`] with its arrays as [`Bytes`]: the same 64 bytes on the
/// wire and the same schema, but the typed subscriber decodes each field
/// in one copy instead of 32 byte-sized elements.
#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, Clone, Copy, PartialEq)]
pub struct Frame64Bytes {
    /// Bytes 0..32 (0..8: the sequence number, little-endian).
    pub a: Bytes<32>,
    /// Bytes 32..64.
    pub b: Bytes<32>,
}

/// A 64-byte frame the handoff can echo: built from and carrying a
/// sequence number.
pub trait SeqFrame:
    Serialize + DeserializeOwned + Schema + MaxSize + Copy + core::fmt::Debug + 'static
{
    /// A frame carrying `seq`.
    fn with_seq(seq: u64) -> Self;
    /// The sequence number it carries.
    fn seq_of(&self) -> u64;
}

impl SeqFrame for Frame64 {
    fn with_seq(seq: u64) -> Self {
        Frame64::new(seq)
    }
    fn seq_of(&self) -> u64 {
        self.seq()
    }
}

impl SeqFrame for Frame64Bytes {
    fn with_seq(seq: u64) -> Self {
        let f = Frame64::new(seq);
        Frame64Bytes {
            a: Bytes(f.a),
            b: Bytes(f.b),
        }
    }
    fn seq_of(&self) -> u64 {
        let mut s = [0; 8];
        s.copy_from_slice(&self.a[..8]);
        u64::from_le_bytes(s)
    }
}

/// An IMU sample: what a control loop reads (41 bytes).
#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, Clone, Copy, PartialEq, Default)]
pub struct Imu {
    /// Sample time, microseconds.
    pub t_us: u64,
    /// Acceleration, m/s².
    pub acc: [f32; 3],
    /// Angular rate, rad/s.
    pub gyro: [f32; 3],
    /// Die temperature, °C.
    pub temp: f32,
}

/// A GNSS fix with a small label.
#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, Clone, PartialEq, Default)]
pub struct Gnss {
    /// Fix time, microseconds.
    pub t_us: u64,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Altitude, metres.
    pub alt: f32,
    /// Fix type.
    pub fix: u8,
    /// Satellites used.
    pub sats: u8,
    /// Receiver label.
    pub receiver: heapless::String<16>,
}

/// A power monitor reading: four rails and a state string.
#[derive(Serialize, Deserialize, MaxSize, Schema, Debug, Clone, PartialEq, Default)]
pub struct Power {
    /// Sample time, microseconds.
    pub t_us: u64,
    /// Rail voltages, V.
    pub volts: [f32; 4],
    /// Rail currents, A.
    pub amps: [f32; 4],
    /// Charger state.
    pub state: heapless::String<12>,
    /// Per-rail fault counters.
    pub faults: heapless::Vec<u16, 4>,
}

/// Typical values of the typical messages.
pub fn typical() -> (Imu, Gnss, Power) {
    let imu = Imu {
        t_us: 1_732_000_123_456,
        acc: [0.012, -0.034, 9.806],
        gyro: [0.001, 0.002, -0.003],
        temp: 41.5,
    };
    let mut receiver = heapless::String::new();
    let _ = receiver.push_str("ublox-m8");
    let gnss = Gnss {
        t_us: 1_732_000_123_456,
        lat: 48.858_37,
        lon: 2.294_48,
        alt: 35.2,
        fix: 3,
        sats: 11,
        receiver,
    };
    let mut state = heapless::String::new();
    let _ = state.push_str("charging");
    let mut faults = heapless::Vec::new();
    let _ = faults.extend_from_slice(&[0, 0, 1, 0]);
    let power = Power {
        t_us: 1_732_000_123_456,
        volts: [5.02, 3.31, 1.81, 1.2],
        amps: [0.52, 0.31, 0.12, 0.9],
        state,
        faults,
    };
    (imu, gnss, power)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame64_bytes_is_frame64_on_the_wire() {
        let (a, b) = (Frame64::with_seq(42), Frame64Bytes::with_seq(42));
        assert_eq!(
            postcard::to_allocvec(&a).unwrap(),
            postcard::to_allocvec(&b).unwrap()
        );
        // The fields' schemas are the same (the structs' names differ).
        assert_eq!(
            shmbus_core::schema::schema_bytes::<[u8; 32]>().unwrap(),
            shmbus_core::schema::schema_bytes::<Bytes<32>>().unwrap()
        );
        assert_eq!(b.seq_of(), 42);
        assert_eq!(Frame64Bytes::POSTCARD_MAX_SIZE, 64);
    }

    #[test]
    fn frame64_is_64_bytes_and_carries_its_sequence() {
        assert_eq!(Frame64::POSTCARD_MAX_SIZE, 64);
        let f = Frame64::new(0x0102_0304_0506_0708);
        let bytes = postcard::to_allocvec(&f).unwrap();
        assert_eq!(bytes.len(), 64);
        assert_eq!(
            postcard::from_bytes::<Frame64>(&bytes).unwrap().seq(),
            0x0102_0304_0506_0708
        );
    }

    #[test]
    fn typical_messages_encode_within_their_max_size() {
        let (imu, gnss, power) = typical();
        assert!(postcard::to_allocvec(&imu).unwrap().len() <= Imu::POSTCARD_MAX_SIZE);
        assert!(postcard::to_allocvec(&gnss).unwrap().len() <= Gnss::POSTCARD_MAX_SIZE);
        assert!(postcard::to_allocvec(&power).unwrap().len() <= Power::POSTCARD_MAX_SIZE);
    }
}
