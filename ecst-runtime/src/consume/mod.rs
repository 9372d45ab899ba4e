//! The transport-neutral consume layer: what every broker adapter (the NATS
//! follower today, a Kafka one tomorrow) hands the durable replica, and the
//! rules that do not depend on the broker.
//!
//! - [`Message`]: one message as the broker delivered it, with the
//!   [`Address`] the broker gave it (on NATS, the subject's entity and key);
//! - [`BatchOutcome`]: what a batch did, message by message;
//! - [`Parked`]: a message that could not be applied, kept with a typed
//!   [`ParkReason`]; parked messages never hold back later events of their
//!   key (full-state events carry everything), and are
//!   [superseded](Resolution::Superseded) once the key holds a newer state;
//! - [`RetryPolicy`]: how long to retry a commit that failed.
//!
//! Nothing here does I/O.

mod message;
mod outcome;
mod parked;
pub(crate) mod parking;
mod retry;

pub use message::{Address, InvalidAddress, Message};
pub use outcome::BatchOutcome;
pub(crate) use parked::printable;
pub use parked::{ParkKind, ParkReason, Parked, Resolution};
pub use parking::ParkingLimits;
pub use retry::RetryPolicy;
