//! NATS subjects and the key encoding: `Subjects::address`, `decode_key`,
//! `encode_key`.
//!
//! Invariants: nothing panics; `decode_key` accepts only canonical
//! encodings (decode succeeds => `encode_key(decoded)` is the input);
//! `decode_key(encode_key(k)) == k` for every string `k`; an address of a
//! subject that could be published (no whitespace, control character or
//! wildcard, at most `MAX_SUBJECT_BYTES`) is what `Subjects::event` writes
//! for its entity and key, byte for byte; and `Subjects::event` of any key
//! addresses back to the same entity and key.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use ecst::nats::{decode_key, encode_key, Subjects, MAX_SUBJECT_BYTES};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// `None`: the prefix `ecst`.
    prefix: Option<&'a str>,
    entity: &'a str,
    /// Tried as an encoded key, a key and (after `<prefix>.`) a subject.
    text: &'a str,
}

fn publishable(subject: &str) -> bool {
    subject.len() <= MAX_SUBJECT_BYTES
        && !subject
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let text = input.text;

    // decode: canonical only.
    if let Ok(key) = decode_key(text) {
        assert_eq!(encode_key(&key), text, "decode_key accepted a non-canonical encoding");
    }
    // encode: reversible for every key.
    let encoded = encode_key(text);
    match decode_key(&encoded) {
        Ok(key) => assert_eq!(key, text, "decode(encode(k)) != k for {encoded:?}"),
        Err(error) => panic!("decode_key refused encode_key({text:?}) = {encoded:?}: {error}"),
    }

    let Ok(subjects) = Subjects::new(input.prefix.unwrap_or("ecst")) else {
        return;
    };
    for subject in [text.to_owned(), format!("{}.{text}", subjects.prefix())] {
        if let Ok(address) = subjects.address(&subject) {
            if publishable(&subject) {
                let again = subjects
                    .event(address.entity, &address.key)
                    .unwrap_or_else(|e| panic!("address of {subject:?} has no subject: {e}"));
                assert_eq!(again, subject, "event(address(s)) != s");
            }
        }
    }
    if let Ok(subject) = subjects.event(input.entity, text) {
        assert!(subject.len() <= MAX_SUBJECT_BYTES);
        let address = subjects
            .address(&subject)
            .unwrap_or_else(|e| panic!("event wrote {subject:?}, which does not address: {e}"));
        assert_eq!(address.entity, input.entity);
        assert_eq!(address.key, text);
    }
});
