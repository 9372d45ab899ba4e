//! `Replica::import_snapshot` on arbitrary bytes.
//!
//! Invariants: nothing panics; a refused snapshot leaves the replica as it
//! was; an imported snapshot, written with `write_snapshot` and imported
//! into a fresh replica, writes the same bytes again.
#![no_main]

use ecst::{Replica, StateEvent};
use ecst_fuzz::{customers, orders, snapshot};
use libfuzzer_sys::fuzz_target;

fn check<T: StateEvent>(mut replica: Replica<T>, data: &[u8]) {
    let before = snapshot(&replica);
    match replica.import_snapshot(data) {
        Err(error) => {
            assert!(!error.to_string().is_empty());
            assert_eq!(snapshot(&replica), before, "a refused snapshot changed the replica");
        }
        Ok(_) => {
            // Into a fresh replica, the import of the export is the same.
            let mut fresh = Replica::<T>::new();
            fresh.import_snapshot(data).expect("imports into a fresh replica too");
            let first = snapshot(&fresh);
            let mut again = Replica::<T>::new();
            if let Err(error) = again.import_snapshot(&first) {
                panic!(
                    "an exported snapshot does not import: {error}\n{}",
                    String::from_utf8_lossy(&first)
                );
            }
            let second = snapshot(&again);
            assert_eq!(
                String::from_utf8_lossy(&first),
                String::from_utf8_lossy(&second),
                "export/import/export is not stable"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(customers(), data);
    check(orders(), data);
});
