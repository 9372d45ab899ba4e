//! One module per command.

pub mod get;
pub mod parked;
pub mod replica;
pub mod stream;
pub mod tail;
