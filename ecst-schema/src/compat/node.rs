//! A schema being walked: its value, its document, where it is, and typed
//! reads of its keywords.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::error::{json_type_name, SchemaError, SchemaErrorReason};
use super::number::Num;
use super::refs::RefCache;

/// One schema document: the root `$ref`s resolve against, and which version
/// it is (for errors).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Doc<'a> {
    pub(crate) root: &'a Value,
    pub(crate) version: usize,
    /// Its `$ref`s, each followed once.
    pub(crate) refs: &'a RefCache,
}

/// A schema inside a document, borrowed or built by the walker (a `$ref`
/// merged with its siblings, one branch of a type array).
#[derive(Clone, Debug)]
pub(crate) struct Node<'a> {
    pub(crate) value: Cow<'a, Value>,
    pub(crate) doc: Doc<'a>,
    /// JSON pointer of the value in its document, for errors.
    pub(crate) at: String,
    /// Identity for memoising comparisons: the pointer, plus a tag for
    /// values the walker built.
    pub(crate) id: String,
}

/// Keywords that describe a schema without constraining data.
pub(crate) const METADATA: &[&str] = &[
    "$schema",
    "$id",
    "id",
    "title",
    "description",
    "default",
    "examples",
    "$comment",
    "readOnly",
    "writeOnly",
    "deprecated",
    "$anchor",
    "$dynamicAnchor",
];

/// Keywords that only hold schemas for `$ref` to point at.
pub(crate) const CONTAINERS: &[&str] = &["$defs", "definitions"];

/// Keywords the checker compares. Anything else that differs is reported as
/// unsupported.
pub(crate) const UNDERSTOOD: &[&str] = &[
    "$ref",
    "type",
    "enum",
    "const",
    "not",
    "allOf",
    "anyOf",
    "oneOf",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "format",
    "items",
    "prefixItems",
    "additionalItems",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "properties",
    "patternProperties",
    "additionalProperties",
];

/// `~` and `/` escaped for a JSON pointer segment.
pub(crate) fn escape(segment: &str) -> Cow<'_, str> {
    if segment.contains(['~', '/']) {
        Cow::Owned(segment.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(segment)
    }
}

impl<'a> Node<'a> {
    /// The root schema of a document.
    pub(crate) fn root(doc: Doc<'a>) -> Self {
        Node {
            value: Cow::Borrowed(doc.root),
            doc,
            at: "#".to_owned(),
            id: format!("{}:#", doc.version),
        }
    }

    /// A schema found inside this one at `segment` (`"properties/name"`,
    /// already escaped).
    pub(crate) fn child<'b>(&'b self, value: &'b Value, segment: &str) -> Node<'b> {
        Node {
            value: Cow::Borrowed(value),
            doc: self.doc,
            at: format!("{}/{segment}", self.at),
            id: format!("{}/{segment}", self.id),
        }
    }

    /// A schema the walker built from this one; `tag` keeps its identity
    /// apart from this one's.
    pub(crate) fn derived(&self, value: Value, tag: &str) -> Node<'a> {
        Node {
            value: Cow::Owned(value),
            doc: self.doc,
            at: self.at.clone(),
            id: format!("{}|{tag}", self.id),
        }
    }

    /// An error at this node (or at `keyword` inside it).
    pub(crate) fn error(&self, keyword: Option<&str>, reason: SchemaErrorReason) -> SchemaError {
        let path = match keyword {
            Some(keyword) => format!("{}/{}", self.at, escape(keyword)),
            None => self.at.clone(),
        };
        SchemaError {
            version: self.doc.version,
            path,
            reason,
        }
    }

    fn invalid(&self, keyword: &str, expected: &'static str) -> SchemaError {
        self.error(
            Some(keyword),
            SchemaErrorReason::InvalidKeyword {
                keyword: keyword.to_owned(),
                expected,
            },
        )
    }

    /// The keywords, or an error if this is not an object or a boolean.
    /// `true` reads as `{}`; `false` has no keywords either, so check
    /// [`Node::is_false`] first.
    pub(crate) fn keywords(&self) -> Result<Option<&Map<String, Value>>, SchemaError> {
        match self.value.as_ref() {
            Value::Object(map) => Ok(Some(map)),
            Value::Bool(_) => Ok(None),
            other => Err(self.error(
                None,
                SchemaErrorReason::NotASchema {
                    found: json_type_name(other),
                },
            )),
        }
    }

    /// A keyword's raw value.
    pub(crate) fn get(&self, keyword: &str) -> Option<&Value> {
        self.value.as_object().and_then(|map| map.get(keyword))
    }

    /// Whether this is the `false` schema.
    pub(crate) fn is_false(&self) -> bool {
        matches!(self.value.as_ref(), Value::Bool(false))
    }

    /// Whether this accepts anything: `true`, or an object with nothing but
    /// annotations and `$defs`.
    pub(crate) fn accepts_anything(&self) -> bool {
        match self.value.as_ref() {
            Value::Bool(b) => *b,
            Value::Object(map) => map
                .keys()
                .all(|k| METADATA.contains(&k.as_str()) || CONTAINERS.contains(&k.as_str())),
            _ => false,
        }
    }

    /// A keyword that holds one schema.
    pub(crate) fn schema_at<'b>(&'b self, keyword: &str) -> Result<Option<Node<'b>>, SchemaError> {
        match self.get(keyword) {
            None => Ok(None),
            Some(value @ (Value::Object(_) | Value::Bool(_))) => {
                Ok(Some(self.child(value, &escape(keyword))))
            }
            Some(_) => Err(self.invalid(keyword, "a schema (an object or a boolean)")),
        }
    }

    /// A keyword that holds an array of schemas (`allOf`, `prefixItems`).
    pub(crate) fn schema_list<'b>(
        &'b self,
        keyword: &str,
    ) -> Result<Option<Vec<Node<'b>>>, SchemaError> {
        let Some(value) = self.get(keyword) else {
            return Ok(None);
        };
        let Some(items) = value.as_array() else {
            return Err(self.invalid(keyword, "an array of schemas"));
        };
        let mut nodes = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let node = self.child(item, &format!("{}/{i}", escape(keyword)));
            node.keywords()?;
            nodes.push(node);
        }
        Ok(Some(nodes))
    }

    /// A keyword that holds a map of names to schemas (`properties`).
    pub(crate) fn schema_map<'b>(
        &'b self,
        keyword: &str,
    ) -> Result<Vec<(&'b str, Node<'b>)>, SchemaError> {
        let Some(value) = self.get(keyword) else {
            return Ok(Vec::new());
        };
        let Some(map) = value.as_object() else {
            return Err(self.invalid(keyword, "an object of schemas"));
        };
        let mut nodes = Vec::with_capacity(map.len());
        for (name, item) in map {
            let node = self.child(item, &format!("{}/{}", escape(keyword), escape(name)));
            node.keywords()?;
            nodes.push((name.as_str(), node));
        }
        Ok(nodes)
    }

    /// A keyword that holds a number, exactly as serde_json holds it.
    pub(crate) fn number(&self, keyword: &str) -> Result<Option<Num>, SchemaError> {
        match self.get(keyword) {
            None => Ok(None),
            Some(Value::Number(n)) => Num::of(n)
                .map(Some)
                .ok_or_else(|| self.invalid(keyword, "a number")),
            Some(_) => Err(self.invalid(keyword, "a number")),
        }
    }

    /// A keyword that holds a string.
    pub(crate) fn string(&self, keyword: &str) -> Result<Option<&str>, SchemaError> {
        match self.get(keyword) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.invalid(keyword, "a string")),
        }
    }

    /// A keyword that holds a boolean (absent reads as `false`).
    pub(crate) fn flag(&self, keyword: &str) -> Result<bool, SchemaError> {
        match self.get(keyword) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.invalid(keyword, "a boolean")),
        }
    }

    /// `required`, as a list of names.
    pub(crate) fn required(&self) -> Result<Vec<&str>, SchemaError> {
        match self.get("required") {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .ok_or_else(|| self.invalid("required", "an array of strings"))
                })
                .collect(),
            Some(_) => Err(self.invalid("required", "an array of strings")),
        }
    }

    /// The JSON types this schema admits.
    pub(crate) fn types(&self) -> Result<TypeSet, SchemaError> {
        let Some(value) = self.get("type") else {
            return Ok(TypeSet::ANY);
        };
        let expected = "a type name or an array of type names";
        let names: Vec<&str> = match value {
            Value::String(name) => vec![name.as_str()],
            Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().ok_or_else(|| self.invalid("type", expected)))
                .collect::<Result<_, _>>()?,
            _ => return Err(self.invalid("type", expected)),
        };
        let mut set = TypeSet::NONE;
        for name in names {
            set = set.union(TypeSet::named(name).ok_or_else(|| self.invalid("type", expected))?);
        }
        Ok(set)
    }

    /// This schema with some keywords left out.
    pub(crate) fn without(&self, keywords: &[&str], tag: &str) -> Node<'a> {
        let value = match self.value.as_ref() {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(k, _)| !keywords.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            other => other.clone(),
        };
        self.derived(value, tag)
    }
}

/// A set of JSON types, with `integer` a part of `number`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TypeSet(u8);

impl TypeSet {
    const NULL: u8 = 1;
    const BOOLEAN: u8 = 2;
    const OBJECT: u8 = 4;
    const ARRAY: u8 = 8;
    const STRING: u8 = 16;
    const INTEGER: u8 = 32;
    /// Numbers that are not integers.
    const FRACTION: u8 = 64;

    pub(crate) const NONE: TypeSet = TypeSet(0);
    pub(crate) const ANY: TypeSet = TypeSet(127);
    pub(crate) const OBJECT_ONLY: TypeSet = TypeSet(Self::OBJECT);

    /// The type of one JSON value (`1.0` is an integer, as JSON Schema
    /// counts).
    pub(crate) fn of_value(value: &Value) -> TypeSet {
        TypeSet(match value {
            Value::Null => Self::NULL,
            Value::Bool(_) => Self::BOOLEAN,
            Value::Object(_) => Self::OBJECT,
            Value::Array(_) => Self::ARRAY,
            Value::String(_) => Self::STRING,
            Value::Number(n) => match Num::of(n) {
                Some(Num::Float(x)) if x.fract() != 0.0 => Self::FRACTION,
                _ => Self::INTEGER,
            },
        })
    }

    fn named(name: &str) -> Option<TypeSet> {
        Some(TypeSet(match name {
            "null" => Self::NULL,
            "boolean" => Self::BOOLEAN,
            "object" => Self::OBJECT,
            "array" => Self::ARRAY,
            "string" => Self::STRING,
            "integer" => Self::INTEGER,
            "number" => Self::INTEGER | Self::FRACTION,
            _ => return None,
        }))
    }

    pub(crate) fn union(self, other: TypeSet) -> TypeSet {
        TypeSet(self.0 | other.0)
    }

    pub(crate) fn intersection(self, other: TypeSet) -> TypeSet {
        TypeSet(self.0 & other.0)
    }

    pub(crate) fn is_subset_of(self, other: TypeSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn has_object(self) -> bool {
        self.0 & Self::OBJECT != 0
    }

    pub(crate) fn has_array(self) -> bool {
        self.0 & Self::ARRAY != 0
    }

    pub(crate) fn has_string(self) -> bool {
        self.0 & Self::STRING != 0
    }

    pub(crate) fn has_number(self) -> bool {
        self.0 & (Self::INTEGER | Self::FRACTION) != 0
    }

    /// The type names, `integer` and `number` folded as JSON Schema writes
    /// them.
    pub(crate) fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        for (bit, name) in [
            (Self::NULL, "null"),
            (Self::BOOLEAN, "boolean"),
            (Self::OBJECT, "object"),
            (Self::ARRAY, "array"),
            (Self::STRING, "string"),
        ] {
            if self.0 & bit != 0 {
                names.push(name);
            }
        }
        if self.0 & Self::FRACTION != 0 {
            names.push("number");
        } else if self.0 & Self::INTEGER != 0 {
            names.push("integer");
        }
        names
    }

    /// `string`, `["string", "null"]`, or `any type`.
    pub(crate) fn describe(self) -> String {
        if self == Self::ANY {
            return "any type".to_owned();
        }
        let names = self.names();
        match names.as_slice() {
            [] => "no type".to_owned(),
            [one] => (*one).to_owned(),
            many => format!("[{}]", many.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integer_is_part_of_number() {
        let doc_value = json!({"type": ["integer", "null"]});
        let refs = RefCache::default();
        let doc = Doc {
            root: &doc_value,
            version: 0,
            refs: &refs,
        };
        let types = Node::root(doc).types().unwrap();
        assert!(types.is_subset_of(
            TypeSet::named("number")
                .unwrap()
                .union(TypeSet(TypeSet::NULL))
        ));
        assert_eq!(types.describe(), "[null, integer]");
        assert_eq!(TypeSet::ANY.describe(), "any type");
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let value = json!({"type": 7, "required": "a", "properties": []});
        let refs = RefCache::default();
        let doc = Doc {
            root: &value,
            version: 1,
            refs: &refs,
        };
        let node = Node::root(doc);
        assert!(node.types().is_err());
        assert!(node.required().is_err());
        let err = node.schema_map("properties").unwrap_err();
        assert_eq!(err.path, "#/properties");
        assert_eq!(err.version, 1);
    }
}
