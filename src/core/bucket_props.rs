//! Property tests of `TokenBucket` under random sequences of acquire,
//! try_acquire, refund, cancel and reset on a manual clock: the bound
//! `capacity + rate*t` over every interval, FIFO grants, and waiters that
//! move up when one ahead gives back.

use super::*;
use crate::core::clock::ManualClock;
use proptest::prelude::*;
use std::sync::Arc;

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Try(u8),
    Reserve(u8),
    Cancel(usize),
    Refund(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u64..3_000).prop_map(Op::Advance),
        (1u8..=4).prop_map(Op::Try),
        (1u8..=4).prop_map(Op::Reserve),
        any::<usize>().prop_map(Op::Cancel),
        (1u8..=4).prop_map(Op::Refund),
    ]
}

struct Run {
    bucket: TokenBucket,
    clock: Arc<ManualClock>,
    /// Waiting reservations: (ticket, units, arrival order).
    waiting: Vec<(Nanos, f64, usize)>,
    /// (time, +units granted or -units refunded).
    events: Vec<(Nanos, f64)>,
    /// Grant time of each reservation, by arrival order.
    granted_order: Vec<(usize, Nanos)>,
    arrivals: usize,
    owned: f64,
}

impl Run {
    fn due(&self, ticket: Nanos) -> Option<Nanos> {
        match self.bucket.check(ticket) {
            Check::Waiting(due) => Some(due),
            Check::Granted(_) => None,
        }
    }

    /// Grants, at now, every waiter that is due.
    fn collect(&mut self) {
        let now = self.clock.now();
        let mut still = Vec::new();
        for (ticket, n, order) in std::mem::take(&mut self.waiting) {
            match self.due(ticket) {
                Some(_) => still.push((ticket, n, order)),
                None => {
                    self.events.push((now, n));
                    self.granted_order.push((order, now));
                    self.owned += n;
                }
            }
        }
        self.waiting = still;
    }

    fn advance(&mut self, ms: u64) {
        let target = self.clock.now() + Nanos(ms * 1_000_000);
        loop {
            let next = self.waiting.iter().filter_map(|w| self.due(w.0)).min();
            match next {
                Some(due) if due <= target => {
                    self.clock.advance_to(due);
                    self.collect();
                }
                _ => break,
            }
        }
        self.clock.advance_to(target);
        self.collect();
    }

    fn step(&mut self, op: Op) {
        let now = self.clock.now();
        match op {
            Op::Advance(ms) => self.advance(ms),
            Op::Try(n) => {
                if self.bucket.try_acquire(f64::from(n)).unwrap() {
                    assert!(self.waiting.is_empty(), "try_acquire jumped the queue");
                    self.events.push((now, f64::from(n)));
                    self.owned += f64::from(n);
                }
            }
            Op::Reserve(n) => {
                let n = f64::from(n);
                self.arrivals += 1;
                match self.bucket.reserve(n, None).unwrap() {
                    Reservation::Now => {
                        assert!(self.waiting.is_empty(), "reserve jumped the queue");
                        self.events.push((now, n));
                        self.granted_order.push((self.arrivals, now));
                        self.owned += n;
                    }
                    Reservation::At(ticket) => self.waiting.push((ticket, n, self.arrivals)),
                    Reservation::TooLong(_) => unreachable!(),
                }
            }
            Op::Cancel(i) if !self.waiting.is_empty() => {
                let (ticket, n, _) = self.waiting.remove(i % self.waiting.len());
                let before: Vec<_> = self.waiting.iter().map(|w| self.due(w.0)).collect();
                let cost = self.bucket.rule().cost(n);
                self.bucket.cancel(n, ticket);
                for (w, old) in self.waiting.iter().zip(before) {
                    let (Some(old), Some(new)) = (old, self.due(w.0)) else {
                        continue;
                    };
                    assert!(new <= old, "a cancel pushed a waiter back");
                    if w.0 > ticket {
                        assert_eq!(new.0, old.0 - cost, "a waiter behind did not move up");
                    }
                }
                self.collect();
            }
            Op::Cancel(_) => {}
            Op::Refund(n) => {
                let n = f64::from(n).min(self.owned);
                if n > 0.0 {
                    self.bucket.refund(n);
                    self.events.push((now, -n));
                    self.owned -= n;
                    self.collect();
                }
            }
        }
    }

    fn check_bound(&self) {
        let rule = self.bucket.rule();
        let mut events = self.events.clone();
        events.sort_by_key(|e| e.0);
        for (i, start) in events.iter().enumerate() {
            let mut sum = 0.0;
            for end in &events[i..] {
                sum += end.1;
                let t = (end.0 - start.0).as_secs_f64();
                let bound = rule.capacity() + rule.rate() * t + 1e-6;
                assert!(sum <= bound, "{sum} units in {t} s (bound {bound})");
            }
        }
    }

    fn check_fifo(&self) {
        let mut by_arrival = self.granted_order.clone();
        by_arrival.sort_by_key(|g| g.0);
        for pair in by_arrival.windows(2) {
            assert!(pair[0].1 <= pair[1].1, "granted out of order: {pair:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn token_bucket_keeps_the_bound_and_the_order(
        rate in prop_oneof![Just(1.0), Just(3.0), Just(0.5)],
        capacity in 4.0f64..8.0,
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let clock = Arc::new(ManualClock::new(Nanos(1_000_000_000)));
        let bucket = TokenBucket::new(rate, capacity.floor(), Clock::Manual(clock.clone())).unwrap();
        let mut run = Run {
            bucket,
            clock,
            waiting: Vec::new(),
            events: Vec::new(),
            granted_order: Vec::new(),
            arrivals: 0,
            owned: 0.0,
        };
        for op in ops {
            run.step(op);
        }
        run.advance(60_000);
        prop_assert!(run.waiting.is_empty());
        run.check_bound();
        run.check_fifo();
    }
}
