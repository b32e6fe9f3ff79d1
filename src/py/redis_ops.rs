//! The limiter protocol over a `SharedGcra`, written once for the Redis
//! classes (`RedisTokenBucket`, `RedisBudgets`): each takes the amounts to
//! charge, one per budget.
//!
//! Sync calls run the core's future on the shared tokio runtime with the GIL
//! released. Async calls spawn it there and hand the reply to the caller's
//! loop with one `call_soon_threadsafe(resolve, future, value)`: measured
//! lighter than a future bridged by pyo3-async-runtimes (bench/bench_redis.py).
//! Health changes (an outage starting or ending) are reported here, once
//! each: to the event sink the Python package installs (`ratekeeper._events.
//! emit`, which logs and feeds subscribers), else on the "ratekeeper" logger.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::redis::{Decision, Event, OnError, SharedGcra, Source};
use crate::core::Nanos;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;
use pyo3::IntoPyObjectExt;

use super::errors::{check_max_wait, rate_limit_error};
use super::protocol::SIGNAL_CHECK_INTERVAL;

/// The runtime every Redis connection lives on (pyo3-async-runtimes').
pub fn runtime() -> tokio::runtime::Handle {
    pyo3_async_runtimes::tokio::get_runtime().handle().clone()
}

/// Where health changes go: `fn(kind, source, **fields)`, set once by the
/// Python package (the compiled module never imports the package itself).
static EVENT_SINK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Installs the function that receives Redis health events
/// (`"redis_outage"` with `error` and `on_error`, `"redis_recovered"`).
///
/// >>> import ratekeeper._core as core; core._set_event_sink(print)  # doctest: +SKIP
#[pyfunction]
pub fn _set_event_sink(py: Python<'_>, sink: Py<PyAny>) {
    // The first sink stays: the package installs it once, at import.
    let _ = EVENT_SINK.set(py, sink);
}

/// Hands a health change to the event sink; false when none is installed.
fn emit_event(py: Python<'_>, event: &Event, on_error: OnError) -> bool {
    let Some(sink) = EVENT_SINK.get(py) else {
        return false;
    };
    let fields = PyDict::new(py);
    let kind = match event {
        Event::None => return true,
        Event::WentDown(cause) => {
            let _ = fields.set_item("error", cause.to_string());
            let _ = fields.set_item("on_error", on_error.as_str());
            "redis_outage"
        }
        Event::CameBack => "redis_recovered",
    };
    // Reporting must never break a limiter: a failing sink is ignored.
    let _ = sink.call(py, (kind, py.None()), Some(&fields));
    true
}

/// Reports a change of the backend's health: to the event sink, else on
/// the "ratekeeper" logger.
pub fn log_event(py: Python<'_>, event: &Event, on_error: OnError) {
    if emit_event(py, event, on_error) {
        return;
    }
    let (level, message) = match event {
        Event::None => return,
        Event::WentDown(cause) => {
            let fallback = match on_error {
                OnError::Local => "limiting in process until it is back",
                OnError::Allow => "letting every request through until it is back",
                OnError::Deny => "refusing every request until it is back",
            };
            (
                "warning",
                format!(
                    "Redis is unreachable ({cause}); on_error='{}': {fallback}",
                    on_error.as_str()
                ),
            )
        }
        Event::CameBack => (
            "info",
            "Redis is reachable again; limits are shared again".to_owned(),
        ),
    };
    // Logging must never break a limiter: a failure to log is dropped.
    let _ = py
        .import("logging")
        .and_then(|logging| logging.call_method1("getLogger", ("ratekeeper",)))
        .and_then(|logger| logger.call_method1(level, (message,)));
}

pub fn denied(py: Python<'_>) -> PyErr {
    rate_limit_error(
        py,
        "Redis is unreachable and on_error='deny': request refused".to_owned(),
    )
}

/// A grant's source as one int for Python: 1 local, 2 open, else Redis
/// with its reservation's ticket times 4 (so `!= 2` still means "limited").
pub fn source_code(source: Source) -> u64 {
    match source {
        Source::Redis(ticket) => ticket.saturating_mul(4),
        Source::Local => 1,
        Source::Open => 2,
    }
}

pub fn source_from(code: u64) -> Source {
    match code % 4 {
        0 => Source::Redis(code / 4),
        1 => Source::Local,
        _ => Source::Open,
    }
}

/// One acquire, decided by Redis (or the fallback), GIL released.
pub fn decide(
    py: Python<'_>,
    shared: &SharedGcra,
    amounts: &[f64],
    max_wait: Option<Nanos>,
    now_us: Option<u64>,
) -> PyResult<Decision> {
    let (decision, event) = py.detach(|| shared.acquire_blocking(amounts, max_wait, now_us))?;
    log_event(py, &event, shared.on_error());
    Ok(decision)
}

pub fn try_acquire(py: Python<'_>, shared: &SharedGcra, amounts: &[f64]) -> PyResult<bool> {
    let decision = decide(py, shared, amounts, Some(Nanos::ZERO), None)?;
    Ok(matches!(decision, Decision::Granted { .. }))
}

/// Reserve, then sleep with the GIL released until the units are due. On
/// Ctrl-C the reservation goes back to whoever granted it.
pub fn acquire(
    py: Python<'_>,
    shared: &SharedGcra,
    amounts: &[f64],
    timeout: Option<f64>,
) -> PyResult<bool> {
    let max_wait = check_max_wait(timeout)?;
    let (wait, source) = match decide(py, shared, amounts, max_wait, None)? {
        Decision::Granted { wait, source, .. } => (wait, source),
        Decision::Refused { .. } => return Ok(false),
        Decision::Denied => return Err(denied(py)),
    };
    let deadline = Instant::now() + Duration::from_nanos(wait.0);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(true);
        }
        py.detach(|| std::thread::sleep(left.min(SIGNAL_CHECK_INTERVAL)));
        if let Err(err) = py.check_signals() {
            py.detach(|| shared.store().block_on(shared.refund(amounts, source)));
            return Err(err);
        }
    }
}

pub fn wait_time(py: Python<'_>, shared: &SharedGcra, amounts: &[f64]) -> PyResult<f64> {
    let (wait, event) = py.detach(|| shared.store().block_on(shared.wait_time(amounts)))?;
    log_event(py, &event, shared.on_error());
    Ok(wait.as_secs_f64())
}

pub fn refund(py: Python<'_>, shared: &SharedGcra, amounts: &[f64]) {
    let event = py.detach(|| {
        shared
            .store()
            .block_on(shared.refund(amounts, Source::Redis(0)))
    });
    log_event(py, &event, shared.on_error());
}

/// Back to full. While Redis is unreachable, `on_error` decides as for any
/// call: the in-process stand-ins are reset (`"local"`), nothing more is
/// needed (`"allow"`), or it raises `RateLimitError` (`"deny"`).
pub fn reset(py: Python<'_>, shared: &SharedGcra) -> PyResult<()> {
    let Err(err) = py.detach(|| shared.store().block_on(shared.reset())) else {
        return Ok(());
    };
    let message = format!("could not reset the shared limit: {}", err.0);
    if shared.on_error() == OnError::Deny {
        return Err(rate_limit_error(py, message));
    }
    let _ = py
        .import("logging")
        .and_then(|logging| logging.call_method1("getLogger", ("ratekeeper",)))
        .and_then(|logger| logger.call_method1("warning", (message,)));
    Ok(())
}

/// Hands `value` (or the exception) to `resolve(future, value)` on the
/// future's own loop. The loop may be closed by now; then nobody waits.
fn deliver(
    py: Python<'_>,
    call_soon_threadsafe: &Py<PyAny>,
    resolve: Py<PyAny>,
    future: Py<PyAny>,
    value: PyResult<Py<PyAny>>,
) {
    let value = value.unwrap_or_else(|err| err.into_value(py).into_any());
    let _ = call_soon_threadsafe.call1(py, (resolve, future, value));
}

fn to_object<'py>(py: Python<'py>, value: impl IntoPyObject<'py>) -> PyResult<Py<PyAny>> {
    value.into_py_any(py)
}

/// The async acquire: delivers `(wait, source)` — `wait` 0.0 when granted
/// now, -1.0 minus the wait it would have needed when refused (nothing
/// taken), else seconds until due — or the "denied" exception.
pub fn reserve_into(
    shared: &Arc<SharedGcra>,
    amounts: Vec<f64>,
    timeout: Option<f64>,
    call_soon_threadsafe: Py<PyAny>,
    resolve: Py<PyAny>,
    future: Py<PyAny>,
) -> PyResult<()> {
    let max_wait = check_max_wait(timeout)?;
    shared.check(&amounts)?;
    let shared = shared.clone();
    shared.clone().store().runtime().spawn(async move {
        let outcome = shared.acquire(&amounts, max_wait, None).await;
        Python::attach(|py| {
            let value = match outcome {
                Ok((decision, event)) => {
                    log_event(py, &event, shared.on_error());
                    match decision {
                        Decision::Granted { wait, source, .. } => {
                            to_object(py, (wait.as_secs_f64(), source_code(source)))
                        }
                        // Below -1.0 by the wait it would have needed.
                        Decision::Refused { wait } => {
                            to_object(py, (-1.0 - wait.as_secs_f64(), 0u64))
                        }
                        Decision::Denied => Err(denied(py)),
                    }
                }
                Err(err) => Err(PyErr::from(err)),
            };
            deliver(py, &call_soon_threadsafe, resolve, future, value);
        });
    });
    Ok(())
}

/// The async try-acquire with what rate-limit headers need: delivers
/// `(granted, retry_after, remaining, reset)` for the first budget.
pub fn check_into(
    shared: &Arc<SharedGcra>,
    amounts: Vec<f64>,
    call_soon_threadsafe: Py<PyAny>,
    resolve: Py<PyAny>,
    future: Py<PyAny>,
) -> PyResult<()> {
    shared.check(&amounts)?;
    let shared = shared.clone();
    shared.clone().store().runtime().spawn(async move {
        let outcome = shared.acquire(&amounts, Some(Nanos::ZERO), None).await;
        let full = shared.budgets()[0].rule().tau().as_secs_f64();
        Python::attach(|py| {
            let value = match outcome {
                Ok((decision, event)) => {
                    log_event(py, &event, shared.on_error());
                    let headers = match decision {
                        Decision::Granted {
                            remaining, full_in, ..
                        } => (true, 0.0, remaining, full_in.as_secs_f64()),
                        Decision::Refused { wait } => (false, wait.as_secs_f64(), 0.0, full),
                        Decision::Denied => (false, 1.0, 0.0, full),
                    };
                    to_object(py, headers)
                }
                Err(err) => Err(PyErr::from(err)),
            };
            deliver(py, &call_soon_threadsafe, resolve, future, value);
        });
    });
    Ok(())
}

/// Gives back a reservation an async waiter abandoned (in the background).
pub fn cancel(shared: &Arc<SharedGcra>, amounts: Vec<f64>, source: u64) {
    let owned = shared.clone();
    shared.store().runtime().spawn(async move {
        owned.refund(&amounts, source_from(source)).await;
    });
}
