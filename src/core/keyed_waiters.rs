//! The waiters of `KeyedLimiter`: each key's reservations that must wait
//! queue on its [`Timeline`], as in `TokenBucket`. The queues live beside
//! each shard's table, an entry only while a key has waiters, so a bucket
//! stays 16 bytes and a grant now never looks at them.

use super::{release, Bucket, KeyedLimiter, Shard};
use crate::core::clock::Nanos;
use crate::core::gcra::Gcra;
use crate::core::limit::{check_amount, Check};
use crate::core::timeline::Waiters;
use std::sync::atomic::Ordering;

impl Shard {
    /// Runs `f` on `key`'s queue; an entry exists only while it holds someone.
    pub(super) fn with_waiters<R>(&self, key: &str, f: impl FnOnce(&mut Waiters) -> R) -> R {
        let mut queues = self.waiters.lock();
        match queues.get_mut(key.as_bytes()) {
            Some(queue) => {
                let result = f(queue);
                if queue.is_empty() {
                    queues.remove(key.as_bytes());
                }
                result
            }
            None => {
                let mut queue = Waiters::default();
                let result = f(&mut queue);
                if !queue.is_empty() {
                    queues.insert(Box::from(key.as_bytes()), queue);
                }
                result
            }
        }
    }
}

impl KeyedLimiter {
    /// A ticket above every earlier one and at least `due`.
    pub(super) fn next_ticket(&self, due: Nanos) -> u64 {
        let mut ticket = 0;
        let _ = self
            .last_ticket
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                ticket = due.0.max(last + 1);
                Some(ticket)
            });
        ticket
    }

    /// Where `key`'s reservation `ticket` stands (see [`Check`]).
    pub fn check(&self, key: &str, ticket: Nanos) -> Check {
        let now = self.clock.now();
        self.with_queued(key, |_, _, queue| queue.check(ticket.0, now))
            .unwrap_or(Check::Granted(None))
    }

    /// Ends a reservation whose units were used.
    pub fn finish(&self, key: &str) {
        self.with_existing(key, |_, bucket| release(bucket));
    }

    /// Gives back `key`'s reservation `ticket` of `n` units that its waiter
    /// abandoned: those behind it move up. Returns the ticket of a waiter
    /// to wake.
    pub fn cancel(&self, key: &str, n: f64, ticket: Nanos) -> Option<u64> {
        self.with_queued(key, |rule, bucket, queue| {
            release(bucket);
            check_amount(n, rule.capacity()).ok()?;
            let cost = rule.cost(n);
            bucket
                .line(rule)
                .cancel(queue, self.clock.now(), ticket.0, cost)
        })
        .flatten()
    }

    /// Gives `n` units back to `key`, never above capacity; its waiters
    /// move up first. Returns the ticket of a waiter to wake.
    pub fn refund(&self, key: &str, n: f64) -> Option<u64> {
        self.with_queued(key, |rule, bucket, queue| {
            let cost = rule.cost(n.min(rule.capacity()));
            bucket.line(rule).give_back(queue, self.clock.now(), cost)
        })
        .flatten()
    }

    /// Runs `f` on `key`'s bucket and its queue, if the key exists.
    pub(super) fn with_queued<R>(
        &self,
        key: &str,
        f: impl FnOnce(&Gcra, &Bucket, &mut Waiters) -> R,
    ) -> Option<R> {
        let (hash, shard) = self.locate(key);
        let table = shard.table.read();
        let (_, bucket) = table.find(hash, |(k, _)| k.as_bytes() == key.as_bytes())?;
        let rule = &self.rules[bucket.rule as usize];
        Some(shard.with_waiters(key, |queue| f(rule, bucket, queue)))
    }
}
