use ecst::Versioned;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Versioned, Serialize, Deserialize, JsonSchema)]
#[versioned(entity = "address", version = 2, compatibility = "FULL")]
pub struct Address {
    #[versioned(key)]
    pub street: String,
    #[versioned(added(since = 2))]
    pub country: Option<String>,
}

fn main() {}
