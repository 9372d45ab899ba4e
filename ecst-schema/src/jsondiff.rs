//! A structural diff of two JSON documents, for lock failure messages.

use serde_json::Value;

/// One line per difference: `<JSON pointer>: <change>`.
pub fn diff(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("#", old, new, &mut out);
    out
}

fn walk(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, av) in a {
                let child = format!("{path}/{}", escape(key));
                match b.get(key) {
                    Some(bv) => walk(&child, av, bv, out),
                    None => out.push(format!("{child}: removed (was {})", short(av))),
                }
            }
            for (key, bv) in b {
                if !a.contains_key(key) {
                    out.push(format!("{path}/{}: added {}", escape(key), short(bv)));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (av, bv)) in a.iter().zip(b).enumerate() {
                walk(&format!("{path}/{i}"), av, bv, out);
            }
        }
        // A list that grew or shrank (an enum variant added to a `oneOf`, a
        // value to an `enum`): each item that is in one list only, where it
        // stands, rather than both lists cut short.
        (Value::Array(a), Value::Array(b)) => {
            let before = out.len();
            for (i, av) in a.iter().enumerate() {
                if !b.contains(av) {
                    out.push(format!("{path}/{i}: removed (was {})", short(av)));
                }
            }
            for (i, bv) in b.iter().enumerate() {
                if !a.contains(bv) {
                    out.push(format!("{path}/{i}: added {}", short(bv)));
                }
            }
            if out.len() == before {
                // The same items, some repeated: say how the length changed.
                out.push(format!("{path}: {} -> {} items", a.len(), b.len()));
            }
        }
        _ if old == new => {}
        _ => out.push(format!(
            "{path}: changed from {} to {}",
            short(old),
            short(new)
        )),
    }
}

/// JSON pointer escaping (RFC 6901).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_added_removed_and_changed_paths() {
        let old = json!({"properties": {"a": {"type": "string"}, "b/c": {}}, "required": ["a"]});
        let new = json!({"properties": {"a": {"type": "integer"}, "d": {}}, "required": ["a"]});
        assert_eq!(
            diff(&old, &new),
            vec![
                "#/properties/a/type: changed from \"string\" to \"integer\"",
                "#/properties/b~1c: removed (was {})",
                "#/properties/d: added {}",
            ]
        );
    }

    #[test]
    fn a_longer_list_names_the_added_item_where_it_stands() {
        let old = json!({"enum": ["open", "paid"], "oneOf": [{"const": 1}, {"const": 2}]});
        let new = json!({"enum": ["open", "refunded", "paid"], "oneOf": [{"const": 2}]});
        assert_eq!(
            diff(&old, &new),
            vec![
                "#/enum/1: added \"refunded\"",
                "#/oneOf/0: removed (was {\"const\":1})",
            ]
        );
    }
}
