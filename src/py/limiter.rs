//! `Limiter` and `Permit`: the binding of `core::limiter::Budgets` plus a
//! concurrency cap (`core::semaphore::Semaphore`).
//!
//! A request takes its concurrency slot first (FIFO), then reserves every
//! budget at one grant time, so it never holds budget it cannot use yet.
//! Sync waiters park in Rust with the GIL released; async waiters queue a
//! callback that the releasing thread schedules on the waiter's own loop
//! (`loop.call_soon_threadsafe`), so the loop never blocks and the fast path
//! (a free slot) is one CAS.

use crate::core::limiter::{Amounts, Budget, Budgets, Refill, ServerBudget, Stats, BUDGETS};
use crate::core::semaphore::{Enqueued, Semaphore};
use crate::core::waits::WAIT_BOUNDS;
use crate::core::{Clock, Nanos};
use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::clock::clock_from;
use super::errors::{
    check_non_negative, check_timeout, config_error, number, optional_number, rate_limit_timeout,
};
use super::permit::Permit;
use super::protocol::{Wakers, SIGNAL_CHECK_INTERVAL};

/// A parked thread waiting for a concurrency slot.
#[derive(Default)]
struct Parker {
    granted: Mutex<bool>,
    wakeup: Condvar,
}

impl Parker {
    fn wait(&self, slice: Duration) -> bool {
        let mut granted = self.granted.lock();
        if !*granted {
            self.wakeup.wait_for(&mut granted, slice);
        }
        *granted
    }
}

/// Who a released slot is handed to.
enum Waker {
    Thread(Arc<Parker>),
    /// A zero-argument Python callable that schedules the waiter's future.
    Callback(Py<PyAny>),
}

/// What a `Limiter` and its permits share.
pub(super) struct Shared {
    pub(super) budgets: Budgets,
    slots: Option<Semaphore<Waker>>,
    pub(super) in_flight: AtomicU64,
    /// Async waiters' wake-ups, by grant ticket.
    pub(super) wakers: Wakers,
    limits: [Option<f64>; BUDGETS],
    burst: Option<f64>,
}

impl Shared {
    /// Whether this limiter caps concurrency (has slots to give back).
    pub(super) fn has_slots(&self) -> bool {
        self.slots.is_some()
    }

    /// Gives a slot back, handing it to the oldest waiter if there is one.
    pub(super) fn release_slot(&self, py: Python<'_>) {
        let Some(slots) = &self.slots else { return };
        while let Some(waker) = slots.release() {
            match waker {
                Waker::Thread(parker) => {
                    *parker.granted.lock() = true;
                    parker.wakeup.notify_one();
                    return;
                }
                Waker::Callback(callback) => {
                    // A waiter whose loop is gone can never take the slot:
                    // pass it on to the next one.
                    if callback.call0(py).is_ok() {
                        return;
                    }
                }
            }
        }
    }

    /// Takes a slot for a thread, waiting (GIL released) up to `deadline`.
    /// `Ok(false)`: the deadline passed first; nothing is held.
    fn wait_for_slot(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<bool> {
        let Some(slots) = &self.slots else {
            return Ok(true);
        };
        if slots.try_acquire() {
            return Ok(true);
        }
        let parker = Arc::new(Parker::default());
        let ticket = match slots.acquire_or_enqueue(|| Waker::Thread(parker.clone())) {
            Enqueued::Acquired => return Ok(true),
            Enqueued::Queued(ticket) => ticket,
        };
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let slice = left.map_or(SIGNAL_CHECK_INTERVAL, |l| l.min(SIGNAL_CHECK_INTERVAL));
            if py.detach(|| parker.wait(slice)) {
                return Ok(true);
            }
            if let Err(err) = py.check_signals() {
                if !slots.cancel(ticket) {
                    self.release_slot(py);
                }
                return Err(err);
            }
            if left.is_some_and(|l| l.is_zero()) {
                // Cancelling fails only if a release handed us the slot meanwhile.
                return Ok(!slots.cancel(ticket));
            }
        }
    }

    /// Reserves the budgets for a caller that holds its slot (if any);
    /// on refusal, gives the slot back and raises `RateLimitTimeout`.
    fn reserve(
        self: &Arc<Self>,
        py: Python<'_>,
        amounts: Amounts,
        timeout: Option<f64>,
        slot_waited: f64,
    ) -> PyResult<Permit> {
        let left = timeout.map(|t| Nanos::from_secs_f64((t - slot_waited).max(0.0)));
        match self.budgets.reserve(amounts, left) {
            Ok(grant) => {
                self.in_flight.fetch_add(1, Ordering::Relaxed);
                if slot_waited > 0.0 {
                    let waited = Nanos::from_secs_f64(slot_waited).0;
                    self.budgets
                        .stats
                        .waited_ns
                        .fetch_add(waited, Ordering::Relaxed);
                }
                Ok(Permit::new(self.clone(), grant, slot_waited))
            }
            Err(wait) => {
                self.release_slot(py);
                Err(rate_limit_timeout(
                    py,
                    wait.as_secs_f64() + slot_waited,
                    timeout.unwrap_or(0.0),
                ))
            }
        }
    }
}

fn amounts(
    shared: &Shared,
    tokens: f64,
    input: Option<f64>,
    output: Option<f64>,
) -> PyResult<Amounts> {
    let amounts = Amounts::new(tokens, input, output).map_err(config_error)?;
    shared.budgets.check(&amounts).map_err(config_error)?;
    Ok(amounts)
}

/// Request budgets (rps, rpm, rph, rpd), token budgets (tpm, or itpm and
/// otpm apart) and a concurrency cap, granted together or not at all, in
/// arrival order. Each budget holds one period's worth (`burst` sets the
/// request budgets' capacity instead).
///
/// >>> limiter = Limiter(rpm=500, tpm=200_000, concurrency=16)
/// >>> with limiter.acquire(tokens=1200) as permit: permit.reconcile(900)
///
/// With a `timeout`, the wait for a concurrency slot is real time (another
/// request must finish) and counts against it; the budgets are then decided
/// at once against what is left of it.
///
/// `ratekeeper.Limiter` is this class itself; `ratekeeper.limiter` attaches
/// the async methods and `update_from_headers` at import.
#[pyclass(frozen, weakref, module = "ratekeeper", name = "Limiter")]
pub struct Limiter {
    shared: Arc<Shared>,
}

impl Limiter {
    /// The in-process limiter (no backend).
    #[allow(clippy::too_many_arguments)]
    fn in_process(
        rpm: Option<f64>,
        tpm: Option<f64>,
        rps: Option<f64>,
        rph: Option<f64>,
        rpd: Option<f64>,
        itpm: Option<f64>,
        otpm: Option<f64>,
        concurrency: Option<&Bound<'_, PyAny>>,
        burst: Option<f64>,
        clock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let clock = clock_from(clock)?;
        let limits = [rps, rpm, rph, rpd, tpm, itpm, otpm];
        let budgets = Budgets::new(limits, burst, clock).map_err(config_error)?;
        let slots = match concurrency {
            Some(c) if !c.is_none() => Some(Semaphore::new(check_concurrency(c)?)),
            _ => None,
        };
        // A Limiter with no budget is allowed: it grants at once but still
        // honours `pause` (the shared back-off after a 429) and counts, which
        // is what `rk.wrap(client)` with no limits given needs.
        if burst.is_some() && limits[..4].iter().all(Option::is_none) {
            return Err(PyValueError::new_err(
                "burst sets the request budgets' capacity: give rps, rpm, rph or rpd with it",
            ));
        }
        Ok(Limiter {
            shared: Arc::new(Shared {
                budgets,
                slots,
                in_flight: AtomicU64::new(0),
                wakers: Wakers::default(),
                limits,
                burst,
            }),
        })
    }
}

#[pymethods]
impl Limiter {
    #[new]
    #[pyo3(signature = (*, rpm=None, tpm=None, rps=None, rph=None, rpd=None, itpm=None, otpm=None, concurrency=None, burst=None, clock=None, backend=None, key=None))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        py: Python<'_>,
        #[pyo3(from_py_with = optional_number)] rpm: Option<f64>,
        #[pyo3(from_py_with = optional_number)] tpm: Option<f64>,
        #[pyo3(from_py_with = optional_number)] rps: Option<f64>,
        #[pyo3(from_py_with = optional_number)] rph: Option<f64>,
        #[pyo3(from_py_with = optional_number)] rpd: Option<f64>,
        #[pyo3(from_py_with = optional_number)] itpm: Option<f64>,
        #[pyo3(from_py_with = optional_number)] otpm: Option<f64>,
        concurrency: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = optional_number)] burst: Option<f64>,
        clock: Option<&Bound<'_, PyAny>>,
        backend: Option<&Bound<'_, PyAny>>,
        key: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        for (name, value) in [
            ("rpm", rpm),
            ("tpm", tpm),
            ("rps", rps),
            ("rph", rph),
            ("rpd", rpd),
            ("itpm", itpm),
            ("otpm", otpm),
            ("burst", burst),
        ] {
            check_limit(name, value)?;
        }
        if let Some(backend) = backend.filter(|b| !b.is_none()) {
            // Shared through Redis: a different engine (ratekeeper/redis_limiter.py)
            // with the same methods, so the in-process one pays nothing for it.
            let kwargs = PyDict::new(py);
            for (name, value) in [
                ("rpm", rpm),
                ("tpm", tpm),
                ("rps", rps),
                ("rph", rph),
                ("rpd", rpd),
                ("itpm", itpm),
                ("otpm", otpm),
                ("burst", burst),
            ] {
                kwargs.set_item(name, value)?;
            }
            kwargs.set_item("concurrency", concurrency)?;
            kwargs.set_item("clock", clock)?;
            kwargs.set_item("backend", backend)?;
            kwargs.set_item("key", key)?;
            let class = py
                .import("ratekeeper.redis_limiter")?
                .getattr("RedisLimiter")?;
            return Ok(class.call((), Some(&kwargs))?.unbind());
        }
        if key.is_some_and(|k| !k.is_none()) {
            return Err(PyValueError::new_err(
                "key names a budget shared through Redis: give backend=RedisBackend(...) with it",
            ));
        }
        Ok(Py::new(
            py,
            Self::in_process(
                rpm,
                tpm,
                rps,
                rph,
                rpd,
                itpm,
                otpm,
                concurrency,
                burst,
                clock,
            )?,
        )?
        .into_any())
    }

    /// Waits (GIL released) for a concurrency slot, then for every budget;
    /// raises `RateLimitTimeout`, holding nothing, if that would exceed
    /// `timeout`.
    ///
    /// >>> Limiter(tpm=1000).acquire(tokens=200, timeout=1.0).tokens
    /// 200.0
    #[pyo3(signature = (tokens=0.0, timeout=None, *, input_tokens=None, output_tokens=None))]
    fn acquire(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = number)] tokens: f64,
        #[pyo3(from_py_with = optional_number)] timeout: Option<f64>,
        #[pyo3(from_py_with = optional_number)] input_tokens: Option<f64>,
        #[pyo3(from_py_with = optional_number)] output_tokens: Option<f64>,
    ) -> PyResult<Permit> {
        let shared = &self.shared;
        let amounts = amounts(shared, tokens, input_tokens, output_tokens)?;
        let timeout = check_timeout(timeout)?;
        let mut slot_waited = 0.0;
        if let Some(slots) = &shared.slots {
            if !slots.try_acquire() {
                let started = Instant::now();
                let deadline = timeout.map(|t| started + Duration::from_secs_f64(t));
                if !shared.wait_for_slot(py, deadline)? {
                    shared
                        .budgets
                        .stats
                        .rejected
                        .fetch_add(1, Ordering::Relaxed);
                    let waited = started.elapsed().as_secs_f64();
                    return Err(rate_limit_timeout(py, waited, timeout.unwrap_or(0.0)));
                }
                slot_waited = started.elapsed().as_secs_f64();
            }
        }
        let permit = shared.reserve(py, amounts, timeout, slot_waited)?;
        if permit.ticket == 0 {
            return Ok(permit);
        }
        permit.wait(py).inspect_err(|_| permit.cancel(py))?;
        Ok(permit)
    }

    /// The async fast path: `None` when a concurrency slot is not free at
    /// once (the caller queues with `_enqueue`), else a permit whose `_due`
    /// says how long to sleep. `holds_slot`: the caller already has a slot.
    #[pyo3(signature = (tokens=0.0, timeout=None, input_tokens=None, output_tokens=None, holds_slot=false, slot_waited=0.0))]
    #[allow(clippy::too_many_arguments)]
    fn _reserve(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = number)] tokens: f64,
        #[pyo3(from_py_with = optional_number)] timeout: Option<f64>,
        #[pyo3(from_py_with = optional_number)] input_tokens: Option<f64>,
        #[pyo3(from_py_with = optional_number)] output_tokens: Option<f64>,
        holds_slot: bool,
        slot_waited: f64,
    ) -> PyResult<Option<Permit>> {
        let shared = &self.shared;
        let amounts = amounts(shared, tokens, input_tokens, output_tokens)?;
        let timeout = check_timeout(timeout)?;
        if let (Some(slots), false) = (&shared.slots, holds_slot) {
            if !slots.try_acquire() {
                return Ok(None);
            }
        }
        shared.reserve(py, amounts, timeout, slot_waited).map(Some)
    }

    /// Queues an async waiter for a slot: 0 when a slot was free (now
    /// held), else a ticket; `callback()` is called when the slot is handed
    /// over.
    fn _enqueue(&self, callback: Py<PyAny>) -> u64 {
        match &self.shared.slots {
            None => 0,
            Some(slots) => match slots.acquire_or_enqueue(|| Waker::Callback(callback)) {
                Enqueued::Acquired => 0,
                Enqueued::Queued(ticket) => ticket,
            },
        }
    }

    /// Withdraws a queued waiter: `True` if it held nothing, `False` if a
    /// slot was handed to it meanwhile (the caller holds it now).
    /// `timed_out` counts a withdrawn waiter as rejected.
    #[pyo3(signature = (ticket, timed_out=false))]
    fn _cancel_slot(&self, ticket: u64, timed_out: bool) -> bool {
        let Some(slots) = &self.shared.slots else {
            return false;
        };
        let withdrawn = slots.cancel(ticket);
        if withdrawn && timed_out {
            self.shared
                .budgets
                .stats
                .rejected
                .fetch_add(1, Ordering::Relaxed);
        }
        withdrawn
    }

    /// Gives back a slot taken by `_enqueue`/`_reserve` but not made into
    /// a permit.
    fn _release_slot(&self, py: Python<'_>) {
        self.shared.release_slot(py)
    }

    /// No permit is granted for `seconds` from now; extends, never
    /// shortens, a pause already in force.
    ///
    /// >>> limiter = Limiter(rpm=60, clock=ManualClock())
    /// >>> limiter.pause(30.0); limiter.stats()["paused_for"]
    /// 30.0
    fn pause(&self, #[pyo3(from_py_with = number)] seconds: f64) -> PyResult<()> {
        let seconds = check_non_negative("seconds", seconds)?;
        self.shared.budgets.pause(Nanos::from_secs_f64(seconds));
        Ok(())
    }

    /// Tightens `budget` ("rpm", "tpm", ...) to the server's view: at most
    /// `remaining` units now; with none left, the next one after the
    /// server's emission interval (`reset / limit`: `reset` is the time
    /// until its bucket is full) or, `at_reset` (a fixed window), after
    /// `reset` seconds. See `core::limiter::Budgets::adopt`.
    #[pyo3(signature = (budget, remaining, reset=None, limit=None, at_reset=false))]
    fn _adopt(
        &self,
        budget: &str,
        remaining: f64,
        reset: Option<f64>,
        limit: Option<f64>,
        at_reset: bool,
    ) -> PyResult<()> {
        let budget = Budget::from_name(budget).ok_or_else(|| {
            PyValueError::new_err(format!(
                "budget must be one of rps, rpm, rph, rpd, tpm, itpm, otpm, got {budget:?}"
            ))
        })?;
        let reset = reset
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(Nanos::from_secs_f64);
        let server = ServerBudget {
            remaining,
            limit: limit.filter(|l| l.is_finite() && *l > 0.0),
            reset,
            refill: if at_reset {
                Refill::AtReset
            } else {
                Refill::Continuous
            },
        };
        self.shared.budgets.adopt(budget, server);
        Ok(())
    }

    /// Units of `budget` available now; `None` when it is not configured.
    ///
    /// >>> Limiter(tpm=1000).available("tpm"), Limiter(tpm=1000).available("rpm")
    /// (1000.0, None)
    fn available(&self, budget: &str) -> PyResult<Option<f64>> {
        let budget = Budget::from_name(budget)
            .ok_or_else(|| PyValueError::new_err(format!("unknown budget {budget:?}")))?;
        Ok(self.shared.budgets.available(budget))
    }

    /// Counters: granted, rejected (timed out), cancelled, waited_seconds,
    /// rate_limited (429s seen), retries, in_flight (permits not released),
    /// waiting (for a slot), paused_for (seconds), available and capacity
    /// (per budget), wait_histogram (each grant's wait for its budgets: `buckets`, a list
    /// of `(upper bound in seconds, grants that waited no longer)` ending at
    /// `inf`, and `sum`, their seconds).
    ///
    /// >>> Limiter(rpm=60).stats()["available"]
    /// {'rpm': 60.0}
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let shared = &self.shared;
        let stats = &shared.budgets.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let out = PyDict::new(py);
        out.set_item("granted", load(&stats.granted))?;
        out.set_item("rejected", load(&stats.rejected))?;
        out.set_item("cancelled", load(&stats.cancelled))?;
        out.set_item(
            "waited_seconds",
            Nanos(load(&stats.waited_ns)).as_secs_f64(),
        )?;
        out.set_item("rate_limited", load(&stats.rate_limited))?;
        out.set_item("retries", load(&stats.retries))?;
        out.set_item("in_flight", load(&shared.in_flight))?;
        let waiting = shared.slots.as_ref().map_or(0, |s| s.waiting());
        out.set_item("waiting", waiting)?;
        out.set_item("paused_for", shared.budgets.paused_for().as_secs_f64())?;
        let available = PyDict::new(py);
        let capacity = PyDict::new(py);
        for budget in Budget::ALL {
            if let Some(units) = shared.budgets.available(budget) {
                available.set_item(budget.name(), units)?;
            }
            if let Some(rule) = shared.budgets.rule(budget) {
                capacity.set_item(budget.name(), rule.capacity())?;
            }
        }
        out.set_item("available", available)?;
        out.set_item("capacity", capacity)?;
        out.set_item("wait_histogram", wait_histogram(py, stats)?)?;
        Ok(out)
    }

    fn _count_rate_limited(&self) {
        let stats = &self.shared.budgets.stats;
        stats.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    fn _count_retry(&self) {
        self.shared
            .budgets
            .stats
            .retries
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Every budget full again, no pause, every reservation forgotten (its
    /// waiters go at once); counters and slots are kept.
    ///
    /// >>> limiter = Limiter(tpm=1000, clock=ManualClock())
    /// >>> permit = limiter.acquire(tokens=400); limiter.reset(); limiter.available("tpm")
    /// 1000.0
    fn reset(&self, py: Python<'_>) {
        let tickets = self.shared.budgets.reset();
        self.shared.wakers.wake_all(py, tickets);
    }

    /// The cap on permits held at once; `None` when uncapped.
    ///
    /// >>> Limiter(rpm=60, concurrency=4).concurrency
    /// 4
    #[getter]
    fn concurrency(&self) -> Option<u64> {
        self.shared.slots.as_ref().map(|s| s.capacity())
    }

    fn __repr__(&self) -> String {
        let shared = &self.shared;
        let mut parts: Vec<String> = Budget::ALL
            .iter()
            .filter_map(|b| shared.limits[*b as usize].map(|v| format!("{}={v:?}", b.name())))
            .collect();
        if let Some(c) = self.concurrency() {
            parts.push(format!("concurrency={c}"));
        }
        if let Some(b) = shared.burst {
            parts.push(format!("burst={b:?}"));
        }
        if let Clock::Manual(_) = shared.budgets.clock() {
            parts.push("clock=ManualClock".to_string());
        }
        format!("Limiter({})", parts.join(", "))
    }
}

/// The largest budget a Limiter takes: past any real API's (the header
/// parser ignores counts beyond it too), and a rate whose unit still costs
/// about a nanosecond or more.
const MAX_LIMIT: f64 = 1e15;

/// Refuses a budget too large to use (`2**64`, or `10**400` read as
/// infinity), naming it; other bad values are refused by the core.
fn check_limit(name: &str, value: Option<f64>) -> PyResult<()> {
    match value {
        Some(v) if v.is_finite() && v > MAX_LIMIT => Err(PyValueError::new_err(format!(
            "{name} must be at most {MAX_LIMIT:e}, got {v:e}"
        ))),
        Some(v) if v.is_infinite() => Err(PyValueError::new_err(format!(
            "{name} must be a finite number > 0, got {v}"
        ))),
        _ => Ok(()),
    }
}

fn check_concurrency(value: &Bound<'_, PyAny>) -> PyResult<u32> {
    let bad = || {
        PyValueError::new_err(format!(
            "concurrency must be an int >= 1, got {}",
            value
                .repr()
                .map_or_else(|_| "?".to_string(), |r| r.to_string())
        ))
    };
    if value.is_instance_of::<pyo3::types::PyBool>() {
        return Err(bad());
    }
    let n: i64 = value.extract().map_err(|_| bad())?;
    if n < 1 || n > i64::from(u32::MAX >> 1) {
        return Err(bad());
    }
    Ok(n as u32)
}

/// Registers the classes of this file and of `permit.rs`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Limiter>()?;
    m.add_class::<Permit>()?;
    Ok(())
}

/// `{"buckets": [(le, cumulative grants)..., (inf, grants)], "sum": seconds}`
/// from the grant count and the bucketed waits (zero waits are the rest).
fn wait_histogram<'py>(py: Python<'py>, stats: &Stats) -> PyResult<Bound<'py, PyDict>> {
    let (waits, sum) = stats.waits.snapshot();
    let waited: u64 = waits.iter().sum();
    // Waits are counted before their grant: `granted` is never behind for long.
    let mut cumulative = stats.granted.load(Ordering::Relaxed).saturating_sub(waited);
    let buckets = PyList::empty(py);
    for (i, count) in waits.iter().enumerate() {
        cumulative += count;
        let bound = WAIT_BOUNDS
            .get(i)
            .map_or(f64::INFINITY, |b| b.as_secs_f64());
        buckets.append((bound, cumulative))?;
    }
    let out = PyDict::new(py);
    out.set_item("buckets", buckets)?;
    out.set_item("sum", sum.as_secs_f64())?;
    Ok(out)
}
