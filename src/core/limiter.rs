//! The budgets of the `Limiter` façade: several GCRA buckets granted
//! together, all or nothing, in arrival order.
//!
//! Each budget (rps, rpm, rph, rpd for requests; tpm, itpm, otpm for tokens)
//! is a [`Gcra`] rule on its own `tat`. A request is granted at one time `T`
//! for every budget at once:
//!
//! `T = max(each budget's due time, pause_until, last grant)`
//!
//! and every budget is charged *at `T`*, not at now. Charging at `T` keeps
//! each budget's bound (`capacity + rate*t` over any interval) exact even when
//! `T` was pushed later by another budget or by a pause: a budget charged
//! early would count a grant as if it happened before it did, and once the
//! pause ends the held grants and new ones would bunch up beyond the bound.
//! Never granting before the last grant makes grants FIFO, so a large request
//! is never starved by a stream of small ones that would fit sooner.
//!
//! Giving units back (a cancelled wait, a `reconcile` below the estimate) is
//! the subtle part. Undoing a charge that later reservations queued behind
//! would let a new request land on top of them. Unrolled, a bucket's `tat`
//! after charges `c_j` at times `T_j` is `max(tat_0 + sum(c), max_j(T_j +
//! sum_{k>=j} c_k))`; removing charge `a` gives `max(tat - c_a, M)` where `M`
//! is the largest of those terms for the charges after `a`. Every such term
//! is at most `last_charge_at + (charged since a)`, so refunding to
//! `max(tat - c_a, last_charge_at + charged_since_a)` never loosens a bucket
//! beyond what the remaining charges allow, and is exact when nothing was
//! charged after `a`.

pub use super::budget::{Amounts, Budget, Refill, ServerBudget, BUDGETS};
use super::clock::{Clock, Nanos};
use super::gcra::Gcra;
use super::limit::{decide, Reservation};
use super::queue::{Check, Queue};
use super::waits::WaitHistogram;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A granted request: what it was charged, and what undoing it needs.
#[derive(Clone, Debug)]
pub struct Grant {
    pub at: Nanos,
    pub waited: Nanos,
    pub amounts: Amounts,
    /// Its ticket in the queue of waiters; 0 when granted at once.
    pub ticket: u64,
    reserved_at: Nanos,
    costs: [u64; BUDGETS],
    /// Each budget's running total right after this grant was charged
    /// (known once it is granted).
    charged_after: Option<[u64; BUDGETS]>,
}

/// Counters for `stats()`; relaxed atomics, read without a lock.
#[derive(Debug, Default)]
pub struct Stats {
    pub granted: AtomicU64,
    pub rejected: AtomicU64,
    pub cancelled: AtomicU64,
    pub waited_ns: AtomicU64,
    pub rate_limited: AtomicU64,
    pub retries: AtomicU64,
    /// The budget waits of the grants, bucketed (for a histogram).
    pub waits: WaitHistogram,
}

/// A reservation waiting for its grant time.
#[derive(Debug)]
struct Waiting {
    costs: [u64; BUDGETS],
    /// `Some` once its time has come and it is charged to the granted state
    /// (the running totals after it), until its waiter collects it.
    settled: Option<[u64; BUDGETS]>,
}

/// Granted units live in `tat`; reservations still waiting are not charged
/// there but queued in `waiting`, and `tail` is `tat` with them charged:
/// what a newcomer is placed after. A give-back changes the granted state
/// and the waiters are placed again, in order, from it (`refold`): they
/// move up, and a newcomer still comes after all of them.
#[derive(Debug, Default)]
struct State {
    tat: [Nanos; BUDGETS],
    /// Total cost ever granted per budget (wrapping): "charged since".
    charged: [u64; BUDGETS],
    last_grant: Nanos,
    last_charge_at: Nanos,
    pause_until: Nanos,
    seq: u64,
    waiting: Queue<Waiting>,
    tail: [Nanos; BUDGETS],
    tail_last_grant: Nanos,
}

/// The budgets of one limiter.
#[derive(Debug)]
pub struct Budgets {
    rules: [Option<Gcra>; BUDGETS],
    state: Mutex<State>,
    clock: Clock,
    pub stats: Stats,
}

impl Budgets {
    /// `limits[b]` is budget `b`'s amount per period, if set; `burst` is the
    /// request budgets' capacity (default: their amount per period).
    pub fn new(
        limits: [Option<f64>; BUDGETS],
        burst: Option<f64>,
        clock: Clock,
    ) -> Result<Budgets, String> {
        if let Some(b) = burst {
            if !(b.is_finite() && b >= 1.0) {
                return Err(format!("burst must be a finite number >= 1, got {b}"));
            }
        }
        let mut rules = [None; BUDGETS];
        for budget in Budget::ALL {
            let Some(amount) = limits[budget as usize] else {
                continue;
            };
            let name = budget.name();
            if !(amount.is_finite() && amount > 0.0) {
                return Err(format!("{name} must be a finite number > 0, got {amount}"));
            }
            let rate = amount / budget.period();
            let capacity = match burst {
                Some(b) if budget.counts_requests() => b,
                _ => amount,
            };
            Gcra::check(rate, capacity).map_err(|e| format!("{name}: {e}"))?;
            rules[budget as usize] = Some(Gcra::new(rate, capacity));
        }
        Ok(Budgets {
            rules,
            state: Mutex::new(State::default()),
            clock,
            stats: Stats::default(),
        })
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn rule(&self, budget: Budget) -> Option<&Gcra> {
        self.rules[budget as usize].as_ref()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.iter().all(Option::is_none)
    }

    /// Checks that a request could ever be granted: no token amount above
    /// its budget's capacity.
    pub fn check(&self, amounts: &Amounts) -> Result<(), String> {
        for budget in [Budget::Tpm, Budget::Itpm, Budget::Otpm] {
            if let Some(rule) = self.rule(budget) {
                let units = amounts.units(budget);
                if units > rule.capacity() {
                    return Err(format!(
                        "{units} tokens are more than the {} budget can ever grant at once (capacity {})",
                        budget.name(),
                        rule.capacity()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Grants `amounts` on every budget at one time `T` (see the module
    /// docs), now or later. `Err(wait)` when `T` is more than `max_wait`
    /// away: then nothing is taken. A later grant is queued: its holder
    /// waits with [`Budgets::look`] until it is granted.
    pub fn reserve(&self, amounts: Amounts, max_wait: Option<Nanos>) -> Result<Grant, Nanos> {
        let mut costs = [0u64; BUDGETS];
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(rule) = rule {
                costs[i] = rule.cost(amounts.units(Budget::ALL[i]));
            }
        }
        let mut state = self.state.lock();
        let now = self.clock.now();
        self.settle(&mut state, now);
        let mut at = now.max(state.pause_until).max(state.tail_last_grant);
        for (i, rule) in self.rules.iter().enumerate() {
            if let (Some(rule), true) = (rule, costs[i] > 0) {
                at = at.max(rule.due(state.tail[i], now, costs[i]));
            }
        }
        if let Reservation::TooLong(wait) = decide(now, at, max_wait) {
            drop(state);
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(wait);
        }
        let mut grant = Grant {
            at,
            waited: at - now,
            amounts,
            ticket: 0,
            reserved_at: now,
            costs,
            charged_after: None,
        };
        state.seq += 1;
        if at <= now {
            // Nobody waits (a waiter would be due after now): granted at once.
            self.charge_granted(&mut state, &costs, at);
            grant.charged_after = Some(state.charged);
            state.tail = state.tat;
            state.tail_last_grant = at;
        } else {
            grant.ticket = state.seq;
            let waiting = Waiting {
                costs,
                settled: None,
            };
            state.waiting.push(grant.ticket, at, waiting);
            self.charge_tail(&mut state, &costs, at);
        }
        drop(state);
        // Before `granted`: a reader never sees more waits than grants.
        self.stats.waits.observe(grant.waited);
        self.stats.granted.fetch_add(1, Ordering::Relaxed);
        self.stats
            .waited_ns
            .fetch_add(grant.waited.0, Ordering::Relaxed);
        Ok(grant)
    }

    /// Where a queued grant stands: still waiting until a time, or granted
    /// (then `grant` learns its time; pass the baton to the ticket named).
    pub fn look(&self, grant: &mut Grant) -> Check {
        if grant.ticket == 0 {
            return Check::Granted(None);
        }
        let mut state = self.state.lock();
        let now = self.clock.now();
        self.settle(&mut state, now);
        let (check, waiter) = state.waiting.look(grant.ticket, now);
        match (check, waiter) {
            (Check::Waiting(due), _) => grant.at = due,
            (Check::Granted(_), Some(waiter)) => {
                grant.at = waiter.due;
                grant.charged_after = waiter.data.settled;
                grant.ticket = 0;
            }
            (Check::Granted(_), None) => {
                // Forgotten by a reset: granted now.
                grant.at = grant.at.min(now);
                grant.ticket = 0;
            }
        }
        grant.waited = grant.at.saturating_sub(grant.reserved_at);
        check
    }

    /// Undoes a grant whose holder never used it (a cancelled or
    /// interrupted wait): every budget gets its cost back, as far as the
    /// charges after it allow, and the waiters behind move up. Returns the
    /// ticket of a waiter to wake.
    pub fn cancel(&self, grant: &Grant) -> Option<u64> {
        let mut state = self.state.lock();
        let now = self.clock.now();
        self.settle(&mut state, now);
        let mut charged_after = grant.charged_after;
        if grant.ticket != 0 {
            if let Some((waiter, _)) = state.waiting.remove(grant.ticket) {
                charged_after = waiter.data.settled;
            }
        }
        if let Some(after) = charged_after {
            for (i, rule) in self.rules.iter().enumerate() {
                if let Some(rule) = rule {
                    give_back(rule, &mut state, i, grant.costs[i], after[i], now);
                }
            }
        }
        let wake = self.refold(&mut state, now);
        drop(state);
        // Counted as cancelled, not granted; its wait was added at reserve.
        self.stats.granted.fetch_sub(1, Ordering::Relaxed);
        self.stats.waits.forget(grant.waited);
        self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
        self.stats.waited_ns.fetch_sub(
            grant
                .waited
                .0
                .min(self.stats.waited_ns.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        wake
    }

    /// Charges or refunds the token budgets by the difference between the
    /// grant's amounts and `actual`, and records `actual` in the grant.
    /// Returns the ticket of a waiter to wake (one that moved up).
    pub fn reconcile(&self, grant: &mut Grant, actual: Amounts) -> Option<u64> {
        let mut state = self.state.lock();
        let now = self.clock.now();
        self.settle(&mut state, now);
        let queued = grant.ticket != 0
            && state
                .waiting
                .get_mut(grant.ticket)
                .is_some_and(|w| w.data.settled.is_none());
        for budget in [Budget::Tpm, Budget::Itpm, Budget::Otpm] {
            let i = budget as usize;
            let Some(rule) = &self.rules[i] else { continue };
            let cost = rule.cost(actual.units(budget));
            let old = grant.costs[i];
            if queued {
                // Not granted yet: it simply asks for the new amount.
                if let Some(w) = state.waiting.get_mut(grant.ticket) {
                    w.data.costs[i] = cost;
                }
            } else if cost > old {
                let extra = cost - old;
                state.tat[i] = rule.charge(state.tat[i], now, extra);
                state.charged[i] = state.charged[i].wrapping_add(extra);
                state.last_charge_at = state.last_charge_at.max(now);
            } else if cost < old {
                let after = grant.charged_after.unwrap_or(state.charged)[i];
                give_back(rule, &mut state, i, old - cost, after, now);
            }
            grant.costs[i] = cost;
        }
        grant.amounts = actual;
        self.refold(&mut state, now)
    }

    /// No grant before `seconds` from now; extends, never shortens, a pause.
    /// Waiters due before its end wait for it too.
    ///
    /// No herd: the request budgets resume empty at the pause's end, so the
    /// waiters leave one emission interval apart, in arrival order, instead
    /// of a full burst at one instant (a server that answered 429 has an
    /// empty bucket too). Token budgets are left as they are.
    pub fn pause(&self, seconds: Nanos) {
        let now = self.clock.now();
        let mut state = self.state.lock();
        self.settle(&mut state, now);
        state.pause_until = state.pause_until.max(now + seconds);
        if seconds > Nanos::ZERO {
            let resume = state.pause_until;
            for budget in Budget::ALL.into_iter().filter(|b| b.counts_requests()) {
                if let Some(rule) = &self.rules[budget as usize] {
                    // The first unit is due at `resume`, the next one interval later.
                    let floor = resume + rule.tau() - Nanos(rule.cost(1.0));
                    let i = budget as usize;
                    state.tat[i] = state.tat[i].max(floor);
                }
            }
        }
        self.refold(&mut state, now);
    }

    /// Seconds of pause left (zero when not paused).
    pub fn paused_for(&self) -> Nanos {
        let until = self.state.lock().pause_until;
        until - self.clock.now()
    }

    /// Adopts the server's view of a budget (see [`ServerBudget`]). Only
    /// tightens: `tat` moves to `max(tat, floor)`, never back.
    ///
    /// In GCRA, "`R` units left now" is `tat = now + tau - cost(R)`: when the
    /// server's bucket and ours hold the same amount per period, adopting
    /// `remaining` alone is exact, and "none left" already means "the next
    /// unit after one emission interval". The reset headers of OpenAI and
    /// Anthropic give the time until the bucket is *full* again (up to a
    /// whole period), so waiting for them after `remaining == 0` would stall
    /// a bucket that refills continuously: they only tell the server's
    /// emission interval, `reset / (limit - remaining)`. So with less than
    /// one unit left, the next unit is due after the longer of our interval
    /// and the server's (never later than one full bucket, `tau`); only a
    /// server that refills at its reset ([`Refill::AtReset`], a fixed
    /// window) makes it wait for the whole reset.
    ///
    /// Grants in flight (granted here, not yet counted by the server) are in
    /// our `tat` and not in `remaining`: taking the later of the two counts
    /// them once. Waiters are not granted yet: they are placed after it.
    pub fn adopt(&self, budget: Budget, server: ServerBudget) {
        let Some(rule) = self.rule(budget) else {
            return;
        };
        let Some(floor_after) = server.tat_floor(rule) else {
            return;
        };
        let mut state = self.state.lock();
        let now = self.clock.now();
        self.settle(&mut state, now);
        let i = budget as usize;
        state.tat[i] = state.tat[i].max(now + floor_after);
        self.refold(&mut state, now);
    }

    /// Units of `budget` available now (negative while reservations wait).
    pub fn available(&self, budget: Budget) -> Option<f64> {
        let rule = self.rule(budget)?;
        let tat = self.state.lock().tail[budget as usize];
        Some(rule.available(tat, self.clock.now()))
    }

    /// Back to full, unpaused, forgetting every reservation: its waiters
    /// are granted at once. Returns their tickets, to wake.
    pub fn reset(&self) -> Vec<u64> {
        let mut state = self.state.lock();
        state.tat = [Nanos::ZERO; BUDGETS];
        state.tail = [Nanos::ZERO; BUDGETS];
        state.last_grant = Nanos::ZERO;
        state.tail_last_grant = Nanos::ZERO;
        state.pause_until = Nanos::ZERO;
        state.waiting.clear()
    }
}

/// Gives `cost` back to budget `i` of a grant charged when the budget's
/// running total was `charged_after` (see the module docs for the bound).
fn give_back(rule: &Gcra, state: &mut State, i: usize, cost: u64, charged_after: u64, now: Nanos) {
    if cost == 0 {
        return;
    }
    let mut tat = rule.refund(state.tat[i], now, cost);
    let since = state.charged[i].wrapping_sub(charged_after);
    if since > 0 {
        tat = tat.max(state.last_charge_at + Nanos(since));
    }
    state.tat[i] = tat.min(state.tat[i]);
}

#[path = "limiter_waiters.rs"]
mod waiters;

#[cfg(test)]
#[path = "limiter_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "limiter_props.rs"]
mod props;
