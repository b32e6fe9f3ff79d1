//! `ManualClock`, and reading the `clock=` argument every primitive takes.

use crate::core::{clock, Clock, Nanos};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::sync::Arc;

use super::errors::{check_non_negative, number};

/// A test clock that moves only when told to, or when something waits on it.
///
/// >>> clock = ManualClock(); clock.advance(1.5); clock.now()
/// 1.5
/// 1.5
#[pyclass(frozen, module = "ratekeeper")]
pub struct ManualClock {
    pub inner: Arc<clock::ManualClock>,
}

#[pymethods]
impl ManualClock {
    #[new]
    #[pyo3(signature = (start=0.0))]
    fn new(#[pyo3(from_py_with = number)] start: f64) -> PyResult<Self> {
        check_non_negative("start", start)?;
        let start = Nanos::from_secs_f64(start);
        if start > clock::ManualClock::LATEST {
            return Err(PyValueError::new_err(format!(
                "start must be at most {} seconds, got {}",
                clock::ManualClock::LATEST.as_secs_f64(),
                start.as_secs_f64()
            )));
        }
        Ok(ManualClock {
            inner: Arc::new(clock::ManualClock::new(start)),
        })
    }

    /// The current time in seconds.
    ///
    /// >>> ManualClock(start=10.0).now()
    /// 10.0
    fn now(&self) -> f64 {
        self.inner.now().as_secs_f64()
    }

    /// Moves the clock forward by `seconds` and returns the new time.
    ///
    /// >>> ManualClock().advance(2.5)
    /// 2.5
    fn advance(&self, #[pyo3(from_py_with = number)] seconds: f64) -> PyResult<f64> {
        check_non_negative("seconds", seconds)?;
        let latest = clock::ManualClock::LATEST;
        if Nanos::from_secs_f64(seconds) > latest - self.inner.now() {
            return Err(PyValueError::new_err(format!(
                "seconds={seconds} would move the clock past its end ({} seconds)",
                latest.as_secs_f64()
            )));
        }
        Ok(self
            .inner
            .advance(Nanos::from_secs_f64(seconds))
            .as_secs_f64())
    }

    /// Waits `seconds` of virtual time, i.e. advances the clock (so that code
    /// under test can call `clock.sleep` where it would call `time.sleep`).
    ///
    /// >>> clock = ManualClock(); clock.sleep(1.5); clock.now()
    /// 1.5
    fn sleep(&self, seconds: f64) -> PyResult<()> {
        self.advance(seconds).map(|_| ())
    }

    fn __repr__(&self) -> String {
        format!("ManualClock(now={:?})", self.now())
    }
}

/// Reads a `clock=` argument: `None` is the monotonic clock.
pub fn clock_from(clock: Option<&Bound<'_, PyAny>>) -> PyResult<Clock> {
    match clock {
        None => Ok(Clock::Monotonic),
        Some(obj) if obj.is_none() => Ok(Clock::Monotonic),
        Some(obj) => match obj.cast::<ManualClock>() {
            Ok(manual) => Ok(Clock::Manual(manual.get().inner.clone())),
            Err(_) => Err(PyTypeError::new_err(format!(
                "clock must be None or a ratekeeper.ManualClock, got {}",
                obj.get_type().name()?
            ))),
        },
    }
}
