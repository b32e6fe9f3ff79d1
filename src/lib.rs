//! ratekeeper: rate limiting for LLM API clients.
//!
//! `core` holds every algorithm in pure Rust; `py` is the thin pyo3 layer
//! that exposes it as `ratekeeper._core`.

pub mod core;

#[cfg(feature = "python")]
mod py;

#[cfg(feature = "python")]
use pyo3::prelude::*;

/// The compiled half of ratekeeper; the public API is the `ratekeeper` package.
#[cfg(feature = "python")]
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    py::register(m)
}
