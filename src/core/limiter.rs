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

use super::clock::{Clock, Nanos};
use super::gcra::Gcra;
use super::limit::{decide, Reservation};
use super::waits::WaitHistogram;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The number of budgets a limiter can have.
pub const BUDGETS: usize = 7;

/// One budget of a limiter; its index in every per-budget array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    Rps = 0,
    Rpm = 1,
    Rph = 2,
    Rpd = 3,
    Tpm = 4,
    Itpm = 5,
    Otpm = 6,
}

impl Budget {
    pub const ALL: [Budget; BUDGETS] = [
        Budget::Rps,
        Budget::Rpm,
        Budget::Rph,
        Budget::Rpd,
        Budget::Tpm,
        Budget::Itpm,
        Budget::Otpm,
    ];

    pub fn name(self) -> &'static str {
        ["rps", "rpm", "rph", "rpd", "tpm", "itpm", "otpm"][self as usize]
    }

    pub fn from_name(name: &str) -> Option<Budget> {
        Budget::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The period one budget's worth is counted over, in seconds.
    pub fn period(self) -> f64 {
        [1.0, 60.0, 3600.0, 86400.0, 60.0, 60.0, 60.0][self as usize]
    }

    pub fn counts_requests(self) -> bool {
        (self as usize) < 4
    }
}

/// The tokens one request asks for. `total` feeds tpm, `input` itpm,
/// `output` otpm. Built by [`Amounts::new`] from what the caller passed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Amounts {
    pub total: f64,
    pub input: f64,
    pub output: f64,
    /// `input` was not given and stands for `total` (so that an itpm-only
    /// limiter still counts `tokens`): reconciling the total moves it too.
    input_from_total: bool,
}

impl Amounts {
    /// `tokens` is the total. Without `input`, the whole total counts as
    /// input (itpm); without `output`, output is 0. Without `tokens` (0),
    /// the total is `input + output`.
    pub fn new(tokens: f64, input: Option<f64>, output: Option<f64>) -> Result<Amounts, String> {
        check_tokens("tokens", tokens)?;
        let input_from_total = input.is_none();
        let input = match input {
            Some(v) => check_tokens("input_tokens", v)?,
            None => tokens,
        };
        let output = match output {
            Some(v) => check_tokens("output_tokens", v)?,
            None => 0.0,
        };
        let total = if tokens > 0.0 {
            tokens
        } else if input_from_total {
            output
        } else {
            input + output
        };
        Ok(Amounts {
            total,
            input,
            output,
            input_from_total,
        })
    }

    /// The amounts after the actual usage is known; what is not given stays.
    pub fn reconciled(
        &self,
        tokens: Option<f64>,
        input: Option<f64>,
        output: Option<f64>,
    ) -> Result<Amounts, String> {
        let mut next = *self;
        if let Some(v) = input {
            next.input = check_tokens("input_tokens", v)?;
            next.input_from_total = false;
        }
        if let Some(v) = output {
            next.output = check_tokens("output_tokens", v)?;
        }
        match tokens {
            Some(v) => {
                next.total = check_tokens("actual_tokens", v)?;
                if next.input_from_total {
                    next.input = next.total;
                }
            }
            None if input.is_some() || output.is_some() => next.total = next.input + next.output,
            None => {}
        }
        Ok(next)
    }

    fn units(&self, budget: Budget) -> f64 {
        match budget {
            Budget::Tpm => self.total,
            Budget::Itpm => self.input,
            Budget::Otpm => self.output,
            _ => 1.0,
        }
    }
}

fn check_tokens(name: &str, value: f64) -> Result<f64, String> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(format!("{name} must be a finite number >= 0, got {value}"))
    }
}

/// How a server's budget comes back once spent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refill {
    /// A bucket that refills continuously (OpenAI, Anthropic): its reset
    /// is the time until it is full again.
    Continuous,
    /// A fixed window: nothing comes back before the reset.
    AtReset,
}

/// What a server's headers say about one of its budgets: `remaining` units
/// now, out of `limit` per its period, full again (or, for
/// [`Refill::AtReset`], refilled) after `reset`.
#[derive(Clone, Copy, Debug)]
pub struct ServerBudget {
    pub remaining: f64,
    pub limit: Option<f64>,
    pub reset: Option<Nanos>,
    pub refill: Refill,
}

impl ServerBudget {
    /// The lowest `tat` (as a time after now) that this server view allows a
    /// budget following `rule`, or `None` when it tells nothing stricter
    /// than a full bucket. The one adoption rule, used by the in-process
    /// [`Budgets::adopt`] and by the Redis script's `adopt` mode; see
    /// [`Budgets::adopt`] for why the reset is divided, not waited out.
    pub fn tat_floor(&self, rule: &Gcra) -> Option<Nanos> {
        let remaining = self.remaining;
        if !(remaining.is_finite() && remaining >= 0.0) || remaining >= rule.capacity() {
            return None;
        }
        let tau = rule.tau();
        if remaining >= 1.0 {
            return Some(tau - Nanos(rule.cost(remaining)));
        }
        let ours = Nanos(rule.cost(1.0 - remaining));
        let theirs = match (self.refill, self.reset) {
            (Refill::AtReset, Some(reset)) => reset,
            (Refill::Continuous, Some(reset)) => match self.limit {
                Some(limit) if limit.is_finite() && limit > remaining => Nanos::from_secs_f64(
                    reset.as_secs_f64() * (1.0 - remaining) / (limit - remaining),
                ),
                _ => Nanos::ZERO,
            },
            (_, None) => Nanos::ZERO,
        };
        // tat such that the next unit is due `wait` from now.
        let wait = ours.max(theirs).min(tau);
        Some(tau - Nanos(rule.cost(1.0)) + wait)
    }

    /// Only a `remaining` count: the server's budget is taken to refill
    /// like ours.
    pub fn remaining(remaining: f64) -> ServerBudget {
        ServerBudget {
            remaining,
            limit: None,
            reset: None,
            refill: Refill::Continuous,
        }
    }
}

/// A granted request: what it was charged, and what undoing it needs.
#[derive(Clone, Debug)]
pub struct Grant {
    pub at: Nanos,
    pub waited: Nanos,
    pub amounts: Amounts,
    seq: u64,
    prev_last_grant: Nanos,
    costs: [u64; BUDGETS],
    charged_after: [u64; BUDGETS],
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

#[derive(Debug, Default)]
struct State {
    tat: [Nanos; BUDGETS],
    /// Total cost ever charged per budget (wrapping): "charged since".
    charged: [u64; BUDGETS],
    last_grant: Nanos,
    last_charge_at: Nanos,
    pause_until: Nanos,
    seq: u64,
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
    /// away: then nothing is taken.
    pub fn reserve(&self, amounts: Amounts, max_wait: Option<Nanos>) -> Result<Grant, Nanos> {
        let mut costs = [0u64; BUDGETS];
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(rule) = rule {
                costs[i] = rule.cost(amounts.units(Budget::ALL[i]));
            }
        }
        let mut state = self.state.lock();
        let now = self.clock.now();
        let mut at = now.max(state.pause_until).max(state.last_grant);
        for (i, rule) in self.rules.iter().enumerate() {
            if let (Some(rule), true) = (rule, costs[i] > 0) {
                at = at.max(rule.due(state.tat[i], now, costs[i]));
            }
        }
        if let Reservation::TooLong(wait) = decide(now, at, max_wait) {
            drop(state);
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(wait);
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if let (Some(rule), true) = (rule, costs[i] > 0) {
                state.tat[i] = rule.charge(state.tat[i], at, costs[i]);
                state.charged[i] = state.charged[i].wrapping_add(costs[i]);
            }
        }
        let prev_last_grant = state.last_grant;
        state.last_grant = at;
        state.last_charge_at = state.last_charge_at.max(at);
        state.seq += 1;
        let grant = Grant {
            at,
            waited: at - now,
            amounts,
            seq: state.seq,
            prev_last_grant,
            costs,
            charged_after: state.charged,
        };
        drop(state);
        // Before `granted`: a reader never sees more waits than grants.
        self.stats.waits.observe(grant.waited);
        self.stats.granted.fetch_add(1, Ordering::Relaxed);
        self.stats
            .waited_ns
            .fetch_add(grant.waited.0, Ordering::Relaxed);
        Ok(grant)
    }

    /// Undoes a grant whose holder never used it (a cancelled or
    /// interrupted wait): every budget gets its cost back, as far as the
    /// charges after it allow.
    pub fn cancel(&self, grant: &Grant) {
        let mut state = self.state.lock();
        let now = self.clock.now();
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(rule) = rule {
                give_back(
                    rule,
                    &mut state,
                    i,
                    grant.costs[i],
                    grant.charged_after[i],
                    now,
                );
            }
        }
        if state.seq == grant.seq && state.last_grant == grant.at {
            // Nobody queued behind it: the next request need not wait for it.
            state.last_grant = grant.prev_last_grant;
        }
        drop(state);
        // Counted as cancelled, not granted; its wait was added at reserve.
        self.stats.granted.fetch_sub(1, Ordering::Relaxed);
        self.stats.waits.forget(grant.waited);
        self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
        self.stats
            .waited_ns
            .fetch_sub(grant.waited.0, Ordering::Relaxed);
    }

    /// Charges or refunds the token budgets by the difference between the
    /// grant's amounts and `actual`, and records `actual` in the grant.
    pub fn reconcile(&self, grant: &mut Grant, actual: Amounts) {
        let mut state = self.state.lock();
        let now = self.clock.now();
        for budget in [Budget::Tpm, Budget::Itpm, Budget::Otpm] {
            let i = budget as usize;
            let Some(rule) = &self.rules[i] else { continue };
            let cost = rule.cost(actual.units(budget));
            let old = grant.costs[i];
            if cost > old {
                let extra = cost - old;
                state.tat[i] = rule.charge(state.tat[i], now, extra);
                state.charged[i] = state.charged[i].wrapping_add(extra);
                state.last_charge_at = state.last_charge_at.max(now);
            } else if cost < old {
                give_back(rule, &mut state, i, old - cost, grant.charged_after[i], now);
            }
            grant.costs[i] = cost;
        }
        grant.amounts = actual;
    }

    /// No grant before `seconds` from now; extends, never shortens, a pause.
    ///
    /// No herd: the request budgets resume empty at the pause's end, so the
    /// waiters leave one emission interval apart, in arrival order, instead
    /// of a full burst at one instant (a server that answered 429 has an
    /// empty bucket too). Token budgets are left as they are.
    pub fn pause(&self, seconds: Nanos) {
        let until = self.clock.now() + seconds;
        let mut state = self.state.lock();
        state.pause_until = state.pause_until.max(until);
        if seconds == Nanos::ZERO {
            return;
        }
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
    /// Grants still in flight (granted here, not yet counted by the server)
    /// are in our `tat` and not in `remaining`: taking the later of the two
    /// counts them once, and the floor alone is never stricter than the
    /// server.
    pub fn adopt(&self, budget: Budget, server: ServerBudget) {
        let Some(rule) = self.rule(budget) else {
            return;
        };
        let Some(floor_after) = server.tat_floor(rule) else {
            return;
        };
        let mut state = self.state.lock();
        let floor = self.clock.now() + floor_after;
        let i = budget as usize;
        state.tat[i] = state.tat[i].max(floor);
    }

    /// Units of `budget` available now (negative while reservations wait).
    pub fn available(&self, budget: Budget) -> Option<f64> {
        let rule = self.rule(budget)?;
        let tat = self.state.lock().tat[budget as usize];
        Some(rule.available(tat, self.clock.now()))
    }

    /// Back to full, unpaused.
    pub fn reset(&self) {
        let mut state = self.state.lock();
        let seq = state.seq;
        *state = State::default();
        state.seq = seq;
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

#[cfg(test)]
#[path = "limiter_tests.rs"]
mod tests;
