//! `Beat`: the self-checking frame every board role publishes and reads.
//!
//! Every word is derived from `(epoch, seq)`, so a subscriber can tell a
//! torn frame (words from two different publishes) from a whole one.

use serde::{Deserialize, Serialize};

/// Number of check words in a frame (32 bytes of payload).
pub const WORDS: usize = 8;

/// One frame of the board scenarios.
#[derive(
    Serialize,
    Deserialize,
    Debug,
    Clone,
    PartialEq,
    postcard::experimental::max_size::MaxSize,
    postcard_schema::Schema,
)]
pub struct Beat {
    /// Which publisher instance wrote it (1 for the first, +1 per replacement).
    pub epoch: u32,
    /// The publisher instance's own counter, from 0.
    pub seq: u32,
    /// True on the last frame a publisher sends: subscribers stop there.
    pub last: bool,
    /// `mix(epoch, seq, i)` for every i.
    pub words: [u32; WORDS],
}

fn mix(epoch: u32, seq: u32, i: u32) -> u32 {
    let x = (u64::from(epoch) << 32 | u64::from(seq)) ^ 0x9e37_79b9_7f4a_7c15;
    (x.wrapping_mul(u64::from(i) * 2 + 1).rotate_left(i * 7) >> 16) as u32
}

impl Beat {
    /// The frame `seq` of publisher instance `epoch`.
    pub fn new(epoch: u32, seq: u32, last: bool) -> Beat {
        let mut words = [0; WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = mix(epoch, seq, i as u32);
        }
        Beat {
            epoch,
            seq,
            last,
            words,
        }
    }

    /// True if every word matches `(epoch, seq)`.
    pub fn is_whole(&self) -> bool {
        self.words == Beat::new(self.epoch, self.seq, self.last).words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_mixed_from_two_publishes_is_not_whole() {
        let a = Beat::new(1, 41, false);
        let b = Beat::new(1, 42, false);
        assert!(a.is_whole() && b.is_whole());
        let mut torn = a.clone();
        torn.words[5] = b.words[5];
        assert!(!torn.is_whole());
        let mut other_epoch = Beat::new(2, 41, false);
        other_epoch.epoch = 1;
        assert!(!other_epoch.is_whole());
    }

    #[test]
    fn frames_round_trip_through_postcard() {
        let a = Beat::new(3, u32::MAX, true);
        let bytes = postcard::to_allocvec(&a).unwrap();
        assert!(
            bytes.len() <= <Beat as postcard::experimental::max_size::MaxSize>::POSTCARD_MAX_SIZE
        );
        assert_eq!(postcard::from_bytes::<Beat>(&bytes).unwrap(), a);
    }
}
