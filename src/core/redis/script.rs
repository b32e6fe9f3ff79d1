//! The GCRA rule of `core::gcra`, run atomically inside Redis.
//!
//! One Lua script serves every Redis-backed limiter: it reads the server's
//! clock (`TIME`), checks all the budgets it is given (the rpm and tpm of a
//! `Limiter`, or the one budget of a `RedisTokenBucket`), and charges all of
//! them or none, in one round trip. Each budget's state is its theoretical
//! arrival time `tat`, an integer of microseconds on the server's clock:
//! Lua numbers are doubles, exact up to 2^53, and microseconds since 1970 stay
//! far below that where nanoseconds would not.
//!
//! Costs are computed in Rust from [`Gcra::cost`] and rounded up to whole
//! microseconds; `tau` is the cost of a full bucket rounded the same way, so
//! a request of the full capacity always fits and rounding only ever makes
//! the shared bucket stricter than the in-process one.

use crate::core::gcra::Gcra;
use crate::core::Nanos;

/// The script. `KEYS`: one state key per budget, then optionally a pause
/// key and a last-grant key (a `Limiter`'s), then optionally the key that
/// numbers waiting reservations (`acquire` replies a third value, the
/// reservation's ticket; `cancel` mode takes it in place of the max wait).
/// `ARGV`: mode (`acquire`, `peek`, `refund`, `adopt` or `pause`), the
/// longest acceptable wait in µs (-1: any; in `pause` mode the pause), a
/// fixed `now` in µs for tests (empty: the server's `TIME`), then `cost`
/// and `tau` in µs for each budget (in `adopt` mode `cost` is the floor of
/// the budget's `tat` as an offset from now, -1: leave it alone).
///
/// The pause key holds the server time (µs) before which nothing is
/// granted: `acquire` and `peek` treat it as the earliest grant time.
/// `acquire` charges every budget at the common grant time (as
/// `core::limiter::Budgets` does); `refund` leaves alone a budget that has
/// reservations waiting (more than a full bucket ahead of now).
///
/// Replies `{wait, ahead, ...}`: `wait` is how long until the units are
/// due (0: now; -1 in `acquire` mode: refused, nothing taken, and `ahead`
/// is then the wait that would have been needed), `ahead` is how far the
/// first budget's `tat` runs ahead of now afterwards (0: full). `peek` adds
/// the `ahead` of every budget, then the pause left.
pub const GCRA_SCRIPT: &str = include_str!("gcra.lua");

/// What the script is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Take the units now or reserve them, unless the wait is too long.
    Acquire,
    /// Only report the wait; change nothing.
    Peek,
    /// Give the units back, never above capacity.
    Refund,
    /// Give a reservation back (its ticket in place of the max wait).
    Cancel,
    /// Raise each budget's state to at least a floor (never lower it).
    Adopt,
    /// Grant nothing until the given time from now (never shortens a pause).
    Pause,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Acquire => "acquire",
            Mode::Peek => "peek",
            Mode::Refund => "refund",
            Mode::Cancel => "cancel",
            Mode::Adopt => "adopt",
            Mode::Pause => "pause",
        }
    }
}

/// One budget's share of a call: what its units cost and its tolerance, in µs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Charge {
    pub cost_us: u64,
    pub tau_us: u64,
}

/// Nanoseconds to microseconds, rounded up (never more generous).
#[inline]
fn micros_up(nanos: u64) -> u64 {
    nanos.div_ceil(1000)
}

impl Charge {
    /// The charge for `n` units of a budget following `rule`.
    pub fn of(rule: &Gcra, n: f64) -> Charge {
        Charge {
            cost_us: micros_up(rule.cost(n)),
            tau_us: micros_up(rule.tau().0),
        }
    }
}

/// The script's reply, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Granted (`wait` zero) or reserved for `wait` from now; `ahead` is how
    /// far the first budget's state runs ahead of now after the charge;
    /// `ticket` numbers a reservation that waits (0: none), for its cancel.
    Granted {
        wait: Nanos,
        ahead: Nanos,
        ticket: u64,
    },
    /// Refused without taking anything: the wait would have been `wait`.
    Refused { wait: Nanos },
}

impl Reply {
    /// Decodes `{wait, ahead}`; `None` for a reply the script cannot give.
    pub fn decode(raw: &[i64]) -> Option<Reply> {
        let to_nanos = |us: i64| Nanos((us.max(0) as u64).saturating_mul(1000));
        match *raw {
            [-1, wait, ..] => Some(Reply::Refused {
                wait: to_nanos(wait),
            }),
            [wait, ahead, ref rest @ ..] if wait >= 0 => Some(Reply::Granted {
                wait: to_nanos(wait),
                ahead: to_nanos(ahead),
                ticket: rest.first().map_or(0, |&t| t.max(0) as u64),
            }),
            _ => None,
        }
    }

    /// The wait this reply reports, granted or not.
    pub fn wait(&self) -> Nanos {
        match *self {
            Reply::Granted { wait, .. } | Reply::Refused { wait } => wait,
        }
    }
}

/// The `ARGV` of one call (the keys go separately).
pub fn arguments(
    mode: Mode,
    max_wait: Option<Nanos>,
    now_us: Option<u64>,
    charges: &[Charge],
) -> Vec<String> {
    let mut args = Vec::with_capacity(3 + 2 * charges.len());
    args.push(mode.as_str().to_owned());
    // A max wait is compared in whole µs, rounded down, so that a reply at the
    // limit is refused rather than granted late.
    args.push(match max_wait {
        None => "-1".to_owned(),
        Some(wait) => (wait.0 / 1000).to_string(),
    });
    args.push(now_us.map(|us| us.to_string()).unwrap_or_default());
    for charge in charges {
        args.push(charge.cost_us.to_string());
        args.push(charge.tau_us.to_string());
    }
    args
}

/// The name of a limiter's pause key (beside its budgets, same hash tag).
pub const PAUSE: &str = "pause";

/// The name of a limiter's last-grant key (beside its budgets).
pub const LAST: &str = "last";

/// The name of the key numbering a limiter's waiting reservations.
pub const SEQ: &str = "seq";

/// The Redis key of one budget: `prefix:{kind:name}:budget`. Every key
/// starts with the prefix (so a Redis ACL key pattern `prefix:*` covers
/// them); `kind` (`bucket`, `limiter`, `keyed`, `asgi`, `window`) keeps
/// kinds from colliding; the hash tag (in braces) is the same for every
/// budget of one limiter, so a Redis Cluster keeps them on one slot and one
/// script can touch them all.
pub fn key(prefix: &str, kind: &str, name: &str, budget: &str) -> String {
    format!("{prefix}:{{{kind}:{name}}}:{budget}")
}

/// A client identity (a keyed limiter's key, an ASGI client: often an API
/// key) as it is stored in Redis: never in clear. The first 128 bits of its
/// SHA-256, in hex: a collision between two identities needs ~2^64 of them.
pub fn hashed(identity: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(identity.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_round_up_to_whole_microseconds() {
        let rule = Gcra::new(3.0, 10.0);
        let charge = Charge::of(&rule, 1.0);
        assert_eq!(charge.cost_us, 333_334);
        assert_eq!(charge.tau_us, 3_333_334);
        // A full bucket's worth fits in tau exactly, as in core::gcra.
        assert_eq!(Charge::of(&rule, 10.0).cost_us, charge.tau_us);
    }

    #[test]
    fn replies_decode_and_nonsense_is_refused() {
        assert_eq!(
            Reply::decode(&[0, 5]),
            Some(Reply::Granted {
                wait: Nanos::ZERO,
                ahead: Nanos(5000),
                ticket: 0,
            })
        );
        assert_eq!(
            Reply::decode(&[-1, 7]),
            Some(Reply::Refused { wait: Nanos(7000) })
        );
        assert_eq!(Reply::decode(&[1]), None);
        // `peek` appends every budget's state and the pause left.
        assert_eq!(
            Reply::decode(&[0, 5, 5, 9, 0]).map(|r| r.wait()),
            Some(Nanos::ZERO)
        );
        assert_eq!(Reply::decode(&[-3, 1]), None);
    }

    #[test]
    fn arguments_carry_mode_wait_and_charges() {
        let charge = Charge {
            cost_us: 10,
            tau_us: 20,
        };
        let args = arguments(Mode::Acquire, Some(Nanos(2_500)), None, &[charge]);
        assert_eq!(args, ["acquire", "2", "", "10", "20"]);
        let args = arguments(Mode::Peek, None, Some(99), &[]);
        assert_eq!(args, ["peek", "-1", "99"]);
    }

    #[test]
    fn keys_start_with_the_prefix_and_name_their_kind() {
        assert_eq!(
            key("rk", "limiter", "team-a", "rpm"),
            "rk:{limiter:team-a}:rpm"
        );
        assert_ne!(key("rk", "bucket", "x", "b"), key("rk", "keyed", "x", "b"));
        let id = hashed("sk-secret");
        assert_eq!(id.len(), 32);
        assert!(!id.contains("secret"));
        assert_ne!(id, hashed("sk-secreT"));
    }
}

#[cfg(test)]
#[path = "script_props.rs"]
mod props;
