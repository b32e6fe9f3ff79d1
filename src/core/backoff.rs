//! Exponential backoff with jitter: how long to wait before retry `attempt`.
//!
//! The ceiling for attempt `n` (0, 1, 2, …) is
//! `d(n) = min(max_delay, base * multiplier^n)`, computed in floating point so
//! that a huge `n` saturates at `max_delay` instead of overflowing. Jitter
//! spreads clients that failed together so they do not retry together:
//!
//! - `none`: `d(n)`.
//! - `full`: uniform in `[0, d(n)]`.
//! - `equal`: uniform in `[d(n)/2, d(n)]`.
//! - `decorrelated`: `base` for attempt 0, then uniform in
//!   `[base, min(max_delay, 3 * base * multiplier^(n-1))]`. This is the
//!   "decorrelated jitter" of the AWS architecture blog made stateless: the
//!   blog's upper bound is three times the previous sleep; here it is three
//!   times the previous attempt's ceiling, so a delay depends only on `n`.
//!
//! Every delay is in `[0, max_delay]`.

use rand::Rng;
use std::fmt;

/// How a delay is spread below its ceiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    None,
    Full,
    Equal,
    Decorrelated,
}

impl Jitter {
    pub const NAMES: [&'static str; 4] = ["none", "full", "equal", "decorrelated"];

    pub fn from_name(name: &str) -> Result<Jitter, String> {
        match name {
            "none" => Ok(Jitter::None),
            "full" => Ok(Jitter::Full),
            "equal" => Ok(Jitter::Equal),
            "decorrelated" => Ok(Jitter::Decorrelated),
            other => Err(format!(
                "jitter must be one of \"none\", \"full\", \"equal\", \"decorrelated\", got {other:?}"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Jitter::None => "none",
            Jitter::Full => "full",
            Jitter::Equal => "equal",
            Jitter::Decorrelated => "decorrelated",
        }
    }
}

impl fmt::Display for Jitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backoff schedule; immutable, so one value serves every thread.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    base: f64,
    max_delay: f64,
    multiplier: f64,
    jitter: Jitter,
}

impl Backoff {
    /// Validates the settings, naming the argument in the error.
    pub fn new(
        base: f64,
        max_delay: f64,
        multiplier: f64,
        jitter: Jitter,
    ) -> Result<Backoff, String> {
        if !(base.is_finite() && base > 0.0) {
            return Err(format!("base must be a finite number > 0, got {base}"));
        }
        if !(max_delay.is_finite() && max_delay >= base) {
            return Err(format!(
                "max_delay must be a finite number >= base ({base}), got {max_delay}"
            ));
        }
        if !(multiplier.is_finite() && multiplier >= 1.0) {
            return Err(format!(
                "multiplier must be a finite number >= 1, got {multiplier}"
            ));
        }
        Ok(Backoff {
            base,
            max_delay,
            multiplier,
            jitter,
        })
    }

    pub fn base(&self) -> f64 {
        self.base
    }

    pub fn max_delay(&self) -> f64 {
        self.max_delay
    }

    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// `min(max_delay, base * multiplier^attempt)`, saturating for huge
    /// attempts (the power becomes infinity, and the minimum `max_delay`).
    pub fn ceiling(&self, attempt: u64) -> f64 {
        let grown = self.base * self.multiplier.powf(attempt as f64);
        if grown.is_nan() {
            self.max_delay
        } else {
            grown.min(self.max_delay)
        }
    }

    /// The delay before retry `attempt`, with this schedule's jitter.
    pub fn delay<R: Rng + ?Sized>(&self, attempt: u64, rng: &mut R) -> f64 {
        let ceiling = self.ceiling(attempt);
        let uniform = |rng: &mut R, low: f64, high: f64| -> f64 {
            let unit: f64 = rng.random();
            (low + (high - low) * unit).clamp(low, high)
        };
        let delay = match self.jitter {
            Jitter::None => ceiling,
            Jitter::Full => uniform(rng, 0.0, ceiling),
            Jitter::Equal => uniform(rng, ceiling / 2.0, ceiling),
            Jitter::Decorrelated if attempt == 0 => self.base,
            Jitter::Decorrelated => {
                let high = (3.0 * self.ceiling(attempt - 1)).min(self.max_delay);
                uniform(rng, self.base, high.max(self.base))
            }
        };
        delay.clamp(0.0, self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn schedule(jitter: Jitter) -> Backoff {
        Backoff::new(0.5, 30.0, 2.0, jitter).unwrap()
    }

    #[test]
    fn no_jitter_grows_then_caps() {
        let b = schedule(Jitter::None);
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(b.delay(0, &mut rng), 0.5);
        assert_eq!(b.delay(1, &mut rng), 1.0);
        assert_eq!(b.delay(3, &mut rng), 4.0);
        assert_eq!(b.delay(10, &mut rng), 30.0);
        assert_eq!(b.delay(u64::MAX, &mut rng), 30.0);
    }

    #[test]
    fn every_jitter_stays_in_its_range() {
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in [0, 1, 2, 5, 9, 100, 5000, u64::MAX] {
            for _ in 0..200 {
                let d = schedule(Jitter::None).ceiling(attempt);
                let full = schedule(Jitter::Full).delay(attempt, &mut rng);
                assert!((0.0..=d).contains(&full));
                let equal = schedule(Jitter::Equal).delay(attempt, &mut rng);
                assert!((d / 2.0..=d).contains(&equal));
                let decorrelated = schedule(Jitter::Decorrelated).delay(attempt, &mut rng);
                assert!((0.5..=30.0).contains(&decorrelated));
            }
        }
    }

    #[test]
    fn multiplier_one_is_constant() {
        let b = Backoff::new(2.0, 2.0, 1.0, Jitter::None).unwrap();
        assert_eq!(b.ceiling(u64::MAX), 2.0);
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(Backoff::new(0.0, 1.0, 2.0, Jitter::Full).is_err());
        assert!(Backoff::new(f64::NAN, 1.0, 2.0, Jitter::Full).is_err());
        assert!(Backoff::new(2.0, 1.0, 2.0, Jitter::Full).is_err());
        assert!(Backoff::new(1.0, f64::INFINITY, 2.0, Jitter::Full).is_err());
        assert!(Backoff::new(1.0, 2.0, 0.5, Jitter::Full).is_err());
        assert!(Jitter::from_name("random").is_err());
    }
}
