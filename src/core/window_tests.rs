use super::*;
use crate::core::clock::ManualClock;
use std::sync::Arc;

const SECOND: u64 = 1_000_000_000;

fn manual() -> (Clock, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Nanos::ZERO));
    (Clock::Manual(clock.clone()), clock)
}

fn sliding(limit: f64, window: f64) -> (SlidingWindow, Arc<ManualClock>) {
    let (clock, manual) = manual();
    (SlidingWindow::new(limit, window, clock).unwrap(), manual)
}

fn fixed(limit: f64, window: f64) -> (FixedWindow, Arc<ManualClock>) {
    let (clock, manual) = manual();
    (FixedWindow::new(limit, window, clock).unwrap(), manual)
}

fn due_of(reservation: Reservation) -> Nanos {
    match reservation {
        Reservation::At(due) => due,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

#[test]
fn rejects_bad_configuration_naming_the_argument() {
    for (limit, window, name) in [
        (f64::NAN, 1.0, "limit"),
        (0.0, 1.0, "limit"),
        (-1.0, 1.0, "limit"),
        (f64::INFINITY, 1.0, "limit"),
        (1.0, f64::NAN, "window"),
        (1.0, 0.0, "window"),
        (1.0, -2.0, "window"),
        (1.0, f64::INFINITY, "window"),
        (1.0, 1e-12, "window"),
        (1.0, 1e12, "window"),
    ] {
        let err = SlidingWindow::new(limit, window, Clock::Monotonic).unwrap_err();
        assert!(err.starts_with(name), "{err}");
        let err = FixedWindow::new(limit, window, Clock::Monotonic).unwrap_err();
        assert!(err.starts_with(name), "{err}");
    }
}

#[test]
fn sliding_grants_the_limit_then_refuses() {
    let (w, _) = sliding(3.0, 1.0);
    for _ in 0..3 {
        assert!(w.try_acquire(1.0).unwrap());
    }
    assert!(!w.try_acquire(1.0).unwrap());
    assert_eq!(w.log_len(), 1, "grants at one time are merged");
}

#[test]
fn sliding_frees_each_grant_one_window_after_it() {
    let (w, clock) = sliding(2.0, 1.0);
    assert!(w.try_acquire(1.0).unwrap());
    clock.advance(Nanos(SECOND / 2));
    assert!(w.try_acquire(1.0).unwrap());
    assert_eq!(w.wait_time(1.0).unwrap(), Nanos(SECOND / 2));
    clock.advance(Nanos(SECOND / 2 - 1));
    assert!(!w.try_acquire(1.0).unwrap());
    clock.advance(Nanos(1));
    assert!(w.try_acquire(1.0).unwrap());
    assert!(!w.try_acquire(1.0).unwrap());
}

#[test]
fn sliding_reservations_queue_in_arrival_order() {
    let (w, _) = sliding(1.0, 1.0);
    assert_eq!(w.reserve(1.0, None).unwrap(), Reservation::Now);
    assert_eq!(due_of(w.reserve(1.0, None).unwrap()), Nanos(SECOND));
    assert_eq!(due_of(w.reserve(1.0, None).unwrap()), Nanos(2 * SECOND));
    assert_eq!(w.wait_time(1.0).unwrap(), Nanos(3 * SECOND));
}

#[test]
fn sliding_waits_for_enough_units_to_leave_the_window() {
    let (w, clock) = sliding(4.0, 1.0);
    w.try_acquire(1.0).unwrap();
    clock.advance(Nanos(SECOND / 4));
    w.try_acquire(1.0).unwrap();
    clock.advance(Nanos(SECOND / 4));
    w.try_acquire(2.0).unwrap();
    // Three units must be free: the grants at 0 and 0.25 s leave only two.
    assert_eq!(w.wait_time(3.0).unwrap(), Nanos(SECOND / 2 + SECOND / 2));
    assert_eq!(w.wait_time(2.0).unwrap(), Nanos(SECOND / 4 + SECOND / 2));
    assert_eq!(w.wait_time(1.0).unwrap(), Nanos(SECOND / 2));
}

#[test]
fn sliding_refuses_a_wait_beyond_max_wait_taking_nothing() {
    let (w, _) = sliding(1.0, 1.0);
    w.try_acquire(1.0).unwrap();
    let refused = w.reserve(1.0, Some(Nanos(SECOND / 2))).unwrap();
    assert_eq!(refused, Reservation::TooLong(Nanos(SECOND)));
    assert_eq!(w.log_len(), 1);
    assert_eq!(w.wait_time(1.0).unwrap(), Nanos(SECOND));
}

#[test]
fn sliding_cancel_lets_the_next_waiter_in_earlier() {
    let (w, _) = sliding(1.0, 1.0);
    w.try_acquire(1.0).unwrap();
    let first = due_of(w.reserve(1.0, None).unwrap());
    let second = due_of(w.reserve(1.0, None).unwrap());
    w.cancel(1.0, second);
    assert_eq!(w.wait_time(1.0).unwrap(), Nanos(2 * SECOND));
    w.cancel(1.0, first);
    assert_eq!(w.wait_time(1.0).unwrap(), Nanos(SECOND));
    assert_eq!(w.log_len(), 1);
}

#[test]
fn sliding_log_stays_within_one_window() {
    let (w, clock) = sliding(10.0, 1.0);
    for _ in 0..10_000 {
        w.try_acquire(1.0).unwrap();
        clock.advance(Nanos(SECOND / 100));
    }
    assert!(w.log_len() <= 10, "log holds {}", w.log_len());
}

#[test]
fn sliding_fractional_units_fill_the_limit_exactly() {
    let (w, _) = sliding(1.0, 1.0);
    for _ in 0..10 {
        assert!(w.try_acquire(0.1).unwrap());
    }
    assert!(!w.try_acquire(0.1).unwrap());
}

#[test]
fn sliding_never_grants_more_than_the_limit_in_any_window() {
    let (w, clock) = sliding(5.0, 1.0);
    let mut grants = Vec::new();
    for step in 0..5_000u64 {
        let n = (step % 3 + 1) as f64;
        if w.try_acquire(n).unwrap() {
            grants.push((clock.now(), n));
        }
        clock.advance(Nanos(SECOND / 7 + step % 5));
    }
    for &(start, _) in &grants {
        let inside: f64 = grants
            .iter()
            .filter(|&&(at, _)| at >= start && at < start + Nanos(SECOND))
            .map(|&(_, n)| n)
            .sum();
        assert!(inside <= 5.0, "{inside} units in the window from {start:?}");
    }
}

#[test]
fn fixed_grants_the_limit_per_aligned_window() {
    let (w, clock) = fixed(2.0, 1.0);
    clock.advance(Nanos(SECOND - 1));
    assert!(w.try_acquire(2.0).unwrap());
    assert!(!w.try_acquire(1.0).unwrap());
    clock.advance(Nanos(1));
    assert!(w.try_acquire(1.0).unwrap());
    assert!(w.try_acquire(1.0).unwrap());
    assert!(!w.try_acquire(1.0).unwrap());
}

#[test]
fn fixed_reserves_the_next_window_start_in_order() {
    let (w, clock) = fixed(2.0, 1.0);
    clock.advance(Nanos(SECOND / 3));
    assert_eq!(w.reserve(2.0, None).unwrap(), Reservation::Now);
    assert_eq!(due_of(w.reserve(1.0, None).unwrap()), Nanos(SECOND));
    // Fits in the next window still; never before it (FIFO).
    assert_eq!(due_of(w.reserve(1.0, None).unwrap()), Nanos(SECOND));
    assert_eq!(due_of(w.reserve(1.0, None).unwrap()), Nanos(2 * SECOND));
    assert_eq!(w.wait_time(2.0).unwrap(), Nanos(3 * SECOND - SECOND / 3));
    assert_eq!(w.wait_time(1.0).unwrap(), Nanos(2 * SECOND - SECOND / 3));
}

#[test]
fn fixed_refuses_a_wait_beyond_max_wait_taking_nothing() {
    let (w, _) = fixed(1.0, 1.0);
    w.try_acquire(1.0).unwrap();
    let refused = w.reserve(1.0, Some(Nanos(SECOND / 2))).unwrap();
    assert_eq!(refused, Reservation::TooLong(Nanos(SECOND)));
    assert_eq!(w.wait_time(1.0).unwrap(), Nanos(SECOND));
}

#[test]
fn fixed_cancel_gives_units_back_to_their_window() {
    let (w, _) = fixed(1.0, 1.0);
    w.try_acquire(1.0).unwrap();
    let first = due_of(w.reserve(1.0, None).unwrap());
    let second = due_of(w.reserve(1.0, None).unwrap());
    assert_eq!(w.wait_time(1.0).unwrap(), Nanos(3 * SECOND));
    w.cancel(1.0, second);
    assert_eq!(w.wait_time(1.0).unwrap(), Nanos(2 * SECOND));
    w.cancel(1.0, first);
    assert_eq!(w.wait_time(1.0).unwrap(), Nanos(SECOND));
}

#[test]
fn reset_frees_everything() {
    let (s, _) = sliding(1.0, 10.0);
    let (f, _) = fixed(1.0, 10.0);
    s.try_acquire(1.0).unwrap();
    f.try_acquire(1.0).unwrap();
    s.reset();
    f.reset();
    assert!(s.try_acquire(1.0).unwrap());
    assert!(f.try_acquire(1.0).unwrap());
}

#[test]
fn bad_amounts_are_refused_before_touching_state() {
    let (s, _) = sliding(2.0, 1.0);
    let (f, _) = fixed(2.0, 1.0);
    let limits: [&dyn Limit; 2] = [&s, &f];
    for limit in limits {
        for n in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                limit.try_acquire(n),
                Err(LimitError::NotPositive(_))
            ));
            assert!(limit.wait_time(n).is_err());
        }
        assert!(matches!(
            limit.reserve(3.0, None),
            Err(LimitError::ExceedsCapacity { .. })
        ));
        assert!(limit.try_acquire(2.0).unwrap());
    }
}
