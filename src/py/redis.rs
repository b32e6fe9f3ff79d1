//! `RedisBackend` and `RedisTokenBucket`: the bindings of `core::redis`.
//!
//! Sync calls run the core's future on the shared tokio runtime with the GIL
//! released; async calls hand it to pyo3-async-runtimes, which resolves an
//! asyncio future on the caller's loop. Health changes (an outage starting or
//! ending) are logged here, once each, on the "ratekeeper" logger.

use std::sync::Arc;
use std::time::Duration;

use crate::core::redis::{script, Budget, Decision, Event, OnError, SharedGcra, Source, Store, Target};
use crate::core::Nanos;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::errors::{check_positive, check_timeout, config_error, rate_limit_error};

/// How long a blocked thread sleeps before it looks for Ctrl-C.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

fn runtime() -> tokio::runtime::Handle {
    pyo3_async_runtimes::tokio::get_runtime().handle().clone()
}

/// Logs a change of the backend's health on the "ratekeeper" logger.
fn log_event(py: Python<'_>, event: &Event, on_error: OnError) {
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
                format!("ratekeeper: Redis is unreachable ({cause}); on_error='{}': {fallback}", on_error.as_str()),
            )
        }
        Event::CameBack => ("info", "ratekeeper: Redis is reachable again; limits are shared again".to_owned()),
    };
    // Logging must never break a limiter: a failure to log is dropped.
    let _ = py
        .import("logging")
        .and_then(|logging| logging.call_method1("getLogger", ("ratekeeper",)))
        .and_then(|logger| logger.call_method1(level, (message,)));
}

/// Hands `value` (or the exception) to `resolve(future, value)` on the
/// future's own loop. The loop may be closed by now; then nobody waits.
fn deliver(py: Python<'_>, call_soon_threadsafe: &Py<PyAny>, resolve: Py<PyAny>, future: Py<PyAny>, value: PyResult<Py<PyAny>>) {
    let value = value.unwrap_or_else(|err| err.into_value(py).into_any());
    let _ = call_soon_threadsafe.call1(py, (resolve, future, value));
}

fn denied(py: Python<'_>) -> PyErr {
    rate_limit_error(py, "Redis is unreachable and on_error='deny': request refused".to_owned())
}

fn source_code(source: Source) -> u8 {
    match source {
        Source::Redis => 0,
        Source::Local => 1,
        Source::Open => 2,
    }
}

fn source_from(code: u8) -> Source {
    match code {
        0 => Source::Redis,
        1 => Source::Local,
        _ => Source::Open,
    }
}

/// Where Redis-backed limiters keep their shared state.
///
/// >>> backend = RedisBackend("redis://localhost:6379/0", prefix="myapp")
#[pyclass(frozen, subclass, module = "ratekeeper._core", name = "RedisBackend")]
pub struct RedisBackend {
    store: Arc<Store>,
    prefix: String,
    on_error: OnError,
    url: String,
}

#[pymethods]
impl RedisBackend {
    #[new]
    #[pyo3(signature = (url, *, prefix="ratekeeper".to_owned(), on_error="local".to_owned(), timeout=0.25, cluster=false))]
    fn new(
        url: &Bound<'_, PyAny>,
        prefix: String,
        on_error: String,
        timeout: f64,
        cluster: bool,
    ) -> PyResult<Self> {
        let on_error = OnError::parse(&on_error).map_err(config_error)?;
        let timeout = Duration::from_secs_f64(check_positive("timeout", timeout)?.min(3600.0));
        let (target, shown) = if let Ok(text) = url.extract::<String>() {
            let shown = text.clone();
            if cluster {
                (Target::Cluster(vec![text]), shown)
            } else {
                (Target::Single(text), shown)
            }
        } else if url.is_instance_of::<PyList>() || url.is_instance_of::<PyTuple>() {
            let nodes: Vec<String> = url
                .extract()
                .map_err(|_| PyTypeError::new_err("url must be a str or a list of str"))?;
            if nodes.is_empty() {
                return Err(PyValueError::new_err("url: the list of cluster nodes is empty"));
            }
            let shown = format!("{nodes:?}");
            (Target::Cluster(nodes), shown)
        } else {
            return Err(PyTypeError::new_err(format!(
                "url must be a str or a list of str, got {}",
                url.get_type().name()?
            )));
        };
        let store = Store::new(target, timeout, runtime()).map_err(config_error)?;
        Ok(RedisBackend {
            store: Arc::new(store),
            prefix,
            on_error,
            url: shown,
        })
    }

    #[getter]
    fn prefix(&self) -> &str {
        &self.prefix
    }

    #[getter]
    fn on_error(&self) -> &'static str {
        self.on_error.as_str()
    }

    #[getter]
    fn timeout(&self) -> f64 {
        self.store.timeout().as_secs_f64()
    }

    /// True while the backend is in an outage (Redis unreachable).
    #[getter]
    fn is_down(&self) -> bool {
        self.store.is_down()
    }

    /// The SHA1 of the limiter script (called with EVALSHA).
    #[getter]
    fn script_sha(&self) -> &str {
        self.store.script_sha()
    }

    fn __repr__(&self) -> String {
        format!(
            "RedisBackend({}, prefix={:?}, on_error={:?}, timeout={})",
            self.url,
            self.prefix,
            self.on_error.as_str(),
            self.timeout()
        )
    }
}

impl RedisBackend {
    /// Budgets `(name, rate, capacity)` of the limiter `key` on this backend.
    pub fn shared(&self, key: &str, budgets: &[(&str, f64, f64)]) -> PyResult<SharedGcra> {
        let budgets = budgets
            .iter()
            .map(|&(name, rate, capacity)| {
                Budget::new(script::key(&self.prefix, key, name), rate, capacity)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(config_error)?;
        Ok(SharedGcra::new(self.store.clone(), self.on_error, budgets))
    }
}

/// A token bucket shared through Redis by every process using the same key.
///
/// >>> bucket = RedisTokenBucket(backend, "openai", rate=10.0, capacity=20.0)
#[pyclass(frozen, subclass, module = "ratekeeper._core", name = "RedisTokenBucket")]
pub struct RedisTokenBucket {
    shared: Arc<SharedGcra>,
    backend: Py<RedisBackend>,
    key: String,
}

impl RedisTokenBucket {
    fn decide(&self, py: Python<'_>, n: f64, max_wait: Option<Nanos>, now_us: Option<u64>) -> PyResult<Decision> {
        let shared = &self.shared;
        let (decision, event) = py.detach(|| shared.store().block_on(shared.acquire(&[n], max_wait, now_us)))?;
        log_event(py, &event, shared.on_error());
        Ok(decision)
    }

    /// Sleeps `wait` with the GIL released, checking for Ctrl-C; on an
    /// interrupt the reservation goes back to whoever granted it.
    fn sleep(&self, py: Python<'_>, n: f64, wait: Nanos, source: Source) -> PyResult<()> {
        let deadline = std::time::Instant::now() + Duration::from_nanos(wait.0);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            py.detach(|| std::thread::sleep(left.min(SIGNAL_CHECK_INTERVAL)));
            if let Err(err) = py.check_signals() {
                let shared = &self.shared;
                py.detach(|| shared.store().block_on(shared.refund(&[n], source)));
                return Err(err);
            }
        }
    }
}

#[pymethods]
impl RedisTokenBucket {
    #[new]
    #[pyo3(signature = (backend, key, rate, capacity))]
    fn new(backend: Bound<'_, RedisBackend>, key: String, rate: f64, capacity: f64) -> PyResult<Self> {
        let shared = backend.get().shared(&key, &[("bucket", rate, capacity)])?;
        Ok(RedisTokenBucket {
            shared: Arc::new(shared),
            backend: backend.unbind(),
            key,
        })
    }

    /// Takes `n` units now if the shared bucket has them; never waits.
    #[pyo3(signature = (n=1.0))]
    fn try_acquire(&self, py: Python<'_>, n: f64) -> PyResult<bool> {
        Ok(matches!(self.decide(py, n, Some(Nanos::ZERO), None)?, Decision::Granted { .. }))
    }

    /// Waits (GIL released) until `n` units are granted; `False` at once,
    /// taking nothing, when the wait would exceed `timeout`.
    #[pyo3(signature = (n=1.0, timeout=None))]
    fn acquire(&self, py: Python<'_>, n: f64, timeout: Option<f64>) -> PyResult<bool> {
        let max_wait = check_timeout(timeout)?.map(Nanos::from_secs_f64);
        match self.decide(py, n, max_wait, None)? {
            Decision::Granted { wait, source, .. } => {
                self.sleep(py, n, wait, source)?;
                Ok(true)
            }
            Decision::Refused { .. } => Ok(false),
            Decision::Denied => Err(denied(py)),
        }
    }

    /// Seconds until `n` units would be granted; 0.0 when now.
    #[pyo3(signature = (n=1.0))]
    fn wait_time(&self, py: Python<'_>, n: f64) -> PyResult<f64> {
        let shared = &self.shared;
        let (wait, event) = py.detach(|| shared.store().block_on(shared.wait_time(&[n])))?;
        log_event(py, &event, shared.on_error());
        Ok(wait.as_secs_f64())
    }

    /// `await _reserve_async(n, timeout)` -> `(wait, source)`: `wait` 0.0 when
    /// granted now, -1.0 when refused (nothing taken), else the seconds to
    /// sleep before the reserved units are due; `source` goes to `_cancel`.
    #[pyo3(signature = (n=1.0, timeout=None))]
    fn _reserve_async<'py>(&self, py: Python<'py>, n: f64, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let max_wait = check_timeout(timeout)?.map(Nanos::from_secs_f64);
        self.shared.check(&[n])?;
        let shared = self.shared.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let (decision, event) = shared.acquire(&[n], max_wait, None).await?;
            if event != Event::None {
                Python::attach(|py| log_event(py, &event, shared.on_error()));
            }
            match decision {
                Decision::Granted { wait, source, .. } => Ok((wait.as_secs_f64(), source_code(source))),
                Decision::Refused { .. } => Ok((-1.0, 0)),
                Decision::Denied => Err(Python::attach(denied)),
            }
        })
    }

    /// `_reserve_into(n, timeout, call_soon_threadsafe, resolve, future)`:
    /// the reply of `_reserve_async` delivered by calling
    /// `call_soon_threadsafe(resolve, future, (wait, source) or exception)`
    /// from the runtime's thread: a lighter bridge than a wrapped future.
    #[pyo3(signature = (n, timeout, call_soon_threadsafe, resolve, future))]
    fn _reserve_into(
        &self,
        n: f64,
        timeout: Option<f64>,
        call_soon_threadsafe: Py<PyAny>,
        resolve: Py<PyAny>,
        future: Py<PyAny>,
    ) -> PyResult<()> {
        let max_wait = check_timeout(timeout)?.map(Nanos::from_secs_f64);
        self.shared.check(&[n])?;
        let shared = self.shared.clone();
        self.shared.store().runtime().spawn(async move {
            let outcome = shared.acquire(&[n], max_wait, None).await;
            Python::attach(|py| {
                let value = match outcome {
                    Ok((decision, event)) => {
                        log_event(py, &event, shared.on_error());
                        match decision {
                            Decision::Granted { wait, source, .. } => (wait.as_secs_f64(), source_code(source))
                                .into_pyobject(py)
                                .map(|t| t.into_any().unbind()),
                            Decision::Refused { .. } => (-1.0, 0u8).into_pyobject(py).map(|t| t.into_any().unbind()),
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

    /// `_check_into(n, call_soon_threadsafe, resolve, future)`: a try-acquire
    /// that also reports what rate-limit headers need, delivered like
    /// `_reserve_into` as `(granted, wait, remaining, full_in)`.
    fn _check_into(
        &self,
        n: f64,
        call_soon_threadsafe: Py<PyAny>,
        resolve: Py<PyAny>,
        future: Py<PyAny>,
    ) -> PyResult<()> {
        self.shared.check(&[n])?;
        let shared = self.shared.clone();
        self.shared.store().runtime().spawn(async move {
            let outcome = shared.acquire(&[n], Some(Nanos::ZERO), None).await;
            let rule = *shared.budgets()[0].rule();
            Python::attach(|py| {
                let value = match outcome {
                    Ok((decision, event)) => {
                        log_event(py, &event, shared.on_error());
                        let headers = match decision {
                            Decision::Granted { remaining, full_in, .. } => (true, 0.0, remaining, full_in.as_secs_f64()),
                            Decision::Refused { wait } => (false, wait.as_secs_f64(), 0.0, rule.tau().as_secs_f64()),
                            Decision::Denied => (false, 1.0, 0.0, rule.tau().as_secs_f64()),
                        };
                        headers.into_pyobject(py).map(|t| t.into_any().unbind())
                    }
                    Err(err) => Err(PyErr::from(err)),
                };
                deliver(py, &call_soon_threadsafe, resolve, future, value);
            });
        });
        Ok(())
    }

    /// Gives back a reservation an async waiter abandoned (in the background).
    fn _cancel(&self, n: f64, source: u8) {
        let shared = self.shared.clone();
        self.shared.store().runtime().spawn(async move {
            shared.refund(&[n], source_from(source)).await;
        });
    }

    /// `_acquire_at(n, now_us, timeout)`: an acquire at a fixed server time in
    /// µs, for tests that drive the script in virtual time. Returns the wait
    /// in seconds (-1.0: refused).
    #[pyo3(signature = (n, now_us, timeout=None))]
    fn _acquire_at(&self, py: Python<'_>, n: f64, now_us: u64, timeout: Option<f64>) -> PyResult<f64> {
        let max_wait = check_timeout(timeout)?.map(Nanos::from_secs_f64);
        Ok(match self.decide(py, n, max_wait, Some(now_us))? {
            Decision::Granted { wait, .. } => wait.as_secs_f64(),
            Decision::Refused { .. } => -1.0,
            Decision::Denied => return Err(denied(py)),
        })
    }

    /// `_refund_at(n, now_us)`: a refund at a fixed server time (tests).
    fn _refund_at(&self, py: Python<'_>, n: f64, now_us: u64) -> PyResult<()> {
        self.shared.check(&[n])?;
        let shared = &self.shared;
        py.detach(|| shared.store().block_on(shared.refund_at(&[n], now_us)));
        Ok(())
    }

    /// Gives `n` units back to the shared bucket, never above capacity.
    fn refund(&self, py: Python<'_>, n: f64) -> PyResult<()> {
        check_positive("n", n)?;
        let n = n.min(self.capacity());
        let shared = &self.shared;
        let event = py.detach(|| shared.store().block_on(shared.refund(&[n], Source::Redis)));
        log_event(py, &event, shared.on_error());
        Ok(())
    }

    /// Back to full, for every process sharing the key.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        let shared = &self.shared;
        py.detach(|| shared.store().block_on(shared.reset()))
            .map_err(|err| rate_limit_error(py, format!("could not reset: {}", err.0)))
    }

    #[getter]
    fn backend(&self, py: Python<'_>) -> Py<RedisBackend> {
        self.backend.clone_ref(py)
    }

    #[getter]
    fn key(&self) -> &str {
        &self.key
    }

    #[getter]
    fn rate(&self) -> f64 {
        self.shared.budgets()[0].rule().rate()
    }

    #[getter]
    fn capacity(&self) -> f64 {
        self.shared.budgets()[0].rule().capacity()
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
            "RedisTokenBucket(key={:?}, rate={:?}, capacity={:?})",
            self.key,
            self.rate(),
            self.capacity()
        )
    }
}

/// Adds the Redis classes to `ratekeeper._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RedisBackend>()?;
    m.add_class::<RedisTokenBucket>()?;
    m.add("REDIS_GCRA_SCRIPT", script::GCRA_SCRIPT)?;
    Ok(())
}
