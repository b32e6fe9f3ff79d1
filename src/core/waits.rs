//! How long grants waited, in fixed buckets: what a metrics exporter turns
//! into a histogram without timing anything per grant.
//!
//! Only a grant that waits is counted here (a grant with no wait is already
//! counted by `granted`, and the count of zero waits is `granted` minus the
//! waits counted here), so the path of a grant that does not wait does not
//! touch it. Waiting is slow anyway: one relaxed add per wait is nothing.

use super::clock::Nanos;
use std::sync::atomic::{AtomicU64, Ordering};

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

/// Upper bounds of the buckets: from 5 ms (a short queue) to 5 minutes (a
/// daily budget or a long `retry-after`).
pub const WAIT_BOUNDS: [Nanos; 14] = [
    Nanos(5 * MS),
    Nanos(10 * MS),
    Nanos(25 * MS),
    Nanos(50 * MS),
    Nanos(100 * MS),
    Nanos(250 * MS),
    Nanos(500 * MS),
    Nanos(SEC),
    Nanos(5 * SEC / 2),
    Nanos(5 * SEC),
    Nanos(10 * SEC),
    Nanos(30 * SEC),
    Nanos(60 * SEC),
    Nanos(300 * SEC),
];

/// Waits (> 0) per bucket, the last bucket above every bound; and their sum.
#[derive(Debug, Default)]
pub struct WaitHistogram {
    counts: [AtomicU64; WAIT_BOUNDS.len() + 1],
    sum_ns: AtomicU64,
}

fn bucket_of(wait: Nanos) -> usize {
    WAIT_BOUNDS.partition_point(|&bound| bound < wait)
}

impl WaitHistogram {
    /// Counts one grant that waited `wait` (a zero wait is not counted).
    #[inline]
    pub fn observe(&self, wait: Nanos) {
        if wait > Nanos::ZERO {
            self.counts[bucket_of(wait)].fetch_add(1, Ordering::Relaxed);
            self.sum_ns.fetch_add(wait.0, Ordering::Relaxed);
        }
    }

    /// Takes back a wait counted by `observe` (its grant was cancelled);
    /// never below zero.
    pub fn forget(&self, wait: Nanos) {
        if wait > Nanos::ZERO {
            let less = |by: u64| move |n: u64| Some(n.saturating_sub(by));
            let bucket = &self.counts[bucket_of(wait)];
            let _ = bucket.fetch_update(Ordering::Relaxed, Ordering::Relaxed, less(1));
            let _ = (self.sum_ns).fetch_update(Ordering::Relaxed, Ordering::Relaxed, less(wait.0));
        }
    }

    /// The waits per bucket (not cumulative) and their total.
    pub fn snapshot(&self) -> ([u64; WAIT_BOUNDS.len() + 1], Nanos) {
        let counts = std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed));
        (counts, Nanos(self.sum_ns.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_lands_in_the_first_bucket_whose_bound_it_does_not_exceed() {
        let waits = WaitHistogram::default();
        for wait in [0, 1, 5 * MS, 5 * MS + 1, SEC, 301 * SEC] {
            waits.observe(Nanos(wait));
        }
        let (counts, sum) = waits.snapshot();
        assert_eq!(counts[0], 2, "1 ns and exactly 5 ms");
        assert_eq!(counts[1], 1, "just above 5 ms");
        assert_eq!(counts[7], 1, "exactly 1 s");
        assert_eq!(counts[WAIT_BOUNDS.len()], 1, "above every bound");
        assert_eq!(counts.iter().sum::<u64>(), 5, "a zero wait is not counted");
        assert_eq!(sum, Nanos(1 + 10 * MS + 1 + SEC + 301 * SEC));
        waits.forget(Nanos(SEC));
        waits.forget(Nanos::ZERO);
        let (counts, sum) = waits.snapshot();
        assert_eq!(counts[7], 0);
        assert_eq!(sum, Nanos(1 + 10 * MS + 1 + 301 * SEC));
        waits.forget(Nanos(SEC));
        assert_eq!(waits.snapshot().0[7], 0, "never below zero");
    }

    #[test]
    fn the_bounds_rise() {
        assert!(WAIT_BOUNDS.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
