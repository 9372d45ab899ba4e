//! One nesting limit for `data` on every path (red team, issue 12): a
//! `data` read in place inside the envelope may nest 126 levels (serde_json's
//! limit of 128, less the envelope's own level, less one); read raw (`data`
//! before the attributes that pick its version, or by a `Router`) it is
//! decoded on its own, where serde_json allows one level more. A `Router`
//! used to insert a state of 127 levels that a `Replica` and the durable
//! replicas refused: same bytes, different contents. Now every reader
//! refuses it, in every layout.

use ecst::store::blocking::{BlockingReplica, BlockingRouter};
use ecst::store::{DurableRouter, MemoryRouterStore, MemoryStore, Message};
use ecst::{DecodeErrorKind, Replica, Router};

#[path = "support/gated.rs"]
mod gated;

use gated::Doc;

/// An upsert of `data`, written with `data` last (as ecst writes it) or
/// first (read raw).
fn event(data: &str, data_first: bool) -> Vec<u8> {
    let attributes = r#""specversion":"1.0","id":"e-1","source":"urn:test","type":"doc","subject":"k","sequence":5,"schemaversion":1,"operation":"upsert""#;
    if data_first {
        format!(r#"{{"data":{data},{attributes}}}"#)
    } else {
        format!(r#"{{{attributes},"data":{data}}}"#)
    }
    .into_bytes()
}

/// `{"id":"k","v":[[...1...]]}`: `levels` levels deep in all, the object
/// included; `noise` adds a string full of brackets, which do not nest.
fn doc(levels: usize, noise: bool) -> String {
    let arrays = levels - 1;
    let noise = if noise {
        format!(r#","n":"{}\"{}""#, "[".repeat(300), "{".repeat(300))
    } else {
        String::new()
    };
    format!(
        r#"{{"id":"k"{noise},"v":{}1{}}}"#,
        "[".repeat(arrays),
        "]".repeat(arrays)
    )
}

/// Whether each reader holds `k` after the event: `Replica`, `Router`,
/// durable router, durable replica.
fn held_by_each(bytes: &[u8]) -> [bool; 4] {
    let mut replica = Replica::<Doc>::new();
    let by_replica = replica.apply_json(bytes);
    if let Err(e) = &by_replica {
        assert!(
            matches!(e.kind(), DecodeErrorKind::Malformed(_)),
            "too deep is malformed: {e}"
        );
    }
    let mut router = Router::new();
    router.add(Replica::<Doc>::new()).expect("one entity");
    let by_router = router.apply_json(bytes);
    if let Err(e) = &by_router {
        assert!(
            matches!(e.kind(), DecodeErrorKind::Malformed(_)),
            "too deep is malformed: {e}"
        );
    }
    let mut durable_router = BlockingRouter::open(
        DurableRouter::builder(MemoryRouterStore::new())
            .register::<Doc>()
            .expect("one entity"),
    )
    .expect("opens");
    durable_router
        .apply_batch(&[Message::new(1, "events.doc", bytes)])
        .expect("commits");
    let mut durable = BlockingReplica::<Doc, _>::open(MemoryStore::new()).expect("opens");
    durable
        .apply_batch(&[Message::new(1, "events.doc", bytes)])
        .expect("commits");
    [
        replica.get("k").is_some(),
        router.replica::<Doc>().expect("routed").get("k").is_some(),
        durable_router
            .replica::<Doc>()
            .expect("registered")
            .get("k")
            .is_some(),
        durable.replica().get("k").is_some(),
    ]
}

#[test]
fn every_reader_keeps_126_levels_and_refuses_127() {
    for data_first in [false, true] {
        for noise in [false, true] {
            for (levels, held) in [(126, true), (127, false), (130, false)] {
                let bytes = event(&doc(levels, noise), data_first);
                assert_eq!(
                    held_by_each(&bytes),
                    [held; 4],
                    "{levels} levels, data first: {data_first}, brackets in a string: {noise} \
                     (Replica, Router, durable router, durable replica)"
                );
            }
            // A field the type does not have is skipped, unbounded, on
            // every path: however deep, the state is kept.
            let skipped = format!(
                r#"{{"id":"k","v":1,"x":{}{}}}"#,
                "[".repeat(200),
                "]".repeat(200)
            );
            assert_eq!(
                held_by_each(&event(&skipped, data_first)),
                [true; 4],
                "a deep unknown field, data first: {data_first}"
            );
        }
    }
}
