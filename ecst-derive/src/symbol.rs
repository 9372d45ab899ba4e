//! The attribute vocabulary, defined once.

pub const STATE_EVENT: &str = "state_event";
/// The attribute of `#[derive(Versioned)]`, a nested type's history.
pub const VERSIONED: &str = "versioned";

// Container level.
pub const ENTITY: &str = "entity";
pub const VERSION: &str = "version";
pub const REMOVED: &str = "removed";
pub const HOP: &str = "hop";
pub const DERIVE: &str = "derive";
pub const CRATE: &str = "crate";
pub const COMPATIBILITY: &str = "compatibility";

// Field level.
pub const KEY: &str = "key";
pub const ADDED: &str = "added";
pub const RENAMED: &str = "renamed";
pub const RETYPED: &str = "retyped";
pub const NESTED: &str = "nested";

// Arguments.
pub const SINCE: &str = "since";
pub const FIELD: &str = "field";
pub const TY: &str = "ty";
pub const FROM: &str = "from";
pub const WITH: &str = "with";
pub const DEFAULT: &str = "default";

pub const CONTAINER_KEYS: &[&str] = &[ENTITY, VERSION, REMOVED, HOP, DERIVE, COMPATIBILITY, CRATE];
pub const FIELD_KEYS: &[&str] = &[KEY, ADDED, RENAMED, RETYPED, NESTED];
/// What `#[versioned(..)]` takes on a nested type and on its fields.
pub const NESTED_CONTAINER_KEYS: &[&str] = &[VERSION, REMOVED, HOP, DERIVE, CRATE];
pub const NESTED_FIELD_KEYS: &[&str] = &[ADDED, RENAMED, RETYPED, NESTED];
/// The keys that declare a change at a version (`since = N`).
pub const CHANGE_KEYS: &[&str] = &[REMOVED, HOP, ADDED, RENAMED, RETYPED, NESTED];
pub const ALL_KEYS: &[&str] = &[
    ENTITY,
    VERSION,
    REMOVED,
    HOP,
    DERIVE,
    COMPATIBILITY,
    CRATE,
    KEY,
    ADDED,
    RENAMED,
    RETYPED,
    NESTED,
];

/// The compatibility modes, with Confluent Schema Registry's names, and the
/// runtime's `Mode` variant of each.
pub const MODES: &[(&str, &str)] = &[
    ("BACKWARD", "Backward"),
    ("BACKWARD_TRANSITIVE", "BackwardTransitive"),
    ("FORWARD", "Forward"),
    ("FORWARD_TRANSITIVE", "ForwardTransitive"),
    ("FULL", "Full"),
    ("FULL_TRANSITIVE", "FullTransitive"),
    ("NONE", "None"),
];

/// `a`, `b` or `c` as backticked text.
pub fn one_of(keys: &[&str]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The key in `keys` that `written` is most likely a misspelling of, e.g.
/// `form` for `from` or `rename` for `renamed`.
pub fn closest(written: &str, keys: &[&'static str]) -> Option<&'static str> {
    keys.iter()
        .map(|k| (edit_distance(written, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len().min(written.len()).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, counting a swap of two neighbours as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}
