//! A message that may repeat many times a second (a corrupt frame in every
//! slot, a writer stuck mid-write) is printed once; after that only how
//! often it repeated, at most once a second. A tool that meets a broken
//! topic stays readable and cannot fill a disk with its own stderr.

use std::io::Write;
use std::time::{Duration, Instant};

/// How often a count of repeats is printed at most.
pub const EVERY: Duration = Duration::from_secs(1);

struct Kind {
    key: &'static str,
    label: &'static str,
    pending: u64,
    total: u64,
    since: Instant,
}

/// Rate-limited notices on standard error, each line prefixed (e.g.
/// `shmbus: `). One per kind of problem.
pub struct Repeats {
    prefix: &'static str,
    kinds: Vec<Kind>,
}

impl Repeats {
    /// Notices prefixed with `prefix`.
    pub fn new(prefix: &'static str) -> Repeats {
        Repeats {
            prefix,
            kinds: Vec::new(),
        }
    }

    /// One occurrence of problem `key` (`label` names it in counts, e.g.
    /// "corrupt frames"). The first is printed in full (`msg()`); later ones
    /// are counted, and at most once per [`EVERY`] the count is printed with
    /// the latest message. Returns true if something was printed.
    pub fn note(
        &mut self,
        key: &'static str,
        label: &'static str,
        msg: impl FnOnce() -> String,
    ) -> bool {
        self.note_at(Instant::now(), key, label, msg)
    }

    /// [`Repeats::note`] at time `now` (the tests give the time; a timed
    /// test flaked when the machine descheduled it for a second).
    fn note_at(
        &mut self,
        now: Instant,
        key: &'static str,
        label: &'static str,
        msg: impl FnOnce() -> String,
    ) -> bool {
        let prefix = self.prefix;
        let Some(k) = self.kinds.iter_mut().find(|k| k.key == key) else {
            self.kinds.push(Kind {
                key,
                label,
                pending: 0,
                total: 1,
                since: now,
            });
            line(prefix, &msg());
            return true;
        };
        k.total += 1;
        k.pending += 1;
        let dt = now.duration_since(k.since);
        if dt < EVERY {
            return false;
        }
        let text = format!(
            "{} more {} in the last {:.1} s (latest: {})",
            k.pending,
            k.label,
            dt.as_secs_f64(),
            msg()
        );
        k.pending = 0;
        k.since = now;
        line(prefix, &text);
        true
    }

    /// How many times `key` occurred in all.
    pub fn total(&self, key: &str) -> u64 {
        self.kinds
            .iter()
            .find(|k| k.key == key)
            .map_or(0, |k| k.total)
    }

    /// Print the counts not printed yet (before the command ends).
    pub fn flush(&mut self) {
        for k in &mut self.kinds {
            if k.pending > 0 {
                line(self.prefix, &format!("{} more {}", k.pending, k.label));
                k.pending = 0;
            }
        }
    }
}

fn line(prefix: &str, text: &str) {
    // Errors writing stderr are ignored: nobody is listening.
    let _ = writeln!(
        std::io::stderr().lock(),
        "{prefix}{}",
        crate::printable::printable(text)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Driven by a made-up clock: the count is printed once [`EVERY`] has
    /// passed since the last line, never before, and only then is the
    /// message formatted. (It was timed by the wall clock, and failed on a
    /// loaded machine that descheduled it for a second at the wrong moment.)
    #[test]
    fn the_first_is_printed_then_counts_at_most_once_a_second() {
        let mut r = Repeats::new("test: ");
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut formatted = 0;
        let printed: Vec<u64> = {
            let mut note = |r: &mut Repeats, ms: u64| {
                r.note_at(at(ms), "corrupt", "corrupt frames", || {
                    formatted += 1;
                    "frame n is corrupt".into()
                })
            };
            assert!(note(&mut r, 0), "the first is printed");
            [1, 500, 999, 1000, 1001, 1500, 1999, 2000, 2500, 2999]
                .into_iter()
                .filter(|&ms| note(&mut r, ms))
                .collect()
        };
        assert_eq!(
            printed,
            [1000, 2000],
            "a count once a second, at the second"
        );
        assert_eq!(formatted, 3, "messages are only formatted when printed");
        assert_eq!(r.total("corrupt"), 11);
        assert!(r.note("stuck", "stuck reads", || "another kind".into()));
        assert_eq!(r.total("stuck"), 1);
        r.flush();
    }
}
