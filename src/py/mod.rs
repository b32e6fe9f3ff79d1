//! The pyo3 bindings: one file per Python class family. Each `#[pymethods]`
//! function validates, calls `crate::core`, and maps the result; no algorithm
//! lives here.

use pyo3::prelude::*;

mod bucket;
mod clock;
mod errors;
mod keyed;
mod protocol;
mod redis;
mod redis_ops;
mod text;
mod tracker;

/// Adds every class to `ratekeeper._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<clock::ManualClock>()?;
    m.add_class::<bucket::TokenBucket>()?;
    redis::register(m)?;
    m.add_class::<keyed::KeyedLimiter>()?;
    m.add_class::<tracker::RateTracker>()?;
    Ok(())
}
