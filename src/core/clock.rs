//! Time, injected.
//!
//! Every primitive reads time through a [`Clock`], in integer nanoseconds
//! ([`Nanos`]) so that units never mix. The monotonic clock is the default;
//! [`ManualClock`] is the test clock: waiting on it advances it instead of
//! sleeping, so an hour of limiter time runs in microseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A point in time or a duration, in integer nanoseconds.
///
/// Inside the core every time is a `Nanos`; float seconds exist only at the
/// Python boundary and are converted by [`Nanos::from_secs_f64`] and
/// [`Nanos::as_secs_f64`], nowhere else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub u64);

impl Nanos {
    pub const ZERO: Nanos = Nanos(0);
    pub const MAX: Nanos = Nanos(u64::MAX);

    /// Seconds to nanoseconds, saturating; the caller has validated `secs`
    /// (finite, not negative).
    #[inline]
    pub fn from_secs_f64(secs: f64) -> Nanos {
        let ns = secs * 1e9;
        if ns >= u64::MAX as f64 {
            Nanos::MAX
        } else if ns > 0.0 {
            Nanos(ns.round() as u64)
        } else {
            Nanos::ZERO
        }
    }

    #[inline]
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    #[inline]
    pub fn saturating_sub(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(other.0))
    }

    #[inline]
    pub fn saturating_add(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(other.0))
    }
}

/// The monotonic clock: the CPU's invariant TSC where it has one (read in
/// ~12 ns here, against ~30-100 ns for `clock_gettime` on this VM, which
/// made the clock read most of the cost of `try_acquire`), calibrated
/// against the OS monotonic clock by `quanta`, which falls back to the OS
/// clock where the TSC is not reliable. Measured drift against the OS clock:
/// under 2 ppm. Readings are nanoseconds since the first use, offset by one
/// second so that a reading is never 0 (0 is the "never used" state of a
/// bucket).
struct MonotonicSource {
    clock: quanta::Clock,
    origin: u64,
}

fn monotonic() -> &'static MonotonicSource {
    static SOURCE: OnceLock<MonotonicSource> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let clock = quanta::Clock::new();
        let origin = clock.raw();
        MonotonicSource { clock, origin }
    })
}

const MONOTONIC_OFFSET: u64 = 1_000_000_000;

/// A test clock that only moves when told to.
///
/// Shared by reference: every primitive built with the same `ManualClock`
/// sees the same time. Waits on it advance it to the wait's end (virtual
/// time); `fetch_max` keeps it monotonic under concurrent waiters.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    pub fn new(start: Nanos) -> Self {
        ManualClock {
            now: AtomicU64::new(start.0),
        }
    }

    #[inline]
    pub fn now(&self) -> Nanos {
        Nanos(self.now.load(Ordering::Acquire))
    }

    /// The latest time a manual clock reaches (~292 years). Every limiter
    /// adds at most its burst tolerance (under 9e18 ns) to a time, so no sum
    /// of a time and a cost can overflow: a clock nearer `u64::MAX` would make
    /// saturated sums compare equal and grant without limit.
    pub const LATEST: Nanos = Nanos(1 << 63);

    /// Moves the clock forward by `by` (never past [`Self::LATEST`]),
    /// returning the new time.
    pub fn advance(&self, by: Nanos) -> Nanos {
        let step = |now: u64| Some(now.saturating_add(by.0).min(Self::LATEST.0).max(now));
        let before = self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, step)
            .unwrap_or_else(|now| now);
        Nanos(step(before).unwrap_or(before))
    }

    /// Moves the clock forward to `to` if it is not there already (never
    /// past [`Self::LATEST`]).
    pub fn advance_to(&self, to: Nanos) {
        self.now
            .fetch_max(to.0.min(Self::LATEST.0), Ordering::AcqRel);
    }
}

/// Where a primitive reads its time. An enum rather than a trait object so
/// that the hot path is a branch, not an indirect call.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    #[default]
    Monotonic,
    Manual(Arc<ManualClock>),
}

impl Clock {
    #[inline]
    pub fn now(&self) -> Nanos {
        match self {
            Clock::Monotonic => {
                let source = monotonic();
                let elapsed = source
                    .clock
                    .delta_as_nanos(source.origin, source.clock.raw());
                Nanos(elapsed + MONOTONIC_OFFSET)
            }
            Clock::Manual(clock) => clock.now(),
        }
    }

    /// Waits until `deadline`, or at most `max_slice` of real time, and
    /// returns whether the deadline has been reached. Callers loop, checking
    /// for interrupts between slices. A manual clock jumps to the deadline.
    pub fn sleep_until(&self, deadline: Nanos, max_slice: Duration) -> bool {
        match self {
            Clock::Monotonic => {
                let now = self.now();
                if now >= deadline {
                    return true;
                }
                let left = Duration::from_nanos((deadline - now).0);
                std::thread::sleep(left.min(max_slice));
                self.now() >= deadline
            }
            Clock::Manual(clock) => {
                clock.advance_to(deadline);
                true
            }
        }
    }
}

impl std::ops::Add for Nanos {
    type Output = Nanos;
    #[inline]
    fn add(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(rhs.0))
    }
}

impl std::ops::Sub for Nanos {
    type Output = Nanos;
    /// Saturating: a time difference that would be negative is zero.
    #[inline]
    fn sub(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(rhs.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_trip_through_nanos() {
        assert_eq!(Nanos::from_secs_f64(1.5), Nanos(1_500_000_000));
        assert_eq!(Nanos(2_500_000_000).as_secs_f64(), 2.5);
        assert_eq!(Nanos::from_secs_f64(-1.0), Nanos::ZERO);
        assert_eq!(Nanos::from_secs_f64(1e30), Nanos::MAX);
    }

    #[test]
    fn manual_clock_moves_only_forward() {
        let clock = ManualClock::new(Nanos(10));
        clock.advance_to(Nanos(5));
        assert_eq!(clock.now(), Nanos(10));
        clock.advance(Nanos(5));
        assert_eq!(clock.now(), Nanos(15));
    }

    #[test]
    fn manual_clock_never_wraps_around() {
        let clock = ManualClock::new(Nanos(10));
        assert_eq!(clock.advance(Nanos::MAX), ManualClock::LATEST);
        assert_eq!(clock.advance(Nanos::MAX), ManualClock::LATEST);
        clock.advance_to(Nanos::MAX);
        assert_eq!(clock.now(), ManualClock::LATEST);
    }

    #[test]
    fn sleeping_on_a_manual_clock_advances_it() {
        let manual = Arc::new(ManualClock::new(Nanos::ZERO));
        let clock = Clock::Manual(manual.clone());
        assert!(clock.sleep_until(Nanos(3_000_000_000), Duration::from_millis(1)));
        assert_eq!(manual.now(), Nanos(3_000_000_000));
    }

    #[test]
    fn monotonic_clock_never_reads_zero() {
        assert!(Clock::Monotonic.now() > Nanos::ZERO);
    }
}
