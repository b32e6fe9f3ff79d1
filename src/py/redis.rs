//! `RedisBackend`, `RedisTokenBucket` and `RedisBudgets`: the bindings of
//! `core::redis`. The protocol itself is written once in `redis_ops`.

use std::sync::Arc;
use std::time::Duration;

use crate::core::limiter::{Refill, ServerBudget};
use crate::core::redis::store::redact;
use crate::core::redis::{script, Budget, Decision, OnError, SharedGcra, Store, Target};
use crate::core::Nanos;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::errors::{check_max_wait, check_non_negative, check_positive, config_error};
use super::redis_ops as ops;

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
    #[pyo3(signature = (url, *, prefix="ratekeeper", on_error="local", timeout=0.25, cluster=false))]
    fn new(
        url: &Bound<'_, PyAny>,
        prefix: &str,
        on_error: &str,
        timeout: f64,
        cluster: bool,
    ) -> PyResult<Self> {
        let on_error = OnError::parse(on_error).map_err(config_error)?;
        let timeout = Duration::from_secs_f64(check_positive("timeout", timeout)?.min(3600.0));
        let (target, shown) = if let Ok(text) = url.extract::<String>() {
            let shown = format!("'{}'", redact(&text));
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
                return Err(PyValueError::new_err(
                    "url: the list of cluster nodes is empty",
                ));
            }
            let quoted: Vec<String> = nodes.iter().map(|n| format!("'{}'", redact(n))).collect();
            let shown = format!("[{}]", quoted.join(", "));
            (Target::Cluster(nodes), shown)
        } else {
            return Err(PyTypeError::new_err(format!(
                "url must be a str or a list of str, got {}",
                url.get_type().name()?
            )));
        };
        let store = Store::new(target, timeout, ops::runtime()).map_err(config_error)?;
        Ok(RedisBackend {
            store: Arc::new(store),
            prefix: prefix.to_owned(),
            on_error,
            url: shown,
        })
    }

    /// The prefix of every Redis key this backend writes.
    ///
    /// >>> RedisBackend("redis://127.0.0.1:6379/0", prefix="myapp").prefix
    /// 'myapp'
    #[getter]
    fn prefix(&self) -> &str {
        &self.prefix
    }

    /// What happens while Redis is unreachable: `"local"`, `"allow"` or `"deny"`.
    ///
    /// >>> RedisBackend("redis://127.0.0.1:6379/0", on_error="deny").on_error
    /// 'deny'
    #[getter]
    fn on_error(&self) -> &'static str {
        self.on_error.as_str()
    }

    /// The bound on every Redis call, in seconds.
    ///
    /// >>> RedisBackend("redis://127.0.0.1:6379/0", timeout=0.5).timeout
    /// 0.5
    #[getter]
    fn timeout(&self) -> f64 {
        self.store.timeout().as_secs_f64()
    }

    /// True while the backend is in an outage (Redis unreachable).
    ///
    /// >>> backend.is_down  # doctest: +SKIP
    /// False
    #[getter]
    fn is_down(&self) -> bool {
        self.store.is_down()
    }

    /// The SHA1 of the limiter script (called with EVALSHA).
    ///
    /// >>> len(backend.script_sha)  # doctest: +SKIP
    /// 40
    #[getter]
    fn script_sha(&self) -> &str {
        self.store.script_sha()
    }

    fn __repr__(&self) -> String {
        format!(
            "RedisBackend({}, prefix='{}', on_error='{}', timeout={:?})",
            self.url,
            self.prefix,
            self.on_error.as_str(),
            self.timeout()
        )
    }
}

impl RedisBackend {
    pub fn prefix_str(&self) -> &str {
        &self.prefix
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn on_error_mode(&self) -> OnError {
        self.on_error
    }

    /// Budgets `(name, rate, capacity)` of the limiter `key` of `kind` on
    /// this backend (see `script::key`).
    pub fn shared(
        &self,
        kind: &str,
        key: &str,
        budgets: &[(&str, f64, f64)],
    ) -> PyResult<SharedGcra> {
        let budgets = budgets
            .iter()
            .map(|&(name, rate, capacity)| {
                let counts_requests = crate::core::budget::Budget::from_name(name)
                    .is_some_and(|budget| budget.counts_requests());
                Budget::new(script::key(&self.prefix, kind, key, name), rate, capacity)
                    .map(|budget| budget.counting_requests(counts_requests))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(config_error)?;
        Ok(SharedGcra::new(self.store.clone(), self.on_error, budgets))
    }
}

/// A token bucket shared through Redis by every process using the same key.
///
/// >>> bucket = RedisTokenBucket(backend, "openai", rate=10.0, capacity=20.0)
#[pyclass(
    frozen,
    subclass,
    module = "ratekeeper._core",
    name = "RedisTokenBucket"
)]
pub struct RedisTokenBucket {
    shared: Arc<SharedGcra>,
    backend: Py<RedisBackend>,
    key: String,
}

#[pymethods]
impl RedisTokenBucket {
    /// `_kind` is for ratekeeper's own buckets: `"keyed"` (a Redis-backed
    /// `KeyedLimiter`'s keys) and `"asgi"` (the middleware's clients) store
    /// `key`, a client identity, hashed.
    #[new]
    #[pyo3(signature = (backend, key, rate, capacity, *, _kind="bucket"))]
    fn new(
        backend: Bound<'_, RedisBackend>,
        key: String,
        rate: f64,
        capacity: f64,
        _kind: &str,
    ) -> PyResult<Self> {
        let key = match _kind {
            "bucket" => key,
            "keyed" | "asgi" => script::hashed(&key),
            other => {
                return Err(PyValueError::new_err(format!(
                    "_kind must be 'bucket', 'keyed' or 'asgi', got {other:?}"
                )))
            }
        };
        let shared = backend
            .get()
            .shared(_kind, &key, &[("bucket", rate, capacity)])?;
        Ok(RedisTokenBucket {
            shared: Arc::new(shared),
            backend: backend.unbind(),
            key,
        })
    }

    /// Takes `n` units now if the shared bucket has them; never waits.
    ///
    /// >>> RedisTokenBucket(backend, "k", rate=10.0, capacity=20.0).try_acquire(5)  # doctest: +SKIP
    /// True
    #[pyo3(signature = (n=1.0))]
    fn try_acquire(&self, py: Python<'_>, n: f64) -> PyResult<bool> {
        ops::try_acquire(py, &self.shared, &[n])
    }

    /// Waits (GIL released) until `n` units are granted; `False` at once,
    /// taking nothing, when the wait would exceed `timeout`.
    ///
    /// >>> RedisTokenBucket(backend, "k", rate=10.0, capacity=20.0).acquire(5, timeout=1.0)  # doctest: +SKIP
    /// True
    #[pyo3(signature = (n=1.0, timeout=None))]
    fn acquire(&self, py: Python<'_>, n: f64, timeout: Option<f64>) -> PyResult<bool> {
        ops::acquire(py, &self.shared, &[n], timeout)
    }

    /// Seconds until `n` units would be granted; 0.0 when now.
    ///
    /// >>> RedisTokenBucket(backend, "k", rate=10.0, capacity=20.0).wait_time(5)  # doctest: +SKIP
    /// 0.0
    #[pyo3(signature = (n=1.0))]
    fn wait_time(&self, py: Python<'_>, n: f64) -> PyResult<f64> {
        ops::wait_time(py, &self.shared, &[n])
    }

    #[pyo3(signature = (n, timeout, call_soon_threadsafe, resolve, future))]
    fn _reserve_into(
        &self,
        n: f64,
        timeout: Option<f64>,
        call_soon_threadsafe: Py<PyAny>,
        resolve: Py<PyAny>,
        future: Py<PyAny>,
    ) -> PyResult<()> {
        ops::reserve_into(
            &self.shared,
            vec![n],
            timeout,
            call_soon_threadsafe,
            resolve,
            future,
        )
    }

    fn _check_into(
        &self,
        n: f64,
        call_soon_threadsafe: Py<PyAny>,
        resolve: Py<PyAny>,
        future: Py<PyAny>,
    ) -> PyResult<()> {
        ops::check_into(&self.shared, vec![n], call_soon_threadsafe, resolve, future)
    }

    fn _cancel(&self, n: f64, source: u64) {
        ops::cancel(&self.shared, vec![n], source)
    }

    /// `await _reserve_async(n, timeout)` -> `(wait, source)`: the same as
    /// `_reserve_into` through pyo3-async-runtimes (kept for the benchmark).
    #[pyo3(signature = (n=1.0, timeout=None))]
    fn _reserve_async<'py>(
        &self,
        py: Python<'py>,
        n: f64,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let max_wait = check_max_wait(timeout)?;
        self.shared.check(&[n])?;
        let shared = self.shared.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let (decision, event) = shared.acquire(&[n], max_wait, None).await?;
            if event != crate::core::redis::Event::None {
                Python::attach(|py| ops::log_event(py, &event, shared.on_error()));
            }
            match decision {
                Decision::Granted { wait, .. } => Ok((wait.as_secs_f64(), 0u8)),
                Decision::Refused { .. } => Ok((-1.0, 0u8)),
                Decision::Denied => Err(Python::attach(ops::denied)),
            }
        })
    }

    /// `_acquire_at(n, now_us, timeout)`: an acquire at a fixed server time in
    /// µs, for tests that drive the script in virtual time. Returns the wait
    /// in seconds (-1.0: refused).
    #[pyo3(signature = (n, now_us, timeout=None))]
    fn _acquire_at(
        &self,
        py: Python<'_>,
        n: f64,
        now_us: u64,
        timeout: Option<f64>,
    ) -> PyResult<f64> {
        let max_wait = check_max_wait(timeout)?;
        Ok(
            match ops::decide(py, &self.shared, &[n], max_wait, Some(now_us))? {
                Decision::Granted { wait, .. } => wait.as_secs_f64(),
                Decision::Refused { .. } => -1.0,
                Decision::Denied => return Err(ops::denied(py)),
            },
        )
    }

    /// `_refund_at(n, now_us)`: a refund at a fixed server time (tests).
    fn _refund_at(&self, py: Python<'_>, n: f64, now_us: u64) -> PyResult<()> {
        self.shared.check(&[n])?;
        let shared = &self.shared;
        py.detach(|| shared.store().block_on(shared.refund_at(&[n], now_us)));
        Ok(())
    }

    /// Gives `n` units back to the shared bucket, never above capacity.
    ///
    /// >>> bucket.try_acquire(20); bucket.refund(20); bucket.try_acquire(20)  # doctest: +SKIP
    /// True
    /// True
    fn refund(&self, py: Python<'_>, n: f64) -> PyResult<()> {
        check_positive("n", n)?;
        ops::refund(py, &self.shared, &[n.min(self.capacity())]);
        Ok(())
    }

    /// Back to full, for every process sharing the key.
    ///
    /// >>> bucket.try_acquire(20); bucket.reset(); bucket.try_acquire(20)  # doctest: +SKIP
    /// True
    /// True
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        ops::reset(py, &self.shared)
    }

    /// The `RedisBackend` this bucket's state lives in.
    ///
    /// >>> bucket.backend.prefix  # doctest: +SKIP
    /// 'ratekeeper'
    #[getter]
    fn backend(&self, py: Python<'_>) -> Py<RedisBackend> {
        self.backend.clone_ref(py)
    }

    /// The shared key: every process using it shares one budget.
    ///
    /// >>> bucket.key  # doctest: +SKIP
    /// 'openai'
    #[getter]
    fn key(&self) -> &str {
        &self.key
    }

    /// Units added per second.
    ///
    /// >>> RedisTokenBucket(backend, "k", rate=10.0, capacity=20.0).rate  # doctest: +SKIP
    /// 10.0
    #[getter]
    fn rate(&self) -> f64 {
        self.shared.budgets()[0].rule().rate()
    }

    /// The most units the shared bucket holds.
    ///
    /// >>> RedisTokenBucket(backend, "k", rate=10.0, capacity=20.0).capacity  # doctest: +SKIP
    /// 20.0
    #[getter]
    fn capacity(&self) -> f64 {
        self.shared.budgets()[0].rule().capacity()
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        ops::acquire(slf.py(), &slf.get().shared, &[1.0], None)?;
        Ok(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "RedisTokenBucket(key='{}', rate={:?}, capacity={:?})",
            self.key,
            self.rate(),
            self.capacity()
        )
    }
}

/// Several budgets of one limiter (rpm, tpm, ...) shared through Redis and
/// charged together, all or nothing, by one script call: the engine of a
/// Redis-backed `Limiter`. Every method takes one amount per budget.
///
/// >>> budgets = RedisBudgets(backend, "team-a", [("rpm", 10.0, 600.0), ("tpm", 1e3, 6e4)])
#[pyclass(frozen, subclass, module = "ratekeeper._core", name = "RedisBudgets")]
pub struct RedisBudgets {
    shared: Arc<SharedGcra>,
    key: String,
}

impl RedisBudgets {
    fn amounts(&self, amounts: Vec<f64>) -> PyResult<Vec<f64>> {
        let expected = self.shared.budgets().len();
        if amounts.len() != expected {
            return Err(PyValueError::new_err(format!(
                "amounts must hold one number per budget ({expected}), got {}",
                amounts.len()
            )));
        }
        if amounts.iter().all(|&n| n == 0.0) {
            return Err(PyValueError::new_err("amounts must not all be 0"));
        }
        Ok(amounts)
    }
}

#[pymethods]
impl RedisBudgets {
    #[new]
    #[pyo3(signature = (backend, key, budgets))]
    fn new(
        backend: Bound<'_, RedisBackend>,
        key: String,
        budgets: Vec<(String, f64, f64)>,
    ) -> PyResult<Self> {
        if budgets.is_empty() {
            return Err(PyValueError::new_err("budgets must not be empty"));
        }
        let named: Vec<(&str, f64, f64)> = budgets
            .iter()
            .map(|(name, rate, cap)| (name.as_str(), *rate, *cap))
            .collect();
        let prefix = &backend.get().prefix;
        let pause_key = script::key(prefix, "limiter", &key, script::PAUSE);
        let last_key = script::key(prefix, "limiter", &key, script::LAST);
        let shared = backend
            .get()
            .shared("limiter", &key, &named)?
            .with_pause(pause_key, last_key);
        Ok(RedisBudgets {
            shared: Arc::new(shared),
            key,
        })
    }

    /// Takes every amount now, all or nothing, if each budget has it; never waits.
    ///
    /// >>> budgets.try_acquire([1, 500])  # doctest: +SKIP
    /// True
    fn try_acquire(&self, py: Python<'_>, amounts: Vec<f64>) -> PyResult<bool> {
        ops::try_acquire(py, &self.shared, &self.amounts(amounts)?)
    }

    /// Waits (GIL released) until every amount is granted; `False` at once,
    /// taking nothing, when the wait would exceed `timeout`.
    ///
    /// >>> budgets.acquire([1, 500], timeout=1.0)  # doctest: +SKIP
    /// True
    #[pyo3(signature = (amounts, timeout=None))]
    fn acquire(&self, py: Python<'_>, amounts: Vec<f64>, timeout: Option<f64>) -> PyResult<bool> {
        ops::acquire(py, &self.shared, &self.amounts(amounts)?, timeout)
    }

    /// Seconds until every amount would be granted; 0.0 when now.
    ///
    /// >>> budgets.wait_time([1, 500])  # doctest: +SKIP
    /// 0.0
    fn wait_time(&self, py: Python<'_>, amounts: Vec<f64>) -> PyResult<f64> {
        ops::wait_time(py, &self.shared, &self.amounts(amounts)?)
    }

    /// Gives the amounts back to their budgets, never above capacity.
    ///
    /// >>> budgets.refund([1, 500])  # doctest: +SKIP
    fn refund(&self, py: Python<'_>, amounts: Vec<f64>) -> PyResult<()> {
        ops::refund(py, &self.shared, &self.amounts(amounts)?);
        Ok(())
    }

    /// Every budget full again and no pause, for every process sharing the key.
    ///
    /// >>> budgets.pause(30.0); budgets.reset(); budgets.try_acquire([1, 0])  # doctest: +SKIP
    /// True
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        ops::reset(py, &self.shared)
    }

    fn _reserve_into(
        &self,
        amounts: Vec<f64>,
        timeout: Option<f64>,
        call_soon_threadsafe: Py<PyAny>,
        resolve: Py<PyAny>,
        future: Py<PyAny>,
    ) -> PyResult<()> {
        let amounts = self.amounts(amounts)?;
        ops::reserve_into(
            &self.shared,
            amounts,
            timeout,
            call_soon_threadsafe,
            resolve,
            future,
        )
    }

    fn _cancel(&self, amounts: Vec<f64>, source: u64) {
        ops::cancel(&self.shared, amounts, source)
    }

    /// `_reserve(amounts, timeout)` -> `(granted, wait, source)`: charges
    /// (or reserves, `wait` seconds from now) without sleeping; when not
    /// granted, nothing is taken and `wait` is what it would have needed.
    /// Raises `RateLimitError` under `on_error="deny"` during an outage.
    #[pyo3(signature = (amounts, timeout=None))]
    fn _reserve(
        &self,
        py: Python<'_>,
        amounts: Vec<f64>,
        timeout: Option<f64>,
    ) -> PyResult<(bool, f64, u64)> {
        let amounts = self.amounts(amounts)?;
        let max_wait = check_max_wait(timeout)?;
        Ok(
            match ops::decide(py, &self.shared, &amounts, max_wait, None)? {
                Decision::Granted { wait, source, .. } => {
                    (true, wait.as_secs_f64(), ops::source_code(source))
                }
                Decision::Refused { wait } => (false, wait.as_secs_f64(), 0),
                Decision::Denied => return Err(ops::denied(py)),
            },
        )
    }

    /// Gives back amounts granted by `source` (1 local, 2 open, else Redis
    /// with the reservation's ticket times 4).
    fn _refund(&self, py: Python<'_>, amounts: Vec<f64>, source: u64) -> PyResult<()> {
        let amounts = self.amounts(amounts)?;
        let shared = &self.shared;
        let event = py.detach(|| {
            shared
                .store()
                .block_on(shared.refund(&amounts, ops::source_from(source)))
        });
        ops::log_event(py, &event, shared.on_error());
        Ok(())
    }

    /// Nothing is granted, to any process on this key, for `seconds` from
    /// now (server time); extends, never shortens, a pause in force.
    ///
    /// >>> budgets.pause(30.0); budgets.try_acquire([1, 0])  # doctest: +SKIP
    /// False
    fn pause(&self, py: Python<'_>, seconds: f64) -> PyResult<()> {
        let seconds = check_non_negative("seconds", seconds)?;
        let shared = &self.shared;
        let duration = Nanos::from_secs_f64(seconds.min(1e9));
        let event = py.detach(|| shared.store().block_on(shared.pause(duration)));
        ops::log_event(py, &event, shared.on_error());
        Ok(())
    }

    /// Tightens budget `index` to the server's view: at most `remaining`
    /// units now; with none left, the next unit after the server's emission
    /// interval (`reset / limit`), or after `reset` for a fixed window
    /// (`at_reset`). Never loosens. The rule is `ServerBudget::tat_floor`,
    /// the same as the in-process `Limiter`'s.
    #[pyo3(signature = (index, remaining, reset=None, limit=None, at_reset=false))]
    fn _adopt(
        &self,
        py: Python<'_>,
        index: usize,
        remaining: f64,
        reset: Option<f64>,
        limit: Option<f64>,
        at_reset: bool,
    ) -> PyResult<()> {
        let budgets = self.shared.budgets();
        let Some(budget) = budgets.get(index) else {
            return Err(PyValueError::new_err(format!(
                "index must be below {}, got {index}",
                budgets.len()
            )));
        };
        let server = ServerBudget {
            remaining,
            limit,
            reset: reset
                .filter(|r| r.is_finite() && *r > 0.0)
                .map(Nanos::from_secs_f64),
            refill: if at_reset {
                Refill::AtReset
            } else {
                Refill::Continuous
            },
        };
        let Some(floor_after) = server.tat_floor(budget.rule()) else {
            return Ok(());
        };
        // The script keeps time in microseconds; rounding up keeps it strict.
        let floor = floor_after.0.div_ceil(1000);
        let mut floors = vec![None; budgets.len()];
        floors[index] = Some(floor);
        let shared = &self.shared;
        let event = py.detach(|| shared.store().block_on(shared.adopt(&floors)));
        ops::log_event(py, &event, shared.on_error());
        Ok(())
    }

    /// `(ahead, paused_for)` from Redis: seconds each budget's state runs
    /// ahead of now (0: full) and the pause left; `None` while Redis is
    /// unreachable.
    fn _peek(&self, py: Python<'_>) -> Option<(Vec<f64>, f64)> {
        let shared = &self.shared;
        let (peeked, event) = py.detach(|| shared.store().block_on(shared.peek()));
        ops::log_event(py, &event, shared.on_error());
        peeked.map(|(aheads, paused)| {
            (
                aheads.iter().map(|a| a.as_secs_f64()).collect(),
                paused.as_secs_f64(),
            )
        })
    }

    /// The budgets' names, in the order amounts are given.
    ///
    /// >>> budgets.names  # doctest: +SKIP
    /// ['rpm', 'tpm']
    #[getter]
    fn names(&self) -> Vec<String> {
        let prefix_len = self.shared.budgets()[0]
            .key()
            .rfind("}:")
            .map_or(0, |i| i + 2);
        self.shared
            .budgets()
            .iter()
            .map(|b| b.key()[prefix_len..].to_owned())
            .collect()
    }

    /// The shared key of these budgets: every process using it shares them.
    ///
    /// >>> budgets.key  # doctest: +SKIP
    /// 'team-a'
    #[getter]
    fn key(&self) -> &str {
        &self.key
    }

    fn __repr__(&self) -> String {
        format!(
            "RedisBudgets(key='{}', budgets={:?})",
            self.key,
            self.names()
        )
    }
}

/// Adds the Redis classes to `ratekeeper._core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RedisBackend>()?;
    m.add_class::<RedisTokenBucket>()?;
    m.add_class::<RedisBudgets>()?;
    m.add("REDIS_GCRA_SCRIPT", script::GCRA_SCRIPT)?;
    m.add_function(wrap_pyfunction!(ops::_set_event_sink, m)?)?;
    Ok(())
}
