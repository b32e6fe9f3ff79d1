//! The one place where Rust errors become Python exceptions.
// Some helpers here are used only by later classes (breaker, limiter).
#![allow(dead_code)]

use crate::core::{LimitError, Nanos};
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyType};

impl From<LimitError> for PyErr {
    fn from(err: LimitError) -> PyErr {
        PyValueError::new_err(err.to_string())
    }
}

/// A configuration error from the core (the message names the argument).
pub fn config_error(message: String) -> PyErr {
    PyValueError::new_err(message)
}

/// A float argument, for `#[pyo3(from_py_with = number)]`: an int too large
/// for a float (`10**400`) becomes an infinity of its sign instead of an
/// `OverflowError` that names nothing, so that the argument's own check
/// refuses it with a `ValueError` naming the argument.
///
/// The success path is the plain conversion: the hot calls' amounts use it.
#[inline]
pub fn number(value: &Bound<'_, PyAny>) -> PyResult<f64> {
    match value.extract::<f64>() {
        Ok(v) => Ok(v),
        Err(err) => overflow_to_infinity(value, err),
    }
}

#[cold]
#[inline(never)]
fn overflow_to_infinity(value: &Bound<'_, PyAny>, err: PyErr) -> PyResult<f64> {
    if !err.is_instance_of::<PyOverflowError>(value.py()) {
        return Err(err);
    }
    Ok(if value.lt(0)? {
        f64::NEG_INFINITY
    } else {
        f64::INFINITY
    })
}

/// [`number`] for an argument that may be `None`.
pub fn optional_number(value: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
    if value.is_none() {
        Ok(None)
    } else {
        number(value).map(Some)
    }
}

/// An int argument, for `#[pyo3(from_py_with = int)]`: never a bool; an int
/// too large for 128 bits saturates instead of raising `OverflowError`, so
/// that [`count_arg`] refuses it with a `ValueError` naming the argument.
pub fn int(value: &Bound<'_, PyAny>) -> PyResult<i128> {
    if value.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err("expected an int, got bool"));
    }
    match value.extract::<i128>() {
        Err(err) if err.is_instance_of::<PyOverflowError>(value.py()) => {
            Ok(if value.lt(0)? { i128::MIN } else { i128::MAX })
        }
        other => other,
    }
}

/// Checks a count argument read by [`int`]: from `min` to `max`.
pub fn count_arg(name: &str, value: i128, min: u64, max: u64) -> PyResult<u64> {
    if value >= i128::from(min) && value <= i128::from(max) {
        return Ok(value as u64);
    }
    let shown = if value == i128::MAX || value == i128::MIN {
        "an int too large to use".to_string()
    } else {
        value.to_string()
    };
    Err(PyValueError::new_err(format!(
        "{name} must be an int from {min} to {max}, got {shown}"
    )))
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
