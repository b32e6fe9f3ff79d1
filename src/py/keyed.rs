//! `KeyedLimiter`: the binding of `core::keyed::KeyedLimiter`.

use crate::core::keyed;
use crate::core::{Check, Clock, Limit, LimitError, Nanos, Reservation};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyMapping, PyString};

use super::clock::clock_from;
use super::errors::{check_max_wait, check_positive, config_error, number, optional_number};
use super::protocol::{self, Wakers};
use super::text::borrow_str;

/// One token bucket per key, created on first use, dropped when idle.
///
/// >>> limiter = KeyedLimiter(1.0, 5, overrides={"gpt-4o": (10.0, 50)}); limiter.try_acquire("u1")
/// True
///
/// `acquire_async` is attached from Python (`ratekeeper/keyed.py`).
#[pyclass(frozen, weakref, module = "ratekeeper", name = "KeyedLimiter")]
pub struct KeyedLimiter {
    inner: keyed::KeyedLimiter,
    /// Async waiters' wake-ups, by ticket (unique across keys).
    wakers: Wakers,
}

/// One key of a keyed limiter seen as a [`Limit`], so that the waiting
/// written once in `protocol` serves it too.
struct KeyLimit<'a> {
    limiter: &'a keyed::KeyedLimiter,
    key: &'a str,
}

impl Limit for KeyLimit<'_> {
    fn clock(&self) -> &Clock {
        self.limiter.clock()
    }

    fn try_acquire(&self, n: f64) -> Result<bool, LimitError> {
        self.limiter.try_acquire(self.key, n)
    }

    fn reserve(&self, n: f64, max_wait: Option<Nanos>) -> Result<Reservation, LimitError> {
        self.limiter.reserve(self.key, n, max_wait)
    }

    fn cancel(&self, n: f64, ticket: Nanos) -> Option<u64> {
        self.limiter.cancel(self.key, n, ticket)
    }

    fn check(&self, ticket: Nanos) -> Check {
        self.limiter.check(self.key, ticket)
    }

    fn wait_time(&self, n: f64) -> Result<Nanos, LimitError> {
        self.limiter.wait_time(self.key, n)
    }
}

impl KeyedLimiter {
    fn key<'a>(&'a self, key: &'a str) -> KeyLimit<'a> {
        KeyLimit {
            limiter: &self.inner,
            key,
        }
    }
}

/// Reads `overrides`: a mapping of `str` key to a `(rate, capacity)` pair.
fn overrides_from(overrides: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<(String, f64, f64)>> {
    let Some(obj) = overrides.filter(|o| !o.is_none()) else {
        return Ok(Vec::new());
    };
    let mapping = obj.cast::<PyMapping>().map_err(|_| {
        PyTypeError::new_err(format!(
            "overrides must be a mapping of key to (rate, capacity), got {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    let mut out = Vec::new();
    for item in mapping.items()?.iter() {
        let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
        let key = key.cast::<PyString>().map_err(|_| {
            PyTypeError::new_err(format!(
                "overrides keys must be str, got {}",
                key.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        let key = key.to_cow()?.into_owned();
        let pair = || {
            let (rate, capacity): (Bound<'_, PyAny>, Bound<'_, PyAny>) = value.extract()?;
            PyResult::Ok((number(&rate)?, number(&capacity)?))
        };
        let (rate, capacity) = pair().map_err(|_| {
            PyTypeError::new_err(format!(
                "overrides[{key:?}] must be a (rate, capacity) pair of numbers"
            ))
        })?;
        out.push((key, rate, capacity));
    }
    Ok(out)
}

#[pymethods]
impl KeyedLimiter {
    #[new]
    #[pyo3(signature = (rate, capacity, *, overrides=None, idle_timeout=600.0, clock=None, backend=None))]
    fn py_new(
        py: Python<'_>,
        #[pyo3(from_py_with = number)] rate: f64,
        #[pyo3(from_py_with = number)] capacity: f64,
        overrides: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = number)] idle_timeout: f64,
        clock: Option<&Bound<'_, PyAny>>,
        backend: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        if let Some(backend) = backend.filter(|b| !b.is_none()) {
            // Buckets in Redis: a different engine (ratekeeper/redis_limiter.py)
            // with the same methods, so the in-process one pays nothing for it.
            let kwargs = PyDict::new(py);
            kwargs.set_item("overrides", overrides)?;
            kwargs.set_item("idle_timeout", idle_timeout)?;
            kwargs.set_item("clock", clock)?;
            kwargs.set_item("backend", backend)?;
            let class = py
                .import("ratekeeper.redis_limiter")?
                .getattr("RedisKeyedLimiter")?;
            return Ok(class.call((rate, capacity), Some(&kwargs))?.unbind());
        }
        let clock = clock_from(clock)?;
        let overrides = overrides_from(overrides)?;
        let inner = keyed::KeyedLimiter::new(rate, capacity, overrides, idle_timeout, clock)
            .map_err(config_error)?;
        let wakers = Wakers::default();
        Ok(Py::new(py, KeyedLimiter { inner, wakers })?.into_any())
    }

    /// Takes `n` units from `key`'s bucket now if they are available.
    ///
    /// >>> KeyedLimiter(rate=1.0, capacity=5).try_acquire("u1", 2)
    /// True
    #[pyo3(signature = (key, n=1.0))]
    fn try_acquire(
        &self,
        key: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = number)] n: f64,
    ) -> PyResult<bool> {
        Ok(self.inner.try_acquire(borrow_str(key, "key")?, n)?)
    }

    /// Waits (GIL released) until `n` units of `key` are granted; `False` at
    /// once, taking nothing, when the wait would exceed `timeout`.
    ///
    /// >>> KeyedLimiter(rate=1.0, capacity=5).acquire("u1", 2, timeout=1.0)
    /// True
    #[pyo3(signature = (key, n=1.0, timeout=None))]
    fn acquire(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = number)] n: f64,
        #[pyo3(from_py_with = optional_number)] timeout: Option<f64>,
    ) -> PyResult<bool> {
        let key = borrow_str(key, "key")?;
        let max_wait = check_max_wait(timeout)?;
        match self.inner.reserve(key, n, max_wait)? {
            Reservation::Now => Ok(true),
            Reservation::TooLong(_) => Ok(false),
            Reservation::At(ticket) => {
                let limit = self.key(key);
                protocol::wait_for(py, &limit, &self.wakers, ticket)
                    .inspect_err(|_| protocol::cancel(py, &limit, &self.wakers, n, ticket))?;
                self.inner.finish(key);
                Ok(true)
            }
        }
    }

    /// Seconds until `n` units of `key` would be granted; 0.0 when now.
    ///
    /// >>> limiter = KeyedLimiter(rate=1.0, capacity=5, clock=ManualClock())
    /// >>> limiter.try_acquire("u1", 5); limiter.wait_time("u1", 2)
    /// True
    /// 2.0
    #[pyo3(signature = (key, n=1.0))]
    fn wait_time(
        &self,
        key: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = number)] n: f64,
    ) -> PyResult<f64> {
        Ok(self
            .inner
            .wait_time(borrow_str(key, "key")?, n)?
            .as_secs_f64())
    }

    #[pyo3(signature = (key, n=1.0, timeout=None))]
    fn _reserve(
        &self,
        key: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = number)] n: f64,
        #[pyo3(from_py_with = optional_number)] timeout: Option<f64>,
    ) -> PyResult<i64> {
        let key = borrow_str(key, "key")?;
        let max_wait = check_max_wait(timeout)?;
        Ok(protocol::encode(self.inner.reserve(key, n, max_wait)?))
    }

    fn _until(&self, py: Python<'_>, key: &Bound<'_, PyAny>, due: i64) -> PyResult<f64> {
        let limit = self.key(borrow_str(key, "key")?);
        let ticket = protocol::due_from(due);
        Ok(protocol::until_granted(py, &limit, &self.wakers, ticket))
    }

    fn _wake_on(&self, due: i64, callback: Py<PyAny>) {
        self.wakers.set(due.max(0) as u64, callback)
    }

    fn _cancel(&self, py: Python<'_>, key: &Bound<'_, PyAny>, n: f64, due: i64) -> PyResult<()> {
        let limit = self.key(borrow_str(key, "key")?);
        protocol::cancel(py, &limit, &self.wakers, n, protocol::due_from(due));
        Ok(())
    }

    /// Gives `n` units back to `key`, never above capacity. With
    /// reservations waiting on it, they get the units first (they move up,
    /// in order).
    ///
    /// >>> limiter = KeyedLimiter(rate=1.0, capacity=5, clock=ManualClock())
    /// >>> limiter.try_acquire("u1", 5); limiter.refund("u1", 3); limiter.available("u1")
    /// True
    /// 3.0
    fn refund(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = number)] n: f64,
    ) -> PyResult<()> {
        let key = borrow_str(key, "key")?;
        let behind = self.inner.refund(key, check_positive("n", n)?);
        self.wakers.wake(py, behind);
        Ok(())
    }

    fn _finish(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        self.inner.finish(borrow_str(key, "key")?);
        Ok(())
    }

    /// Units available to `key` now (its capacity for a key never seen).
    ///
    /// >>> KeyedLimiter(1.0, 5, overrides={"gpt-4o": (10.0, 50)}).available("gpt-4o")
    /// 50.0
    fn available(&self, key: &Bound<'_, PyAny>) -> PyResult<f64> {
        Ok(self.inner.available(borrow_str(key, "key")?))
    }

    /// Puts `key`'s bucket back to full, or every bucket when `key` is None;
    /// their waiters go at once.
    ///
    /// >>> limiter = KeyedLimiter(rate=1.0, capacity=5, clock=ManualClock())
    /// >>> limiter.try_acquire("u1", 5); limiter.reset("u1"); limiter.available("u1")
    /// True
    /// 5.0
    #[pyo3(signature = (key=None))]
    fn reset(&self, py: Python<'_>, key: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let tickets = match key.filter(|k| !k.is_none()) {
            Some(key) => self.inner.reset_key(borrow_str(key, "key")?),
            None => self.inner.reset(),
        };
        self.wakers.wake_all(py, tickets);
        Ok(())
    }

    /// The default rate (keys without an override).
    ///
    /// >>> KeyedLimiter(rate=1.0, capacity=5).rate
    /// 1.0
    #[getter]
    fn rate(&self) -> f64 {
        self.inner.rule().rate()
    }

    /// The default capacity (keys without an override).
    ///
    /// >>> KeyedLimiter(rate=1.0, capacity=5).capacity
    /// 5.0
    #[getter]
    fn capacity(&self) -> f64 {
        self.inner.rule().capacity()
    }

    /// Seconds a full bucket stays before it is dropped.
    ///
    /// >>> KeyedLimiter(1.0, 5, idle_timeout=60.0).idle_timeout
    /// 60.0
    #[getter]
    fn idle_timeout(&self) -> f64 {
        self.inner.idle_timeout().as_secs_f64()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> bool {
        // Like a dict: a key of another type is simply not there.
        borrow_str(key, "key").is_ok_and(|k| self.inner.contains(k))
    }

    fn __repr__(&self) -> String {
        format!(
            "KeyedLimiter(rate={:?}, capacity={:?}, idle_timeout={:?})",
            self.rate(),
            self.capacity(),
            self.idle_timeout()
        )
    }
}
