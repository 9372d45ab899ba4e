use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
#[state_event(entity = "customer", version = 2)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    pub name: String,
    #[state_event(added(since = 2, default = no_email, with = email_from_v1))]
    pub email: Option<String>,
}

fn no_email() -> Option<String> {
    None
}

fn email_from_v1(_: &CustomerV1) -> Option<String> {
    None
}

fn main() {}
