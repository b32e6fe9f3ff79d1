use super::*;
use crate::core::clock::ManualClock;
use crate::core::Check;
use std::sync::Arc;

const SECOND: u64 = 1_000_000_000;

fn limiter(overrides: Vec<(String, f64, f64)>) -> (KeyedLimiter, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Nanos(SECOND)));
    let keyed = KeyedLimiter::new(1.0, 2.0, overrides, 10.0, Clock::Manual(clock.clone()))
        .expect("valid configuration");
    (keyed, clock)
}

#[test]
fn each_key_has_its_own_full_bucket() {
    let (k, _) = limiter(vec![]);
    assert!(k.try_acquire("a", 2.0).unwrap());
    assert!(!k.try_acquire("a", 1.0).unwrap());
    assert!(k.try_acquire("b", 2.0).unwrap());
    assert_eq!(k.len(), 2);
}

#[test]
fn overrides_give_a_key_its_own_rule() {
    let (k, clock) = limiter(vec![("big".into(), 10.0, 5.0)]);
    assert!(k.try_acquire("big", 5.0).unwrap());
    assert!(matches!(
        k.try_acquire("small", 5.0),
        Err(LimitError::ExceedsCapacity { .. })
    ));
    clock.advance(Nanos(SECOND / 10));
    assert!(k.try_acquire("big", 1.0).unwrap());
    assert!(!k.try_acquire("big", 1.0).unwrap());
}

#[test]
fn short_and_long_keys_are_told_apart() {
    let (k, _) = limiter(vec![]);
    let long = "x".repeat(INLINE_KEY + 1);
    for key in ["", "a", &long[..INLINE_KEY], &long, "é"] {
        assert!(k.try_acquire(key, 2.0).unwrap(), "{key:?} is new");
        assert!(!k.try_acquire(key, 1.0).unwrap(), "{key:?} is taken");
    }
    assert_eq!(k.len(), 5);
    assert_eq!(std::mem::size_of::<Slot>(), 40);
}

#[test]
fn a_bad_amount_creates_no_key() {
    let (k, _) = limiter(vec![]);
    assert!(k.try_acquire("a", 3.0).is_err());
    assert!(k.try_acquire("a", f64::NAN).is_err());
    assert_eq!(k.len(), 0);
}

#[test]
fn full_idle_buckets_are_dropped_and_busy_ones_kept() {
    let (k, clock) = limiter(vec![]);
    k.try_acquire("idle", 1.0).unwrap();
    k.try_acquire("busy", 2.0).unwrap();
    let Reservation::At(_) = k.reserve("busy", 2.0, None).unwrap() else {
        panic!("expected a reservation")
    };
    // "idle" is full at 2s and expires at 12s; "busy" is full at 5s and
    // expires at 15s, unless its reservation is still outstanding.
    clock.advance(Nanos(15 * SECOND));
    assert!(!k.contains("idle"));
    assert_eq!(k.len(), 1, "an outstanding reservation keeps its key");
    k.finish("busy");
    assert_eq!(k.len(), 0);
}

#[test]
fn sweeping_follows_the_active_keys() {
    let (k, clock) = limiter(vec![]);
    for i in 0..10_000 {
        k.try_acquire(&format!("user-{i}"), 1.0).unwrap();
    }
    clock.advance(Nanos(20 * SECOND));
    for i in 0..10 {
        k.try_acquire(&format!("new-{i}"), 1.0).unwrap();
    }
    let kept: usize = k.shards.iter().map(|s| s.table.read().len()).sum();
    assert_eq!(kept, 10, "old keys stay");
    assert_eq!(k.len(), 10);
}

#[test]
fn cancelling_gives_units_back_to_the_same_key() {
    let (k, _) = limiter(vec![]);
    k.try_acquire("a", 2.0).unwrap();
    assert_eq!(
        k.reserve("a", 1.0, None).unwrap(),
        Reservation::At(Nanos(2 * SECOND))
    );
    k.cancel("a", 1.0, Nanos(2 * SECOND));
    assert_eq!(k.wait_time("a", 1.0).unwrap(), Nanos(SECOND));
    assert_eq!(k.wait_time("other", 2.0).unwrap(), Nanos::ZERO);
}

#[test]
fn cancelling_a_reservation_with_others_behind_it_never_stacks_grants() {
    let (k, clock) = limiter(vec![]);
    k.try_acquire("a", 2.0).unwrap();
    let Reservation::At(first) = k.reserve("a", 1.0, None).unwrap() else {
        panic!("expected a reservation")
    };
    let Reservation::At(second) = k.reserve("a", 1.0, None).unwrap() else {
        panic!("expected a reservation")
    };
    clock.advance(Nanos(SECOND / 4));
    k.cancel("a", 1.0, first);
    let Reservation::At(third) = k.reserve("a", 1.0, None).unwrap() else {
        panic!("expected a reservation")
    };
    assert!(third.0 > second.0, "{third:?} lands on {second:?}");
}

#[test]
fn too_long_a_wait_takes_nothing() {
    let (k, _) = limiter(vec![]);
    k.try_acquire("a", 2.0).unwrap();
    let refused = k.reserve("a", 1.0, Some(Nanos(SECOND / 2))).unwrap();
    assert_eq!(refused, Reservation::TooLong(Nanos(SECOND)));
    assert_eq!(k.available("a"), 0.0);
}

#[test]
fn reset_refills_every_key() {
    let (k, _) = limiter(vec![]);
    k.try_acquire("a", 2.0).unwrap();
    k.try_acquire("b", 2.0).unwrap();
    k.reset_key("a");
    assert_eq!(k.available("a"), 2.0);
    assert_eq!(k.available("b"), 0.0);
    k.reset();
    assert_eq!(k.available("b"), 2.0);
    assert_eq!(k.len(), 0);
}

#[test]
fn rejects_bad_configuration() {
    let bad = |rate, cap, idle, o: Vec<(String, f64, f64)>| {
        KeyedLimiter::new(rate, cap, o, idle, Clock::Monotonic).is_err()
    };
    assert!(bad(f64::NAN, 1.0, 1.0, vec![]));
    assert!(bad(1.0, 1.0, 0.0, vec![]));
    assert!(bad(1.0, 1.0, f64::INFINITY, vec![]));
    assert!(bad(1.0, 1.0, 1.0, vec![("m".into(), -1.0, 1.0)]));
}

#[test]
fn threads_on_one_key_never_exceed_capacity() {
    let keyed = Arc::new(KeyedLimiter::new(1e-3, 1000.0, vec![], 60.0, Clock::Monotonic).unwrap());
    let granted: u64 = (0..4)
        .map(|_| {
            let keyed = keyed.clone();
            std::thread::spawn(move || {
                (0..1000)
                    .filter(|_| keyed.try_acquire("k", 1.0).unwrap())
                    .count() as u64
            })
        })
        .map(|t| t.join().unwrap())
        .sum();
    assert!((1000..=1001).contains(&granted), "granted {granted}");
}

fn due_of(k: &KeyedLimiter, key: &str, ticket: Nanos) -> Option<Nanos> {
    match k.check(key, ticket) {
        Check::Waiting(due) => Some(due),
        Check::Granted(_) => None,
    }
}

#[test]
fn a_cancel_moves_the_waiters_behind_up_and_a_newcomer_queues_behind_them() {
    let (k, clock) = limiter(vec![]);
    k.try_acquire("a", 2.0).unwrap();
    let tickets: Vec<Nanos> = (0..3)
        .map(|_| match k.reserve("a", 1.0, None).unwrap() {
            Reservation::At(t) => t,
            other => panic!("expected a reservation, got {other:?}"),
        })
        .collect();
    clock.advance(Nanos(SECOND / 4));
    assert_eq!(k.cancel("a", 1.0, tickets[0]), Some(tickets[1].0));
    assert_eq!(due_of(&k, "a", tickets[1]), Some(Nanos(2 * SECOND)));
    assert_eq!(due_of(&k, "a", tickets[2]), Some(Nanos(3 * SECOND)));
    let Reservation::At(newcomer) = k.reserve("a", 1.0, None).unwrap() else {
        panic!("expected a reservation")
    };
    assert_eq!(due_of(&k, "a", newcomer), Some(Nanos(4 * SECOND)));
}

#[test]
fn a_refund_goes_to_the_waiters_not_to_a_newcomer() {
    let (k, _) = limiter(vec![]);
    k.try_acquire("a", 2.0).unwrap();
    let Reservation::At(waiter) = k.reserve("a", 2.0, None).unwrap() else {
        panic!("expected a reservation")
    };
    assert_eq!(k.refund("a", 2.0), Some(waiter.0));
    assert_eq!(due_of(&k, "a", waiter), None);
    assert!(!k.try_acquire("a", 1.0).unwrap());
    assert_eq!(k.wait_time("a", 2.0).unwrap(), Nanos(2 * SECOND));
}

#[test]
fn a_key_without_waiters_keeps_no_queue() {
    assert_eq!(std::mem::size_of::<Bucket>(), 16);
    let (k, clock) = limiter(vec![]);
    k.try_acquire("a", 2.0).unwrap();
    let Reservation::At(ticket) = k.reserve("a", 1.0, None).unwrap() else {
        panic!("expected a reservation")
    };
    let queues =
        |k: &KeyedLimiter| -> usize { k.shards.iter().map(|s| s.waiters.lock().len()).sum() };
    assert_eq!(queues(&k), 1);
    clock.advance(Nanos(SECOND));
    assert_eq!(k.check("a", ticket), Check::Granted(None));
    assert_eq!(queues(&k), 0);
}

#[test]
fn reset_grants_the_waiters_of_a_key() {
    let (k, _) = limiter(vec![]);
    k.try_acquire("a", 2.0).unwrap();
    let Reservation::At(ticket) = k.reserve("a", 1.0, None).unwrap() else {
        panic!("expected a reservation")
    };
    assert_eq!(k.reset_key("a"), vec![ticket.0]);
    assert_eq!(k.check("a", ticket), Check::Granted(None));
    assert_eq!(k.available("a"), 2.0);
}
