//! `BreakerFunction`: a sync function decorated by a `CircuitBreaker`, made
//! to behave like the function it wraps.

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use pyo3::PyTraverseError;

use super::breaker::CircuitBreaker;

/// A sync function decorated by a `CircuitBreaker`: calls go through the
/// breaker. It carries the wrapped function's metadata (set by
/// `functools.update_wrapper` in Python, hence the instance `__dict__`), and
/// binds like a function when it is a method.
///
/// >>> @breaker
/// ... def fetch(): ...
#[pyclass(
    frozen,
    dict,
    weakref,
    module = "ratekeeper._core",
    name = "BreakerFunction"
)]
pub struct BreakerFunction {
    breaker: Py<CircuitBreaker>,
    func: Py<PyAny>,
}

impl BreakerFunction {
    pub(super) fn new(breaker: Py<CircuitBreaker>, func: Py<PyAny>) -> BreakerFunction {
        BreakerFunction { breaker, func }
    }
}

#[pymethods]
impl BreakerFunction {
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        self.breaker.get().run(py, self.func.bind(py), args, kwargs)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.breaker)?;
        visit.call(&self.func)
    }

    /// Binds to `instance` like a plain function does, so `self` is passed.
    fn __get__(
        slf: &Bound<'_, Self>,
        instance: &Bound<'_, PyAny>,
        _owner: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match Some(instance).filter(|obj| !obj.is_none()) {
            None => Ok(slf.clone().into_any().unbind()),
            Some(instance) => {
                static METHOD_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
                let method_type = METHOD_TYPE.import(slf.py(), "types", "MethodType")?;
                Ok(method_type.call1((slf, instance))?.unbind())
            }
        }
    }

    /// Pickles by reference, like a function: the name under which the
    /// decorated function lives in its module.
    fn __reduce__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Ok(slf.getattr("__qualname__")?.unbind())
    }

    /// The breaker this function goes through.
    ///
    /// >>> breaker = ratekeeper.CircuitBreaker(); breaker(abs).breaker is breaker
    /// True
    #[getter]
    fn breaker(&self, py: Python<'_>) -> Py<CircuitBreaker> {
        self.breaker.clone_ref(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<BreakerFunction {} via {}>",
            self.func.bind(py).repr()?,
            self.breaker.bind(py).repr()?
        ))
    }
}
