//! The attribute vocabulary, defined once.

pub const STATE_EVENT: &str = "state_event";

// Container level.
pub const ENTITY: &str = "entity";
pub const VERSION: &str = "version";
pub const REMOVED: &str = "removed";
pub const HOP: &str = "hop";
pub const DERIVE: &str = "derive";
pub const CRATE: &str = "crate";

// Field level.
pub const KEY: &str = "key";
pub const ADDED: &str = "added";
pub const RENAMED: &str = "renamed";
pub const RETYPED: &str = "retyped";

// Arguments.
pub const SINCE: &str = "since";
pub const FIELD: &str = "field";
pub const TY: &str = "ty";
pub const FROM: &str = "from";
pub const WITH: &str = "with";
pub const DEFAULT: &str = "default";

pub const CONTAINER_KEYS: &[&str] = &[ENTITY, VERSION, REMOVED, HOP, DERIVE, CRATE];
pub const FIELD_KEYS: &[&str] = &[KEY, ADDED, RENAMED, RETYPED];

/// `a`, `b` or `c` as backticked text.
pub fn one_of(keys: &[&str]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}
