//! `Backoff`: the binding of `core::backoff`.

use crate::core::backoff::{self, Jitter};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt};

use super::errors::{config_error, number};

/// Reads a Python `int >= 0` argument: `TypeError` for anything that is not
/// an int (bools included), `ValueError` for a negative one; ints beyond
/// `u64` saturate, since every count here only grows toward a cap.
pub fn int_arg(name: &str, value: &Bound<'_, PyAny>) -> PyResult<u64> {
    if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an int, got {}",
            value.get_type().name()?
        )));
    }
    if let Ok(n) = value.extract::<u64>() {
        return Ok(n);
    }
    if value.lt(0)? {
        return Err(PyValueError::new_err(format!(
            "{name} must be an int >= 0, got {value}"
        )));
    }
    Ok(u64::MAX)
}

/// Exponential backoff with jitter: `delay(attempt)` is at most
/// `min(max_delay, base * multiplier**attempt)`.
///
/// >>> Backoff(base=1.0, jitter="none").delay(3)
/// 8.0
#[pyclass(frozen, module = "ratekeeper", name = "Backoff")]
pub struct Backoff {
    inner: backoff::Backoff,
}

#[pymethods]
impl Backoff {
    #[new]
    #[pyo3(signature = (base=1.0, max_delay=60.0, *, multiplier=2.0, jitter="full"))]
    fn new(
        #[pyo3(from_py_with = number)] base: f64,
        #[pyo3(from_py_with = number)] max_delay: f64,
        #[pyo3(from_py_with = number)] multiplier: f64,
        jitter: &str,
    ) -> PyResult<Self> {
        let jitter = Jitter::from_name(jitter).map_err(config_error)?;
        let inner =
            backoff::Backoff::new(base, max_delay, multiplier, jitter).map_err(config_error)?;
        Ok(Backoff { inner })
    }

    /// Seconds to wait before retry `attempt` (0 for the first retry).
    ///
    /// >>> Backoff(base=1.0, jitter="none").delay(0)
    /// 1.0
    fn delay(&self, attempt: &Bound<'_, PyAny>) -> PyResult<f64> {
        let attempt = int_arg("attempt", attempt)?;
        Ok(self.inner.delay(attempt, &mut rand::rng()))
    }

    /// The delay before the first retry, in seconds.
    ///
    /// >>> Backoff(base=0.5).base
    /// 0.5
    #[getter]
    fn base(&self) -> f64 {
        self.inner.base()
    }

    /// No delay is ever longer than this, in seconds.
    ///
    /// >>> Backoff(max_delay=30.0).max_delay
    /// 30.0
    #[getter]
    fn max_delay(&self) -> f64 {
        self.inner.max_delay()
    }

    /// Each retry's delay is the previous one times this (before jitter).
    ///
    /// >>> Backoff(multiplier=3.0).multiplier
    /// 3.0
    #[getter]
    fn multiplier(&self) -> f64 {
        self.inner.multiplier()
    }

    /// `"none"`, `"full"`, `"equal"` or `"decorrelated"`.
    ///
    /// >>> Backoff(jitter="equal").jitter
    /// 'equal'
    #[getter]
    fn jitter(&self) -> &'static str {
        self.inner.jitter().name()
    }

    fn __repr__(&self) -> String {
        format!(
            "Backoff(base={:?}, max_delay={:?}, multiplier={:?}, jitter='{}')",
            self.inner.base(),
            self.inner.max_delay(),
            self.inner.multiplier(),
            self.inner.jitter().name()
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Backoff>()
            .is_ok_and(|other| other.get().inner == self.inner)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.inner.base().to_bits().hash(&mut hasher);
        self.inner.max_delay().to_bits().hash(&mut hasher);
        self.inner.multiplier().to_bits().hash(&mut hasher);
        self.inner.jitter().name().hash(&mut hasher);
        hasher.finish()
    }

    /// Pickles as the constructor's arguments.
    fn __getnewargs_ex__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<((f64, f64), Bound<'py, pyo3::types::PyDict>)> {
        let keywords = pyo3::types::PyDict::new(py);
        keywords.set_item("multiplier", self.inner.multiplier())?;
        keywords.set_item("jitter", self.inner.jitter().name())?;
        Ok(((self.inner.base(), self.inner.max_delay()), keywords))
    }
}
