//! The limiter protocol shared by TokenBucket, SlidingWindow and FixedWindow.
//!
//! Waiting is by reservation, not polling: [`Limit::reserve`] decides at
//! once, takes the units for a moment in the future if they are not there
//! now, and tells the caller when that moment is. The caller sleeps exactly
//! that long (a thread in Rust, a task on its own event loop) and, if it is
//! cancelled first, hands the units back with [`Limit::cancel`]. Because each
//! reservation is placed after the previous one, waiters are served in
//! arrival order and the long-run rate is exact.

use super::clock::{Clock, Nanos};
pub use super::queue::Check;
use std::fmt;

/// What a request for units became.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// Granted now; nothing to wait for.
    Now,
    /// Reserved under this ticket: the units are the caller's at a time
    /// later than now, which [`Limit::check`] tells (the ticket is the due
    /// time as first reserved; it moves earlier when one ahead gives back).
    At(Nanos),
    /// Refused without taking anything: granting would need this long a wait,
    /// longer than the caller allowed.
    TooLong(Nanos),
}

/// Bad amounts, caught before any state is touched.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LimitError {
    /// `n` was zero, negative or NaN.
    NotPositive(f64),
    /// `n` was more than the limiter can ever hold, so no wait would do.
    ExceedsCapacity { n: f64, capacity: f64 },
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitError::NotPositive(n) => write!(f, "n must be a finite number > 0, got {n}"),
            LimitError::ExceedsCapacity { n, capacity } => write!(
                f,
                "n={n} is more than this limiter can ever grant at once (capacity {capacity})"
            ),
        }
    }
}

/// Checks that `n` is a grantable amount for a limiter of `capacity`.
#[inline]
pub fn check_amount(n: f64, capacity: f64) -> Result<(), LimitError> {
    if n.is_nan() || n <= 0.0 || n.is_infinite() {
        return Err(LimitError::NotPositive(n));
    }
    if n > capacity {
        return Err(LimitError::ExceedsCapacity { n, capacity });
    }
    Ok(())
}

/// The protocol every limiter implements; the bindings are written once
/// against it.
pub trait Limit: Send + Sync {
    /// The clock this limiter reads and waits on.
    fn clock(&self) -> &Clock;

    /// Takes `n` units now if they are there; never waits, never reserves.
    fn try_acquire(&self, n: f64) -> Result<bool, LimitError>;

    /// Takes `n` units now, or reserves them for the earliest time they will
    /// be there, unless that is more than `max_wait` away (then nothing is
    /// taken). `None` waits as long as needed.
    fn reserve(&self, n: f64, max_wait: Option<Nanos>) -> Result<Reservation, LimitError>;

    /// Gives back the reservation `ticket` of `n` units that its waiter
    /// abandoned. Returns the ticket of a waiter to wake, whose due time
    /// moved earlier (see [`crate::core::queue`]).
    fn cancel(&self, n: f64, ticket: Nanos) -> Option<u64>;

    /// Where the reservation `ticket` stands: still waiting until a time, or
    /// granted. Limiters whose waiters never move up keep the due time as
    /// the ticket.
    fn check(&self, ticket: Nanos) -> Check {
        if ticket > self.clock().now() {
            Check::Waiting(ticket)
        } else {
            Check::Granted(None)
        }
    }

    /// How long until `n` units would be granted; zero when now.
    fn wait_time(&self, n: f64) -> Result<Nanos, LimitError>;
}

/// Decides a reservation from the wait it needs: shared by the limiters so
/// that "too long" means the same everywhere.
#[inline]
pub fn decide(now: Nanos, due: Nanos, max_wait: Option<Nanos>) -> Reservation {
    if due <= now {
        return Reservation::Now;
    }
    let wait = due - now;
    match max_wait {
        Some(limit) if wait > limit => Reservation::TooLong(wait),
        _ => Reservation::At(due),
    }
}
