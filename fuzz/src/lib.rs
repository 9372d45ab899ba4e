//! What the fuzz targets share: two small entities (one with a history of
//! two versions), replicas in a known state, and the checks every accepted
//! envelope must pass.

use std::fmt::Debug;
use std::num::TryFromIntError;

use ecst::envelope::{TraceParent, MAX_KEY_BYTES};
use ecst::{DecodeError, DecodeErrorKind, Envelope, Outcome, Replica, Router, Sequence, StateEvent};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A customer at schema version 2, with a history:
///
/// - v1: `{"id": String, "full_name": String, "credit": i64}`
/// - v2: `{"id": String, "name": String, "email": Option<String>, "credit": u64}`
///
/// The hop v1 -> v2 fails for a negative `credit`.
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "customer", version = 2)]
pub struct Customer {
    #[state_event(key)]
    pub id: String,
    #[state_event(renamed(since = 2, from = "full_name"))]
    pub name: String,
    #[state_event(added(since = 2))]
    pub email: Option<String>,
    #[state_event(retyped(since = 2, from = i64, with = to_unsigned))]
    pub credit: u64,
}

fn to_unsigned(credit: i64) -> Result<u64, TryFromIntError> {
    u64::try_from(credit)
}

/// An order, version 1 only, keyed by a number (so that a `subject` can fail
/// to parse as the key, and a key can have several spellings).
#[derive(StateEvent, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[state_event(entity = "order", version = 1)]
pub struct Order {
    #[state_event(key)]
    pub number: u64,
    pub total_cents: u64,
}

/// `c-1` live at sequence 5, `c-2` deleted at sequence 3.
pub fn customers() -> Replica<Customer> {
    let mut replica = Replica::new();
    replica.apply(Envelope::upsert(
        "urn:s",
        "a",
        Sequence::new(5),
        Customer {
            id: "c-1".into(),
            name: "Ada".into(),
            email: None,
            credit: 7,
        },
    ));
    replica.apply(Envelope::delete(
        "urn:s",
        "b",
        "c-2".into(),
        Sequence::new(3),
    ));
    replica
}

/// Order 1 live at sequence 2.
pub fn orders() -> Replica<Order> {
    let mut replica = Replica::new();
    replica.apply(Envelope::upsert(
        "urn:s",
        "c",
        Sequence::new(2),
        Order {
            number: 1,
            total_cents: 10,
        },
    ));
    replica
}

/// A router over [`customers`] and [`orders`].
pub fn router() -> Router {
    let mut router = Router::new();
    router.add(customers()).expect("customer registered once");
    router.add(orders()).expect("order registered once");
    router
}

/// The replica's whole content as snapshot bytes (sorted by key, so
/// comparable).
pub fn snapshot<T: StateEvent>(replica: &Replica<T>) -> Vec<u8> {
    let mut out = Vec::new();
    replica.write_snapshot(&mut out).expect("write_snapshot");
    out
}

/// The invariants of an envelope the decoder accepted:
///
/// - its sequence is at most `Sequence::MAX` and its key is at most
///   `MAX_KEY_BYTES` bytes without control characters (every store can
///   hold it, every reader agrees on it);
/// - `to_json` encodes it and `from_json` decodes that into an equal
///   envelope (in the newest schema version).
pub fn check_accepted<T>(envelope: &Envelope<T>)
where
    T: StateEvent + PartialEq + Debug,
{
    assert!(
        envelope.sequence <= Sequence::MAX,
        "accepted sequence {:?} above Sequence::MAX",
        envelope.sequence
    );
    let key = envelope.key.to_string();
    assert!(
        key.len() <= MAX_KEY_BYTES,
        "accepted key of {} bytes (limit {MAX_KEY_BYTES})",
        key.len()
    );
    assert!(
        !key.chars().any(char::is_control),
        "accepted key with a control character: {key:?}"
    );
    // The `traceparent` comes from the wire and is parsed strictly (on the
    // apply path, when a subscriber records spans): an answer for any
    // string, and what parses writes back in version 00 form.
    if let Some(Ok(parent)) = envelope.trace_parent() {
        let written = parent.to_string();
        assert_eq!(TraceParent::parse(&written), Ok(parent), "{written}");
        let sent = envelope.traceparent.as_deref().unwrap_or_default();
        if sent.starts_with("00-") {
            assert_eq!(written, sent, "a version 00 traceparent writes back as it came");
        }
    }
    let json = envelope.to_json().expect("an accepted envelope encodes");
    let back = match Envelope::<T>::from_json(&json) {
        Ok(back) => back,
        Err(error) => panic!(
            "to_json of an accepted envelope does not decode: {error}\n{}",
            String::from_utf8_lossy(&json)
        ),
    };
    let fields = |e: &Envelope<T>| {
        (
            e.id.clone(),
            e.source.clone(),
            e.key.clone(),
            e.sequence,
            e.time.clone(),
            e.correlation_id.clone(),
            e.causation_id.clone(),
            e.traceparent.clone(),
        )
    };
    assert_eq!(
        fields(envelope),
        fields(&back),
        "attributes differ after to_json/from_json\n{}",
        String::from_utf8_lossy(&json)
    );
    assert_eq!(
        envelope.change,
        back.change,
        "change differs after to_json/from_json\n{}",
        String::from_utf8_lossy(&json)
    );
    assert_eq!(back.written_version(), T::VERSION);
    // Encoding is deterministic: the decoded copy encodes to the same bytes.
    assert_eq!(back.to_json().expect("encodes"), json);
}

/// Whether a replica may take `applied` where decoding the whole envelope
/// gave `decoded`: the same verdict, or `Stale` for an upsert the version
/// gate refuses from its attributes, whose data it does not decode
/// (README, "Refused from the attributes") and which decoding whole refuses
/// only for its data (it does not fit the type, a hop failed, it names
/// another key).
pub fn agrees<T>(applied: Option<Outcome>, decoded: &Result<T, DecodeError>) -> bool {
    match (applied, decoded) {
        (Some(_), Ok(_)) | (None, Err(_)) => true,
        (Some(Outcome::Stale), Err(error)) => matches!(
            error.kind(),
            DecodeErrorKind::PayloadMismatch(_)
                | DecodeErrorKind::Upcast(_)
                | DecodeErrorKind::KeyMismatch { .. }
        ),
        _ => false,
    }
}
