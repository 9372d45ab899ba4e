//! Reading events of a newer schema version than this build knows.
//!
//! Producers upgrade before consumers. A consumer that knows an entity up
//! to version N receives version N+1: if the entity declares FORWARD or FULL
//! compatibility (which the schema lock enforces on the producer's side),
//! the event is read as version N, unknown fields ignored and the fact
//! counted; otherwise it is the typed "future version" error, for parking.

use ecst::{DecodeErrorKind, Envelope, Outcome, Replica, Router, StateEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Known to this build up to v2; promises FORWARD compatibility.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "customer", version = 2, compatibility = "FORWARD")]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    pub name: String,
    #[state_event(added(since = 2))]
    pub email: Option<String>,
}

/// Promises FORWARD_TRANSITIVE: any newer version reads as v1.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "product", version = 1, compatibility = "FORWARD_TRANSITIVE")]
pub struct Product {
    #[state_event(key)]
    pub sku: String,
    pub name: String,
}

/// No promise (the default, NONE): newer versions are never guessed at.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "invoice", version = 1)]
pub struct Invoice {
    #[state_event(key)]
    pub number: u64,
    pub total_cents: u64,
}

/// BACKWARD says nothing about old readers of new data either.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "shipment", version = 1, compatibility = "BACKWARD")]
pub struct Shipment {
    #[state_event(key)]
    pub id: String,
}

fn event(entity: &str, key: &str, version: u32, data: &str, data_first: bool) -> Vec<u8> {
    let attrs = format!(
        r#""specversion":"1.0","id":"{entity}:{key}:1","source":"urn:test","type":"{entity}","subject":"{key}","sequence":"1","schemaversion":{version},"operation":"upsert""#
    );
    let text = if data_first {
        format!(r#"{{"data":{data},{attrs}}}"#)
    } else {
        format!(r#"{{{attrs},"data":{data}}}"#)
    };
    text.into_bytes()
}

#[test]
fn forward_reads_the_next_version_as_the_newest_known_and_counts_it() {
    for data_first in [false, true] {
        let mut replica = Replica::<Customer>::new();
        let v3 = event(
            "customer",
            "c-1",
            3,
            r#"{"id":"c-1","name":"Ada","email":"ada@example.com","phone":"+1 555","tier":{"level":2}}"#,
            data_first,
        );
        assert_eq!(replica.apply_json(&v3).unwrap(), Outcome::Inserted);
        assert_eq!(
            replica.get("c-1"),
            Some(&Customer {
                id: "c-1".into(),
                name: "Ada".into(),
                email: Some("ada@example.com".into()),
            })
        );
        let stats = replica.stats();
        assert_eq!(
            (stats.inserted, stats.read_as_older, stats.rejected),
            (1, 1, 0)
        );

        let envelope = Envelope::<Customer>::from_json(&v3).unwrap();
        assert_eq!(
            envelope.written_version(),
            3,
            "the real version stays visible"
        );
        // Applied as a decoded envelope, counted the same way.
        let mut applied = Replica::<Customer>::new();
        assert_eq!(applied.apply(envelope), Outcome::Inserted);
        assert_eq!(applied.stats().read_as_older, 1);
    }
}

#[test]
fn forward_does_not_stretch_past_the_next_version() {
    let mut replica = Replica::<Customer>::new();
    let v4 = event("customer", "c-1", 4, r#"{"id":"c-1","name":"Ada"}"#, false);
    let err = replica.apply_json(&v4).unwrap_err();
    assert!(err.is_future_version(), "{err}");
    assert!(matches!(
        err.kind(),
        DecodeErrorKind::FutureVersion { newest_known: 2 }
    ));
    assert_eq!(replica.len(), 0);
    assert_eq!(replica.stats().future_version, 1);
    assert_eq!(replica.stats().read_as_older, 0);
}

#[test]
fn a_newer_version_that_breaks_the_promise_is_rejected_not_guessed() {
    // v3 dropped `name`, which v2 requires: the producer's lock would have
    // refused this, and the consumer does not paper over it.
    let mut replica = Replica::<Customer>::new();
    let v3 = event("customer", "c-1", 3, r#"{"id":"c-1","full":"Ada"}"#, false);
    let err = replica.apply_json(&v3).unwrap_err();
    assert!(
        matches!(err.kind(), DecodeErrorKind::PayloadMismatch(_)),
        "{err}"
    );
    assert_eq!(replica.len(), 0);
    assert_eq!(replica.stats().read_as_older, 0);
}

#[test]
fn transitive_reads_any_newer_version() {
    let mut replica = Replica::<Product>::new();
    for (version, key) in [(2, "p-2"), (7, "p-7"), (1000, "p-1000")] {
        let data = format!(r#"{{"sku":"{key}","name":"thing","colour":"red"}}"#);
        assert_eq!(
            replica
                .apply_json(&event("product", key, version, &data, false))
                .unwrap(),
            Outcome::Inserted
        );
    }
    assert_eq!(replica.len(), 3);
    assert_eq!(replica.stats().read_as_older, 3);
}

#[test]
fn without_a_forward_promise_newer_versions_are_future_version_errors() {
    let mut invoices = Replica::<Invoice>::new();
    let err = invoices
        .apply_json(&event(
            "invoice",
            "7",
            2,
            r#"{"number":7,"total_cents":1}"#,
            false,
        ))
        .unwrap_err();
    assert!(err.is_future_version());
    let mut shipments = Replica::<Shipment>::new();
    let err = shipments
        .apply_json(&event("shipment", "s-1", 2, r#"{"id":"s-1"}"#, true))
        .unwrap_err();
    assert!(err.is_future_version());
    assert_eq!(invoices.len() + shipments.len(), 0);
}

#[test]
fn the_router_reads_newer_versions_the_same_way() {
    let mut router = Router::new();
    router.add(Replica::<Customer>::new()).unwrap();
    router.add(Replica::<Invoice>::new()).unwrap();
    let routed = router
        .apply_json(&event(
            "customer",
            "c-1",
            3,
            r#"{"id":"c-1","name":"Ada","x":1}"#,
            false,
        ))
        .unwrap();
    assert_eq!(routed.outcome, Outcome::Inserted);
    assert!(router
        .apply_json(&event(
            "invoice",
            "1",
            2,
            r#"{"number":1,"total_cents":1}"#,
            false
        ))
        .unwrap_err()
        .is_future_version());
    let customers = router.replica::<Customer>().unwrap();
    assert_eq!(customers.stats().read_as_older, 1);
}

/// The same entity as [`Customer`], one build later: v3 adds `phone`.
mod upgraded {
    use super::*;

    #[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
    #[state_event(entity = "customer", version = 3, compatibility = "FORWARD")]
    pub struct Customer {
        #[state_event(key)]
        pub id: String,
        pub name: String,
        #[state_event(added(since = 2))]
        pub email: Option<String>,
        #[state_event(added(since = 3))]
        pub phone: Option<String>,
    }
}

const V3_DATA: &str = r#"{"id":"c-1","name":"Ada","email":"ada@example.com","phone":"+1 555"}"#;

fn upgraded_ada() -> upgraded::Customer {
    upgraded::Customer {
        id: "c-1".into(),
        name: "Ada".into(),
        email: Some("ada@example.com".into()),
        phone: Some("+1 555".into()),
    }
}

/// A consumer that knows v2 reads a v3 event without `phone`; after the
/// upgrade, the same event (same sequence) delivered again is read at v3
/// and replaces what the old build kept, instead of being a duplicate that
/// loses `phone` for good. Through a snapshot, which carries the version
/// each state was read at.
#[test]
fn an_upgraded_consumer_reads_again_what_an_old_one_read_tolerantly() {
    let v3 = event("customer", "c-1", 3, V3_DATA, false);
    let mut old = Replica::<Customer>::new();
    assert_eq!(old.apply_json(&v3).unwrap(), Outcome::Inserted);
    assert_eq!(old.read_version("c-1"), Some(2));
    let mut snapshot = Vec::new();
    old.write_snapshot(&mut snapshot).unwrap();

    let mut new = Replica::<upgraded::Customer>::new();
    new.import_snapshot(&snapshot).unwrap();
    assert_eq!(new.read_version("c-1"), Some(2));
    assert_eq!(new.get("c-1").unwrap().phone, None);
    assert_eq!(new.apply_json(&v3).unwrap(), Outcome::Updated);
    assert_eq!(new.get("c-1"), Some(&upgraded_ada()));
    assert_eq!(new.read_version("c-1"), Some(3));
    // Now it is a duplicate.
    assert_eq!(new.apply_json(&v3).unwrap(), Outcome::Duplicate);
    // And an older version of the same sequence no longer wins.
    let v2 = event(
        "customer",
        "c-1",
        2,
        r#"{"id":"c-1","name":"Ada","email":null}"#,
        false,
    );
    assert_eq!(new.apply_json(&v2).unwrap(), Outcome::Stale);
    assert_eq!(new.get("c-1"), Some(&upgraded_ada()));
}

/// The same through a durable store: the version a state was read at is
/// stored beside it, so the upgraded build, loading the old build's store,
/// knows to take the event again.
#[cfg(feature = "sqlite")]
#[test]
fn an_upgraded_durable_consumer_reads_again_what_an_old_one_read_tolerantly() {
    use ecst::store::sqlite::SqliteStore;
    use ecst::store::{DurableReplica, Message};

    let dir = std::env::temp_dir().join(format!("ecst-upgrade-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("replica.db");
    let _ = std::fs::remove_file(&path);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let v3 = event("customer", "c-1", 3, V3_DATA, false);
    runtime.block_on(async {
        let store = SqliteStore::open(&path, "billing").unwrap();
        let mut old = DurableReplica::<Customer, _>::open(store).await.unwrap();
        let outcome = old
            .apply_batch(&[Message::new(1, "ecst.customer.c-1", &v3)])
            .await
            .unwrap();
        assert_eq!(outcome.applied, vec![(1, Outcome::Inserted)]);
    });
    runtime.block_on(async {
        let store = SqliteStore::open(&path, "billing").unwrap();
        let mut new = DurableReplica::<upgraded::Customer, _>::open(store)
            .await
            .unwrap();
        assert_eq!(new.replica().read_version("c-1"), Some(2));
        let outcome = new
            .apply_batch(&[Message::new(1, "ecst.customer.c-1", &v3)])
            .await
            .unwrap();
        assert_eq!(outcome.applied, vec![(1, Outcome::Updated)]);
        assert_eq!(new.replica().get("c-1"), Some(&upgraded_ada()));
    });
    let store = SqliteStore::open(&path, "billing").unwrap();
    let reopened = runtime
        .block_on(DurableReplica::<upgraded::Customer, _>::open(store))
        .unwrap();
    assert_eq!(reopened.replica().get("c-1"), Some(&upgraded_ada()));
    assert_eq!(reopened.replica().read_version("c-1"), Some(3));
    let _ = std::fs::remove_dir_all(&dir);
}
