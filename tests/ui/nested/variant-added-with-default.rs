use ecst::Versioned;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Versioned, Serialize, Deserialize, JsonSchema)]
#[versioned(version = 2)]
pub enum Status {
    Open,
    #[versioned(added(since = 2, default = refunded))]
    Refunded,
}

fn refunded() -> Status {
    Status::Refunded
}

fn main() {}
