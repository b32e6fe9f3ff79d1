//! `SlidingWindow` and `FixedWindow`: the bindings of `core::window`.
//!
//! The two classes have the same Python surface, so one macro writes both;
//! each method is the same thin call into the core as in `bucket.rs`.

use crate::core::window;
use crate::core::Limit;
use pyo3::prelude::*;

use super::clock::clock_from;
use super::errors::config_error;
use super::protocol;

macro_rules! window_class {
    ($name:ident, $core:ty, $doc:literal) => {
        #[doc = $doc]
        ///
        /// `acquire_async` and `async with` are attached from Python
        /// (`ratekeeper/limiters.py`): they sleep on the caller's event loop.
        #[pyclass(frozen, module = "ratekeeper")]
        pub struct $name {
            inner: $core,
        }

        #[pymethods]
        impl $name {
            #[new]
            #[pyo3(signature = (limit, window, *, clock=None))]
            fn new(limit: f64, window: f64, clock: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
                let clock = clock_from(clock)?;
                let inner = <$core>::new(limit, window, clock).map_err(config_error)?;
                Ok($name { inner })
            }

            /// Takes `n` units now if they are available; never waits.
            #[pyo3(signature = (n=1.0))]
            fn try_acquire(&self, n: f64) -> PyResult<bool> {
                Ok(self.inner.try_acquire(n)?)
            }

            /// Waits (GIL released) until `n` units are granted; `False` at
            /// once, taking nothing, when the wait would exceed `timeout`.
            #[pyo3(signature = (n=1.0, timeout=None))]
            fn acquire(&self, py: Python<'_>, n: f64, timeout: Option<f64>) -> PyResult<bool> {
                protocol::acquire_blocking(py, &self.inner, n, timeout)
            }

            /// Seconds until `n` units would be granted; 0.0 when now.
            #[pyo3(signature = (n=1.0))]
            fn wait_time(&self, n: f64) -> PyResult<f64> {
                Ok(self.inner.wait_time(n)?.as_secs_f64())
            }

            #[pyo3(signature = (n=1.0, timeout=None))]
            fn _reserve(&self, n: f64, timeout: Option<f64>) -> PyResult<i64> {
                protocol::reserve(&self.inner, n, timeout)
            }

            fn _until(&self, due: i64) -> f64 {
                protocol::until(&self.inner, due)
            }

            fn _cancel(&self, n: f64, due: i64) {
                protocol::cancel(&self.inner, n, due)
            }

            /// Forgets every grant and reservation.
            fn reset(&self) {
                self.inner.reset()
            }

            /// The most units granted per window.
            #[getter]
            fn limit(&self) -> f64 {
                self.inner.limit()
            }

            /// The window's length in seconds.
            #[getter]
            fn window(&self) -> f64 {
                self.inner.window().as_secs_f64()
            }

            fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
                protocol::acquire_blocking(slf.py(), &slf.get().inner, 1.0, None)?;
                Ok(slf)
            }

            #[pyo3(signature = (*_args))]
            fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
                false
            }

            fn __repr__(&self) -> String {
                format!(
                    concat!(stringify!($name), "(limit={:?}, window={:?})"),
                    self.limit(),
                    self.window()
                )
            }
        }
    };
}

window_class!(
    SlidingWindow,
    window::SlidingWindow,
    "At most `limit` units in any window of `window` seconds (exact, a sliding log).\n\n>>> SlidingWindow(limit=100, window=60.0).try_acquire()\nTrue"
);

window_class!(
    FixedWindow,
    window::FixedWindow,
    "At most `limit` units per aligned window `[k*window, (k+1)*window)` of the clock.\n\n>>> FixedWindow(limit=100, window=60.0).try_acquire()\nTrue"
);
