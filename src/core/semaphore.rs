//! A FIFO counting semaphore whose uncontended path is one compare-and-swap.
//!
//! The whole fast-path state is one `AtomicU64`: the free slots in the low
//! bits and a `QUEUED` flag in the top bit. While nobody waits, acquiring is a
//! CAS that takes a free slot and releasing is a CAS that returns it. Once a
//! waiter queues (under the queue lock) the flag is set, and from then on a
//! release goes through the lock and hands its slot straight to the oldest
//! waiter instead of freeing it, so a newcomer can never overtake the queue.
//! Invariant: the flag is set only while the queue is non-empty, and then the
//! free count is 0.
//!
//! The semaphore is generic over the waiter `W`: the core only stores it and
//! returns it from [`Semaphore::release`]; the caller wakes it (a parked
//! thread, a Python future) however its world requires.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

const QUEUED: u64 = 1 << 63;

/// What [`Semaphore::acquire_or_enqueue`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// A slot was free and is now the caller's.
    Acquired,
    /// The caller waits under this ticket until a release hands it a slot.
    Queued(u64),
}

#[derive(Debug)]
pub struct Semaphore<W> {
    capacity: u64,
    state: AtomicU64,
    queue: Mutex<Queue<W>>,
}

#[derive(Debug)]
struct Queue<W> {
    waiters: VecDeque<(u64, W)>,
    next_ticket: u64,
}

impl<W> Semaphore<W> {
    /// `capacity` slots, all free; the caller has validated `capacity >= 1`.
    pub fn new(capacity: u32) -> Semaphore<W> {
        Semaphore {
            capacity: u64::from(capacity),
            state: AtomicU64::new(u64::from(capacity)),
            queue: Mutex::new(Queue {
                waiters: VecDeque::new(),
                next_ticket: 1,
            }),
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Slots taken now (held or handed to a waiter that has not woken yet).
    pub fn in_use(&self) -> u64 {
        let state = self.state.load(Ordering::Acquire);
        self.capacity - (state & !QUEUED)
    }

    /// Waiters queued now.
    pub fn waiting(&self) -> usize {
        self.queue.lock().waiters.len()
    }

    /// Takes a free slot if there is one and nobody is queued; never waits.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & QUEUED != 0 || state == 0 {
                return false;
            }
            match self.state.compare_exchange_weak(
                state,
                state - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => state = actual,
            }
        }
    }

    /// Takes a free slot, or queues `waiter` (made only if needed) behind
    /// the others.
    pub fn acquire_or_enqueue(&self, waiter: impl FnOnce() -> W) -> Enqueued {
        let mut queue = self.queue.lock();
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            // Under the lock the queue cannot change, so "no flag and a free
            // slot" means the slot is ours to take, fairly.
            let (next, acquired) = if state & QUEUED == 0 && state > 0 {
                (state - 1, true)
            } else {
                (state | QUEUED, false)
            };
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if acquired => return Enqueued::Acquired,
                Ok(_) => break,
                Err(actual) => state = actual,
            }
        }
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiters.push_back((ticket, waiter()));
        Enqueued::Queued(ticket)
    }

    /// Gives a slot back. When someone is queued, the slot goes to the
    /// oldest waiter, which is returned for the caller to wake.
    #[inline]
    pub fn release(&self) -> Option<W> {
        let mut state = self.state.load(Ordering::Acquire);
        while state & QUEUED == 0 {
            if (state & !QUEUED) >= self.capacity {
                return None; // more releases than acquires: ignore, never overflow
            }
            match self.state.compare_exchange_weak(
                state,
                state + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return None,
                Err(actual) => state = actual,
            }
        }
        let mut queue = self.queue.lock();
        let handed = queue.waiters.pop_front();
        if queue.waiters.is_empty() {
            // Clear the flag; give the slot back only if nobody took it.
            let free = u64::from(handed.is_none());
            self.state.fetch_and(!QUEUED, Ordering::AcqRel);
            self.state.fetch_add(free, Ordering::AcqRel);
        }
        handed.map(|(_, waiter)| waiter)
    }

    /// Withdraws a queued waiter. `true`: it was still queued and holds
    /// nothing. `false`: a release had already handed it a slot, which the
    /// caller now holds and must release.
    pub fn cancel(&self, ticket: u64) -> bool {
        let mut queue = self.queue.lock();
        let Some(index) = queue.waiters.iter().position(|(t, _)| *t == ticket) else {
            return false;
        };
        queue.waiters.remove(index);
        if queue.waiters.is_empty() {
            self.state.fetch_and(!QUEUED, Ordering::AcqRel);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn grants_up_to_capacity_then_refuses() {
        let s: Semaphore<()> = Semaphore::new(2);
        assert!(s.try_acquire());
        assert!(s.try_acquire());
        assert!(!s.try_acquire());
        assert_eq!(s.in_use(), 2);
        assert!(s.release().is_none());
        assert!(s.try_acquire());
    }

    #[test]
    fn a_release_hands_the_slot_to_the_oldest_waiter() {
        let s: Semaphore<&str> = Semaphore::new(1);
        assert!(s.try_acquire());
        assert_eq!(s.acquire_or_enqueue(|| "a"), Enqueued::Queued(1));
        assert_eq!(s.acquire_or_enqueue(|| "b"), Enqueued::Queued(2));
        // A newcomer cannot overtake the queue.
        assert!(!s.try_acquire());
        assert_eq!(s.release(), Some("a"));
        assert_eq!(s.release(), Some("b"));
        assert_eq!(s.in_use(), 1);
        assert_eq!(s.release(), None);
        assert_eq!(s.in_use(), 0);
        assert!(s.try_acquire());
    }

    #[test]
    fn a_cancelled_waiter_holds_nothing() {
        let s: Semaphore<u8> = Semaphore::new(1);
        assert!(s.try_acquire());
        let Enqueued::Queued(ticket) = s.acquire_or_enqueue(|| 1) else {
            panic!("expected to queue")
        };
        assert!(s.cancel(ticket));
        assert_eq!(s.release(), None);
        assert_eq!(s.in_use(), 0);
        assert!(s.try_acquire());
    }

    #[test]
    fn cancelling_after_the_handoff_reports_the_slot_held() {
        let s: Semaphore<u8> = Semaphore::new(1);
        assert!(s.try_acquire());
        let Enqueued::Queued(ticket) = s.acquire_or_enqueue(|| 1) else {
            panic!("expected to queue")
        };
        assert_eq!(s.release(), Some(1));
        assert!(!s.cancel(ticket));
        assert_eq!(s.in_use(), 1);
    }

    #[test]
    fn extra_releases_never_exceed_capacity() {
        let s: Semaphore<()> = Semaphore::new(1);
        s.release();
        assert_eq!(s.in_use(), 0);
        assert!(s.try_acquire());
        assert!(!s.try_acquire());
    }

    #[test]
    fn threads_never_exceed_capacity() {
        let s = Arc::new(Semaphore::<()>::new(3));
        let held = Arc::new(AtomicU64::new(0));
        let most = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (s, held, most) = (s.clone(), held.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        if s.try_acquire() {
                            let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            held.fetch_sub(1, Ordering::SeqCst);
                            s.release();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert_eq!(s.in_use(), 0);
    }
}
