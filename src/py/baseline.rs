//! A no-op class for the benchmarks: the cost of one pyo3 method call, the
//! floor any `_core` method stands on. Not part of the public API.

use pyo3::prelude::*;

/// `_core._Baseline().noop()` does nothing; `bench/` times it beside the
/// hot paths so that their overhead is shown as a ratio to the floor.
#[pyclass(frozen, module = "ratekeeper._core", name = "_Baseline")]
pub struct Baseline;

#[pymethods]
impl Baseline {
    #[new]
    fn new() -> Self {
        Baseline
    }

    /// Does nothing, as cheaply as pyo3 allows.
    fn noop(&self) {}

    /// Does nothing with the signature of `try_acquire(n=1.0)`: the floor for
    /// a method that parses one optional argument and returns a bool.
    #[pyo3(signature = (n=1.0))]
    fn noop_like_try_acquire(&self, n: f64) -> bool {
        n > 0.0
    }
}
