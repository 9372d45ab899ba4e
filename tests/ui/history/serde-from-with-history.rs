use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 2)]
#[serde(from = "RawCustomer")]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    #[state_event(added(since = 2))]
    pub email: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct RawCustomer {
    pub id: String,
    pub email: Option<String>,
}

impl From<RawCustomer> for Customer {
    fn from(raw: RawCustomer) -> Self {
        Customer { id: raw.id, email: raw.email }
    }
}

fn main() {}
