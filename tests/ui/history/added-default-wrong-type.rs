use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 2)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    #[state_event(added(since = 2, default = no_email))]
    pub email: Option<String>,
}

fn no_email() -> String {
    String::new()
}

fn main() {}
