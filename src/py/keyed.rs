//! `KeyedLimiter`: the binding of `core::keyed::KeyedLimiter`.

use crate::core::keyed;
use crate::core::Reservation;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyMapping, PyString};

use super::clock::clock_from;
use super::errors::{check_max_wait, config_error};
use super::protocol;
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
        let (rate, capacity): (f64, f64) = value.extract().map_err(|_| {
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
        rate: f64,
        capacity: f64,
        overrides: Option<&Bound<'_, PyAny>>,
        idle_timeout: f64,
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
        Ok(Py::new(py, KeyedLimiter { inner })?.into_any())
    }

    /// Takes `n` units from `key`'s bucket now if they are available.
    ///
    /// >>> KeyedLimiter(rate=1.0, capacity=5).try_acquire("u1", 2)
    /// True
    #[pyo3(signature = (key, n=1.0))]
    fn try_acquire(&self, key: &Bound<'_, PyAny>, n: f64) -> PyResult<bool> {
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
        n: f64,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        let key = borrow_str(key, "key")?;
        let max_wait = check_max_wait(timeout)?;
        match self.inner.reserve(key, n, max_wait)? {
            Reservation::Now => Ok(true),
            Reservation::TooLong(_) => Ok(false),
            Reservation::At(due) => {
                let waited = protocol::wait_until(py, self.inner.clock(), due);
                match waited {
                    Ok(()) => self.inner.finish(key),
                    Err(_) => self.inner.cancel(key, n, due),
                }
                waited.map(|()| true)
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
    fn wait_time(&self, key: &Bound<'_, PyAny>, n: f64) -> PyResult<f64> {
        Ok(self
            .inner
            .wait_time(borrow_str(key, "key")?, n)?
            .as_secs_f64())
    }

    #[pyo3(signature = (key, n=1.0, timeout=None))]
    fn _reserve(&self, key: &Bound<'_, PyAny>, n: f64, timeout: Option<f64>) -> PyResult<i64> {
        let key = borrow_str(key, "key")?;
        let max_wait = check_max_wait(timeout)?;
        Ok(protocol::encode(self.inner.reserve(key, n, max_wait)?))
    }

    fn _until(&self, due: i64) -> f64 {
        protocol::until(self.inner.clock(), protocol::due_from(due))
    }

    fn _cancel(&self, key: &Bound<'_, PyAny>, n: f64, due: i64) -> PyResult<()> {
        self.inner
            .cancel(borrow_str(key, "key")?, n, protocol::due_from(due));
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

    /// Puts `key`'s bucket back to full, or every bucket when `key` is None.
    ///
    /// >>> limiter = KeyedLimiter(rate=1.0, capacity=5, clock=ManualClock())
    /// >>> limiter.try_acquire("u1", 5); limiter.reset("u1"); limiter.available("u1")
    /// True
    /// 5.0
    #[pyo3(signature = (key=None))]
    fn reset(&self, key: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        match key.filter(|k| !k.is_none()) {
            Some(key) => self.inner.reset_key(borrow_str(key, "key")?),
            None => self.inner.reset(),
        }
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
