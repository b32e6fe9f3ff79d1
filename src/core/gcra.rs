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

use super::clock::Nanos;

pub use super::bucket::TokenBucket;

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
}
