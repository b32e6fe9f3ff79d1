//! The sliding log of `core::window::SlidingWindow`, shared through Redis.
//!
//! The log is a sorted set: one member per grant, scored by its time in µs
//! on the server's clock (`TIME`), named `time:seq:units` so that the units
//! (which may be fractional) travel with it. One script call prunes what has
//! left the window, sums the rest, and either logs the request now or
//! answers how long until enough of the log has left the window for it: the
//! same walk as the in-process `SlidingLog::due`. Nothing is reserved ahead
//! (no entry in the future), so a caller sleeps that computed wait and asks
//! again; it never polls at a fixed interval.

use std::sync::Arc;

use super::shared::OnError;
use super::store::{Event, Store};
use crate::core::limit::{check_amount, Limit, LimitError};
use crate::core::window::SlidingWindow;
use crate::core::{Clock, Nanos};

/// The script. `KEYS[1]`: the log. `ARGV`: mode (`acquire` or `peek`),
/// units, limit, window in µs, and a fixed `now` in µs for tests (empty: the
/// server's `TIME`). Replies `{granted, wait}`: `granted` 1 when logged now
/// (`acquire`) or when it would be (`peek`); else `wait` is the µs until the
/// units fit.
pub const WINDOW_SCRIPT: &str = include_str!("window.lua");

/// The answer to a sliding-window request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowDecision {
    /// Logged now (`Open`: let through during an outage under "allow").
    Granted { open: bool },
    /// Not logged: the units fit in `wait` at the earliest.
    Wait(Nanos),
    /// Redis is unreachable and `on_error` is "deny".
    Denied,
}

/// A sliding window shared through Redis, with an in-process stand-in.
pub struct SharedWindow {
    store: Arc<Store>,
    on_error: OnError,
    keys: Vec<String>,
    limit: f64,
    window_us: u64,
    local: SlidingWindow,
}

impl SharedWindow {
    pub fn new(
        store: Arc<Store>,
        on_error: OnError,
        key: String,
        limit: f64,
        window: f64,
    ) -> Result<SharedWindow, String> {
        let local = SlidingWindow::new(limit, window, Clock::Monotonic)?;
        let window_us = local.window().0.div_ceil(1000);
        Ok(SharedWindow {
            store,
            on_error,
            keys: vec![key],
            limit,
            window_us,
            local,
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn on_error(&self) -> OnError {
        self.on_error
    }

    pub fn limit(&self) -> f64 {
        self.limit
    }

    pub fn window(&self) -> Nanos {
        self.local.window()
    }

    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    pub fn check(&self, n: f64) -> Result<(), LimitError> {
        check_amount(n, self.limit)
    }

    fn arguments(&self, log: bool, n: f64, now_us: Option<u64>) -> Vec<String> {
        vec![
            if log { "acquire" } else { "peek" }.to_owned(),
            format!("{n:?}"),
            format!("{:?}", self.limit),
            self.window_us.to_string(),
            now_us.map(|us| us.to_string()).unwrap_or_default(),
        ]
    }

    fn interpret(&self, reply: Option<Vec<i64>>, log: bool, n: f64) -> WindowDecision {
        match reply.as_deref() {
            Some([1, ..]) => WindowDecision::Granted { open: false },
            Some([0, wait, ..]) => {
                WindowDecision::Wait(Nanos(((*wait).max(1) as u64).saturating_mul(1000)))
            }
            _ => self.fallback(log, n),
        }
    }

    /// Logs `n` units now if they fit (`log`), or only asks (`!log`); in
    /// both cases, when they do not fit, how long until they would.
    pub fn decide_blocking(
        &self,
        log: bool,
        n: f64,
        now_us: Option<u64>,
    ) -> Result<(WindowDecision, Event), LimitError> {
        self.check(n)?;
        let args = self.arguments(log, n, now_us);
        let (result, event) = self.store.eval_window_blocking(&self.keys, &args);
        Ok((self.interpret(result.ok(), log, n), event))
    }

    /// `decide_blocking` on the runtime (the async path).
    pub async fn decide(&self, log: bool, n: f64) -> Result<(WindowDecision, Event), LimitError> {
        self.check(n)?;
        let args = self.arguments(log, n, None);
        let (result, event) = self.store.eval_window(&self.keys, &args).await;
        Ok((self.interpret(result.ok(), log, n), event))
    }

    /// Forgets the shared log (and the stand-in's).
    pub async fn reset(&self) -> Result<(), super::store::Unavailable> {
        self.local.reset();
        self.store.delete(&self.keys).await
    }

    fn fallback(&self, log: bool, n: f64) -> WindowDecision {
        match self.on_error {
            OnError::Deny => WindowDecision::Denied,
            OnError::Allow => WindowDecision::Granted { open: true },
            OnError::Local => {
                let granted = if log {
                    self.local.try_acquire(n).unwrap_or(false)
                } else {
                    self.local.wait_time(n).is_ok_and(|w| w == Nanos::ZERO)
                };
                if granted {
                    WindowDecision::Granted { open: false }
                } else {
                    let wait = self.local.wait_time(n).unwrap_or(Nanos(1_000_000));
                    WindowDecision::Wait(wait.max(Nanos(1000)))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_names_members_with_their_units() {
        assert!(WINDOW_SCRIPT.contains("'%.0f:%d:%s'"));
        assert!(WINDOW_SCRIPT.contains("ZREMRANGEBYSCORE"));
    }
}
