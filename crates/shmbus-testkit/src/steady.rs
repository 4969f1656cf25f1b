//! A thread that publishes at a steady pace and keeps the time of every
//! publish, for tests that assert what a display said at a moment they
//! cannot observe (its first look): the newest frame at that moment was
//! younger than the widest gap between the publishes around it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A thread that calls `step` on its state every `every` until
/// [`Steady::stop`], keeping the time each call began.
pub struct Steady<S: Send + 'static> {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(S, Vec<Instant>)>>,
}

impl<S: Send + 'static> Steady<S> {
    /// Start calling `step(&mut state)`, the first time at once, then
    /// `every` after each call returns; at least once.
    pub fn start(
        mut state: S,
        every: Duration,
        mut step: impl FnMut(&mut S) + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut times = Vec::new();
                loop {
                    // Taken before the call: before the stamp of a frame
                    // it publishes.
                    times.push(Instant::now());
                    step(&mut state);
                    if stop.load(Ordering::Relaxed) {
                        break (state, times);
                    }
                    std::thread::sleep(every);
                }
            })
        };
        Steady {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop the thread; its state and the time each call began.
    pub fn stop(mut self) -> (S, Vec<Instant>) {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(e)) => std::panic::resume_unwind(e),
            None => unreachable!("stopped once"),
        }
    }
}

impl<S: Send + 'static> Drop for Steady<S> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The widest gap between consecutive `times` up to `until`, with `until`
/// itself the last point. Something that looked after the first of them
/// and before `until` saw a newest one younger than this.
pub fn widest_gap(times: &[Instant], until: Instant) -> Duration {
    let mut points: Vec<Instant> = times.iter().copied().filter(|t| *t <= until).collect();
    points.push(until);
    points
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_widest_gap_counts_up_to_the_moment_given() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let times = [t0, t0 + ms(5), t0 + ms(30), t0 + ms(35), t0 + ms(900)];
        assert_eq!(widest_gap(&times, t0 + ms(40)), ms(25));
        assert_eq!(widest_gap(&times, t0 + ms(100)), ms(65));
        assert_eq!(widest_gap(&times, t0 + ms(901)), ms(865));
        assert_eq!(widest_gap(&[], t0), Duration::ZERO);
    }

    #[test]
    fn a_steady_thread_calls_until_stopped_and_hands_its_state_back() {
        let s = Steady::start(0u32, Duration::from_millis(1), |n| *n += 1);
        std::thread::sleep(Duration::from_millis(20));
        let (n, times) = s.stop();
        assert_eq!(n as usize, times.len());
        assert!(n >= 1);
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }
}
