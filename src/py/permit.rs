//! `Permit`: what `Limiter.acquire` grants. It holds the concurrency slot
//! until released (exit, `release()`, or being dropped) and settles the
//! token budgets with `reconcile` once the real usage is known.

use crate::core::limiter::Grant;
use crate::core::{Check, Clock};
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::errors::{config_error, optional_number};
use super::limiter::Shared;
use super::protocol::SIGNAL_CHECK_INTERVAL;

/// A granted request: releases its concurrency slot on exit (or `release()`);
/// `reconcile(actual_tokens)` settles the token budgets once usage is known.
///
/// >>> with limiter.acquire(tokens=1000) as permit: permit.reconcile(640)
#[pyclass(frozen, module = "ratekeeper", name = "Permit")]
pub struct Permit {
    shared: Arc<Shared>,
    grant: Mutex<Grant>,
    slot_waited: f64,
    /// Its ticket among the limiter's waiters; 0 when granted at once.
    pub(super) ticket: u64,
    released: AtomicBool,
}

impl Permit {
    pub(super) fn new(shared: Arc<Shared>, grant: Grant, slot_waited: f64) -> Permit {
        Permit {
            shared,
            slot_waited,
            ticket: grant.ticket,
            grant: Mutex::new(grant),
            released: AtomicBool::new(false),
        }
    }

    /// Where its grant stands; once granted, wakes the waiter behind it if
    /// that one moved up.
    fn look(&self, py: Python<'_>) -> Check {
        let check = self.shared.budgets.look(&mut self.grant.lock());
        if let Check::Granted(behind) = check {
            self.shared.wakers.forget(self.ticket);
            self.shared.wakers.wake(py, behind);
        }
        check
    }

    /// Sleeps (GIL released) until granted, reading the grant time again
    /// after each slice: a waiter ahead that gives back moves it up.
    pub(super) fn wait(&self, py: Python<'_>) -> PyResult<()> {
        let clock = self.shared.budgets.clock();
        while let Check::Waiting(due) = self.look(py) {
            py.detach(|| clock.sleep_until(due, SIGNAL_CHECK_INTERVAL));
            py.check_signals()?;
        }
        Ok(())
    }

    /// Releases the slot once; `true` if this call did it.
    fn release_once(&self, py: Python<'_>) -> bool {
        if self.released.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.shared.release_slot(py);
        true
    }

    /// Undoes a permit whose waiter gave up before using it.
    pub(super) fn cancel(&self, py: Python<'_>) {
        if self.release_once(py) {
            self.shared.wakers.forget(self.ticket);
            let behind = self.shared.budgets.cancel(&self.grant.lock());
            self.shared.wakers.wake(py, behind);
        }
    }
}

impl Drop for Permit {
    /// A permit dropped without release still frees its slot.
    fn drop(&mut self) {
        if !self.released.load(Ordering::Acquire) && self.shared.has_slots() {
            Python::attach(|py| {
                self.release_once(py);
            });
        }
    }
}

#[pymethods]
impl Permit {
    /// Gives the concurrency slot back; calling it again does nothing.
    ///
    /// >>> permit = Limiter(concurrency=1).acquire(); permit.release(); permit.release(); permit.released
    /// True
    fn release(&self, py: Python<'_>) {
        self.release_once(py);
    }

    /// Charges or refunds the token budgets by the difference between the
    /// estimate and the actual usage. Amounts not given stay as estimated.
    ///
    /// >>> permit = Limiter(tpm=1000).acquire(tokens=500); permit.reconcile(300); permit.tokens
    /// 300.0
    #[pyo3(signature = (actual_tokens=None, *, input_tokens=None, output_tokens=None))]
    fn reconcile(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = optional_number)] actual_tokens: Option<f64>,
        #[pyo3(from_py_with = optional_number)] input_tokens: Option<f64>,
        #[pyo3(from_py_with = optional_number)] output_tokens: Option<f64>,
    ) -> PyResult<()> {
        let mut grant = self.grant.lock();
        let actual = grant
            .amounts
            .reconciled(actual_tokens, input_tokens, output_tokens)
            .map_err(config_error)?;
        let behind = self.shared.budgets.reconcile(&mut grant, actual);
        drop(grant);
        // Units given back go to the waiters first: wake the one that moved up.
        self.shared.wakers.wake(py, behind);
        Ok(())
    }

    /// Tokens charged to tpm (the estimate, or the reconciled usage).
    ///
    /// >>> Limiter(tpm=1000).acquire(tokens=200).tokens
    /// 200.0
    #[getter]
    fn tokens(&self) -> f64 {
        self.grant.lock().amounts.total
    }

    /// Tokens charged to itpm (the estimate, or the reconciled usage).
    ///
    /// >>> Limiter(itpm=1000).acquire(input_tokens=10).input_tokens
    /// 10.0
    #[getter]
    fn input_tokens(&self) -> f64 {
        self.grant.lock().amounts.input
    }

    /// Tokens charged to otpm (the estimate, or the reconciled usage).
    ///
    /// >>> Limiter(otpm=1000).acquire(output_tokens=10).output_tokens
    /// 10.0
    #[getter]
    fn output_tokens(&self) -> f64 {
        self.grant.lock().amounts.output
    }

    /// Seconds this request waited for its slot and budgets.
    ///
    /// >>> Limiter(rpm=60).acquire().waited
    /// 0.0
    #[getter]
    fn waited(&self) -> f64 {
        self.grant.lock().waited.as_secs_f64() + self.slot_waited
    }

    /// Whether the concurrency slot has been given back.
    ///
    /// >>> permit = Limiter(rpm=60).acquire(); permit.release(); permit.released
    /// True
    #[getter]
    fn released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }

    /// The grant time in clock nanoseconds while it waits; 0 when granted
    /// at once (the `_waiting` protocol passes it back to `_until`).
    #[getter]
    fn _due(&self) -> u64 {
        if self.ticket == 0 {
            return 0;
        }
        self.grant.lock().at.0
    }

    /// Seconds left until granted (the `_waiting` protocol); 0 once it is.
    /// A manual clock is advanced instead.
    fn _until(&self, py: Python<'_>, _ticket: u64) -> f64 {
        loop {
            match (self.look(py), self.shared.budgets.clock()) {
                (Check::Granted(_), _) => return 0.0,
                (Check::Waiting(due), Clock::Manual(manual)) => manual.advance_to(due),
                (Check::Waiting(due), clock) => return (due - clock.now()).as_secs_f64(),
            }
        }
    }

    /// `callback()` wakes this waiter when one ahead gives back.
    fn _wake_on(&self, _ticket: u64, callback: Py<PyAny>) {
        self.shared.wakers.set(self.ticket, callback);
    }

    /// Gives everything back (the `_waiting` protocol, on cancellation).
    fn _cancel(&self, py: Python<'_>, _n: f64, _due: u64) {
        self.cancel(py);
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> bool {
        self.release_once(py);
        false
    }

    fn __repr__(&self) -> String {
        let grant = self.grant.lock();
        format!(
            "Permit(tokens={:?}, waited={:.6}, released={})",
            grant.amounts.total,
            grant.waited.as_secs_f64() + self.slot_waited,
            if self.released() { "True" } else { "False" }
        )
    }
}
