use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer record", version = 3, topic = "crm")]
#[state_event(removed(since = 2, field = "fax"))]
pub struct Customer {
    pub id: String,
    #[state_event(renamed(since = 4, from = "full_name"))]
    pub name: String,
    #[state_event(added(since = 2), indexed)]
    pub email: Option<String>,
    #[state_event(retyped(since = 3, from = u32))]
    pub credit_limit_cents: u64,
}

fn main() {}
