//! `RateTracker`: the binding of `core::tracker::RateTracker`.

use crate::core::tracker;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::clock::clock_from;
use super::errors::{check_positive, config_error, count_arg, int, number};

/// Counts requests and tokens per key over the last `window` seconds.
///
/// Each key keeps a ring of `slots` time slots (fixed memory, whatever the
/// request rate), so counts are exact to one slot of `window / slots`
/// seconds: a record leaves the count between `window - window/slots` and
/// `window` seconds after it was made. `keys()` lists the keys with requests
/// in the window; keys with none are dropped.
///
/// >>> tracker = RateTracker(60.0); tracker.record("gpt-4o", tokens=120); tracker.requests("gpt-4o")
/// 1
#[pyclass(frozen, module = "ratekeeper")]
pub struct RateTracker {
    inner: tracker::RateTracker,
}

#[pymethods]
impl RateTracker {
    #[new]
    #[pyo3(signature = (window=60.0, *, slots=60, clock=None))]
    fn new(
        #[pyo3(from_py_with = number)] window: f64,
        #[pyo3(from_py_with = int)] slots: i128,
        clock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let clock = clock_from(clock)?;
        // The core checks the range again, naming the same bounds.
        let slots = count_arg("slots", slots, 1, 100_000)? as usize;
        let inner = tracker::RateTracker::new(window, slots, clock).map_err(config_error)?;
        Ok(RateTracker { inner })
    }

    /// Records one request of `tokens` tokens for `key`.
    ///
    /// >>> tracker = RateTracker(); tracker.record("u1", tokens=500); tracker.requests("u1")
    /// 1
    #[pyo3(signature = (key="default", tokens=0))]
    fn record(&self, key: &str, #[pyo3(from_py_with = int)] tokens: i128) -> PyResult<()> {
        let tokens = count_arg("tokens", tokens, 0, u64::MAX)?;
        self.inner.record(key, tokens);
        Ok(())
    }

    /// Requests recorded for `key` over the window.
    ///
    /// >>> tracker = RateTracker(); tracker.record("u1"); tracker.record("u1"); tracker.requests("u1")
    /// 2
    #[pyo3(signature = (key="default"))]
    fn requests(&self, key: &str) -> u64 {
        self.inner.counts(key).0
    }

    /// Tokens recorded for `key` over the window.
    ///
    /// >>> tracker = RateTracker(); tracker.record("u1", tokens=500); tracker.tokens("u1")
    /// 500
    #[pyo3(signature = (key="default"))]
    fn tokens(&self, key: &str) -> u64 {
        self.inner.counts(key).1
    }

    /// Whether `key` has made at least `threshold` of `limit` requests in the
    /// window.
    ///
    /// >>> tracker = RateTracker(); tracker.record("u1"); tracker.should_throttle("u1", limit=1)
    /// True
    #[pyo3(signature = (key, limit, threshold=0.9))]
    fn should_throttle(&self, key: &str, limit: f64, threshold: f64) -> PyResult<bool> {
        check_positive("limit", limit)?;
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(PyValueError::new_err(format!(
                "threshold must be a number in (0, 1], got {threshold}"
            )));
        }
        Ok(self.inner.counts(key).0 as f64 >= limit * threshold)
    }

    /// The keys with requests in the window, sorted.
    ///
    /// >>> tracker = RateTracker(); tracker.record("b"); tracker.record("a"); tracker.keys()
    /// ['a', 'b']
    fn keys(&self) -> Vec<String> {
        self.inner.keys()
    }

    /// The window in seconds.
    ///
    /// >>> RateTracker(window=60.0).window
    /// 60.0
    #[getter]
    fn window(&self) -> f64 {
        self.inner.window().as_secs_f64()
    }

    /// The number of time slots per window (counts are exact to one slot).
    ///
    /// >>> RateTracker(window=60.0, slots=60).slots
    /// 60
    #[getter]
    fn slots(&self) -> usize {
        self.inner.slots()
    }

    fn __repr__(&self) -> String {
        format!(
            "RateTracker(window={:?}, slots={})",
            self.window(),
            self.slots()
        )
    }
}
