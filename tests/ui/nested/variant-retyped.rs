use ecst::Versioned;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Versioned, Serialize, Deserialize, JsonSchema)]
#[versioned(version = 2)]
pub enum Status {
    Open,
    #[versioned(retyped(since = 2, from = u32, with = widen))]
    Lost(u64),
}

fn widen(n: u32) -> Result<u64, core::convert::Infallible> {
    Ok(n.into())
}

fn main() {}
