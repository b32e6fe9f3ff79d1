//! The pyo3 bindings: one file per Python class family. Each `#[pymethods]`
//! function validates, calls `crate::core`, and maps the result; no algorithm
//! lives here.

use pyo3::prelude::*;

mod bucket;
mod clock;
mod errors;
mod protocol;
mod redis;
mod redis_ops;

/// Adds every class to `ratekeeper._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<clock::ManualClock>()?;
    m.add_class::<bucket::TokenBucket>()?;
    redis::register(m)?;
    Ok(())
}
