//! The ~11-field entity the benchmarks share: a 339-byte JSON payload, a
//! 656-byte CloudEvents envelope.

use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Pro,
    Enterprise,
}

#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "customer", version = 1)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub tier: Tier,
    pub active: bool,
    pub credit_limit_cents: u64,
    pub created_at_ms: u64,
    pub tags: Vec<String>,
    pub street: String,
    pub city: String,
}

/// Customer `i` at `revision`, deterministic.
pub fn customer(i: usize, revision: u64) -> Customer {
    let tier = match i % 3 {
        0 => Tier::Free,
        1 => Tier::Pro,
        _ => Tier::Enterprise,
    };
    Customer {
        id: format!("cus-{i:08}"),
        name: format!("Customer Number {i}, revision {revision}"),
        email: Some(format!("customer.{i}@example.com")),
        phone: i
            .is_multiple_of(2)
            .then(|| format!("+44 20 7946 {:04}", i % 10_000)),
        tier,
        active: !i.is_multiple_of(7),
        credit_limit_cents: (i as u64 % 1000) * 10_000 + revision,
        created_at_ms: 1_700_000_000_000 + i as u64 * 1_000,
        tags: vec![
            "retail".into(),
            "newsletter".into(),
            format!("region-{}", i % 12),
        ],
        street: format!(
            "{} Baker Street, Marylebone, Flat {}",
            i % 500 + 1,
            i % 40 + 1
        ),
        city: "London NW1 6XE, United Kingdom".into(),
    }
}
