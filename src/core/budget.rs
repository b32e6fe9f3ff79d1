//! What a `Limiter` counts: its budgets (rps ... otpm), the amounts one
//! request asks for, and what a server says about its own budgets.

use super::clock::Nanos;
use super::gcra::Gcra;

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

    pub(crate) fn units(&self, budget: Budget) -> f64 {
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
    /// [`Budgets::adopt`](super::limiter::Budgets::adopt) and by the Redis script's `adopt` mode; see
    /// [`Budgets::adopt`](super::limiter::Budgets::adopt) for why the reset is divided, not waited out.
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
