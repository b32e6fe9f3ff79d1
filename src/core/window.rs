//! The window limiters: `SlidingWindow` (exact, a sliding log) and
//! `FixedWindow` (a budget per aligned window of the clock).
//!
//! Both reserve like the token bucket (see `limit.rs`): a request is placed
//! at the earliest time it conforms, never before the last reservation, so
//! waiters are served in arrival order. The state is a short queue behind a
//! parking_lot mutex: unlike GCRA, a window cannot be folded into one word.
//!
//! Units are `f64`, so sums can carry rounding error; a request fits when the
//! sum stays within `limit` plus a relative slack of [`SLACK`], so that ten
//! requests of 0.1 fill a limit of 1 rather than nine.

use super::clock::{Clock, Nanos};
use super::limit::{check_amount, decide, Limit, LimitError, Reservation};
use parking_lot::Mutex;
use std::collections::VecDeque;

/// Relative tolerance for float sums of units (see the module docs).
const SLACK: f64 = 1e-12;

/// The longest window accepted: far beyond any use, and far from overflowing
/// nanosecond arithmetic (about 285 years).
const MAX_WINDOW_SECS: f64 = 9.0e9;

/// Checks a `limit` and a `window` (seconds) and returns the window in
/// nanoseconds.
fn check_config(limit: f64, window: f64) -> Result<Nanos, String> {
    if !(limit.is_finite() && limit > 0.0) {
        return Err(format!("limit must be a finite number > 0, got {limit}"));
    }
    if !(window.is_finite() && window > 0.0) {
        return Err(format!("window must be a finite number > 0, got {window}"));
    }
    if window >= MAX_WINDOW_SECS {
        return Err(format!(
            "window must be under {MAX_WINDOW_SECS:e} seconds, got {window}"
        ));
    }
    let nanos = Nanos::from_secs_f64(window);
    if nanos == Nanos::ZERO {
        return Err(format!("window must be at least 1 ns, got {window}"));
    }
    Ok(nanos)
}

/// Whether `n` more units fit beside `used` under `limit`.
#[inline]
fn fits(used: f64, n: f64, limit: f64) -> bool {
    used + n <= limit * (1.0 + SLACK)
}

/// Whether a running sum of units is empty, up to rounding.
#[inline]
fn is_empty(units: f64, limit: f64) -> bool {
    units <= limit * SLACK
}

/// At most `limit` units in any window of `window`, exactly.
///
/// The state is a log of `(time, units)` grants and reservations, in time
/// order, with equal times merged. A grant at `s` counts in every window that
/// covers `[s, s + window)`, so a request for `n` at `t` conforms when the
/// units logged in `(t - window, t]` plus `n` are within `limit`. Entries that
/// can no longer count (`s + window <= now`) are dropped on every call, so
/// the log holds at most one window of grants (at most `limit` entries for
/// whole units), plus the reservations queued behind them.
#[derive(Debug)]
pub struct SlidingWindow {
    limit: f64,
    window: Nanos,
    log: Mutex<SlidingLog>,
    clock: Clock,
}

#[derive(Debug, Default)]
struct SlidingLog {
    entries: VecDeque<(Nanos, f64)>,
    /// The sum of `entries`' units, kept so that the common case is O(1).
    total: f64,
}

impl SlidingLog {
    /// Drops the entries that no window from `now` on can count.
    fn prune(&mut self, now: Nanos, window: Nanos) {
        while let Some(&(at, units)) = self.entries.front() {
            if at + window > now {
                break;
            }
            self.entries.pop_front();
            self.total -= units;
        }
        if self.entries.is_empty() {
            // Forget the rounding error accumulated so far.
            self.total = 0.0;
        }
    }

    /// The earliest time, never before `now` nor before the last entry, at
    /// which `n` units conform.
    fn due(&self, now: Nanos, n: f64, limit: f64, window: Nanos) -> Nanos {
        let start = self.entries.back().map_or(now, |&(at, _)| at.max(now));
        // Every entry is at or before `start`, so the units counted at any
        // `t >= start` are the total minus the entries that have left the
        // window by `t`. Walk from the oldest until enough have left.
        let mut counted = self.total;
        let mut due = start;
        for &(at, units) in &self.entries {
            if fits(counted, n, limit) {
                break;
            }
            counted -= units;
            due = due.max(at + window);
        }
        due
    }

    /// Logs `n` units at `at` (never before the last entry).
    fn push(&mut self, at: Nanos, n: f64) {
        match self.entries.back_mut() {
            Some((last, units)) if *last == at => *units += n,
            _ => self.entries.push_back((at, n)),
        }
        self.total += n;
    }

    /// Removes `n` units logged at `at`, if there are any there.
    fn remove(&mut self, at: Nanos, n: f64, limit: f64) {
        let Ok(index) = self.entries.binary_search_by(|&(time, _)| time.cmp(&at)) else {
            return;
        };
        let Some(entry) = self.entries.get_mut(index) else {
            return;
        };
        let taken = n.min(entry.1);
        entry.1 -= taken;
        self.total -= taken;
        if is_empty(entry.1, limit) {
            self.total -= entry.1;
            self.entries.remove(index);
        }
        if self.entries.is_empty() {
            self.total = 0.0;
        }
    }
}

impl SlidingWindow {
    pub fn new(limit: f64, window: f64, clock: Clock) -> Result<SlidingWindow, String> {
        let window = check_config(limit, window)?;
        Ok(SlidingWindow {
            limit,
            window,
            log: Mutex::new(SlidingLog::default()),
            clock,
        })
    }

    pub fn limit(&self) -> f64 {
        self.limit
    }

    pub fn window(&self) -> Nanos {
        self.window
    }

    /// Forgets every grant and reservation: the full `limit` is free again.
    pub fn reset(&self) {
        let mut log = self.log.lock();
        log.entries.clear();
        log.total = 0.0;
    }

    /// The number of entries in the log (for tests of its bound).
    pub fn log_len(&self) -> usize {
        self.log.lock().entries.len()
    }
}

impl Limit for SlidingWindow {
    fn clock(&self) -> &Clock {
        &self.clock
    }

    fn try_acquire(&self, n: f64) -> Result<bool, LimitError> {
        Ok(self.reserve(n, Some(Nanos::ZERO))? == Reservation::Now)
    }

    fn reserve(&self, n: f64, max_wait: Option<Nanos>) -> Result<Reservation, LimitError> {
        check_amount(n, self.limit)?;
        let mut log = self.log.lock();
        // Time is read under the lock so that entries are logged in the order
        // the clock gives, whichever thread wins the lock.
        let now = self.clock.now();
        log.prune(now, self.window);
        let due = log.due(now, n, self.limit, self.window);
        let outcome = decide(now, due, max_wait);
        if !matches!(outcome, Reservation::TooLong(_)) {
            log.push(due.max(now), n);
        }
        Ok(outcome)
    }

    fn cancel(&self, n: f64, due: Nanos) -> Option<u64> {
        self.log.lock().remove(due, n, self.limit);
        None
    }

    fn wait_time(&self, n: f64) -> Result<Nanos, LimitError> {
        check_amount(n, self.limit)?;
        let mut log = self.log.lock();
        let now = self.clock.now();
        log.prune(now, self.window);
        Ok(log.due(now, n, self.limit, self.window) - now)
    }
}

/// At most `limit` units per aligned window `[k*window, (k+1)*window)` of
/// the clock's reading.
///
/// A request goes into the current window if it fits beside what that window
/// already holds, else into the next window (granted at its start). Never
/// into a window before the last reservation's, so waiters keep their order.
/// The state is the usage of the windows from the current one to the last
/// one reserved, oldest first; only windows holding units are kept.
#[derive(Debug)]
pub struct FixedWindow {
    limit: f64,
    window: Nanos,
    /// `(window index, units used)`, indices increasing.
    windows: Mutex<VecDeque<(u64, f64)>>,
    clock: Clock,
}

impl FixedWindow {
    pub fn new(limit: f64, window: f64, clock: Clock) -> Result<FixedWindow, String> {
        let window = check_config(limit, window)?;
        Ok(FixedWindow {
            limit,
            window,
            windows: Mutex::new(VecDeque::new()),
            clock,
        })
    }

    pub fn limit(&self) -> f64 {
        self.limit
    }

    pub fn window(&self) -> Nanos {
        self.window
    }

    /// Forgets every grant and reservation: every window is empty again.
    pub fn reset(&self) {
        self.windows.lock().clear();
    }

    #[inline]
    fn index_of(&self, at: Nanos) -> u64 {
        at.0 / self.window.0
    }

    #[inline]
    fn start_of(&self, index: u64) -> Nanos {
        Nanos(index.saturating_mul(self.window.0))
    }

    /// The window `n` units go into, given the usage queue at window
    /// `current`: the last reserved window (or the current one, if later)
    /// when they fit there, else the one after.
    fn place(&self, windows: &VecDeque<(u64, f64)>, current: u64, n: f64) -> u64 {
        match windows.back() {
            Some(&(index, used)) if index >= current => {
                if fits(used, n, self.limit) {
                    index
                } else {
                    index.saturating_add(1)
                }
            }
            _ => current,
        }
    }
}

/// Drops the windows before `current`: their units can never count again.
fn prune_windows(windows: &mut VecDeque<(u64, f64)>, current: u64) {
    while windows.front().is_some_and(|&(index, _)| index < current) {
        windows.pop_front();
    }
}

impl Limit for FixedWindow {
    fn clock(&self) -> &Clock {
        &self.clock
    }

    fn try_acquire(&self, n: f64) -> Result<bool, LimitError> {
        Ok(self.reserve(n, Some(Nanos::ZERO))? == Reservation::Now)
    }

    fn reserve(&self, n: f64, max_wait: Option<Nanos>) -> Result<Reservation, LimitError> {
        check_amount(n, self.limit)?;
        let mut windows = self.windows.lock();
        let now = self.clock.now();
        let current = self.index_of(now);
        prune_windows(&mut windows, current);
        let index = self.place(&windows, current, n);
        let outcome = decide(now, self.start_of(index), max_wait);
        if !matches!(outcome, Reservation::TooLong(_)) {
            match windows.back_mut() {
                Some((last, used)) if *last == index => *used += n,
                _ => windows.push_back((index, n)),
            }
        }
        Ok(outcome)
    }

    fn cancel(&self, n: f64, due: Nanos) -> Option<u64> {
        let index = self.index_of(due);
        let mut windows = self.windows.lock();
        let position = windows.binary_search_by(|&(i, _)| i.cmp(&index)).ok()?;
        let entry = windows.get_mut(position)?;
        entry.1 -= n.min(entry.1);
        if is_empty(entry.1, self.limit) {
            // An emptied last window lets the next waiter in earlier.
            windows.remove(position);
        }
        None
    }

    fn wait_time(&self, n: f64) -> Result<Nanos, LimitError> {
        check_amount(n, self.limit)?;
        let mut windows = self.windows.lock();
        let now = self.clock.now();
        let current = self.index_of(now);
        prune_windows(&mut windows, current);
        Ok(self.start_of(self.place(&windows, current, n)) - now)
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
