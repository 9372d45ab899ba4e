//! Subjects: `<prefix>.<entity>.<key>`.

use super::NatsError;

/// Builds and checks the subjects of state events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
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

    /// The subject of `key` of `entity`.
    ///
    /// A key may contain dots (it then spans several tokens, which the
    /// entity's wildcard still matches) but no whitespace, `*` or `>`, and
    /// no empty token: those would change what the subject means.
    pub fn event(&self, entity: &str, key: &str) -> Result<String, NatsError> {
        let subject = format!("{}.{entity}.{key}", self.prefix);
        check_tokens(key)
            .and_then(|()| check_tokens(entity))
            .map_err(|reason| NatsError::InvalidSubject {
                subject: subject.clone(),
                reason,
            })?;
        Ok(subject)
    }

    /// The key a subject of `entity` addresses (`<prefix>.<entity>.<key>`),
    /// or `None` for a subject that is not one.
    pub fn key_of<'s>(&self, entity: &str, subject: &'s str) -> Option<&'s str> {
        let key = subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('.')?
            .strip_prefix(entity)?
            .strip_prefix('.')?;
        (!key.is_empty()).then_some(key)
    }

    /// The wildcard of every event of `entity`: `<prefix>.<entity>.>`.
    pub fn entity(&self, entity: &str) -> String {
        format!("{}.{entity}.>", self.prefix)
    }

    /// The wildcard of every event under the prefix: `<prefix>.>`.
    pub fn all(&self) -> String {
        format!("{}.>", self.prefix)
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

fn check_tokens(text: &str) -> Result<(), &'static str> {
    if text.is_empty() {
        return Err("it is empty");
    }
    if text.split('.').any(str::is_empty) {
        return Err("it has an empty token (a leading, trailing or double `.`)");
    }
    if text
        .chars()
        .any(|c| c.is_whitespace() || c == '*' || c == '>')
    {
        return Err("it contains whitespace, `*` or `>`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_subjects_and_rejects_keys_that_change_their_meaning() {
        let subjects = Subjects::new("acme.crm").unwrap();
        assert_eq!(
            subjects.event("customer", "c-1").unwrap(),
            "acme.crm.customer.c-1"
        );
        assert_eq!(
            subjects.event("customer", "ada@example.com").unwrap(),
            "acme.crm.customer.ada@example.com"
        );
        assert_eq!(subjects.entity("customer"), "acme.crm.customer.>");
        // Not captured by the state stream over `acme.crm.>`.
        assert_eq!(
            subjects.bootstrap("customer"),
            "_ecst.bootstrap.acme.crm.customer"
        );
        assert!(!subjects.bootstrap("customer").starts_with("acme.crm."));
        for bad in ["", "a b", "a.*", ">", "a..b", ".a", "a."] {
            assert!(subjects.event("customer", bad).is_err(), "{bad:?}");
        }
        assert!(Subjects::new("bad prefix").is_err());
        assert_eq!(
            subjects.key_of("customer", "acme.crm.customer.c-1"),
            Some("c-1")
        );
        assert_eq!(
            subjects.key_of("customer", "acme.crm.customer.a.b"),
            Some("a.b")
        );
        assert_eq!(subjects.key_of("customer", "acme.crm.customers.c-1"), None);
        assert_eq!(subjects.key_of("customer", "acme.crm.customer."), None);
        assert_eq!(subjects.key_of("customer", "acme.crmx.customer.c-1"), None);
    }
}
