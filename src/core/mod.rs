//! The pure core: every algorithm of ratekeeper, with no Python in it.
//!
//! The bindings in `crate::py` validate arguments, call into here and map the
//! results; `cargo test --no-default-features` tests this module alone.

pub mod bucket;
pub mod budget;
pub mod clock;
pub mod gcra;
pub mod limit;
pub mod limiter;
pub mod queue;
pub mod semaphore;
pub mod timeline;
pub mod window;

pub use clock::{Clock, ManualClock, Nanos};
pub use limit::{Check, Limit, LimitError, Reservation};
pub mod backoff;
pub mod breaker;
pub mod keyed;
pub mod redis;
pub mod tracker;
pub mod waits;
