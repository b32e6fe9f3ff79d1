//! `RedisSlidingWindow`: the binding of `core::redis::window::SharedWindow`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::redis::{script, SharedWindow, WindowDecision};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::IntoPyObjectExt;

use super::errors::{check_timeout, config_error};
use super::protocol::SIGNAL_CHECK_INTERVAL;
use super::redis::RedisBackend;
use super::redis_ops as ops;

/// At most `limit` units in any `window` seconds, shared through Redis by
/// every process using the same key (a sliding log in a sorted set).
///
/// >>> window = RedisSlidingWindow(backend, "openai", limit=100, window=60.0)
#[pyclass(
    frozen,
    subclass,
    module = "ratekeeper._core",
    name = "RedisSlidingWindow"
)]
pub struct RedisSlidingWindow {
    shared: Arc<SharedWindow>,
    key: String,
}

impl RedisSlidingWindow {
    fn decide(&self, py: Python<'_>, log: bool, n: f64) -> PyResult<WindowDecision> {
        let shared = &self.shared;
        let (decision, event) = py.detach(|| shared.decide_blocking(log, n, None))?;
        ops::log_event(py, &event, shared.on_error());
        Ok(decision)
    }
}

#[pymethods]
impl RedisSlidingWindow {
    #[new]
    #[pyo3(signature = (backend, key, limit, window))]
    fn new(
        backend: Bound<'_, RedisBackend>,
        key: String,
        limit: f64,
        window: f64,
    ) -> PyResult<Self> {
        let backend = backend.get();
        let redis_key = script::key(backend.prefix_str(), "window", &key, "window");
        let shared = SharedWindow::new(
            backend.store().clone(),
            backend.on_error_mode(),
            redis_key,
            limit,
            window,
        )
        .map_err(config_error)?;
        Ok(RedisSlidingWindow {
            shared: Arc::new(shared),
            key,
        })
    }

    /// Logs `n` units now if the shared window has room; never waits.
    ///
    /// >>> window.try_acquire(5)  # doctest: +SKIP
    /// True
    #[pyo3(signature = (n=1.0))]
    fn try_acquire(&self, py: Python<'_>, n: f64) -> PyResult<bool> {
        match self.decide(py, true, n)? {
            WindowDecision::Granted { .. } => Ok(true),
            WindowDecision::Wait(_) | WindowDecision::Denied => Ok(false),
        }
    }

    /// Waits (GIL released) until `n` units fit, sleeping the wait the log
    /// gives (no polling); `False` at once, taking nothing, when that wait
    /// exceeds what is left of `timeout`.
    ///
    /// >>> window.acquire(5, timeout=1.0)  # doctest: +SKIP
    /// True
    #[pyo3(signature = (n=1.0, timeout=None))]
    fn acquire(&self, py: Python<'_>, n: f64, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = check_timeout(timeout)?;
        let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.min(1e9)));
        loop {
            let wait = match self.decide(py, true, n)? {
                WindowDecision::Granted { .. } => return Ok(true),
                WindowDecision::Denied => return Err(ops::denied(py)),
                WindowDecision::Wait(wait) => Duration::from_nanos(wait.0),
            };
            let due = Instant::now() + wait;
            if deadline.is_some_and(|d| due > d) {
                return Ok(false);
            }
            loop {
                let left = due.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                py.detach(|| std::thread::sleep(left.min(SIGNAL_CHECK_INTERVAL)));
                py.check_signals()?;
            }
        }
    }

    /// Seconds until `n` units would fit; 0.0 when now.
    ///
    /// >>> window.wait_time(5)  # doctest: +SKIP
    /// 0.0
    #[pyo3(signature = (n=1.0))]
    fn wait_time(&self, py: Python<'_>, n: f64) -> PyResult<f64> {
        Ok(match self.decide(py, false, n)? {
            WindowDecision::Granted { .. } | WindowDecision::Denied => 0.0,
            WindowDecision::Wait(wait) => wait.as_secs_f64(),
        })
    }

    /// The async try: delivers the seconds to wait before asking again
    /// (0.0: logged now) to `resolve(future, value)` on the future's loop.
    fn _try_into(
        &self,
        n: f64,
        call_soon_threadsafe: Py<PyAny>,
        resolve: Py<PyAny>,
        future: Py<PyAny>,
    ) -> PyResult<()> {
        self.shared.check(n)?;
        let shared = self.shared.clone();
        shared.clone().store().runtime().spawn(async move {
            let outcome = shared.decide(true, n).await;
            Python::attach(|py| {
                let value = match outcome {
                    Ok((decision, event)) => {
                        ops::log_event(py, &event, shared.on_error());
                        match decision {
                            WindowDecision::Granted { .. } => 0.0f64.into_py_any(py),
                            WindowDecision::Wait(wait) => wait.as_secs_f64().into_py_any(py),
                            WindowDecision::Denied => Err(ops::denied(py)),
                        }
                    }
                    Err(err) => Err(PyErr::from(err)),
                };
                let value = value.unwrap_or_else(|err| err.into_value(py).into_any());
                let _ = call_soon_threadsafe.call1(py, (resolve, future, value));
            });
        });
        Ok(())
    }

    /// `_acquire_at(n, now_us)`: a try at a fixed server time in µs (tests);
    /// the wait in seconds, 0.0 when logged.
    fn _acquire_at(&self, py: Python<'_>, n: f64, now_us: u64) -> PyResult<f64> {
        let shared = &self.shared;
        let (decision, _) = py.detach(|| shared.decide_blocking(true, n, Some(now_us)))?;
        Ok(match decision {
            WindowDecision::Wait(wait) => wait.as_secs_f64(),
            _ => 0.0,
        })
    }

    /// Forgets the shared log: the full limit is free again, everywhere.
    ///
    /// >>> window.reset(); window.try_acquire(100)  # doctest: +SKIP
    /// True
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        let shared = &self.shared;
        py.detach(|| shared.store().block_on(shared.reset()))
            .map_err(|err| {
                super::errors::rate_limit_error(
                    py,
                    format!("could not reset the shared limit: {}", err.0),
                )
            })
    }

    /// The key that processes share this window under.
    ///
    /// >>> RedisSlidingWindow(backend, "openai", limit=100, window=60.0).key  # doctest: +SKIP
    /// 'openai'
    #[getter]
    fn key(&self) -> &str {
        &self.key
    }

    /// The most units granted in any window.
    ///
    /// >>> RedisSlidingWindow(backend, "k", limit=100, window=60.0).limit  # doctest: +SKIP
    /// 100.0
    #[getter]
    fn limit(&self) -> f64 {
        self.shared.limit()
    }

    /// The window's length in seconds.
    ///
    /// >>> RedisSlidingWindow(backend, "k", limit=100, window=60.0).window  # doctest: +SKIP
    /// 60.0
    #[getter]
    fn window(&self) -> f64 {
        self.shared.window().as_secs_f64()
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().acquire(slf.py(), 1.0, None)?;
        Ok(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "RedisSlidingWindow(key='{}', limit={:?}, window={:?})",
            self.key,
            self.limit(),
            self.window()
        )
    }
}

/// Adds `RedisSlidingWindow` to `ratekeeper._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RedisSlidingWindow>()?;
    m.add(
        "REDIS_WINDOW_SCRIPT",
        crate::core::redis::window::WINDOW_SCRIPT,
    )?;
    Ok(())
}
