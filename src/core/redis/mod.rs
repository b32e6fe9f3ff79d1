//! Limits shared by many processes through Redis (SPEC section 9).
//!
//! `script` is the GCRA rule of `core::gcra` as one Lua script, `store` the
//! connection (timeouts, reconnects, outage tracking), and `shared` a set of
//! budgets charged together with an in-process stand-in for outages. No
//! Python here: the bindings in `crate::py::redis` call these.

pub mod script;
pub mod shared;
pub mod store;
pub mod window;

pub use shared::{Budget, Decision, OnError, SharedGcra, Source};
pub use store::{Event, Store, Target, Unavailable};
pub use window::{SharedWindow, WindowDecision};
