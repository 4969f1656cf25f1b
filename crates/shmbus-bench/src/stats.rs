//! Samples, summaries and the clock.
//!
//! Every figure is a distribution of nanosecond samples summarised as
//! median, p99, min, max and mean. Times come from `CLOCK_MONOTONIC`
//! (`shmbus_core::sys::monotonic_ns`, the vDSO on Linux); the cost of one
//! clock read is measured at start-up ([`clock_overhead_ns`]) and subtracted
//! from every individually timed sample, so a fast mechanism is not
//! flattered or penalised by the timer.

use serde::Serialize;
use shmbus_core::sys::monotonic_ns;

/// A summary of one distribution, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub samples: usize,
    /// 50th percentile.
    pub median_ns: f64,
    /// 99th percentile.
    pub p99_ns: f64,
    /// Smallest sample.
    pub min_ns: f64,
    /// Largest sample.
    pub max_ns: f64,
    /// Arithmetic mean.
    pub mean_ns: f64,
}

/// The `q`-quantile (0..=1) of sorted samples, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `samples` (copied, not reordered); NaN if empty.
pub fn median(samples: &[f64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

impl Summary {
    /// Summarise `samples` (sorted in place).
    pub fn of(samples: &mut [f64]) -> Summary {
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        Summary {
            samples: n,
            median_ns: quantile(samples, 0.5),
            p99_ns: quantile(samples, 0.99),
            min_ns: samples.first().copied().unwrap_or(f64::NAN),
            max_ns: samples.last().copied().unwrap_or(f64::NAN),
            mean_ns: if n == 0 {
                f64::NAN
            } else {
                samples.iter().sum::<f64>() / n as f64
            },
        }
    }
}

/// The median cost of one `monotonic_ns()` call, measured as the gap
/// between two back-to-back reads.
pub fn clock_overhead_ns() -> f64 {
    let mut v: Vec<f64> = (0..2001)
        .map(|_| {
            let a = monotonic_ns();
            let b = monotonic_ns();
            b.saturating_sub(a) as f64
        })
        .collect();
    Summary::of(&mut v).median_ns
}

/// Time `n` calls of `op` as one batch and return the mean cost per call,
/// in nanoseconds (for operations too short to time one by one).
#[inline]
pub fn per_op(n: u32, mut op: impl FnMut(u32)) -> f64 {
    let t0 = monotonic_ns();
    for i in 0..n {
        op(i);
    }
    let t1 = monotonic_ns();
    t1.saturating_sub(t0) as f64 / f64::from(n.max(1))
}

/// `samples` batch means of `per_op(n, op)`, after one untimed warm-up
/// batch.
pub fn batches(samples: usize, n: u32, mut op: impl FnMut(u32)) -> Vec<f64> {
    per_op(n, &mut op);
    (0..samples).map(|_| per_op(n, &mut op)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_one_to_hundred() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Summary::of(&mut v);
        assert_eq!(s.samples, 100);
        assert_eq!(s.median_ns, 50.0);
        assert_eq!(s.p99_ns, 99.0);
        assert_eq!(s.min_ns, 1.0);
        assert_eq!(s.max_ns, 100.0);
        assert_eq!(s.mean_ns, 50.5);
    }

    #[test]
    fn empty_summary_is_nan_not_a_panic() {
        let s = Summary::of(&mut []);
        assert_eq!(s.samples, 0);
        assert!(s.median_ns.is_nan());
    }

    #[test]
    fn clock_overhead_is_measured() {
        let c = clock_overhead_ns();
        assert!(c.is_finite() && c >= 0.0, "{c}");
    }
}
