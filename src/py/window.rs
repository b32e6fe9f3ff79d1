//! `SlidingWindow` and `FixedWindow`: the bindings of `core::window`.
//!
//! The two classes have the same Python surface, so one macro writes both;
//! each method is the same thin call into the core as in `bucket.rs`.

use crate::core::window;
use pyo3::prelude::*;

use super::clock::clock_from;
use super::errors::config_error;
use super::protocol::limit_pymethods;

macro_rules! window_class {
    ($name:ident, $core:ty, $doc:literal) => {
        #[doc = $doc]
        ///
        /// `acquire_async` and `async with` are attached from Python
        /// (`ratekeeper/limiters.py`): they sleep on the caller's event loop.
        #[pyclass(frozen, weakref, module = "ratekeeper")]
        pub struct $name {
            inner: $core,
            wakers: super::protocol::Wakers,
        }

        limit_pymethods!($name, {
            #[new]
            #[pyo3(signature = (limit, window, *, clock=None))]
            fn new(
                #[pyo3(from_py_with = $crate::py::errors::number)] limit: f64,
                #[pyo3(from_py_with = $crate::py::errors::number)] window: f64,
                clock: Option<&Bound<'_, PyAny>>,
            ) -> PyResult<Self> {
                let clock = clock_from(clock)?;
                let inner = <$core>::new(limit, window, clock).map_err(config_error)?;
                Ok($name {
                    inner,
                    wakers: Default::default(),
                })
            }

            /// Forgets every grant and reservation.
            ///
            /// >>> window = SlidingWindow(limit=1, window=60.0)  # FixedWindow alike
            /// >>> window.try_acquire(); window.reset(); window.try_acquire()
            /// True
            /// True
            fn reset(&self) {
                self.inner.reset()
            }

            /// The most units granted per window.
            ///
            /// >>> SlidingWindow(limit=100, window=60.0).limit, FixedWindow(limit=100, window=60.0).limit
            /// (100.0, 100.0)
            #[getter]
            fn limit(&self) -> f64 {
                self.inner.limit()
            }

            /// The window's length in seconds.
            ///
            /// >>> SlidingWindow(limit=100, window=60.0).window, FixedWindow(limit=100, window=60.0).window
            /// (60.0, 60.0)
            #[getter]
            fn window(&self) -> f64 {
                self.inner.window().as_secs_f64()
            }

            fn __repr__(&self) -> String {
                format!(
                    concat!(stringify!($name), "(limit={:?}, window={:?})"),
                    self.limit(),
                    self.window()
                )
            }
        });
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
