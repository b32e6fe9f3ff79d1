//! The timeline of one GCRA bucket: its `tat` and the queue of its waiters,
//! with the one rule for reserving, cancelling and giving units back. Both
//! `TokenBucket` and each bucket of `KeyedLimiter` run on it.
//!
//! Reservations that must wait occupy the end of the bucket's timeline one
//! after another: the waiter of cost `c` due at `d` holds `[d + tau - c, d +
//! tau)` and the last one ends at `tat`. Giving units back removes a stretch
//! of that timeline and moves every waiter behind it up by as much, so a
//! newcomer (placed at `tat`) is never due before a waiter that arrived
//! first, and each waiter's stretch still starts no earlier than its grant:
//! the bound `capacity + rate*t` holds over every interval.
//!
//! The caller holds the queue's lock for every call here except [`Timeline::take`].
//! While anyone waits, only that lock's holder changes `tat`: a lock-free
//! take cannot fit before the last waiter is due.

use super::clock::Nanos;
use super::gcra::Gcra;
use super::limit::{decide, Reservation};
use super::queue::Queue;
use std::sync::atomic::{AtomicU64, Ordering};

/// The waiters of one bucket; each waiter's data is its cost in nanoseconds.
pub type Waiters = Queue<u64>;

/// One bucket: its rule and its `tat` (clock nanoseconds; 0 means full).
#[derive(Clone, Copy)]
pub struct Timeline<'a> {
    pub rule: &'a Gcra,
    pub tat: &'a AtomicU64,
}

impl Timeline<'_> {
    /// Takes units of `cost` at `now` if they conform; lock-free.
    #[inline]
    pub fn take(&self, now: Nanos, cost: u64) -> bool {
        self.tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                self.rule.take(Nanos(tat), now, cost).map(|t| t.0)
            })
            .is_ok()
    }

    /// Takes units of `cost` now, or reserves them and queues the waiter
    /// under the ticket `ticket(due)` gives (it must grow along the queue),
    /// unless the wait would exceed `max_wait`.
    pub fn reserve(
        &self,
        waiters: &mut Waiters,
        now: Nanos,
        cost: u64,
        max_wait: Option<Nanos>,
        ticket: impl FnOnce(Nanos) -> u64,
    ) -> Reservation {
        let mut outcome = Reservation::Now;
        let mut due = Nanos::ZERO;
        let charged = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                due = self.rule.due(Nanos(tat), now, cost);
                outcome = decide(now, due, max_wait);
                match outcome {
                    Reservation::TooLong(_) => None,
                    _ => Some(self.rule.charge(Nanos(tat), now, cost).0),
                }
            })
            .is_ok();
        if charged && matches!(outcome, Reservation::At(_)) {
            waiters.prune(now);
            let ticket = ticket(due);
            waiters.push(ticket, due, cost);
            return Reservation::At(Nanos(ticket));
        }
        outcome
    }

    /// Gives `cost` back at the boundary between granted units and the
    /// waiters (`tat` when none wait): the boundary moves back by `cost`
    /// but never before now, and the waiters with it. Returns the ticket of
    /// a waiter to wake.
    pub fn give_back(&self, waiters: &mut Waiters, now: Nanos, cost: u64) -> Option<u64> {
        let wake = waiters.prune(now);
        let Some(head) = waiters.front() else {
            let _ = self
                .tat
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                    Some(self.rule.refund(Nanos(tat), now, cost).0)
                });
            return wake;
        };
        // The head's stretch starts after now (it is not due yet).
        let boundary = head.due.0 + self.rule.tau().0 - head.data;
        let shift = cost.min(boundary.saturating_sub(now.0));
        self.shift(waiters, 0, shift);
        wake.or(waiters.first_stale())
    }

    /// Gives back the reservation `ticket` (of `cost` when the queue no
    /// longer knows it): a waiter still waiting leaves its stretch and
    /// everyone behind moves up by it; one already due gives its units
    /// back. Returns the ticket of a waiter to wake.
    pub fn cancel(&self, waiters: &mut Waiters, now: Nanos, ticket: u64, cost: u64) -> Option<u64> {
        let cost = match waiters.remove(ticket) {
            Some((waiter, behind)) if waiter.due > now => {
                let from = waiters
                    .iter()
                    .position(|w| w.ticket > ticket)
                    .unwrap_or(waiters.len());
                self.shift(waiters, from, waiter.data);
                return behind.or(waiters.first_stale());
            }
            Some((waiter, _)) => waiter.data,
            None => cost,
        };
        self.give_back(waiters, now, cost)
    }

    /// Back to full, forgetting every reservation: returns the tickets of
    /// the waiters, all granted now.
    pub fn reset(&self, waiters: &mut Waiters) -> Vec<u64> {
        self.tat.store(0, Ordering::Release);
        waiters.clear()
    }

    /// Moves the waiters from position `from` on, and `tat`, `by` earlier.
    fn shift(&self, waiters: &mut Waiters, from: usize, by: u64) {
        for waiter in waiters.iter_mut().skip(from) {
            waiter.due = Nanos(waiter.due.0.saturating_sub(by));
        }
        self.tat.fetch_sub(by, Ordering::AcqRel);
    }
}
