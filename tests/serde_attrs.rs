//! The user's `#[serde(..)]` attributes mean the same in every generated
//! version: the keys each version writes, which keys may be missing, and
//! which are left out.

#[path = "support/entities.rs"]
mod common;

use common::{keys, Profile, ProfileV1, ProfileV2};
use ecst::{PayloadError, StateEvent, Upcast};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

fn v1() -> ProfileV1 {
    ProfileV1 {
        user_id: "u-1".into(),
        screen_name: "ada".into(),
        nick_name: "Countess".into(),
        home_page: Some("https://example.com/ada".into()),
        full_name: "Ada Lovelace".into(),
        postcode: "W1".into(),
        birth_year: "1815".into(),
        fax_number: Some("+44 1".into()),
    }
}

fn v2() -> ProfileV2 {
    ProfileV2 {
        user_id: "u-1".into(),
        screen_name: "ada".into(),
        nick_name: "Countess".into(),
        home_page: Some("https://example.com/ada".into()),
        display_name: "Ada Lovelace".into(),
        postal_code: "W1".into(),
        tags: vec!["math".into()],
        birth_year: "1815".into(),
        fax_number: Some("+44 1".into()),
    }
}

fn v3() -> Profile {
    Profile {
        user_id: "u-1".into(),
        screen_name: "ada".into(),
        nick_name: "Countess".into(),
        home_page: Some("https://example.com/ada".into()),
        display_name: "Ada Lovelace".into(),
        postal_code: "W1".into(),
        tags: vec!["math".into()],
        birth_year: 1815,
    }
}

#[test]
fn every_version_writes_the_keys_its_serde_attributes_ask_for() {
    // rename_all = camelCase everywhere; `rename = "handle"` everywhere the
    // field has its current name; renamed fields keep their old name in
    // camelCase; the removed field follows rename_all too.
    assert_eq!(
        keys(&serde_json::to_value(v1()).unwrap()),
        [
            "birthYear",
            "faxNumber",
            "fullName",
            "handle",
            "homePage",
            "nickName",
            "postcode",
            "userId"
        ]
    );
    assert_eq!(
        keys(&serde_json::to_value(v2()).unwrap()),
        [
            "birthYear",
            "displayName",
            "faxNumber",
            "handle",
            "homePage",
            "nickName",
            "tags",
            "userId",
            "zip"
        ]
    );
    assert_eq!(
        keys(&serde_json::to_value(v3()).unwrap()),
        [
            "birthYear",
            "displayName",
            "handle",
            "homePage",
            "nickName",
            "tags",
            "userId",
            "zip"
        ]
    );
}

#[test]
fn skip_serializing_if_applies_in_every_version_where_the_type_matches() {
    let empty_v1 = ProfileV1 {
        home_page: None,
        birth_year: String::new(),
        ..v1()
    };
    let json = serde_json::to_value(empty_v1).unwrap();
    assert!(json.get("homePage").is_none(), "{json}");
    // `is_zero` is about the v3 `u16`: a v1 string is always written.
    assert_eq!(json["birthYear"], "");

    let empty_v2 = ProfileV2 {
        home_page: None,
        tags: Vec::new(),
        ..v2()
    };
    let json = serde_json::to_value(empty_v2).unwrap();
    assert!(json.get("homePage").is_none(), "{json}");
    assert!(json.get("tags").is_none(), "{json}");

    let empty_v3 = Profile {
        home_page: None,
        tags: Vec::new(),
        birth_year: 0,
        ..v3()
    };
    let json = serde_json::to_value(empty_v3).unwrap();
    assert!(json.get("homePage").is_none(), "{json}");
    assert!(json.get("tags").is_none(), "{json}");
    assert!(json.get("birthYear").is_none(), "{json}");
    assert_eq!(
        serde_json::from_value::<Profile>(json).unwrap(),
        Profile {
            home_page: None,
            tags: Vec::new(),
            birth_year: 0,
            ..v3()
        }
    );

    // ... and written when there is something.
    for json in [
        serde_json::to_value(v1()).unwrap(),
        serde_json::to_value(v2()).unwrap(),
        serde_json::to_value(v3()).unwrap(),
    ] {
        assert_eq!(json["homePage"], "https://example.com/ada");
    }
}

#[test]
fn every_version_round_trips_through_its_own_json() {
    let json = serde_json::to_vec(&v1()).unwrap();
    assert_eq!(serde_json::from_slice::<ProfileV1>(&json).unwrap(), v1());
    let json = serde_json::to_vec(&v2()).unwrap();
    assert_eq!(serde_json::from_slice::<ProfileV2>(&json).unwrap(), v2());
    let json = serde_json::to_vec(&v3()).unwrap();
    assert_eq!(serde_json::from_slice::<Profile>(&json).unwrap(), v3());
}

#[test]
fn defaulted_fields_may_be_missing_in_old_versions() {
    // No nickName (field `default`), no homePage (an Option).
    let v1 = json!({
        "userId": "u-1",
        "handle": "ada",
        "fullName": "Ada Lovelace",
        "postcode": "W1",
        "birthYear": "1815",
    });
    let typed: ProfileV1 = serde_json::from_value(v1.clone()).unwrap();
    assert_eq!(typed.nick_name, "");
    assert_eq!(typed.home_page, None);
    let newest = Profile::from_json_version(1, &serde_json::to_vec(&v1).unwrap()).unwrap();
    assert_eq!(
        newest,
        Profile {
            nick_name: String::new(),
            home_page: None,
            tags: Vec::new(),
            ..v3()
        }
    );

    // No nickName and no tags (`default` on an `added` field).
    let v2 = json!({
        "userId": "u-1",
        "handle": "ada",
        "displayName": "Ada Lovelace",
        "zip": "W1",
        "birthYear": "",
    });
    let newest = Profile::from_json_version(2, &serde_json::to_vec(&v2).unwrap()).unwrap();
    assert_eq!(newest.nick_name, "");
    assert_eq!(newest.tags, Vec::<String>::new());
    assert_eq!(newest.birth_year, 0);
}

#[test]
fn a_missing_field_without_default_is_still_an_error_in_old_versions() {
    let no_handle = br#"{"userId":"u-1","fullName":"A","postcode":"W1","birthYear":"1"}"#;
    assert!(matches!(
        Profile::from_json_version(1, no_handle),
        Err(PayloadError::Mismatch { version: 1, .. })
    ));
}

#[test]
fn old_names_are_not_read_under_new_names_and_vice_versa() {
    // The field `rename` belongs to the field's current name: version 1
    // reads `postcode`, not `zip`; version 2 reads `zip`, not `postcode`.
    let v1_with_zip = br#"{"userId":"u","handle":"h","fullName":"F","zip":"W1","birthYear":"1"}"#;
    assert!(Profile::from_json_version(1, v1_with_zip).is_err());
    let v2_with_postcode =
        br#"{"userId":"u","handle":"h","displayName":"F","postcode":"W1","birthYear":"1"}"#;
    assert!(Profile::from_json_version(2, v2_with_postcode).is_err());
    // Without rename_all the snake_case names are not read either.
    let v1_snake =
        br#"{"user_id":"u","handle":"h","full_name":"F","postcode":"W1","birth_year":"1"}"#;
    assert!(Profile::from_json_version(1, v1_snake).is_err());
}

#[test]
fn alias_is_read_in_every_version() {
    let v1 = br#"{"userId":"u","handle":"h","fullName":"F","postcode":"W1","born":"1815"}"#;
    assert_eq!(Profile::from_json_version(1, v1).unwrap().birth_year, 1815);
    let v2 = br#"{"userId":"u","handle":"h","displayName":"F","zip":"W1","born":"1816"}"#;
    assert_eq!(Profile::from_json_version(2, v2).unwrap().birth_year, 1816);
    let v3 = br#"{"userId":"u","handle":"h","displayName":"F","zip":"W1","born":1817}"#;
    assert_eq!(Profile::from_json_version(3, v3).unwrap().birth_year, 1817);
}

#[test]
fn old_version_upcasts_with_every_attribute_honoured() {
    assert_eq!(
        v1().upcast().unwrap(),
        Profile {
            tags: Vec::new(),
            ..v3()
        }
    );
    assert_eq!(v2().upcast().unwrap(), v3());
}

/// A container `#[serde(default)]` on a struct that derives `Default`.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
#[state_event(entity = "settings", version = 2)]
#[state_event(derive(Serialize, Clone, Debug, PartialEq))]
pub struct Settings {
    #[state_event(key)]
    pub id: String,
    pub theme: String,
    pub font_size: u32,
    #[state_event(added(since = 2))]
    pub dark_mode: bool,
}

#[test]
fn container_default_with_derived_default_applies_in_every_version() {
    let v1: SettingsV1 = serde_json::from_str(r#"{"id":"s-1"}"#).unwrap();
    assert_eq!(
        v1,
        SettingsV1 {
            id: "s-1".into(),
            theme: String::new(),
            font_size: 0,
        }
    );
    assert_eq!(SettingsV1::default(), serde_json::from_str("{}").unwrap());
    let expected = Settings {
        id: "s-1".into(),
        ..Settings::default()
    };
    for version in 1..=2 {
        assert_eq!(
            Settings::from_json_version(version, br#"{"id":"s-1"}"#).unwrap(),
            expected,
            "v{version}"
        );
    }
    assert_eq!(
        Settings::from_json_version(1, br#"{"id":"s-1","fontSize":14}"#)
            .unwrap()
            .font_size,
        14
    );
    // rename_all still holds next to `default`: a snake_case key is unknown
    // (and ignored), so the field keeps its default.
    assert_eq!(
        Settings::from_json_version(1, br#"{"id":"s-1","font_size":14}"#)
            .unwrap()
            .font_size,
        0
    );
}

/// A container `#[serde(default)]` on a struct with a hand-written `Default`.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default)]
#[state_event(entity = "prefs", version = 2)]
pub struct Prefs {
    #[state_event(key)]
    pub id: String,
    pub language: String,
    #[state_event(added(since = 2, default = default_page_size))]
    pub page_size: u32,
}

fn default_page_size() -> u32 {
    50
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            id: "anonymous".into(),
            language: "en".into(),
            page_size: default_page_size(),
        }
    }
}

#[test]
fn container_default_with_hand_written_default() {
    // The newest version fills missing fields from the user's `Default`.
    assert_eq!(
        Prefs::from_json_version(2, br#"{"id":"p-1"}"#).unwrap(),
        Prefs {
            id: "p-1".into(),
            language: "en".into(),
            page_size: 50,
        }
    );
    assert_eq!(
        Prefs::from_json_version(2, b"{}").unwrap(),
        Prefs::default()
    );
    // Version 1 also accepts missing fields (its struct gets a `Default`),
    // and the field added later comes from its `added` default.
    let v1 = Prefs::from_json_version(1, br#"{"id":"p-1","language":"de"}"#).unwrap();
    assert_eq!(
        v1,
        Prefs {
            id: "p-1".into(),
            language: "de".into(),
            page_size: 50,
        }
    );
    let v1 = Prefs::from_json_version(1, br#"{"language":"fr"}"#).unwrap();
    assert_eq!(v1.language, "fr");
    assert_eq!(v1.page_size, 50);
    let typed: PrefsV1 = serde_json::from_str(r#"{"id":"p-2"}"#).unwrap();
    assert_eq!(typed.id, "p-2");
    // A field missing from an old payload takes the value the newest
    // struct's `Default` gives it, exactly as in a newest-version payload.
    assert_eq!(typed.language, "en");
    for version in 1..=2 {
        assert_eq!(
            Prefs::from_json_version(version, br#"{"id":"p-3"}"#).unwrap(),
            Prefs {
                id: "p-3".into(),
                language: "en".into(),
                page_size: 50,
            },
            "v{version}"
        );
    }
    let default = PrefsV1::default();
    assert_eq!(
        (default.id.as_str(), default.language.as_str()),
        ("anonymous", "en")
    );
}
