//! The connection to Redis: one per backend, shared by every limiter on it.
//!
//! Every call is bounded by `timeout`, so a server that stops answering costs
//! a caller at most that long. A failed call marks the backend down; while it
//! is down, calls skip Redis (the limiter falls back at once) and only one
//! probe per `probe_interval` tries it again, so an outage neither slows every
//! caller by the timeout nor floods the server when it comes back.

use ::redis::aio::ConnectionManager;
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{aio::ConnectionManagerConfig, Client, Script};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

use super::script::GCRA_SCRIPT;
use super::window::WINDOW_SCRIPT;

/// Where the backend connects: one server, or the seed nodes of a cluster.
#[derive(Clone, Debug)]
pub enum Target {
    Single(String),
    Cluster(Vec<String>),
}

/// What changed in the backend's health with a call; the caller logs it, so
/// that an outage is told once, not once per call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    None,
    /// The first failure of an outage, with its cause.
    WentDown(String),
    /// The first success after an outage.
    CameBack,
}

/// Redis could not answer: down, unreachable, too slow, or a script error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable(pub String);

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

// One per backend, so the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum BlockingConnection {
    Single(::redis::Connection),
    Cluster(::redis::cluster::ClusterConnection),
}

#[allow(clippy::large_enum_variant)]
enum Client_ {
    Single(Client),
    Cluster(ClusterClient),
}

/// One backend: the client, its (lazily made) connection, and its health.
pub struct Store {
    runtime: Handle,
    client: Client_,
    connection: Mutex<Option<Connection>>,
    pool: Mutex<Vec<BlockingConnection>>,
    script: Script,
    window_script: Script,
    timeout: Duration,
    probe_interval: Duration,
    origin: Instant,
    down: AtomicBool,
    /// While down: the time (ns since `origin`) of the next allowed probe.
    next_probe: AtomicU64,
}

/// `url` with its password (the part of the userinfo after `:`) shown as
/// `***`: the form a URL may take in a repr or an error message.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let shown = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None if userinfo.is_empty() => String::new(),
        // redis://secret@host: a lone userinfo is the password.
        None => "***".to_owned(),
    };
    format!("{}{shown}{}", &url[..scheme_end], &rest[at..])
}

/// Whether a call failed because its connection was closed under it (not a
/// timeout, not a refused connection): worth one retry on a new one.
fn is_dropped(err: &::redis::RedisError) -> bool {
    !err.is_timeout() && (err.is_connection_dropped() || err.is_unrecoverable_error())
}

/// The time left until `deadline`, or `Unavailable` once it has passed.
fn left_until(deadline: Instant) -> Result<Duration, Unavailable> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Unavailable(
            "no answer from Redis within the timeout".into(),
        ));
    }
    Ok(left)
}

/// Runs `script` on a blocking connection, reading and writing by
/// `deadline`. A pooled connection already reads and writes within the
/// whole timeout, which a call taken from the pool has left: only a new
/// one (whose connecting took some of it) is set (two system calls).
fn invoke_blocking(
    connection: &mut BlockingConnection,
    script: &Script,
    keys: &[String],
    args: &[String],
    deadline: Instant,
    fresh: bool,
) -> ::redis::RedisResult<Vec<i64>> {
    let mut invocation = script.prepare_invoke();
    for key in keys {
        invocation.key(key);
    }
    for arg in args {
        invocation.arg(arg);
    }
    match connection {
        BlockingConnection::Single(conn) => {
            if fresh {
                let left = left_until(deadline).map_err(|e| {
                    ::redis::RedisError::from((::redis::ErrorKind::Io, "timed out", e.0))
                })?;
                conn.set_read_timeout(Some(left))?;
                conn.set_write_timeout(Some(left))?;
            }
            invocation.invoke(conn)
        }
        BlockingConnection::Cluster(conn) => invocation.invoke(conn),
    }
}

impl Store {
    /// Checks the address and prepares the client; connects on first use,
    /// so that a backend can be made while Redis is still down.
    pub fn new(target: Target, timeout: Duration, runtime: Handle) -> Result<Store, String> {
        let client = match &target {
            Target::Single(url) => ::redis::IntoConnectionInfo::into_connection_info(url.as_str())
                .and_then(|info| {
                    // No `CLIENT SETINFO` on connect: a stuck server would hold
                    // each of its replies for a whole timeout.
                    let redis = info.redis_settings().clone().set_skip_set_lib_name();
                    Client::open(info.set_redis_settings(redis))
                })
                .map(Client_::Single)
                .map_err(|err| format!("url: not a Redis URL ({:?}): {err}", redact(url)))?,
            Target::Cluster(nodes) => ClusterClient::builder(nodes.iter().map(String::as_str))
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .build()
                .map(Client_::Cluster)
                .map_err(|err| {
                    let shown: Vec<String> = nodes.iter().map(|n| redact(n)).collect();
                    format!("url: not a list of Redis node URLs ({shown:?}): {err}")
                })?,
        };
        Ok(Store {
            runtime,
            client,
            connection: Mutex::new(None),
            pool: Mutex::new(Vec::new()),
            script: Script::new(GCRA_SCRIPT),
            window_script: Script::new(WINDOW_SCRIPT),
            timeout,
            probe_interval: Duration::from_secs(1),
            origin: Instant::now(),
            down: AtomicBool::new(false),
            next_probe: AtomicU64::new(0),
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn runtime(&self) -> &Handle {
        &self.runtime
    }

    /// The SHA1 the script is called by (`EVALSHA`).
    pub fn script_sha(&self) -> &str {
        self.script.get_hash()
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    fn since_origin(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// While down, whether this call may probe Redis: one caller per
    /// `probe_interval` wins; the others fall back without waiting.
    fn admit(&self) -> bool {
        if !self.is_down() {
            return true;
        }
        let now = self.since_origin();
        let due = self.next_probe.load(Ordering::Acquire);
        now >= due
            && self
                .next_probe
                .compare_exchange(
                    due,
                    now + self.probe_interval.as_nanos() as u64,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// Records a call's outcome in the backend's health.
    fn record(&self, result: &Result<Vec<i64>, Unavailable>) -> Event {
        match result {
            Ok(_) if self.down.swap(false, Ordering::AcqRel) => Event::CameBack,
            Ok(_) => Event::None,
            Err(Unavailable(cause)) => {
                self.next_probe.store(
                    self.since_origin() + self.probe_interval.as_nanos() as u64,
                    Ordering::Release,
                );
                if self.down.swap(true, Ordering::AcqRel) {
                    Event::None
                } else {
                    Event::WentDown(cause.clone())
                }
            }
        }
    }

    fn skipped() -> (Result<Vec<i64>, Unavailable>, Event) {
        (
            Err(Unavailable(
                "Redis is down; waiting to probe it again".into(),
            )),
            Event::None,
        )
    }

    /// Runs the script on `keys` with `args`, bounded by the timeout. While
    /// the backend is down and no probe is due, fails at once.
    pub async fn eval(
        &self,
        keys: &[String],
        args: &[String],
    ) -> (Result<Vec<i64>, Unavailable>, Event) {
        self.eval_with(&self.script, keys, args).await
    }

    /// `eval` of the sliding-log script (`core::redis::window`).
    pub async fn eval_window(
        &self,
        keys: &[String],
        args: &[String],
    ) -> (Result<Vec<i64>, Unavailable>, Event) {
        self.eval_with(&self.window_script, keys, args).await
    }

    /// `eval_blocking` of the sliding-log script.
    pub fn eval_window_blocking(
        &self,
        keys: &[String],
        args: &[String],
    ) -> (Result<Vec<i64>, Unavailable>, Event) {
        self.eval_blocking_with(&self.window_script, keys, args)
    }

    async fn eval_with(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> (Result<Vec<i64>, Unavailable>, Event) {
        if !self.admit() {
            return Self::skipped();
        }
        let result = match tokio::time::timeout(self.timeout, self.run(script, keys, args)).await {
            Ok(result) => result,
            Err(_) => Err(Unavailable(format!(
                "no answer from Redis within {:?}",
                self.timeout
            ))),
        };
        let event = self.record(&result);
        (result, event)
    }

    /// `eval` on the calling thread over a blocking connection from a small
    /// pool: one write and one read, no hop through the runtime's threads
    /// (the sync path; the caller has released the GIL).
    pub fn eval_blocking(
        &self,
        keys: &[String],
        args: &[String],
    ) -> (Result<Vec<i64>, Unavailable>, Event) {
        self.eval_blocking_with(&self.script, keys, args)
    }

    fn eval_blocking_with(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> (Result<Vec<i64>, Unavailable>, Event) {
        if !self.admit() {
            return Self::skipped();
        }
        let result = self.run_blocking(script, keys, args);
        let event = self.record(&result);
        (result, event)
    }

    /// One call on a pooled connection, or a new one. A pooled connection
    /// that Redis closed while idle (a restart, `CLIENT KILL`, its idle
    /// `timeout`) fails at once; that is not an outage: the pool is emptied
    /// (its other connections went the same way) and the call is retried
    /// once on a new connection. The whole call, connecting included, ends
    /// by one `timeout`.
    fn run_blocking(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Vec<i64>, Unavailable> {
        let deadline = Instant::now() + self.timeout;
        let pooled = self.pool.lock().pop();
        let (mut connection, fresh) = match pooled {
            Some(connection) => (connection, false),
            None => (self.connect_blocking(deadline)?, true),
        };
        let reply = match invoke_blocking(&mut connection, script, keys, args, deadline, fresh) {
            Err(err) if !fresh && is_dropped(&err) => {
                self.pool.lock().clear();
                connection = self.connect_blocking(deadline)?;
                invoke_blocking(&mut connection, script, keys, args, deadline, true)
            }
            reply => reply,
        };
        match reply {
            Ok(value) => {
                // Pooled with the whole timeout for its next call; a
                // connection that failed is dropped, not pooled: the next
                // call connects afresh.
                if let BlockingConnection::Single(conn) = &connection {
                    if conn.set_read_timeout(Some(self.timeout)).is_err()
                        || conn.set_write_timeout(Some(self.timeout)).is_err()
                    {
                        return Ok(value);
                    }
                }
                self.pool.lock().push(connection);
                Ok(value)
            }
            Err(err) => Err(Unavailable(err.to_string())),
        }
    }

    fn connect_blocking(&self, deadline: Instant) -> Result<BlockingConnection, Unavailable> {
        let unavailable = |err: ::redis::RedisError| Unavailable(err.to_string());
        let left = left_until(deadline)?;
        match &self.client {
            Client_::Single(client) => client
                .get_connection_with_timeout(left)
                .map(BlockingConnection::Single)
                .map_err(unavailable),
            Client_::Cluster(client) => client
                .get_connection()
                .map(BlockingConnection::Cluster)
                .map_err(unavailable),
        }
    }

    /// Runs the script by SHA (loading it on `NOSCRIPT`), connecting first if
    /// there is no connection yet.
    async fn run(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Vec<i64>, Unavailable> {
        let mut connection = self.connection().await?;
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut reply = match &mut connection {
            Connection::Single(manager) => invocation.invoke_async(manager).await,
            Connection::Cluster(cluster) => invocation.invoke_async(cluster).await,
        };
        if matches!(&reply, Err(err) if is_dropped(err)) {
            // Redis closed the connection while it was idle: the manager
            // reconnects on the next command. One retry, not an outage (the
            // caller's timeout still bounds both).
            reply = match &mut connection {
                Connection::Single(manager) => invocation.invoke_async(manager).await,
                Connection::Cluster(cluster) => invocation.invoke_async(cluster).await,
            };
        }
        reply.map_err(|err| Unavailable(err.to_string()))
    }

    /// Deletes `keys` (a limiter's reset), bounded by the timeout.
    pub async fn delete(&self, keys: &[String]) -> Result<(), Unavailable> {
        let run = async {
            let mut command = ::redis::cmd("DEL");
            for key in keys {
                command.arg(key);
            }
            let reply: Result<i64, _> = match &mut self.connection().await? {
                Connection::Single(manager) => command.query_async(manager).await,
                Connection::Cluster(cluster) => command.query_async(cluster).await,
            };
            reply
                .map(|_| ())
                .map_err(|err| Unavailable(err.to_string()))
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(Unavailable(format!(
                "no answer from Redis within {:?}",
                self.timeout
            ))),
        }
    }

    async fn connection(&self) -> Result<Connection, Unavailable> {
        if let Some(connection) = self.connection.lock().as_ref() {
            return Ok(connection.clone());
        }
        let made = match &self.client {
            Client_::Single(client) => {
                // Reconnects are the manager's job from here on; each attempt
                // is bounded like every call.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(self.timeout);
                ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map(Connection::Single)
            }
            Client_::Cluster(client) => {
                client.get_async_connection().await.map(Connection::Cluster)
            }
        }
        .map_err(|err| Unavailable(err.to_string()))?;
        let mut slot = self.connection.lock();
        Ok(slot.get_or_insert(made).clone())
    }

    /// Runs `future` to completion on the backend's runtime from a thread
    /// outside it (the caller has released the GIL).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_the_password_only() {
        assert_eq!(redact("redis://:s3cret@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact("rediss://u:p@ss@h/0"), "rediss://u:***@h/0");
        assert_eq!(redact("redis://tok@h"), "redis://***@h");
        assert_eq!(redact("redis://h:6379/0?x=@"), "redis://h:6379/0?x=@");
        assert_eq!(redact("not a url"), "not a url");
    }
}
