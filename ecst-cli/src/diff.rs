//! What changed between two states: fields added, removed and changed, by
//! path (`address.city`, `tags[2]`).

use serde::Serialize;
use serde_json::Value;

/// One difference between two states.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    /// Where: `name`, `address.city`, `tags[2]`; empty for the whole state.
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub op: &'static str,
    /// The value before (`null` for `added`).
    pub before: Option<Value>,
    /// The value after (`null` for `removed`).
    pub after: Option<Value>,
}

/// The differences from `before` to `after`, in the order of their paths.
pub fn changes(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(String::new(), before, after, &mut out);
    out
}

fn walk(path: String, before: &Value, after: &Value, out: &mut Vec<Change>) {
    match (before, after) {
        (Value::Object(old), Value::Object(new)) => {
            let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
            names.sort();
            names.dedup();
            for name in names {
                let inner = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                match (old.get(name), new.get(name)) {
                    (Some(a), Some(b)) => walk(inner, a, b, out),
                    (Some(a), None) => out.push(Change {
                        path: inner,
                        op: "removed",
                        before: Some(a.clone()),
                        after: None,
                    }),
                    (None, Some(b)) => out.push(Change {
                        path: inner,
                        op: "added",
                        before: None,
                        after: Some(b.clone()),
                    }),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(old), Value::Array(new)) if old.len() == new.len() => {
            for (i, (a, b)) in old.iter().zip(new).enumerate() {
                walk(format!("{path}[{i}]"), a, b, out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(Change {
            path,
            op: "changed",
            before: Some(a.clone()),
            after: Some(b.clone()),
        }),
    }
}

/// `change` as one line for people: `  name: "Ada" -> "Ada L."`,
/// `+ email: "a@x"`, `- fax: "123"`.
pub fn line(change: &Change) -> String {
    let path = if change.path.is_empty() {
        "(state)"
    } else {
        change.path.as_str()
    };
    let shown = |value: &Option<Value>| value.as_ref().map_or_else(String::new, Value::to_string);
    match change.op {
        "added" => format!("+ {path}: {}", shown(&change.after)),
        "removed" => format!("- {path}: {}", shown(&change.before)),
        _ => format!(
            "~ {path}: {} -> {}",
            shown(&change.before),
            shown(&change.after)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_added_removed_and_changed_fields_by_path() {
        let before =
            json!({"name": "Ada", "fax": "1", "address": {"city": "London"}, "tags": [1, 2]});
        let after =
            json!({"name": "Ada L.", "email": "a@x", "address": {"city": "Paris"}, "tags": [1, 3]});
        let lines: Vec<String> = changes(&before, &after).iter().map(line).collect();
        assert_eq!(
            lines,
            [
                r#"~ address.city: "London" -> "Paris""#,
                r#"+ email: "a@x""#,
                r#"- fax: "1""#,
                r#"~ name: "Ada" -> "Ada L.""#,
                "~ tags[1]: 2 -> 3",
            ]
        );
        assert!(changes(&after, &after).is_empty());
    }
}
