//! Subjects: `<prefix>.<entity>.<encoded key>`.
//!
//! # The key encoding
//!
//! Every key (any Rust `String`, including the empty one) maps to a subject
//! suffix of one or more tokens, and back, so that a key never changes what
//! a subject means (no whitespace, `*`, `>` or empty token reaches the
//! subject), and every subject decodes to at most one key:
//!
//! - ASCII letters and digits and `-` `_` `@` `+` `=` `:` `,` `~` (the *safe*
//!   characters) stand for themselves.
//! - A `.` stands for itself when it separates two non-empty parts of the
//!   key (`a.b` stays `a.b`, two tokens, which the entity's wildcard
//!   `<prefix>.<entity>.>` still matches). A `.` at the start or the end of
//!   the key, or next to another `.`, is escaped as `%2E`.
//! - Every other character is escaped byte by byte: each byte of its UTF-8
//!   form becomes `%` and two upper-case hexadecimal digits (a space is
//!   `%20`, `%` is `%25`, `*` is `%2A`, `é` is `%C3%A9`).
//! - The empty key is the single token `%` (a `%` that no two hexadecimal
//!   digits follow, which no other key produces).
//!
//! Decoding is the exact inverse and accepts only what the encoder writes:
//! lower-case hexadecimal digits, an escaped safe character (`%41` for `A`),
//! an escaped `.` between two non-empty parts, a character outside the safe
//! set, or bytes that are not UTF-8 are refused (two subjects never decode to
//! the same key). Keys made only of safe characters and inner dots, which are
//! most keys (`c-1`, `42`, `ada@example.com`, UUIDs), are their own subject
//! tokens.
//!
//! A subject is at most [`MAX_SUBJECT_BYTES`] bytes long.

use std::borrow::Cow;

use super::NatsError;

/// The longest subject ecst publishes on, in bytes: 4096 (nats-server's
/// default `max_control_line`) less 768 for the rest of the longest protocol
/// line that carries it (a delivered message's `$JS.ACK` reply subject,
/// which names the stream and the consumer, and the sizes). A key of 1024
/// bytes that needs escaping throughout (3072 bytes encoded) still fits with
/// a prefix and an entity of up to 254 bytes.
pub const MAX_SUBJECT_BYTES: usize = 4096 - 768;

/// Builds and checks the subjects of state events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

/// What a subject of a state event addresses: see [`Subjects::address`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address<'s> {
    /// The entity token (the CloudEvents `type` of its events).
    pub entity: &'s str,
    /// The decoded key; borrowed from the subject when it needed no
    /// decoding.
    pub key: Cow<'s, str>,
}

/// Why a subject is not the subject of a state event (see
/// [`Subjects::address`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectError {
    /// The subject is not under `<prefix>.`.
    #[error("the subject is not under the prefix `{prefix}.`")]
    OutsidePrefix {
        /// The prefix expected.
        prefix: String,
    },
    /// `<prefix>.<entity>` with no key tokens after it (or no entity).
    #[error("the subject has no key after the entity")]
    NoKey,
    /// An empty token: a leading, trailing or double `.`.
    #[error("the subject has an empty token (a leading, trailing or double `.`)")]
    EmptyToken,
    /// A character the encoding never writes: whitespace, `*`, `>`, or any
    /// character outside the safe set.
    #[error("the key holds `{character}` at byte {at}, which the key encoding never writes")]
    Unencoded {
        /// The character.
        character: char,
        /// Its byte offset in the encoded key.
        at: usize,
    },
    /// A `%` not followed by two upper-case hexadecimal digits.
    #[error("bad escape at byte {at} of the encoded key (`%` and two upper-case hex digits)")]
    BadEscape {
        /// The byte offset of the `%` in the encoded key.
        at: usize,
    },
    /// The escapes do not spell UTF-8.
    #[error("the escapes of the key do not spell UTF-8")]
    NotUtf8,
    /// A well-formed encoding that is not the one the encoder writes for
    /// its key (`%41` for `A`, an escaped inner `.`, a literal `.` next to an
    /// escaped one): refused so that one key has one subject.
    #[error("the key is not encoded canonically: its key is encoded `{canonical}`")]
    NotCanonical {
        /// The canonical encoding of the same key.
        canonical: String,
    },
}

impl Subjects {
    /// Subjects under `prefix` (one or more dot-separated tokens, e.g.
    /// `ecst` or `acme.crm`).
    pub fn new(prefix: impl Into<String>) -> Result<Self, NatsError> {
        let prefix = prefix.into();
        check_tokens(&prefix).map_err(|reason| NatsError::InvalidSubject {
            subject: prefix.clone(),
            reason,
        })?;
        Ok(Subjects { prefix })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The subject of `key` of `entity`: `<prefix>.<entity>.<encoded key>`,
    /// with the key encoded as the [module documentation](self) describes,
    /// so every key has a subject.
    ///
    /// Errors: [`NatsError::InvalidSubject`] for an entity that is not one
    /// token (empty, or holding `.`, whitespace, `*` or `>`);
    /// [`NatsError::SubjectTooLong`] for a subject over
    /// [`MAX_SUBJECT_BYTES`].
    pub fn event(&self, entity: &str, key: &str) -> Result<String, NatsError> {
        check_entity(entity).map_err(|reason| NatsError::InvalidSubject {
            subject: format!("{}.{entity}", self.prefix),
            reason,
        })?;
        let head = self.prefix.len() + 1 + entity.len() + 1;
        let length = head + encoded_len(key);
        if length > MAX_SUBJECT_BYTES {
            return Err(NatsError::SubjectTooLong {
                entity: entity.to_owned(),
                length,
                limit: MAX_SUBJECT_BYTES,
            });
        }
        let mut subject = String::with_capacity(length);
        subject.push_str(&self.prefix);
        subject.push('.');
        subject.push_str(entity);
        subject.push('.');
        encode_into(key, &mut subject);
        Ok(subject)
    }

    /// What `subject` addresses: the entity token and the decoded key of
    /// `<prefix>.<entity>.<encoded key>`.
    ///
    /// Contract (for consumers, e.g. a follower that needs the key of a
    /// message whose payload cannot name it):
    ///
    /// - The key part is checked: `Ok` only when it is the canonical
    ///   encoding of `address.key`, so that for every entity `event`
    ///   accepts, `Subjects::event(address.entity, &address.key)` gives
    ///   `subject` back, byte for byte. The key is borrowed from the subject
    ///   when it needed no decoding (most keys).
    /// - The entity is not checked: it is the first token after the prefix,
    ///   whatever it is (NATS delivers `ecst.cust*omer.c-1` as an ordinary
    ///   subject, which `event` would never write). Compare it with the
    ///   entity you expect, as the follower does.
    /// - [`SubjectError::OutsidePrefix`]: not under `<prefix>.`;
    ///   [`SubjectError::NoKey`]: `<prefix>.<entity>` alone;
    ///   [`SubjectError::EmptyToken`], [`SubjectError::Unencoded`],
    ///   [`SubjectError::BadEscape`], [`SubjectError::NotUtf8`],
    ///   [`SubjectError::NotCanonical`]: the key part is not an encoding
    ///   ecst writes (say, a producer in another language that did not
    ///   escape a space or `/`). Such a message has no key: park it without
    ///   one rather than guess.
    /// - The length is not checked: a subject the server delivered is
    ///   addressed whatever its length.
    pub fn address<'s>(&self, subject: &'s str) -> Result<Address<'s>, SubjectError> {
        let rest = subject
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .ok_or_else(|| SubjectError::OutsidePrefix {
                prefix: self.prefix.clone(),
            })?;
        let (entity, key) = rest.split_once('.').ok_or(SubjectError::NoKey)?;
        if entity.is_empty() {
            return Err(SubjectError::EmptyToken);
        }
        if key.is_empty() {
            // `<prefix>.<entity>.`: an empty token where the key should be.
            return Err(SubjectError::NoKey);
        }
        let key = decode_key(key)?;
        Ok(Address { entity, key })
    }

    /// What `subject` addresses, as a consumer's
    /// [`Address`](crate::consume::Address): the entity and key of
    /// [`Subjects::address`], or, when it is not the subject of a state
    /// event, why, with the entity token when the subject is under the
    /// prefix and has one (`<prefix>.<entity>` or
    /// `<prefix>.<entity>.<bad key>`), so that a router parks it under
    /// that entity as its replica would.
    pub fn message_address<'s>(&self, subject: &'s str) -> crate::consume::Address<'s> {
        use crate::consume::{Address as Consumed, InvalidAddress};
        match self.address(subject) {
            Ok(address) => Consumed::Key {
                entity: address.entity,
                key: address.key,
            },
            Err(error) => {
                let reason =
                    format!("subject `{subject}` is not the subject of a state event: {error}");
                let entity = subject
                    .strip_prefix(self.prefix.as_str())
                    .and_then(|rest| rest.strip_prefix('.'))
                    .map(|rest| rest.split_once('.').map_or(rest, |(entity, _)| entity))
                    .filter(|entity| !entity.is_empty());
                Consumed::Invalid(InvalidAddress {
                    entity,
                    reason: reason.into(),
                })
            }
        }
    }

    /// The decoded key of a subject of `entity` (borrowed from the subject
    /// when it needed no decoding), or `None` for a subject of another
    /// entity or one that is not an encoding ecst writes.
    /// [`Subjects::address`] says why a subject has no key.
    pub fn key_of<'s>(&self, entity: &str, subject: &'s str) -> Option<Cow<'s, str>> {
        self.address(subject)
            .ok()
            .filter(|address| address.entity == entity)
            .map(|address| address.key)
    }

    /// The wildcard of every event of `entity`: `<prefix>.<entity>.>`.
    pub fn entity(&self, entity: &str) -> String {
        format!("{}.{entity}.>", self.prefix)
    }

    /// The wildcard of every event under the prefix: `<prefix>.>`.
    pub fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// `true` if `subject` is the prefix itself or under it: a subject the
    /// state stream over `<prefix>.>` captures (or would, were it longer).
    pub fn is_under_prefix(&self, subject: &str) -> bool {
        subject
            .strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    }

    /// Where an entity's owner answers bootstrap requests:
    /// `_ecst.bootstrap.<prefix>.<entity>`.
    ///
    /// Deliberately outside `<prefix>.>`: the state stream captures every
    /// subject under the prefix, so a request sent there would be stored in
    /// the stream, and JetStream would send its publish acknowledgement to
    /// the requester's reply inbox, where it would pass for an extra event
    /// of the answer.
    pub fn bootstrap(&self, entity: &str) -> String {
        format!("_ecst.bootstrap.{}.{entity}", self.prefix)
    }
}

/// Encodes `key` as subject tokens (see the [module documentation](self)).
/// Exposed for tests and tools; [`Subjects::event`] is what publishes.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(encoded_len(key));
    encode_into(key, &mut out);
    out
}

/// Decodes subject tokens written by [`encode_key`] back into the key,
/// refusing anything the encoder would not have written.
pub fn decode_key(encoded: &str) -> Result<Cow<'_, str>, SubjectError> {
    if encoded == "%" {
        return Ok(Cow::Borrowed(""));
    }
    // The common case, checked a byte at a time against a table: one token
    // of safe characters only, its own encoding.
    if !encoded.is_empty() && encoded.bytes().all(|byte| SAFE_BYTES[usize::from(byte)]) {
        return Ok(Cow::Borrowed(encoded));
    }
    if encoded.is_empty() || encoded.split('.').any(str::is_empty) {
        return Err(SubjectError::EmptyToken);
    }
    let bytes = encoded.as_bytes();
    // Filled from the first escape on.
    let mut decoded: Option<Vec<u8>> = None;
    let mut at = 0;
    while at < bytes.len() {
        let byte = match bytes[at] {
            b'%' => {
                let digit = |i: usize| bytes.get(at + i).copied().and_then(upper_hex);
                let (Some(high), Some(low)) = (digit(1), digit(2)) else {
                    return Err(SubjectError::BadEscape { at });
                };
                decoded
                    .get_or_insert_with(|| {
                        let mut out = Vec::with_capacity(encoded.len());
                        out.extend_from_slice(&bytes[..at]);
                        out
                    })
                    .push(high << 4 | low);
                at += 3;
                continue;
            }
            b'.' => b'.',
            byte if byte.is_ascii() && is_safe(char::from(byte)) => byte,
            _ => {
                // Everything before `at` is ASCII: `at` starts a character.
                let character = encoded[at..].chars().next().unwrap_or('\u{FFFD}');
                return Err(SubjectError::Unencoded { character, at });
            }
        };
        if let Some(out) = decoded.as_mut() {
            out.push(byte);
        }
        at += 1;
    }
    let Some(decoded) = decoded else {
        // Safe characters and dots between non-empty tokens: the key is its
        // own encoding.
        return Ok(Cow::Borrowed(encoded));
    };
    let key = String::from_utf8(decoded).map_err(|_| SubjectError::NotUtf8)?;
    let canonical = encode_key(&key);
    if canonical != encoded {
        return Err(SubjectError::NotCanonical { canonical });
    }
    Ok(Cow::Owned(key))
}

/// The characters that stand for themselves in an encoded key.
const fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '@' | '+' | '=' | ':' | ',' | '~')
}

/// [`is_safe`] of every byte (a non-ASCII byte is not safe).
const SAFE_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 128 {
        table[byte] = is_safe(byte as u8 as char);
        byte += 1;
    }
    table
};

/// The value of an upper-case hexadecimal digit.
fn upper_hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// `true` if the `.` at byte `at` of `key` separates two non-empty parts.
fn inner_dot(key: &[u8], at: usize) -> bool {
    at > 0 && at + 1 < key.len() && key[at - 1] != b'.' && key[at + 1] != b'.'
}

fn encoded_len(key: &str) -> usize {
    if key.is_empty() {
        return 1;
    }
    let bytes = key.as_bytes();
    bytes
        .iter()
        .enumerate()
        .map(|(at, &b)| match b {
            b'.' if inner_dot(bytes, at) => 1,
            b if b.is_ascii() && is_safe(char::from(b)) => 1,
            _ => 3,
        })
        .sum()
}

fn encode_into(key: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if key.is_empty() {
        out.push('%');
        return;
    }
    let bytes = key.as_bytes();
    for (at, &b) in bytes.iter().enumerate() {
        let literal = match b {
            b'.' => inner_dot(bytes, at),
            b => b.is_ascii() && is_safe(char::from(b)),
        };
        if literal {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
}

/// An entity name: one non-empty token of safe characters.
fn check_entity(entity: &str) -> Result<(), &'static str> {
    if entity.is_empty() {
        return Err("the entity is empty");
    }
    if entity.contains('.') {
        return Err("the entity holds a `.` (an entity is one subject token)");
    }
    check_tokens(entity)
}

fn check_tokens(text: &str) -> Result<(), &'static str> {
    if text.is_empty() {
        return Err("it is empty");
    }
    if text.split('.').any(str::is_empty) {
        return Err("it has an empty token (a leading, trailing or double `.`)");
    }
    if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
    {
        return Err("it contains whitespace, a control character, `*` or `>`");
    }
    Ok(())
}

/// `true` if `subject` may be published to: not empty, no empty token, no
/// whitespace or control character, no wildcard, at most
/// [`MAX_SUBJECT_BYTES`].
pub(crate) fn is_publishable(subject: &str) -> bool {
    subject.len() <= MAX_SUBJECT_BYTES && check_tokens(subject).is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_invalid_subject_names_its_entity_when_it_has_one() {
        use crate::consume::Address as Consumed;
        let subjects = Subjects::new("bank").unwrap();
        let entity_of = |subject| match subjects.message_address(subject) {
            Consumed::Invalid(invalid) => invalid.entity,
            other => panic!("{subject}: {other:?}"),
        };
        assert_eq!(entity_of("bank.customer.a%41"), Some("customer"));
        assert_eq!(entity_of("bank.customer"), Some("customer"));
        assert_eq!(entity_of("bank..c-1"), None);
        assert_eq!(entity_of("other.customer.a%41"), None);
        assert!(matches!(
            subjects.message_address("bank.customer.c-1"),
            Consumed::Key {
                entity: "customer",
                ..
            }
        ));
    }

    use super::*;

    #[test]
    fn safe_keys_are_their_own_subject_tokens() {
        let subjects = Subjects::new("acme.crm").unwrap();
        assert_eq!(
            subjects.event("customer", "c-1").unwrap(),
            "acme.crm.customer.c-1"
        );
        assert_eq!(
            subjects.event("customer", "ada@example.com").unwrap(),
            "acme.crm.customer.ada@example.com"
        );
        assert_eq!(
            subjects.event("customer", "a.b").unwrap(),
            "acme.crm.customer.a.b"
        );
        assert_eq!(subjects.entity("customer"), "acme.crm.customer.>");
        // Not captured by the state stream over `acme.crm.>`.
        assert_eq!(
            subjects.bootstrap("customer"),
            "_ecst.bootstrap.acme.crm.customer"
        );
        assert!(!subjects.is_under_prefix(&subjects.bootstrap("customer")));
        assert!(subjects.is_under_prefix("acme.crm"));
        assert!(subjects.is_under_prefix("acme.crm.customer.c-1"));
        assert!(!subjects.is_under_prefix("acme.crmx.customer"));
        assert!(Subjects::new("bad prefix").is_err());
    }

    #[test]
    fn every_other_key_is_escaped_and_decodes_back() {
        let subjects = Subjects::new("acme.crm").unwrap();
        for (key, encoded) in [
            ("", "%"),
            ("%", "%25"),
            ("a b", "a%20b"),
            ("a.*", "a.%2A"),
            (">", "%3E"),
            ("a..b", "a%2E%2Eb"),
            (".a", "%2Ea"),
            ("a.", "a%2E"),
            (".", "%2E"),
            ("é", "%C3%A9"),
            ("a/b", "a%2Fb"),
            ("x.y z.w", "x.y%20z.w"),
            ("\0\n", "%00%0A"),
        ] {
            assert_eq!(encode_key(key), encoded, "{key:?}");
            let subject = subjects.event("customer", key).unwrap();
            assert_eq!(subject, format!("acme.crm.customer.{encoded}"));
            assert!(is_publishable(&subject), "{subject}");
            let address = subjects.address(&subject).unwrap();
            assert_eq!(address.entity, "customer");
            assert_eq!(address.key, key);
            assert_eq!(subjects.key_of("customer", &subject).as_deref(), Some(key));
            assert_eq!(subjects.key_of("other", &subject), None);
        }
    }

    #[test]
    fn refuses_every_encoding_the_encoder_does_not_write() {
        for (bad, why) in [
            ("", SubjectError::EmptyToken),
            ("a..b", SubjectError::EmptyToken),
            (".a", SubjectError::EmptyToken),
            ("a.", SubjectError::EmptyToken),
            (
                "a b",
                SubjectError::Unencoded {
                    character: ' ',
                    at: 1,
                },
            ),
            (
                "a/b",
                SubjectError::Unencoded {
                    character: '/',
                    at: 1,
                },
            ),
            (
                "é",
                SubjectError::Unencoded {
                    character: 'é',
                    at: 0,
                },
            ),
            (
                "*",
                SubjectError::Unencoded {
                    character: '*',
                    at: 0,
                },
            ),
            ("%2", SubjectError::BadEscape { at: 0 }),
            ("a%2e", SubjectError::BadEscape { at: 1 }),
            ("%%", SubjectError::BadEscape { at: 0 }),
            ("%G0", SubjectError::BadEscape { at: 0 }),
            ("%FF", SubjectError::NotUtf8),
            ("%C3", SubjectError::NotUtf8),
        ] {
            assert_eq!(decode_key(bad), Err(why), "{bad:?}");
        }
        for (bad, canonical) in [
            ("%41", "A"),
            ("a%2Eb", "a.b"),
            ("a.%2Eb", "a%2E%2Eb"),
            ("%2E.a", "%2E%2Ea"),
            ("%2D", "-"),
        ] {
            assert_eq!(
                decode_key(bad),
                Err(SubjectError::NotCanonical {
                    canonical: canonical.to_owned()
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn addresses_only_subjects_of_events() {
        let subjects = Subjects::new("acme.crm").unwrap();
        let address = subjects.address("acme.crm.customer.a.b").unwrap();
        assert_eq!(address.entity, "customer");
        assert!(matches!(address.key, Cow::Borrowed("a.b")));
        assert_eq!(
            subjects
                .key_of("customer", "acme.crm.customer.a.b")
                .as_deref(),
            Some("a.b")
        );
        assert_eq!(
            subjects
                .key_of("customer", "acme.crm.customer.a%20b")
                .as_deref(),
            Some("a b")
        );
        assert_eq!(
            subjects.address("acme.crmx.customer.c-1"),
            Err(SubjectError::OutsidePrefix {
                prefix: "acme.crm".into()
            })
        );
        assert!(matches!(
            subjects.address("acme.crm"),
            Err(SubjectError::OutsidePrefix { .. })
        ));
        assert_eq!(
            subjects.address("acme.crm.customer"),
            Err(SubjectError::NoKey)
        );
        assert_eq!(
            subjects.address("acme.crm.customer."),
            Err(SubjectError::NoKey)
        );
        assert_eq!(
            subjects.address("acme.crm..c-1"),
            Err(SubjectError::EmptyToken)
        );
        assert_eq!(subjects.key_of("customer", "acme.crm.customers.c-1"), None);
        assert_eq!(subjects.key_of("customer", "acme.crm.customer."), None);
        assert_eq!(subjects.key_of("customer", "acme.crmx.customer.c-1"), None);
        assert_eq!(subjects.key_of("customer", "acme.crm.customer.a%41"), None);
    }

    #[test]
    fn refuses_bad_entities_and_long_subjects() {
        let subjects = Subjects::new("acme.crm").unwrap();
        for bad in ["", "a.b", "a b", "*", ">", "a\tb"] {
            assert!(
                matches!(
                    subjects.event(bad, "c-1"),
                    Err(NatsError::InvalidSubject { .. })
                ),
                "{bad:?}"
            );
        }
        let head = "acme.crm.customer.".len();
        let longest = "k".repeat(MAX_SUBJECT_BYTES - head);
        assert_eq!(
            subjects.event("customer", &longest).unwrap().len(),
            MAX_SUBJECT_BYTES
        );
        let longer = format!("{longest}k");
        match subjects.event("customer", &longer) {
            Err(NatsError::SubjectTooLong {
                entity,
                length,
                limit,
            }) => {
                assert_eq!(entity, "customer");
                assert_eq!(length, MAX_SUBJECT_BYTES + 1);
                assert_eq!(limit, MAX_SUBJECT_BYTES);
            }
            other => panic!("expected SubjectTooLong, got {other:?}"),
        }
        // Escapes count three bytes each.
        let spaces = " ".repeat((MAX_SUBJECT_BYTES - head) / 3 + 1);
        assert!(matches!(
            subjects.event("customer", &spaces),
            Err(NatsError::SubjectTooLong { .. })
        ));
    }
}
