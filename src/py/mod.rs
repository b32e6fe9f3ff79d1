//! The pyo3 bindings: one file per Python class family. Each `#[pymethods]`
//! function validates, calls `crate::core`, and maps the result; no algorithm
//! lives here.

use pyo3::prelude::*;

mod backoff;
mod baseline;
mod breaker;
mod breaker_function;
mod bucket;
mod clock;
mod errors;
mod keyed;
mod limiter;
mod permit;
mod protocol;
mod redis;
mod redis_ops;
mod redis_window;
mod text;
mod tracker;
mod window;

/// Adds every class to `ratekeeper._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<baseline::Baseline>()?;
    m.add_class::<clock::ManualClock>()?;
    m.add_class::<bucket::TokenBucket>()?;
    m.add_class::<window::SlidingWindow>()?;
    m.add_class::<window::FixedWindow>()?;
    m.add_class::<breaker::CircuitBreaker>()?;
    m.add_class::<breaker_function::BreakerFunction>()?;
    m.add_class::<backoff::Backoff>()?;
    redis::register(m)?;
    redis_window::register(m)?;
    m.add_class::<keyed::KeyedLimiter>()?;
    m.add_class::<tracker::RateTracker>()?;
    limiter::register(m)?;
    Ok(())
}
