//! The queue of reservations still waiting for their due time.
//!
//! A reservation is placed behind every earlier one, so the waiters form a
//! queue. When one ahead gives its units back (a cancel, a refund, a
//! `reconcile` below the estimate) those behind move up: their due times
//! become earlier. A waiter sleeps until the due time it last read (its
//! `armed` time); one whose due time is now earlier is *stale* and must be
//! woken. Waking every waiter on every give-back would cost O(waiters) each
//! time, so the queue passes a baton instead: a give-back wakes only the
//! first stale waiter, and every waiter, once granted, wakes the one behind
//! it if that one is stale. Each stale waiter is thus woken no later than
//! the grant of the one ahead of it, which is no later than its own due
//! time, and each event costs at most one wake-up.

use super::clock::Nanos;
use std::collections::VecDeque;

/// One waiting reservation.
#[derive(Debug)]
pub struct Waiter<T> {
    pub ticket: u64,
    /// When its units are granted; moves earlier when one ahead gives back.
    pub due: Nanos,
    /// The due time its waiter last read and sleeps until.
    armed: Nanos,
    pub data: T,
}

impl<T> Waiter<T> {
    fn is_stale(&self) -> bool {
        self.due < self.armed
    }
}

/// What a waiter learns when it looks at its reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Still waiting until this time (its waiter now sleeps until then).
    Waiting(Nanos),
    /// Granted (or unknown to the queue): go on, and wake this ticket, the
    /// waiter behind, if it is stale.
    Granted(Option<u64>),
}

/// The waiters of one limiter, in arrival order.
#[derive(Debug)]
pub struct Queue<T> {
    waiters: VecDeque<Waiter<T>>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            waiters: VecDeque::new(),
        }
    }
}

impl<T> Queue<T> {
    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    pub fn push(&mut self, ticket: u64, due: Nanos, data: T) {
        self.waiters.push_back(Waiter {
            ticket,
            due,
            armed: due,
            data,
        });
    }

    pub fn iter(&self) -> impl Iterator<Item = &Waiter<T>> {
        self.waiters.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Waiter<T>> {
        self.waiters.iter_mut()
    }

    pub fn front(&self) -> Option<&Waiter<T>> {
        self.waiters.front()
    }

    fn position(&self, ticket: u64) -> Option<usize> {
        // Tickets only grow along the queue: binary search.
        self.waiters
            .binary_search_by_key(&ticket, |w| w.ticket)
            .ok()
    }

    /// Takes a waiter out (cancelled or granted); also returns the ticket
    /// behind it when that one is stale and must be woken.
    pub fn remove(&mut self, ticket: u64) -> Option<(Waiter<T>, Option<u64>)> {
        let at = self.position(ticket)?;
        let waiter = self.waiters.remove(at)?;
        let behind = self
            .waiters
            .get(at)
            .filter(|w| w.is_stale())
            .map(|w| w.ticket);
        Some((waiter, behind))
    }

    /// The waiter's view of `ticket` at `now`: still waiting (re-armed at
    /// its due time), or granted (and removed, passing the baton).
    pub fn check(&mut self, ticket: u64, now: Nanos) -> Check {
        self.look(ticket, now).0
    }

    /// [`Queue::check`], also handing back a granted waiter's entry.
    pub fn look(&mut self, ticket: u64, now: Nanos) -> (Check, Option<Waiter<T>>) {
        let Some(at) = self.position(ticket) else {
            return (Check::Granted(None), None);
        };
        let waiter = &mut self.waiters[at];
        if waiter.due > now {
            waiter.armed = waiter.due;
            return (Check::Waiting(waiter.due), None);
        }
        match self.remove(ticket) {
            Some((waiter, behind)) => (Check::Granted(behind), Some(waiter)),
            None => (Check::Granted(None), None),
        }
    }

    /// The waiter of `ticket`, to change its data.
    pub fn get_mut(&mut self, ticket: u64) -> Option<&mut Waiter<T>> {
        let at = self.position(ticket)?;
        self.waiters.get_mut(at)
    }

    /// Drops the waiters at the front already due at `now` (granted, their
    /// waiter not yet back); returns the ticket to wake, if the new front
    /// is stale.
    pub fn prune(&mut self, now: Nanos) -> Option<u64> {
        let mut pruned = false;
        while self.waiters.front().is_some_and(|w| w.due <= now) {
            self.waiters.pop_front();
            pruned = true;
        }
        if pruned {
            self.first_stale()
        } else {
            None
        }
    }

    /// Empties the queue; returns every ticket (all granted now).
    pub fn clear(&mut self) -> Vec<u64> {
        self.waiters.drain(..).map(|w| w.ticket).collect()
    }

    /// The first waiter whose due time moved earlier than it sleeps until.
    pub fn first_stale(&self) -> Option<u64> {
        self.waiters.iter().find(|w| w.is_stale()).map(|w| w.ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_granted_waiter_wakes_the_stale_one_behind_it() {
        let mut q = Queue::default();
        q.push(1, Nanos(10), ());
        q.push(2, Nanos(20), ());
        q.push(3, Nanos(30), ());
        assert_eq!(q.check(1, Nanos(0)), Check::Waiting(Nanos(10)));
        for w in q.iter_mut().skip(1) {
            w.due = Nanos(w.due.0 - 5);
        }
        assert_eq!(q.first_stale(), Some(2));
        assert_eq!(q.check(2, Nanos(0)), Check::Waiting(Nanos(15)));
        assert_eq!(q.first_stale(), Some(3));
        assert_eq!(q.check(1, Nanos(10)), Check::Granted(None));
        assert_eq!(q.check(2, Nanos(15)), Check::Granted(Some(3)));
        assert_eq!(q.check(3, Nanos(25)), Check::Granted(None));
        assert!(q.is_empty());
    }

    #[test]
    fn pruning_the_front_passes_the_baton() {
        let mut q = Queue::default();
        q.push(1, Nanos(10), ());
        q.push(2, Nanos(20), ());
        q.iter_mut().nth(1).unwrap().due = Nanos(12);
        assert_eq!(q.prune(Nanos(5)), None);
        assert_eq!(q.prune(Nanos(11)), Some(2));
        assert_eq!(q.len(), 1);
    }
}
