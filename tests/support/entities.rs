//! Sample entities with a declared history, shared by the integration tests,
//! and helpers to read the stored fixtures.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::fmt;
use std::path::PathBuf;

use ecst::StateEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A customer, at version 3, with every kind of field-level history:
///
/// | field | history |
/// |---|---|
/// | `name` | called `full_name` before 2 |
/// | `email` | added at 2, `Default` for older data |
/// | `tier` | added at 2, `default = default_tier` |
/// | `preferred_contact` | added at 3, `with = preferred_contact` (computed from v2) |
/// | `credit_limit_cents` | a decimal dollar string before 3, `with = parse_dollars` (fallible) |
/// | `fax` | removed at 3 |
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "customer", version = 3)]
#[state_event(removed(since = 3, field = "fax", ty = Option<String>))]
#[state_event(derive(Serialize, Clone, Debug, PartialEq))]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    #[state_event(renamed(since = 2, from = "full_name"))]
    pub name: String,
    #[state_event(added(since = 2))]
    pub email: Option<String>,
    #[state_event(added(since = 2, default = default_tier))]
    pub tier: String,
    #[state_event(added(since = 3, with = preferred_contact))]
    pub preferred_contact: String,
    #[state_event(retyped(since = 3, from = String, with = parse_dollars))]
    pub credit_limit_cents: u64,
}

/// The tier of customers written before tiers existed.
pub fn default_tier() -> String {
    "standard".to_owned()
}

/// How to reach a customer, derived from what version 2 knew: the email if
/// there is one, else the fax (which version 3 no longer stores).
pub fn preferred_contact(previous: &CustomerV2) -> String {
    match (&previous.email, &previous.fax) {
        (Some(email), _) => format!("email:{email}"),
        (None, Some(fax)) => format!("fax:{fax}"),
        (None, None) => "none".to_owned(),
    }
}

/// An amount that is not a decimal number of dollars with at most two
/// decimals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadAmount(pub String);

impl fmt::Display for BadAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not an amount of dollars", self.0)
    }
}

impl std::error::Error for BadAmount {}

/// `"12"`, `"12.5"`, `"12.50"` dollars into cents.
pub fn parse_dollars(text: String) -> Result<u64, BadAmount> {
    let bad = || BadAmount(text.clone());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (text.contains('.') && !digits(fraction)) || fraction.len() > 2 {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let cents: u64 = match fraction.len() {
        0 => 0,
        1 => fraction.parse::<u64>().map_err(|_| bad())? * 10,
        _ => fraction.parse().map_err(|_| bad())?,
    };
    whole
        .checked_mul(100)
        .and_then(|c| c.checked_add(cents))
        .ok_or_else(bad)
}

/// An order, at version 2, whose only hop is hand-written: version 1 kept
/// the amount as one string (`"12.50 EUR"`), version 2 splits it.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "order", version = 2)]
#[state_event(removed(since = 2, field = "amount", ty = String))]
#[state_event(hop(since = 2, with = split_amount))]
#[state_event(derive(Serialize, Clone, Debug, PartialEq, Eq))]
pub struct Order {
    #[state_event(key)]
    pub id: u64,
    pub customer_id: String,
    #[state_event(added(since = 2))]
    pub amount_cents: u64,
    #[state_event(added(since = 2))]
    pub currency: String,
}

/// The hand-written hop `OrderV1 -> Order`.
pub fn split_amount(previous: OrderV1) -> Result<Order, BadAmount> {
    let (number, currency) = previous
        .amount
        .split_once(' ')
        .ok_or_else(|| BadAmount(previous.amount.clone()))?;
    Ok(Order {
        id: previous.id,
        customer_id: previous.customer_id,
        amount_cents: parse_dollars(number.to_owned())?,
        currency: currency.to_owned(),
    })
}

/// A profile, at version 3, whose `#[serde(..)]` attributes must mean the
/// same in every generated version.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[state_event(entity = "profile", version = 3)]
#[state_event(removed(since = 3, field = "fax_number", ty = Option<String>))]
#[state_event(derive(Serialize, Clone, Debug, PartialEq))]
pub struct Profile {
    /// `userId` in every version (`rename_all`).
    #[state_event(key)]
    pub user_id: String,
    /// `handle` in every version (field `rename` over `rename_all`).
    #[serde(rename = "handle")]
    pub screen_name: String,
    /// May be missing in every version.
    #[serde(default)]
    pub nick_name: String,
    /// Not written when `None`, in every version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_page: Option<String>,
    /// `fullName` in version 1, `displayName` since 2.
    #[state_event(renamed(since = 2, from = "full_name"))]
    pub display_name: String,
    /// `postcode` in version 1 (the `rename` belongs to the new name), `zip`
    /// since 2.
    #[serde(rename = "zip")]
    #[state_event(renamed(since = 2, from = "postcode"))]
    pub postal_code: String,
    /// New in 2; may be missing and is not written when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[state_event(added(since = 2))]
    pub tags: Vec<String>,
    /// A string before 3; also read as `born` in every version. Not written
    /// when zero and zero when missing, which only means something for the
    /// `u16` of version 3.
    #[serde(alias = "born", default, skip_serializing_if = "is_zero")]
    #[state_event(retyped(since = 3, from = String, with = parse_year))]
    pub birth_year: u16,
}

/// `skip_serializing_if` for the `u16` birth year.
pub fn is_zero(year: &u16) -> bool {
    *year == 0
}

/// The birth year as text into a number; an empty text is "unknown" (0).
pub fn parse_year(text: String) -> Result<u16, std::num::ParseIntError> {
    if text.is_empty() {
        Ok(0)
    } else {
        text.parse()
    }
}

/// The path of a stored fixture, relative to `tests/fixtures`.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The bytes of a stored fixture, relative to `tests/fixtures`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A stored fixture parsed as JSON.
pub fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(name))
        .unwrap_or_else(|e| panic!("fixture {name} is not JSON: {e}"))
}

/// The keys of a JSON object, sorted.
pub fn keys(value: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}
