use super::*;
use crate::core::clock::ManualClock;
use std::sync::Arc;

const SEC: u64 = 1_000_000_000;

fn breaker(threshold: u64, max_calls: u64, successes: u64) -> (CircuitBreaker, Arc<ManualClock>) {
    let manual = Arc::new(ManualClock::new(Nanos(SEC)));
    let config = BreakerConfig::check(threshold, 10.0, max_calls, successes).unwrap();
    (
        CircuitBreaker::new(config, Clock::Manual(manual.clone())),
        manual,
    )
}

#[test]
fn opens_after_threshold_consecutive_failures() {
    let (b, _) = breaker(3, 1, 1);
    b.record_failure();
    b.record_failure();
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.failure_count(), 2);
    b.record_failure();
    assert_eq!(b.state(), State::Open);
    assert!(!b.allow());
    assert_eq!(b.retry_after(), Nanos(10 * SEC));
}

#[test]
fn a_success_resets_the_failure_count() {
    let (b, _) = breaker(2, 1, 1);
    b.record_failure();
    b.record_success();
    assert_eq!(b.failure_count(), 0);
    b.record_failure();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn half_open_after_reset_timeout_and_limits_probes() {
    let (b, clock) = breaker(1, 2, 1);
    b.record_failure();
    clock.advance(Nanos(10 * SEC - 1));
    assert_eq!(b.try_enter(), Err(Nanos(1)));
    clock.advance(Nanos(1));
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.retry_after(), Nanos::ZERO);
    let first = b.try_enter().unwrap();
    let second = b.try_enter().unwrap();
    assert_eq!(b.try_enter(), Err(Nanos::ZERO));
    b.on_abandon(first);
    let third = b.try_enter().unwrap();
    b.on_success(second);
    assert_eq!(b.state(), State::Closed);
    // The last probe's outcome belongs to a phase that is over.
    b.on_failure(third);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.failure_count(), 0);
}

#[test]
fn success_threshold_probes_close_it() {
    let (b, clock) = breaker(1, 1, 3);
    b.trip();
    clock.advance(Nanos(10 * SEC));
    for _ in 0..2 {
        let probe = b.try_enter().unwrap();
        b.on_success(probe);
        assert_eq!(b.state(), State::HalfOpen);
    }
    let probe = b.try_enter().unwrap();
    b.on_success(probe);
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn a_probe_failure_reopens_and_restarts_the_timeout() {
    let (b, clock) = breaker(1, 1, 1);
    b.record_failure();
    clock.advance(Nanos(15 * SEC));
    let probe = b.try_enter().unwrap();
    clock.advance(Nanos(2 * SEC));
    b.on_failure(probe);
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.retry_after(), Nanos(10 * SEC));
}

#[test]
fn outcomes_of_calls_from_an_earlier_phase_are_ignored() {
    let (b, clock) = breaker(1, 1, 1);
    let slow = b.try_enter().unwrap();
    b.record_failure();
    clock.advance(Nanos(10 * SEC));
    let probe = b.try_enter().unwrap();
    b.on_success(slow);
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.probes_in_flight(), 1);
    b.on_success(probe);
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn reset_closes_and_trip_opens() {
    let (b, _) = breaker(5, 1, 1);
    b.trip();
    assert_eq!(b.state(), State::Open);
    b.reset();
    assert_eq!(b.state(), State::Closed);
    assert!(b.allow());
}

#[test]
fn records_while_open_are_ignored() {
    let (b, _) = breaker(1, 1, 1);
    b.trip();
    b.record_success();
    assert_eq!(b.state(), State::Open);
}

#[test]
fn config_rejects_bad_values() {
    assert!(BreakerConfig::check(0, 1.0, 1, 1).is_err());
    assert!(BreakerConfig::check(1, 0.0, 1, 1).is_err());
    assert!(BreakerConfig::check(1, f64::NAN, 1, 1).is_err());
    assert!(BreakerConfig::check(1, f64::INFINITY, 1, 1).is_err());
    assert!(BreakerConfig::check(1, 1.0, 0, 1).is_err());
    assert!(BreakerConfig::check(1, 1.0, 1, 0).is_err());
    assert!(BreakerConfig::check(1 << 40, 1.0, 1, 1).is_err());
}

#[test]
fn concurrent_probes_never_exceed_the_limit() {
    let (b, clock) = breaker(1, 3, 1_000_000);
    b.trip();
    clock.advance(Nanos(10 * SEC));
    let b = Arc::new(b);
    let in_flight = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let most = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (b, in_flight, most) = (b.clone(), in_flight.clone(), most.clone());
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    if let Ok(permit) = b.try_enter() {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        b.on_success(permit);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(most.load(Ordering::SeqCst) <= 3);
    assert_eq!(b.state(), State::HalfOpen);
}

#[test]
fn the_listener_hears_every_change_in_order() {
    let (b, clock) = breaker(2, 1, 1);
    let heard = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink = heard.clone();
    assert!(b.listen(Box::new(move |old, new| sink.lock().push((old, new)))));
    assert!(!b.listen(Box::new(|_, _| {})));
    b.record_failure();
    assert!(heard.lock().is_empty());
    b.record_failure();
    clock.advance(Nanos(10 * SEC));
    let probe = b.try_enter().unwrap();
    b.on_failure(probe);
    clock.advance(Nanos(10 * SEC));
    let probe = b.try_enter().unwrap();
    b.on_success(probe);
    b.trip();
    b.trip();
    b.reset();
    b.reset();
    use State::*;
    assert_eq!(
        *heard.lock(),
        vec![
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed),
            (Closed, Open),
            (Open, Closed),
        ]
    );
}

#[test]
fn the_listener_may_look_at_the_breaker() {
    let (b, clock) = breaker(1, 1, 1);
    let b = Arc::new(b);
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (inner, sink) = (Arc::downgrade(&b), seen.clone());
    b.listen(Box::new(move |_, _| {
        if let Some(b) = inner.upgrade() {
            sink.lock().push((b.state(), b.probes_in_flight()));
        }
    }));
    b.record_failure();
    clock.advance(Nanos(10 * SEC));
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(*seen.lock(), vec![(State::Open, 0), (State::HalfOpen, 0)]);
}
