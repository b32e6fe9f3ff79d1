//! The one place where Rust errors become Python exceptions.
// Some helpers here are used only by later classes (breaker, limiter).
#![allow(dead_code)]

use crate::core::{LimitError, Nanos};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

impl From<LimitError> for PyErr {
    fn from(err: LimitError) -> PyErr {
        PyValueError::new_err(err.to_string())
    }
}

/// A configuration error from the core (the message names the argument).
pub fn config_error(message: String) -> PyErr {
    PyValueError::new_err(message)
}

/// Checks an optional timeout: `None`, or a finite number >= 0.
pub fn check_timeout(timeout: Option<f64>) -> PyResult<Option<f64>> {
    match timeout {
        Some(t) if !(t.is_finite() && t >= 0.0) => Err(PyValueError::new_err(format!(
            "timeout must be None or a finite number >= 0, got {t}"
        ))),
        other => Ok(other),
    }
}

/// [`check_timeout`], as the longest wait a reservation may take.
pub fn check_max_wait(timeout: Option<f64>) -> PyResult<Option<Nanos>> {
    Ok(check_timeout(timeout)?.map(Nanos::from_secs_f64))
}

/// Checks a number that must be finite and > 0, naming it in the error.
pub fn check_positive(name: &str, value: f64) -> PyResult<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(PyValueError::new_err(format!(
            "{name} must be a finite number > 0, got {value}"
        )))
    }
}

/// Checks a number that must be finite and >= 0, naming it in the error.
pub fn check_non_negative(name: &str, value: f64) -> PyResult<f64> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(PyValueError::new_err(format!(
            "{name} must be a finite number >= 0, got {value}"
        )))
    }
}

/// An exception class defined in Python (`ratekeeper.errors`), so that it
/// pickles and carries attributes like any Python exception; looked up once.
fn python_error_class<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyType>> {
    cell.import(py, "ratekeeper.errors", name)
}

/// `ratekeeper.CircuitOpenError(retry_after)`.
pub fn circuit_open_error(py: Python<'_>, retry_after: f64) -> PyErr {
    static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    match python_error_class(py, &CLASS, "CircuitOpenError") {
        Ok(class) => PyErr::from_type(class.clone(), (retry_after,)),
        Err(err) => err,
    }
}

/// `ratekeeper.RateLimitTimeout(message, wait, timeout)`.
pub fn rate_limit_timeout(py: Python<'_>, wait: f64, timeout: f64) -> PyErr {
    static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    match python_error_class(py, &CLASS, "RateLimitTimeout") {
        Ok(class) => {
            let message = format!(
                "granting this would need a wait of {wait:.3}s, over the timeout of {timeout:.3}s"
            );
            PyErr::from_type(class.clone(), (message, wait, timeout))
        }
        Err(err) => err,
    }
}

/// `ratekeeper.RateLimitError(message)`: the base class, for "denied".
pub fn rate_limit_error(py: Python<'_>, message: String) -> PyErr {
    static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    match python_error_class(py, &CLASS, "RateLimitError") {
        Ok(class) => PyErr::from_type(class.clone(), (message,)),
        Err(err) => err,
    }
}
