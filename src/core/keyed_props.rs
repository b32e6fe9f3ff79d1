//! Property tests of `KeyedLimiter` under random sequences of acquire,
//! try_acquire, refund, cancel and time on a manual clock, over a few keys:
//! for each key, the bound `capacity + rate*t` over every interval, grants
//! in arrival order, and waiters that move up when one ahead gives back.

use super::*;
use crate::core::clock::ManualClock;
use crate::core::Check;
use proptest::prelude::*;
use std::sync::Arc;

const KEYS: [&str; 3] = ["a", "b", "a-much-longer-key-stored-on-the-heap"];

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Try(usize, u8),
    Reserve(usize, u8),
    Cancel(usize),
    Refund(usize, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    prop_oneof![
        (1u64..3_000).prop_map(Op::Advance),
        (key.clone(), 1u8..=4).prop_map(|(k, n)| Op::Try(k, n)),
        (key.clone(), 1u8..=4).prop_map(|(k, n)| Op::Reserve(k, n)),
        any::<usize>().prop_map(Op::Cancel),
        (key, 1u8..=4).prop_map(|(k, n)| Op::Refund(k, n)),
    ]
}

/// A waiting reservation: its key, ticket, units and arrival order.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    key: usize,
    ticket: Nanos,
    n: f64,
    order: usize,
}

struct Run {
    limiter: KeyedLimiter,
    clock: Arc<ManualClock>,
    waiting: Vec<Waiting>,
    /// Per key: (time, +units granted or -units refunded).
    events: Vec<Vec<(Nanos, f64)>>,
    /// Per key: grant time of each reservation, by arrival order.
    granted: Vec<Vec<(usize, Nanos)>>,
    owned: Vec<f64>,
    arrivals: usize,
}

impl Run {
    fn due(&self, w: &Waiting) -> Option<Nanos> {
        match self.limiter.check(KEYS[w.key], w.ticket) {
            Check::Waiting(due) => Some(due),
            Check::Granted(_) => None,
        }
    }

    fn grant(&mut self, key: usize, n: f64, order: Option<usize>) {
        let now = self.clock.now();
        self.events[key].push((now, n));
        if let Some(order) = order {
            self.granted[key].push((order, now));
        }
        self.owned[key] += n;
    }

    /// Grants, at now, every waiter that is due.
    fn collect(&mut self) {
        for w in std::mem::take(&mut self.waiting) {
            match self.due(&w) {
                Some(_) => self.waiting.push(w),
                None => {
                    self.limiter.finish(KEYS[w.key]);
                    self.grant(w.key, w.n, Some(w.order));
                }
            }
        }
    }

    fn advance(&mut self, ms: u64) {
        let target = self.clock.now() + Nanos(ms * 1_000_000);
        while let Some(due) = self.waiting.iter().filter_map(|w| self.due(w)).min() {
            if due > target {
                break;
            }
            self.clock.advance_to(due);
            self.collect();
        }
        self.clock.advance_to(target);
        self.collect();
    }

    fn queued(&self, key: usize) -> bool {
        self.waiting.iter().any(|w| w.key == key)
    }

    fn cancel(&mut self, i: usize) {
        let gone = self.waiting.remove(i % self.waiting.len());
        let key = KEYS[gone.key];
        let before: Vec<_> = self.waiting.iter().map(|w| self.due(w)).collect();
        let cost = self.limiter.rule_of(key).cost(gone.n);
        self.limiter.cancel(key, gone.n, gone.ticket);
        for (w, old) in self.waiting.iter().zip(before) {
            let (Some(old), Some(new)) = (old, self.due(w)) else {
                continue;
            };
            assert!(new <= old, "a cancel pushed a waiter back");
            if w.key == gone.key && w.ticket > gone.ticket {
                assert_eq!(new.0, old.0 - cost, "a waiter behind did not move up");
            } else if w.key != gone.key {
                assert_eq!(new, old, "a cancel moved another key's waiter");
            }
        }
        self.collect();
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Advance(ms) => self.advance(ms),
            Op::Try(key, n) => {
                if self.limiter.try_acquire(KEYS[key], f64::from(n)).unwrap() {
                    assert!(!self.queued(key), "try_acquire jumped the queue");
                    self.grant(key, f64::from(n), None);
                }
            }
            Op::Reserve(key, n) => {
                let n = f64::from(n);
                self.arrivals += 1;
                let order = self.arrivals;
                match self.limiter.reserve(KEYS[key], n, None).unwrap() {
                    Reservation::Now => {
                        assert!(!self.queued(key), "reserve jumped the queue");
                        self.grant(key, n, Some(order));
                    }
                    Reservation::At(ticket) => self.waiting.push(Waiting {
                        key,
                        ticket,
                        n,
                        order,
                    }),
                    Reservation::TooLong(_) => unreachable!(),
                }
            }
            Op::Cancel(i) if !self.waiting.is_empty() => self.cancel(i),
            Op::Cancel(_) => {}
            Op::Refund(key, n) => {
                let n = f64::from(n).min(self.owned[key]);
                if n > 0.0 {
                    self.limiter.refund(KEYS[key], n);
                    let now = self.clock.now();
                    self.events[key].push((now, -n));
                    self.owned[key] -= n;
                    self.collect();
                }
            }
        }
    }

    fn check_bound(&self, key: usize) {
        let rule = self.limiter.rule_of(KEYS[key]);
        let mut events = self.events[key].clone();
        events.sort_by_key(|e| e.0);
        for (i, start) in events.iter().enumerate() {
            let mut sum = 0.0;
            for end in &events[i..] {
                sum += end.1;
                let t = (end.0 - start.0).as_secs_f64();
                let bound = rule.capacity() + rule.rate() * t + 1e-6;
                assert!(
                    sum <= bound,
                    "{}: {sum} units in {t} s (bound {bound})",
                    KEYS[key]
                );
            }
        }
    }

    fn check_fifo(&self, key: usize) {
        let mut by_arrival = self.granted[key].clone();
        by_arrival.sort_by_key(|g| g.0);
        for pair in by_arrival.windows(2) {
            assert!(pair[0].1 <= pair[1].1, "granted out of order: {pair:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_key_keeps_the_bound_and_the_order(
        rate in prop_oneof![Just(1.0), Just(3.0), Just(0.5)],
        capacity in 4.0f64..8.0,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let clock = Arc::new(ManualClock::new(Nanos(1_000_000_000)));
        let overrides = vec![(KEYS[1].to_string(), rate * 2.0, capacity.floor() + 1.0)];
        let limiter = KeyedLimiter::new(
            rate, capacity.floor(), overrides, 5.0, Clock::Manual(clock.clone()),
        ).unwrap();
        let mut run = Run {
            limiter,
            clock,
            waiting: Vec::new(),
            events: vec![Vec::new(); KEYS.len()],
            granted: vec![Vec::new(); KEYS.len()],
            owned: vec![0.0; KEYS.len()],
            arrivals: 0,
        };
        for op in ops {
            run.step(op);
        }
        run.advance(120_000);
        prop_assert!(run.waiting.is_empty());
        for key in 0..KEYS.len() {
            run.check_bound(key);
            run.check_fifo(key);
        }
        // Every key idle and full again: nothing left, no queue kept.
        prop_assert_eq!(run.limiter.len(), 0);
    }
}
