//! Nested types that evolve: `#[derive(Versioned)]` on a struct held by an
//! entity, and `nested(since = N, from = TypeVk)` on the entity's field.
//!
//! `before` is the code as it was before `Address` and `Line` had a history
//! (a parcel of version 1); `after` is the code three versions later. The
//! schema of parcel v1 must stay what `before` locked, and stored payloads
//! of every version decode, upcast through the nested types' own hops, to
//! the newest `Parcel`.

#![deny(warnings, unused_qualifications)]

use std::error::Error as _;

use ecst::schema::{check_lock, write_lock, Catalog, LockOptions, Problem};
use ecst::{PayloadError, StateEvent, Upcast, Versioned};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

mod before {
    use super::*;

    /// Where a parcel goes.
    #[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    pub struct Address {
        pub street: String,
        pub city: String,
    }

    /// One line of a parcel.
    #[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    pub struct Line {
        pub sku: String,
        pub quantity: i64,
    }

    /// Where a parcel is.
    #[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    pub enum Status {
        Open,
        Shipped { carrier: String },
        Lost(String),
    }

    /// A parcel on its way.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "parcel", version = 1)]
    pub struct Parcel {
        #[state_event(key)]
        pub id: u64,
        pub ship_to: Address,
        pub lines: Vec<Line>,
        pub return_to: Option<Address>,
        pub status: Status,
    }
}

mod after {
    use super::*;

    /// Where a parcel goes.
    #[derive(Versioned, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[versioned(version = 3, derive(Serialize, Clone, Debug, PartialEq))]
    pub struct Address {
        #[versioned(renamed(since = 3, from = "street"))]
        pub street_line: String,
        pub city: String,
        #[versioned(added(since = 2, default = unknown_country))]
        pub country: String,
    }

    fn unknown_country() -> String {
        "unknown".into()
    }

    /// One line of a parcel.
    #[derive(Versioned, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[versioned(version = 2, derive(Serialize, Clone, Debug, PartialEq))]
    pub struct Line {
        pub sku: String,
        #[versioned(retyped(since = 2, from = i64, with = count))]
        pub quantity: u32,
    }

    fn count(quantity: i64) -> Result<u32, std::num::TryFromIntError> {
        u32::try_from(quantity)
    }

    /// Where a parcel is.
    #[derive(Versioned, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[versioned(version = 2, derive(Serialize, Clone, Debug, PartialEq))]
    pub enum Status {
        #[versioned(renamed(since = 2, from = "Open"))]
        Pending,
        Shipped {
            carrier: String,
        },
        Lost(String),
        #[versioned(added(since = 2))]
        Refunded {
            amount_cents: u64,
        },
    }

    /// A parcel on its way.
    ///
    /// v2: `Address` v2 (a country), `Line` v2 (a `u32` quantity) and
    /// `Status` v2 (`Open` renamed, `Refunded` added);
    /// v3: `Address` v3 (`street` renamed), also where the parcel returns,
    /// which held `Address` v1 until then.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "parcel", version = 3)]
    #[state_event(derive(Serialize, Clone, Debug, PartialEq))]
    pub struct Parcel {
        #[state_event(key)]
        pub id: u64,
        #[state_event(nested(since = 2, from = AddressV1))]
        #[state_event(nested(since = 3, from = AddressV2))]
        pub ship_to: Address,
        #[state_event(nested(since = 2, from = Vec<LineV1>))]
        pub lines: Vec<Line>,
        #[state_event(nested(since = 3, from = Option<AddressV1>))]
        pub return_to: Option<Address>,
        #[state_event(nested(since = 2, from = StatusV1))]
        pub status: Status,
    }
}

use after::{
    Address, AddressV1, AddressV2, Line, LineV1, Parcel, ParcelV1, ParcelV2, Status, StatusV1,
};

fn fixture(version: u32) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/parcel/v{version}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What each stored `parcel/vN.json` must decode to.
fn expected(version: u32) -> Parcel {
    match version {
        // Address v1 -> v2 (country filled) -> v3 (street renamed), on both
        // addresses; quantities i64 -> u32.
        1 => Parcel {
            id: 7,
            ship_to: Address {
                street_line: "12 Rue de la Paix".into(),
                city: "Paris".into(),
                country: "unknown".into(),
            },
            lines: vec![Line {
                sku: "tea".into(),
                quantity: 3,
            }],
            return_to: Some(Address {
                street_line: "1 Quai".into(),
                city: "Lyon".into(),
                country: "unknown".into(),
            }),
            status: Status::Pending,
        },
        2 => Parcel {
            id: 7,
            ship_to: Address {
                street_line: "12 Rue de la Paix".into(),
                city: "Paris".into(),
                country: "FR".into(),
            },
            lines: vec![Line {
                sku: "tea".into(),
                quantity: 4,
            }],
            return_to: None,
            status: Status::Refunded { amount_cents: 250 },
        },
        3 => Parcel {
            id: 7,
            ship_to: Address {
                street_line: "12 Rue de la Paix".into(),
                city: "Paris".into(),
                country: "FR".into(),
            },
            lines: vec![],
            return_to: Some(Address {
                street_line: "1 Quai".into(),
                city: "Lyon".into(),
                country: "FR".into(),
            }),
            status: Status::Lost("in Lyon".into()),
        },
        _ => unreachable!("parcel has versions 1..=3"),
    }
}

#[test]
fn every_stored_version_decodes_through_the_nested_hops() {
    for version in 1..=3 {
        let decoded = Parcel::from_json_version(version, &fixture(version))
            .unwrap_or_else(|e| panic!("parcel v{version}: {e}"));
        assert_eq!(decoded, expected(version), "parcel v{version}");
    }
}

#[test]
fn every_generated_version_round_trips_its_fixture() {
    fn round_trip<T: Serialize + serde::de::DeserializeOwned>(version: u32) {
        let stored: Value = serde_json::from_slice(&fixture(version)).unwrap();
        let typed: T = serde_json::from_value(stored.clone())
            .unwrap_or_else(|e| panic!("parcel v{version}: {e}"));
        assert_eq!(
            serde_json::to_value(&typed).unwrap(),
            stored,
            "parcel v{version}"
        );
    }
    round_trip::<ParcelV1>(1);
    round_trip::<ParcelV2>(2);
    round_trip::<Parcel>(3);
}

#[test]
fn old_entity_versions_hold_the_old_nested_versions() {
    let v1 = ParcelV1 {
        id: 1,
        ship_to: AddressV1 {
            street: "Main St".into(),
            city: "Springfield".into(),
        },
        lines: vec![LineV1 {
            sku: "mug".into(),
            quantity: 2,
        }],
        return_to: None,
        status: StatusV1::Shipped {
            carrier: "UPS".into(),
        },
    };
    let v2: ParcelV2 = v1.clone().try_into().expect("the hop into v2");
    assert_eq!(
        v2.ship_to,
        AddressV2 {
            street: "Main St".into(),
            city: "Springfield".into(),
            country: "unknown".into(),
        }
    );
    assert_eq!(v2.return_to, None::<AddressV1>);
    let newest = v1.upcast().expect("the hops into v3");
    assert_eq!(newest.ship_to.street_line, "Main St");
    assert_eq!(newest.lines[0].quantity, 2);
    assert_eq!(
        newest.status,
        Status::Shipped {
            carrier: "UPS".into()
        }
    );
}

#[test]
fn an_enum_version_lacks_the_variants_added_after_it() {
    // v1 readers know `Open`, not `Pending` or `Refunded`.
    let v1: StatusV1 = serde_json::from_value(json!("Open")).expect("v1 has `Open`");
    assert_eq!(v1, StatusV1::Open);
    let refunded = json!({"Refunded": {"amount_cents": 1}});
    let err = serde_json::from_value::<StatusV1>(refunded.clone()).expect_err("added at v2");
    assert!(
        err.to_string().contains("unknown variant `Refunded`"),
        "{err}"
    );
    assert!(serde_json::from_value::<Status>(refunded).is_ok());
    // A parcel v1 payload holding a v2 variant is refused, not guessed.
    let mut stored: Value = serde_json::from_slice(&fixture(1)).unwrap();
    stored["status"] = json!("Pending");
    let bytes = serde_json::to_vec(&stored).unwrap();
    let err = Parcel::from_json_version(1, &bytes).expect_err("`Pending` is v2's name");
    assert!(
        matches!(err, PayloadError::Mismatch { version: 1, .. }),
        "{err}"
    );
}

#[test]
fn the_enum_schema_of_each_version_lists_its_own_variants() {
    let v1 = serde_json::to_string(&Parcel::schema(1).unwrap()).unwrap();
    let v2 = serde_json::to_string(&Parcel::schema(2).unwrap()).unwrap();
    assert!(v1.contains("\"Open\"") && !v1.contains("Pending") && !v1.contains("Refunded"));
    assert!(v2.contains("\"Pending\"") && v2.contains("Refunded") && !v2.contains("\"Open\""));
}

#[test]
fn a_failing_nested_hop_names_the_entity_field_and_the_nested_type() {
    let mut stored: Value = serde_json::from_slice(&fixture(1)).unwrap();
    stored["lines"][0]["quantity"] = json!(-1);
    let bytes = serde_json::to_vec(&stored).unwrap();
    let err = Parcel::from_json_version(1, &bytes).expect_err("a negative quantity");
    let PayloadError::Upcast(err) = err else {
        panic!("expected an upcast error, got {err}");
    };
    assert_eq!(err.entity(), "parcel");
    assert_eq!((err.from_version(), err.to_version()), (1, 2));
    assert_eq!(err.field(), Some("lines"));
    let nested = err
        .source()
        .and_then(|source| source.downcast_ref::<ecst::UpcastError>())
        .expect("the nested type's own upcast error");
    assert_eq!(nested.entity(), "Line");
    assert_eq!((nested.from_version(), nested.to_version()), (1, 2));
    assert_eq!(nested.field(), Some("quantity"));
    assert_eq!(
        err.to_string(),
        "upcasting `parcel` from v1 to v2 failed in field `lines`: upcasting `Line` from v1 to \
         v2 failed in field `quantity`: out of range integral type conversion attempted"
    );
}

/// Everything of a schema but the entity's own title and description,
/// which the derive rewrites when a version stops being the newest.
fn without_own_docs(schema: schemars::Schema) -> Value {
    let mut value = schema.to_value();
    if let Some(map) = value.as_object_mut() {
        map.remove("title");
        map.remove("description");
    }
    value
}

#[test]
fn the_schema_of_v1_is_what_it_was_before_the_nested_types_had_a_history() {
    let locked = before::Parcel::schema(1).expect("v1");
    let now = Parcel::schema(1).expect("v1");
    // The nested types' definitions, docs included, byte for byte.
    assert_eq!(
        serde_json::to_string_pretty(&locked.clone().to_value()["$defs"]).unwrap(),
        serde_json::to_string_pretty(&now.clone().to_value()["$defs"]).unwrap()
    );
    assert_eq!(without_own_docs(locked), without_own_docs(now));
}

#[test]
fn the_lock_written_before_the_history_still_holds_v1() {
    let dir = std::env::temp_dir().join(format!("ecst-nested-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let old = Catalog::new().with::<before::Parcel>().unwrap();
    let new = Catalog::new().with::<Parcel>().unwrap();
    write_lock(&dir, &old, &LockOptions::default()).expect("written");
    let report = check_lock(&dir, &new, &LockOptions::default()).expect("readable");
    let _ = std::fs::remove_dir_all(&dir);
    let problems: Vec<String> = report
        .problems
        .iter()
        .map(|problem| match problem {
            Problem::Unlocked { path } => format!("unlocked {}", path.display()),
            Problem::AsyncApiStale { .. } => "asyncapi".to_owned(),
            other => panic!("v1 must still match its lock: {other}"),
        })
        .collect();
    assert_eq!(problems.len(), 3, "{report}"); // v2, v3 unlocked; asyncapi
}

#[test]
fn each_version_schema_describes_its_own_nested_versions() {
    let v1 = Parcel::schema(1).unwrap().to_value();
    let v2 = Parcel::schema(2).unwrap().to_value();
    let v3 = Parcel::schema(3).unwrap().to_value();
    let address = |schema: &Value| {
        let props = schema["$defs"]["Address"]["properties"]
            .as_object()
            .expect("an Address definition")
            .keys()
            .cloned()
            .collect::<Vec<_>>();
        props
    };
    assert_eq!(address(&v1), ["city", "street"]);
    assert_eq!(address(&v2), ["city", "country", "street"]);
    assert_eq!(address(&v3), ["city", "country", "street_line"]);
}

mod depot {
    use super::*;

    /// A point on the map.
    #[derive(Versioned, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[versioned(version = 2, derive(Serialize, Clone, Debug, PartialEq))]
    pub struct Geo {
        pub lat: f64,
        pub lon: f64,
        #[versioned(added(since = 2))]
        pub altitude_m: Option<f64>,
    }

    /// A site, itself holding a nested type with a history.
    #[derive(Versioned, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[versioned(version = 2, derive(Serialize, Clone, Debug, PartialEq))]
    pub struct Site {
        pub name: String,
        #[versioned(nested(since = 2, from = GeoV1))]
        pub at: Geo,
    }

    /// A depot.
    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "depot", version = 2)]
    pub struct Depot {
        #[state_event(key)]
        pub id: String,
        #[state_event(nested(since = 2, from = SiteV1))]
        pub site: Site,
    }
}

#[test]
fn a_nested_type_may_hold_a_nested_type_with_its_own_history() {
    let v1 = json!({"id": "d-1", "site": {"name": "North", "at": {"lat": 1.5, "lon": 2.5}}});
    let depot = depot::Depot::from_json_version(1, &serde_json::to_vec(&v1).unwrap())
        .expect("v1 upgrades through Site v1 -> v2, which upgrades Geo v1 -> v2");
    assert_eq!(
        depot.site,
        depot::Site {
            name: "North".into(),
            at: depot::Geo {
                lat: 1.5,
                lon: 2.5,
                altitude_m: None,
            },
        }
    );
    let v1_schema = serde_json::to_string(&depot::Depot::schema(1).unwrap()).unwrap();
    assert!(!v1_schema.contains("altitude_m"), "{v1_schema}");
}

mod fallback {
    use super::*;

    /// A phase, internally tagged, with a declared fallback for phases this
    /// build does not know.
    #[derive(Versioned, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[versioned(version = 2, derive(Serialize, Clone, Debug, PartialEq))]
    #[serde(tag = "phase")]
    pub enum Phase {
        Draft,
        Live,
        #[versioned(added(since = 2))]
        Archived,
        #[serde(other)]
        Unknown,
    }
}

#[test]
fn an_older_version_with_a_declared_fallback_reads_a_newer_variant_as_it() {
    use fallback::{Phase, PhaseV1};
    let archived = json!({"phase": "Archived"});
    // Version 1 lacks `Archived`; serde's `#[serde(other)]` is carried over.
    let old: PhaseV1 = serde_json::from_value(archived.clone()).expect("the fallback");
    assert_eq!(old, PhaseV1::Unknown);
    let new: Phase = serde_json::from_value(archived).expect("known at v2");
    assert_eq!(new, Phase::Archived);
    // And the fallback upgrades to itself.
    let upgraded: Phase = PhaseV1::Unknown.try_into().expect("the hop");
    assert_eq!(upgraded, Phase::Unknown);
}
