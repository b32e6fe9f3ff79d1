//! `TokenBucket`: the GCRA rule of `core::gcra` on one atomic word, with a
//! queue of the reservations that wait (the rule of `core::timeline`).

use super::clock::{Clock, Nanos};
use super::gcra::Gcra;
use super::limit::{check_amount, Limit, LimitError, Reservation};
use super::queue::Check;
use super::timeline::{Timeline, Waiters};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A token bucket whose whole state is one atomic word, replaced by
/// compare-and-swap: no lock on any path that grants now.
///
/// Reservations that must wait also enter a queue (under a lock, on the
/// slow path only); a cancel or a refund moves those behind up, in order
/// (see [`Timeline`]).
#[derive(Debug)]
pub struct TokenBucket {
    rule: Gcra,
    /// Theoretical arrival time in clock nanoseconds; 0 means never used.
    tat: AtomicU64,
    clock: Clock,
    waiters: Mutex<Queued>,
}

#[derive(Debug, Default)]
struct Queued {
    queue: Waiters,
    last_ticket: u64,
}

impl TokenBucket {
    pub fn new(rate: f64, capacity: f64, clock: Clock) -> Result<TokenBucket, String> {
        Gcra::check(rate, capacity)?;
        Ok(TokenBucket {
            rule: Gcra::new(rate, capacity),
            tat: AtomicU64::new(0),
            clock,
            waiters: Mutex::new(Queued::default()),
        })
    }

    pub fn rule(&self) -> &Gcra {
        &self.rule
    }

    #[inline]
    fn line(&self) -> Timeline<'_> {
        Timeline {
            rule: &self.rule,
            tat: &self.tat,
        }
    }

    /// Units available now (negative while reservations are outstanding).
    pub fn available(&self) -> f64 {
        let tat = Nanos(self.tat.load(Ordering::Acquire));
        self.rule.available(tat, self.clock.now())
    }

    /// Gives `n` units back, never above capacity; waiters move up first.
    /// Returns the ticket of a waiter to wake.
    pub fn refund(&self, n: f64) -> Option<u64> {
        let cost = self.rule.cost(n.min(self.rule.capacity()));
        let mut waiters = self.waiters.lock();
        let now = self.clock.now();
        self.line().give_back(&mut waiters.queue, now, cost)
    }

    /// Back to full, forgetting every reservation: its waiters are granted
    /// at once. Returns their tickets, to wake.
    pub fn reset(&self) -> Vec<u64> {
        let mut waiters = self.waiters.lock();
        self.line().reset(&mut waiters.queue)
    }

    /// The number of reservations still waiting.
    pub fn waiting(&self) -> usize {
        let mut waiters = self.waiters.lock();
        waiters.queue.prune(self.clock.now());
        waiters.queue.len()
    }
}

impl Limit for TokenBucket {
    fn clock(&self) -> &Clock {
        &self.clock
    }

    #[inline]
    fn try_acquire(&self, n: f64) -> Result<bool, LimitError> {
        check_amount(n, self.rule.capacity())?;
        Ok(self.line().take(self.clock.now(), self.rule.cost(n)))
    }

    fn reserve(&self, n: f64, max_wait: Option<Nanos>) -> Result<Reservation, LimitError> {
        check_amount(n, self.rule.capacity())?;
        let cost = self.rule.cost(n);
        // Lock-free when the units are there now; a wait takes the queue's lock.
        if self.line().take(self.clock.now(), cost) {
            return Ok(Reservation::Now);
        }
        let mut waiters = self.waiters.lock();
        let now = self.clock.now();
        let Queued { queue, last_ticket } = &mut *waiters;
        Ok(self.line().reserve(queue, now, cost, max_wait, |due| {
            *last_ticket = due.0.max(*last_ticket + 1);
            *last_ticket
        }))
    }

    fn cancel(&self, n: f64, ticket: Nanos) -> Option<u64> {
        check_amount(n, self.rule.capacity()).ok()?;
        let mut waiters = self.waiters.lock();
        let now = self.clock.now();
        let cost = self.rule.cost(n);
        self.line().cancel(&mut waiters.queue, now, ticket.0, cost)
    }

    fn check(&self, ticket: Nanos) -> Check {
        let mut waiters = self.waiters.lock();
        waiters.queue.check(ticket.0, self.clock.now())
    }

    fn wait_time(&self, n: f64) -> Result<Nanos, LimitError> {
        check_amount(n, self.rule.capacity())?;
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

    fn due(b: &TokenBucket, ticket: Nanos) -> Nanos {
        match b.check(ticket) {
            Check::Waiting(due) => due,
            Check::Granted(_) => b.clock.now(),
        }
    }

    #[test]
    fn cancelling_a_reservation_moves_those_behind_it_up_in_order() {
        // capacity 1, rate 1: A due at 1 s, B at 2 s, C at 3 s; A cancels.
        let (b, clock) = bucket(1.0, 1.0);
        assert!(b.try_acquire(1.0).unwrap());
        let tickets: Vec<Nanos> = (0..3)
            .map(|_| match b.reserve(1.0, None).unwrap() {
                Reservation::At(t) => t,
                other => panic!("expected a reservation, got {other:?}"),
            })
            .collect();
        clock.advance(Nanos(SECOND / 2));
        assert_eq!(b.cancel(1.0, tickets[0]), Some(tickets[1].0));
        assert_eq!(due(&b, tickets[1]), Nanos(SECOND));
        assert_eq!(due(&b, tickets[2]), Nanos(2 * SECOND));
        // A newcomer queues behind them, not on top of them.
        let Reservation::At(newcomer) = b.reserve(1.0, None).unwrap() else {
            panic!("expected a reservation")
        };
        assert_eq!(due(&b, newcomer), Nanos(3 * SECOND));
    }

    #[test]
    fn a_refund_with_waiters_queued_moves_them_up_not_a_newcomer_ahead() {
        let (b, _) = bucket(1.0, 6.0);
        assert!(b.try_acquire(6.0).unwrap());
        let Reservation::At(waiter) = b.reserve(6.0, None).unwrap() else {
            panic!("expected a reservation")
        };
        assert_eq!(due(&b, waiter), Nanos(6 * SECOND));
        b.refund(6.0);
        assert_eq!(due(&b, waiter), Nanos::ZERO + b.clock.now());
        // The refund went to the waiter: a newcomer still waits a bucket.
        assert!(!b.try_acquire(1.0).unwrap());
        assert_eq!(b.wait_time(6.0).unwrap(), Nanos(6 * SECOND));
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

#[cfg(test)]
#[path = "bucket_props.rs"]
mod props;
