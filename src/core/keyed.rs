//! `KeyedLimiter`: one GCRA token bucket per key (a user, an API key, a
//! model), created on first use and dropped once idle.
//!
//! The rule is [`Gcra`], the same as `TokenBucket`'s; this file only adds the
//! map. Keys are spread over [`SHARDS`] shards by hash, each a read-write
//! lock over a `hashbrown` table, so that distinct keys rarely touch the same
//! lock, and the common case (the key exists) takes only a shared lock: the
//! bucket's state is one `AtomicU64` (`tat`) replaced by compare-and-swap,
//! exactly as in `TokenBucket`. A key is stored once, inline when it is
//! short, with 16 bytes of state beside it.
//!
//! Eviction. A bucket whose `tat + idle_timeout <= now` has been full for
//! `idle_timeout`: it is indistinguishable from a new bucket, so dropping it
//! changes no decision. Shards are swept when they have doubled since their
//! last sweep, or when `idle_timeout` has passed since it, so the cost is
//! amortized and memory follows the keys that are active. A key with a
//! reservation still outstanding (`pending > 0`) is never dropped, so the
//! waiter's completion or cancellation always finds its own bucket.
//!
//! Waiters. A bucket's reservations that must wait queue on its
//! [`Timeline`], exactly as in `TokenBucket`: a cancel or a refund moves
//! those behind up, in order. The queues live beside the shard's table,
//! one entry per key that has waiters: a bucket stays 16 bytes and the hot
//! paths (a grant now) never look at them.

use super::clock::{Clock, Nanos};
use super::gcra::Gcra;
use super::limit::{check_amount, LimitError, Reservation};
use super::timeline::{Timeline, Waiters};
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use parking_lot::{Mutex, RwLock};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Number of shards: a power of two, chosen well above the number of cores
/// so that two hot keys share a lock rarely, and small enough that an empty
/// limiter costs a few kilobytes.
pub const SHARDS: usize = 64;
const SHARD_BITS: u32 = SHARDS.trailing_zeros();

/// A shard is not swept for doubling below this many keys.
const MIN_SWEEP_LEN: usize = 64;

/// One key's bucket: 16 bytes.
#[derive(Debug)]
struct Bucket {
    /// Theoretical arrival time in clock nanoseconds; 0 means full.
    tat: AtomicU64,
    /// Index of the key's rule in `KeyedLimiter::rules` (0 = the default).
    rule: u32,
    /// Reservations handed out and not yet finished or cancelled.
    pending: AtomicU32,
}

impl Bucket {
    fn line<'a>(&'a self, rule: &'a Gcra) -> Timeline<'a> {
        Timeline {
            rule,
            tat: &self.tat,
        }
    }
}

/// A key's bytes: inline when short (user ids, model names), else boxed.
/// Inline keys save an allocation per key and a pointer chase per lookup.
#[derive(Debug)]
enum KeyBytes {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

/// The longest key stored inline: the enum stays 24 bytes.
const INLINE_KEY: usize = 22;

impl KeyBytes {
    fn new(key: &[u8]) -> KeyBytes {
        match u8::try_from(key.len()) {
            Ok(len) if key.len() <= INLINE_KEY => {
                let mut bytes = [0u8; INLINE_KEY];
                bytes[..key.len()].copy_from_slice(key);
                KeyBytes::Inline { len, bytes }
            }
            _ => KeyBytes::Heap(Box::from(key)),
        }
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            KeyBytes::Inline { len, bytes } => &bytes[..usize::from(*len)],
            KeyBytes::Heap(bytes) => bytes,
        }
    }
}

type Slot = (KeyBytes, Bucket);

#[derive(Debug, Default)]
#[repr(align(128))] // one shard per cache line pair: no false sharing between locks
struct Shard {
    table: RwLock<HashTable<Slot>>,
    /// Number of keys after the last sweep.
    swept_len: AtomicUsize,
    /// The queues of the keys that have waiters, taken after `table`'s lock.
    waiters: Mutex<HashMap<Box<[u8]>, Waiters>>,
}

/// A map of GCRA token buckets, one per key.
#[derive(Debug)]
pub struct KeyedLimiter {
    /// `rules[0]` is the default rule; overrides follow.
    rules: Vec<Gcra>,
    overrides: HashMap<Box<str>, u32>,
    shards: Box<[Shard]>,
    hasher: DefaultHashBuilder,
    idle_timeout: Nanos,
    /// Clock time of the last sweep of every shard.
    swept_at: AtomicU64,
    /// The last waiter's ticket: tickets are unique across keys.
    last_ticket: AtomicU64,
    clock: Clock,
}

impl KeyedLimiter {
    /// `overrides` gives some keys their own `(rate, capacity)`.
    pub fn new(
        rate: f64,
        capacity: f64,
        overrides: Vec<(String, f64, f64)>,
        idle_timeout: f64,
        clock: Clock,
    ) -> Result<KeyedLimiter, String> {
        Gcra::check(rate, capacity)?;
        if !(idle_timeout.is_finite() && idle_timeout > 0.0) {
            return Err(format!(
                "idle_timeout must be a finite number > 0, got {idle_timeout}"
            ));
        }
        let mut rules = vec![Gcra::new(rate, capacity)];
        let mut by_key = HashMap::with_capacity(overrides.len());
        for (key, rate, capacity) in overrides {
            Gcra::check(rate, capacity).map_err(|e| format!("overrides[{key:?}]: {e}"))?;
            let index = u32::try_from(rules.len()).map_err(|_| "too many overrides".to_string())?;
            rules.push(Gcra::new(rate, capacity));
            by_key.insert(key.into_boxed_str(), index);
        }
        let shards = (0..SHARDS).map(|_| Shard::default()).collect();
        Ok(KeyedLimiter {
            rules,
            overrides: by_key,
            shards,
            hasher: DefaultHashBuilder::default(),
            idle_timeout: Nanos::from_secs_f64(idle_timeout),
            swept_at: AtomicU64::new(clock.now().0),
            last_ticket: AtomicU64::new(0),
            clock,
        })
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The default rule (keys without an override).
    pub fn rule(&self) -> &Gcra {
        &self.rules[0]
    }

    /// The rule `key` follows.
    pub fn rule_of(&self, key: &str) -> &Gcra {
        &self.rules[self.rule_index(key) as usize]
    }

    pub fn idle_timeout(&self) -> Nanos {
        self.idle_timeout
    }

    /// Takes `n` units from `key`'s bucket now if they are there.
    #[inline]
    pub fn try_acquire(&self, key: &str, n: f64) -> Result<bool, LimitError> {
        self.with_bucket(key, n, |rule, bucket, now, cost| {
            bucket.line(rule).take(now, cost)
        })
    }

    /// Takes `n` units from `key` now, or reserves them for when they will be
    /// there unless that is more than `max_wait` away. A reservation
    /// (`Reservation::At`) must end in [`finish`](Self::finish) or
    /// [`cancel`](Self::cancel).
    #[inline]
    pub fn reserve(
        &self,
        key: &str,
        n: f64,
        max_wait: Option<Nanos>,
    ) -> Result<Reservation, LimitError> {
        self.with_bucket(key, n, |rule, bucket, now, cost| {
            let line = bucket.line(rule);
            // Lock-free when the units are there now; a wait takes the queue's lock.
            if line.take(now, cost) {
                return Reservation::Now;
            }
            let (_, shard) = self.locate(key);
            let outcome = shard.with_waiters(key, |queue| {
                let now = self.clock.now();
                line.reserve(queue, now, cost, max_wait, |due| self.next_ticket(due))
            });
            if matches!(outcome, Reservation::At(_)) {
                // Under the shard's lock: a sweep cannot run between the
                // charge and this count.
                bucket.pending.fetch_add(1, Ordering::AcqRel);
            }
            outcome
        })
    }

    /// How long until `n` units of `key` would be granted; zero when now.
    pub fn wait_time(&self, key: &str, n: f64) -> Result<Nanos, LimitError> {
        let rule = self.rule_of(key);
        check_amount(n, rule.capacity())?;
        let now = self.clock.now();
        let tat = self.with_existing(key, |_, b| b.tat.load(Ordering::Acquire));
        Ok(rule.due(Nanos(tat.unwrap_or(0)), now, rule.cost(n)) - now)
    }

    /// Units available to `key` now (negative while reservations are
    /// outstanding); a key never seen is full.
    pub fn available(&self, key: &str) -> f64 {
        let rule = self.rule_of(key);
        let tat = self.with_existing(key, |_, b| b.tat.load(Ordering::Acquire));
        rule.available(Nanos(tat.unwrap_or(0)), self.clock.now())
    }

    /// Whether `key` has a live bucket (one that is not full and idle).
    pub fn contains(&self, key: &str) -> bool {
        let now = self.clock.now();
        self.with_existing(key, |_, b| !self.expired(b, now))
            .unwrap_or(false)
    }

    /// The number of live keys; expired ones are swept first.
    pub fn len(&self) -> usize {
        let now = self.clock.now();
        self.swept_at.fetch_max(now.0, Ordering::AcqRel);
        self.shards
            .iter()
            .map(|shard| {
                let mut table = shard.table.write();
                self.sweep(shard, &mut table, now);
                table.len()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts `key`'s bucket back to full; its waiters are granted at once.
    /// Returns their tickets, to wake.
    pub fn reset_key(&self, key: &str) -> Vec<u64> {
        self.with_queued(key, |rule, bucket, queue| bucket.line(rule).reset(queue))
            .unwrap_or_default()
    }

    /// Every bucket back to full, its waiters granted at once; buckets with
    /// no reservation outstanding are dropped. Returns the waiters' tickets.
    pub fn reset(&self) -> Vec<u64> {
        let mut woken = Vec::new();
        for shard in self.shards.iter() {
            let mut table = shard.table.write();
            let mut queues = shard.waiters.lock();
            woken.extend(queues.drain().flat_map(|(_, mut queue)| queue.clear()));
            table.retain(|(_, bucket)| {
                bucket.tat.store(0, Ordering::Release);
                bucket.pending.load(Ordering::Acquire) > 0
            });
            shard.swept_len.store(table.len(), Ordering::Relaxed);
        }
        woken
    }

    fn rule_index(&self, key: &str) -> u32 {
        if self.overrides.is_empty() {
            return 0;
        }
        self.overrides.get(key).copied().unwrap_or(0)
    }

    #[inline]
    fn locate(&self, key: &str) -> (u64, &Shard) {
        let hash = self.hasher.hash_one(key.as_bytes());
        // The top bits pick the shard; hashbrown uses the low bits and the
        // top 7 for its own tags, so these overlap only in the tag.
        let shard = (hash >> (64 - SHARD_BITS)) as usize;
        (hash, &self.shards[shard])
    }

    #[inline]
    fn expired(&self, bucket: &Bucket, now: Nanos) -> bool {
        let tat = bucket.tat.load(Ordering::Acquire);
        tat.saturating_add(self.idle_timeout.0) <= now.0
            && bucket.pending.load(Ordering::Acquire) == 0
    }

    /// Runs `f` on `key`'s bucket if it exists, under the shard's shared lock.
    fn with_existing<R>(&self, key: &str, f: impl FnOnce(&Gcra, &Bucket) -> R) -> Option<R> {
        let (hash, shard) = self.locate(key);
        let table = shard.table.read();
        let (_, bucket) = table.find(hash, |(k, _)| k.as_bytes() == key.as_bytes())?;
        Some(f(&self.rules[bucket.rule as usize], bucket))
    }

    /// Runs `step` on `key`'s bucket, creating it if needed, once `n` has
    /// been checked against the key's capacity. The common case (the key
    /// exists) holds only the shard's shared lock.
    #[inline]
    fn with_bucket<R>(
        &self,
        key: &str,
        n: f64,
        step: impl Fn(&Gcra, &Bucket, Nanos, u64) -> R,
    ) -> Result<R, LimitError> {
        let (hash, shard) = self.locate(key);
        let now = self.clock.now();
        let result = {
            let table = shard.table.read();
            match table.find(hash, |(k, _)| k.as_bytes() == key.as_bytes()) {
                Some((_, bucket)) => {
                    let rule = &self.rules[bucket.rule as usize];
                    check_amount(n, rule.capacity())?;
                    Some(step(rule, bucket, now, rule.cost(n)))
                }
                None => None,
            }
        };
        let result = match result {
            Some(result) => result,
            None => {
                let index = self.rule_index(key);
                let rule = &self.rules[index as usize];
                check_amount(n, rule.capacity())?;
                let mut table = shard.table.write();
                if table.len() >= shard.swept_len.load(Ordering::Relaxed).max(MIN_SWEEP_LEN) * 2 {
                    self.sweep(shard, &mut table, now);
                }
                let hasher = |(k, _): &Slot| self.hasher.hash_one(k.as_bytes());
                let entry = table.entry(hash, |(k, _)| k.as_bytes() == key.as_bytes(), hasher);
                let slot = entry.or_insert_with(|| {
                    let bucket = Bucket {
                        tat: AtomicU64::new(0),
                        rule: index,
                        pending: AtomicU32::new(0),
                    };
                    (KeyBytes::new(key.as_bytes()), bucket)
                });
                let (_, bucket) = slot.get();
                // Exclusive lock held: the atomics cannot be contended here.
                step(rule, bucket, now, rule.cost(n))
            }
        };
        self.maybe_sweep_by_age(now);
        Ok(result)
    }

    /// Sweeps every shard, one lock at a time, once `idle_timeout` has
    /// passed since the last time: keys that went quiet are dropped even in
    /// shards that see no new key. The compare-and-swap elects one sweeper.
    #[inline]
    fn maybe_sweep_by_age(&self, now: Nanos) {
        let last = self.swept_at.load(Ordering::Relaxed);
        if now.0.saturating_sub(last) < self.idle_timeout.0 {
            return;
        }
        if self
            .swept_at
            .compare_exchange(last, now.0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            for shard in self.shards.iter() {
                let mut table = shard.table.write();
                self.sweep(shard, &mut table, now);
            }
        }
    }

    /// Drops the shard's expired buckets, and gives memory back when the
    /// table has become mostly empty.
    fn sweep(&self, shard: &Shard, table: &mut HashTable<Slot>, now: Nanos) {
        table.retain(|(_, bucket)| !self.expired(bucket, now));
        if table.capacity() > 4 * table.len().max(MIN_SWEEP_LEN) {
            table.shrink_to(table.len(), |(k, _)| self.hasher.hash_one(k.as_bytes()));
        }
        shard.swept_len.store(table.len(), Ordering::Relaxed);
    }
}

/// One reservation fewer; never below zero.
fn release(bucket: &Bucket) {
    let _ = bucket
        .pending
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1));
}

#[path = "keyed_waiters.rs"]
mod waiters;

#[cfg(test)]
#[path = "keyed_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "keyed_props.rs"]
mod props;
