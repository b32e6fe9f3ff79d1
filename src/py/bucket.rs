//! `TokenBucket`: the binding of `core::gcra::TokenBucket`.

use crate::core::gcra;
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::clock::clock_from;
use super::errors::{check_positive, config_error, number, optional_number};
use super::protocol::{limit_pymethods, Wakers};

/// A token bucket: starts full, refills at `rate` units/s up to `capacity`.
///
/// >>> bucket = TokenBucket.per_minute(60, burst=10); bucket.try_acquire()
/// True
///
/// `acquire_async` and `async with` are attached from Python
/// (`ratekeeper/limiters.py`): they sleep on the caller's event loop.
#[pyclass(frozen, weakref, module = "ratekeeper", name = "TokenBucket")]
pub struct TokenBucket {
    inner: gcra::TokenBucket,
    wakers: Wakers,
}

impl TokenBucket {
    fn per_period(
        n: f64,
        period: f64,
        burst: Option<f64>,
        clock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        check_positive("n", n)?;
        let capacity = check_positive("burst", burst.unwrap_or(n))?;
        Self::new(n / period, capacity, clock)
    }
}

limit_pymethods!(TokenBucket, {
    #[new]
    #[pyo3(signature = (rate, capacity, *, clock=None))]
    fn new(
        #[pyo3(from_py_with = number)] rate: f64,
        #[pyo3(from_py_with = number)] capacity: f64,
        clock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let clock = clock_from(clock)?;
        let inner = gcra::TokenBucket::new(rate, capacity, clock).map_err(config_error)?;
        Ok(TokenBucket {
            inner,
            wakers: Wakers::default(),
        })
    }

    /// `n` units per second, holding `burst` (default `n`).
    ///
    /// >>> TokenBucket.per_second(10).rate
    /// 10.0
    #[classmethod]
    #[pyo3(signature = (n, burst=None, *, clock=None))]
    fn per_second(
        _cls: &Bound<'_, PyType>,
        #[pyo3(from_py_with = number)] n: f64,
        #[pyo3(from_py_with = optional_number)] burst: Option<f64>,
        clock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        Self::per_period(n, 1.0, burst, clock)
    }

    /// `n` units per minute, holding `burst` (default `n`).
    ///
    /// >>> TokenBucket.per_minute(60, burst=10).capacity
    /// 10.0
    #[classmethod]
    #[pyo3(signature = (n, burst=None, *, clock=None))]
    fn per_minute(
        _cls: &Bound<'_, PyType>,
        #[pyo3(from_py_with = number)] n: f64,
        #[pyo3(from_py_with = optional_number)] burst: Option<f64>,
        clock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        Self::per_period(n, 60.0, burst, clock)
    }

    /// `n` units per hour, holding `burst` (default `n`).
    ///
    /// >>> TokenBucket.per_hour(3600).rate
    /// 1.0
    #[classmethod]
    #[pyo3(signature = (n, burst=None, *, clock=None))]
    fn per_hour(
        _cls: &Bound<'_, PyType>,
        #[pyo3(from_py_with = number)] n: f64,
        #[pyo3(from_py_with = optional_number)] burst: Option<f64>,
        clock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        Self::per_period(n, 3600.0, burst, clock)
    }

    /// Units available now; negative while reservations are outstanding.
    ///
    /// >>> TokenBucket(rate=1.0, capacity=5).available
    /// 5.0
    #[getter]
    fn available(&self) -> f64 {
        self.inner.available()
    }

    /// Gives `n` units back, never above capacity. With reservations
    /// waiting, they get the units first (they move up, in order).
    ///
    /// >>> bucket = TokenBucket(rate=1.0, capacity=5, clock=ManualClock())
    /// >>> bucket.try_acquire(5); bucket.refund(3); bucket.available
    /// True
    /// 3.0
    fn refund(&self, py: Python<'_>, #[pyo3(from_py_with = number)] n: f64) -> PyResult<()> {
        let behind = self.inner.refund(check_positive("n", n)?);
        self.wakers.wake(py, behind);
        Ok(())
    }

    /// Back to full, forgetting every reservation (its waiters go at once).
    ///
    /// >>> bucket = TokenBucket(rate=1.0, capacity=5, clock=ManualClock())
    /// >>> bucket.try_acquire(5); bucket.reset(); bucket.available
    /// True
    /// 5.0
    fn reset(&self, py: Python<'_>) {
        let tickets = self.inner.reset();
        self.wakers.wake_all(py, tickets);
    }

    /// Units added per second.
    ///
    /// >>> TokenBucket.per_minute(60).rate
    /// 1.0
    #[getter]
    fn rate(&self) -> f64 {
        self.inner.rule().rate()
    }

    /// The most units the bucket holds (its burst).
    ///
    /// >>> TokenBucket.per_minute(60, burst=10).capacity
    /// 10.0
    #[getter]
    fn capacity(&self) -> f64 {
        self.inner.rule().capacity()
    }

    fn __repr__(&self) -> String {
        format!(
            "TokenBucket(rate={:?}, capacity={:?})",
            self.rate(),
            self.capacity()
        )
    }
});
