//! GCRA, the generic cell rate algorithm: the one token-bucket rule of
//! ratekeeper. `TokenBucket`, `KeyedLimiter`, the `Limiter` façade and the
//! Redis script all follow it.
//!
//! A bucket of `capacity` units refilling at `rate` units/s is two numbers:
//! the cost of one unit, `1/rate` seconds, and the burst tolerance
//! `tau = capacity/rate` seconds. Its whole state is the theoretical arrival
//! time `tat`: the time at which the bucket would be full again. Taking units
//! of cost `c` at `now` is allowed when `max(tat, now) + c - tau <= now`, and
//! moves `tat` to `max(tat, now) + c`. So a full bucket is any `tat <= now`,
//! and units available now are `(tau - (tat - now)) / cost_of_one`.
//!
//! Reservation is the same rule read the other way: the earliest time `n`
//! units conform is `due = max(tat, now) + c - tau`; moving `tat` now reserves
//! them for `due`, and later reservations queue behind.
//!
//! Costs are rounded up to whole nanoseconds and `tau` is the cost of a full
//! bucket computed the same way, so any `n <= capacity` always fits in
//! `tau` and rounding can only make the bucket stricter, never looser.

use super::clock::{Clock, Nanos};
use super::limit::{check_amount, decide, Limit, LimitError, Reservation};
use std::sync::atomic::{AtomicU64, Ordering};

/// The GCRA rule for one rate and capacity: pure arithmetic on `tat`.
#[derive(Clone, Copy, Debug)]
pub struct Gcra {
    rate: f64,
    capacity: f64,
    nanos_per_unit: f64,
    cost_of_one: u64,
    tau: u64,
}

impl Gcra {
    /// The caller has validated `rate` and `capacity` as finite and > 0
    /// (see [`Gcra::check`]).
    pub fn new(rate: f64, capacity: f64) -> Gcra {
        let nanos_per_unit = 1e9 / rate;
        let cost = |n: f64| (n * nanos_per_unit).ceil() as u64;
        Gcra {
            rate,
            capacity,
            nanos_per_unit,
            cost_of_one: cost(1.0),
            tau: cost(capacity),
        }
    }

    /// Checks a rate and capacity: finite, > 0, and neither one unit nor a
    /// full bucket so slow to refill that its time overflows (over ~290
    /// years). A rate below that (1e-300 and the like) would make a unit's
    /// cost infinite, which saturates into grants without limit.
    pub fn check(rate: f64, capacity: f64) -> Result<(), String> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!("rate must be a finite number > 0, got {rate}"));
        }
        if 1e9 / rate >= 9.0e18 {
            return Err(format!(
                "rate is too small to represent: one unit would take over 9e9 seconds, got {rate:e} per second"
            ));
        }
        if !(capacity.is_finite() && capacity > 0.0) {
            return Err(format!(
                "capacity must be a finite number > 0, got {capacity}"
            ));
        }
        if capacity / rate * 1e9 >= 9.0e18 {
            return Err(format!(
                "capacity/rate must be under 9e9 seconds, got capacity={capacity}, rate={rate}"
            ));
        }
        Ok(())
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn capacity(&self) -> f64 {
        self.capacity
    }

    /// The burst tolerance: how far `tat` may run ahead of now.
    pub fn tau(&self) -> Nanos {
        Nanos(self.tau)
    }

    /// The time `n` units take to refill, rounded up.
    #[inline]
    pub fn cost(&self, n: f64) -> u64 {
        if n == 1.0 {
            self.cost_of_one
        } else {
            (n * self.nanos_per_unit).ceil() as u64
        }
    }

    /// The earliest time units of `cost` conform, never before `now`.
    #[inline]
    pub fn due(&self, tat: Nanos, now: Nanos, cost: u64) -> Nanos {
        let after = tat.max(now).0.saturating_add(cost);
        Nanos(after.saturating_sub(self.tau).max(now.0))
    }

    /// The new `tat` when units of `cost` conform at `now` (taken now,
    /// never waited for), else `None`: the rule `try_acquire` follows.
    #[inline]
    pub fn take(&self, tat: Nanos, now: Nanos, cost: u64) -> Option<Nanos> {
        let after = tat.max(now).0.saturating_add(cost);
        (after - now.0 <= self.tau).then_some(Nanos(after))
    }

    /// The new `tat` once units of `cost` are granted at `at` (`at` must be
    /// at or after their due time).
    #[inline]
    pub fn charge(&self, tat: Nanos, at: Nanos, cost: u64) -> Nanos {
        Nanos(tat.max(at).0.saturating_add(cost))
    }

    /// Units available at `now` given `tat`; negative while reservations
    /// run ahead of the refill.
    pub fn available(&self, tat: Nanos, now: Nanos) -> f64 {
        let ahead = tat.0 as f64 - now.0 as f64;
        let free = (self.tau as f64 - ahead.max(0.0)) / self.nanos_per_unit;
        // Costs are rounded up to a nanosecond; do not show that as 1e-10 units.
        (free * 1e9).round() / 1e9
    }

    /// The `tat` after giving back `cost` at `now`: never fuller than full.
    #[inline]
    pub fn refund(&self, tat: Nanos, now: Nanos, cost: u64) -> Nanos {
        Nanos(tat.0.saturating_sub(cost).max(now.0.min(tat.0)))
    }

    /// The `tat` after cancelling a reservation of `cost` due at `due`, or
    /// `None` when its units cannot be given back.
    ///
    /// Reserving for `due` set `tat` to exactly `due + tau`. While `tat` is
    /// still that, nothing was charged behind the reservation and removing
    /// its cost is exact. Once later reservations have queued behind it,
    /// their due times were computed with its cost included and they are
    /// already sleeping until them; taking the cost out of `tat` would let a
    /// new request be due at the same moment as one of them, granting more
    /// than `capacity + rate*t`. So a reservation that is not the last one
    /// loses its units (conservative: the bound always holds).
    #[inline]
    pub fn cancel(&self, tat: Nanos, due: Nanos, now: Nanos, cost: u64) -> Option<Nanos> {
        (tat.0 == due.0.saturating_add(self.tau)).then(|| self.refund(tat, now, cost))
    }
}

/// A token bucket whose whole state is one atomic word, replaced by
/// compare-and-swap: no lock on any path.
#[derive(Debug)]
pub struct TokenBucket {
    rule: Gcra,
    /// Theoretical arrival time in clock nanoseconds; 0 means never used.
    tat: AtomicU64,
    clock: Clock,
}

impl TokenBucket {
    pub fn new(rate: f64, capacity: f64, clock: Clock) -> Result<TokenBucket, String> {
        Gcra::check(rate, capacity)?;
        Ok(TokenBucket {
            rule: Gcra::new(rate, capacity),
            tat: AtomicU64::new(0),
            clock,
        })
    }

    pub fn rule(&self) -> &Gcra {
        &self.rule
    }

    /// Units available now (negative while reservations are outstanding).
    pub fn available(&self) -> f64 {
        let tat = Nanos(self.tat.load(Ordering::Acquire));
        self.rule.available(tat, self.clock.now())
    }

    /// Gives `n` units back, never above capacity.
    pub fn refund(&self, n: f64) {
        let cost = self.rule.cost(n.min(self.rule.capacity));
        self.update(|tat, now| Some(self.rule.refund(tat, now, cost)));
    }

    /// Back to full.
    pub fn reset(&self) {
        self.tat.store(0, Ordering::Release);
    }

    /// The CAS loop every state change goes through. `step` sees the current
    /// `tat` and the time, and returns the new `tat`, or `None` to leave the
    /// state as it is. Time is read once, before the loop, so a slow retry
    /// only makes the decision more conservative, never looser.
    #[inline]
    fn update(&self, mut step: impl FnMut(Nanos, Nanos) -> Option<Nanos>) -> Option<Nanos> {
        let now = self.clock.now();
        let mut current = self.tat.load(Ordering::Acquire);
        loop {
            let next = step(Nanos(current), now)?;
            match self.tat.compare_exchange_weak(
                current,
                next.0,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(now),
                Err(actual) => current = actual,
            }
        }
    }
}

impl Limit for TokenBucket {
    fn clock(&self) -> &Clock {
        &self.clock
    }

    #[inline]
    fn try_acquire(&self, n: f64) -> Result<bool, LimitError> {
        check_amount(n, self.rule.capacity)?;
        let cost = self.rule.cost(n);
        let granted = self.update(|tat, now| self.rule.take(tat, now, cost));
        Ok(granted.is_some())
    }

    fn reserve(&self, n: f64, max_wait: Option<Nanos>) -> Result<Reservation, LimitError> {
        check_amount(n, self.rule.capacity)?;
        let cost = self.rule.cost(n);
        let mut outcome = Reservation::Now;
        self.update(|tat, now| {
            outcome = decide(now, self.rule.due(tat, now, cost), max_wait);
            match outcome {
                Reservation::TooLong(_) => None,
                _ => Some(self.rule.charge(tat, now, cost)),
            }
        });
        Ok(outcome)
    }

    fn cancel(&self, n: f64, due: Nanos) {
        if check_amount(n, self.rule.capacity).is_err() {
            return;
        }
        let cost = self.rule.cost(n);
        self.update(|tat, now| self.rule.cancel(tat, due, now, cost));
    }

    fn wait_time(&self, n: f64) -> Result<Nanos, LimitError> {
        check_amount(n, self.rule.capacity)?;
        let now = self.clock.now();
        let tat = Nanos(self.tat.load(Ordering::Acquire));
        Ok(self.rule.due(tat, now, self.rule.cost(n)) - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::ManualClock;
    use std::sync::Arc;

    const SECOND: u64 = 1_000_000_000;

    fn bucket(rate: f64, capacity: f64) -> (TokenBucket, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(Nanos::ZERO));
        let bucket = TokenBucket::new(rate, capacity, Clock::Manual(clock.clone())).unwrap();
        (bucket, clock)
    }

    #[test]
    fn starts_full_and_grants_its_capacity_at_once() {
        let (b, _) = bucket(1.0, 5.0);
        for _ in 0..5 {
            assert!(b.try_acquire(1.0).unwrap());
        }
        assert!(!b.try_acquire(1.0).unwrap());
    }

    #[test]
    fn refills_at_rate() {
        let (b, clock) = bucket(2.0, 2.0);
        assert!(b.try_acquire(2.0).unwrap());
        assert!(!b.try_acquire(1.0).unwrap());
        clock.advance(Nanos(SECOND / 2));
        assert!(b.try_acquire(1.0).unwrap());
        assert!(!b.try_acquire(1.0).unwrap());
    }

    #[test]
    fn reservations_queue_in_arrival_order() {
        let (b, _) = bucket(1.0, 1.0);
        assert_eq!(b.reserve(1.0, None).unwrap(), Reservation::Now);
        assert_eq!(
            b.reserve(1.0, None).unwrap(),
            Reservation::At(Nanos(SECOND))
        );
        assert_eq!(
            b.reserve(1.0, None).unwrap(),
            Reservation::At(Nanos(2 * SECOND))
        );
        assert!((b.available() - -2.0).abs() < 1e-9);
    }

    #[test]
    fn a_reservation_beyond_max_wait_takes_nothing() {
        let (b, _) = bucket(1.0, 1.0);
        b.try_acquire(1.0).unwrap();
        let refused = b.reserve(1.0, Some(Nanos(SECOND / 2))).unwrap();
        assert_eq!(refused, Reservation::TooLong(Nanos(SECOND)));
        assert_eq!(b.wait_time(1.0).unwrap(), Nanos(SECOND));
    }

    #[test]
    fn cancelling_gives_the_units_back() {
        let (b, _) = bucket(1.0, 1.0);
        b.try_acquire(1.0).unwrap();
        let Reservation::At(due) = b.reserve(1.0, None).unwrap() else {
            panic!("expected a reservation")
        };
        b.cancel(1.0, due);
        assert_eq!(b.wait_time(1.0).unwrap(), Nanos(SECOND));
    }

    #[test]
    fn cancelling_a_reservation_with_others_behind_it_never_stacks_grants() {
        // capacity 1, rate 1: A due at 1 s, B due at 2 s; A cancels at 0.5 s.
        let (b, clock) = bucket(1.0, 1.0);
        assert!(b.try_acquire(1.0).unwrap());
        let Reservation::At(a) = b.reserve(1.0, None).unwrap() else {
            panic!("expected a reservation")
        };
        let Reservation::At(second) = b.reserve(1.0, None).unwrap() else {
            panic!("expected a reservation")
        };
        clock.advance(Nanos(SECOND / 2));
        b.cancel(1.0, a);
        let Reservation::At(third) = b.reserve(1.0, None).unwrap() else {
            panic!("expected a reservation")
        };
        assert!(third.0 >= second.0 + SECOND, "{third:?} vs {second:?}");
    }

    #[test]
    fn cancelling_the_last_reservations_in_reverse_order_gives_all_back() {
        let (b, _) = bucket(1.0, 1.0);
        assert!(b.try_acquire(1.0).unwrap());
        let Reservation::At(a) = b.reserve(1.0, None).unwrap() else {
            panic!("expected a reservation")
        };
        let Reservation::At(second) = b.reserve(1.0, None).unwrap() else {
            panic!("expected a reservation")
        };
        b.cancel(1.0, second);
        b.cancel(1.0, a);
        assert_eq!(b.wait_time(1.0).unwrap(), Nanos(SECOND));
    }

    #[test]
    fn refund_never_goes_above_capacity() {
        let (b, _) = bucket(1.0, 3.0);
        b.refund(10.0);
        assert_eq!(b.available(), 3.0);
    }

    #[test]
    fn bad_amounts_are_refused_before_touching_state() {
        let (b, _) = bucket(1.0, 3.0);
        assert!(matches!(
            b.try_acquire(0.0),
            Err(LimitError::NotPositive(_))
        ));
        assert!(matches!(
            b.try_acquire(f64::NAN),
            Err(LimitError::NotPositive(_))
        ));
        assert!(matches!(
            b.reserve(4.0, None),
            Err(LimitError::ExceedsCapacity { .. })
        ));
        assert_eq!(b.available(), 3.0);
    }

    #[test]
    fn odd_rates_never_grant_more_than_the_bound() {
        let (b, clock) = bucket(3.0, 10.0);
        let mut granted = 0u64;
        for _ in 0..10_000 {
            if b.try_acquire(1.0).unwrap() {
                granted += 1;
            }
            clock.advance(Nanos(SECOND / 7));
        }
        let elapsed = clock.now().as_secs_f64();
        assert!(granted as f64 <= 10.0 + 3.0 * elapsed);
        assert!(granted as f64 >= 0.99 * (10.0 + 3.0 * elapsed) - 1.0);
    }

    #[test]
    fn rejects_bad_configuration() {
        assert!(Gcra::check(f64::NAN, 1.0).is_err());
        assert!(Gcra::check(1.0, f64::INFINITY).is_err());
        assert!(Gcra::check(0.0, 1.0).is_err());
        assert!(Gcra::check(1e-12, 1e12).is_err());
    }
}
