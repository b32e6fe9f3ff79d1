//! `RateTracker`: counts requests and tokens per key over a sliding window,
//! in bounded memory. It observes; it never blocks or refuses.
//!
//! Each key is a ring of `slots` time slots of `window / slots` each. A slot
//! holds the requests and tokens recorded in it; the count over the window
//! is the sum of the slots of the last `window` (the current slot included).
//! So memory per key is fixed whatever the request rate, and a count is exact
//! to one slot: it covers between `window - window/slots` and `window`
//! seconds of history.

use super::clock::{Clock, Nanos};
use hashbrown::HashMap;
use parking_lot::Mutex;

/// Requests and tokens recorded in one slot.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    requests: u64,
    tokens: u64,
}

/// One key's ring of slots. `head` is the number of the newest slot
/// (time / slot width); slot `s` lives at index `s % slots`.
#[derive(Debug)]
struct Ring {
    head: u64,
    slots: Box<[Counts]>,
}

impl Ring {
    fn new(slots: usize, now_slot: u64) -> Ring {
        Ring {
            head: now_slot,
            slots: vec![Counts::default(); slots].into_boxed_slice(),
        }
    }

    /// Moves the ring forward to `now_slot`, clearing the slots that fell
    /// out of the window.
    fn advance(&mut self, now_slot: u64) {
        if now_slot <= self.head {
            return;
        }
        let len = self.slots.len() as u64;
        let gap = (now_slot - self.head).min(len);
        for s in (now_slot - gap + 1)..=now_slot {
            self.slots[(s % len) as usize] = Counts::default();
        }
        self.head = now_slot;
    }

    fn total(&self) -> Counts {
        self.slots.iter().fold(Counts::default(), |acc, c| Counts {
            requests: acc.requests.saturating_add(c.requests),
            tokens: acc.tokens.saturating_add(c.tokens),
        })
    }
}

/// Per-key request and token counts over the last `window`.
#[derive(Debug)]
pub struct RateTracker {
    window: Nanos,
    slot_width: u64,
    slots: usize,
    rings: Mutex<HashMap<String, Ring>>,
    clock: Clock,
}

impl RateTracker {
    pub fn new(window: f64, slots: usize, clock: Clock) -> Result<RateTracker, String> {
        if !(window.is_finite() && window > 0.0) {
            return Err(format!("window must be a finite number > 0, got {window}"));
        }
        if !(1..=100_000).contains(&slots) {
            return Err(format!("slots must be between 1 and 100000, got {slots}"));
        }
        let window_ns = Nanos::from_secs_f64(window);
        if window_ns.0 < slots as u64 || window_ns.0 > u64::MAX / 4 {
            return Err(format!(
                "window must be between {slots} ns and ~146 years, got {window}"
            ));
        }
        Ok(RateTracker {
            window: window_ns,
            // Rounded down: the slots never reach back further than `window`.
            slot_width: window_ns.0 / slots as u64,
            slots,
            rings: Mutex::new(HashMap::new()),
            clock,
        })
    }

    pub fn window(&self) -> Nanos {
        self.window
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    fn now_slot(&self) -> u64 {
        self.clock.now().0 / self.slot_width
    }

    /// Records one request of `tokens` tokens for `key`.
    pub fn record(&self, key: &str, tokens: u64) {
        let now_slot = self.now_slot();
        let mut rings = self.rings.lock();
        let ring = match rings.get_mut(key) {
            Some(ring) => ring,
            None => {
                // A new key: first drop the keys with nothing in the window,
                // amortized over doublings, so the map follows active keys.
                if rings.len() >= 64 && rings.len().is_power_of_two() {
                    retain_active(&mut rings, now_slot);
                }
                rings
                    .entry(key.to_owned())
                    .or_insert_with(|| Ring::new(self.slots, now_slot))
            }
        };
        ring.advance(now_slot);
        let len = ring.slots.len() as u64;
        let slot = &mut ring.slots[(now_slot % len) as usize];
        slot.requests = slot.requests.saturating_add(1);
        slot.tokens = slot.tokens.saturating_add(tokens);
    }

    /// `(requests, tokens)` recorded for `key` over the window.
    pub fn counts(&self, key: &str) -> (u64, u64) {
        let now_slot = self.now_slot();
        let mut rings = self.rings.lock();
        match rings.get_mut(key) {
            Some(ring) => {
                ring.advance(now_slot);
                let total = ring.total();
                (total.requests, total.tokens)
            }
            None => (0, 0),
        }
    }

    /// The keys with something recorded in the window, sorted.
    pub fn keys(&self) -> Vec<String> {
        let now_slot = self.now_slot();
        let mut rings = self.rings.lock();
        retain_active(&mut rings, now_slot);
        let mut keys: Vec<String> = rings.keys().cloned().collect();
        keys.sort_unstable();
        keys
    }
}

fn retain_active(rings: &mut HashMap<String, Ring>, now_slot: u64) {
    rings.retain(|_, ring| {
        ring.advance(now_slot);
        ring.total().requests > 0
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::ManualClock;
    use std::sync::Arc;

    const SECOND: u64 = 1_000_000_000;

    fn tracker() -> (RateTracker, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(Nanos::ZERO));
        let t = RateTracker::new(60.0, 60, Clock::Manual(clock.clone())).unwrap();
        (t, clock)
    }

    #[test]
    fn counts_requests_and_tokens_per_key() {
        let (t, _) = tracker();
        t.record("a", 10);
        t.record("a", 5);
        t.record("b", 1);
        assert_eq!(t.counts("a"), (2, 15));
        assert_eq!(t.counts("b"), (1, 1));
        assert_eq!(t.counts("c"), (0, 0));
    }

    #[test]
    fn old_slots_leave_the_window() {
        let (t, clock) = tracker();
        t.record("a", 1);
        clock.advance(Nanos(30 * SECOND));
        t.record("a", 2);
        clock.advance(Nanos(30 * SECOND));
        assert_eq!(t.counts("a"), (1, 2));
        clock.advance(Nanos(30 * SECOND));
        assert_eq!(t.counts("a"), (0, 0));
        assert!(t.keys().is_empty());
    }

    #[test]
    fn a_long_gap_clears_the_whole_ring() {
        let (t, clock) = tracker();
        for _ in 0..100 {
            t.record("a", 1);
            clock.advance(Nanos(SECOND / 3));
        }
        clock.advance(Nanos(1_000 * SECOND));
        assert_eq!(t.counts("a"), (0, 0));
    }

    #[test]
    fn rejects_bad_configuration() {
        assert!(RateTracker::new(f64::NAN, 60, Clock::Monotonic).is_err());
        assert!(RateTracker::new(0.0, 60, Clock::Monotonic).is_err());
        assert!(RateTracker::new(1.0, 0, Clock::Monotonic).is_err());
        assert!(RateTracker::new(1e-9, 60, Clock::Monotonic).is_err());
    }
}
