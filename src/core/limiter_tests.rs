use super::*;
use crate::core::clock::ManualClock;
use std::sync::Arc;

const SECOND: u64 = 1_000_000_000;

fn limits(pairs: &[(Budget, f64)]) -> [Option<f64>; BUDGETS] {
    let mut out = [None; BUDGETS];
    for (b, v) in pairs {
        out[*b as usize] = Some(*v);
    }
    out
}

fn budgets(pairs: &[(Budget, f64)]) -> (Budgets, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Nanos(SECOND)));
    let b = Budgets::new(limits(pairs), None, Clock::Manual(clock.clone())).unwrap();
    (b, clock)
}

fn tokens(n: f64) -> Amounts {
    Amounts::new(n, None, None).unwrap()
}

#[test]
fn a_full_budget_grants_its_period_at_once_then_refills() {
    let (b, clock) = budgets(&[(Budget::Rpm, 60.0)]);
    for _ in 0..60 {
        assert_eq!(
            b.reserve(tokens(0.0), Some(Nanos::ZERO)).unwrap().waited,
            Nanos::ZERO
        );
    }
    assert_eq!(
        b.reserve(tokens(0.0), Some(Nanos::ZERO)).unwrap_err(),
        Nanos(SECOND)
    );
    clock.advance(Nanos(SECOND));
    assert!(b.reserve(tokens(0.0), Some(Nanos::ZERO)).is_ok());
}

#[test]
fn every_budget_is_charged_at_the_common_grant_time() {
    let (b, _) = budgets(&[(Budget::Rps, 1.0), (Budget::Tpm, 60.0)]);
    b.reserve(tokens(60.0), None).unwrap();
    // tpm is empty for a minute; the request budget must not be charged
    // as if this grant happened now.
    let g = b.reserve(tokens(60.0), None).unwrap();
    assert_eq!(g.waited, Nanos(60 * SECOND));
    let third = b.reserve(tokens(0.0), None).unwrap();
    // FIFO: not before the previous grant, and rps charged at 60 s.
    assert_eq!(third.at, g.at + Nanos(SECOND));
}

#[test]
fn a_refused_request_takes_nothing() {
    let (b, _) = budgets(&[(Budget::Rpm, 1.0), (Budget::Tpm, 100.0)]);
    b.reserve(tokens(10.0), None).unwrap();
    assert!(b.reserve(tokens(10.0), Some(Nanos(SECOND))).is_err());
    assert_eq!(b.available(Budget::Tpm), Some(90.0));
    assert_eq!(b.available(Budget::Rpm), Some(0.0));
}

#[test]
fn pause_holds_every_grant_and_only_extends() {
    let (b, _) = budgets(&[(Budget::Rps, 10.0)]);
    b.pause(Nanos(5 * SECOND));
    b.pause(Nanos(SECOND));
    assert_eq!(b.paused_for(), Nanos(5 * SECOND));
    assert_eq!(
        b.reserve(tokens(0.0), None).unwrap().waited,
        Nanos(5 * SECOND)
    );
}

#[test]
fn after_a_pause_grants_resume_at_the_refill_rate_not_as_a_burst() {
    // A full bucket of 10 per second, paused for 2 s: the waiters leave
    // 0.1 s apart from the pause's end, not ten at once.
    let (b, _) = budgets(&[(Budget::Rps, 10.0)]);
    b.pause(Nanos(2 * SECOND));
    let waits: Vec<u64> = (0..5)
        .map(|_| b.reserve(tokens(0.0), None).unwrap().waited.0)
        .collect();
    let step = SECOND / 10;
    assert_eq!(
        waits,
        (0..5).map(|k| 2 * SECOND + k * step).collect::<Vec<_>>()
    );
}

#[test]
fn cancelling_the_last_grant_restores_the_budget_and_the_queue() {
    let (b, _) = budgets(&[(Budget::Rps, 1.0)]);
    b.reserve(tokens(0.0), None).unwrap();
    let waiting = b.reserve(tokens(0.0), None).unwrap();
    b.cancel(&waiting);
    assert_eq!(b.reserve(tokens(0.0), None).unwrap().waited, Nanos(SECOND));
}

#[test]
fn cancelling_a_grant_with_others_behind_it_moves_them_up_in_order() {
    let (b, _) = budgets(&[(Budget::Rps, 1.0)]);
    let first = b.reserve(tokens(0.0), None).unwrap(); // now
    let a = b.reserve(tokens(0.0), None).unwrap(); // +1 s
    let mut later = b.reserve(tokens(0.0), None).unwrap(); // +2 s
    assert_eq!(b.cancel(&a), Some(later.ticket));
    assert_eq!(b.look(&mut later), Check::Waiting(first.at + Nanos(SECOND)));
    let next = b.reserve(tokens(0.0), None).unwrap();
    assert_eq!(next.at, later.at + Nanos(SECOND));
}

#[test]
fn a_reconcile_below_the_estimate_goes_to_the_waiters_first() {
    // A 6-token budget: a newcomer must never get a queued waiter's time.
    let (b, _) = budgets(&[(Budget::Tpm, 6.0)]);
    let mut first = b.reserve(tokens(6.0), None).unwrap();
    let mut waiter = b.reserve(tokens(6.0), None).unwrap();
    assert_eq!(waiter.waited, Nanos(60 * SECOND));
    let actual = first.amounts.reconciled(Some(0.0), None, None).unwrap();
    assert_eq!(b.reconcile(&mut first, actual), Some(waiter.ticket));
    assert_eq!(b.look(&mut waiter), Check::Granted(None));
    assert_eq!(
        b.reserve(tokens(1.0), None).unwrap().waited,
        Nanos(10 * SECOND)
    );
}

#[test]
fn a_pause_holds_the_waiters_too() {
    let (b, _) = budgets(&[(Budget::Rps, 10.0)]);
    for _ in 0..10 {
        b.reserve(tokens(0.0), None).unwrap();
    }
    let mut waiter = b.reserve(tokens(0.0), None).unwrap();
    b.pause(Nanos(SECOND));
    assert_eq!(
        b.look(&mut waiter),
        Check::Waiting(waiter.reserved_at + Nanos(SECOND))
    );
}

#[test]
fn reconcile_refunds_and_charges_the_difference() {
    let (b, _) = budgets(&[(Budget::Tpm, 1000.0)]);
    let mut g = b.reserve(tokens(500.0), None).unwrap();
    let actual = g.amounts.reconciled(Some(200.0), None, None).unwrap();
    b.reconcile(&mut g, actual);
    assert_eq!(b.available(Budget::Tpm), Some(800.0));
    let actual = g.amounts.reconciled(Some(900.0), None, None).unwrap();
    b.reconcile(&mut g, actual);
    assert_eq!(b.available(Budget::Tpm), Some(100.0));
}

#[test]
fn tokens_count_as_input_when_only_itpm_is_set() {
    let a = Amounts::new(100.0, None, None).unwrap();
    assert_eq!((a.total, a.input, a.output), (100.0, 100.0, 0.0));
    let a = Amounts::new(0.0, Some(30.0), Some(70.0)).unwrap();
    assert_eq!((a.total, a.input, a.output), (100.0, 30.0, 70.0));
    let r = Amounts::new(100.0, None, None)
        .unwrap()
        .reconciled(Some(40.0), None, None)
        .unwrap();
    assert_eq!((r.total, r.input), (40.0, 40.0));
    assert!(Amounts::new(-1.0, None, None).is_err());
    assert!(Amounts::new(f64::NAN, None, None).is_err());
}

fn server(remaining: f64, limit: f64, reset_s: f64, refill: Refill) -> ServerBudget {
    ServerBudget {
        remaining,
        limit: Some(limit),
        reset: Some(Nanos::from_secs_f64(reset_s)),
        refill,
    }
}

#[test]
fn adopt_only_tightens() {
    let (b, _) = budgets(&[(Budget::Rpm, 100.0)]);
    b.adopt(Budget::Rpm, ServerBudget::remaining(10.0));
    assert_eq!(b.available(Budget::Rpm), Some(10.0));
    b.adopt(Budget::Rpm, ServerBudget::remaining(50.0));
    assert_eq!(b.available(Budget::Rpm), Some(10.0));
}

#[test]
fn an_empty_minute_bucket_gives_its_next_unit_after_one_interval_not_the_reset() {
    // OpenAI / Anthropic: reset is the time until the bucket is full.
    let (b, _) = budgets(&[(Budget::Rpm, 1200.0)]);
    b.adopt(Budget::Rpm, server(0.0, 1200.0, 60.0, Refill::Continuous));
    let next = b.reserve(tokens(0.0), None).unwrap();
    assert_eq!(next.waited, Nanos(SECOND / 20));
}

#[test]
fn adopting_realistic_headers_keeps_granting_at_the_rate() {
    // The server is our twin; every grant is answered with its headers.
    let (b, clock) = budgets(&[(Budget::Rpm, 1200.0)]);
    let (twin, _) = budgets(&[(Budget::Rpm, 1200.0)]);
    let start = clock.now();
    for _ in 0..1400 {
        let g = b.reserve(tokens(0.0), None).unwrap();
        clock.advance_to(g.at);
        twin.reserve(tokens(0.0), None).unwrap();
        let left = twin.available(Budget::Rpm).unwrap().floor().max(0.0);
        let reset = (1200.0 - left) / 20.0;
        b.adopt(Budget::Rpm, server(left, 1200.0, reset, Refill::Continuous));
    }
    // 1200 at once, then 200 at 20/s: 10 s (one interval of rounding).
    let took = (clock.now() - start).as_secs_f64();
    assert!((9.9..=10.1).contains(&took), "took {took}");
}

#[test]
fn a_slower_server_sets_the_interval_and_a_window_waits_for_its_reset() {
    let (b, _) = budgets(&[(Budget::Rpm, 1200.0)]);
    // The server allows 60/min: its next unit is a second away.
    b.adopt(Budget::Rpm, server(0.0, 60.0, 60.0, Refill::Continuous));
    assert_eq!(b.reserve(tokens(0.0), None).unwrap().waited, Nanos(SECOND));
    let (b, _) = budgets(&[(Budget::Tpm, 10_000.0)]);
    b.adopt(Budget::Tpm, server(0.0, 10_000.0, 30.0, Refill::AtReset));
    let due = b.reserve(tokens(100.0), None).unwrap().waited;
    assert_eq!(due, Nanos(30 * SECOND + 600_000_000 - 6_000_000));
    // Never longer than one full bucket.
    let (b, _) = budgets(&[(Budget::Rps, 1.0)]);
    b.adopt(Budget::Rps, server(0.0, 1.0, 3600.0, Refill::AtReset));
    assert_eq!(b.reserve(tokens(0.0), None).unwrap().waited, Nanos(SECOND));
}

#[test]
fn bad_configuration_names_the_argument() {
    let clock = Clock::Monotonic;
    let err = Budgets::new(limits(&[(Budget::Rpm, f64::NAN)]), None, clock.clone());
    assert!(err.unwrap_err().contains("rpm"));
    let err = Budgets::new(limits(&[(Budget::Tpm, -5.0)]), None, clock.clone());
    assert!(err.unwrap_err().contains("tpm"));
    let err = Budgets::new(limits(&[(Budget::Rpm, 5.0)]), Some(0.0), clock);
    assert!(err.unwrap_err().contains("burst"));
}
