//! Whether a topic's publisher runs, as a status display tells it.
//!
//! The publisher lock says it (`PublisherStatus`), except when the lock
//! is gone: `ipcrm -s` or systemd-logind's `RemoveIPC` remove it under a
//! live publisher, and third-party publishers go on publishing without
//! one (the examples, the sensors and the bridge take a new lock within
//! half a second; `shmbus pub --rate` and `replay` stop and say so). A
//! topic without a
//! lock whose generation moved is such a publisher; one whose generation
//! stood still has none. The library's waits apply the same rule
//! (`docs/LAYOUT.md` section 7.2); this module is the one copy of it for
//! the displays: the bridge's `$status`, the Foxglove server's health,
//! `shmbus hz` and `shmbus echo` ([`Watch`]), and the one-shot `list`,
//! `info` and `doctor`, which cannot see movement and show the newest
//! frame's age instead ([`no_lock_text`]).

use std::time::Duration;

use shmbus_core::PublisherStatus;

/// How far apart the looks are that a [`Watch`] compares: frames
/// published within about this long of a look mean a publisher runs
/// without its lock. A display that looks more often compares with the
/// look at least this long before (and keeps what that look saw), so a
/// topic published a few times a second does not flicker between running
/// and stopped between its frames.
pub const LOOK_GAP: Duration = Duration::from_secs(1);

/// What a display says about a topic's publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The lock is held by `pid`.
    Alive {
        /// The lock holder's pid.
        pid: i32,
    },
    /// The topic has no lock, yet frames were published since the
    /// previous look: a publisher runs without its lock.
    NoLockPublishing,
    /// The lock is free: no publisher runs.
    NotRunning,
    /// The topic has no lock and no frame came since the previous look
    /// (or there was no previous look): no publisher runs.
    NoLock,
    /// The lock cannot be read (another user's, or access lost).
    Unknown,
}

impl Liveness {
    /// A publisher runs: its lock is held, or frames come without one.
    pub fn is_running(&self) -> bool {
        matches!(self, Liveness::Alive { .. } | Liveness::NoLockPublishing)
    }

    /// No publisher runs: the lock is free, or gone with no frame since
    /// the previous look.
    pub fn is_stopped(&self) -> bool {
        matches!(self, Liveness::NotRunning | Liveness::NoLock)
    }
}

/// A display's memory of its previous looks at one topic: the generation
/// the next look compares with. One per topic and segment (a new segment
/// at the key starts a new `Watch`, or [`Watch::forget`]).
#[derive(Debug, Clone)]
pub struct Watch {
    gap_ns: u64,
    /// Generation and monotonic time (ns) of the look the next one
    /// compares with.
    base: Option<(u64, u64)>,
    /// Whether the generation had moved at the look that set `base`.
    moved_at_base: bool,
}

impl Default for Watch {
    fn default() -> Self {
        Watch::new()
    }
}

impl Watch {
    /// A watch that compares looks [`LOOK_GAP`] apart.
    pub fn new() -> Watch {
        Watch::with_gap(LOOK_GAP)
    }

    /// A watch that compares looks `gap` apart.
    pub fn with_gap(gap: Duration) -> Watch {
        Watch {
            gap_ns: gap.as_nanos().min(u64::MAX as u128) as u64,
            base: None,
            moved_at_base: false,
        }
    }

    /// Forget the previous looks (the display attached a new segment).
    pub fn forget(&mut self) {
        self.base = None;
        self.moved_at_base = false;
    }

    /// Classify a look: `status` and `generation` read now (the topic's
    /// publisher lock and newest generation), `newest_age` the newest
    /// frame's age (`None`: no frame yet), `now_ns` the monotonic clock. A
    /// topic without a lock is [`Liveness::NoLockPublishing`] when its
    /// generation moved since the look it is compared with (at least the
    /// gap before, or the first one), or had moved at that look; else
    /// [`Liveness::NoLock`].
    ///
    /// The first look has nothing to compare with, so it takes the newest
    /// frame's age instead: a frame younger than the gap is movement, as
    /// it would be at a later look. A display that attaches to a topic
    /// whose lock is already gone, while frames come, says so at once; it
    /// used to say "stopped" for a gap first (the bridge published a
    /// retained `stopped`, then `alive` a second later). A frame's time
    /// may be its publisher's caller's (`publish_at`): one stamped older
    /// than the gap reads as no movement at the first look, and the next
    /// look, a gap later, sees the generation move.
    pub fn look(
        &mut self,
        status: PublisherStatus,
        generation: u64,
        newest_age: Option<Duration>,
        now_ns: u64,
    ) -> Liveness {
        let moved = match self.base {
            None => {
                self.base = Some((generation, now_ns));
                let recent = newest_age.is_some_and(|a| a.as_nanos() < u128::from(self.gap_ns));
                self.moved_at_base = recent;
                recent
            }
            Some((g, t)) => {
                let moved_now = generation != g;
                if now_ns.saturating_sub(t) >= self.gap_ns {
                    self.base = Some((generation, now_ns));
                    self.moved_at_base = moved_now;
                    moved_now
                } else {
                    moved_now || self.moved_at_base
                }
            }
        };
        match status {
            PublisherStatus::Alive { pid } => Liveness::Alive { pid },
            PublisherStatus::NotRunning => Liveness::NotRunning,
            PublisherStatus::NoLock if moved => Liveness::NoLockPublishing,
            PublisherStatus::NoLock => Liveness::NoLock,
            PublisherStatus::Unknown => Liveness::Unknown,
        }
    }
}

/// For a one-shot display of a topic without a lock: `no lock (newest
/// frame 3.0 ms ago)`, or `no lock (no frame published)`. A one-shot look
/// cannot tell whether frames still come; the age lets a reader see it.
pub fn no_lock_text(age: Option<Duration>) -> String {
    match age {
        Some(a) => format!("no lock (newest frame {} ago)", age_text(a)),
        None => "no lock (no frame published)".into(),
    }
}

/// The newest frame's age as one-shot displays print it.
pub fn age_text(age: Duration) -> String {
    crate::units::duration_ns(age.as_nanos().min(u64::MAX as u128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_lockless_topic_runs_while_its_generation_moves() {
        let mut w = Watch::new();
        let n = PublisherStatus::NoLock;
        // Without a frame age, the first look cannot see movement.
        assert_eq!(w.look(n, 5, None, 0), Liveness::NoLock);
        assert_eq!(w.look(n, 9, None, S), Liveness::NoLockPublishing);
        assert!(Liveness::NoLockPublishing.is_running());
        // A look sooner than the gap keeps what the last full look saw.
        assert_eq!(w.look(n, 9, None, S + S / 5), Liveness::NoLockPublishing);
        assert_eq!(w.look(n, 12, None, 2 * S), Liveness::NoLockPublishing);
        // A gap with no frame: stopped.
        assert_eq!(w.look(n, 12, None, 3 * S), Liveness::NoLock);
        assert!(Liveness::NoLock.is_stopped());
        assert_eq!(w.look(n, 12, None, 3 * S + S / 2), Liveness::NoLock);
        // A frame after a short while counts at once.
        assert_eq!(
            w.look(n, 13, None, 3 * S + S / 2 + 1),
            Liveness::NoLockPublishing
        );
    }

    #[test]
    fn the_first_look_takes_a_recent_frame_for_movement() {
        let n = PublisherStatus::NoLock;
        let ms = Duration::from_millis;
        // Attached while frames come: running at once, and a look sooner
        // than the gap keeps it.
        let mut w = Watch::new();
        assert_eq!(w.look(n, 5, Some(ms(20)), 0), Liveness::NoLockPublishing);
        assert_eq!(
            w.look(n, 5, Some(ms(500)), S / 2),
            Liveness::NoLockPublishing
        );
        // A gap after the first look with no frame: stopped.
        assert_eq!(w.look(n, 5, Some(ms(1020)), S), Liveness::NoLock);
        // A newest frame as old as the gap, or none: no movement to see.
        let mut w = Watch::new();
        assert_eq!(w.look(n, 5, Some(ms(1000)), 0), Liveness::NoLock);
        assert_eq!(w.look(n, 6, Some(ms(1)), S), Liveness::NoLockPublishing);
        let mut w = Watch::new();
        assert_eq!(w.look(n, 0, None, 0), Liveness::NoLock);
        // The age never overrides the lock.
        let mut w = Watch::new();
        assert_eq!(
            w.look(PublisherStatus::NotRunning, 5, Some(ms(1)), 0),
            Liveness::NotRunning
        );
        // Forgetting starts over with a first look.
        w.forget();
        assert_eq!(w.look(n, 9, Some(ms(3)), S), Liveness::NoLockPublishing);
    }

    #[test]
    fn the_lock_decides_when_there_is_one() {
        let mut w = Watch::new();
        assert_eq!(
            w.look(PublisherStatus::Alive { pid: 7 }, 1, None, 0),
            Liveness::Alive { pid: 7 }
        );
        assert_eq!(
            w.look(PublisherStatus::NotRunning, 4, None, S),
            Liveness::NotRunning
        );
        assert_eq!(
            w.look(PublisherStatus::Unknown, 8, None, 2 * S),
            Liveness::Unknown
        );
        // The lock removed under a publisher seen before: movement counts.
        assert_eq!(
            w.look(PublisherStatus::NoLock, 9, None, 3 * S),
            Liveness::NoLockPublishing
        );
        w.forget();
        assert_eq!(
            w.look(PublisherStatus::NoLock, 10, None, 4 * S),
            Liveness::NoLock
        );
    }

    #[test]
    fn the_one_shot_text_gives_the_newest_frame_age() {
        assert_eq!(
            no_lock_text(Some(Duration::from_millis(3))),
            format!(
                "no lock (newest frame {} ago)",
                crate::units::duration_ns(3_000_000)
            )
        );
        assert_eq!(no_lock_text(None), "no lock (no frame published)");
    }
}
