//! The pyo3 bindings: one file per Python class family. Each `#[pymethods]`
//! function validates, calls `crate::core`, and maps the result; no algorithm
//! lives here.

use pyo3::prelude::*;

mod backoff;
mod breaker;
mod breaker_function;
mod bucket;
mod clock;
mod errors;
mod limiter;
mod protocol;

/// Adds every class to `ratekeeper._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<clock::ManualClock>()?;
    m.add_class::<bucket::TokenBucket>()?;
    m.add_class::<breaker::CircuitBreaker>()?;
    m.add_class::<breaker_function::BreakerFunction>()?;
    m.add_class::<backoff::Backoff>()?;
    limiter::register(m)?;
    Ok(())
}
