//! `#[derive(StateEvent)]` compiles without a single warning under strict
//! lints, in a module that shadows the prelude and std names generated code
//! might lean on, for every shape of struct it accepts; and the result works.

#![deny(warnings, unused_qualifications, missing_docs)]

/// The user's code: their own `Result`, `Option`, `Some`, `Ok`, `Err`,
/// `Default`, `String`, and modules called `serde` and `core`, next to
/// structs deriving `StateEvent`.
pub mod user {
    use std::fmt;
    use std::str::FromStr;

    use ::serde::{Deserialize, Serialize};
    use ecst::StateEvent;
    use schemars::JsonSchema;

    /// The user's own result type, with one parameter.
    pub type Result<T> = ::std::result::Result<T, Oops>;

    /// The user's own error.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Oops(pub ::std::string::String);

    impl fmt::Display for Oops {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl ::std::error::Error for Oops {}

    /// Not `core::option::Option`.
    #[derive(Debug)]
    pub struct Option;

    /// Not `Option::Some`.
    #[derive(Debug)]
    pub struct Some;

    /// Not `Result::Ok`.
    #[derive(Debug)]
    pub struct Ok;

    /// Not `Result::Err`.
    #[derive(Debug)]
    pub struct Err;

    /// Not `core::default::Default`.
    pub trait Default {
        /// Not `Default::default`.
        fn default() -> Self;
    }

    /// Not the `serde` crate.
    pub mod serde {
        /// Not `serde::Serialize`.
        pub trait Serialize {}
        /// Not `serde::Deserialize`.
        pub trait Deserialize {}
        /// Not `serde::Deserializer`.
        pub trait Deserializer {}
    }

    /// Not the `core` crate.
    pub mod core {
        /// Not `core::result`.
        pub mod result {}
        /// Not `core::option`.
        pub mod option {}
        /// Not `core::fmt`.
        pub mod fmt {}
    }

    /// Not `std::string::String`: an unrelated alias.
    pub type String = ::std::boxed::Box<str>;

    /// Version 1 only: no history, no generated older structs.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "note", version = 1)]
    pub struct Note {
        /// The key.
        #[state_event(key)]
        pub id: ::std::string::String,
        /// The user's own `String`.
        pub body: String,
    }

    /// Several versions, every kind of change, a hand-written hop.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "ticket", version = 5)]
    #[state_event(removed(since = 3, field = "legacy", ty = ::std::option::Option<u8>))]
    #[state_event(hop(since = 5, with = close_hop))]
    #[state_event(derive(PartialEq))]
    pub struct Ticket {
        /// The key.
        #[state_event(key)]
        pub id: ::std::string::String,
        /// Called `summary` before 2.
        #[state_event(renamed(since = 2, from = "summary"))]
        pub title: ::std::string::String,
        /// New in 2.
        #[state_event(added(since = 2))]
        pub priority: u8,
        /// New in 3, with a default function.
        #[state_event(added(since = 3, default = default_owner))]
        pub owner: ::std::string::String,
        /// New in 3, computed from version 2.
        #[state_event(added(since = 3, with = title_length))]
        pub title_length: usize,
        /// A `u8` before 4.
        #[state_event(retyped(since = 4, from = u8, with = widen))]
        pub estimate: u16,
        /// Unchanged at 5: the hop is hand-written.
        pub closed: bool,
    }

    /// `default = ..` of `Ticket::owner`.
    pub fn default_owner() -> ::std::string::String {
        "nobody".into()
    }

    /// `with = ..` of `Ticket::title_length`.
    pub fn title_length(previous: &TicketV2) -> usize {
        previous.title.len()
    }

    /// `retyped(.., with = ..)` of `Ticket::estimate`, returning the user's
    /// own one-parameter `Result`.
    pub fn widen(estimate: u8) -> Result<u16> {
        if estimate == u8::MAX {
            ::std::result::Result::Err(Oops("estimate overflowed".into()))
        } else {
            ::std::result::Result::Ok(u16::from(estimate))
        }
    }

    /// The hop into version 5: a ticket with an estimate of zero is closed.
    pub fn close_hop(previous: TicketV4) -> Result<Ticket> {
        ::std::result::Result::Ok(Ticket {
            closed: previous.estimate == 0,
            id: previous.id,
            title: previous.title,
            priority: previous.priority,
            owner: previous.owner,
            title_length: previous.title_length,
            estimate: previous.estimate,
        })
    }

    /// A private struct with history: its older versions are private too.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "secret", version = 2)]
    #[state_event(derive(PartialEq))]
    struct Secret {
        #[state_event(key)]
        id: u64,
        #[state_event(renamed(since = 2, from = "text"))]
        payload: ::std::string::String,
    }

    /// Decodes a version-1 `Secret` and reads it back; exercises the private
    /// generated struct from outside the module.
    pub fn secret_round_trip(json: &[u8]) -> ::std::option::Option<(u64, ::std::string::String)> {
        let secret = Secret::from_json_version(1, json).ok()?;
        let old = SecretV1 {
            id: secret.id,
            text: secret.payload.clone(),
        };
        let upcast = ecst::Upcast::upcast(old).ok()?;
        assert_eq!(upcast, secret);
        ::std::option::Option::Some((secret.id, secret.payload))
    }

    /// A public struct with crate-visible fields.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "account", version = 2)]
    pub struct Account {
        #[state_event(key)]
        pub(crate) id: ::std::string::String,
        #[state_event(added(since = 2))]
        pub(crate) balance: i64,
        pub(crate) owner: ::std::string::String,
    }

    impl Account {
        /// An account.
        pub fn new(id: &str, owner: &str, balance: i64) -> Self {
            Account {
                id: id.into(),
                balance,
                owner: owner.into(),
            }
        }
    }

    /// Raw identifiers as field names, added, renamed and removed, written
    /// bare and as strings.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "raw", version = 3)]
    #[state_event(removed(since = 3, field = r#loop, ty = bool))]
    #[state_event(removed(since = 2, field = "r#while", ty = u8))]
    #[state_event(derive(Serialize, Debug, PartialEq))]
    pub struct Raw {
        /// The key, a raw identifier.
        #[state_event(key)]
        pub r#type: ::std::string::String,
        /// A raw identifier added at 2.
        #[state_event(added(since = 2))]
        pub r#match: u32,
        /// Called `r#struct` before 2.
        #[state_event(renamed(since = 2, from = r#struct))]
        pub r#enum: ::std::string::String,
        /// A `u8` before 3.
        #[state_event(retyped(since = 3, from = u8, with = widen))]
        pub r#fn: u16,
        /// Called `r#trait` before 3.
        #[state_event(renamed(since = 3, from = "r#trait"))]
        pub r#impl: bool,
    }

    /// Field names shaped by JSON, not by Rust: leading underscores and,
    /// under the user's own `expect(non_snake_case)`, camelCase.
    #[expect(non_snake_case, reason = "the names are the wire names")]
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "document", version = 3)]
    #[state_event(removed(since = 3, field = "_faxNumber", ty = u32))]
    #[state_event(derive(Serialize, Debug, PartialEq))]
    pub struct Document {
        /// The key.
        #[state_event(key)]
        pub _id: ::std::string::String,
        /// Called `fullName` before 2.
        #[state_event(renamed(since = 2, from = "fullName"))]
        pub displayName: ::std::string::String,
        /// New in 2.
        #[state_event(added(since = 2))]
        pub _links: ::std::vec::Vec<::std::string::String>,
        /// A `u8` before 3.
        #[state_event(retyped(since = 3, from = u8, with = widen))]
        pub _rev: u16,
    }

    /// A numeric key.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "counter", version = 2)]
    #[state_event(derive(PartialEq, Eq))]
    pub struct Counter {
        /// The key.
        #[state_event(key)]
        pub id: u64,
        /// New in 2.
        #[state_event(added(since = 2))]
        pub count: u64,
    }

    /// A newtype key with `Display` and `FromStr`.
    #[derive(
        Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
    )]
    pub struct Sku(pub ::std::string::String);

    impl fmt::Display for Sku {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "sku-{}", self.0)
        }
    }

    impl FromStr for Sku {
        type Err = Oops;
        fn from_str(text: &str) -> Result<Self> {
            match text.strip_prefix("sku-") {
                ::std::option::Option::Some(rest) => ::std::result::Result::Ok(Sku(rest.into())),
                ::std::option::Option::None => {
                    ::std::result::Result::Err(Oops(format!("`{text}` is not a SKU")))
                }
            }
        }
    }

    /// An entity keyed by a newtype.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "product", version = 2)]
    pub struct Product {
        /// The key.
        #[state_event(key)]
        pub sku: Sku,
        /// A `u32` before 2.
        #[state_event(retyped(since = 2, from = u32, with = cents))]
        pub price: u64,
    }

    /// `retyped(.., with = ..)` of `Product::price`.
    pub fn cents(price: u32) -> Result<u64> {
        ::std::result::Result::Ok(u64::from(price))
    }

    /// The user's own items stay usable next to the derives.
    pub fn own_items() -> (Option, Some, Ok, Err, String) {
        (Option, Some, Ok, Err, "mine".into())
    }
}

/// A container `#[serde(default)]` next to the user's own `Default` trait,
/// `Result`, `Ok`, `Err`, `Option` and `String` (not `Some`: schemars' own
/// derive writes a bare `Some(..)` for container defaults).
pub mod defaults {
    use ::serde::{Deserialize, Serialize};
    use ecst::StateEvent;
    use schemars::JsonSchema;

    #[allow(unused_imports)]
    use super::user::{core, serde, Default, Err, Ok, Option, Result, String};

    /// The derive macro and the generated structs use the real `Default`.
    #[derive(
        StateEvent,
        Serialize,
        Deserialize,
        JsonSchema,
        Clone,
        Debug,
        PartialEq,
        ::core::default::Default,
    )]
    #[serde(default, deny_unknown_fields)]
    #[state_event(entity = "options", version = 2)]
    #[state_event(derive(Debug, PartialEq))]
    pub struct Options {
        /// The key.
        #[state_event(key)]
        pub id: ::std::string::String,
        /// New in 2.
        #[state_event(added(since = 2))]
        pub verbose: bool,
    }
}

use defaults::{Options, OptionsV1};
use ecst::{DecodeErrorKind, Envelope, PayloadError, Producer, Replica, StateEvent, Upcast};
use user::*;

#[test]
fn version_one_only() {
    assert_eq!(<Note as StateEvent>::VERSION, 1);
    let note = Note {
        id: "n-1".into(),
        body: "hello".into(),
    };
    let json = serde_json::to_vec(&note).unwrap();
    assert_eq!(Note::from_json_version(1, &json).unwrap(), note);
    assert!(Note::schema(1).is_some());
    assert!(Note::schema(2).is_none());
    let mut producer = Producer::<Note>::new("urn:test");
    let wire = producer.upsert(note.clone()).unwrap().to_json().unwrap();
    let mut replica = Replica::<Note>::new();
    replica.apply_json(&wire).unwrap();
    assert_eq!(replica.get("n-1"), ::std::option::Option::Some(&note));
}

#[test]
fn several_versions_with_every_kind_of_change() {
    let v1 = br#"{"id":"t-1","summary":"Fix it","estimate":3,"closed":false,"legacy":7}"#;
    let ticket = Ticket::from_json_version(1, v1).unwrap();
    assert_eq!(
        ticket,
        Ticket {
            id: "t-1".into(),
            title: "Fix it".into(),
            priority: 0,
            owner: "nobody".into(),
            title_length: 6,
            estimate: 3,
            closed: false,
        }
    );
    // The hand-written hop at 5 ran.
    let v4 = br#"{"id":"t-2","title":"Done","priority":1,"owner":"me","title_length":4,"estimate":0,"closed":false}"#;
    assert!(Ticket::from_json_version(4, v4).unwrap().closed);
    let typed = TicketV1 {
        id: "t-1".into(),
        summary: "Fix it".into(),
        estimate: 3,
        closed: false,
        legacy: ::std::option::Option::None,
    };
    assert_eq!(typed.upcast().unwrap(), ticket);
    // The user's `Result` alias works as a conversion's return type, and its
    // error is reported.
    let overflow = br#"{"id":"t-3","summary":"x","estimate":255,"closed":false}"#;
    match Ticket::from_json_version(1, overflow) {
        ::std::result::Result::Err(PayloadError::Upcast(e)) => {
            assert_eq!((e.from_version(), e.to_version()), (3, 4));
            assert_eq!(e.field(), ::std::option::Option::Some("estimate"));
        }
        other => panic!("expected an upcast failure, got {other:?}"),
    }
    assert_eq!(Ticket::schemas().len(), 5);
}

#[test]
fn private_struct() {
    assert_eq!(
        secret_round_trip(br#"{"id":5,"text":"psst"}"#),
        ::std::option::Option::Some((5, "psst".to_owned()))
    );
    assert_eq!(secret_round_trip(br#"{"id":5,"payload":"psst"}"#), None);
}

#[test]
fn pub_struct_with_crate_fields() {
    let old = AccountV1 {
        id: "a-1".into(),
        owner: "ada".into(),
    };
    assert_eq!(old.upcast().unwrap(), Account::new("a-1", "ada", 0));
    let json = serde_json::to_vec(&Account::new("a-2", "bob", -5)).unwrap();
    assert_eq!(
        Account::from_json_version(2, &json).unwrap(),
        Account::new("a-2", "bob", -5)
    );
    assert_eq!(Account::new("a-3", "c", 1).key(), "a-3");
}

#[test]
fn raw_identifiers() {
    let v1 = br#"{"type":"r-1","struct":"s","fn":9,"loop":true,"while":1,"trait":true}"#;
    let raw = Raw::from_json_version(1, v1).unwrap();
    assert_eq!(
        raw,
        Raw {
            r#type: "r-1".into(),
            r#match: 0,
            r#enum: "s".into(),
            r#fn: 9,
            r#impl: true,
        }
    );
    assert_eq!(raw.key(), "r-1");
    let old = RawV2 {
        r#type: "r-2".into(),
        r#match: 1,
        r#enum: "e".into(),
        r#fn: 255,
        r#trait: false,
        r#loop: false,
    };
    assert_eq!(
        serde_json::to_value(&old).unwrap(),
        serde_json::json!({"type": "r-2", "match": 1, "enum": "e", "fn": 255, "trait": false, "loop": false})
    );
    let v1 = RawV1 {
        r#type: "r-3".into(),
        r#struct: "s".into(),
        r#fn: 1,
        r#trait: false,
        r#loop: true,
        r#while: 2,
    };
    assert!(RawV2::try_from(v1).unwrap().r#loop);
    let err = old.upcast().unwrap_err();
    assert_eq!(err.field(), ::std::option::Option::Some("fn"));
    let v3 = serde_json::to_value(&raw).unwrap();
    assert_eq!(
        v3,
        serde_json::json!({"type": "r-1", "match": 0, "enum": "s", "fn": 9, "impl": true})
    );
}

#[test]
fn json_shaped_names() {
    let v1 = br#"{"_id":"d-1","fullName":"Ada","_rev":3,"_faxNumber":12}"#;
    let document = Document::from_json_version(1, v1).unwrap();
    assert_eq!(
        document,
        Document {
            _id: "d-1".into(),
            displayName: "Ada".into(),
            _links: ::std::vec::Vec::new(),
            _rev: 3,
        }
    );
    let old = DocumentV2 {
        _id: "d-2".into(),
        displayName: "Bob".into(),
        _links: vec!["self".into()],
        _rev: 1,
        _faxNumber: 0,
    };
    assert_eq!(
        serde_json::to_value(&old).unwrap(),
        serde_json::json!({"_id": "d-2", "displayName": "Bob", "_links": ["self"], "_rev": 1, "_faxNumber": 0})
    );
    assert_eq!(old.upcast().unwrap()._links, ["self"]);
}

#[test]
fn container_default_beside_a_user_default_trait() {
    assert_eq!(
        Options::from_json_version(1, br#"{"id":"o-1"}"#).unwrap(),
        Options {
            id: "o-1".into(),
            verbose: false,
        }
    );
    assert_eq!(
        OptionsV1::default(),
        OptionsV1 {
            id: ::std::string::String::new()
        }
    );
    // `deny_unknown_fields` holds in every version.
    assert!(Options::from_json_version(1, br#"{"verbose":true}"#).is_err());
    assert!(Options::from_json_version(2, br#"{"verbose":true}"#).is_ok());
}

#[test]
fn numeric_key() {
    let wire = Producer::<Counter>::new("urn:test")
        .upsert(Counter { id: 42, count: 1 })
        .unwrap()
        .to_json()
        .unwrap();
    let envelope = Envelope::<Counter>::from_json(&wire).unwrap();
    assert_eq!(envelope.key, 42);
    let value: serde_json::Value = serde_json::from_slice(&wire).unwrap();
    assert_eq!(value["subject"], "42");
    assert_eq!(
        CounterV1 { id: 7 }.upcast().unwrap(),
        Counter { id: 7, count: 0 }
    );
    let mut replica = Replica::<Counter>::new();
    replica.apply_json(&wire).unwrap();
    assert_eq!(
        replica.get(&42).map(|c| c.count),
        ::std::option::Option::Some(1)
    );
}

#[test]
fn newtype_key() {
    let product = Product {
        sku: Sku("123".into()),
        price: 999,
    };
    let wire = Producer::<Product>::new("urn:test")
        .upsert(product.clone())
        .unwrap()
        .to_json()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&wire).unwrap();
    assert_eq!(value["subject"], "sku-123");
    let envelope = Envelope::<Product>::from_json(&wire).unwrap();
    assert_eq!(envelope.key, Sku("123".into()));
    assert_eq!(envelope.state(), ::std::option::Option::Some(&product));
    assert_eq!(
        Product::from_json_version(1, br#"{"sku":"123","price":999}"#).unwrap(),
        product
    );
    // A subject that does not parse as the key type is rejected.
    let bad = ::std::string::String::from_utf8(wire.clone())
        .unwrap()
        .replace("\"sku-123\"", "\"123\"");
    let err = Envelope::<Product>::from_json(bad.as_bytes()).unwrap_err();
    assert!(
        matches!(err.kind(), DecodeErrorKind::InvalidKey(_)),
        "{err}"
    );
}

#[test]
fn own_items_still_work() {
    let (_, _, _, _, text) = own_items();
    assert_eq!(&*text, "mine");
}
