//! Structured-mode CloudEvents JSON from arbitrary bytes, into
//! `Envelope::from_json`, `Replica::apply_json` and `Router::apply_json`.
//!
//! Invariants: nothing panics; the three agree on accepting or refusing;
//! a refusal leaves the replica exactly as it was and has a non-empty
//! message; an accepted envelope has a sequence up to `Sequence::MAX`, a key
//! of at most `MAX_KEY_BYTES` bytes without control characters, and survives
//! `to_json` / `from_json` unchanged.
#![no_main]

use ecst::{Envelope, StateEvent};
use ecst_fuzz::{agrees, check_accepted, customers, orders, router, snapshot, Customer, Order};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let customer = Envelope::<Customer>::from_json(data);
    let order = Envelope::<Order>::from_json(data);
    if let Ok(envelope) = &customer {
        check_accepted(envelope);
    }
    if let Ok(envelope) = &order {
        check_accepted(envelope);
    }
    assert!(
        customer.is_err() || order.is_err(),
        "one event decoded as two entities"
    );

    let mut replica = customers();
    let before = snapshot(&replica);
    match replica.apply_json(data) {
        Ok(outcome) => {
            assert!(
                agrees(Some(outcome), &customer),
                "apply_json accepted ({outcome:?}) what from_json refused"
            );
            if customer.is_err() {
                assert_eq!(snapshot(&replica), before, "a stale event changed the replica");
            }
        }
        Err(error) => {
            assert!(customer.is_err(), "apply_json refused what from_json accepted: {error}");
            assert!(!error.to_string().is_empty());
            assert_eq!(snapshot(&replica), before, "a refused event changed the replica");
        }
    }
    let mut replica = orders();
    let before = snapshot(&replica);
    match replica.apply_json(data) {
        Ok(outcome) => {
            assert!(
                agrees(Some(outcome), &order),
                "apply_json accepted ({outcome:?}) what from_json refused"
            );
            if order.is_err() {
                assert_eq!(snapshot(&replica), before, "a stale event changed the replica");
            }
        }
        Err(error) => {
            assert!(order.is_err(), "apply_json refused what from_json accepted: {error}");
            assert_eq!(snapshot(&replica), before, "a refused event changed the replica");
        }
    }

    let mut router = router();
    match router.apply_json(data) {
        Ok(routed) if routed.entity == Customer::ENTITY => assert!(
            agrees(Some(routed.outcome), &customer),
            "the router accepted a customer from_json refused"
        ),
        Ok(routed) => {
            assert_eq!(routed.entity, Order::ENTITY);
            assert!(
                agrees(Some(routed.outcome), &order),
                "the router accepted an order from_json refused"
            )
        }
        Err(error) => {
            assert!(!error.to_string().is_empty());
            assert!(
                customer.is_err() && order.is_err(),
                "the router refused what from_json accepted: {error}"
            );
        }
    }
});
