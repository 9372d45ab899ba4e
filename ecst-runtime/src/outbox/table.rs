//! The outbox's table names, checked once.

use super::OutboxError;

/// The longest part of a table name (`schema.table`), in bytes: leaves room
/// for the suffixes of the tables and indexes derived from it within
/// PostgreSQL's 63-byte identifiers.
const MAX_PART: usize = 48;

/// The names of the outbox table and the tables and indexes beside it, as
/// written into SQL: each part quoted (so that a name that is a keyword,
/// `order` or `user`, works) and in lower case (what an unquoted name
/// means in PostgreSQL; SQLite ignores case either way), so tables created
/// before names were quoted are the same tables.
#[derive(Debug)]
pub(crate) struct Tables {
    /// The outbox table, as given (`name` or `schema.name`).
    pub(crate) given: String,
    /// The outbox table.
    pub(crate) outbox: String,
    /// The per-key sequence table.
    pub(crate) sequence: String,
    /// The relay lease table.
    pub(crate) lease: String,
    /// The last part of the outbox table's name (an index lives in its
    /// table's schema).
    pub(crate) base: String,
    /// The index of unsent rows (unqualified).
    pub(crate) unsent_index: String,
    /// The index of sent rows (unqualified).
    pub(crate) sent_index: String,
    /// The insert trigger (unqualified) of PostgreSQL.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) trigger: String,
    /// The insert trigger's function, in the outbox table's schema.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) trigger_function: String,
}

/// `name` (checked: ASCII letters, digits and `_` a part) quoted part by
/// part, in lower case.
fn quoted(name: &str) -> String {
    name.split('.')
        .map(|part| format!("\"{}\"", part.to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(".")
}

impl Tables {
    pub(crate) fn new(outbox: &str) -> Self {
        let base = outbox.rsplit('.').next().unwrap_or(outbox);
        Tables {
            given: outbox.to_owned(),
            outbox: quoted(outbox),
            sequence: quoted(&format!("{outbox}_sequence")),
            lease: quoted(&format!("{outbox}_lease")),
            base: quoted(base),
            unsent_index: quoted(&format!("{base}_unsent")),
            sent_index: quoted(&format!("{base}_sent")),
            trigger: quoted(&format!("{base}_notify")),
            trigger_function: quoted(&format!("{outbox}_notify")),
        }
    }
}

/// Checks a table name: one or two parts (`schema.table`), each of ASCII
/// letters, digits and `_`, not starting with a digit, at most 48 bytes.
/// Nothing that would need escaping inside quotes.
pub(crate) fn check_name(name: &str) -> Result<(), OutboxError> {
    let fail = |reason: &'static str| OutboxError::InvalidTable {
        table: name.to_owned(),
        reason,
    };
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 2 {
        return Err(fail("at most two parts, `schema.table`"));
    }
    for part in parts {
        if part.is_empty() {
            return Err(fail("an empty part"));
        }
        if part.len() > MAX_PART {
            return Err(fail("a part is longer than 48 bytes"));
        }
        if part.as_bytes()[0].is_ascii_digit() {
            return Err(fail("a part starts with a digit"));
        }
        if !part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(fail("only ASCII letters, digits and `_` are allowed"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_schema_qualified_names_pass() {
        assert!(check_name("ecst_outbox").is_ok());
        assert!(check_name("crm.outbox_2").is_ok());
        assert_eq!(Tables::new("crm.outbox").base, "\"outbox\"");
        assert_eq!(
            Tables::new("Crm.Outbox").sequence,
            "\"crm\".\"outbox_sequence\""
        );
        assert_eq!(Tables::new("order").given, "order");
    }

    #[test]
    fn names_that_would_need_quoting_are_refused() {
        for bad in ["", "a.b.c", "1x", "x;drop table y", "a-b", ".x", "x.", "é"] {
            assert!(
                matches!(check_name(bad), Err(OutboxError::InvalidTable { .. })),
                "{bad:?}"
            );
        }
        assert!(check_name(&"x".repeat(49)).is_err());
    }
}
