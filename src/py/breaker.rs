//! `CircuitBreaker` and the function it decorates: the binding of
//! `core::breaker`, with the sync call path (let through, call, classify,
//! record, re-raise) in Rust so a healthy service pays almost nothing.

use crate::core::breaker::{self, BreakerConfig, Permit, State};
use pyo3::exceptions::{PyBaseException, PyException, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple, PyType, PyWeakrefMethods, PyWeakrefReference};
use pyo3::PyTraverseError;

use super::breaker_function::BreakerFunction;
use super::clock::clock_from;
use super::errors::{check_positive, circuit_open_error, config_error, count_arg, int, number};

/// Which exceptions count as failures of the service (`failure_on=`).
enum FailureOn {
    /// Every `Exception`.
    Every,
    /// An exception type or a tuple of them, for `isinstance`.
    Types(Py<PyAny>),
    /// A callable `exc -> bool`.
    Predicate(Py<PyAny>),
}

impl FailureOn {
    fn from_arg(failure_on: Option<&Bound<'_, PyAny>>) -> PyResult<FailureOn> {
        let Some(obj) = failure_on.filter(|obj| !obj.is_none()) else {
            return Ok(FailureOn::Every);
        };
        let is_exception_type = |item: &Bound<'_, PyAny>| -> PyResult<bool> {
            match item.cast::<PyType>() {
                Ok(ty) => ty.is_subclass_of::<PyBaseException>(),
                Err(_) => Ok(false),
            }
        };
        if let Ok(types) = obj.cast::<PyTuple>() {
            for item in types.iter() {
                if !is_exception_type(&item)? {
                    return Err(PyTypeError::new_err(format!(
                        "failure_on tuple must hold exception types only, got {}",
                        item.repr()?
                    )));
                }
            }
            return Ok(FailureOn::Types(obj.clone().unbind()));
        }
        if is_exception_type(obj)? {
            return Ok(FailureOn::Types(obj.clone().unbind()));
        }
        if obj.is_callable() {
            return Ok(FailureOn::Predicate(obj.clone().unbind()));
        }
        Err(PyTypeError::new_err(format!(
            "failure_on must be None, an exception type, a tuple of them, or a \
             callable exc -> bool, got {}",
            obj.get_type().name()?
        )))
    }
}

/// A circuit breaker (SPEC section 4). `ratekeeper.CircuitBreaker`
/// subclasses it to add the decorator and the async call.
///
/// >>> breaker = CircuitBreaker(failure_threshold=3); breaker.state
/// 'closed'
#[pyclass(
    frozen,
    subclass,
    weakref,
    module = "ratekeeper._core",
    name = "CircuitBreaker"
)]
pub struct CircuitBreaker {
    inner: breaker::CircuitBreaker,
    failure_on: FailureOn,
    failure_on_arg: Option<Py<PyAny>>,
    clock_arg: Option<Py<PyAny>>,
    on_state_change: Option<Py<PyAny>>,
}

impl CircuitBreaker {
    fn enter(&self, py: Python<'_>) -> PyResult<Permit> {
        self.inner
            .try_enter()
            .map_err(|left| circuit_open_error(py, left.as_secs_f64()))
    }

    /// Lets the call through, calls `func`, records its outcome and returns
    /// its result or its exception, unchanged.
    pub(super) fn run(
        &self,
        py: Python<'_>,
        func: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let permit = self.enter(py)?;
        match func.call(args, kwargs) {
            Ok(result) => {
                self.inner.on_success(permit);
                Ok(result.unbind())
            }
            Err(err) => {
                let outcome = self.settle(py, permit, err.value(py));
                Err(match outcome {
                    Ok(()) => err,
                    Err(predicate_err) => {
                        // As if raised inside `except`: the call's error is
                        // the context of the predicate's.
                        predicate_err.set_context(py, Some(err));
                        predicate_err
                    }
                })
            }
        }
    }

    /// Records the outcome of a call that raised `exc`. Exceptions that are
    /// not `Exception`s (KeyboardInterrupt, SystemExit, CancelledError) say
    /// nothing about the service: a probe gives its slot back, nothing counts.
    /// A `failure_on` predicate that raises counts the call as a failure and
    /// its own error is returned.
    fn settle(
        &self,
        py: Python<'_>,
        permit: Permit,
        exc: &Bound<'_, PyBaseException>,
    ) -> PyResult<()> {
        if !exc.is_instance_of::<PyException>() {
            self.inner.on_abandon(permit);
            return Ok(());
        }
        let is_failure = match &self.failure_on {
            FailureOn::Every => Ok(true),
            FailureOn::Types(types) => exc.is_instance(types.bind(py)),
            FailureOn::Predicate(predicate) => predicate
                .bind(py)
                .call1((exc,))
                .and_then(|verdict| verdict.is_truthy()),
        };
        match is_failure {
            Ok(false) => self.inner.on_success(permit),
            Ok(true) | Err(_) => self.inner.on_failure(permit),
        }
        is_failure.map(|_| ())
    }
}

#[pymethods]
impl CircuitBreaker {
    #[new]
    #[pyo3(signature = (
        failure_threshold=5,
        reset_timeout=60.0,
        *,
        half_open_max_calls=1,
        success_threshold=1,
        failure_on=None,
        clock=None,
        on_state_change=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        #[pyo3(from_py_with = int)] failure_threshold: i128,
        #[pyo3(from_py_with = number)] reset_timeout: f64,
        #[pyo3(from_py_with = int)] half_open_max_calls: i128,
        #[pyo3(from_py_with = int)] success_threshold: i128,
        failure_on: Option<&Bound<'_, PyAny>>,
        clock: Option<&Bound<'_, PyAny>>,
        on_state_change: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let on_state_change = on_state_change.filter(|obj| !obj.is_none());
        if let Some(hook) = on_state_change.filter(|obj| !obj.is_callable()) {
            return Err(PyTypeError::new_err(format!(
                "on_state_change must be None or a callable (breaker, old_state, new_state), got {}",
                hook.get_type().name()?
            )));
        }
        let count = |name, value| count_arg(name, value, 1, u64::from(breaker::MAX_THRESHOLD));
        let config = BreakerConfig::check(
            count("failure_threshold", failure_threshold)?,
            check_positive("reset_timeout", reset_timeout)?,
            count("half_open_max_calls", half_open_max_calls)?,
            count("success_threshold", success_threshold)?,
        )
        .map_err(config_error)?;
        let core_clock = clock_from(clock)?;
        Ok(CircuitBreaker {
            inner: breaker::CircuitBreaker::new(config, core_clock),
            failure_on: FailureOn::from_arg(failure_on)?,
            failure_on_arg: failure_on
                .filter(|obj| !obj.is_none())
                .map(|obj| obj.clone().unbind()),
            clock_arg: clock
                .filter(|obj| !obj.is_none())
                .map(|obj| obj.clone().unbind()),
            on_state_change: on_state_change.map(|obj| obj.clone().unbind()),
        })
    }

    /// Makes every state change call `hook(breaker, old, new)` (the Python
    /// class passes its reporter once, from `__init__`). The hook sees the
    /// breaker through a weak reference: no cycle, nothing kept alive.
    fn _listen(slf: &Bound<'_, Self>, hook: &Bound<'_, PyAny>) -> PyResult<bool> {
        let breaker = PyWeakrefReference::new(slf.as_any())?.unbind();
        let hook = hook.clone().unbind();
        Ok(slf.get().inner.listen(Box::new(move |old, new| {
            Python::attach(|py| {
                let Some(breaker) = breaker.bind(py).upgrade() else {
                    return;
                };
                if let Err(err) = hook.call1(py, (breaker, old.name(), new.name())) {
                    err.write_unraisable(py, None);
                }
            })
        })))
    }

    // The references held here never change, so visiting them is enough for
    // the garbage collector to break cycles elsewhere (no `__clear__`).
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let FailureOn::Types(obj) | FailureOn::Predicate(obj) = &self.failure_on {
            visit.call(obj)?;
        }
        visit.call(&self.failure_on_arg)?;
        visit.call(&self.clock_arg)?;
        visit.call(&self.on_state_change)
    }

    /// `"closed"`, `"open"` or `"half_open"`.
    ///
    /// >>> CircuitBreaker().state
    /// 'closed'
    #[getter]
    fn state<'py>(&self, py: Python<'py>) -> &Bound<'py, PyString> {
        // Interned: reading the state allocates nothing.
        match self.inner.state() {
            State::Closed => intern!(py, "closed"),
            State::Open => intern!(py, "open"),
            State::HalfOpen => intern!(py, "half_open"),
        }
    }

    /// Seconds until an open breaker lets a probe through; 0.0 unless open.
    ///
    /// >>> breaker = CircuitBreaker(failure_threshold=1, reset_timeout=30.0, clock=ManualClock())
    /// >>> breaker.record_failure(); breaker.retry_after
    /// 30.0
    #[getter]
    fn retry_after(&self) -> f64 {
        self.inner.retry_after().as_secs_f64()
    }

    /// Consecutive failures counted since the last success or close.
    ///
    /// >>> breaker = CircuitBreaker(failure_threshold=3); breaker.record_failure(); breaker.failure_count
    /// 1
    #[getter]
    fn failure_count(&self) -> u32 {
        self.inner.failure_count()
    }

    /// Whether a call may go ahead now. Half-open, `True` takes a probe slot
    /// that the next `record_success()`/`record_failure()` gives back.
    ///
    /// >>> CircuitBreaker().allow()
    /// True
    fn allow(&self) -> bool {
        self.inner.allow()
    }

    /// Records a successful call (ignored while open).
    ///
    /// >>> breaker = CircuitBreaker(failure_threshold=3); breaker.record_failure()
    /// >>> breaker.record_success(); breaker.failure_count
    /// 0
    fn record_success(&self) {
        self.inner.record_success()
    }

    /// Records a failed call (ignored while open).
    ///
    /// >>> breaker = CircuitBreaker(failure_threshold=1); breaker.record_failure(); breaker.state
    /// 'open'
    fn record_failure(&self) {
        self.inner.record_failure()
    }

    /// Back to closed, no failures counted.
    ///
    /// >>> breaker = CircuitBreaker(); breaker.trip(); breaker.reset(); breaker.state
    /// 'closed'
    fn reset(&self) {
        self.inner.reset()
    }

    /// Forces the breaker open now, restarting `reset_timeout`.
    ///
    /// >>> breaker = CircuitBreaker(); breaker.trip(); breaker.state
    /// 'open'
    fn trip(&self) {
        self.inner.trip()
    }

    /// Calls `func(*args, **kwargs)` through the breaker; raises
    /// `CircuitOpenError` without calling it when the breaker refuses.
    ///
    /// >>> CircuitBreaker().call(abs, -3)
    /// 3
    #[pyo3(signature = (func, /, *args, **kwargs))]
    fn call(
        &self,
        py: Python<'_>,
        func: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        self.run(py, func, args, kwargs)
    }

    /// Wraps a sync function: the decorator's result (see `__call__` in the
    /// Python class).
    fn _wrap(slf: &Bound<'_, Self>, func: &Bound<'_, PyAny>) -> PyResult<BreakerFunction> {
        if !func.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "CircuitBreaker decorates a callable, got {}",
                func.get_type().name()?
            )));
        }
        Ok(BreakerFunction::new(
            slf.clone().unbind(),
            func.clone().unbind(),
        ))
    }

    /// Lets a call through (for the async path): returns its permit or
    /// raises `CircuitOpenError`.
    fn _enter(&self, py: Python<'_>) -> PyResult<u64> {
        self.enter(py).map(|permit| permit.0)
    }

    /// The call admitted with `permit` returned normally.
    fn _success(&self, permit: u64) {
        self.inner.on_success(Permit(permit))
    }

    /// The call admitted with `permit` never reached the service (its wait
    /// for a limiter timed out or was cancelled, or it was interrupted): a
    /// probe gives its slot back, nothing is counted.
    fn _abandon(&self, permit: u64) {
        self.inner.on_abandon(Permit(permit))
    }

    /// The call admitted with `permit` raised `exc`: classify and record it.
    fn _settle(
        &self,
        py: Python<'_>,
        permit: u64,
        exc: &Bound<'_, PyBaseException>,
    ) -> PyResult<()> {
        self.settle(py, Permit(permit), exc)
    }

    /// Consecutive failures that open the breaker.
    ///
    /// >>> CircuitBreaker(failure_threshold=3).failure_threshold
    /// 3
    #[getter]
    fn failure_threshold(&self) -> u32 {
        self.inner.config().failure_threshold
    }

    /// Seconds an open breaker waits before letting a probe through.
    ///
    /// >>> CircuitBreaker(reset_timeout=30.0).reset_timeout
    /// 30.0
    #[getter]
    fn reset_timeout(&self) -> f64 {
        self.inner.config().reset_timeout.as_secs_f64()
    }

    /// Probe calls let through at once while half open.
    ///
    /// >>> CircuitBreaker(half_open_max_calls=2).half_open_max_calls
    /// 2
    #[getter]
    fn half_open_max_calls(&self) -> u32 {
        self.inner.config().half_open_max_calls
    }

    /// Successful probes that close a half-open breaker.
    ///
    /// >>> CircuitBreaker(success_threshold=2).success_threshold
    /// 2
    #[getter]
    fn success_threshold(&self) -> u32 {
        self.inner.config().success_threshold
    }

    /// What counts as a failure: `None` (every exception), a type, a tuple
    /// of types, or a predicate.
    ///
    /// >>> CircuitBreaker(failure_on=ValueError).failure_on
    /// <class 'ValueError'>
    #[getter]
    fn failure_on(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.failure_on_arg.as_ref().map(|obj| obj.clone_ref(py))
    }

    /// What is called with `(breaker, old_state, new_state)` on every state
    /// change, or `None`.
    ///
    /// >>> CircuitBreaker().on_state_change is None
    /// True
    #[getter]
    fn on_state_change(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.on_state_change.as_ref().map(|obj| obj.clone_ref(py))
    }

    /// The `ManualClock` this breaker reads, or `None` for the monotonic one.
    ///
    /// >>> CircuitBreaker().clock is None
    /// True
    #[getter]
    fn clock(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.clock_arg.as_ref().map(|obj| obj.clone_ref(py))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let config = self.inner.config();
        let failure_on = match &self.failure_on_arg {
            None => "None".to_owned(),
            Some(obj) => obj.bind(py).repr()?.to_string(),
        };
        Ok(format!(
            "CircuitBreaker(failure_threshold={}, reset_timeout={:?}, half_open_max_calls={}, \
             success_threshold={}, failure_on={}, state='{}')",
            config.failure_threshold,
            config.reset_timeout.as_secs_f64(),
            config.half_open_max_calls,
            config.success_threshold,
            failure_on,
            self.inner.state().name(),
        ))
    }
}
