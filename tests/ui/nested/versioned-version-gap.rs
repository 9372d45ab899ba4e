use ecst::Versioned;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Versioned, Serialize, Deserialize, JsonSchema)]
#[versioned(version = 3)]
pub struct Address {
    pub street: String,
    #[versioned(added(since = 3))]
    pub country: Option<String>,
}

fn main() {}
