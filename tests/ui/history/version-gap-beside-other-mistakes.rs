use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 4, topic = "crm")]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    #[state_event(added(since = 2))]
    pub email: Option<String>,
    #[state_event(renamed(since = 4, form = "full_name"))]
    pub name: String,
}

fn main() {}
