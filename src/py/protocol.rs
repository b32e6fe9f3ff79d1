//! The limiter protocol (SPEC section 2) written once for every `Limit`.
//!
//! Blocking waits happen here, with the GIL released. Async waits do not:
//! `reserve` decides and reserves synchronously and hands the due time to
//! the Python layer (`ratekeeper._waiting`), which sleeps on the caller's
//! event loop and cancels the reservation if the task is cancelled.

use crate::core::{Check, Clock, Limit, Nanos, Reservation};
use parking_lot::Mutex;
use pyo3::prelude::*;
use std::collections::HashMap;
use std::time::Duration;

use super::errors::check_max_wait;

/// How long a blocked thread sleeps before it looks for Ctrl-C.
pub const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// The wake-up callbacks of async waiters, by ticket: when a waiter ahead
/// gives its units back, the core names the one waiter to wake (see
/// `core::queue`), and its callback schedules it on its own loop.
#[derive(Default)]
pub struct Wakers(Mutex<HashMap<u64, Py<PyAny>>>);

impl Wakers {
    /// `callback()` wakes the waiter of `ticket` (replacing an older one).
    pub fn set(&self, ticket: u64, callback: Py<PyAny>) {
        self.0.lock().insert(ticket, callback);
    }

    pub fn forget(&self, ticket: u64) {
        self.0.lock().remove(&ticket);
    }

    /// Wakes every waiter of `tickets`.
    pub fn wake_all(&self, py: Python<'_>, tickets: Vec<u64>) {
        for ticket in tickets {
            self.wake(py, Some(ticket));
        }
    }

    /// Wakes the waiter of `ticket`, if it has a callback (a thread polls).
    pub fn wake(&self, py: Python<'_>, ticket: Option<u64>) {
        let Some(ticket) = ticket else { return };
        let callback = self.0.lock().remove(&ticket);
        if let Some(callback) = callback {
            // A waiter whose loop is gone has nothing left to wake.
            let _ = callback.call0(py);
        }
    }
}

/// `_until(ticket)`: seconds until the reservation is granted; 0 once it
/// is, after waking the stale waiter behind it. A manual clock is advanced
/// to the due time instead (virtual time).
pub fn until_granted(py: Python<'_>, limit: &impl Limit, wakers: &Wakers, ticket: Nanos) -> f64 {
    loop {
        match limit.check(ticket) {
            Check::Granted(behind) => {
                wakers.forget(ticket.0);
                wakers.wake(py, behind);
                return 0.0;
            }
            Check::Waiting(due) => match limit.clock() {
                Clock::Manual(manual) => manual.advance_to(due),
                clock => return (due - clock.now()).as_secs_f64(),
            },
        }
    }
}

/// `_cancel(n, ticket)`: gives the reservation back and wakes the waiter
/// that moved up.
pub fn cancel(py: Python<'_>, limit: &impl Limit, wakers: &Wakers, n: f64, ticket: Nanos) {
    wakers.forget(ticket.0);
    let behind = limit.cancel(n, ticket);
    wakers.wake(py, behind);
}

/// Sleeps (GIL released) until the reservation `ticket` is granted,
/// reading its due time again after each slice: a waiter ahead that gives
/// back moves it up.
pub fn wait_for(
    py: Python<'_>,
    limit: &impl Limit,
    wakers: &Wakers,
    ticket: Nanos,
) -> PyResult<()> {
    loop {
        match limit.check(ticket) {
            Check::Granted(behind) => {
                wakers.wake(py, behind);
                return Ok(());
            }
            Check::Waiting(due) => {
                py.detach(|| limit.clock().sleep_until(due, SIGNAL_CHECK_INTERVAL));
                py.check_signals()?;
            }
        }
    }
}

/// `_reserve(n, timeout)`: 0 when granted now, -1 when refused (the wait
/// would exceed `timeout`; nothing was taken), else the reservation's
/// ticket (its first due time in clock nanoseconds). One call, one integer: the async fast path costs
/// no allocation.
pub fn reserve(limit: &impl Limit, n: f64, timeout: Option<f64>) -> PyResult<i64> {
    Ok(encode(limit.reserve(n, check_max_wait(timeout)?)?))
}

/// Encodes a reservation for `_reserve`.
pub fn encode(reservation: Reservation) -> i64 {
    match reservation {
        Reservation::Now => 0,
        Reservation::TooLong(_) => -1,
        Reservation::At(due) => due.0.min(i64::MAX as u64) as i64,
    }
}

/// `acquire(n, timeout)`: reserve, then sleep with the GIL released until the
/// units are due, giving the reservation back if a signal handler raises.
pub fn acquire_blocking(
    py: Python<'_>,
    limit: &impl Limit,
    wakers: &Wakers,
    n: f64,
    timeout: Option<f64>,
) -> PyResult<bool> {
    match limit.reserve(n, check_max_wait(timeout)?)? {
        Reservation::Now => Ok(true),
        Reservation::TooLong(_) => Ok(false),
        Reservation::At(ticket) => {
            wait_for(py, limit, wakers, ticket)
                .inspect_err(|_| cancel(py, limit, wakers, n, ticket))?;
            Ok(true)
        }
    }
}

/// A due time handed to Python by `_reserve`, read back.
pub fn due_from(due: i64) -> Nanos {
    Nanos(due.max(0) as u64)
}

/// The Python methods of the limiter protocol, written once for every class
/// whose `inner` field is a [`Limit`] and `wakers` field its [`Wakers`]: `try_acquire`, `acquire`,
/// `wait_time`, the `_reserve`/`_until`/`_cancel` of the async path, and
/// `with`. Each class adds its own constructor, properties and `__repr__`
/// in the braces.
macro_rules! limit_pymethods {
    ($name:ident, { $($extra:tt)* }) => {
        #[pymethods]
        impl $name {
            /// Takes `n` units now if they are available; never waits.
            ///
            /// >>> limiter = TokenBucket(rate=1.0, capacity=5)  # SlidingWindow(5, 1.0), FixedWindow(5, 1.0) alike
            /// >>> limiter.try_acquire(2)
            /// True
            #[pyo3(signature = (n=1.0))]
            fn try_acquire(&self, #[pyo3(from_py_with = $crate::py::errors::number)] n: f64) -> PyResult<bool> {
                Ok($crate::core::Limit::try_acquire(&self.inner, n)?)
            }

            /// Waits (GIL released) until `n` units are granted; `False` at
            /// once, taking nothing, when the wait would exceed `timeout`.
            ///
            /// >>> limiter = TokenBucket(rate=1.0, capacity=5)  # SlidingWindow(5, 1.0), FixedWindow(5, 1.0) alike
            /// >>> limiter.acquire(2, timeout=1.0)
            /// True
            #[pyo3(signature = (n=1.0, timeout=None))]
            fn acquire(&self, py: Python<'_>, #[pyo3(from_py_with = $crate::py::errors::number)] n: f64, #[pyo3(from_py_with = $crate::py::errors::optional_number)] timeout: Option<f64>) -> PyResult<bool> {
                $crate::py::protocol::acquire_blocking(py, &self.inner, &self.wakers, n, timeout)
            }

            /// Seconds until `n` units would be granted; 0.0 when now.
            ///
            /// >>> limiter = TokenBucket(rate=1.0, capacity=5)  # SlidingWindow(5, 1.0), FixedWindow(5, 1.0) alike
            /// >>> limiter.wait_time(2)
            /// 0.0
            #[pyo3(signature = (n=1.0))]
            fn wait_time(&self, #[pyo3(from_py_with = $crate::py::errors::number)] n: f64) -> PyResult<f64> {
                Ok($crate::core::Limit::wait_time(&self.inner, n)?.as_secs_f64())
            }

            #[pyo3(signature = (n=1.0, timeout=None))]
            fn _reserve(&self, #[pyo3(from_py_with = $crate::py::errors::number)] n: f64, #[pyo3(from_py_with = $crate::py::errors::optional_number)] timeout: Option<f64>) -> PyResult<i64> {
                $crate::py::protocol::reserve(&self.inner, n, timeout)
            }

            fn _until(&self, py: Python<'_>, due: i64) -> f64 {
                let ticket = $crate::py::protocol::due_from(due);
                $crate::py::protocol::until_granted(py, &self.inner, &self.wakers, ticket)
            }

            fn _wake_on(&self, due: i64, callback: Py<PyAny>) {
                self.wakers.set(due.max(0) as u64, callback)
            }

            fn _cancel(&self, py: Python<'_>, n: f64, due: i64) {
                let ticket = $crate::py::protocol::due_from(due);
                $crate::py::protocol::cancel(py, &self.inner, &self.wakers, n, ticket)
            }

            fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
                let this = slf.get();
                $crate::py::protocol::acquire_blocking(slf.py(), &this.inner, &this.wakers, 1.0, None)?;
                Ok(slf)
            }

            #[pyo3(signature = (*_args))]
            fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
                false
            }

            $($extra)*
        }
    };
}
pub(crate) use limit_pymethods;
