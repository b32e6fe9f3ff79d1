//! One rule, checked in two languages: random sequences of acquire,
//! try_acquire, pause, adopt and the cancel of the latest reservation run
//! through the core (`Budgets`, on a manual
//! clock) and through the Lua script (on a real redis-server started here,
//! with the same fixed `now`), and every decision and grant time must agree.
//!
//! Refunds, other cancels and reconciles are not compared, nor a pause or an
//! adoption while reservations wait: in-process, waiters move up when one
//! ahead gives back and are placed again after a pause or the server's view;
//! the script has no queue of waiters (each already sleeps until its time)
//! and keeps the units of a budget that has reservations waiting instead.

use super::*;
use crate::core::clock::{Clock, ManualClock, Nanos};
use crate::core::limiter::{Amounts, Budget, Budgets, Grant, ServerBudget, BUDGETS};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A redis-server on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Option<Server> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Debug)]
enum Op {
    Advance(u64),
    Acquire(u8, u8, Option<u64>),
    Pause(u64),
    Adopt(usize, u8),
    CancelLatest,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..4_000).prop_map(Op::Advance),
        5 => (0u8..=6, 0u8..=6, proptest::option::of(0u64..20_000))
            .prop_map(|(a, b, w)| Op::Acquire(a, b, w)),
        1 => (1u64..3_000).prop_map(Op::Pause),
        1 => (any::<usize>(), 0u8..=6).prop_map(|(b, n)| Op::Adopt(b, n)),
        1 => Just(Op::CancelLatest),
    ]
}

/// Budgets whose costs are whole microseconds (the script's unit).
fn configs() -> impl Strategy<Value = (Vec<(Budget, f64)>, Option<f64>)> {
    prop_oneof![
        Just((vec![(Budget::Rps, 2.0), (Budget::Tpm, 12.0)], None)),
        Just((vec![(Budget::Rpm, 30.0), (Budget::Tpm, 30.0)], Some(3.0))),
        Just((
            vec![
                (Budget::Rps, 1.0),
                (Budget::Itpm, 12.0),
                (Budget::Otpm, 6.0)
            ],
            None
        )),
    ]
}

struct Case<'a> {
    con: &'a mut redis::Connection,
    script: &'a redis::Script,
    keys: Vec<String>,
    budgets: Budgets,
    used: Vec<Budget>,
    clock: Arc<ManualClock>,
    /// The latest grant time so far: waiters remain while it is ahead.
    last_grant: Nanos,
    /// The latest reservation, while it waits and nobody reserved after it:
    /// its grant, its ticket on Redis, and its per-budget arguments.
    latest: Option<Latest>,
}

/// A reservation waiting on both sides: its grant, its ticket on Redis, and
/// its per-budget (cost, tau) arguments.
type Latest = (Grant, i64, Vec<(i64, u64)>);

impl Case<'_> {
    fn now_us(&self) -> u64 {
        self.clock.now().0 / 1000
    }

    fn eval(&mut self, mode: Mode, second: String, per_budget: &[(i64, u64)]) -> Vec<i64> {
        let mut call = self.script.prepare_invoke();
        for key in &self.keys {
            call.key(key);
        }
        call.arg(mode.as_str())
            .arg(second)
            .arg(self.now_us().to_string());
        for (first, tau) in per_budget {
            call.arg(first.to_string()).arg(tau.to_string());
        }
        call.invoke(self.con).expect("the script runs")
    }

    fn tau_us(&self, budget: Budget) -> u64 {
        self.budgets.rule(budget).unwrap().tau().0 / 1000
    }

    fn step(&mut self, op: Op, split: bool) -> Result<(), TestCaseError> {
        match op {
            Op::Advance(ms) => {
                self.clock.advance(Nanos(ms * 1_000_000));
            }
            Op::Acquire(a, b, max_wait) => {
                let amounts = if split {
                    Amounts::new(0.0, Some(f64::from(a)), Some(f64::from(b)))
                } else {
                    Amounts::new(f64::from(a), None, None)
                }
                .unwrap();
                let max_wait = max_wait.map(|ms| Nanos(ms * 1_000_000));
                let now = self.clock.now();
                let core = self.budgets.reserve(amounts, max_wait);
                let per_budget: Vec<(i64, u64)> = self
                    .used
                    .iter()
                    .map(|&b| {
                        let rule = self.budgets.rule(b).unwrap();
                        let n = amounts_of(&amounts, b);
                        let cost = if n > 0.0 { rule.cost(n) / 1000 } else { 0 };
                        (cost as i64, self.tau_us(b))
                    })
                    .collect();
                let wait = max_wait.map_or("-1".to_owned(), |w| (w.0 / 1000).to_string());
                let reply = self.eval(Mode::Acquire, wait, &per_budget);
                match core {
                    Ok(grant) => {
                        prop_assert!(reply[0] >= 0, "the script refused: {reply:?}");
                        prop_assert_eq!((grant.at - now).0, reply[0] as u64 * 1000);
                        self.last_grant = self.last_grant.max(grant.at);
                        self.latest = (grant.ticket != 0).then(|| (grant, reply[2], per_budget));
                    }
                    Err(wait) => {
                        prop_assert_eq!(reply[0], -1, "the script granted");
                        prop_assert_eq!(wait.0, reply[1] as u64 * 1000);
                    }
                }
            }
            Op::Pause(ms) if self.last_grant <= self.clock.now() => {
                // Only with no reservation waiting: in-process, a pause holds
                // the waiters too; the script cannot move them.
                self.budgets.pause(Nanos(ms * 1_000_000));
                let per_budget: Vec<_> = self
                    .used
                    .iter()
                    .map(|&b| {
                        let charge = Charge::of(self.budgets.rule(b).unwrap(), 1.0);
                        let cost = if b.counts_requests() {
                            charge.cost_us
                        } else {
                            0
                        };
                        (i64::try_from(cost).unwrap(), self.tau_us(b))
                    })
                    .collect();
                self.eval(Mode::Pause, (ms * 1000).to_string(), &per_budget);
            }
            Op::Adopt(i, remaining) if self.last_grant <= self.clock.now() => {
                // Only with no reservation waiting: in-process, waiters are
                // placed after the server's view; the script cannot tell them.
                let budget = self.used[i % self.used.len()];
                let server = ServerBudget::remaining(f64::from(remaining));
                self.budgets.adopt(budget, server);
                let floor = server.tat_floor(self.budgets.rule(budget).unwrap());
                let per_budget: Vec<_> = self
                    .used
                    .iter()
                    .map(|&b| match floor {
                        Some(f) if b == budget => ((f.0 / 1000) as i64, self.tau_us(b)),
                        _ => (-1, self.tau_us(b)),
                    })
                    .collect();
                self.eval(Mode::Adopt, "-1".to_owned(), &per_budget);
            }
            Op::CancelLatest => {
                // The latest reservation, still waiting, is undone exactly on
                // both sides.
                let now = self.clock.now();
                if let Some((grant, ticket, per_budget)) = self.latest.take() {
                    if grant.at > now {
                        self.budgets.cancel(&grant);
                        self.eval(Mode::Cancel, ticket.to_string(), &per_budget);
                    }
                }
            }
            Op::Adopt(..) | Op::Pause(_) => {}
        }
        Ok(())
    }
}

fn amounts_of(amounts: &Amounts, budget: Budget) -> f64 {
    match budget {
        Budget::Tpm => amounts.total,
        Budget::Itpm => amounts.input,
        Budget::Otpm => amounts.output,
        _ => 1.0,
    }
}

#[test]
fn the_script_and_the_core_grant_at_the_same_times() {
    let Some(server) = Server::start() else {
        eprintln!("redis-server is not installed: skipped");
        return;
    };
    let url = format!("redis://127.0.0.1:{}/0", server.port);
    let con = std::cell::RefCell::new(redis::Client::open(url).unwrap().get_connection().unwrap());
    let script = redis::Script::new(GCRA_SCRIPT);
    let mut runner = TestRunner::new(Config::with_cases(150));
    let case_no = std::cell::Cell::new(0u64);
    let strategy = (configs(), proptest::collection::vec(op(), 1..40));
    runner
        .run(&strategy, |((config, burst), ops)| {
            case_no.set(case_no.get() + 1);
            let clock = Arc::new(ManualClock::new(Nanos(1_000_000_000_000)));
            let mut limits = [None; BUDGETS];
            for (budget, amount) in &config {
                limits[*budget as usize] = Some(*amount);
            }
            let budgets = Budgets::new(limits, burst, Clock::Manual(clock.clone())).unwrap();
            let used: Vec<Budget> = config.iter().map(|(b, _)| *b).collect();
            let name = format!("case{}", case_no.get());
            let mut keys: Vec<String> = used
                .iter()
                .map(|b| key("props", "limiter", &name, b.name()))
                .collect();
            keys.push(key("props", "limiter", &name, PAUSE));
            keys.push(key("props", "limiter", &name, LAST));
            keys.push(key("props", "limiter", &name, SEQ));
            let split = limits[Budget::Tpm as usize].is_none();
            let mut con = con.borrow_mut();
            let mut case = Case {
                con: &mut con,
                script: &script,
                keys,
                budgets,
                used,
                clock,
                last_grant: Nanos::ZERO,
                latest: None,
            };
            for op in ops {
                case.step(op, split)?;
            }
            Ok(())
        })
        .unwrap();
}
