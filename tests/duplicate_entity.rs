//! Two types that declare one entity: in one module the derive refuses it
//! at compile time (tests/ui/attribute/entity-declared-twice.rs); in
//! separate modules or crates, where generations of one entity may be kept
//! side by side on purpose, the catalog refuses it when the program's event
//! types are collected, naming both Rust types.

use ecst::{Catalog, StateEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod billing {
    use super::*;

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
    #[state_event(entity = "ledger", version = 1)]
    pub struct Ledger {
        #[state_event(key)]
        pub id: String,
    }
}

mod shipping {
    use super::*;

    /// Copied from billing, the entity name left as it was.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema)]
    #[state_event(entity = "ledger", version = 1)]
    pub struct Ledger {
        #[state_event(key)]
        pub id: String,
    }
}

#[test]
fn registration_refuses_a_second_type_for_one_entity_naming_both() {
    let err = Catalog::registered().expect_err("two types declare `ledger`");
    assert_eq!(err.entity, "ledger");
    let both = [
        std::any::type_name::<billing::Ledger>(),
        std::any::type_name::<shipping::Ledger>(),
    ];
    assert!(
        both.contains(&err.first) && both.contains(&err.second),
        "{err}"
    );
    assert_ne!(err.first, err.second);
    let text = err.to_string();
    assert!(
        text.starts_with("entity `ledger` is declared by both `")
            && text.contains("billing::Ledger")
            && text.contains("shipping::Ledger")
            && text.ends_with("entity names must be unique"),
        "{text}"
    );
}
