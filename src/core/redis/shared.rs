//! A set of GCRA budgets shared through Redis, charged together.
//!
//! `RedisTokenBucket` is one budget; a Redis-backed `Limiter` is several (rpm,
//! tpm, ...) that one script call checks and charges all at once or not at
//! all. When Redis cannot answer, `on_error` decides: keep limiting with
//! in-process buckets of the same rate and capacity, let everything through,
//! or refuse everything.

use std::sync::Arc;

use super::script::{arguments, Charge, Mode, Reply};
use super::store::{Event, Store};
use crate::core::gcra::{Gcra, TokenBucket};
use crate::core::limit::{check_amount, Limit, LimitError, Reservation};
use crate::core::{Clock, Nanos};

/// What a limiter does while Redis is unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Limit in process with buckets of the same rate and capacity.
    Local,
    /// Fail open: grant everything.
    Allow,
    /// Fail closed: grant nothing.
    Deny,
}

impl OnError {
    pub fn parse(text: &str) -> Result<OnError, String> {
        match text {
            "local" => Ok(OnError::Local),
            "allow" => Ok(OnError::Allow),
            "deny" => Ok(OnError::Deny),
            other => Err(format!(
                "on_error must be 'local', 'allow' or 'deny', got {other:?}"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Local => "local",
            OnError::Allow => "allow",
            OnError::Deny => "deny",
        }
    }
}

/// Who granted units, so that giving them back goes to the same place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Redis, with the reservation's ticket (0: granted at once).
    Redis(u64),
    Local,
    /// Granted without limiting (`on_error="allow"` during an outage).
    Open,
}

/// The answer to an acquire.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    /// Granted now (`wait` zero) or reserved `wait` from now. `remaining` is
    /// what the first budget holds afterwards and `full_in` the time until
    /// it is full again (for rate-limit headers).
    Granted {
        wait: Nanos,
        remaining: f64,
        full_in: Nanos,
        source: Source,
    },
    /// The wait would exceed the caller's limit; nothing was taken.
    Refused { wait: Nanos },
    /// Redis is unreachable and `on_error` is `"deny"`.
    Denied,
}

/// One budget: its Redis key, its rule, and its in-process stand-in.
pub struct Budget {
    key: String,
    rule: Gcra,
    local: TokenBucket,
    /// A request budget (rps..rpd): a pause leaves it empty (no herd).
    counts_requests: bool,
}

impl Budget {
    pub fn new(key: String, rate: f64, capacity: f64) -> Result<Budget, String> {
        Ok(Budget {
            key,
            rule: Gcra::new(rate, capacity),
            local: TokenBucket::new(rate, capacity, Clock::Monotonic)?,
            counts_requests: false,
        })
    }

    /// Marks a request budget: a pause drains it, as `Budgets::pause` does.
    pub fn counting_requests(mut self, counts_requests: bool) -> Budget {
        self.counts_requests = counts_requests;
        self
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn rule(&self) -> &Gcra {
        &self.rule
    }
}

/// Budgets charged together through one script call.
pub struct SharedGcra {
    store: Arc<Store>,
    on_error: OnError,
    budgets: Vec<Budget>,
    keys: Vec<String>,
}

impl SharedGcra {
    pub fn new(store: Arc<Store>, on_error: OnError, budgets: Vec<Budget>) -> SharedGcra {
        let mut keys: Vec<String> = budgets.iter().map(|b| b.key.clone()).collect();
        // The tickets' counter, under the same hash tag as the first budget.
        if let Some(tag_end) = keys.first().and_then(|k| k.rfind("}:")) {
            let seq = format!("{}:{}", &keys[0][..=tag_end], super::script::SEQ);
            keys.push(seq);
        }
        SharedGcra {
            store,
            on_error,
            budgets,
            keys,
        }
    }

    /// Adds a pause key and a last-grant key (same hash tag as the
    /// budgets): while the pause key holds a time in the future, nothing is
    /// granted (`pause`); nothing is granted before the last grant (FIFO
    /// across budgets, as `core::limiter::Budgets`).
    pub fn with_pause(mut self, pause: String, last: String) -> SharedGcra {
        let at = self.budgets.len();
        self.keys.insert(at, last);
        self.keys.insert(at, pause);
        self
    }

    fn has_pause(&self) -> bool {
        self.keys.len() >= self.budgets.len() + 2
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn budgets(&self) -> &[Budget] {
        &self.budgets
    }

    pub fn on_error(&self) -> OnError {
        self.on_error
    }

    /// Checks one amount per budget: each finite, >= 0 and within capacity.
    /// A zero amount leaves its budget alone, but not every amount may be 0.
    pub fn check(&self, amounts: &[f64]) -> Result<(), LimitError> {
        if amounts.len() != self.budgets.len() || amounts.iter().all(|&n| n == 0.0) {
            return Err(LimitError::NotPositive(
                amounts.first().copied().unwrap_or(0.0),
            ));
        }
        for (budget, &n) in self.budgets.iter().zip(amounts) {
            if n != 0.0 {
                check_amount(n, budget.rule.capacity())?;
            }
        }
        Ok(())
    }

    fn charges(&self, amounts: &[f64]) -> Vec<Charge> {
        self.budgets
            .iter()
            .zip(amounts)
            .map(|(budget, &n)| {
                let tau_us = Charge::of(&budget.rule, 1.0).tau_us;
                if n == 0.0 {
                    Charge { cost_us: 0, tau_us }
                } else {
                    Charge::of(&budget.rule, n)
                }
            })
            .collect()
    }

    async fn call(
        &self,
        mode: Mode,
        amounts: &[f64],
        max_wait: Option<Nanos>,
        now_us: Option<u64>,
    ) -> (Option<Reply>, Event) {
        let args = arguments(mode, max_wait, now_us, &self.charges(amounts));
        let (result, event) = self.store.eval(&self.keys, &args).await;
        (result.ok().and_then(|raw| Reply::decode(&raw)), event)
    }

    /// Takes `amounts` (one per budget) now, or reserves them for the
    /// earliest time all are there unless that is more than `max_wait` away.
    /// `now_us` replaces the server's clock (tests only).
    pub async fn acquire(
        &self,
        amounts: &[f64],
        max_wait: Option<Nanos>,
        now_us: Option<u64>,
    ) -> Result<(Decision, Event), LimitError> {
        self.check(amounts)?;
        let (reply, event) = self.call(Mode::Acquire, amounts, max_wait, now_us).await;
        Ok((self.interpret(reply, amounts, max_wait), event))
    }

    /// `acquire` on the calling thread (the sync path).
    pub fn acquire_blocking(
        &self,
        amounts: &[f64],
        max_wait: Option<Nanos>,
        now_us: Option<u64>,
    ) -> Result<(Decision, Event), LimitError> {
        self.check(amounts)?;
        let args = arguments(Mode::Acquire, max_wait, now_us, &self.charges(amounts));
        let (result, event) = self.store.eval_blocking(&self.keys, &args);
        let reply = result.ok().and_then(|raw| Reply::decode(&raw));
        Ok((self.interpret(reply, amounts, max_wait), event))
    }

    fn interpret(
        &self,
        reply: Option<Reply>,
        amounts: &[f64],
        max_wait: Option<Nanos>,
    ) -> Decision {
        match reply {
            Some(Reply::Refused { wait }) => Decision::Refused { wait },
            Some(Reply::Granted {
                wait,
                ahead,
                ticket,
            }) => {
                let first = &self.budgets[0].rule;
                Decision::Granted {
                    wait,
                    remaining: first.available(ahead, Nanos::ZERO),
                    full_in: ahead,
                    source: Source::Redis(ticket),
                }
            }
            None => self.fallback(amounts, max_wait),
        }
    }

    /// Seconds until `amounts` would be granted, from Redis, or from the
    /// stand-in while Redis is unreachable (zero under `"allow"`).
    pub async fn wait_time(&self, amounts: &[f64]) -> Result<(Nanos, Event), LimitError> {
        self.check(amounts)?;
        let (reply, event) = self.call(Mode::Peek, amounts, None, None).await;
        let wait = match reply {
            Some(reply) => reply.wait(),
            None => match self.on_error {
                OnError::Local => self.local_wait(amounts),
                OnError::Allow | OnError::Deny => Nanos::ZERO,
            },
        };
        Ok((wait, event))
    }

    /// Gives `amounts` back to whoever granted them; never above capacity.
    /// On Redis, a budget with reservations waiting keeps them, unless this
    /// is the latest reservation (its ticket still the last one given).
    pub async fn refund(&self, amounts: &[f64], source: Source) -> Event {
        match source {
            Source::Redis(0) => self.call(Mode::Refund, amounts, None, None).await.1,
            Source::Redis(ticket) => {
                let mut args = arguments(Mode::Cancel, None, None, &self.charges(amounts));
                args[1] = ticket.to_string();
                self.store.eval(&self.keys, &args).await.1
            }
            Source::Local => {
                for (budget, &n) in self.budgets.iter().zip(amounts) {
                    if n > 0.0 {
                        budget.local.refund(n);
                    }
                }
                Event::None
            }
            Source::Open => Event::None,
        }
    }

    /// Runs the script in `mode` with hand-made per-budget arguments and
    /// returns its raw reply (`None`: Redis could not answer).
    async fn call_raw(
        &self,
        mode: Mode,
        second: String,
        per_budget: Vec<(i64, u64)>,
    ) -> (Option<Vec<i64>>, Event) {
        let mut args = vec![mode.as_str().to_owned(), second, String::new()];
        for (first, tau_us) in per_budget {
            args.push(first.to_string());
            args.push(tau_us.to_string());
        }
        let (result, event) = self.store.eval(&self.keys, &args).await;
        (result.ok(), event)
    }

    fn taus(&self) -> impl Iterator<Item = u64> + '_ {
        self.budgets.iter().map(|b| Charge::of(&b.rule, 1.0).tau_us)
    }

    /// Grants nothing, for every process, until `duration` from now on the
    /// server's clock; never shortens a pause in force. Needs a pause key.
    pub async fn pause(&self, duration: Nanos) -> Event {
        if !self.has_pause() {
            return Event::None;
        }
        // A request budget is given the cost of one request: the script
        // drains it to resume one interval apart (no herd).
        let per_budget = self
            .budgets
            .iter()
            .map(|b| {
                let charge = Charge::of(&b.rule, 1.0);
                let cost = if b.counts_requests { charge.cost_us } else { 0 };
                (i64::try_from(cost).unwrap_or(i64::MAX), charge.tau_us)
            })
            .collect();
        let pause_us = duration.0.div_ceil(1000).to_string();
        self.call_raw(Mode::Pause, pause_us, per_budget).await.1
    }

    /// Raises each budget's state to at least `now + floor` (µs; `None`
    /// leaves the budget alone): the shared form of `Budgets::adopt`.
    pub async fn adopt(&self, floors_us: &[Option<u64>]) -> Event {
        let per_budget = self
            .taus()
            .zip(floors_us)
            .map(|(tau, floor)| (floor.map_or(-1, |f| f.min(i64::MAX as u64) as i64), tau))
            .collect();
        self.call_raw(Mode::Adopt, "-1".to_owned(), per_budget)
            .await
            .1
    }

    /// How far each budget's state runs ahead of now, and the pause left,
    /// from Redis (`None` while it is unreachable).
    pub async fn peek(&self) -> (Option<(Vec<Nanos>, Nanos)>, Event) {
        let per_budget = self.taus().map(|tau| (0, tau)).collect();
        let (raw, event) = self.call_raw(Mode::Peek, "-1".to_owned(), per_budget).await;
        let n = self.budgets.len();
        let to_nanos = |us: i64| Nanos((us.max(0) as u64).saturating_mul(1000));
        let decoded = raw.filter(|r| r.len() == n + 3).map(|r| {
            let aheads = r[2..2 + n].iter().map(|&us| to_nanos(us)).collect();
            (aheads, to_nanos(r[2 + n]))
        });
        (decoded, event)
    }

    /// Back to full: forgets the shared state (and the stand-ins').
    pub async fn reset(&self) -> Result<(), super::store::Unavailable> {
        for budget in &self.budgets {
            budget.local.reset();
        }
        self.store.delete(&self.keys).await
    }

    /// Refunds with a fixed `now` (tests only).
    pub async fn refund_at(&self, amounts: &[f64], now_us: u64) -> Event {
        self.call(Mode::Refund, amounts, None, Some(now_us)).await.1
    }

    fn local_wait(&self, amounts: &[f64]) -> Nanos {
        self.budgets
            .iter()
            .zip(amounts)
            .filter(|(_, &n)| n > 0.0)
            .filter_map(|(budget, &n)| budget.local.wait_time(n).ok())
            .max()
            .unwrap_or(Nanos::ZERO)
    }

    /// The decision while Redis is unreachable.
    fn fallback(&self, amounts: &[f64], max_wait: Option<Nanos>) -> Decision {
        match self.on_error {
            OnError::Deny => Decision::Denied,
            OnError::Allow => Decision::Granted {
                wait: Nanos::ZERO,
                remaining: self.budgets[0].rule.capacity(),
                full_in: Nanos::ZERO,
                source: Source::Open,
            },
            OnError::Local => {
                // All or nothing across the stand-ins: decide on the longest
                // wait first, then reserve each (a degraded mode; a race
                // between two callers here costs at most one extra wait).
                let wait = self.local_wait(amounts);
                if matches!(max_wait, Some(limit) if wait > limit) {
                    return Decision::Refused { wait };
                }
                let mut longest = Nanos::ZERO;
                for (budget, &n) in self.budgets.iter().zip(amounts) {
                    if n <= 0.0 {
                        continue;
                    }
                    let now = budget.local.clock().now();
                    if let Ok(Reservation::At(due)) = budget.local.reserve(n, None) {
                        longest = longest.max(due - now);
                    }
                }
                let first = &self.budgets[0].local;
                let remaining = first.available();
                // Full again once a whole bucket's worth would be due.
                let full_in = first
                    .wait_time(first.rule().capacity())
                    .unwrap_or(Nanos::ZERO);
                Decision::Granted {
                    wait: longest,
                    remaining,
                    full_in,
                    source: Source::Local,
                }
            }
        }
    }
}
