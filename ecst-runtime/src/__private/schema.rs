//! `schema_for!` without an instance per type: every generated
//! `StateEvent::schema` arm calls [`root_schema`] with the version's
//! `JsonSchema` functions as pointers, so the crate compiles schemars'
//! `into_root_schema_for` once, for [`Root`], instead of once for every
//! version of every entity. The schema is the one `schema_for!` gives:
//! `Root` answers each call with the pointed-to type's functions.

use std::borrow::Cow;
use std::cell::Cell;

use schemars::{JsonSchema, Schema, SchemaGenerator};

/// A type's `JsonSchema` functions, as the root generator calls them.
#[derive(Clone, Copy)]
pub struct SchemaOf {
    /// `<T as JsonSchema>::schema_name`.
    pub name: fn() -> Cow<'static, str>,
    /// `<T as JsonSchema>::schema_id`.
    pub id: fn() -> Cow<'static, str>,
    /// `<T as JsonSchema>::json_schema`.
    pub json: fn(&mut SchemaGenerator) -> Schema,
}

thread_local! {
    static CURRENT: Cell<Option<SchemaOf>> = const { Cell::new(None) };
}

/// `schema_for!(T)` for the type whose functions `of` holds.
pub fn root_schema(of: SchemaOf) -> Schema {
    let _restore = Restore(CURRENT.with(|current| current.replace(Some(of))));
    SchemaGenerator::default().into_root_schema_for::<Root>()
}

/// Puts back the type an outer [`root_schema`] was describing (if a
/// `json_schema` builds another root schema), also on unwinding.
struct Restore(Option<SchemaOf>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|current| current.set(previous));
    }
}

/// Stands for the type [`root_schema`] is describing.
struct Root;

impl Root {
    fn of() -> SchemaOf {
        match CURRENT.with(Cell::get) {
            Some(of) => of,
            // Only `root_schema` names `Root`, and sets `CURRENT` first.
            None => unreachable!("ecst: Root described outside root_schema"),
        }
    }
}

impl JsonSchema for Root {
    fn schema_name() -> Cow<'static, str> {
        (Root::of().name)()
    }

    fn schema_id() -> Cow<'static, str> {
        (Root::of().id)()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        (Root::of().json)(generator)
    }
}

/// A property of an older version's object schema: what schemars' derive
/// inserts for a field without `#[schemars]` or `#[serde]` attributes.
pub struct Property {
    /// The serialized name.
    pub name: &'static str,
    /// The field's doc comment, as schemars' derive joins its lines.
    pub doc: Option<&'static str>,
    /// `<T as JsonSchema>::_schemars_private_is_option`: schemars' own
    /// test of whether a missing field reads as `None`.
    pub is_option: fn() -> bool,
    /// `SchemaGenerator::subschema_for::<T>`.
    pub schema: fn(&mut SchemaGenerator) -> Schema,
}

/// The [`Property`] of a field of type `T` (an instance per field type,
/// not per field).
pub fn property<T: JsonSchema>(name: &'static str, doc: Option<&'static str>) -> Property {
    Property {
        name,
        doc,
        is_option: T::_schemars_private_is_option,
        schema: SchemaGenerator::subschema_for::<T>,
    }
}

/// `JsonSchema::json_schema` of an older version that would otherwise
/// derive `JsonSchema`: the object schema schemars' derive builds for a
/// struct with the doc comment `doc` whose fields and container carry no
/// `#[schemars]` or `#[serde]` attributes (bar `rename_all`, already
/// applied to the names), step by step as the derive's code does it.
pub fn object_schema(
    generator: &mut SchemaGenerator,
    doc: &'static str,
    properties: &[Property],
) -> Schema {
    let mut schema = schemars::json_schema!({ "type": "object" });
    for property in properties {
        let is_optional = generator.contract().is_deserialize() && (property.is_option)();
        let mut sub_schema = (property.schema)(generator);
        if let Some(doc) = property.doc {
            let (title, description) = get_title_and_description(doc);
            insert_if_nonempty(&mut sub_schema, "title", title);
            insert_if_nonempty(&mut sub_schema, "description", description);
        }
        insert_object_property(&mut schema, property.name, is_optional, sub_schema);
    }
    let (title, description) = get_title_and_description(doc);
    insert_if_nonempty(&mut schema, "title", title);
    insert_if_nonempty(&mut schema, "description", description);
    schema
}

// What schemars' derive does with a doc comment and a property, written
// here rather than called in `schemars::_private` (hidden, and free to
// change in any schemars release): the same steps, so the same schema
// (`tests/derive_reads.rs` compares it with schemars' derive), and an
// output that a schemars upgrade cannot change behind the schema lock.

/// A doc comment as a title and a description: a first line starting
/// with `#` is the title (without its `#`s), the rest the description;
/// otherwise there is no title. Both trimmed of ASCII whitespace.
fn get_title_and_description(doc: &str) -> (&str, &str) {
    let doc = doc.trim_ascii();
    match doc.strip_prefix('#') {
        Some(_) => {
            let (first, rest) = doc.split_at(doc.find('\n').unwrap_or(doc.len()));
            (
                first.trim_start_matches('#').trim_ascii(),
                rest.trim_ascii(),
            )
        }
        None => ("", doc),
    }
}

/// Sets `key` to `value` unless `value` is empty.
fn insert_if_nonempty(schema: &mut Schema, key: &str, value: &str) {
    if !value.is_empty() {
        schema.insert(key.to_owned(), value.into());
    }
}

/// Adds `sub_schema` under `properties.<key>`, and `key` to `required`
/// unless the property is optional.
fn insert_object_property(schema: &mut Schema, key: &str, is_optional: bool, sub_schema: Schema) {
    let object = schema.ensure_object();
    if let Some(properties) = object
        .entry("properties")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()))
        .as_object_mut()
    {
        properties.insert(key.to_owned(), sub_schema.into());
    }
    if !is_optional {
        if let Some(required) = object
            .entry("required")
            .or_insert_with(|| serde_json::Value::Array(Vec::new()))
            .as_array_mut()
        {
            required.push(key.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The copies give what schemars' own functions give today.
    #[test]
    fn the_copies_agree_with_schemars() {
        for doc in [
            "",
            "   ",
            "One line.",
            "  Padded.  \n",
            "# Title\nThe description.\n\nMore.",
            "#Title only",
            "### Deep title  \n  body  ",
            "#\n",
            "Not # a title\n# nor this",
            "\u{a0}non-ASCII space\u{a0}",
        ] {
            assert_eq!(
                get_title_and_description(doc),
                schemars::_private::get_title_and_description(doc),
                "{doc:?}"
            );
        }
        for (key, optional) in [("a", false), ("b", true), ("a", false)] {
            let mut ours = schemars::json_schema!({ "type": "object" });
            let mut theirs = ours.clone();
            for _ in 0..2 {
                let sub = schemars::json_schema!({ "type": "string" });
                insert_object_property(&mut ours, key, optional, sub.clone());
                schemars::_private::insert_object_property(&mut theirs, key, optional, sub);
            }
            insert_if_nonempty(&mut ours, "title", "");
            insert_if_nonempty(&mut ours, "description", "d");
            schemars::_private::insert_metadata_property_if_nonempty(&mut theirs, "title", "");
            schemars::_private::insert_metadata_property_if_nonempty(
                &mut theirs,
                "description",
                "d",
            );
            assert_eq!(ours, theirs);
        }
    }
}
