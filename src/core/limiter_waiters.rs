//! The waiters of the `Limiter` budgets: moved to the granted state when
//! their time comes (`settle`), placed again after a give-back (`refold`).

use super::{Budgets, State};
use crate::core::clock::Nanos;
use crate::core::limiter::BUDGETS;

impl Budgets {
    /// Charges a grant at `at` to the granted state.
    pub(super) fn charge_granted(&self, state: &mut State, costs: &[u64; BUDGETS], at: Nanos) {
        for (i, rule) in self.rules.iter().enumerate() {
            if let (Some(rule), true) = (rule, costs[i] > 0) {
                state.tat[i] = rule.charge(state.tat[i], at, costs[i]);
                state.charged[i] = state.charged[i].wrapping_add(costs[i]);
            }
        }
        state.last_grant = state.last_grant.max(at);
        state.last_charge_at = state.last_charge_at.max(at);
    }

    /// Charges a waiter at `at` to the tail only.
    pub(super) fn charge_tail(&self, state: &mut State, costs: &[u64; BUDGETS], at: Nanos) {
        for (i, rule) in self.rules.iter().enumerate() {
            if let (Some(rule), true) = (rule, costs[i] > 0) {
                state.tail[i] = rule.charge(state.tail[i], at, costs[i]);
            }
        }
        state.tail_last_grant = at;
    }

    /// Moves the waiters whose time has come to the granted state.
    #[inline]
    pub(super) fn settle(&self, state: &mut State, now: Nanos) {
        if state.waiting.is_empty() {
            return;
        }
        let mut due = Vec::new();
        for waiter in state.waiting.iter() {
            if waiter.data.settled.is_some() {
                continue;
            }
            if waiter.due > now {
                break;
            }
            due.push((waiter.ticket, waiter.due, waiter.data.costs));
        }
        for (ticket, at, costs) in due {
            self.charge_granted(state, &costs, at);
            let after = state.charged;
            if let Some(w) = state.waiting.get_mut(ticket) {
                w.data.settled = Some(after);
            }
        }
    }

    /// Places the waiters again, in order, after the granted state (as if
    /// each arrived now); returns the first one to wake (it moved up).
    pub(super) fn refold(&self, state: &mut State, now: Nanos) -> Option<u64> {
        let mut tail = state.tat;
        let mut last = state.last_grant;
        let pause = state.pause_until;
        for waiter in state.waiting.iter_mut() {
            if waiter.data.settled.is_some() {
                continue;
            }
            let costs = waiter.data.costs;
            let mut at = now.max(pause).max(last);
            for (i, rule) in self.rules.iter().enumerate() {
                if let (Some(rule), true) = (rule, costs[i] > 0) {
                    at = at.max(rule.due(tail[i], now, costs[i]));
                }
            }
            for (i, rule) in self.rules.iter().enumerate() {
                if let (Some(rule), true) = (rule, costs[i] > 0) {
                    tail[i] = rule.charge(tail[i], at, costs[i]);
                }
            }
            waiter.due = at;
            last = at;
        }
        state.tail = tail;
        state.tail_last_grant = last;
        self.settle(state, now);
        state.waiting.first_stale()
    }
}
