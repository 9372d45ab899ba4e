//! The older versions that `#[derive(StateEvent)]` reads through its shared
//! slots (no `#[serde]` attributes bar `rename_all`) accept what serde's own
//! derive accepts and fail where it fails, with the same message: compared
//! here on generated JSON against a struct of the same name and fields
//! with `#[derive(Deserialize)]`.

use ecst::StateEvent;
use proptest::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn widen(score: u32) -> Result<u64, std::convert::Infallible> {
    Ok(u64::from(score))
}

/// Version 2 renames `full_name`; version 3 adds `email`, widens `score`
/// and removes `legacy_code`. Versions 1 and 2 share the slots of every
/// field but `full_name`/`name`'s name, and `score` keeps its type there.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[state_event(
    entity = "reads",
    version = 3,
    derive(Debug, PartialEq),
    removed(since = 3, field = "legacy_code", ty = u8)
)]
pub struct Reads {
    #[state_event(key)]
    pub id: String,
    #[state_event(renamed(since = 2, from = "full_name"))]
    pub name: String,
    pub count: u32,
    pub note: Option<String>,
    pub tags: Vec<String>,
    #[state_event(retyped(since = 3, from = u32, with = widen))]
    pub score: u64,
    #[state_event(added(since = 3))]
    pub email: Option<String>,
}

/// What serde's derive makes of the same versions: same names, so that
/// `Debug` output and error messages ("expected struct ReadsV1") compare.
mod serde_derived {
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)] // read through `Debug` only
    #[serde(rename_all = "camelCase")]
    pub struct ReadsV1 {
        pub id: String,
        pub full_name: String,
        pub count: u32,
        pub note: Option<String>,
        pub tags: Vec<String>,
        pub score: u32,
        pub legacy_code: u8,
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)] // read through `Debug` only
    #[serde(rename_all = "camelCase")]
    pub struct ReadsV2 {
        pub id: String,
        pub name: String,
        pub count: u32,
        pub note: Option<String>,
        pub tags: Vec<String>,
        pub score: u32,
        pub legacy_code: u8,
    }
}

/// The outcome as text: the value's `Debug`, or the error's message.
fn outcome<T: std::fmt::Debug>(result: Result<T, serde_json::Error>) -> String {
    match result {
        Ok(value) => format!("ok {value:?}"),
        Err(e) => format!("error {e}"),
    }
}

fn from_text<T: std::fmt::Debug + for<'de> Deserialize<'de>>(text: &str) -> String {
    outcome(serde_json::from_str::<T>(text))
}

fn from_value<T: std::fmt::Debug + for<'de> Deserialize<'de>>(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(outcome(serde_json::from_value::<T>(value)))
}

fn assert_same(text: &str) {
    assert_eq!(
        from_text::<ReadsV1>(text),
        from_text::<serde_derived::ReadsV1>(text),
        "v1 from {text}"
    );
    assert_eq!(
        from_text::<ReadsV2>(text),
        from_text::<serde_derived::ReadsV2>(text),
        "v2 from {text}"
    );
    assert_eq!(
        from_value::<ReadsV1>(text),
        from_value::<serde_derived::ReadsV1>(text),
        "v1 from the value of {text}"
    );
    assert_eq!(
        from_value::<ReadsV2>(text),
        from_value::<serde_derived::ReadsV2>(text),
        "v2 from the value of {text}"
    );
}

const KEYS: &[&str] = &[
    "id",
    "fullName",
    "full_name",
    "name",
    "count",
    "note",
    "tags",
    "score",
    "legacyCode",
    "email",
    "unknown",
    "",
    "ID",
];

const VALUES: &[&str] = &[
    r#""a""#,
    r#""""#,
    "0",
    "7",
    "-1",
    "300",
    "1.5",
    "null",
    "true",
    "[]",
    r#"["x","y"]"#,
    "[1]",
    "{}",
    r#"{"id":"nested"}"#,
];

fn json_value() -> impl Strategy<Value = String> {
    prop::sample::select(VALUES).prop_map(str::to_owned)
}

/// An object with keys from [`KEYS`] (repeats included), an array, or a
/// scalar.
fn payload() -> impl Strategy<Value = String> {
    let entry = (prop::sample::select(KEYS), json_value())
        .prop_map(|(key, value)| format!("{key:?}:{value}"));
    prop_oneof![
        4 => prop::collection::vec(entry, 0..12)
            .prop_map(|entries| format!("{{{}}}", entries.join(","))),
        1 => prop::collection::vec(json_value(), 0..9)
            .prop_map(|values| format!("[{}]", values.join(","))),
        1 => json_value(),
    ]
}

/// A complete payload of one version with some keys dropped, repeated or
/// added, so that most cases get past the first missing field.
fn near_complete() -> impl Strategy<Value = String> {
    let fields = [
        ("id", r#""c-1""#),
        ("fullName", r#""Ada""#),
        ("name", r#""Ada""#),
        ("count", "3"),
        ("note", "null"),
        ("tags", r#"["t"]"#),
        ("score", "9"),
        ("legacyCode", "2"),
        ("email", r#""a@b""#),
    ];
    (
        prop::collection::vec(any::<bool>(), fields.len()),
        prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..3),
        any::<bool>(),
    )
        .prop_map(move |(keep, extra, extra_first)| {
            let kept = fields
                .iter()
                .zip(keep)
                .filter(|(_, keep)| *keep)
                .map(|((key, value), _)| format!("{key:?}:{value}"));
            let extra = extra.into_iter().map(|(k, v)| format!("{k:?}:{v}"));
            let entries: Vec<String> = if extra_first {
                extra.chain(kept).collect()
            } else {
                kept.chain(extra).collect()
            };
            format!("{{{}}}", entries.join(","))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn slot_reads_match_serde_derive(text in payload()) {
        assert_same(&text);
    }

    #[test]
    fn slot_reads_match_serde_derive_near_complete_payloads(text in near_complete()) {
        assert_same(&text);
    }
}

#[test]
fn slot_reads_match_serde_derive_on_chosen_payloads() {
    let complete_v1 =
        r#"{"id":"c-1","fullName":"Ada","count":3,"note":null,"tags":[],"score":9,"legacyCode":2}"#;
    assert!(from_text::<ReadsV1>(complete_v1).starts_with("ok "));
    for text in [
        complete_v1,
        // `note` missing: an `Option`, so `None`.
        r#"{"id":"c-1","fullName":"Ada","count":3,"tags":[],"score":9,"legacyCode":2}"#,
        // A duplicate key.
        r#"{"id":"c-1","id":"c-2","fullName":"Ada","count":3,"tags":[],"score":9,"legacyCode":2}"#,
        // A sequence: every field in order, too few, too many.
        r#"["c-1","Ada",3,null,[],9,2]"#,
        r#"["c-1","Ada",3]"#,
        r#"["c-1","Ada",3,null,[],9,2,"more"]"#,
        // Not a struct at all.
        r#""c-1""#,
        "null",
        // The newest version's names are not version 1's.
        r#"{"id":"c-1","name":"Ada","count":3,"tags":[],"score":9,"legacyCode":2}"#,
    ] {
        assert_same(text);
    }
}

#[test]
fn a_payload_read_through_the_slots_upcasts_as_before() {
    let v1 = serde_json::json!({
        "id": "c-1", "fullName": "Ada", "count": 3, "tags": ["t"], "score": 9, "legacyCode": 2
    });
    let latest = Reads::from_json_version(1, &serde_json::to_vec(&v1).unwrap()).unwrap();
    assert_eq!(
        latest,
        Reads {
            id: "c-1".into(),
            name: "Ada".into(),
            count: 3,
            note: None,
            tags: vec!["t".into()],
            score: 9,
            email: None,
        }
    );
    let missing = serde_json::json!({ "id": "c-1", "fullName": "Ada" });
    let error = Reads::from_json_version(1, &serde_json::to_vec(&missing).unwrap()).unwrap_err();
    assert!(
        error.to_string().contains("missing field `count`"),
        "{error}"
    );
}
