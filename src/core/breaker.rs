//! The circuit breaker: stop calling a service that keeps failing, and probe
//! it again after a pause.
//!
//! Three states. **Closed** lets every call through and counts consecutive
//! failures; `failure_threshold` of them in a row open it (a success resets
//! the count). **Open** refuses every call until `reset_timeout` has passed
//! since it opened; then it is **half-open**: at most `half_open_max_calls`
//! probe calls run at once, `success_threshold` probe successes close it, and
//! any probe failure opens it again (restarting `reset_timeout`).
//!
//! The closed path is what a healthy service pays on every call, so it is one
//! atomic word, `phase`, holding `[epoch:32][failures:30][state:2]`: letting
//! a call through is one load, a success with no failures counted is one
//! load, a failure is one compare-and-swap. Every state change takes the
//! `slots` lock and bumps the epoch. A call carries the word it was admitted
//! under as its [`Permit`]; an outcome whose epoch is over (a call admitted
//! while closed that ends after the breaker opened, or a probe that ends
//! after `reset()`) is ignored, so a slow call from an earlier phase can
//! neither close the breaker nor free a probe slot it never held.
//!
//! Open → half-open is lazy: it happens on the first look at the breaker
//! after `reset_timeout` (a call, `state`, a record), not on a timer.
//!
//! A listener (see [`CircuitBreaker::listen`]) hears every state change.
//! Changes happen under the lock only, so the closed path never looks for
//! one: the change is noted in `slots` and the listener is called after the
//! lock is released (it may look at the breaker again).

use super::clock::{Clock, Nanos};
use parking_lot::{Mutex, MutexGuard};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The three states of SPEC section 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const STATE_BITS: u64 = 0b11;
const FAILURE_SHIFT: u32 = 2;
const FAILURE_MASK: u64 = ((1u64 << 30) - 1) << FAILURE_SHIFT;
const EPOCH_SHIFT: u32 = 32;
/// The most failures the phase word can count (30 bits).
pub const MAX_THRESHOLD: u32 = (1 << 30) - 1;

#[inline]
fn state_bits(word: u64) -> u64 {
    word & STATE_BITS
}

#[inline]
fn failures_of(word: u64) -> u32 {
    ((word & FAILURE_MASK) >> FAILURE_SHIFT) as u32
}

#[inline]
fn with_failures(word: u64, failures: u32) -> u64 {
    (word & !FAILURE_MASK) | ((u64::from(failures.min(MAX_THRESHOLD))) << FAILURE_SHIFT)
}

/// The word of the next phase: epoch + 1, the given state and failures.
#[inline]
fn next_phase(word: u64, state: u64, failures: u32) -> u64 {
    let epoch = (word >> EPOCH_SHIFT).wrapping_add(1) << EPOCH_SHIFT;
    with_failures(epoch | state, failures)
}

/// Same epoch and state: the failure count may differ.
#[inline]
fn same_phase(word: u64, permit: Permit) -> bool {
    word & !FAILURE_MASK == permit.0
}

/// What a let-through call holds until its outcome is recorded: the phase
/// it was admitted in (the phase word without the failure count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permit(pub u64);

impl Permit {
    fn of(word: u64) -> Permit {
        Permit(word & !FAILURE_MASK)
    }

    /// Whether this permit holds a half-open probe slot.
    pub fn is_probe(self) -> bool {
        state_bits(self.0) == HALF_OPEN
    }
}

/// The settings of a breaker, validated by [`BreakerConfig::check`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub reset_timeout: Nanos,
    pub half_open_max_calls: u32,
    pub success_threshold: u32,
}

impl BreakerConfig {
    /// Validates the settings, naming the argument in the error.
    pub fn check(
        failure_threshold: u64,
        reset_timeout: f64,
        half_open_max_calls: u64,
        success_threshold: u64,
    ) -> Result<BreakerConfig, String> {
        let count = |name: &str, value: u64| {
            if value == 0 || value > u64::from(MAX_THRESHOLD) {
                Err(format!(
                    "{name} must be an integer from 1 to {MAX_THRESHOLD}, got {value}"
                ))
            } else {
                Ok(value as u32)
            }
        };
        if !(reset_timeout.is_finite() && reset_timeout > 0.0) {
            return Err(format!(
                "reset_timeout must be a finite number > 0, got {reset_timeout}"
            ));
        }
        Ok(BreakerConfig {
            failure_threshold: count("failure_threshold", failure_threshold)?,
            reset_timeout: Nanos::from_secs_f64(reset_timeout).max(Nanos(1)),
            half_open_max_calls: count("half_open_max_calls", half_open_max_calls)?,
            success_threshold: count("success_threshold", success_threshold)?,
        })
    }
}

/// Half-open bookkeeping, only touched under the lock.
#[derive(Debug, Default)]
struct Slots {
    probes_in_flight: u32,
    probe_successes: u32,
    /// State changes not yet told to the listener (only kept with one).
    changes: Vec<(State, State)>,
}

impl Slots {
    /// A new phase starts with no probes running or succeeded.
    fn new_phase(&mut self) {
        self.probes_in_flight = 0;
        self.probe_successes = 0;
    }
}

fn state_of(word: u64) -> State {
    match state_bits(word) {
        CLOSED => State::Closed,
        HALF_OPEN => State::HalfOpen,
        _ => State::Open,
    }
}

/// What hears the state changes: `(previous, new)`.
pub type Listener = Box<dyn Fn(State, State) + Send + Sync>;

struct Listening(OnceLock<Listener>);

impl fmt::Debug for Listening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Listening(yes)"
        } else {
            "Listening(no)"
        })
    }
}

/// A thread-safe circuit breaker (see the module docs for the rules).
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    clock: Clock,
    phase: AtomicU64,
    /// When the breaker last opened; written before the phase word that
    /// publishes the open state, so a reader that sees "open" sees it.
    opened_at: AtomicU64,
    slots: Mutex<Slots>,
    listener: Listening,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig, clock: Clock) -> CircuitBreaker {
        CircuitBreaker {
            config,
            clock,
            phase: AtomicU64::new(CLOSED),
            opened_at: AtomicU64::new(0),
            slots: Mutex::new(Slots::default()),
            listener: Listening(OnceLock::new()),
        }
    }

    /// Sets what hears every state change from now on; `false` if one was
    /// set already (it stays).
    pub fn listen(&self, listener: Listener) -> bool {
        self.listener.0.set(listener).is_ok()
    }

    /// Notes a change from the phase `old` to `new` (under the lock).
    fn note(&self, slots: &mut Slots, old: u64, new: u64) {
        if state_bits(old) != state_bits(new) && self.listener.0.get().is_some() {
            slots.changes.push((state_of(old), state_of(new)));
        }
    }

    /// Releases the lock, then tells the listener the changes noted under it.
    fn unlock(&self, mut slots: MutexGuard<'_, Slots>) {
        if slots.changes.is_empty() {
            return;
        }
        let changes = std::mem::take(&mut slots.changes);
        drop(slots);
        if let Some(listener) = self.listener.0.get() {
            for (old, new) in changes {
                listener(old, new);
            }
        }
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Lets a call through, or says how long until one may be (zero while
    /// half-open with every probe slot taken).
    #[inline]
    pub fn try_enter(&self) -> Result<Permit, Nanos> {
        let word = self.phase.load(Ordering::Acquire);
        if state_bits(word) == CLOSED {
            return Ok(Permit::of(word));
        }
        self.try_enter_slow(word)
    }

    #[cold]
    fn try_enter_slow(&self, word: u64) -> Result<Permit, Nanos> {
        if state_bits(word) == OPEN {
            // Refusing while open takes no lock: a flood of refused calls
            // must not contend.
            let left = self.open_time_left(self.clock.now());
            if left > Nanos::ZERO {
                return Err(left);
            }
        }
        let mut slots = self.slots.lock();
        let now = self.clock.now();
        let word = self.refresh(&mut slots, now);
        let entered = match state_bits(word) {
            CLOSED => Ok(Permit::of(word)),
            HALF_OPEN if slots.probes_in_flight < self.config.half_open_max_calls => {
                slots.probes_in_flight += 1;
                Ok(Permit::of(word))
            }
            HALF_OPEN => Err(Nanos::ZERO),
            _ => Err(self.open_time_left(now)),
        };
        self.unlock(slots);
        entered
    }

    /// The call admitted with `permit` succeeded.
    #[inline]
    pub fn on_success(&self, permit: Permit) {
        let word = self.phase.load(Ordering::Acquire);
        if same_phase(word, permit) && state_bits(word) == CLOSED {
            if failures_of(word) != 0 {
                self.clear_failures(permit);
            }
            return;
        }
        if permit.is_probe() {
            self.probe_done(permit, true);
        }
    }

    #[cold]
    fn clear_failures(&self, permit: Permit) {
        let _ = self
            .phase
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (same_phase(word, permit) && failures_of(word) != 0).then(|| with_failures(word, 0))
            });
    }

    /// The call admitted with `permit` failed.
    #[inline]
    pub fn on_failure(&self, permit: Permit) {
        if state_bits(permit.0) == CLOSED {
            let threshold = self.config.failure_threshold;
            let counted = self
                .phase
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                    let failures = failures_of(word) + 1;
                    (same_phase(word, permit) && failures < threshold)
                        .then(|| with_failures(word, failures))
                });
            if let Err(word) = counted {
                if same_phase(word, permit) {
                    self.fail_closed_locked(permit);
                }
            }
        } else if permit.is_probe() {
            self.probe_done(permit, false);
        }
    }

    /// The failure that reaches the threshold opens the breaker; under the
    /// lock, since it changes the phase.
    #[cold]
    fn fail_closed_locked(&self, permit: Permit) {
        let mut slots = self.slots.lock();
        loop {
            let word = self.phase.load(Ordering::Acquire);
            if !same_phase(word, permit) {
                break;
            }
            let failures = failures_of(word) + 1;
            if failures >= self.config.failure_threshold {
                self.open_locked(&mut slots, word, failures);
                break;
            }
            // A success cleared the count in between: count this one only.
            let counted = with_failures(word, failures);
            if self
                .phase
                .compare_exchange(word, counted, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                break;
            }
        }
        self.unlock(slots);
    }

    /// The call admitted with `permit` ended without an outcome for the
    /// service (interrupted, cancelled): a probe gives its slot back, nothing
    /// is counted.
    pub fn on_abandon(&self, permit: Permit) {
        if !permit.is_probe() {
            return;
        }
        let mut slots = self.slots.lock();
        if same_phase(self.phase.load(Ordering::Acquire), permit) {
            slots.probes_in_flight = slots.probes_in_flight.saturating_sub(1);
        }
    }

    #[cold]
    fn probe_done(&self, permit: Permit, succeeded: bool) {
        let mut slots = self.slots.lock();
        let word = self.phase.load(Ordering::Acquire);
        if !same_phase(word, permit) {
            return;
        }
        slots.probes_in_flight = slots.probes_in_flight.saturating_sub(1);
        if !succeeded {
            self.open_locked(&mut slots, word, failures_of(word).saturating_add(1));
        } else {
            slots.probe_successes += 1;
            if slots.probe_successes >= self.config.success_threshold {
                self.close_locked(&mut slots, word);
            }
        }
        self.unlock(slots);
    }

    /// The current phase as a permit, for outcomes recorded by hand
    /// (`record_success()` without a call): they apply to the current state,
    /// and are ignored while open.
    pub fn current(&self) -> Permit {
        let word = self.phase.load(Ordering::Acquire);
        if state_bits(word) != OPEN {
            return Permit::of(word);
        }
        let mut slots = self.slots.lock();
        let word = self.refresh(&mut slots, self.clock.now());
        self.unlock(slots);
        Permit::of(word)
    }

    /// Records a success in the current state.
    pub fn record_success(&self) {
        self.on_success(self.current());
    }

    /// Records a failure in the current state.
    pub fn record_failure(&self) {
        self.on_failure(self.current());
    }

    /// Whether a call would be let through now. Half-open, a `true` takes a
    /// probe slot, which the next recorded outcome gives back.
    pub fn allow(&self) -> bool {
        self.try_enter().is_ok()
    }

    /// The state now (an open breaker whose `reset_timeout` has passed
    /// turns half-open on this look).
    pub fn state(&self) -> State {
        let word = self.phase.load(Ordering::Acquire);
        let word = if state_bits(word) == OPEN {
            let mut slots = self.slots.lock();
            let word = self.refresh(&mut slots, self.clock.now());
            self.unlock(slots);
            word
        } else {
            word
        };
        state_of(word)
    }

    /// Time until an open breaker lets a probe through; zero unless open.
    pub fn retry_after(&self) -> Nanos {
        if state_bits(self.phase.load(Ordering::Acquire)) == OPEN {
            self.open_time_left(self.clock.now())
        } else {
            Nanos::ZERO
        }
    }

    /// Consecutive failures counted since the last close or success.
    pub fn failure_count(&self) -> u32 {
        failures_of(self.phase.load(Ordering::Acquire))
    }

    /// Probe calls running now (half-open).
    pub fn probes_in_flight(&self) -> u32 {
        self.slots.lock().probes_in_flight
    }

    /// Back to closed with no failures counted.
    pub fn reset(&self) {
        let mut slots = self.slots.lock();
        let word = self.phase.load(Ordering::Acquire);
        self.close_locked(&mut slots, word);
        self.unlock(slots);
    }

    /// Forces the breaker open now (restarting `reset_timeout`).
    pub fn trip(&self) {
        let mut slots = self.slots.lock();
        let word = self.phase.load(Ordering::Acquire);
        self.open_locked(&mut slots, word, failures_of(word));
        self.unlock(slots);
    }

    /// Opens the breaker; the caller holds the lock (`slots`).
    fn open_locked(&self, slots: &mut Slots, word: u64, failures: u32) {
        slots.new_phase();
        self.opened_at.store(self.clock.now().0, Ordering::Release);
        // Only closed-path compare-and-swaps of the current epoch race with
        // us; they fail once the epoch moves on, and their failures are moot.
        let open = next_phase(word, OPEN, failures);
        self.phase.store(open, Ordering::Release);
        self.note(slots, word, open);
    }

    /// Closes the breaker with no failures counted; the caller holds the lock.
    fn close_locked(&self, slots: &mut Slots, word: u64) {
        slots.new_phase();
        let closed = next_phase(word, CLOSED, 0);
        self.phase.store(closed, Ordering::Release);
        self.note(slots, word, closed);
    }

    /// Under the lock: turns an open breaker whose time is up half-open and
    /// returns the phase word.
    fn refresh(&self, slots: &mut Slots, now: Nanos) -> u64 {
        let word = self.phase.load(Ordering::Acquire);
        if state_bits(word) == OPEN && self.open_time_left(now) == Nanos::ZERO {
            slots.new_phase();
            let half_open = next_phase(word, HALF_OPEN, failures_of(word));
            self.phase.store(half_open, Ordering::Release);
            self.note(slots, word, half_open);
            return half_open;
        }
        word
    }

    fn open_time_left(&self, now: Nanos) -> Nanos {
        let opened_at = Nanos(self.opened_at.load(Ordering::Acquire));
        (opened_at + self.config.reset_timeout) - now
    }
}

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
