//! [`Message`]: one message from the broker, and [`Address`]: where the
//! broker says it was sent.

use std::borrow::Cow;

/// Where the transport says a message was sent: on NATS, the entity and
/// key of its subject (`<prefix>.<entity>.<key>`).
///
/// The wire is untrusted: anyone allowed to publish on one subject could
/// otherwise write any key by putting it in the envelope. A message that
/// the transport addressed applies only if its envelope names exactly the
/// same entity (`type`) and key (`subject`); otherwise it is parked as
/// [misaddressed](super::ParkKind::Misaddressed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address<'a> {
    /// The transport does not address messages (a queue, a test): the
    /// envelope alone says which entity and key it is for.
    Unaddressed,
    /// Sent to this entity and key.
    Key {
        /// The entity name.
        entity: &'a str,
        /// The entity key, decoded from the transport's form.
        key: Cow<'a, str>,
    },
    /// The transport's address is not the address of a state event (a
    /// subject without a key, an undecodable key): why, and the entity it
    /// names when it names one. Such a message is parked as misaddressed
    /// (by a [`DurableRouter`](crate::store::DurableRouter), under that
    /// entity; skipped when it names none).
    Invalid(InvalidAddress<'a>),
}

/// Why a transport address is not the address of a state event, and the
/// entity it names, if any (on NATS, the `<entity>` token of
/// `<prefix>.<entity>.<bad key>`). Made from a reason alone with
/// `.into()` (no entity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidAddress<'a> {
    /// The entity the address names, when it names one.
    pub entity: Option<&'a str>,
    /// Why it is not the address of a state event.
    pub reason: Cow<'a, str>,
}

impl<'a> InvalidAddress<'a> {
    /// An invalid address naming `entity`, for `reason`.
    pub fn of_entity(entity: &'a str, reason: impl Into<Cow<'a, str>>) -> Self {
        InvalidAddress {
            entity: Some(entity),
            reason: reason.into(),
        }
    }
}

impl AsRef<str> for InvalidAddress<'_> {
    fn as_ref(&self) -> &str {
        &self.reason
    }
}

impl core::fmt::Display for InvalidAddress<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl<'a> From<Cow<'a, str>> for InvalidAddress<'a> {
    fn from(reason: Cow<'a, str>) -> Self {
        InvalidAddress {
            entity: None,
            reason,
        }
    }
}

impl From<String> for InvalidAddress<'_> {
    fn from(reason: String) -> Self {
        Cow::<str>::Owned(reason).into()
    }
}

impl<'a> From<&'a str> for InvalidAddress<'a> {
    fn from(reason: &'a str) -> Self {
        Cow::Borrowed(reason).into()
    }
}

impl Address<'_> {
    /// The key the transport addressed, if it did.
    pub fn key(&self) -> Option<&str> {
        match self {
            Address::Key { key, .. } => Some(key),
            Address::Unaddressed | Address::Invalid(_) => None,
        }
    }
}

/// One message from the broker.
#[derive(Clone, Debug)]
pub struct Message<'a> {
    /// The broker's sequence of the message in its stream (or partition
    /// offset): strictly increasing in delivery order.
    pub stream_sequence: u64,
    /// The subject (topic) it arrived on, as the broker gave it; kept with
    /// a parked message.
    pub subject: &'a str,
    /// The CloudEvents JSON body (structured mode).
    pub payload: &'a [u8],
    /// Set when the transport already refused the message (say, a payload
    /// over the size limit): it is parked with this reason, undecoded.
    pub refused: Option<&'a str>,
    /// Where the transport says it was sent.
    pub address: Address<'a>,
}

impl<'a> Message<'a> {
    /// A message to decode and apply, with no transport address.
    pub fn new(stream_sequence: u64, subject: &'a str, payload: &'a [u8]) -> Self {
        Message {
            stream_sequence,
            subject,
            payload,
            refused: None,
            address: Address::Unaddressed,
        }
    }

    /// The same message, sent by the transport to `address`.
    #[must_use]
    pub fn addressed(mut self, address: Address<'a>) -> Self {
        self.address = address;
        self
    }

    /// The same message, addressed to `key` of `entity`.
    #[must_use]
    pub fn addressed_to(self, entity: &'a str, key: impl Into<Cow<'a, str>>) -> Self {
        self.addressed(Address::Key {
            entity,
            key: key.into(),
        })
    }

    /// The same message, refused by the transport for `reason`.
    #[must_use]
    pub fn refused(mut self, reason: &'a str) -> Self {
        self.refused = Some(reason);
        self
    }
}
