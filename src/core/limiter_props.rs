//! Property tests of the `Limiter` budgets under random sequences of
//! acquire, cancel (waiting or granted), reconcile, pause and adopt on a
//! manual clock, for several sets of budgets: every
//! budget within `capacity + rate*t` over every interval (counting each
//! grant's least amount at its grant time: its estimate, or less once it
//! reconciled below), grants in arrival order, waiters that move up.

use super::*;
use crate::core::clock::ManualClock;
use proptest::prelude::*;
use std::sync::Arc;

const MS: u64 = 1_000_000;

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Acquire(u8, u8),
    Cancel(usize),
    CancelGranted(usize),
    Reconcile(usize, u8, u8),
    Pause(u64),
    Adopt(usize, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..4_000).prop_map(Op::Advance),
        4 => (0u8..=6, 0u8..=6).prop_map(|(a, b)| Op::Acquire(a, b)),
        2 => any::<usize>().prop_map(Op::Cancel),
        1 => any::<usize>().prop_map(Op::CancelGranted),
        2 => (any::<usize>(), 0u8..=6, 0u8..=6).prop_map(|(i, a, b)| Op::Reconcile(i, a, b)),
        1 => (1u64..3_000).prop_map(Op::Pause),
        1 => (any::<usize>(), 0u8..=6).prop_map(|(b, n)| Op::Adopt(b, n)),
    ]
}

/// The budgets tried, with `burst`: a request and a token budget, a burst
/// below the period's amount, input and output tokens apart.
fn configs() -> impl Strategy<Value = (Vec<(Budget, f64)>, Option<f64>)> {
    prop_oneof![
        Just((vec![(Budget::Rps, 2.0), (Budget::Tpm, 12.0)], None)),
        Just((vec![(Budget::Rpm, 30.0), (Budget::Tpm, 30.0)], Some(3.0))),
        Just((
            vec![
                (Budget::Rps, 1.0),
                (Budget::Itpm, 12.0),
                (Budget::Otpm, 6.0)
            ],
            None
        )),
    ]
}

/// One grant as the bound counts it: its time and units per budget.
#[derive(Clone, Debug)]
struct Event {
    at: Nanos,
    units: [f64; BUDGETS],
}

fn units(amounts: &Amounts) -> [f64; BUDGETS] {
    Budget::ALL.map(|b| amounts.units(b))
}

struct Run {
    budgets: Budgets,
    split: bool,
    clock: Arc<ManualClock>,
    waiting: Vec<(Grant, usize)>,
    /// Granted: the grant, the index in `events` of its grant.
    granted: Vec<(Grant, Vec<usize>)>,
    events: Vec<Event>,
    order: Vec<(usize, Nanos)>,
    arrivals: usize,
}

impl Run {
    fn due(&self, grant: &mut Grant) -> Option<Nanos> {
        match self.budgets.look(grant) {
            Check::Waiting(due) => Some(due),
            Check::Granted(_) => None,
        }
    }

    fn grant(&mut self, grant: Grant, arrival: usize) {
        assert!(grant.at <= self.clock.now(), "granted before its time");
        self.events.push(Event {
            at: grant.at,
            units: units(&grant.amounts),
        });
        self.order.push((arrival, grant.at));
        self.granted.push((grant, vec![self.events.len() - 1]));
    }

    fn collect(&mut self) {
        for (mut grant, arrival) in std::mem::take(&mut self.waiting) {
            match self.due(&mut grant) {
                Some(_) => self.waiting.push((grant, arrival)),
                None => self.grant(grant, arrival),
            }
        }
    }

    fn advance(&mut self, ms: u64) {
        let target = self.clock.now() + Nanos(ms * MS);
        loop {
            let mut next = None;
            for (grant, _) in &mut self.waiting {
                if let Check::Waiting(due) = self.budgets.look(grant) {
                    next = Some(next.map_or(due, |n: Nanos| n.min(due)));
                }
            }
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
        match op {
            Op::Advance(ms) => self.advance(ms),
            Op::Acquire(a, b) => {
                self.arrivals += 1;
                let amounts = if self.split {
                    Amounts::new(0.0, Some(f64::from(a)), Some(f64::from(b))).unwrap()
                } else {
                    Amounts::new(f64::from(a), None, None).unwrap()
                };
                let grant = self.budgets.reserve(amounts, None).unwrap();
                if grant.ticket == 0 {
                    assert!(self.waiting.is_empty(), "granted ahead of a waiter");
                    self.grant(grant, self.arrivals);
                } else {
                    self.waiting.push((grant, self.arrivals));
                }
            }
            Op::Cancel(i) if !self.waiting.is_empty() => {
                self.collect();
                if self.waiting.is_empty() {
                    return;
                }
                let (grant, _) = self.waiting.remove(i % self.waiting.len());
                let budgets = &self.budgets;
                let before: Vec<Check> = self
                    .waiting
                    .iter_mut()
                    .map(|(g, _)| budgets.look(g))
                    .collect();
                budgets.cancel(&grant);
                for ((g, _), old) in self.waiting.iter_mut().zip(before) {
                    if let (Check::Waiting(old), Check::Waiting(new)) = (old, budgets.look(g)) {
                        assert!(new <= old, "a cancel pushed a waiter back");
                    }
                }
                self.collect();
            }
            Op::CancelGranted(i) if !self.granted.is_empty() => {
                // An interrupted holder gives back what it never used.
                let (grant, events) = self.granted.remove(i % self.granted.len());
                self.budgets.cancel(&grant);
                self.events[events[0]].units = [0.0; BUDGETS];
                self.collect();
            }
            Op::Reconcile(i, a, b) if !self.granted.is_empty() => {
                let at = i % self.granted.len();
                let (grant, events) = &mut self.granted[at];
                let (a, b) = (f64::from(a), f64::from(b));
                let actual = if self.split {
                    grant.amounts.reconciled(None, Some(a), Some(b))
                } else {
                    grant.amounts.reconciled(Some(a), None, None)
                };
                let actual = actual.unwrap();
                self.budgets.reconcile(grant, actual);
                // Counted at the grant: the least of the estimate granted and
                // every later usage (a charge above the estimate comes after
                // the fact, so no limiter can bound it).
                let event = &mut self.events[events[0]];
                for (counted, now) in event.units.iter_mut().zip(units(&actual)) {
                    *counted = counted.min(now);
                }
                self.collect();
            }
            Op::Pause(ms) => {
                self.budgets.pause(Nanos(ms * MS));
                self.collect();
            }
            Op::Adopt(b, n) => {
                let budget = Budget::ALL[b % BUDGETS];
                self.budgets
                    .adopt(budget, ServerBudget::remaining(f64::from(n)));
                self.collect();
            }
            Op::Cancel(_) | Op::CancelGranted(_) | Op::Reconcile(..) => {}
        }
    }

    fn check_bound(&self, budget: Budget) {
        let Some(rule) = self.budgets.rule(budget) else {
            return;
        };
        let mut events = self.events.clone();
        events.sort_by_key(|e| e.at);
        for (i, start) in events.iter().enumerate() {
            let mut sum = 0.0;
            for end in &events[i..] {
                sum += end.units[budget as usize];
                let t = (end.at - start.at).as_secs_f64();
                let bound = rule.capacity() + rule.rate() * t + 1e-6;
                assert!(
                    sum <= bound,
                    "{}: {sum} in {t} s (bound {bound})",
                    budget.name()
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn limiter_budgets_keep_the_bound_and_the_order(
        (config, burst) in configs(),
        ops in proptest::collection::vec(op(), 1..50),
    ) {
        let clock = Arc::new(ManualClock::new(Nanos(1_000_000_000)));
        let mut limits = [None; BUDGETS];
        for (budget, amount) in &config {
            limits[*budget as usize] = Some(*amount);
        }
        let budgets = Budgets::new(limits, burst, Clock::Manual(clock.clone())).unwrap();
        let mut run = Run {
            budgets,
            split: limits[Budget::Tpm as usize].is_none(),
            clock,
            waiting: Vec::new(),
            granted: Vec::new(),
            events: Vec::new(),
            order: Vec::new(),
            arrivals: 0,
        };
        for op in ops {
            run.step(op);
        }
        run.advance(600_000);
        prop_assert!(run.waiting.is_empty());
        for budget in Budget::ALL {
            run.check_bound(budget);
        }
        let mut order = run.order.clone();
        order.sort_by_key(|o| o.0);
        for pair in order.windows(2) {
            prop_assert!(pair[0].1 <= pair[1].1, "out of order: {:?}", pair);
        }
    }
}
